# cython: language_level=3, boundscheck=False, wraparound=False
"""pyhunt._ext -- the thin binding over the C core (ext/ph_*.c).

Per-packet work never crosses this layer: Python feeds capture bytes and
receives flow records in batches, as bytes whose layout is ph_flow_rec
(checked against pyhunt.schema at import) or as numpy structured arrays over
them. numpy is imported only when an array is asked for, so that a replay to
NDJSON does not pay for it.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from libc.string cimport memcpy, memset, strncpy
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBuffer_FillInfo, PyBUF_ANY_CONTIGUOUS
from libc.stdlib cimport free
from cpython.bytearray cimport PyByteArray_FromStringAndSize

cdef extern from "ph_types.h":
    enum: PH_C__COUNT
    enum: PH_C__DISPOSITION_END
    ctypedef struct ph_pkt:
        const uint8_t *data
        uint32_t caplen
        uint32_t wirelen
        int64_t ts_ns
        uint32_t linktype
        uint32_t ifindex
        uint32_t mirror_id
    ctypedef struct ph_error:
        char msg[256]
        uint64_t offset

cdef extern from "ph_record.h":
    enum: PH_REC_SIZE
    enum: PH_REC_NFIELDS
    ctypedef struct ph_flow_rec:
        pass
    ctypedef struct ph_rec_field:
        const char *name
        char kind
        uint8_t elem
        uint16_t count
        uint32_t offset
    const ph_rec_field ph_rec_fields[]

cdef extern from "ph_decode.h":
    ctypedef struct ph_decode_cfg:
        int ignore_checksums
        uint32_t frag_max_datagrams
        uint32_t frag_max_bytes
        int64_t frag_timeout_ns
        uint8_t tunnel_strip
        uint8_t tunnel_max_depth
        uint8_t teredo_dpd
        uint8_t tunnel_enable[9]
        uint16_t tunnel_ports[9][4]
    void ph_decode_cfg_default(ph_decode_cfg *cfg)

cdef extern from "ph_tunnel.h":
    const char *ph_tun_name(int type)

cdef extern from "ph_types.h":
    enum: PH_TUN__N
    enum: PH_MAX_ENCAP

cdef extern from "ph_flow.h":
    ctypedef struct ph_flow_cfg:
        int64_t tcp_inactivity_ns
        int64_t udp_inactivity_ns
        int64_t icmp_inactivity_ns
        int64_t other_inactivity_ns
        int64_t tcp_attempt_ns
        int64_t tcp_close_delay_ns
        int64_t tcp_session_timer_ns
        int64_t tcp_linger_ns
        int64_t long_inactivity_ns
        int64_t active_timeout_ns
        int64_t dns_session_ns
        uint32_t capacity
        uint16_t cid_seed
        uint8_t ignore_checksums
        uint8_t emit_updates
        uint8_t first_n
        uint8_t tcp_server_ports[8192]
        uint8_t udp_server_ports[8192]
        uint32_t n_local_nets
        uint8_t vlan_in_key
        uint8_t tunnel_strip
        uint8_t tunnel_max_changes
    void ph_flow_cfg_default(ph_flow_cfg *cfg)
    size_t ph_flowtab_active(const void *t)
    size_t ph_flowtab_memory(const void *t)

cdef extern from "ph_glue.h":
    int ph_glue_set_local_net(ph_flow_cfg *cfg, uint32_t i, const uint8_t *addr, uint8_t ipver, uint8_t prefix)
    enum: PH_MAX_LOCAL_NETS

cdef extern from "ph_engine.h":
    enum: PH_RUN_BATCH
    enum: PH_RUN_YIELD
    enum: PH_RUN_NEED_MORE
    enum: PH_RUN_EOF
    enum: PH_RUN_ERROR
    enum: PH_RUN_NOMEM
    ctypedef struct ph_engine:
        uint64_t counters[1]
        void *tab
        ph_error err
        size_t qhead, qlen
        int pipeline
        uint64_t ids_deferred
    const char *const ph_counter_names[]
    ph_engine *ph_engine_new(const ph_decode_cfg *dcfg, const ph_flow_cfg *fcfg)
    void ph_engine_free(ph_engine *e)
    void ph_engine_begin_capture(ph_engine *e)
    void ph_engine_feed(ph_engine *e, const uint8_t *buf, size_t len, int final) nogil
    void ph_engine_feed_file(ph_engine *e, const uint8_t *buf, size_t len, int final) nogil
    size_t ph_engine_consumed(const ph_engine *e)
    uint64_t ph_engine_offset(const ph_engine *e)
    int ph_engine_run(ph_engine *e, size_t batch, uint64_t max_packets) nogil
    int ph_engine_packet(ph_engine *e, const ph_pkt *pkt) nogil
    void ph_engine_advance(ph_engine *e, int64_t now_ns) nogil
    void ph_engine_finish(ph_engine *e, int reason) nogil
    size_t ph_engine_finish_step(ph_engine *e, int reason, size_t max) nogil
    const ph_flow_rec *ph_engine_queue(const ph_engine *e, size_t *n)
    void ph_engine_clear(ph_engine *e)
    size_t ph_engine_queued(const ph_engine *e)
    void ph_engine_consume(ph_engine *e, size_t n)
    ph_flow_rec *ph_engine_detach(ph_engine *e, size_t *n, size_t *cap)
    int ph_engine_reuse(ph_engine *e, ph_flow_rec *q, size_t cap)

cdef extern from "ph_format.h":
    ctypedef struct ph_buf:
        char *data
        size_t len
        size_t cap
    void ph_buf_free(ph_buf *b)
    ctypedef struct ph_format_opts:
        const char *observer_name
        const char *dataset
    int ph_format_records(ph_buf *out, int format, const ph_flow_rec *recs, size_t n,
                          const ph_format_opts *opts) nogil
    int ph_format_tsv_header(ph_buf *out, const char *open_time)
    int ph_format_tsv_footer(ph_buf *out, const char *close_time)
    void ph_format_uid(uint64_t flow_id, char out[16])

cdef extern from "ph_cid.h":
    void ph_cid_digest(uint16_t seed, uint8_t ipver, uint8_t proto, const uint8_t *saddr,
                       const uint8_t *daddr, uint16_t sport, uint16_t dport, uint8_t digest[20])
    void ph_cid_b64(const uint8_t digest[20], char out[32])

RUN_BATCH = PH_RUN_BATCH
RUN_YIELD = PH_RUN_YIELD
RUN_NEED_MORE = PH_RUN_NEED_MORE
RUN_EOF = PH_RUN_EOF
RUN_ERROR = PH_RUN_ERROR
RUN_NOMEM = PH_RUN_NOMEM
RECORD_SIZE = PH_REC_SIZE
N_DISPOSITIONS = PH_C__DISPOSITION_END
COUNTER_NAMES = tuple(ph_counter_names[i].decode() for i in range(PH_C__COUNT))
MAX_LOCAL_NETS = PH_MAX_LOCAL_NETS
TUNNEL_NAMES = tuple(ph_tun_name(i).decode() for i in range(PH_TUN__N))
MAX_TUNNEL_DEPTH = PH_MAX_ENCAP
UDP_TUNNELS = ("vxlan", "geneve", "teredo", "gtpv1", "ayiya")


cdef void _tunnel_config(ph_decode_cfg *dcfg, ph_flow_cfg *fcfg, dict config) except *:
    mode = config.get("tunnels", "zeek")
    if mode not in ("zeek", "strip"):
        raise ValueError(f"tunnels must be 'zeek' or 'strip', not {mode!r}")
    dcfg.tunnel_strip = fcfg.tunnel_strip = mode == "strip"
    if "tunnel_max_depth" in config:
        depth = int(config["tunnel_max_depth"])
        if not 0 <= depth <= PH_MAX_ENCAP:
            raise ValueError(f"tunnel_max_depth must be between 0 and {PH_MAX_ENCAP}")
        dcfg.tunnel_max_depth = depth
    if "tunnel_max_changes" in config:
        changes = int(config["tunnel_max_changes"])
        if not 0 <= changes <= 255:
            raise ValueError("tunnel_max_changes must be between 0 and 255")
        fcfg.tunnel_max_changes = changes
    if "teredo_dpd" in config:
        dcfg.teredo_dpd = bool(config["teredo_dpd"])
    for name in config.get("tunnel_disable") or ():
        if name not in TUNNEL_NAMES[1:]:
            raise ValueError(f"unknown tunnel type {name!r}; expected one of {', '.join(TUNNEL_NAMES[1:])}")
        dcfg.tunnel_enable[TUNNEL_NAMES.index(name)] = 0
    for name in UDP_TUNNELS:
        ports = config.get(f"{name}_ports")
        if ports is None:
            continue
        ports = [int(p) for p in ports]
        if len(ports) > 4 or not all(1 <= p <= 65535 for p in ports):
            raise ValueError(f"{name}_ports: at most 4 ports between 1 and 65535")
        t = TUNNEL_NAMES.index(name)
        for i in range(4):
            dcfg.tunnel_ports[t][i] = ports[i] if i < len(ports) else 0


def record_layout():
    """(name, kind, elem size, count, offset) of every ph_flow_rec member, as compiled."""
    return [(ph_rec_fields[i].name.decode(), chr(ph_rec_fields[i].kind), ph_rec_fields[i].elem,
             ph_rec_fields[i].count, ph_rec_fields[i].offset) for i in range(PH_REC_NFIELDS)]


def _ns(value):
    return int(round(float(value) * 1e9))


cdef void _ports(uint8_t *bitmap, object ports):
    memset(bitmap, 0, 8192)
    for p in ports:
        p = int(p)
        if 0 <= p <= 65535:
            bitmap[p >> 3] |= <uint8_t>(1 << (p & 7))


cdef extern from "ph_ports.h":
    ctypedef struct ph_zeek_port_reg:
        const char *script
        uint8_t proto
        uint16_t port
    const ph_zeek_port_reg ph_zeek_port_regs[]
    size_t PH_ZEEK_N_PORT_REGS
    const char *const ph_zeek_script_deps[][2]
    size_t PH_ZEEK_N_SCRIPT_DEPS


def zeek_port_registrations():
    """The server ports each Zeek script registers: [(script, ip proto, port)] ("base/init-bare" always
    loads), and the scripts that load others: [(script, also loaded)]."""
    regs = [(ph_zeek_port_regs[i].script.decode(), ph_zeek_port_regs[i].proto, ph_zeek_port_regs[i].port)
            for i in range(PH_ZEEK_N_PORT_REGS)]
    deps = [(ph_zeek_script_deps[i][0].decode(), ph_zeek_script_deps[i][1].decode())
            for i in range(PH_ZEEK_N_SCRIPT_DEPS)]
    return regs, deps


def default_server_ports():
    """Zeek's default likely_server_ports compiled into the core: (tcp, udp) sorted lists."""
    cdef ph_flow_cfg fcfg
    ph_flow_cfg_default(&fcfg)
    tcp = [p for p in range(65536) if fcfg.tcp_server_ports[p >> 3] & (1 << (p & 7))]
    udp = [p for p in range(65536) if fcfg.udp_server_ports[p >> 3] & (1 << (p & 7))]
    return tcp, udp


