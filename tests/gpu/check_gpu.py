#!/usr/bin/env python3
# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""GPU check of the monolith_ops CUDA core, on a machine without TensorFlow.

Builds a small pybind11 module of the framework-free CUDA core
(cc/core/clip_core_gpu.cu + tests/gpu/binding.cpp) with nvcc into a
temporary folder, then, with torch as the reference and the allocator:

* checks the sum of squares, the clip and the fused clip against a float64
  reference, and bit for bit against the CPU kernel's formula (clip_core.h's
  DecideClip, scale cast to the element type, multiplied in float32 for 16-bit
  types): fp32, fp64, fp16 and bf16 with float and double norms; inf and NaN;
  invalid norms and clip_norms; empty tensors and empty lists; in place;
  misaligned tensors; 100,000 tensors; a list of more than 2**31 elements;
* checks that 10 runs give bitwise the same norm and outputs, and that the
  sum does not depend on where in memory the same values lie;
* checks the fused clip inside a captured CUDA graph, replayed on new data
  (scale, pass-through and non-finite cases decided on the device);
* checks the norms of the V2 ops (per-tensor reductions, L2 and infinity
  norms, inverse_scale) against numpy float64 references and bit for bit
  against the norm rule, and the clip with unscaling bit for bit against its
  rule: every dtype alone and all four in one list (entries at mixed list
  positions), inf and NaN, float32 overflow, bad inverse_scale and clip_norm,
  empty lists and tensors, in place, many tiny tensors, determinism, a CUDA
  graph;
* checks lists at the by-value threshold (MAX_INLINE_TENSORS - 1 and
  MAX_INLINE_TENSORS tensors go to the kernels by value, one more in a
  device table): every dtype, and the V2 ops on mixed dtypes, in place and
  not;
* benchmarks the global norm and the clip against torch._foreach_norm and
  torch.nn.utils.clip_grad_norm_(foreach=True) on the 53 dense gradient
  shapes, 1,000 x 100 floats and 4 x 16M floats, next to a device-to-device
  copy measured in the same run.

Prints a table and exits non-zero if any check fails. Run from anywhere:

    python tests/gpu/check_gpu.py [--out results.md]
    python tests/gpu/check_gpu.py --build-only   # compile and import only

--phase picks one part (scripts/gpu_check.sh runs them in turn, each in
its own process): build (build the module for the device), quick (every
dtype and norm type, special values, empty lists, misaligned views, in
place, the V2 ops, CUDA graphs, on small sizes), sanitizer (a reduced list
for compute-sanitizer), large (100,000 tensors, over 2**31 elements,
determinism, grid size) and timings (the benchmark); with --prebuilt a
phase imports the module an earlier build left in --build-dir and compiles
nothing. With --out the table is rewritten after each group of checks.

