# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""The float64 references of the clip and the helpers that compare with them.

The reference is numpy in float64 (exact up to float64 rounding): the norms
(L2 and infinity, of the list and of each tensor, times inverse_scale) and
the clip (t * inverse_scale * clip_norm / max(norm, clip_norm), NaN outputs
for a norm that is inf or NaN). Results are compared with it in units in the
last place (ulps) of their dtype, or relatively (TOLERANCE: the float
rounding of stock TF against which the default ops are checked).

It also holds the sample lists the tests share: a layout of dense tensors,
IndexedSlices (with a duplicate index) and None entries, and tensor sizes
whose pieces start at every alignment of the kernels' reduction blocks.
Every test file of the clip imports what it needs from here.
"""

import numpy as np
import tensorflow as tf

INF, NAN = float("inf"), float("nan")

F16 = np.dtype(np.float16)
BF16 = np.dtype(tf.bfloat16.as_numpy_dtype)
F32 = np.dtype(np.float32)
F64 = np.dtype(np.float64)
DTYPES = (F32, F64, F16, BF16)
DTYPE_IDS = [d.name for d in DTYPES]

# (mantissa bits, smallest normal exponent) of each dtype.
_PRECISION = {F32: (23, -126), F64: (52, -1022), F16: (10, -14), BF16: (7, -126)}
# Tolerances in ulps of the result's dtype. A 32- or 16-bit norm is rounded
# from a sum in double (twice for 16-bit: to float32, then to the dtype); a
# float64 sum of a few hundred squares may be off by some hundred ulps. An
# output is a product of a few rounded factors, rounded to its dtype.
NORM_ULPS = {F32: 1, F64: 512, F16: 1, BF16: 1}
OUT_ULPS = {F32: 4, F64: 512, F16: 2, BF16: 2}

# Relative tolerances of results against stock TF (whose sums are less
# accurate than the kernels').
TOLERANCE = {F32: 2e-6, F64: 1e-13, F16: 2e-3, BF16: 1.6e-2}


# --- References and comparisons ----------------------------------------------


def ulp(x, dtype):
    """The spacing of `dtype` at the (float64) values x (subnormals included)."""
    bits, emin = _PRECISION[np.dtype(dtype)]
    ax = np.abs(np.asarray(x, np.float64))
    safe = np.where((ax > 0) & np.isfinite(ax), ax, 1.0)
    exponent = np.maximum(np.floor(np.log2(safe)), emin)
    exponent = np.where(ax > 0, exponent, emin)
    return np.ldexp(1.0, (exponent - bits).astype(np.int64))


def assert_ulps(got, want, dtype, ulps, what=""):
    """got (in `dtype`) within `ulps` ulps of the exact float64 values want;
    inf and NaN where want has them."""
    got = np.asarray(got)
    assert got.dtype == np.dtype(dtype), f"{what}: dtype {got.dtype}, expected {dtype}"
    got = got.astype(np.float64)
    want = np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{what}: NaNs")
    infinite = np.isinf(want)
    np.testing.assert_array_equal(got[infinite], want[infinite], err_msg=f"{what}: infs")
    finite = np.isfinite(want)
    err = np.abs(got[finite] - want[finite]) / ulp(want[finite], dtype)
    assert not np.any(err > ulps), (
        f"{what}: {np.count_nonzero(err > ulps)} of {err.size} values beyond {ulps} ulps "
        f"(worst {np.max(err):.3g} ulps); got {got[finite][err > ulps][:5]}, "
        f"expected {want[finite][err > ulps][:5]}"
    )


def is_inf_norm(norm_type):
    return not isinstance(norm_type, str) and np.isinf(norm_type) or norm_type == "inf"


def ref_tensor_norm(a, norm_type=2, inv=1.0):
    """The exact norm of `a` times inv, in float64 (NaN if a holds a NaN)."""
    x = np.asarray(a).astype(np.float64).ravel()
    if is_inf_norm(norm_type):
        return np.max(np.abs(x)) * inv if x.size else 0.0
    return np.sqrt(np.sum(x * x)) * inv


def ref_global_norm(arrays, norm_type=2, inv=1.0):
    arrays = [a for a in arrays if a is not None]
    if not arrays:
        return 0.0
    norms = np.array([ref_tensor_norm(a, norm_type) for a in arrays])
    if is_inf_norm(norm_type):
        return np.max(norms) * inv  # NaN if any is NaN
    return np.sqrt(np.sum(norms * norms)) * inv


def ref_clip(arrays, clip_norm, norm_type=2, inv=1.0, use_norm=None):
    """(outputs, norm) of the contract in float64: t * inv * clip_norm /
    max(norm, clip_norm), norm that of the unscaled list; NaN outputs for a
    norm that is inf or NaN."""
    norm = ref_global_norm(arrays, norm_type, inv) if use_norm is None else use_norm
    outs = []
    for a in arrays:
        if a is None:
            outs.append(None)
        elif not np.isfinite(norm):
            outs.append(np.full(a.shape, NAN))
        else:
            outs.append(a.astype(np.float64) * inv * (clip_norm / max(norm, clip_norm)))
    return outs, norm


def norm_dtype(dtypes):
    """The dtype of the returned norm: the inputs' when they share one, else
    float64 if any is float64, else float32."""
    dtypes = {np.dtype(d) for d in dtypes}
    if len(dtypes) == 1:
        return dtypes.pop()
    return F64 if F64 in dtypes else F32


# --- Test lists: None, IndexedSlices, empty tensors, scalars -----------------


# "d": the next array as a dense tensor; "s": the next array as the values of
# IndexedSlices (with a duplicate index); "n": None.
LAYOUT = ("d", "n", "s", "d", "d", "n", "d", "d")
SHAPES = ((3, 5), (3, 4), (0,), (), (37,), (2, 1, 4))
SLICE_INDICES = (0, 3, 3)
SLICE_SHAPE = (5, 4)


def sample(dtype, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(s) * scale).astype(dtype) for s in SHAPES]


def entries(ts, layout=LAYOUT):
    """The caller's t_list built from tensors ts following layout."""
    ts = iter(ts)
    out = []
    for kind in layout:
        if kind == "n":
            out.append(None)
        elif kind == "s":
            out.append(
                tf.IndexedSlices(next(ts), tf.constant(SLICE_INDICES), tf.constant(SLICE_SHAPE))
            )
        else:
            out.append(next(ts))
    return out


