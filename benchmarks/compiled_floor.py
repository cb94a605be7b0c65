# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""The compiled floor: floor.cc's loops, built for this machine on first use.

floor.cc is compiled with the C++ compiler that builds extensions for this
Python ($CXX overrides it) at -O3 -march=native, and cached under
build/benchmark_floor/ at the repository root ($MONOLITH_OPS_FLOOR_CACHE
overrides it), keyed by a hash of the source, the compiler and the flags.
It is called through ctypes, which releases the GIL, and times itself.
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
DEFAULT_CACHE = os.path.join(os.path.dirname(HERE), "build", "benchmark_floor")
LOOPS = {"norm": 0, "clip": 1, "clip_stream": 2, "clip_inplace": 3}
# The optimizer loops: the norm's read, then the update of a variable and its
# slots (allocated on their first run).
LOOPS.update({"sgd": 4, "adagrad": 5, "adam": 6})


def compiler():
    return shlex.split(os.environ.get("CXX") or sysconfig.get_config_var("CXX") or "c++")


def flags():
    # -fno-math-errno: sqrt in a loop vectorizes, as in TensorFlow's kernels.
    out = ["-O3", "-fPIC", "-std=c++17", "-march=native", "-shared", "-pthread", "-fno-math-errno"]
    if platform.machine().lower() in ("x86_64", "amd64"):
        out.append("-mprefer-vector-width=512")  # full-width AVX-512 where there is some
    return out


def library_path():
    """Builds floor.cc unless a matching build is cached; returns its path."""
    with open(SOURCE, "rb") as f:
        source = f.read()
    cmd = compiler()
    version = subprocess.run(cmd + ["--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256(
        b"\0".join(
            s.encode() if isinstance(s, str) else s for s in [source, *cmd, *flags(), version]
        )
    ).hexdigest()[:16]
    cache = os.environ.get("MONOLITH_OPS_FLOOR_CACHE") or DEFAULT_CACHE
    path = os.path.join(cache, f"floor-{key}.so")
    if os.path.exists(path):
        return path
    os.makedirs(cache, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=cache)
    os.close(fd)
    try:
        build = cmd + flags() + [SOURCE, "-o", tmp]
        result = subprocess.run(build, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(
                f"building the compiled floor failed: {' '.join(build)}\n{result.stderr}"
            )
        os.replace(tmp, path)  # concurrent builds: the last rename wins, never a partial file
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


class CompiledFloor:
    """Buffers of `num_elements` floats and a pool of `threads` threads."""

    def __init__(self, num_elements, threads):
        lib = ctypes.CDLL(library_path())
        lib.floor_new.argtypes = [ctypes.c_int64, ctypes.c_int]
        lib.floor_new.restype = ctypes.c_void_p
        lib.floor_free.argtypes = [ctypes.c_void_p]
        lib.floor_run.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        lib.floor_run.restype = ctypes.c_double
        lib.floor_result.argtypes = [ctypes.c_void_p]
        lib.floor_result.restype = ctypes.c_double
        self.lib = lib
        self.threads = max(int(threads), 1)
        self.handle = lib.floor_new(max(int(num_elements), 1), self.threads)
        if not self.handle:
            raise MemoryError(f"floor buffers of {num_elements} floats")

    def run(self, loop, threads):
        """One pass of `loop` (of LOOPS) on `threads` threads; its seconds."""
        seconds = self.lib.floor_run(self.handle, LOOPS[loop], threads)
        if seconds < 0:
            raise ValueError(f"floor loop {loop} on {threads} threads")
        return seconds

    def result(self):
        """The last pass's norm (plus one output element after a clip)."""
        return self.lib.floor_result(self.handle)

    def close(self):
        if self.handle:
            self.lib.floor_free(self.handle)
            self.handle = None