Needs nvcc (CUDA_HOME or PATH), pybind11 and, except with --build-only, torch
with a CUDA device.
"""

import argparse
import importlib.util
import json
import math
import os
import shutil
import statistics
import struct
import subprocess
import sys
import sysconfig
import tempfile
import time
import traceback

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _cuda_sources():
    """The CUDA core's sources: CUDA_SOURCES of build_config.bzl."""
    path = os.path.join(ROOT, "scripts", "build_config.py")
    spec = importlib.util.spec_from_file_location("_monolith_ops_build_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.read(os.path.join(ROOT, "build_config.bzl"))
    return [os.path.join(ROOT, source) for source in config["CUDA_SOURCES"]]


CORE_SOURCES = _cuda_sources()
BINDING_SOURCE = os.path.join(ROOT, "tests", "gpu", "binding.cpp")
DENSE_SHAPES_FILE = os.path.join(ROOT, "tests", "data", "dense_shapes.json")


# --------------------------------------------------------------------- build


def find_nvcc():
    cuda_home = os.environ.get("CUDA_HOME")
    if cuda_home:
        return os.path.join(cuda_home, "bin", "nvcc")
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        sys.exit("check_gpu: nvcc not found (set CUDA_HOME or put nvcc on PATH)")
    return nvcc


def build(build_dir, arch):
    """Compiles the core and its binding; returns the imported module."""
    import pybind11  # only needed to build

    out = module_path(build_dir)
    cmd = [
        find_nvcc(),
        "-O3",
        "-std=c++17",
        "-shared",
        "-Xcompiler",
        "-fPIC",
        "-Xcompiler",
        "-fvisibility=hidden",
        "--threads",
        "0",
        f"-gencode=arch=compute_{arch},code=sm_{arch}",
        "-I",
        ROOT,
        "-I",
        pybind11.get_include(),
        "-I",
        sysconfig.get_paths()["include"],
        *CORE_SOURCES,
        BINDING_SOURCE,
        "-o",
        out,
    ]
    start = time.time()
    subprocess.run(cmd, check=True)
    print(f"built {os.path.basename(out)} for sm_{arch} in {time.time() - start:.1f} s")
    return load_module(out)


# ------------------------------------------------------------------ helpers


class Core:
    """Calls the core on torch tensors, on torch's current stream."""

    def __init__(self, module, torch):
        self.m = module
        self.torch = torch
        self.codes = {
            torch.float32: module.FLOAT,
            torch.float64: module.DOUBLE,
            torch.float16: module.HALF,
            torch.bfloat16: module.BFLOAT16,
        }

    def stream(self):
        return self.torch.cuda.current_stream().cuda_stream

    def prepare(self, tensors, outputs=None, dtype=None, positions=None):
        return Prepared(self, tensors, outputs, dtype, positions)

    def sum_of_squares(self, p, tnorm):
        out = self.torch.full((), -1.0, dtype=tnorm, device="cuda")
        self.m.sum_of_squares(
            p.table, self.codes[tnorm], p.partials.data_ptr(), out.data_ptr(), self.stream()
        )
        return out

    def clip(self, p, norm, clip_norm):
        """clip_norm: a Python float (attr) or a device scalar of norm's dtype."""
        is_tensor = isinstance(clip_norm, self.torch.Tensor)
        self.m.clip(
            p.table,
            self.codes[norm.dtype],
            norm.data_ptr(),
            clip_norm.data_ptr() if is_tensor else 0,
            0.0 if is_tensor else float(clip_norm),
            self.stream(),
        )

    def clip_fused(self, p, clip_norm, norm_out=None):
        if norm_out is None:
            norm_out = self.torch.full((), -1.0, dtype=clip_norm.dtype, device="cuda")
        self.m.clip_fused(
            p.table,
            self.codes[clip_norm.dtype],
            clip_norm.data_ptr(),
            p.partials.data_ptr(),
            norm_out.data_ptr(),
            self.stream(),
        )
        return norm_out


class Prepared:
    """A tensor list packed for the core: its table by value (at most
    MAX_INLINE_TENSORS tensors), or copied to the device."""

    def __init__(self, core, tensors, outputs, dtype, positions=None):
        torch = core.torch
        self.core = core
        self.tensors = list(tensors)
        self.outputs = None if outputs is None else list(outputs)
        dtype = dtype or self.tensors[0].dtype
        sizes = [t.numel() for t in self.tensors]
        # positions: the entries' positions in a whole list (None: their own).
        capacity = core.m.table_bytes(len(sizes), outputs is not None, positions is not None)
        self.host = torch.empty(max(capacity, 8), dtype=torch.uint8, pin_memory=True)
        self.device = torch.empty(max(capacity, 8), dtype=torch.uint8, device="cuda")
        self.table = core.m.pack_table(
            core.codes[dtype],
            [t.data_ptr() for t in self.tensors],
            None if outputs is None else [t.data_ptr() for t in self.outputs],
            sizes,
            self.host.data_ptr(),
            self.device.data_ptr(),
            None if positions is None else [int(p) for p in positions],
        )
        assert self.table.num_chunks == core.m.num_chunks(core.codes[dtype], sizes)
        assert self.table.by_value == (len(sizes) <= core.m.MAX_INLINE_TENSORS)
        self.nbytes = self.table.device_bytes  # 0: by value, nothing to copy
        self.partials = torch.empty(
            max(1, self.table.num_chunks), dtype=torch.float64, device="cuda"
        )
        self.upload()

    def upload(self):
        """Copies the table on the current stream through torch, which records
        the copy against the pinned buffer (from torch's caching host
        allocator) and so never hands the buffer out again before the copy has
        run, even when this object is dropped at once. A table passed by
        value has nothing to copy."""
        if self.nbytes:
            self.device[: self.nbytes].copy_(self.host[: self.nbytes], non_blocking=True)

    def upload_core(self):
        """Copies the table with the core's CopyTableToDevice, as the
        TensorFlow kernels do. torch does not see this copy: only for an
        object that outlives a synchronization of the stream (the timings).
        A table passed by value enqueues nothing."""
        self.core.m.copy_table(
            self.host.data_ptr(), self.device.data_ptr(), self.nbytes, self.core.stream()
        )


def ref_sum_of_squares(torch, tensors, piece=1 << 27):
    """Sum of squares in float64, in pieces so huge tensors need no huge copy."""
    total = torch.zeros((), dtype=torch.float64, device="cuda")
    for t in tensors:
        flat = t.reshape(-1)
        for start in range(0, flat.numel(), piece):
            x = flat[start : start + piece].double()
            total += (x * x).sum()
    return float(total)


def rounded(torch, x, dtype):
    """x (a Python float) rounded to float32 when dtype is float32.

    One IEEE float32 operation on float32 operands equals the float64 result
    rounded once to float32 (for +, -, *, / and sqrt), so Python floats and
    this give exactly what float32 arithmetic on the device gives, with no
    trust in any library's float32 sqrt or reciprocal.
    """
    if dtype == torch.float64 or not math.isfinite(x):
        return x
    return struct.unpack("f", struct.pack("f", x))[0]


def cpu_rule(torch, x_dtype, norm, clip_norm, tnorm):
    """What clip_core.h's DecideClip and the CPU kernel do, on the host.

    Returns ("pass" | "nan" | "scale", scale in the element's compute type).
    """
    if not (math.isfinite(clip_norm) and clip_norm > 0):
        return "nan", None
    if not math.isfinite(norm) or norm < 0:
        return "nan", None
    if norm <= clip_norm:
        return "pass", None
    r = lambda v: rounded(torch, v, tnorm)  # noqa: E731
    n, c = r(norm), r(clip_norm)
    scale = torch.tensor(r(c * min(r(1 / n), r(1 / c))), dtype=torch.float64)
    if x_dtype in (torch.float16, torch.bfloat16):
        # Eigen casts double to half / bfloat16 through float.
        return "scale", scale.to(torch.float32).to(x_dtype).to(torch.float32)
    compute = torch.float64 if x_dtype == torch.float64 else torch.float32
    return "scale", scale.to(x_dtype).to(compute)


def bits(torch, t):
    view = {2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]
    return t.contiguous().view(view)


def expected_output(torch, x, action, scale):
    if action == "pass":
        return x
    if action == "nan":
        return torch.full_like(x, float("nan"))
    compute = torch.float64 if x.dtype == torch.float64 else torch.float32
    return (x.to(compute) * scale.to(x.device)).to(x.dtype)


class Results:
    """The checks' rows; with `out`, the table is rewritten there after each
    group of checks, so that a run stopped part way leaves what it finished."""

    def __init__(self, out=None, title=""):
        self.rows = []
        self.out = out
        self.title = title

    def save(self, copy_bw=0.0, bench_rows=()):
        if self.out:
            with open(self.out, "w") as f:
                f.write(markdown(self, copy_bw, list(bench_rows), self.title))

    def add(self, name, ok, detail=""):
        self.rows.append((name, bool(ok), detail))
        print(f"{'PASS' if ok else 'FAIL'}  {name}  {detail}", flush=True)

    def run(self, name, check, *args):
        """Runs check(*args); an exception is a failed check, and the rest run."""
        start = time.time()
        try:
            check(*args)
        except Exception as err:  # reported, not swallowed
            traceback.print_exc()
            self.add(name, False, f"{type(err).__name__}: {err}")
        print(f"  [{name}: {time.time() - start:.1f} s]", flush=True)
        self.save()

    @property
    def failed(self):
        return [r for r in self.rows if not r[1]]


# ------------------------------------------------------------------- checks

# Largest ||out - ref|| / ||ref|| allowed against the float64 reference: the
# scale rounded to the norm's dtype, then to the element's, and each output
# rounded once.
ROUNDING = {"float32": 2**-24, "float64": 2**-53, "float16": 2**-11, "bfloat16": 2**-8}


def tolerance(torch, dtype, tnorm):
    return 4 * (ROUNDING[str(dtype)[6:]] + ROUNDING[str(tnorm)[6:]])


def compare_outputs(torch, xs, outs, action, scale, true_scale, chunk=1 << 27):
    """(bitwise equal to the CPU kernel's rule, relative error against x *
    true_scale computed in float64)."""
    exact = True
    err2 = ref2 = 0.0
    for x, out in zip(xs, outs):
        fx, fo = x.reshape(-1), out.reshape(-1)
        for s in range(0, fx.numel(), chunk):
            xi, oi = fx[s : s + chunk], fo[s : s + chunk]
            if action == "nan":
                exact &= bool(torch.isnan(oi.float()).all())
                continue
            want = expected_output(torch, xi, action, scale)
            exact &= bool(torch.equal(bits(torch, want), bits(torch, oi)))
            ref = xi.double() * true_scale
            err2 += float(((oi.double() - ref) ** 2).sum())
            ref2 += float((ref**2).sum())
    return exact, (math.sqrt(err2 / ref2) if ref2 > 0 else 0.0)


def shifted_copies(torch, xs):
    """Copies of the float32 tensors xs, each one element into a fresh
    buffer: the same values at another 16-byte alignment."""
    moved = []
    for x in xs:
        base = torch.empty(x.numel() + 1, device="cuda")
        base[1:].copy_(x)
        moved.append(base[1:])
    return moved


def random_list(torch, dtype, sizes, scale=3.0, misalign=True, gen=None):
    """Tensors of `sizes` with values N(0, scale); some start off 16 bytes."""
    out = []
    for i, n in enumerate(sizes):
        shift = (i % 3) if misalign else 0
        base = torch.randn(n + shift, dtype=torch.float32, device="cuda", generator=gen)
        out.append((base * scale).to(dtype)[shift:])
    return out


def check_list(core, res, name, xs, dtype, tnorm, clip_factors=(0.5, 2.0), flat=None):
    """Sum, clip (attr and tensor clip_norm) and fused clip of one list.

    flat: a tensor of which xs are consecutive views covering it whole; the
    outputs are then views of one buffer too, and compared in one piece.
    """
    torch = core.torch

    def new_outputs():
        """(outputs for the core, inputs and outputs to compare)."""
        if flat is None:
            outs = [torch.full_like(x, 7.0) for x in xs]
            return outs, xs, outs
        out = torch.full_like(flat, 7.0)
        return list(torch.split(out, [x.numel() for x in xs])), [flat], [out]

    ref = ref_sum_of_squares(torch, xs if flat is None else [flat])
    p = core.prepare(xs, dtype=dtype)
    got = float(core.sum_of_squares(p, tnorm))
    tol = 1e-10 if tnorm == torch.float64 else 3e-7
    rel = abs(got - ref) / ref if ref else abs(got)
    res.add(f"{name} sum", rel <= tol, f"rel err {rel:.1e} (tol {tol:.0e})")
    ref_norm = math.sqrt(ref)
    tol = tolerance(torch, dtype, tnorm)
    for factor in clip_factors:
        clip_norm = float(torch.tensor(ref_norm * factor if ref_norm else 1.0, dtype=tnorm))
        true_scale = clip_norm / max(ref_norm, clip_norm)
        # Clip by a given norm, clip_norm as an attr value.
        outs, ins, cmp_outs = new_outputs()
        p = core.prepare(xs, outs, dtype=dtype)
        norm_t = torch.tensor(ref_norm, dtype=tnorm, device="cuda")
        core.clip(p, norm_t, clip_norm)
        action, scale = cpu_rule(torch, dtype, float(norm_t), clip_norm, tnorm)
        exact, err = compare_outputs(torch, ins, cmp_outs, action, scale, true_scale)
        res.add(
            f"{name} clip {action}",
            exact and err <= tol,
            f"bitwise={exact} rel err {err:.1e} (tol {tol:.0e})",
        )
        # Fused: norm computed on the device, clip_norm a device scalar.
        outs, ins, cmp_outs = new_outputs()
        p = core.prepare(xs, outs, dtype=dtype)
        norm = float(core.clip_fused(p, torch.tensor(clip_norm, dtype=tnorm, device="cuda")))
        want_norm = rounded(torch, math.sqrt(got), tnorm)
        action, scale = cpu_rule(torch, dtype, norm, clip_norm, tnorm)
        exact, err = compare_outputs(torch, ins, cmp_outs, action, scale, true_scale)
        res.add(
            f"{name} fused {action}",
            exact and err <= tol and norm == want_norm,
            f"norm {norm:.6g} (sqrt of the sum: {norm == want_norm}) "
            f"bitwise={exact} rel err {err:.1e}",
        )


def check_dtypes(core, res, gen):
    torch = core.torch
    sizes = [1, 0, 3, 1000, 8191, 8192, 8193, 0, 65536 + 5, 17, 250000]
    for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        for tnorm in (torch.float32, torch.float64):
            xs = random_list(torch, dtype, sizes, gen=gen)
            check_list(core, res, f"{str(dtype)[6:]}/{str(tnorm)[6:]}", xs, dtype, tnorm)
    # fp16 accumulates wider than fp16: [300, 400] has norm 500, not inf.
    xs = [torch.tensor([300.0, 400.0], dtype=torch.float16, device="cuda")]
    p = core.prepare(xs, [torch.empty_like(x) for x in xs])
    norm = float(core.clip_fused(p, torch.tensor(1000.0, device="cuda")))
    res.add("float16 [300, 400] norm", norm == 500.0, f"norm {norm}")


def check_special(core, res, gen):
    """inf / NaN inputs, bad norms and clip_norms, empty lists, in place."""
    torch = core.torch
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        for bad in (float("inf"), float("nan")):
            xs = random_list(torch, dtype, [100, 5000, 3], gen=gen)
            xs[1][1234] = bad
            outs = [torch.zeros_like(x) for x in xs]
            p = core.prepare(xs, outs)
            norm = float(core.clip_fused(p, torch.tensor(1.0, device="cuda")))
            all_nan = all(bool(torch.isnan(o.float()).all()) for o in outs)
            norm_ok = math.isnan(norm) if math.isnan(bad) else norm == bad
            res.add(
                f"{str(dtype)[6:]} with {bad}: norm, outputs all NaN",
                norm_ok and all_nan,
                f"norm {norm}",
            )
    xs = random_list(torch, torch.float32, [100, 5000], gen=gen)
    for clip_norm in (0.0, -1.0, float("inf"), float("nan")):
        outs = [torch.zeros_like(x) for x in xs]
        p = core.prepare(xs, outs)
        core.clip_fused(p, torch.tensor(clip_norm, device="cuda"))
        ok = all(bool(torch.isnan(o).all()) for o in outs)
        res.add(f"fused with clip_norm {clip_norm}: outputs all NaN", ok)
    for norm in (-1.0, float("inf"), float("nan")):
        outs = [torch.zeros_like(x) for x in xs]
        p = core.prepare(xs, outs)
        core.clip(p, torch.tensor(norm, device="cuda"), 1.0)
        ok = all(bool(torch.isnan(o).all()) for o in outs)
        res.add(f"clip by norm {norm}: outputs all NaN", ok)
    # Empty lists and lists of empty tensors.
    p = core.prepare([], dtype=torch.float32)
    s = float(core.sum_of_squares(p, torch.float32))
    n = float(
        core.clip_fused(core.prepare([], [], dtype=torch.float32), torch.tensor(1.0, device="cuda"))
    )
    res.add("empty list: sum 0, norm 0", s == 0.0 and n == 0.0, f"sum {s} norm {n}")
    xs = [torch.empty(0, device="cuda"), torch.empty(0, 5, device="cuda")]
    p = core.prepare(xs, [torch.empty_like(x) for x in xs])
    n = float(core.clip_fused(p, torch.tensor(1.0, device="cuda")))
    res.add("list of empty tensors: norm 0", n == 0.0, f"norm {n}")
    # In place: a pass-through writes nothing, a scale scales in place.
    xs = random_list(torch, torch.float32, [1000, 77, 40000], gen=gen)
    keep = [x.clone() for x in xs]
    ref = math.sqrt(ref_sum_of_squares(torch, xs))
    p = core.prepare(xs, xs)
    core.clip_fused(p, torch.tensor(ref * 2, device="cuda"))
    same = all(torch.equal(a, b) for a, b in zip(xs, keep))
    res.add("in place, pass-through: inputs untouched", same and p.table.all_in_place)
    clip_norm = float(torch.tensor(ref / 2))
    norm = float(core.clip_fused(p, torch.tensor(clip_norm, device="cuda")))
    action, scale = cpu_rule(torch, torch.float32, norm, clip_norm, torch.float32)
    exact, err = compare_outputs(torch, keep, xs, action, scale, clip_norm / ref)
    res.add("in place, scale", exact and action == "scale", f"rel err {err:.1e}")


def check_many(core, res, gen, count):
    torch = core.torch
    sizes = torch.randint(0, 129, (count,), generator=gen, device="cuda").tolist()
    flat = torch.randn(sum(sizes), device="cuda", generator=gen)
    xs = list(torch.split(flat, sizes))  # views: most start off 16 bytes
    check_list(
        core,
        res,
        f"{count} tensors",
        xs,
        torch.float32,
        torch.float32,
        clip_factors=(0.5,),
        flat=flat,
    )


def check_threshold(core, res, gen):
    """Lists at the by-value threshold, on both sides: the table is a kernel
    parameter for MAX_INLINE_TENSORS tensors or fewer, in device memory for
    more. Small tensors, empty ones and one over a chunk, most misaligned."""
    torch = core.torch
    limit = core.m.MAX_INLINE_TENSORS
    dtypes = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
    for count in (limit - 1, limit, limit + 1):
        sizes = torch.randint(0, 41, (count,), generator=gen, device="cuda").tolist()
        sizes[count // 2] = core.m.CHUNK + 3
        for dtype in dtypes:
            xs = random_list(torch, dtype, sizes, gen=gen)
            check_list(core, res, f"{count} {str(dtype)[6:]}", xs, dtype, torch.float32, (0.5,))
        # The V2 ops: float32 tables on either side of the threshold, with
        # outputs and positions (the largest layout), and bfloat16 ones.
        other = torch.randint(0, 41, (2 * limit - count,), generator=gen, device="cuda")
        mixed = random_list(torch, torch.float32, sizes, gen=gen)
        mixed += random_list(torch, torch.bfloat16, other.tolist(), gen=gen)
        for in_place in (False, True):
            check_v2_list(
                core,
                res,
                f"{count}+{2 * limit - count} mixed",
                [x.clone() for x in mixed],
                "l2",
                torch.float32,
                0.5,
                0.5,
                in_place=in_place,
            )


def check_huge(core, res, gen):
    """One list of more than 2**31 elements, one tensor alone over 2**31."""
    torch = core.torch
    big = 2**31 + 4099
    try:
        xs = [
            torch.randn(1000, device="cuda", generator=gen).half(),
            torch.empty(big, dtype=torch.float16, device="cuda").normal_(generator=gen),
            torch.randn(77, device="cuda", generator=gen).half(),
        ]
    except RuntimeError as err:  # out of memory on a small device
        res.add("list over 2**31 elements", False, f"could not allocate: {err}")
        return
    check_list(
        core, res, "2**31+ elements fp16", xs, torch.float16, torch.float32, clip_factors=(0.5,)
    )
    del xs
    torch.cuda.empty_cache()


def check_determinism(core, res, gen, runs=10):
    torch = core.torch
    lists = {
        "dense53 fp32": [torch.randn(s, device="cuda", generator=gen) for s in dense_shapes()],
        "bf16": random_list(torch, torch.bfloat16, [5, 70000, 3000, 1 << 20], gen=gen),
    }
    for name, xs in lists.items():
        clip = torch.tensor(math.sqrt(ref_sum_of_squares(torch, xs)) / 3, device="cuda")
        first = None
        differ = 0
        for _ in range(runs):
            outs = [torch.empty_like(x) for x in xs]
            norm = core.clip_fused(core.prepare(xs, outs), clip)
            run = [bits(torch, norm.reshape(1))] + [bits(torch, o) for o in outs]
            if first is None:
                first = run
            else:
                differ += not all(torch.equal(a, b) for a, b in zip(first, run))
        res.add(
            f"determinism {name}, {runs} runs",
            differ == 0,
            f"{differ} of {runs - 1} reruns differ from the first",
        )
    # The same values at other addresses (other 16-byte alignment) sum alike.
    xs = random_list(torch, torch.float32, [3, 100001, 5000], misalign=False, gen=gen)
    moved = shifted_copies(torch, xs)
    a = core.sum_of_squares(core.prepare(xs), torch.float64)
    b = core.sum_of_squares(core.prepare(moved), torch.float64)
    res.add("sum independent of alignment", torch.equal(bits(torch, a), bits(torch, b)))


def check_graph(core, res, gen):
    """The fused clip captured in a CUDA graph, replayed on changed inputs."""
    torch = core.torch
    xs = [torch.randn(s, device="cuda", generator=gen) for s in dense_shapes()]
    outs = [torch.empty_like(x) for x in xs]
    clip = torch.tensor(10.0, device="cuda")
    norm = torch.empty((), device="cuda")
    p = core.prepare(xs, outs)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        core.clip_fused(p, clip, norm)  # warm-up: module load, grid sizes
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph):
            core.clip_fused(p, clip, norm)
    except RuntimeError as err:
        res.add("CUDA graph capture", False, str(err))
        return
    for case, factor in (("scale", 1.0), ("pass-through", 1e-4), ("inf", None)):
        for x in xs:
            x.copy_(
                torch.randn(x.shape, device="cuda", generator=gen)
                * (factor if factor is not None else 1.0)
            )
        if factor is None:
            xs[7][3, 3] = float("inf")
        for o in outs:
            o.fill_(7.0)
        graph.replay()
        torch.cuda.synchronize()
        ref = math.sqrt(ref_sum_of_squares(torch, xs))
        got = float(norm)
        action, scale = cpu_rule(torch, torch.float32, got, 10.0, torch.float32)
        exact, err = compare_outputs(torch, xs, outs, action, scale, 10.0 / max(ref, 10.0))
        norm_ok = math.isinf(got) if factor is None else abs(got - ref) <= 1e-6 * ref
        res.add(f"CUDA graph replay, {case}", exact and norm_ok, f"action {action}, norm {got:.6g}")


# ------------------------------------------------------------ V2 norms


class NormsV2:
    """MonolithGlobalNormV2 / MonolithClipByGlobalNormV2 on the core.

    A list of any dtypes becomes one table per dtype, each entry at its list
    position; launch() enqueues the per-tensor reductions, the norms' finish
    and, when clip_norm is given, the clip with unscaling of every table
    (outputs required then). Everything is prepared here, so that launch()
    may be captured in a CUDA graph.
    """

    def __init__(
        self, core, xs, norm_type, tnorm, inverse_scale=None, outputs=None, clip_norm=None
    ):
        torch = core.torch
        self.core, self.n, self.tnorm = core, len(xs), tnorm
        self.code = core.m.L2 if norm_type == "l2" else core.m.INF
        self.groups = {}
        for i, x in enumerate(xs):
            self.groups.setdefault(x.dtype, []).append(i)
        self.tables = [
            core.prepare(
                [xs[i] for i in idx],
                None if outputs is None else [outputs[i] for i in idx],
                dtype=dtype,
                positions=idx,
            )
            for dtype, idx in self.groups.items()
        ]
        size = max([1] + [core.m.per_tensor_workspace(p.table) for p in self.tables])
        self.workspace = torch.empty(size, dtype=torch.float64, device="cuda")
        self.per_tensor = torch.full((max(1, self.n),), -1.0, dtype=torch.float64, device="cuda")
        self.global_norm = torch.full((), -1.0, dtype=tnorm, device="cuda")
        self.tensor_norms = torch.full((max(1, self.n),), -1.0, dtype=tnorm, device="cuda")
        self.inv = None
        if inverse_scale is not None:
            self.inv = torch.tensor(inverse_scale, dtype=tnorm, device="cuda")
        self.clip_norm = None
        if clip_norm is not None:
            self.clip_norm = torch.tensor(clip_norm, dtype=tnorm, device="cuda")

    def launch(self):
        m, stream = self.core.m, self.core.stream()
        tnorm = self.core.codes[self.tnorm]
        inv = 0 if self.inv is None else self.inv.data_ptr()
        for p in self.tables:
            m.per_tensor_reduce(
                p.table, self.code, self.workspace.data_ptr(), self.per_tensor.data_ptr(), stream
            )
        m.finish_norms(
            self.code,
            tnorm,
            self.per_tensor.data_ptr(),
            self.n,
            inv,
            self.global_norm.data_ptr(),
            self.tensor_norms.data_ptr(),
            stream,
        )
        if self.clip_norm is not None:
            for p in self.tables:
                m.clip_unscaled(
                    p.table,
                    tnorm,
                    self.global_norm.data_ptr(),
                    self.clip_norm.data_ptr(),
                    inv,
                    stream,
                )
        return self

    def per_tensor_values(self):
        return self.per_tensor[: self.n].cpu().numpy()

    def norms(self):
        return float(self.global_norm), self.tensor_norms[: self.n].double().cpu().tolist()


def to_tnorm(x, tnorm_name):
    """x rounded once to the norm's dtype (float32 overflows to inf)."""
    if tnorm_name == "float64":
        return float(x)
    with np.errstate(over="ignore"):
        return float(np.float32(x))


def np_reductions(torch, xs, norm_type):
    """Each tensor's reduction in numpy float64: its sum of squares (l2) or its
    largest absolute value, NaN if it holds one (inf); 0 when empty."""
    out = []
    for x in xs:
        a = x.detach().reshape(-1).double().cpu().numpy()
        if a.size == 0:
            out.append(0.0)
        elif norm_type == "l2":
            out.append(float(np.sum(a * a)))
        else:
            out.append(float(np.max(np.abs(a))))
    return np.array(out, dtype=np.float64)


def np_segment_reductions(flat, sizes, norm_type):
    """np_reductions of consecutive pieces of `flat` (a numpy float64 array)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    out = np.zeros(len(sizes), dtype=np.float64)
    nonempty = sizes > 0
    starts = (np.cumsum(sizes) - sizes)[nonempty]
    if len(starts):
        if norm_type == "l2":
            out[nonempty] = np.add.reduceat(flat * flat, starts)
        else:
            out[nonempty] = np.maximum.reduceat(np.abs(flat), starts)
    return out


def ref_norm(norm_type, r, inv, tnorm_name):
    """UnscaledNorm written out: sqrt(Tn(r * inv * inv)) or Tn(r * inv), the
    products in float64; NaN for an inverse_scale not positive and finite."""
    if not (math.isfinite(inv) and inv > 0):
        return math.nan
    if norm_type == "inf":
        return to_tnorm(r * inv, tnorm_name)
    s = to_tnorm(r * inv * inv, tnorm_name)
    return to_tnorm(math.sqrt(s), tnorm_name) if s >= 0 else math.nan


def ref_combine(norm_type, reductions):
    """The list's reduction in FinishNorms' order: tiles of 1,024 in list
    order, each by a pairwise tree (entry k with k + 512, then k + 256, ...,
    entries past the list 0); a sum, or the maximum (NaN wins)."""

    def combine(a, b):
        if norm_type == "l2":
            return a + b
        if math.isnan(a) or math.isnan(b):
            return math.nan
        return max(a, b)

    values = [float(r) for r in reductions]
    acc = 0.0
    for base in range(0, len(values), 1024):
        tile = values[base : base + 1024]
        tile += [0.0] * (1024 - len(tile))
        stride = 512
        while stride > 0:
            tile[:stride] = [
                combine(a, b) for a, b in zip(tile[:stride], tile[stride : 2 * stride])
            ]
            stride //= 2
        acc = combine(acc, tile[0])
    return acc


def same_float(a, b):
    return (math.isnan(a) and math.isnan(b)) or a == b


def close_reduction(got, want, norm_type):
    """A sum within 1e-12 of numpy's; a maximum (exact), inf, NaN or 0 equal."""
    if norm_type == "inf" or not math.isfinite(want) or want == 0:
        return same_float(got, want)
    return abs(got - want) <= 1e-12 * want


def v2_rule(torch, x_dtype, norm, clip_norm, inv, tnorm):
    """The clip of MonolithClipByGlobalNormV2 (DecideUnscaledClipOrNaN): with
    inverse_scale 1 the rule of cpu_rule(); otherwise the scale inverse_scale *
    clip factor in Tnorm, taken in the element's compute type."""
    if not (math.isfinite(inv) and inv > 0):
        return "nan", None
    if inv == 1.0:
        return cpu_rule(torch, x_dtype, norm, clip_norm, tnorm)
    if not (math.isfinite(clip_norm) and clip_norm > 0) or not math.isfinite(norm) or norm < 0:
        return "nan", None
    r = lambda v: rounded(torch, v, tnorm)  # noqa: E731
    factor = 1.0
    if norm > clip_norm:
        factor = r(clip_norm * min(r(1 / norm), r(1 / clip_norm)))
    scale = torch.tensor(r(inv * factor), dtype=torch.float64)
    compute = torch.float64 if x_dtype == torch.float64 else torch.float32
    return "scale", scale.to(compute)


def check_v2_list(
    core,
    res,
    name,
    xs,
    norm_type,
    tnorm,
    inverse_scale,
    clip_factor,
    in_place=False,
    refs=None,
    flat=None,
):
    """Per-tensor reductions, norms and the clip with unscaling of one list.

    refs: the list's np_reductions, when already known.
    flat: a tensor of which xs (all of its dtype) are consecutive views
    covering it whole; the outputs are then views of one buffer, and inputs
    and outputs are compared in one piece, not tensor by tensor.
    """
    torch = core.torch
    tn = str(tnorm)[6:]
    refs = np_reductions(torch, xs, norm_type) if refs is None else refs
    inv = to_tnorm(1.0 if inverse_scale is None else inverse_scale, tn)
    unscaled = ref_norm(norm_type, ref_combine(norm_type, refs), inv, tn)
    clip_norm = to_tnorm(unscaled * clip_factor if 0 < unscaled < math.inf else 1.0, tn)
    keep = [x.clone() for x in xs] if in_place else xs
    outs = xs if in_place else [torch.full_like(x, 7.0) for x in xs]
    if flat is not None:
        assert not in_place and all(x.dtype == flat.dtype for x in xs)
        out_flat = torch.full_like(flat, 7.0)
        outs = list(torch.split(out_flat, [x.numel() for x in xs]))
    plan = NormsV2(core, xs, norm_type, tnorm, inverse_scale, outs, clip_norm).launch()
    per = plan.per_tensor_values()
    bad = [i for i in range(len(xs)) if not close_reduction(float(per[i]), refs[i], norm_type)]
    res.add(
        f"{name} per-tensor {norm_type}",
        not bad,
        f"{len(bad)} of {len(xs)} wrong" + (f", first {bad[0]}" if bad else ""),
    )
    got_global, got_norms = plan.norms()
    want_norms = [ref_norm(norm_type, float(r), inv, tn) for r in per]
    want_global = ref_norm(norm_type, ref_combine(norm_type, per), inv, tn)
    wrong = sum(not same_float(g, w) for g, w in zip(got_norms, want_norms))
    res.add(
        f"{name} norms {norm_type}/{tn} inverse_scale {inverse_scale}",
        wrong == 0 and same_float(got_global, want_global),
        f"global {got_global:.9g} want {want_global:.9g}, {wrong} tensor norms wrong",
    )
    # The clip, per dtype, against the rule for the norm the device computed.
    exact = True
    worst = 0.0
    actions = set()
    true_scale = inv * clip_norm / max(unscaled, clip_norm) if math.isfinite(unscaled) else 0
    for dtype, idx in plan.groups.items():
        action, scale = v2_rule(torch, dtype, got_global, clip_norm, inv, tnorm)
        actions.add(action)
        if flat is not None:
            ins_cmp, outs_cmp = [flat], [out_flat]
        else:
            ins_cmp, outs_cmp = [keep[i] for i in idx], [outs[i] for i in idx]
        ok, err = compare_outputs(torch, ins_cmp, outs_cmp, action, scale, true_scale)
        exact &= ok
        if action != "nan":
            worst = max(worst, err / (4 * tolerance(torch, dtype, tnorm)))
    res.add(
        f"{name} clip {'/'.join(sorted(actions))} {tn} inverse_scale {inverse_scale}"
        + (" in place" if in_place else ""),
        exact and worst <= 1.0,
        f"bitwise={exact}, worst error / tolerance {worst:.2f}",
    )
    return plan


INVERSE_SCALES = (None, 1.0, 0.25, 2.0**-16, 1e-3)


def check_v2_dtypes(core, res, gen):
    """Every dtype alone, and one list of all four (entries at mixed positions)."""
    torch = core.torch
    sizes = [1, 0, 3, 1000, 8191, 8192, 8193, 0, 65536 + 5, 17, 250000]
    dtypes = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
    lists = {str(d)[6:]: random_list(torch, d, sizes, gen=gen) for d in dtypes}
    mixed = []
    for i, n in enumerate(sizes + sizes[::-1]):  # some start off 16 bytes
        mixed.append(random_list(torch, dtypes[i % 4], [n] * 3, gen=gen)[i % 3])
    lists["mixed"] = mixed
    for name, xs in lists.items():
        for norm_type in ("l2", "inf"):
            refs = np_reductions(torch, xs, norm_type)
            for tnorm in (torch.float32, torch.float64):
                for inverse_scale in INVERSE_SCALES:
                    for factor in (0.5, 2.0):
                        check_v2_list(
                            core,
                            res,
                            name,
                            xs,
                            norm_type,
                            tnorm,
                            inverse_scale,
                            factor,
                            refs=refs,
                        )
    # In place: a pass-through with inverse_scale 1 writes nothing; any other
    # inverse_scale scales every element.
    for inverse_scale, factor in ((None, 2.0), (1.0, 0.5), (0.25, 2.0), (2.0**-16, 0.5)):
        xs = random_list(torch, torch.float16, [1000, 77, 40000], gen=gen)
        check_v2_list(
            core, res, "float16", xs, "l2", torch.float32, inverse_scale, factor, in_place=True
        )


def check_v2_special(core, res, gen):
    """inf / NaN elements, norms overflowing float32, bad inverse_scale and
    clip_norm, empty lists and tensors."""
    torch = core.torch
    for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        xs = random_list(torch, dtype, [100, 5000, 3, 0, 9000, 8193], gen=gen)
        xs[1][1234] = float("inf")
        xs[2][1] = float("-inf")
        xs[4][100] = float("nan")
        xs[4][200] = float("inf")
        xs[5][8192] = float("nan")
        for norm_type in ("l2", "inf"):
            for inverse_scale in (None, 0.5):
                plan = check_v2_list(
                    core,
                    res,
                    f"{str(dtype)[6:]} inf/NaN",
                    xs,
                    norm_type,
                    torch.float32,
                    inverse_scale,
                    0.5,
                )
                g, norms = plan.norms()
                want = [False, True, True, False, True, True]  # not finite
                res.add(
                    f"{str(dtype)[6:]} inf/NaN {norm_type}: which norms are finite",
                    math.isnan(g) and [not math.isfinite(v) for v in norms] == want,
                    f"global {g}, norms {norms}",
                )
    # Norms that overflow float32 but not float64: inf in float32 only.
    xs = [torch.full((1000,), 3e19, device="cuda"), torch.ones(10, device="cuda")]
    for tnorm in (torch.float32, torch.float64):
        plan = check_v2_list(core, res, f"overflow {str(tnorm)[6:]}", xs, "l2", tnorm, None, 0.5)
        g, norms = plan.norms()
        want_inf = tnorm == torch.float32
        res.add(
            f"overflow: the float32 norm is inf, the float64 one finite ({str(tnorm)[6:]})",
            math.isinf(g) == want_inf and math.isinf(norms[0]) == want_inf,
            f"global {g}",
        )
    # What the CPU kernels reject: every norm and output NaN.
    xs = random_list(torch, torch.float32, [100, 5000], gen=gen)
    for inverse_scale in (0.0, -1.0, float("inf"), float("nan")):
        outs = [torch.zeros_like(x) for x in xs]
        plan = NormsV2(core, xs, "l2", torch.float32, inverse_scale, outs, 1.0).launch()
        g, norms = plan.norms()
        ok = math.isnan(g) and all(math.isnan(v) for v in norms)
        ok &= all(bool(torch.isnan(o).all()) for o in outs)
        res.add(f"inverse_scale {inverse_scale}: norms and outputs all NaN", ok, f"global {g}")
    for clip_norm in (0.0, -1.0, float("inf"), float("nan")):
        outs = [torch.zeros_like(x) for x in xs]
        NormsV2(core, xs, "l2", torch.float32, 0.5, outs, clip_norm).launch()
        ok = all(bool(torch.isnan(o).all()) for o in outs)
        res.add(f"unscaled clip with clip_norm {clip_norm}: outputs all NaN", ok)
    # Empty list, list of empty tensors.
    plan = NormsV2(core, [], "l2", torch.float32, 0.5).launch()
    res.add("V2 empty list: norm 0", float(plan.global_norm) == 0.0)
    xs = [torch.empty(0, device="cuda"), torch.empty(0, 5, dtype=torch.float16, device="cuda")]
    for norm_type in ("l2", "inf"):
        plan = NormsV2(core, xs, norm_type, torch.float64, 0.5).launch()
        g, norms = plan.norms()
        res.add(f"V2 empty tensors {norm_type}: norms 0", g == 0.0 and norms == [0.0, 0.0])


def check_v2_many(core, res, gen, count):
    """Many tiny tensors (views of one buffer, most misaligned) and a few over
    a chunk, the per-tensor reductions against numpy's."""
    torch = core.torch
    sizes = torch.randint(0, 129, (count,), generator=gen, device="cuda").tolist()
    for i in range(0, count, max(1, count // 5)):
        sizes[i] = 3 * core.m.CHUNK + 5
    flat = torch.randn(sum(sizes), device="cuda", generator=gen)
    xs = list(torch.split(flat, sizes))
    host = flat.double().cpu().numpy()
    for norm_type in ("l2", "inf"):
        refs = np_segment_reductions(host, sizes, norm_type)
        check_v2_list(
            core,
            res,
            f"{count} tensors",
            xs,
            norm_type,
            torch.float32,
            0.25,
            0.5,
            refs=refs,
            flat=flat,
        )


def check_v2_determinism(core, res, gen, runs=10):
    """10 runs give bitwise the same reductions, norms and outputs; the same
    values at other addresses reduce alike."""
    torch = core.torch
    dtypes = (torch.float32, torch.bfloat16, torch.float64, torch.float16)
    xs = []
    for i, s in enumerate(dense_shapes()):
        xs.append(torch.randn(s, device="cuda", generator=gen).to(dtypes[i % 4]))
    for norm_type in ("l2", "inf"):
        first, differ = None, 0
        for _ in range(runs):
            outs = [torch.empty_like(x) for x in xs]
            plan = NormsV2(core, xs, norm_type, torch.float32, 2.0**-10, outs, 1e-3).launch()
            run = [bits(torch, plan.per_tensor), bits(torch, plan.tensor_norms)]
            run += [bits(torch, o) for o in outs]
            if first is None:
                first = run
            else:
                differ += not all(torch.equal(a, b) for a, b in zip(first, run))
        res.add(
            f"V2 determinism, mixed dense53, {norm_type}, {runs} runs",
            differ == 0,
            f"{differ} of {runs - 1} reruns differ from the first",
        )
    xs = random_list(torch, torch.float32, [3, 100001, 5000], misalign=False, gen=gen)
    moved = shifted_copies(torch, xs)
    a = NormsV2(core, xs, "l2", torch.float64).launch().per_tensor
    b = NormsV2(core, moved, "l2", torch.float64).launch().per_tensor
    res.add(
        "V2 per-tensor sums independent of alignment", torch.equal(bits(torch, a), bits(torch, b))
    )


def check_v2_graph(core, res, gen):
    """Norms and the unscaled clip captured in a CUDA graph, replayed on new
    data: scale, pass-through (inverse_scale 1) and an inf."""
    torch = core.torch
    xs = [torch.randn(s, device="cuda", generator=gen) for s in dense_shapes()]
    xs = [x.half() if i % 2 else x for i, x in enumerate(xs)]
    outs = [torch.empty_like(x) for x in xs]
    plans = {inv: NormsV2(core, xs, "l2", torch.float32, inv, outs, 10.0) for inv in (1.0, 0.5)}
    for inv, plan in plans.items():
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            plan.launch()  # warm-up: module load, grid sizes
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                plan.launch()
        except RuntimeError as err:
            res.add(f"V2 CUDA graph capture, inverse_scale {inv}", False, str(err))
            continue
        for case, factor in (("over clip_norm", 1.0), ("under clip_norm", 1e-4), ("inf", None)):
            for x in xs:
                x.copy_(torch.randn(x.shape, device="cuda", generator=gen) * (factor or 1.0))
            if factor is None:
                xs[7][3, 3] = float("inf")
            for o in outs:
                o.fill_(7.0)
            graph.replay()
            torch.cuda.synchronize()
            ref = inv * math.sqrt(float(np_reductions(torch, xs, "l2").sum()))
            got = float(plan.global_norm)
            exact = True
            for dtype, idx in plan.groups.items():
                action, scale = v2_rule(torch, dtype, got, 10.0, inv, torch.float32)
                ok, _ = compare_outputs(
                    torch, [xs[i] for i in idx], [outs[i] for i in idx], action, scale, 0.0
                )
                exact &= ok
            norm_ok = math.isinf(got) if factor is None else abs(got - ref) <= 1e-6 * ref
            res.add(
                f"V2 CUDA graph replay, inverse_scale {inv}, {case}",
                exact and norm_ok,
                f"norm {got:.6g}",
            )


def check_grid(core, res, gen, grids=(1, 3, 7, 64)):
    """The sum, the fused clip and the V2 reductions are bitwise the same on
    grids capped at a few blocks as on the computed grid."""
    torch = core.torch
    xs = random_list(torch, torch.float32, [3, 100001, 5000, 70000, 17], gen=gen)
    mixed = [
        x.to(d)
        for x, d in zip(
            xs, (torch.float32, torch.bfloat16, torch.float64, torch.float16, torch.float32)
        )
    ]
    clip = torch.tensor(math.sqrt(ref_sum_of_squares(torch, xs)) / 3, device="cuda")

    def results():
        out = [bits(torch, core.sum_of_squares(core.prepare(xs), torch.float64).reshape(1))]
        outs = [torch.empty_like(x) for x in xs]
        out.append(bits(torch, core.clip_fused(core.prepare(xs, outs), clip).reshape(1)))
        out += [bits(torch, o) for o in outs]
        for norm_type in ("l2", "inf"):
            plan = NormsV2(core, mixed, norm_type, torch.float32, 0.5).launch()
            out += [bits(torch, plan.per_tensor), bits(torch, plan.tensor_norms)]
        return out

    try:
        core.m.set_max_grid(0)
        want = results()
        for grid in grids:
            core.m.set_max_grid(grid)
            got = results()
            same = all(torch.equal(a, b) for a, b in zip(want, got))
            res.add(f"grid capped at {grid} blocks: bitwise as the computed grid", same)
    finally:
        core.m.set_max_grid(0)


def check_sanitizer_cases(core, res, gen):
    """A reduced list for compute-sanitizer: every kernel and dtype once, on
    small lists (misaligned, empty tensors, an empty list, in place)."""
    torch = core.torch
    sizes = [1, 0, 3, 1000, 8193, 17]
    for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        xs = random_list(torch, dtype, sizes, gen=gen)
        check_list(core, res, f"{str(dtype)[6:]}/float32", xs, dtype, torch.float32)
    mixed = [
        random_list(torch, d, [n], gen=gen)[0]
        for n, d in zip(
            sizes + sizes[::-1],
            (torch.float32, torch.float64, torch.float16, torch.bfloat16) * 3,
        )
    ]
    for norm_type in ("l2", "inf"):
        check_v2_list(core, res, "mixed", mixed, norm_type, torch.float32, 0.25, 0.5)
    xs = random_list(torch, torch.float16, [1000, 77, 4000], gen=gen)
    check_v2_list(core, res, "float16", xs, "l2", torch.float32, 1.0, 0.5, in_place=True)
    plan = NormsV2(core, [], "l2", torch.float32, 0.5).launch()
    res.add("V2 empty list: norm 0", float(plan.global_norm) == 0.0)
    n = float(
        core.clip_fused(core.prepare([], [], dtype=torch.float32), torch.tensor(1.0, device="cuda"))
    )
    res.add("empty list: norm 0", n == 0.0, f"norm {n}")
    core.m.set_max_grid(3)
    try:
        check_list(core, res, "float16 grid 3", xs[:2], torch.float16, torch.float32)
    finally:
        core.m.set_max_grid(0)


# --------------------------------------------------------------- benchmarks


def dense_shapes():
    """The 53 dense gradient shapes of Monolith's "large grad" test (7,686,760
    floats), from the tree's one copy."""
    with open(DENSE_SHAPES_FILE) as f:
        return [tuple(s) for s in json.load(f)["shapes"]]


def time_per_call(torch, fn, calls=10, samples=20, warmup=3, quick=False):
    """Median over `samples` of the event-timed mean of `calls` calls, in s."""
    if quick:
        calls, samples, warmup = 2, 3, 1
    for i in range(warmup):
        fn(i)
    torch.cuda.synchronize()
    times = []
    for s in range(samples):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for i in range(calls):
            fn(s * calls + i)
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop) / 1e3 / calls)
    return statistics.median(times)


def copy_bandwidth(torch, nbytes=2 << 30, quick=False):
    src = torch.randn(nbytes // 4, device="cuda")
    dst = torch.empty_like(src)
    t = time_per_call(torch, lambda i: dst.copy_(src), calls=5, samples=10, quick=quick)
    return 2 * nbytes / t


def benchmark(core, gen, quick=False):
    torch = core.torch
    copy_bw = copy_bandwidth(torch, (64 << 20) if quick else (2 << 30), quick)
    print(f"device-to-device copy: {copy_bw / 1e9:.0f} GB/s (read + write)")
    workloads = {
        "dense53 (7.7M)": dense_shapes(),
        "1000 x 100": [(100,)] * 1000,
        "4 x 16M": [(16 << 20,)] * 4,
    }
    if quick:  # the same code on small data, to try the script out
        workloads = {
            "dense53[:16]": dense_shapes()[:16],
            "100 x 100": [(100,)] * 100,
            "4 x 64K": [(64 << 10,)] * 4,
        }
    rows = []
    for name, shapes in workloads.items():
        rows += bench_workload(core, gen, name, shapes, copy_bw, quick)
        torch.cuda.empty_cache()
    return copy_bw, rows


def bench_workload(core, gen, name, shapes, copy_bw, quick=False):
    """Rows of the table for one workload of float32 tensors."""
    torch = core.torch
    l2 = getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 50 << 20)
    elements = sum(math.prod(s) for s in shapes)
    # Several input sets, used in turn, so that big ones are read from memory,
    # not from L2 (small ones fit in L2 whatever we do).
    sets = max(1, min(8, math.ceil(3 * l2 / (4 * elements))))
    grads = [[torch.randn(s, device="cuda", generator=gen) for s in shapes] for _ in range(sets)]
    outs = [[torch.empty_like(g) for g in gs] for gs in grads]
    norm_lists = [core.prepare(gs) for gs in grads]
    clip_lists = [core.prepare(gs, os_) for gs, os_ in zip(grads, outs)]
    norms = [math.sqrt(ref_sum_of_squares(torch, gs)) for gs in grads]
    clip = torch.tensor(0.5 * min(norms), device="cuda")  # always scales
    sum_out = torch.empty((), device="cuda")
    norm_out = torch.empty((), device="cuda")
    params = []  # clip_grad_norm_ clips the .grad of parameters, in place
    for gs in grads:
        ps = [torch.nn.Parameter(torch.zeros_like(g)) for g in gs]
        for p_, g in zip(ps, gs):
            p_.grad = g
        params.append(ps)
    max_norm = float(clip)

    # Each call of ours copies its table to the device, as the TF kernels do.
    def ours_norm(i):
        p = norm_lists[i % sets]
        p.upload_core()  # p outlives the timing's synchronizations
        core.m.sum_of_squares(
            p.table, core.m.FLOAT, p.partials.data_ptr(), sum_out.data_ptr(), core.stream()
        )

    def ours_clip(i):
        p = clip_lists[i % sets]
        p.upload_core()  # p outlives the timing's synchronizations
        core.m.clip_fused(
            p.table,
            core.m.FLOAT,
            clip.data_ptr(),
            p.partials.data_ptr(),
            norm_out.data_ptr(),
            core.stream(),
        )

    def torch_norm(i):
        n = torch._foreach_norm(grads[i % sets])
        return torch.linalg.vector_norm(torch.stack(n))

    def torch_clip(i):
        torch.nn.utils.clip_grad_norm_(params[i % sets], max_norm, foreach=True)

    rows = []
    for op, bytes_per, ours, theirs, their_name in (
        ("global norm", 4, ours_norm, torch_norm, "torch._foreach_norm"),
        ("clip", 12, ours_clip, torch_clip, "clip_grad_norm_(foreach)"),
    ):
        t_ours = time_per_call(torch, ours, quick=quick)
        t_torch = time_per_call(torch, theirs, quick=quick)
        nbytes = bytes_per * elements
        for impl, t in (("monolith_ops core", t_ours), (their_name, t_torch)):
            bw = nbytes / t
            rows.append((name, op, impl, t * 1e6, bw / 1e9, t_torch / t, bw / copy_bw))

    # The alias decision: when norm <= clip_norm, the kernels copy the inputs
    # (no host read), where a host read of the norm would let the outputs
    # alias the inputs instead. Wall-clock per call, in a loop, for both.
    big_clip = torch.tensor(2.0 * max(norms), device="cuda")

    def copy_path(i):  # the fused op as built: norm, then a pass-through copy
        p = clip_lists[i % sets]
        p.upload_core()  # p outlives the timing's synchronizations
        core.m.clip_fused(
            p.table,
            core.m.FLOAT,
            big_clip.data_ptr(),
            p.partials.data_ptr(),
            norm_out.data_ptr(),
            core.stream(),
        )

    def alias_path(i):  # norm, a host read of it, then no copy
        ours_norm(i)
        float(sum_out)

    rows += [
        (name, "pass-through", impl, t * 1e6, 0.0, 0.0, 0.0)
        for impl, t in (
            ("copy on the device (as built)", wall_per_call(torch, copy_path, quick)),
            ("host read, then alias", wall_per_call(torch, alias_path, quick)),
        )
    ]
    return rows


def bench_v2_and_parts(core, gen, copy_bw, quick=False):
    """Rows for the V2 ops on the dense shapes (against torch's foreach norm
    and clip_grad_norm_), the final combine of 100,000 tensors' reductions
    and the per-call upload of the table (against torch's own copy)."""
    torch = core.torch
    shapes = dense_shapes()[:16] if quick else dense_shapes()
    name = f"dense{len(shapes)}"
    grads = [torch.randn(s, device="cuda", generator=gen) for s in shapes]
    outs = [torch.empty_like(g) for g in grads]
    elements = sum(g.numel() for g in grads)
    norms_plan = NormsV2(core, grads, "l2", torch.float32, 0.5)
    clip_plan = NormsV2(core, grads, "l2", torch.float32, 0.5, outs, 1e-3)
    params = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]
    for p_, g in zip(params, grads):
        p_.grad = g

    def upload_and_launch(plan):
        for p in plan.tables:
            p.upload_core()
        plan.launch()

    def torch_norms(i):
        n = torch._foreach_norm(grads)
        return torch.linalg.vector_norm(torch.stack(n))

    def torch_clip(i):
        torch.nn.utils.clip_grad_norm_(params, 1e-3, foreach=True)

    rows = []
    for op, bytes_per, ours, theirs, their_name in (
        (
            "V2 norms (l2)",
            4,
            lambda i: upload_and_launch(norms_plan),
            torch_norms,
            "torch._foreach_norm",
        ),
        (
            "V2 clip (l2, unscale)",
            12,
            lambda i: upload_and_launch(clip_plan),
            torch_clip,
            "clip_grad_norm_(foreach)",
        ),
    ):
        t_ours = time_per_call(torch, ours, quick=quick)
        t_torch = time_per_call(torch, theirs, quick=quick)
        for impl, t in (("monolith_ops core", t_ours), (their_name, t_torch)):
            bw = bytes_per * elements / t
            rows.append((name, op, impl, t * 1e6, bw / 1e9, t_torch / t, bw / copy_bw))

    # The final combine alone: FinishNorms over 100,000 per-tensor sums, against
    # torch's sqrt of their sum (no per-tensor norms).
    count = 2000 if quick else 100_000
    per_tensor = torch.rand(count, dtype=torch.float64, device="cuda", generator=gen)
    inv = torch.tensor(0.5, device="cuda")
    global_norm = torch.empty((), device="cuda")
    tensor_norms = torch.empty(count, device="cuda")

    def combine(i):
        core.m.finish_norms(
            core.m.L2,
            core.m.FLOAT,
            per_tensor.data_ptr(),
            count,
            inv.data_ptr(),
            global_norm.data_ptr(),
            tensor_norms.data_ptr(),
            core.stream(),
        )

    t_ours = time_per_call(torch, combine, quick=quick)
    t_torch = time_per_call(torch, lambda i: per_tensor.sum().sqrt(), quick=quick)
    for impl, t in (("monolith_ops core", t_ours), ("torch sum().sqrt()", t_torch)):
        bw = 8 * count / t
        rows.append(
            (
                f"{count:,} tensors",
                "final combine",
                impl,
                t * 1e6,
                bw / 1e9,
                t_torch / t,
                bw / copy_bw,
            )
        )

    # The table's upload, as each TensorFlow kernel call does it for a list
    # of more than MAX_INLINE_TENSORS tensors (a shorter one goes by value
    # and uploads nothing, so it has no row).
    sizes = [100] * count
    flat = torch.randn(sum(sizes), device="cuda", generator=gen)
    xs = list(torch.split(flat, sizes))
    for label, p in (
        (f"{count:,} tensors", core.prepare(xs, xs)),
        (name, core.prepare(grads, outs)),
    ):
        if p.nbytes == 0:
            continue
        t_ours = time_per_call(torch, lambda i, p=p: p.upload_core(), quick=quick)
        t_torch = time_per_call(torch, lambda i, p=p: p.upload(), quick=quick)
        for impl, t in (("core CopyTableToDevice", t_ours), ("torch copy_", t_torch)):
            bw = p.nbytes / t
            rows.append(
                (
                    label,
                    f"table upload ({p.nbytes:,} B)",
                    impl,
                    t * 1e6,
                    bw / 1e9,
                    t_torch / t,
                    bw / copy_bw,
                )
            )
    return rows


