# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""The CUDA core's kernels under the CPU emulation of tests/gpu/emulation.

* Every check of check_core.cc passes under several schedules of the
  emulated threads (thread index order, reverse, seeded random orders) and
  of the blocks (interleaved, up to eight resident at once, grids of up to
  hundreds of blocks), with bitwise the same results, and with no finding of
  the emulation's own checks: races in shared memory and in global memory
  (between the threads of a block, and between blocks of one launch), warp
  shuffles against their masks, barriers that part of a block misses or
  reaches in divergent code, and (through the sanitizers it is built with,
  and copies that run when the emulated stream reaches them) reads past a
  tensor's end, misaligned vector accesses and host tables freed before
  their copy runs.
* The emulation catches each bug of SEEDED_BUGS: each is a small patch to a
  copy of the kernel sources, never to the files themselves.

The fast tier builds once and runs two schedules; the other schedules (and
those EMULATION_EXTRA_SCHEDULES adds) and the seeded bugs are marked slow.
"""

import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORE = os.path.join(ROOT, "cc", "core")
EMULATION = os.path.join(ROOT, "tests", "gpu", "emulation")
SANITIZERS = ["-fsanitize=address,alignment", "-fno-sanitize-recover=all"]

# kernel<<<grid, threads, 0, stream>>>(args)
#   -> EmulatedLaunch("kernel", kernel, grid, threads, args)
LAUNCH = re.compile(r"(\w+(?:<[^<>;]*>)?)<<<\s*([^,]+?),\s*([^,]+?),\s*0,\s*stream>>>\(")
# __shared__ T name[N]; -> static emulation::Shared<T, N> name{"name"}; (shadow bookkeeping)
SHARED = re.compile(r"__shared__\s+(\w+)\s+(\w+)\[([^\]]+)\];")
# A shared array handed to a function keeps its bookkeeping.
SHARED_PARAMETER = re.compile(r"\bdouble\* scratch\b")
# A kernel's parameters: each pointer `T* name` -> emulation::Global<T> name
# (every element read or assigned through it is checked for races).
KERNEL = re.compile(r"(__global__ void __launch_bounds__\(\w+\)\s+\w+\()([^)]*)\)")
POINTER_PARAMETER = re.compile(r"((?:const )?\w+)\* (\w+)")
# The element loads and stores of the chunk walk, checked for races too.
SLOT_ACCESSES = [
    (
        "  __device__ void Read(Storage (&v)[V]) const {\n",
        "    ::emulation::GlobalRead(in, valid);\n",
    ),
    (
        "  __device__ void Write(const Storage (&v)[V]) const {\n",
        "    ::emulation::GlobalWrite(out, valid);\n",
    ),
]


def _checked_parameters(match):
    return (
        match.group(1) + POINTER_PARAMETER.sub(r"::emulation::Global<\1> \2", match.group(2)) + ")"
    )


def _copy_core(dest, patch=()):
    """cc/core copied under dest/cc/core, rewritten for the emulation, with
    `patch` ((path under cc/core, old text, new text), ...) applied."""
    core = dest / "cc" / "core"
    shutil.copytree(CORE, core)
    for name, old, new in patch:
        path = core / name
        text = path.read_text()
        assert text.count(old) == 1, f"{name}: the seeded bug's text {old!r} is not there once"
        path.write_text(text.replace(old, new))
    shared = kernels = 0
    for path in [core / "clip_core_gpu.cu", *sorted((core / "gpu").glob("*.cuh"))]:
        text, n = SHARED.subn(r'static ::emulation::Shared<\1, (\3)> \2{"\2"};', path.read_text())
        text = SHARED_PARAMETER.sub("::emulation::SharedPtr<double> scratch", text)
        text, k = KERNEL.subn(_checked_parameters, text)
        shared += n
        kernels += k
        path.write_text(text)
    assert shared >= 3, "the __shared__ arrays of the kernels were not found"
    assert kernels >= 7, "the kernels' parameters were not found"
    chunk_walk = core / "gpu" / "multi_tensor.cuh"
    text = chunk_walk.read_text()
    for header, check in SLOT_ACCESSES:
        assert text.count(header) == 1, f"multi_tensor.cuh: {header!r} is not there once"
        text = text.replace(header, header + check)
    chunk_walk.write_text(text)
    source, launches = LAUNCH.subn(
        r'EmulatedLaunch("\1", \1, \2, \3, ', (core / "clip_core_gpu.cu").read_text()
    )
    assert launches >= 3, "the kernel launches of clip_core_gpu.cu were not found"
    (dest / "clip_core_gpu_emulated.inc").write_text(source)


def build(tmp_path, patch=()):
    """check_core built from a copy of the core (with `patch`), sanitized."""
    cxx = shutil.which(os.environ.get("CXX", "g++"))
    if cxx is None:
        pytest.skip("no C++ compiler")
    if not os.path.exists(os.path.join(CORE, "clip_core_gpu.cu")):
        pytest.skip("no CUDA sources beside the tests")
    _copy_core(tmp_path, patch)
    binary = str(tmp_path / "check_core")
    subprocess.run(
        [cxx, "-std=c++17", "-O1", *SANITIZERS, "-I", EMULATION, "-I", str(tmp_path)]
        + [os.path.join(EMULATION, "check_core.cc"), "-o", binary],
        check=True,
        timeout=600,
    )
    return binary


def run(binary, schedule):
    """(exit status, stdout + stderr) of check_core under `schedule`."""
    env = dict(os.environ, EMULATION_SCHEDULE=schedule, ASAN_OPTIONS="detect_leaks=0")
    result = subprocess.run(
        [binary], capture_output=True, text=True, timeout=600, env=env, check=False
    )
    return result.returncode, result.stdout + result.stderr


def digest(output):
    found = re.findall(r"results digest ([0-9a-f]{16})", output)
    assert len(found) == 1, output[-4000:]
    return found[0]


def expect_clean(binary, schedule):
    """Runs every check under `schedule`; returns the digest of the results."""
    code, output = run(binary, schedule)
    assert code == 0 and "ALL OK" in output and "FINDING" not in output, output[-4000:]
    return digest(output)


@pytest.fixture(scope="module")
def clean_build(tmp_path_factory):
    return build(tmp_path_factory.mktemp("emulation"))


@pytest.fixture(scope="module")
def forward_digest(clean_build):
    """The digest of every check, run in thread index order."""
    return expect_clean(clean_build, "forward")


def test_cuda_core_kernels_under_cpu_emulation(clean_build, forward_digest):
    """Every check passes in thread order and in a random order, bitwise the same."""
    assert expect_clean(clean_build, "random:1") == forward_digest


# More schedules for the slow tier: EMULATION_EXTRA_SCHEDULES, comma-separated
# (scripts/ci_cuda.sh sets a few more random seeds).
EXTRA_SCHEDULES = [s for s in os.environ.get("EMULATION_EXTRA_SCHEDULES", "").split(",") if s]


@pytest.mark.slow
@pytest.mark.parametrize("schedule", ["reverse", "random:2", "random:3", *EXTRA_SCHEDULES])
def test_emulation_results_do_not_depend_on_the_schedule(clean_build, forward_digest, schedule):
    assert expect_clean(clean_build, schedule) == forward_digest


def test_emulation_rejects_an_unknown_schedule(clean_build):
    code, output = run(clean_build, "sideways")
    assert code == 2 and "want forward, reverse or random:SEED" in output


# Seeded bugs: name -> (the finding that must be reported, the patch to a
# copy of cc/core as [(file, old text, new text), ...]). Each must make
# check_core fail with that finding. docs/gpu.md says which of them the
# emulation before the schedules, shadow memory, masks and sanitizers caught.
_SCRATCH_BARRIER = "    __syncthreads();  // scratch is reused by the next chunk\n"
_BLOCK_SUM_SHUFFLE = (
    "  for (int offset = 16; offset > 0; offset /= 2) {\n"
    "    v += __shfl_down_sync(0xffffffffu, v, offset);\n"
    "  }\n"
    "  if (lane == 0) scratch[warp] = v;\n"
)
_BLOCK_SUM_BARRIER = (
    "  if (lane == 0) scratch[warp] = v;\n"
    "  __syncthreads();\n"
    "  if (warp == 0) {\n"
    "    v = lane < num_warps ? scratch[lane] : 0.0;\n"
    "    for (int offset = 16; offset > 0; offset /= 2) {\n"
    "      v += __shfl_down_sync"
)
_TILE_READ = "      __syncthreads();\n      if (threadIdx.x < stride) {\n"
_COPY_TABLE = "  return cudaMemcpyAsync(device, host, bytes, cudaMemcpyHostToDevice, stream);\n"
RACE = "data race in shared memory"
GLOBAL_RACE = "data race in global memory"
SEEDED_BUGS = {
    "sum-of-squares: no barrier before the next chunk reuses scratch": (
        RACE,
        [("gpu/global_norm_kernels.cuh", _SCRATCH_BARRIER, "")],
    ),
    "per-tensor chunks: no barrier before the next chunk reuses scratch": (
        RACE,
        [("gpu/per_tensor_kernels.cuh", "  " + _SCRATCH_BARRIER, "")],
    ),
    "finish norms: no barrier before the tile is reused": (
        RACE,
        [("gpu/per_tensor_kernels.cuh", "    __syncthreads();  // the tile is reused\n", "")],
    ),
    "finish norms: no barrier between writing the tile and reading it": (
        RACE,
        [
            (
                "gpu/per_tensor_kernels.cuh",
                _TILE_READ,
                _TILE_READ.replace("      __syncthreads();\n", ""),
            )
        ],
    ),
    "BlockSum: no barrier between the warp sums' write and their read": (
        RACE,
        [
            (
                "gpu/block_reduce.cuh",
                _BLOCK_SUM_BARRIER,
                _BLOCK_SUM_BARRIER.replace("  __syncthreads();\n", ""),
            )
        ],
    ),
    "BlockSum: shuffle mask 0x0000ffff": (
        "does not name",
        [
            (
                "gpu/block_reduce.cuh",
                _BLOCK_SUM_SHUFFLE,
                _BLOCK_SUM_SHUFFLE.replace("0xffffffffu", "0x0000ffffu"),
            )
        ],
    ),
    "Aligned() true for every pointer": (
        "misaligned address",
        [
            (
                "gpu/multi_tensor.cuh",
                "return (reinterpret_cast<uintptr_t>(ptr) % kVectorBytes) == 0;",
                "return ptr != nullptr || true;",
            )
        ],
    ),
    "per-tensor read: lanes read up to the padded end, past the tensor's": (
        "heap-buffer-overflow",
        [
            (
                "gpu/multi_tensor.cuh",
                "static_cast<int64_t>(V), table.Size(t) - local));",
                "static_cast<int64_t>(V), table.Offset(t + 1) - p));",
            )
        ],
    ),
    "chunk walk: lanes read and write up to the padded end": (
        "heap-buffer-overflow",
        [
            (
                "gpu/multi_tensor.cuh",
                "static_cast<int64_t>(V), c.size - local));",
                "static_cast<int64_t>(V), c.end - p));",
            )
        ],
    ),
    "per-tensor chunks: blocks' chunk runs overlap (inter-block race on the partials)": (
        GLOBAL_RACE,
        [
            (
                "gpu/per_tensor_kernels.cuh",
                "min(first_chunk + chunks_per_block, table.num_chunks());",
                "min(first_chunk + chunks_per_block + 1, table.num_chunks());",
            )
        ],
    ),
    "table copy: the host table is freed before its copy runs": (
        "heap-use-after-free",
        [
            (
                "clip_core_gpu.cu",
                _COPY_TABLE,
                "  const char* h = static_cast<const char*>(host);\n"
                "  const std::vector<char> staging(h, h + bytes);\n"
                + _COPY_TABLE.replace("host, bytes", "staging.data(), bytes"),
            )
        ],
    ),
    "table: outputs dropped though they are not the inputs": (
        "wrong elements",
        [
            (
                "clip_core_gpu.cu",
                "in_place = sizes[i] == 0 || outputs[i] == inputs[i];",
                "in_place = true;",
            )
        ],
    ),
    "table: TableBytes and PackTable disagree at the by-value threshold": (
        "tensors: by value",
        [
            (
                "clip_core_gpu.cu",
                "if (count <= kMaxInlineTensors) return 0;",
                "if (count < kMaxInlineTensors) return 0;",
            )
        ],
    ),
    "finish norms: a barrier only thread 0 reaches": (
        "divergent code",
        [
            (
                "gpu/per_tensor_kernels.cuh",
                "    if (threadIdx.x == 0) {\n      acc = CombineReductions(",
                "    if (threadIdx.x == 0) {\n      __syncthreads();\n      acc = CombineReductions(",
            )
        ],
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("bug", sorted(SEEDED_BUGS))
def test_emulation_catches_seeded_bug(tmp_path, bug):
    finding, patch = SEEDED_BUGS[bug]
    binary = build(tmp_path, patch)
    code, output = run(binary, "random:7")
    assert code != 0 and "ALL OK" not in output, f"the seeded bug passed: {bug}"
    assert finding in output, output[-4000:]
