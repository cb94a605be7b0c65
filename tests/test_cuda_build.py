# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""Checks of the CUDA build that need no GPU, so that CI can run them.

* The library records whether it was built with CUDA, and a CUDA build
  registers a DEVICE_GPU kernel for every op and dtype pair (a CPU build none);
  the ops whose list may mix dtypes, for every norm dtype, with the finite
  check's arguments in host memory.
* A CUDA build has no undefined dynamic cuda* / cu* symbol and needs no CUDA
  library: the runtime is linked in statically, so it loads under TensorFlow's
  CPU wheel (this test module importing it proves the load).
* setup.py fails at once, saying what to do, when CUDA is asked for and nvcc
  is missing, and rejects values of MONOLITH_OPS_CUDA other than 0 and 1.
* The CUDA core includes no TensorFlow header, and its header and the shared
  headers it includes (the clip rule, the dtype tables) no CUDA one.
* (The CUDA core's kernels under the CPU emulation of tests/gpu/emulation:
  tests/test_cuda_emulation.py; scripts/gpu_check.sh: tests/test_gpu_check.py.)
* Where TensorFlow sees a GPU (never in CI), the GPU kernels match the CPU
  ones, the V2 ops' too (lists of mixed dtypes, inverse_scale).

scripts/gpu_check.sh, the GPU check as one command, is checked in
tests/test_gpu_check.py.