def wall_per_call(torch, fn, quick=False, calls=50, samples=7):
    """Median wall-clock seconds per call of `calls` calls, then a sync."""
    if quick:
        calls, samples = 2, 2
    fn(0)
    torch.cuda.synchronize()
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        for i in range(calls):
            fn(i)
        torch.cuda.synchronize()
        times.append((time.perf_counter() - start) / calls)
    return statistics.median(times)


# --------------------------------------------------------------------- main


def markdown(results, copy_bw, bench_rows, title):
    lines = [title, ""]
    lines += ["| check | result | detail |", "| --- | --- | --- |"]
    lines += [f"| {n} | {'PASS' if ok else 'FAIL'} | {d} |" for n, ok, d in results.rows]
    if bench_rows:
        lines += [
            "",
            f"Device-to-device copy in the same run: {copy_bw / 1e9:.0f} GB/s "
            "(bytes read + written). Bytes counted: 4 per element for the norm, 12 "
            "for the clip. 'vs torch' is torch's time over this row's time.",
            "",
        ]
        lines += [
            "| workload | op | implementation | us/call | GB/s | vs torch | of copy BW |",
            "| --- | --- | --- | ---: | ---: | ---: | ---: |",
        ]
        lines += [
            f"| {w} | {o} | {i} | {t:.1f} | {g:.1f} | {r:.2f} | {f:.3f} |"
            for w, o, i, t, g, r, f in bench_rows
            if o != "pass-through"
        ]
        lines += [
            "",
            "The alias decision, when norm <= clip_norm: wall-clock per call "
            "in a loop of calls (host launch costs and syncs included).",
            "",
            "| workload | implementation | us/call |",
            "| --- | --- | ---: |",
        ]
        lines += [
            f"| {w} | {i} | {t:.1f} |" for w, o, i, t, *_ in bench_rows if o == "pass-through"
        ]
    return "\n".join(lines) + "\n"


