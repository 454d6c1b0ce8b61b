"""The C stage drivers and floors (benchmarks/c/phbench.c), built on demand and called with ctypes.

The library is compiled with the system C compiler from benchmarks/c/phbench.c and the engine's own
reading/decoding layers (ext/ph_capture.c, ph_decode.c, ph_tunnel.c, ph_frag.c, ph_csum.c), with the optimisation flags of
setup.py, and cached under the benchmark directory keyed by a hash of those sources and flags (so
an engine change rebuilds it). ctypes releases the GIL during the call; the call's wall time is
what pytest-benchmark measures.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import pathlib
import shutil
import subprocess

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXT = ROOT / "ext"
SOURCES = [ROOT / "benchmarks" / "c" / "phbench.c"] + [EXT / f for f in
                                                        ("ph_capture.c", "ph_decode.c", "ph_tunnel.c", "ph_frag.c",
                                                         "ph_csum.c")]
CFLAGS = ["-O3", "-g", "-DNDEBUG", "-std=c11", "-D_GNU_SOURCE", "-fno-strict-aliasing", "-fPIC", "-shared"]


class Result(ctypes.Structure):
    _fields_ = [("packets", ctypes.c_uint64), ("bytes", ctypes.c_uint64), ("ok", ctypes.c_uint64),
                ("flows", ctypes.c_uint64), ("check", ctypes.c_uint64), ("seconds", ctypes.c_double)]


class BuildError(Exception):
    """No C compiler, or the sources do not compile."""


def _key() -> str:
    h = hashlib.sha1(" ".join(CFLAGS).encode())
    for p in SOURCES + sorted(EXT.glob("*.h")):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:12]


def build(cache_dir: pathlib.Path) -> pathlib.Path:
    """Compile the library into cache_dir (once per source version) and return its path."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise BuildError("no C compiler (cc/gcc) on PATH")
    out = cache_dir / f"libphbench-{_key()}.so"
    if out.exists():
        return out
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    cmd = [cc, *CFLAGS, f"-I{EXT}", "-o", str(tmp), *map(str, SOURCES)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise BuildError(f"{' '.join(cmd)} failed:\n{r.stderr[-2000:]}")
    os.replace(tmp, out)
    return out


class Stages:
    """ctypes face of libphbench: each method returns a Result, or raises OSError."""

    def __init__(self, lib_path: pathlib.Path):
        self.lib = ctypes.CDLL(str(lib_path))
        for name in ("phb_cat", "phb_touch", "phb_read", "phb_probe"):
            fn = getattr(self.lib, name)
            fn.argtypes = [ctypes.c_char_p, ctypes.POINTER(Result)]
            fn.restype = ctypes.c_int
        self.lib.phb_decode.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(Result)]
        self.lib.phb_decode.restype = ctypes.c_int

    def _call(self, name: str, path: str, *args) -> Result:
        r = Result()
        if getattr(self.lib, name)(os.fsencode(path), *args, ctypes.byref(r)) != 0:
            raise OSError(f"{name} failed on {path}")
        return r

    def cat(self, path: str) -> Result:
        return self._call("phb_cat", path)

    def touch(self, path: str) -> Result:
        return self._call("phb_touch", path)

    def read(self, path: str) -> Result:
        return self._call("phb_read", path)

    def decode(self, path: str, ignore_checksums: bool = False) -> Result:
        return self._call("phb_decode", path, int(ignore_checksums))

    def probe(self, path: str) -> Result:
        return self._call("phb_probe", path)