cdef class _SpareQueue:
    """One export queue given back by a RecordBuffer, for the engine to fill again (so a new
    batch neither allocates nor faults in fresh pages). Shared by an Engine and its buffers;
    touched only with the GIL held."""
    cdef void *p
    cdef size_t cap

    def __dealloc__(self):
        free(self.p)


cdef class RecordBuffer:
    """Flow records handed over by the engine without a copy: a writable bytes-like object
    (buffer protocol, ``len`` in bytes). When the last reference goes, the memory goes back to
    its engine for the next batch (or is freed)."""
    cdef char *p
    cdef Py_ssize_t n
    cdef size_t cap
    cdef _SpareQueue spare

    @staticmethod
    cdef RecordBuffer adopt(void *p, Py_ssize_t n, size_t cap, _SpareQueue spare):
        cdef RecordBuffer b = RecordBuffer.__new__(RecordBuffer)
        b.p = <char *>p
        b.n = n
        b.cap = cap
        b.spare = spare
        return b

    def __dealloc__(self):
        if self.spare is not None and self.spare.p == NULL:
            self.spare.p = self.p
            self.spare.cap = self.cap
        else:
            free(self.p)

    def __len__(self):
        return self.n

    def __getbuffer__(self, Py_buffer *buf, int flags):
        PyBuffer_FillInfo(buf, self, self.p, self.n, 0, flags)

    def __releasebuffer__(self, Py_buffer *buf):
        pass

    def __bytes__(self):
        return self.p[:self.n] if self.n else b""