PHASES = ("all", "build", "quick", "sanitizer", "large", "timings")


def module_path(build_dir):
    return os.path.join(build_dir, "clip_core_gpu" + sysconfig.get_config_var("EXT_SUFFIX"))


def load_module(path):
    spec = importlib.util.spec_from_file_location("clip_core_gpu", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def import_torch():
    """torch, or an exit at once that says why the check cannot run."""
    try:
        import torch
    except ImportError as err:
        sys.exit(f"check_gpu: torch cannot be imported ({err}); the check needs torch with CUDA")
    if not torch.cuda.is_available():
        sys.exit("check_gpu: torch sees no CUDA device; nothing to check")
    return torch


def run_phase(phase, core, res, gen, args):
    """The checks of one phase ("all": every check, as before phases)."""
    quick = args.quick or phase == "quick"
    many = 2000 if quick else 100_000
    if phase in ("all", "quick"):
        res.run("dtypes", check_dtypes, core, res, gen)
        res.run("special values", check_special, core, res, gen)
    if phase in ("all", "quick", "large"):
        res.run(f"{many:,} tensors", check_many, core, res, gen, many)
    if phase in ("all", "large") and not (args.skip_huge or args.quick):
        res.run("over 2**31 elements", check_huge, core, res, gen)
    if phase in ("all", "large"):
        res.run("determinism", check_determinism, core, res, gen)
    if phase in ("all", "quick"):
        res.run("CUDA graph", check_graph, core, res, gen)
        res.run("by-value threshold", check_threshold, core, res, gen)
        res.run("V2 dtypes", check_v2_dtypes, core, res, gen)
        res.run("V2 special values", check_v2_special, core, res, gen)
    if phase in ("all", "quick", "large"):
        res.run(f"V2 {many:,} tensors", check_v2_many, core, res, gen, many)
    if phase in ("all", "large"):
        res.run("V2 determinism", check_v2_determinism, core, res, gen)
        res.run("grid size", check_grid, core, res, gen)
    if phase in ("all", "quick"):
        res.run("V2 CUDA graph", check_v2_graph, core, res, gen)
    if phase == "sanitizer":
        res.run("sanitizer cases", check_sanitizer_cases, core, res, gen)
    copy_bw, rows = 0.0, []
    if phase == "timings" or (phase == "all" and not args.skip_bench):
        try:
            copy_bw, rows = benchmark(core, gen, args.quick)
            res.save(copy_bw, rows)
            rows += bench_v2_and_parts(core, gen, copy_bw, args.quick)
        except Exception as err:
            traceback.print_exc()
            res.add("benchmark", False, f"{type(err).__name__}: {err}")
    return copy_bw, rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--build-only", action="store_true", help="compile and import the module, then stop"
    )
    parser.add_argument(
        "--phase",
        choices=PHASES,
        default="all",
        help="build: build the module for the device; quick: correctness on small "
        "sizes; sanitizer: a reduced list for compute-sanitizer; large: 100,000 "
        "tensors, over 2**31 elements, determinism, grid size; timings: the "
        "benchmark; all (default): every check and the benchmark",
    )
    parser.add_argument(
        "--prebuilt",
        action="store_true",
        help="import the module an earlier run built in --build-dir; never compile",
    )
    parser.add_argument(
        "--arch",
        help="SM version to build for, e.g. 90 (default: the device's, or 90 with --build-only)",
    )
    parser.add_argument("--build-dir", help="build here instead of a temporary folder")
    parser.add_argument(
        "--skip-huge",
        action="store_true",
        help="skip the list of more than 2**31 elements (needs ~10 GB)",
    )
    parser.add_argument("--skip-bench", action="store_true", help="checks only")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes everywhere (no 2**31 list, 2,000 tensors "
        "instead of 100,000, tiny benchmarks): a smoke test of the script",
    )
    parser.add_argument("--out", help="also write the tables here, as Markdown")
    args = parser.parse_args()
    started = time.time()
    if args.prebuilt and not args.build_dir:
        parser.error("--prebuilt needs --build-dir")

    module = None
    if args.prebuilt:  # before torch: no compiler is ever started here
        path = module_path(args.build_dir)
        if not os.path.exists(path):
            sys.exit(f"check_gpu: no built module {path} (run --phase build first)")
        module = load_module(path)
    torch = None
    arch = args.arch
    if not args.build_only:
        torch = import_torch()
        if arch is None:
            major, minor = torch.cuda.get_device_capability()
            arch = f"{major}{minor}"
    if module is None:
        build_dir = args.build_dir or tempfile.mkdtemp(prefix="clip_core_gpu_")
        os.makedirs(build_dir, exist_ok=True)
        module = build(build_dir, arch or "90")
    if args.build_only or args.phase == "build":
        try:
            print(f"CUDA devices: {module.device_count()}")
        except RuntimeError as err:
            if not args.build_only:
                sys.exit(f"check_gpu: the module cannot use the device ({err})")
            print(f"module imported; no CUDA device to run on ({err})")
        return 0

    device = torch.cuda.get_device_name()
    print(f"device: {device}, torch {torch.__version__}, phase {args.phase}")
    module.device_count()
    core = Core(module, torch)
    gen = torch.Generator(device="cuda")
    gen.manual_seed(20240607)
    res = Results(args.out, f"GPU check of the CUDA core on {device}, phase {args.phase}")
    copy_bw, rows = run_phase(args.phase, core, res, gen, args)
    torch.cuda.synchronize()
    res.save(copy_bw, rows)
    print()
    print(markdown(res, copy_bw, rows, res.title))
    print(
        f"{len(res.rows) - len(res.failed)}/{len(res.rows)} checks passed "
        f"in {time.time() - started:.0f} s"
    )
    return 1 if res.failed else 0


if __name__ == "__main__":
    sys.exit(main())
