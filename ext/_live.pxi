# Live sources (ext/ph_live.c), included at the end of _ext.pyx so that the
# classes below reach Engine's C engine (Engine.e). Both run the capture loop
# in C without the GIL; Python sees flows in batches, as with files.

cdef extern from "ph_live.h":
    enum: PH_LIVE_BATCH
    enum: PH_LIVE_TIMEOUT
    enum: PH_LIVE_ERROR
    enum: PH_LIVE_NOMEM
    enum: PH_LIVE_ENOTSUP
    enum: PH_TUN_VXLAN
    enum: PH_TUN_GENEVE
    ctypedef struct ph_live_cfg:
        const char *ifname
        uint32_t block_size
        uint32_t block_count
        uint32_t frame_size
        uint32_t retire_ms
        int fanout_group
        int fanout_defrag
        int promisc
        const void *filter
        uint32_t filter_len
    ctypedef struct ph_live_stats:
        uint64_t packets
        uint64_t bytes
        uint64_t truncated
        uint64_t vlan_restored
        uint64_t blocks
        uint64_t kernel_packets
        uint64_t kernel_drops
        uint64_t kernel_freezes
        uint64_t datagrams
        uint64_t tunnel_bad
        uint64_t tunnel_unsupported
        uint64_t recv_errors
    ctypedef struct ph_live:
        pass
    void ph_live_cfg_default(ph_live_cfg *cfg)
    int ph_live_linktype(const char *ifname, char *err, size_t errlen)
    ph_live *ph_live_open_ring(const ph_live_cfg *cfg, int *code, char *err, size_t errlen)
    ph_live *ph_live_open_tunnel(int kind, const char *addr, uint16_t port, int *code,
                                 char *err, size_t errlen)
    int ph_live_run(ph_live *l, ph_engine *e, int timeout_ms, size_t batch) nogil
    void ph_live_stats_get(ph_live *l, ph_live_stats *out)
    const char *ph_live_error(const ph_live *l)
    uint16_t ph_live_port(const ph_live *l)
    int ph_live_linktype_of(const ph_live *l)
    void ph_live_close(ph_live *l)

LIVE_BATCH = PH_LIVE_BATCH
LIVE_TIMEOUT = PH_LIVE_TIMEOUT
TUNNEL_KINDS = {"vxlan": PH_TUN_VXLAN, "geneve": PH_TUN_GENEVE}
TUNNEL_PORTS = {"vxlan": 4789, "geneve": 6081}


class LiveCaptureError(OSError):
    """A live source could not be opened or stopped working (one clear line)."""


def interface_linktype(str interface not None):
    """pcap LINKTYPE of the frames a packet socket gives on `interface` (1 Ethernet, 101 raw IP)."""
    cdef char err[256]
    err[0] = 0
    cdef bytes name = interface.encode()
    cdef int lt = ph_live_linktype(name, err, sizeof(err))
    if lt < 0:
        raise LiveCaptureError(err.decode("utf-8", "replace"))
    return lt


cdef dict _stats_dict(ph_live_stats *s):
    return {"packets": s.packets, "bytes": s.bytes, "truncated": s.truncated,
            "vlan_restored": s.vlan_restored, "blocks": s.blocks,
            "kernel_packets": s.kernel_packets, "kernel_drops": s.kernel_drops,
            "kernel_freezes": s.kernel_freezes, "datagrams": s.datagrams,
            "tunnel_bad": s.tunnel_bad, "tunnel_unsupported": s.tunnel_unsupported,
            "recv_errors": s.recv_errors}


cdef dict _stats_dict_zero():
    cdef ph_live_stats s
    memset(&s, 0, sizeof(s))
    return _stats_dict(&s)


cdef class _LiveSource:
    """What both live sources share: the C source, run(), stats(), close().

    run() may be called from any one thread at a time; close() from another thread while
    run() is working closes the source when that run() returns (at most timeout_ms later).
    """
    cdef ph_live *l
    cdef object name
    cdef bint running
    cdef bint close_pending
    cdef dict last_stats

    def __dealloc__(self):
        if self.l != NULL:
            ph_live_close(self.l)
            self.l = NULL

    cdef ph_live *_open(self) except NULL:
        if self.l == NULL or self.close_pending:
            raise LiveCaptureError(f"{self.name}: closed")
        return self.l

    def run(self, Engine engine not None, int timeout_ms=1000, size_t batch=4096):
        """Feed packets to `engine` until it holds `batch` flow records (LIVE_BATCH) or
        `timeout_ms` passes (LIVE_TIMEOUT); the engine's timers follow the wall clock
        while no packet comes. Flows are then in engine.take()."""
        cdef ph_live *l = self._open()
        cdef int rc
        if self.running:
            raise RuntimeError(f"{self.name}: run() is already working in another thread")
        self.running = True
        try:
            with nogil:
                rc = ph_live_run(l, engine.e, timeout_ms, batch)
        finally:
            self.running = False
            if self.close_pending:
                self.close()
        if rc == PH_LIVE_NOMEM:
            raise MemoryError("out of memory in the flow engine")
        if rc < 0:
            raise LiveCaptureError(f"{self.name}: {ph_live_error(l).decode('utf-8', 'replace')}"
                                   if self.l != NULL else f"{self.name}: closed")
        return rc

    def stats(self):
        """Counters of the source (the kernel's for a ring, accumulated since open); after
        close(), their last values."""
        cdef ph_live_stats s
        if self.l == NULL:
            return dict(self.last_stats) if self.last_stats is not None else _stats_dict_zero()
        memset(&s, 0, sizeof(s))
        ph_live_stats_get(self.l, &s)
        return _stats_dict(&s)

    def close(self):
        """Release the socket (and the ring); deferred while run() works in another thread."""
        if self.l == NULL:
            return
        if self.running:
            self.close_pending = True
            return
        self.last_stats = self.stats()
        ph_live_close(self.l)
        self.l = NULL
        self.close_pending = False

    @property
    def closed(self):
        return self.l == NULL or self.close_pending

    @property
    def linktype(self):
        return ph_live_linktype_of(self._open())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<{type(self).__name__} {self.name}{' closed' if self.closed else ''}>"