cdef class Engine:
    """One flow engine: a decoder and a flow table fed with capture bytes.

    config keys (all optional; seconds for times): ignore_checksums, tcp_inactivity,
    udp_inactivity, icmp_inactivity, other_inactivity, active_timeout, emit_updates,
    capacity, cid_seed, first_n, tcp_server_ports, udp_server_ports, vlan_in_key (default true), local_nets
    (list of (addr_bytes16, ipver, prefix)), frag_timeout, frag_max_datagrams, frag_max_bytes,
    dns_session_timeout (Zeek's, 10; 0 = off), tunnels ("zeek" or "strip"), tunnel_max_depth, tunnel_max_changes, teredo_dpd,
    tunnel_disable (names of TUNNEL_NAMES), vxlan_ports, geneve_ports, teredo_ports,
    gtpv1_ports, ayiya_ports (up to 4 ports each).
    """
    cdef ph_engine *e
    cdef object _buf      # keeps the buffer the reader points into alive
    cdef object dtype
    cdef _SpareQueue _spare   # a queue handed over by take_raw and given back (RecordBuffer)

    def __cinit__(self, dict config=None, dtype=None):
        cdef ph_decode_cfg dcfg
        cdef ph_flow_cfg fcfg
        cdef const uint8_t[::1] addr
        config = config or {}
        ph_decode_cfg_default(&dcfg)
        ph_flow_cfg_default(&fcfg)
        ign = bool(config.get("ignore_checksums", False))
        dcfg.ignore_checksums = ign
        fcfg.ignore_checksums = ign
        if "frag_timeout" in config:
            dcfg.frag_timeout_ns = _ns(config["frag_timeout"])
        if "frag_max_datagrams" in config:
            dcfg.frag_max_datagrams = int(config["frag_max_datagrams"])
        if "frag_max_bytes" in config:
            dcfg.frag_max_bytes = int(config["frag_max_bytes"])
        if "tcp_inactivity" in config:
            fcfg.tcp_inactivity_ns = _ns(config["tcp_inactivity"])
        if "udp_inactivity" in config:
            fcfg.udp_inactivity_ns = _ns(config["udp_inactivity"])
        if "icmp_inactivity" in config:
            fcfg.icmp_inactivity_ns = _ns(config["icmp_inactivity"])
        if "other_inactivity" in config:
            fcfg.other_inactivity_ns = _ns(config["other_inactivity"])
        if "active_timeout" in config:
            fcfg.active_timeout_ns = _ns(config["active_timeout"])
        if "dns_session_timeout" in config:
            fcfg.dns_session_ns = _ns(config["dns_session_timeout"])
        if "emit_updates" in config:
            fcfg.emit_updates = bool(config["emit_updates"])
        if "vlan_in_key" in config:
            fcfg.vlan_in_key = bool(config["vlan_in_key"])
        if "capacity" in config:
            fcfg.capacity = int(config["capacity"])
        if "cid_seed" in config:
            fcfg.cid_seed = int(config["cid_seed"])
        if "first_n" in config:
            fcfg.first_n = int(config["first_n"])
        if config.get("tcp_server_ports") is not None:
            _ports(fcfg.tcp_server_ports, config["tcp_server_ports"])
        if config.get("udp_server_ports") is not None:
            _ports(fcfg.udp_server_ports, config["udp_server_ports"])
        nets = config.get("local_nets") or ()
        if len(nets) > PH_MAX_LOCAL_NETS:
            raise ValueError(f"at most {PH_MAX_LOCAL_NETS} local networks are supported")
        for i, (a, ver, prefix) in enumerate(nets):
            addr = a
            ph_glue_set_local_net(&fcfg, i, &addr[0], ver, prefix)
        fcfg.n_local_nets = len(nets)
        _tunnel_config(&dcfg, &fcfg, config)
        self.e = ph_engine_new(&dcfg, &fcfg)
        if self.e == NULL:
            raise MemoryError("cannot allocate the flow engine (capacity too large?)")
        self.dtype = dtype

    def __dealloc__(self):
        if self.e != NULL:
            ph_engine_free(self.e)
            self.e = NULL

    def begin_capture(self):
        """Start a new capture file (the flow table carries on)."""
        ph_engine_begin_capture(self.e)
        self._buf = None

    def feed(self, const uint8_t[::1] buf, bint final, bint file_mapping=False):
        """Give the reader a buffer (kept alive until the next feed). file_mapping: ``buf`` is a whole
        read-only shared mmap of a file, whose pages the engine may drop from the mapping once read."""
        self._buf = buf
        if file_mapping:
            ph_engine_feed_file(self.e, &buf[0] if buf.shape[0] else NULL, buf.shape[0], final)
        else:
            ph_engine_feed(self.e, &buf[0] if buf.shape[0] else NULL, buf.shape[0], final)

    def consumed(self):
        return ph_engine_consumed(self.e)

    def offset(self):
        """Absolute byte offset of the reader in the current capture."""
        return ph_engine_offset(self.e)

    def run(self, size_t batch=65536, uint64_t max_packets=1 << 62):
        """Process packets until `batch` records are queued, `max_packets` were read,
        or the input stops (RUN_*)."""
        cdef int rc
        self._reuse_queue()
        with nogil:
            rc = ph_engine_run(self.e, batch, max_packets)
        return rc

    cdef void _reuse_queue(self):
        if self._spare is not None and self._spare.p != NULL:
            if ph_engine_reuse(self.e, <ph_flow_rec *>self._spare.p, self._spare.cap):
                self._spare.p = NULL

    def feed_packet(self, const uint8_t[::1] data, int64_t ts_ns, uint32_t linktype=1, uint32_t mirror_id=0):
        """Process one packet given as bytes (live sources; tests). mirror_id: 0, or the VNI + 1 of a
        mirroring session the caller already took apart (keyed with the flow, as in strip mode)."""
        cdef ph_pkt pkt
        cdef int rc
        memset(&pkt, 0, sizeof(pkt))
        pkt.data = &data[0] if data.shape[0] else NULL
        pkt.caplen = pkt.wirelen = data.shape[0]
        pkt.ts_ns = ts_ns
        pkt.linktype = linktype
        pkt.mirror_id = mirror_id
        with nogil:
            rc = ph_engine_packet(self.e, &pkt)
        if rc == PH_RUN_NOMEM:
            raise MemoryError("out of memory growing the export queue")

    def error(self):
        """(message, byte offset) of the last PH_RUN_ERROR."""
        return (self.e.err.msg.decode("utf-8", "replace"), self.e.err.offset)

    def advance(self, int64_t now_ns):
        with nogil:
            ph_engine_advance(self.e, now_ns)

    def finish(self, int reason=0, size_t max_records=0):
        """End of input: export the open flows, oldest first -- all of them, or with max_records
        at most that many per call (take them between calls). Returns how many are left (0: done);
        a run, packet or advance call ends a flush under way."""
        cdef size_t left
        self._reuse_queue()
        with nogil:
            left = ph_engine_finish_step(self.e, reason, max_records)
        return left

    def take_raw(self, size_t max_records=0):
        """Queued records (the oldest max_records of them if not 0), removed from the queue, as a
        writable bytes-like object of RECORD_SIZE-byte records: the queue itself (a RecordBuffer, no
        copy) when all of it is taken, else a new bytearray."""
        cdef size_t n, cap
        cdef ph_flow_rec *whole
        cdef const ph_flow_rec *q = ph_engine_queue(self.e, &n)
        if n and (not max_records or n <= max_records):
            whole = ph_engine_detach(self.e, &n, &cap)
            if whole != NULL:
                if self._spare is None:
                    self._spare = _SpareQueue()
                return RecordBuffer.adopt(whole, n * PH_REC_SIZE, cap, self._spare)
            q = ph_engine_queue(self.e, &n)
        if max_records and n > max_records:
            n = max_records
        raw = PyByteArray_FromStringAndSize(<const char *>q if n else NULL, n * PH_REC_SIZE)
        ph_engine_consume(self.e, n)
        return raw

    def take(self):
        """Queued records as a new numpy structured array (the queue is emptied)."""
        import numpy as np
        if self.dtype is None:
            from pyhunt.schema import dtype
            self.dtype = dtype()
        return np.frombuffer(self.take_raw(), dtype=self.dtype)

    def queued(self):
        return ph_engine_queued(self.e)

    def counters(self):
        """Every PH_C_* counter by name."""
        return {COUNTER_NAMES[i]: self.e.counters[i] for i in range(PH_C__COUNT)}

    def active_flows(self):
        return ph_flowtab_active(self.e.tab)

    def table_memory(self):
        return ph_flowtab_memory(self.e.tab)

    property pipeline:
        """How run() reads a buffered input: "auto" (a helper thread reads and decodes while this
        thread updates the table, with >= 2 CPUs and >= 4 MiB buffered), "on" (any input, >= 2
        CPUs) or "off" (one thread). The output is the same either way; tests compare them."""
        def __get__(self):
            return _PIPE_NAMES[self.e.pipeline]
        def __set__(self, str mode):
            if mode not in _PIPE_NAMES:
                raise ValueError(f"pipeline must be one of {', '.join(_PIPE_NAMES)}, not {mode!r}")
            self.e.pipeline = _PIPE_NAMES.index(mode)

    def ids_deferred(self):
        """Records whose flow_id and community_id the reading thread computed (pipelined runs with
        the table side behind, as in a flood; a diagnostic, ext/ph_engine.c)."""
        return self.e.ids_deferred


