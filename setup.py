"""Build the pyhunt C extension (ext/) with its thin Cython binding.

Environment switches (read here, so `pip install .` needs nothing else):
  PYHUNT_SANITIZE=1   build with AddressSanitizer + UndefinedBehaviorSanitizer
  PYHUNT_DEBUG=1      -O0 -g3, assertions on
  PYHUNT_COVERAGE=1   gcov instrumentation
  PYHUNT_NATIVE=1     -march=native (not for wheels you ship elsewhere)
"""
import glob
import os

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "false", "no")


cflags = ["-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-unused-function",
          "-fno-strict-aliasing", "-D_GNU_SOURCE", "-DNPY_NO_DEPRECATED_API=NPY_1_7_API_VERSION"]
ldflags = []
if _flag("PYHUNT_DEBUG"):
    cflags += ["-O0", "-g3"]
else:
    cflags += ["-O3", "-g", "-DNDEBUG"]
if _flag("PYHUNT_SANITIZE"):
    san = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer"]
    cflags += san + ["-O1", "-g"]
    ldflags += san
if _flag("PYHUNT_COVERAGE"):
    cflags += ["--coverage", "-O0"]
    ldflags += ["--coverage"]
if _flag("PYHUNT_NATIVE"):
    cflags += ["-march=native"]

# ext/ph_live.c (live capture, VXLAN/GENEVE listener) is among them: on Linux it holds AF_PACKET
# and recvmmsg code; elsewhere it compiles to stubs whose open calls fail with "needs Linux", so the
# rest of the extension builds and works everywhere. libpcap is not linked (pyhunt/bpf.py, ctypes).
sources = ["ext/_ext.pyx"] + sorted(glob.glob("ext/ph_*.c"))

ext = Extension(
    "pyhunt._ext",
    sources=sources,
    include_dirs=["ext", numpy.get_include()],
    extra_compile_args=cflags,
    extra_link_args=ldflags,
    depends=sorted(glob.glob("ext/*.h")),
)

setup(ext_modules=cythonize([ext], language_level=3, compiler_directives={"embedsignature": True}))