cdef class LiveCapture(_LiveSource):
    """AF_PACKET capture of one interface with a TPACKET_V3 ring (Linux; root or
    CAP_NET_RAW + CAP_NET_ADMIN).

    block_size, block_count, frame_size, retire_ms: the ring (docs/live-capture.md).
    fanout_group: PACKET_FANOUT group id (hash mode) shared by the worker processes
    of one interface, or None; fanout_defrag: the kernel reassembles IPv4 fragments
    before hashing, so they reach the worker of their flow. bpf_filter: tcpdump syntax (compiled with libpcap
    through ctypes, see pyhunt.bpf) or an already compiled program (bytes of
    struct sock_filter). promisc: put the interface in promiscuous mode.
    """
    cdef readonly str interface
    cdef readonly object fanout_group
    cdef readonly object bpf_filter

    def __cinit__(self, str interface not None, *, uint32_t block_size=1 << 18,
                  uint32_t block_count=256, uint32_t frame_size=2048, uint32_t retire_ms=10,
                  fanout_group=None, bint fanout_defrag=True, bpf_filter=None, bint promisc=True):
        cdef ph_live_cfg cfg
        cdef char err[256]
        cdef int code = 0
        cdef bytes prog = b""
        cdef bytes name = interface.encode()
        err[0] = 0
        self.interface = interface
        self.name = interface
        self.fanout_group = fanout_group
        self.bpf_filter = bpf_filter
        ph_live_cfg_default(&cfg)
        cfg.ifname = name
        cfg.block_size = block_size
        cfg.block_count = block_count
        cfg.frame_size = frame_size
        cfg.retire_ms = retire_ms
        cfg.promisc = promisc
        cfg.fanout_defrag = fanout_defrag
        if fanout_group is not None:
            if not 0 <= int(fanout_group) <= 65535:
                raise ValueError("fanout_group must be between 0 and 65535")
            cfg.fanout_group = int(fanout_group)
        if isinstance(bpf_filter, str) and bpf_filter.strip():
            from pyhunt.bpf import compile_filter
            prog = compile_filter(bpf_filter, interface_linktype(interface))
        elif isinstance(bpf_filter, (bytes, bytearray)):
            prog = bytes(bpf_filter)
            if len(prog) % 8:
                raise ValueError("a compiled BPF program is a multiple of 8 bytes (struct sock_filter)")
        elif bpf_filter is not None and not isinstance(bpf_filter, str):
            raise TypeError("bpf_filter must be a str (tcpdump syntax) or bytes (compiled)")
        if prog:
            cfg.filter = <const char *>prog
            cfg.filter_len = len(prog) // 8
        self.l = ph_live_open_ring(&cfg, &code, err, sizeof(err))
        if self.l == NULL:
            raise LiveCaptureError(f"{interface}: {err.decode('utf-8', 'replace')}")


cdef class TunnelListener(_LiveSource):
    """VXLAN or GENEVE over UDP (mirrored traffic; no privileges needed): each
    datagram's inner Ethernet frame goes to the engine. port None: the kind's IANA
    port (4789, 6081); 0: any free port (see .port)."""
    cdef readonly str kind
    cdef readonly str bind

    def __cinit__(self, port=None, str kind="vxlan", str bind="0.0.0.0"):
        cdef char err[256]
        cdef int code = 0
        err[0] = 0
        if kind not in TUNNEL_KINDS:
            raise ValueError(f"unknown tunnel kind {kind!r}; expected vxlan or geneve")
        if port is None:
            port = TUNNEL_PORTS[kind]
        if not 0 <= int(port) <= 65535:
            raise ValueError("port must be between 0 and 65535")
        self.kind = kind
        self.bind = bind
        cdef bytes addr = bind.encode()
        self.l = ph_live_open_tunnel(TUNNEL_KINDS[kind], addr, <uint16_t>int(port), &code,
                                     err, sizeof(err))
        if self.l == NULL:
            raise LiveCaptureError(err.decode("utf-8", "replace"))
        self.name = f"{kind} listener {bind} port {ph_live_port(self.l)}"

    @property
    def port(self):
        """The bound UDP port."""
        return ph_live_port(self._open())