_PIPE_NAMES = ["off", "auto", "on"]   # PH_PIPE_OFF, _AUTO, _ON (ext/ph_engine.h)

FORMATS = {"ecs": 0, "zeek-json": 1, "zeek-tsv": 2}


def format_records(recs not None, str fmt, observer=None, dataset=None):
    """Serialize records to NDJSON/TSV bytes, in C: a contiguous numpy array of pyhunt.schema's
    dtype, or a bytes-like object of whole records (Engine.take_raw)."""
    cdef ph_buf out
    cdef ph_format_opts opts
    cdef int rc, code
    cdef size_t n
    cdef const ph_flow_rec *data
    cdef Py_buffer view
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    dt = getattr(recs, "dtype", None)
    if dt is not None and (dt.itemsize != PH_REC_SIZE or not recs.flags.c_contiguous):
        raise ValueError("records must be a contiguous array of pyhunt.schema.dtype()")
    code = FORMATS[fmt]
    cdef bytes obs = observer.encode() if observer else b""
    cdef bytes ds = dataset.encode() if dataset else b""
    opts.observer_name = NULL
    opts.dataset = NULL
    if observer:
        opts.observer_name = obs
    if dataset:
        opts.dataset = ds
    PyObject_GetBuffer(recs, &view, PyBUF_ANY_CONTIGUOUS)
    try:
        if view.len % PH_REC_SIZE:
            raise ValueError(f"records must be whole {PH_REC_SIZE}-byte records; got {view.len} bytes")
        n = <size_t>view.len // PH_REC_SIZE
        data = <const ph_flow_rec *>view.buf
        memset(&out, 0, sizeof(out))
        with nogil:
            rc = ph_format_records(&out, code, data, n, &opts)
    finally:
        PyBuffer_Release(&view)
    try:
        if rc != 0:
            raise MemoryError("out of memory while serializing flows")
        return out.data[:out.len] if out.len else b""
    finally:
        ph_buf_free(&out)


