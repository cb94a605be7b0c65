# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""The machine's floor for the benchmark: compiled loops over the same bytes.

floor.cc, next to this file, is compiled on first use with the C++ compiler
that builds extensions for this Python (the one setup.py's build uses; $CXX
overrides it) at -O3 -march=native: the floor is this machine's, not a
portable build's. The library is cached under build/benchmark_floor/ at the
repository root (or $MONOLITH_OPS_FLOOR_CACHE), keyed by a hash of the
source, the compiler and the flags. It is loaded with ctypes, which releases
the GIL during every call, and times itself: a pass is timed in C++ from the
dispatch to its threads to the end of the last one, on a pool of threads
started once.

Every loop runs over buffers in two kinds of memory (MEMORY), side by side:

  tensor  as TensorFlow's CPU allocator gets its tensors: 64-byte aligned
          from the C library, no advice, so in the system's default pages
          (4 KiB unless transparent huge pages are "always")
  huge    a mapping advised MADV_HUGEPAGE: huge pages unless transparent
          huge pages are "never" (or the kernel has none to give)

Reading 4 KiB pages costs more than reading huge ones (a TLB miss every 4 KiB;
the hardware prefetcher stops at each page's end): the tensor floor is the
one an op reading TensorFlow's tensors is held to, the huge floor what the
same loops reach when the pages are no obstacle.

Loops (each on 1 thread and on the benchmark's thread count, in each memory):

  read_max     the max of the floats                 reads 4 bytes/element
  sumsq_f32    sum of squares, float lanes            reads 4 bytes/element
  sumsq_f64    sum of squares, widened to double      (reference, not a floor)
  scale_out    x * s into a second buffer             reads 4, writes 4
  scale_stream the same with streaming stores         reads 4, writes 4
  scale_inplace  x *= s                               reads 4, writes 4

The read floor is the fastest of read_max and sumsq_f32; the read+write floor
the fastest of the three scaling loops, each in each memory. A variant's name
is floor:<memory>:<loop>:<threads>, e.g. floor:tensor:read_max:2 and
floor:huge:read_max:2 (CompiledFloor.variant, parse_variant).
"""

import ctypes
import hashlib
import os
import platform
import shlex
import subprocess
import sysconfig
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "floor.cc")
CACHE_ENV = "MONOLITH_OPS_FLOOR_CACHE"
DEFAULT_CACHE = os.path.join(os.path.dirname(HERE), "build", "benchmark_floor")

LOOPS = {
    "empty": 0,
    "read_max": 1,
    "sumsq_f32": 2,
    "sumsq_f64": 3,
    "scale_out": 4,
    "scale_stream": 5,
    "scale_inplace": 6,
}
READ_LOOPS = ("read_max", "sumsq_f32")
WRITE_LOOPS = ("scale_out", "scale_stream", "scale_inplace")
REFERENCE_LOOPS = ("sumsq_f64",)
TIMED_LOOPS = READ_LOOPS + REFERENCE_LOOPS + WRITE_LOOPS
# The kinds of memory the buffers lie in (floor.cc's Memory).
TENSOR_PAGES = "tensor"
HUGE_PAGES = "huge"
MEMORY = {TENSOR_PAGES: 0, HUGE_PAGES: 1}


def compiler():
    """The C++ compiler command, as a list: $CXX, else the one Python's
    build of extensions uses (what setuptools, and so setup.py, runs)."""
    cxx = os.environ.get("CXX") or sysconfig.get_config_var("CXX") or "c++"
    return shlex.split(cxx)


def flags():
    """Compile and link flags: setup.py's -O3 -fPIC, tuned to this machine."""
    out = ["-O3", "-fPIC", "-std=c++17", "-march=native", "-shared", "-pthread"]
    if platform.machine().lower() in ("x86_64", "amd64"):
        # Full-width AVX-512 where there is some (gcc and clang otherwise
        # prefer 256-bit vectors on most AVX-512 parts).
        out.append("-mprefer-vector-width=512")
    return out


def _cache_dir():
    return os.environ.get(CACHE_ENV) or DEFAULT_CACHE


def library_path():
    """Builds floor.cc unless a matching build is cached; returns its path."""
    with open(SOURCE, "rb") as f:
        source = f.read()
    cmd = compiler()
    version = subprocess.run(
        cmd + ["--version"], capture_output=True, text=True, check=False
    ).stdout.split("\n")[0]
    key = hashlib.sha256(
        b"\0".join(
            [
                source,
                " ".join(cmd).encode(),
                " ".join(flags()).encode(),
                version.encode(),
                platform.machine().encode(),
            ]
        )
    ).hexdigest()[:16]
    cache = _cache_dir()
    path = os.path.join(cache, f"floor-{key}.so")
    if os.path.exists(path):
        return path
    os.makedirs(cache, exist_ok=True)
    # Compiled to a temporary name, then renamed: concurrent first uses each
    # build and the last rename wins, never a half-written library.
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=cache)
    os.close(fd)
    try:
        result = subprocess.run(
            cmd + flags() + [SOURCE, "-o", tmp], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"building the benchmark's floor failed: "
                f"{' '.join(cmd + flags() + [SOURCE, '-o', tmp])}\n"
                f"{result.stderr}"
            )
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


_LIB = None


def load():
    """The floor library (ctypes.CDLL: the GIL is released in every call)."""
    global _LIB  # pylint: disable=global-statement
    if _LIB is None:
        lib = ctypes.CDLL(library_path())
        lib.floor_new.argtypes = [ctypes.c_int64, ctypes.c_int]
        lib.floor_new.restype = ctypes.c_void_p
        lib.floor_free.argtypes = [ctypes.c_void_p]
        lib.floor_free.restype = None
        lib.floor_run.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.floor_run.restype = ctypes.c_double
        lib.floor_sink.argtypes = [ctypes.c_void_p]
        lib.floor_sink.restype = ctypes.c_double
        lib.floor_pool_size.argtypes = [ctypes.c_void_p]
        lib.floor_pool_size.restype = ctypes.c_int
        _LIB = lib
    return _LIB


class SelfTimed:
    """A benchmark variant that times itself: calling it returns seconds."""

    self_timed = True

    def __init__(self, fn):
        self._fn = fn

    def __call__(self):
        return self._fn()


class CompiledFloor:
    """Buffers of `num_elements` floats in each memory of MEMORY, and a pool
    of `threads` threads."""

    def __init__(self, num_elements, threads):
        self.lib = load()
        self.num_elements = max(int(num_elements), 1)
        self.threads = max(int(threads), 1)
        self.handle = self.lib.floor_new(self.num_elements, self.threads)
        if not self.handle:
            raise MemoryError(f"floor buffers of {self.num_elements} floats")

    def thread_counts(self):
        """1 and the pool's size: the floor is the faster of the two."""
        return sorted({1, self.threads})

    def run(self, memory, loop, threads):
        """One pass of `loop` on `threads` threads over the buffers in
        `memory`; returns its seconds."""
        seconds = self.lib.floor_run(self.handle, LOOPS[loop], threads, MEMORY[memory])
        if seconds < 0:
            raise ValueError(f"floor loop {loop} on {threads} threads")
        return seconds

    @staticmethod
    def variant(memory, loop, threads):
        """The benchmark's name for `loop` on `threads` threads in `memory`."""
        return f"floor:{memory}:{loop}:{threads}"

    def callables(self):
        """{variant name: SelfTimed pass}, every loop on every thread count
        in every memory."""
        return {
            self.variant(m, loop, t): SelfTimed(lambda m=m, loop=loop, t=t: self.run(m, loop, t))
            for m in MEMORY
            for loop in TIMED_LOOPS
            for t in self.thread_counts()
        }

    def sink(self):
        return self.lib.floor_sink(self.handle)

    def close(self):
        if self.handle:
            self.lib.floor_free(self.handle)
            self.handle = None


def parse_variant(name):
    """(memory, loop, threads) of a variant name from CompiledFloor.variant."""
    _, memory, loop, threads = name.split(":")
    return memory, loop, int(threads)
