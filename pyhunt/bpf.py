"""Compile a tcpdump-syntax filter to classic BPF with the system's libpcap.

libpcap is loaded with ctypes at run time (Debian: ``apt-get install libpcap0.8``)
so that it stays out of the build: only a capture with a filter needs it. The
program comes back as bytes of ``struct sock_filter`` (the kernel's layout, the
same as libpcap's ``struct bpf_insn``), ready for SO_ATTACH_FILTER.
"""
from __future__ import annotations

import ctypes
import ctypes.util

__all__ = ["BpfError", "compile_filter", "load_libpcap"]

# pcap_open_dead takes DLT_ values; ours are pcap LINKTYPE_ values
_DLT = {1: 1, 101: 12}          # Ethernet; raw IP (DLT_RAW is 12 on Linux)
_SNAPLEN = 262144
_NETMASK_UNKNOWN = 0xFFFFFFFF
_NAMES = ("libpcap.so.1", "libpcap.so.0.8", "libpcap.so")


class BpfError(ValueError):
    """The filter cannot be compiled (bad syntax) or libpcap is missing."""


class _Insn(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                ("k", ctypes.c_uint32)]


class _Program(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.POINTER(_Insn))]


_lib: ctypes.CDLL | None = None


def load_libpcap(names: tuple[str, ...] = _NAMES) -> ctypes.CDLL:
    """The libpcap shared library (cached), or BpfError saying how to install it."""
    global _lib
    if _lib is not None and names == _NAMES:
        return _lib
    found = ctypes.util.find_library("pcap")
    for name in names + ((found,) if found and names == _NAMES else ()):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        lib.pcap_open_dead.restype = ctypes.c_void_p
        lib.pcap_open_dead.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.pcap_compile.restype = ctypes.c_int
        lib.pcap_compile.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Program), ctypes.c_char_p,
                                     ctypes.c_int, ctypes.c_uint32]
        lib.pcap_geterr.restype = ctypes.c_char_p
        lib.pcap_geterr.argtypes = [ctypes.c_void_p]
        lib.pcap_freecode.restype = None
        lib.pcap_freecode.argtypes = [ctypes.POINTER(_Program)]
        lib.pcap_close.restype = None
        lib.pcap_close.argtypes = [ctypes.c_void_p]
        if names == _NAMES:
            _lib = lib
        return lib
    raise BpfError("a BPF filter needs libpcap, which is not installed "
                   "(Debian/Ubuntu: apt-get install libpcap0.8; Fedora: dnf install libpcap)")


def compile_filter(expression: str, linktype: int = 1, *, lib: ctypes.CDLL | None = None) -> bytes:
    """Classic BPF for `expression` on frames of pcap `linktype` (1 Ethernet, 101 raw IP)."""
    if linktype not in _DLT:
        raise BpfError(f"cannot compile a filter for link type {linktype}")
    pcap = lib if lib is not None else load_libpcap()
    handle = pcap.pcap_open_dead(_DLT[linktype], _SNAPLEN)
    if not handle:
        raise BpfError("libpcap: pcap_open_dead failed")
    prog = _Program()
    try:
        if pcap.pcap_compile(handle, ctypes.byref(prog), expression.encode(), 1, _NETMASK_UNKNOWN) != 0:
            why = (pcap.pcap_geterr(handle) or b"").decode("utf-8", "replace")
            raise BpfError(f"BPF filter {expression!r} does not compile: {why}")
        try:
            if prog.bf_len == 0 or prog.bf_len > 4096:
                raise BpfError(f"BPF filter {expression!r} compiles to {prog.bf_len} instructions "
                               "(the kernel takes 1 to 4096)")
            return ctypes.string_at(prog.bf_insns, prog.bf_len * ctypes.sizeof(_Insn))
        finally:
            pcap.pcap_freecode(ctypes.byref(prog))
    finally:
        pcap.pcap_close(handle)