ctypedef int (*tsv_meta_fn)(ph_buf *out, const char *when)


cdef bytes _tsv_meta(tsv_meta_fn fn, str when):
    cdef ph_buf out
    memset(&out, 0, sizeof(out))
    t = when.encode()
    try:
        if fn(&out, t) != 0:
            raise MemoryError("out of memory while writing a TSV header")
        return out.data[:out.len]
    finally:
        ph_buf_free(&out)


def tsv_header(str open_time):
    """Zeek's TSV header lines (#separator ... #types) with #open time open_time."""
    return _tsv_meta(ph_format_tsv_header, open_time)


def tsv_footer(str close_time):
    """Zeek's #close line."""
    return _tsv_meta(ph_format_tsv_footer, close_time)


def uid(uint64_t flow_id):
    """The uid / Elasticsearch _id string of a flow id."""
    cdef char out[16]
    ph_format_uid(flow_id, out)
    return out.decode()


def community_id(int ipver, int proto, bytes saddr, bytes daddr, int sport, int dport, int seed=0):
    """Community ID v1 of one tuple (addresses as packed bytes; ICMP: type, code as ports)."""
    cdef uint8_t s[16]
    cdef uint8_t d[16]
    cdef uint8_t dig[20]
    cdef char out[32]
    memset(s, 0, 16)
    memset(d, 0, 16)
    memcpy(s, <const char *>saddr, min(len(saddr), 16))
    memcpy(d, <const char *>daddr, min(len(daddr), 16))
    ph_cid_digest(seed, ipver, proto, s, d, sport, dport, dig)
    ph_cid_b64(dig, out)
    return out.decode()


include "_live.pxi"
