/*
 * fuzz_decode.c -- libFuzzer target for the packet decoder (ext/ph_decode.c,
 * ph_frag.c, ph_csum.c and whatever decapsulation ph_decode calls).
 *
 * Input layout:
 *   byte 0      link type: index into LINKTYPES (an index past the table takes
 *               the link type from bytes 2..5 instead, so unknown ones are tried)
 *   byte 1      options: bit 0 ignore checksums; bits 1-2 fragment limits
 *               (default, small, tiny, one datagram); bit 3 short fragment timeout
 *   then        packets, each: 2-byte little-endian length, 1-byte time step
 *               (in 100 ms), then that many bytes (cut at the end of the input)
 * Each packet is decoded from its own allocation of exactly caplen bytes, so
 * a read past the capture is an AddressSanitizer report. Checked: a decoded
 * packet's transport bytes (l4, l4_caplen) are readable; every packet gets a
 * disposition and the dispositions add up; reassembly memory and datagram
 * count stay within the configured limits and are empty after a flush.
 */
#include "fuzz_util.h"
#include "ph_decode.h"

static const uint32_t LINKTYPES[] = {
    PH_LT_ETHERNET, PH_LT_RAW, PH_LT_NULL, PH_LT_LOOP, PH_LT_LINUX_SLL, PH_LT_LINUX_SLL2,
    PH_LT_PPP, PH_LT_PPP_HDLC, PH_LT_IEEE802_11, PH_LT_RADIOTAP, PH_LT_IPV4, PH_LT_IPV6,
    PH_LT_DLT_RAW12, PH_LT_DLT_RAW14,
};
#define N_LINKTYPES (sizeof LINKTYPES / sizeof LINKTYPES[0])

#define MAX_PACKETS 100000u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint64_t ctr[PH_C__COUNT];
    ph_decode_cfg cfg;
    ph_decoder *d;
    uint32_t linktype;
    uint64_t decoded_ok = 0, npk = 0;
    int64_t ts = 1700000000LL * PH_NS_PER_SEC;
    size_t pos = 2;

    if (size < 2)
        return 0;
    if (data[0] % (N_LINKTYPES + 1) < N_LINKTYPES)
        linktype = LINKTYPES[data[0] % (N_LINKTYPES + 1)];
    else if (size >= 6) {
        linktype = ph_le32(data + 2);
        pos = 6;
    } else
        return 0;

    ph_decode_cfg_default(&cfg);
    cfg.ignore_checksums = data[1] & 1;
    switch ((data[1] >> 1) & 3) {
    case 1: cfg.frag_max_datagrams = 16; cfg.frag_max_bytes = 64 * 1024; break;
    case 2: cfg.frag_max_datagrams = 2; cfg.frag_max_bytes = 4096; break;
    case 3: cfg.frag_max_datagrams = 1; cfg.frag_max_bytes = 1 << 20; break;
    default: break;
    }
    if (data[1] & 8)
        cfg.frag_timeout_ns = PH_NS_PER_SEC / 2;

    memset(ctr, 0, sizeof ctr);
    d = ph_decoder_new(&cfg, ctr);
    FUZZ_CHECK(d != NULL);

    while (pos + 3 <= size && npk < MAX_PACKETS) {
        uint32_t caplen = ph_le16(data + pos);
        ts += (int64_t)data[pos + 2] * (PH_NS_PER_SEC / 10);
        pos += 3;
        if (caplen > size - pos)
            caplen = (uint32_t)(size - pos);
        uint8_t *copy = fuzz_dup(data + pos, caplen);
        pos += caplen;

        ph_pkt pkt = {.data = copy, .caplen = caplen, .wirelen = caplen, .ts_ns = ts,
                      .linktype = linktype, .ifindex = 0};
        ph_parsed out;
        npk++;
        ph_decoder_expire(d, ts);
        int disp = ph_decode(d, &pkt, &out);
        if (disp == PH_DEC_OK) {
            decoded_ok++;
            FUZZ_CHECK(out.ipver == 4 || out.ipver == 6);
            FUZZ_CHECK(out.l4_caplen <= out.l4_len);
            FUZZ_CHECK(out.nvlan <= 2);
            if (out.l4_caplen) {
                FUZZ_CHECK(out.l4 != NULL);
                (void)fuzz_touch(out.l4, out.l4_caplen);
            }
        } else {
            FUZZ_CHECK(disp > PH_C_IN_FLOW && disp < PH_C__DISPOSITION_END);
            ctr[disp]++;
        }
        /* A-MSDU: the frame's other subframes, each at least 16 bytes of it */
        for (uint32_t n = 0; ph_decode_pending(d); n++) {
            FUZZ_CHECK(n < caplen / 16 + 1);
            int sd = ph_decode_next(d, &out);
            FUZZ_CHECK(out.amsdu_more == 1 && out.amsdu >= 1);
            if (sd == PH_DEC_OK) {
                FUZZ_CHECK(out.ipver == 4 || out.ipver == 6);
                FUZZ_CHECK(out.l4_caplen <= out.l4_len);
                if (out.l4_caplen)
                    (void)fuzz_touch(out.l4, out.l4_caplen);
            } else {
                FUZZ_CHECK(sd > PH_C_IN_FLOW && sd < PH_C__DISPOSITION_END);
            }
        }
        FUZZ_CHECK(ph_decoder_frag_pending(d) <= cfg.frag_max_datagrams);
        FUZZ_CHECK(ph_decoder_frag_bytes(d) <= cfg.frag_max_bytes);
        free(copy);
    }

    ph_decoder_flush(d);
    FUZZ_CHECK(ph_decoder_frag_pending(d) == 0);
    FUZZ_CHECK(ph_decoder_frag_bytes(d) == 0);
    {
        /* decoded packets are the ones the engine would hand to the flow table */
        uint64_t sum = decoded_ok;
        for (int i = PH_C_IN_FLOW + 1; i < PH_C__DISPOSITION_END; i++)
            sum += ctr[i];
        FUZZ_CHECK(sum == npk);
        FUZZ_CHECK(ctr[PH_C_FRAGMENT_HELD] <= npk);   /* no wrap-around below zero */
    }
    ph_decoder_free(d);
    return 0;
}