scripts/ci_cuda.sh builds with MONOLITH_OPS_CUDA=1 and runs the whole suite
with MONOLITH_OPS_EXPECT_CUDA=1, which makes the first test insist on it.
"""

import importlib.util
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.python.framework import kernels

from monolith_ops import _loader

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _build_config():
    """build_config.bzl's lists (scripts/build_config.py), {} without it."""
    path = os.path.join(ROOT, "scripts", "build_config.py")
    if not os.path.exists(path):
        return {}
    spec = importlib.util.spec_from_file_location("_monolith_ops_build_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.read(os.path.join(ROOT, "build_config.bzl"))


BUILD_CONFIG = _build_config()
# The CUDA core: its one source, compiled by nvcc, and the headers it includes.
(CORE_SOURCE,) = [os.path.join(ROOT, path) for path in BUILD_CONFIG.get("CUDA_SOURCES", ["-"])]
CORE_HEADER = os.path.join(ROOT, "cc", "core", "clip_core_gpu.h")
# Our headers that the CUDA core includes, shared with the CPU core.
SHARED_HEADERS = [
    os.path.join(ROOT, "cc", "core", name) for name in ("clip_decision.h", "dtypes.h")
]
# Its own headers, included by CORE_SOURCE only (nvcc compiles them).
CORE_PRIVATE_HEADERS = [
    os.path.join(ROOT, path)
    for path in BUILD_CONFIG.get("CUDA_HEADERS", [])
    if path.endswith(".cuh")
]
OPS = ("GlobalL2Reduce", "MonolithClipByGlobalNorm", "MonolithClipByGlobalNormFused")
# Ops whose input list may mix dtypes: GPU kernels constrain Tnorm only.
V2_OPS = ("MonolithGlobalNormV2", "MonolithClipByGlobalNormV2", "MonolithCheckNormsFinite")
# Arguments that the GPU kernel of an op keeps in host memory.
HOST_MEMORY = {"MonolithCheckNormsFinite": {"global_norm", "tensor_norms", "checked_norm"}}
TYPE_PAIRS = {
    (t, n)
    for t in ("DT_FLOAT", "DT_DOUBLE", "DT_HALF", "DT_BFLOAT16")
    for n in ("DT_FLOAT", "DT_DOUBLE")
}


def _library():
    _loader.ops.load()
    return _loader.library_path()


def _gpu_type_pairs(op):
    """The (T, Tnorm) pairs that have a DEVICE_GPU kernel for `op`."""
    pairs = set()
    for k in kernels.get_registered_kernels_for_op(op).kernel:
        if k.device_type != "GPU":
            continue
        types = {c.name: list(c.allowed_values.list.type) for c in k.constraint}
        pairs.update(
            (types_pb2.DataType.Name(t), types_pb2.DataType.Name(n))
            for t in types["T"]
            for n in types["Tnorm"]
        )
    return pairs


@pytest.mark.skipif(
    os.environ.get("MONOLITH_OPS_EXPECT_CUDA") != "1",
    reason="MONOLITH_OPS_EXPECT_CUDA=1 (set by scripts/ci_cuda.sh) says a CUDA build is under test",
)
def test_build_record_says_cuda_when_expected():
    _library()
    assert _loader.built_with_cuda(), (
        "MONOLITH_OPS_EXPECT_CUDA=1 but the library under test was built "
        f"without CUDA: {_loader.library_path()}"
    )


@pytest.mark.parametrize("op", OPS)
def test_gpu_kernels_registered_exactly_in_a_cuda_build(op):
    _library()
    pairs = _gpu_type_pairs(op)
    if _loader.built_with_cuda():
        assert pairs == TYPE_PAIRS
    else:
        assert pairs == set()


@pytest.mark.parametrize("op", V2_OPS)
def test_v2_gpu_kernels_registered_exactly_in_a_cuda_build(op):
    _library()
    gpu = [k for k in kernels.get_registered_kernels_for_op(op).kernel if k.device_type == "GPU"]
    if not _loader.built_with_cuda():
        assert gpu == []
        return
    tnorms = []
    for k in gpu:
        types = {c.name: list(c.allowed_values.list.type) for c in k.constraint}
        assert set(types) == {"Tnorm"}, types
        tnorms += [types_pb2.DataType.Name(t) for t in types["Tnorm"]]
        assert set(k.host_memory_arg) == HOST_MEMORY.get(op, set())
    assert sorted(tnorms) == ["DT_DOUBLE", "DT_FLOAT"]


def _tool(name):
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not found")
    return path


def test_cuda_build_needs_no_cuda_library():
    path = _library()
    if not _loader.built_with_cuda():
        pytest.skip("a CPU-only build")
    undefined = subprocess.run(
        [_tool("nm"), "-D", "--undefined-only", path], capture_output=True, text=True, check=True
    ).stdout
    cuda = [
        line.split()[-1]
        for line in undefined.splitlines()
        if re.match(r"(cuda|cu[A-Z])", line.split()[-1])
    ]
    assert cuda == [], f"undefined CUDA symbols (runtime not linked statically): {cuda}"
    dynamic = subprocess.run(
        [_tool("objdump"), "-p", path], capture_output=True, text=True, check=True
    ).stdout
    needed = re.findall(r"NEEDED\s+(\S+)", dynamic)
    assert not [lib for lib in needed if re.match(r"lib(cuda|cudart)", lib)], needed


def _setup_py(env_changes, tmp_path):
    setup = os.path.join(ROOT, "setup.py")
    if not os.path.exists(setup):
        pytest.skip("no setup.py beside the tests")
    env = {k: v for k, v in os.environ.items() if k != "CUDA_HOME"}
    env["PATH"] = os.path.dirname(sys.executable)  # a PATH without nvcc
    env.update(env_changes)
    return subprocess.run(
        [
            sys.executable,
            setup,
            "build_ext",
            "--build-temp",
            str(tmp_path / "t"),
            "--build-lib",
            str(tmp_path / "l"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_setup_fails_clearly_without_nvcc(tmp_path):
    if shutil.which("nvcc", path=os.path.dirname(sys.executable)):
        pytest.skip("nvcc sits beside the Python interpreter")
    result = _setup_py({"MONOLITH_OPS_CUDA": "1"}, tmp_path)
    assert result.returncode != 0
    assert "nvcc was not found" in result.stderr
    assert "CUDA_HOME" in result.stderr and "MONOLITH_OPS_CUDA" in result.stderr


def test_setup_fails_clearly_with_a_cuda_home_without_nvcc(tmp_path):
    result = _setup_py({"MONOLITH_OPS_CUDA": "1", "CUDA_HOME": str(tmp_path)}, tmp_path)
    assert result.returncode != 0
    assert f"CUDA_HOME={tmp_path} has no bin/nvcc" in result.stderr


def test_setup_rejects_other_switch_values(tmp_path):
    result = _setup_py({"MONOLITH_OPS_CUDA": "yes"}, tmp_path)
    assert result.returncode != 0
    assert "MONOLITH_OPS_CUDA must be 1" in result.stderr


def test_cuda_core_is_framework_free():
    if not os.path.exists(CORE_SOURCE):
        pytest.skip("no CUDA sources beside the tests")
    includes = {}
    for path in (CORE_SOURCE, CORE_HEADER, *SHARED_HEADERS, *CORE_PRIVATE_HEADERS):
        with open(path) as f:
            includes[path] = re.findall(r'^#include\s*[<"]([^>"]+)[>"]', f.read(), re.M)
    framework = re.compile(r"^(tensorflow|xla|tsl|absl|Eigen|unsupported|third_party)/")
    for path, names in includes.items():
        assert not [n for n in names if framework.match(n)], (path, names)
    # The headers are compiled by the host compiler, without CUDA's headers.
    for path in (CORE_HEADER, *SHARED_HEADERS):
        assert not [n for n in includes[path] if n.startswith("cuda")], path


def _gpu_or_skip():
    _library()
    if not _loader.built_with_cuda():
        pytest.skip("a CPU-only build")
    if not tf.config.list_physical_devices("GPU"):
        pytest.skip("TensorFlow sees no GPU")


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64, tf.float16, tf.bfloat16])
@pytest.mark.parametrize("tnorm", [tf.float32, tf.float64])
def test_gpu_kernels_match_cpu_kernels(dtype, tnorm):
    _gpu_or_skip()
    ops = _loader.ops
    rng = np.random.default_rng(7)
    values = [rng.normal(size=n).astype(np.float32) * 3 for n in (1, 0, 1000, 70001, 17)]

    def run(device):
        with tf.device(device):
            ts = [tf.cast(tf.constant(v), dtype) for v in values]
            total = ops.global_l2_reduce(ts, Tnorm=tnorm)
            norm = tf.sqrt(total)
            clip_norm = tf.cast(norm, tnorm) * 0.5
            scaled, fused_norm = ops.monolith_clip_by_global_norm_fused(ts, clip_norm)
            passed = ops.monolith_clip_by_global_norm(ts, norm, clip_norm=1e30)
            nan = ops.monolith_clip_by_global_norm(
                ts, tf.constant(float("inf"), tnorm), clip_norm=1.0
            )
            return total, fused_norm, scaled, passed, nan

    cpu, gpu = run("/CPU:0"), run("/GPU:0")
    np.testing.assert_allclose(gpu[0].numpy(), cpu[0].numpy(), rtol=1e-6)
    np.testing.assert_allclose(gpu[1].numpy(), cpu[1].numpy(), rtol=1e-6)
    for c, g in zip(cpu[2], gpu[2]):
        np.testing.assert_allclose(
            tf.cast(g, tf.float64).numpy(), tf.cast(c, tf.float64).numpy(), rtol=1e-2
        )
    for v, g in zip(values, gpu[3]):
        np.testing.assert_array_equal(g.numpy(), tf.cast(tf.constant(v), dtype).numpy())
    for g in gpu[4]:
        assert np.isnan(tf.cast(g, tf.float32).numpy()).all()


@pytest.mark.parametrize("norm_type", ["l2", "inf"])
@pytest.mark.parametrize("tnorm", [tf.float32, tf.float64])
def test_v2_gpu_kernels_match_cpu_kernels(norm_type, tnorm):
    _gpu_or_skip()
    ops = _loader.ops
    rng = np.random.default_rng(11)
    dtypes = [tf.float32, tf.float16, tf.float64, tf.bfloat16, tf.float32, tf.float16]
    values = [rng.normal(size=n).astype(np.float32) * 3 for n in (1, 0, 70001, 1000, 17, 9000)]

    def run(device, inverse_scale):
        with tf.device(device):
            ts = [tf.cast(tf.constant(v), d) for v, d in zip(values, dtypes)]
            inv = tf.constant(inverse_scale, tnorm)
            norm, norms = ops.monolith_global_norm_v2(ts, inv, norm_type=norm_type)
            clip = norm * 0.5
            clipped, clip_norm, clip_norms = ops.monolith_clip_by_global_norm_v2(
                ts, clip, inv, norm_type=norm_type
            )
            return norm, norms, clipped, clip_norm, clip_norms

    for inverse_scale in (1.0, 0.25):
        cpu, gpu = run("/CPU:0", inverse_scale), run("/GPU:0", inverse_scale)
        for i in (0, 1, 3, 4):
            np.testing.assert_allclose(gpu[i].numpy(), cpu[i].numpy(), rtol=1e-6)
        for c, g in zip(cpu[2], gpu[2]):
            np.testing.assert_allclose(
                tf.cast(g, tf.float64).numpy(), tf.cast(c, tf.float64).numpy(), rtol=1e-2
            )
    # What the CPU kernel rejects fills the GPU outputs with NaN.
    with tf.device("/GPU:0"):
        ts = [tf.cast(tf.constant(v), d) for v, d in zip(values, dtypes)]
        norm, norms = ops.monolith_global_norm_v2(ts, tf.constant(0.0, tnorm), norm_type=norm_type)
        clipped, _, _ = ops.monolith_clip_by_global_norm_v2(
            ts, tf.constant(1.0, tnorm), tf.constant(-1.0, tnorm), norm_type=norm_type
        )
    assert np.isnan(norm.numpy()) and np.isnan(norms.numpy()).all()
    for g in clipped:
        assert np.isnan(tf.cast(g, tf.float32).numpy()).all()
