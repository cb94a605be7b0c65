# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""The op library's source lists and compiler flags, written once.

BUILD loads this file; setup.py, scripts/ci_arch.sh, tests/bazel and the CUDA
checks (tests/test_cuda_build.py, tests/gpu/check_gpu.py) read it through
scripts/build_config.py, which parses it without running it. So it holds
only assignments of list literals of strings, of names assigned above, and
of sums of those. A new source file goes here, and nowhere else.
"""

# The framework-free CPU core: no TensorFlow header. The clip and the
# optimizer updates; their loops and the walk over a list are private headers
# under cc/core/cpu/.
CPU_CORE_SOURCES = [
    "cc/core/clip_core.cc",
    "cc/core/optimizer_core.cc",
]

# The CPU core's tuning read from the environment: part of the TensorFlow
# layer, but without a TensorFlow header, so the core's test
# (tests/cc/clip_core_test.cc, built by scripts/ci_arch.sh) links it too.
CPU_TUNING_SOURCES = [
    "cc/tf/cpu_tuning.cc",
]

# The TensorFlow layer of the CPU build: op registrations, kernels, output
# allocation.
CPU_TF_SOURCES = [
    "cc/tf/clip_ops.cc",
    "cc/tf/clip_kernels.cc",
    "cc/tf/cpu_output_alloc.cc",
    "cc/tf/optimizer_ops.cc",
    "cc/tf/optimizer_kernels.cc",
]

# Everything the CPU build compiles (setup.py's extension, BUILD's library).
CPU_SOURCES = CPU_TF_SOURCES + CPU_CORE_SOURCES + CPU_TUNING_SOURCES

# Flags of our own, on top of tf.sysconfig's. -ffp-contract=off keeps the
# dispatched AVX2 and baseline loops bitwise identical (no FMA contraction).
# -fno-math-errno lets the compiler vectorize the optimizer updates' square
# roots (std::sqrt stays correctly rounded; only errno is not set).
CXX_FLAGS = [
    "-O3",
    "-fPIC",
    "-ffp-contract=off",
    "-fno-math-errno",
    "-Wno-deprecated-declarations",
]

# The CUDA build (setup.py with MONOLITH_OPS_CUDA=1) adds the framework-free
# CUDA core, compiled by nvcc without any TensorFlow header, and its
# TensorFlow adapter, compiled with the C++ sources above.
CUDA_SOURCES = [
    "cc/core/clip_core_gpu.cu",
]

CUDA_ADAPTER_SOURCES = [
    "cc/tf/clip_kernels_gpu.cc",
]

# The headers that CUDA_SOURCES include: a change to one recompiles them.
CUDA_HEADERS = [
    "cc/core/clip_core_gpu.h",
    "cc/core/clip_decision.h",
    "cc/core/dtypes.h",
    "cc/core/gpu/block_reduce.cuh",
    "cc/core/gpu/elements.cuh",
    "cc/core/gpu/global_norm_kernels.cuh",
    "cc/core/gpu/multi_tensor.cuh",
    "cc/core/gpu/per_tensor_kernels.cuh",
]

# nvcc 13 targets sm_75 and newer only. Machine code for Turing, Ampere and
# Hopper, and PTX for compute_90 that newer GPUs compile at load.
CUDA_ARCH_FLAGS = [
    "-gencode=arch=compute_75,code=sm_75",
    "-gencode=arch=compute_80,code=sm_80",
    "-gencode=arch=compute_90,code=sm_90",
    "-gencode=arch=compute_90,code=compute_90",
]

NVCC_FLAGS = [
    "-O3",
    "-std=c++17",
    "-Xcompiler",
    "-fPIC",
    "--threads",
    "0",
]