def per_position(arrays, layout=LAYOUT):
    """arrays placed as entries() places them, None where layout has None."""
    arrays = iter(arrays)
    return [None if kind == "n" else next(arrays) for kind in layout]


def dense_part(out, kind):
    """An output as numpy: the values of IndexedSlices, after checking that
    its indices and dense_shape are the input's."""
    if kind == "n":
        assert out is None
        return None
    if kind == "s":
        assert isinstance(out, tuple) and len(out) == 3, type(out)
        values, indices, shape = out
        np.testing.assert_array_equal(indices, SLICE_INDICES)
        np.testing.assert_array_equal(shape, SLICE_SHAPE)
        return values
    assert not isinstance(out, (tuple, list)), type(out)
    return np.asarray(out)


def check_tensor_norms(got, positions, norm_type, inv, dtype, what="tensor_norms"):
    assert isinstance(got, list) and len(got) == len(positions), got
    for i, (g, a) in enumerate(zip(got, positions)):
        if a is None:
            assert g is None, f"{what}[{i}] should be None"
            continue
        assert np.shape(g) == (), f"{what}[{i}] has shape {np.shape(g)}"
        assert_ulps(g, ref_tensor_norm(a, norm_type, inv), dtype, NORM_ULPS[dtype], f"{what}[{i}]")


def check_clipped(outs, want, layout, dtypes, ulps=None, what="clipped"):
    assert len(outs) == len(want) == len(layout)
    for i, (out, ref, kind) in enumerate(zip(outs, want, layout)):
        got = dense_part(out, kind)
        if kind == "n":
            continue
        dtype = dtypes[i]
        assert_ulps(got, ref, dtype, OUT_ULPS[dtype] if ulps is None else ulps, f"{what}[{i}]")


def random_list(rng, dtype, scale):
    shapes = [(3, 5), (0,), (17,), (4, 1, 6), (), (200,)]
    return [(rng.standard_normal(s) * scale).astype(dtype) for s in shapes]


# Sizes whose pieces start at every alignment: a reduction block boundary
# (16,384 elements) falls inside the second and fourth tensors at odd offsets.
ODD_SIZES = (5, 16384 + 7, 3, 40000, 1, 0, 33)
