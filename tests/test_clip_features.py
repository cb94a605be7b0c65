# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""The clip features of monolith_ops.clip_ops against float64 references.

norm_type (2 and infinity), per_tensor, inverse_scale and error_if_nonfinite,
for global_norm and clip_by_global_norm, in graph, eager and tf.function
modes and under XLA, in every supported dtype and in mixed-dtype lists with
None, IndexedSlices, empty tensors and scalars. The references are numpy in
float64 (exact up to float64 rounding) and formulas in stock TF ops; a result
is compared with them in units in the last place (ulps) of its dtype.
"""

import numpy as np
import pytest
import tensorflow as tf
from conftest import run_in_mode, session_run, to_numpy

from monolith_ops import clip_ops

INF, NAN = float("inf"), float("nan")
F16 = np.dtype(np.float16)
BF16 = np.dtype(tf.bfloat16.as_numpy_dtype)
F32 = np.dtype(np.float32)
F64 = np.dtype(np.float64)
DTYPES = (F32, F64, F16, BF16)
DTYPE_IDS = [d.name for d in DTYPES]
NEW_OPS = ("MonolithGlobalNormV2", "MonolithClipByGlobalNormV2", "MonolithCheckNormsFinite")

# (mantissa bits, smallest normal exponent) of each dtype.
_PRECISION = {F32: (23, -126), F64: (52, -1022), F16: (10, -14), BF16: (7, -126)}
# Tolerances in ulps of the result's dtype. A 32- or 16-bit norm is rounded
# from a sum in double (twice for 16-bit: to float32, then to the dtype); a
# float64 sum of a few hundred squares may be off by some hundred ulps. An
# output is a product of a few rounded factors, rounded to its dtype.
NORM_ULPS = {F32: 1, F64: 512, F16: 1, BF16: 1}
OUT_ULPS = {F32: 4, F64: 512, F16: 2, BF16: 2}


# --- References and comparisons -----------------------------------------------


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


def graph_op_types(fn, *arrays):
    """The op types fn builds in a fresh graph from constants of arrays."""
    with tf.Graph().as_default() as g:
        fn(*[tf.constant(a) for a in arrays])
        return [op.type for op in g.get_operations()]


# --- Signature and return structure ---------------------------------------------


def test_new_arguments_are_keyword_only():
    t = [tf.constant([3.0, 4.0])]
    with pytest.raises(TypeError):
        clip_ops.global_norm(t, None, "inf")
    with pytest.raises(TypeError):
        clip_ops.clip_by_global_norm(t, 1.0, None, None, "inf")
    with pytest.raises(TypeError):
        clip_ops.global_norm(t, inverse_scale=0.5)  # clip_by_global_norm only


def test_return_structure():
    t = [tf.constant([3.0, 4.0]), None]
    norm = clip_ops.global_norm(t)
    assert isinstance(norm, tf.Tensor)
    result = clip_ops.global_norm(t, per_tensor=True)
    assert isinstance(result, tuple) and len(result) == 2
    assert isinstance(result[1], list) and len(result[1]) == 2 and result[1][1] is None
    result = clip_ops.clip_by_global_norm(t, 1.0, per_tensor=True)
    assert isinstance(result, tuple) and len(result) == 3
    assert isinstance(result[0], list) and isinstance(result[2], list)
    assert len(clip_ops.clip_by_global_norm(t, 1.0, norm_type="inf", inverse_scale=0.5)) == 2


# --- Defaults unchanged ----------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.slow
def test_defaults_are_bitwise_the_explicit_defaults(mode, dtype):
    arrays = sample(dtype, seed=1, scale=2.0)

    def fn(*ts):
        t_list = entries(ts)
        explicit = dict(norm_type=2, per_tensor=False, error_if_nonfinite=False)
        return (
            clip_ops.global_norm(t_list),
            clip_ops.global_norm(t_list, **explicit),
            clip_ops.global_norm(t_list, norm_type=2.0),
            clip_ops.clip_by_global_norm(t_list, 1.5),
            clip_ops.clip_by_global_norm(t_list, 1.5, inverse_scale=None, **explicit),
            clip_ops.clip_by_global_norm(t_list, 1.5, norm_type=2.0),
        )

    n0, n1, n2, c0, c1, c2 = run_in_mode(mode, fn, *arrays)
    assert n0.tobytes() == n1.tobytes() == n2.tobytes()
    for other in (c1, c2):
        assert c0[1].tobytes() == other[1].tobytes()
        for i, (a, b, kind) in enumerate(zip(c0[0], other[0], LAYOUT)):
            a, b = dense_part(a, kind), dense_part(b, kind)
            if kind != "n":
                assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), i


def test_defaults_build_only_the_existing_ops():
    arrays = [np.ones(3, np.float32), np.ones(2, np.float16), np.ones(4, np.float64)]
    for fn in (
        lambda *ts: clip_ops.global_norm(list(ts)),
        lambda *ts: clip_ops.global_norm(list(ts), norm_type=2, per_tensor=False),
        lambda *ts: clip_ops.clip_by_global_norm(list(ts), 1.0),
        lambda *ts: clip_ops.clip_by_global_norm(list(ts[:1]), 1.0, inverse_scale=None),
    ):
        types = graph_op_types(fn, *arrays)
        assert not set(types) & set(NEW_OPS), types


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.slow
def test_feature_paths_agree_with_the_default_path(mode, dtype):
    """per_tensor, inverse_scale=1 and error_if_nonfinite compute the norm
    anew: within float rounding of the default one."""
    arrays = sample(dtype, seed=2, scale=3.0)

    def fn(*ts):
        t_list = entries(ts)
        return (
            clip_ops.global_norm(t_list),
            clip_ops.global_norm(t_list, per_tensor=True)[0],
            clip_ops.global_norm(t_list, error_if_nonfinite=True),
            clip_ops.clip_by_global_norm(t_list, 2.0),
            clip_ops.clip_by_global_norm(t_list, 2.0, inverse_scale=1.0),
            clip_ops.clip_by_global_norm(t_list, 2.0, per_tensor=True)[:2],
            clip_ops.clip_by_global_norm(t_list, 2.0, error_if_nonfinite=True),
        )

    results = run_in_mode(mode, fn, *arrays)
    default_norm, *norms = results[:3]
    clips = results[3:]
    positions = per_position(arrays)
    want_norm = ref_global_norm(positions)
    dtypes = [None if a is None else a.dtype for a in positions]
    for norm in [default_norm, *norms] + [c[1] for c in clips]:
        assert_ulps(norm, want_norm, dtype, NORM_ULPS[dtype], "norm")
        # and within an ulp of the default path's norm (float64: its sum's rounding)
        near = 1 if dtype != F64 else NORM_ULPS[F64]
        assert_ulps(norm, np.float64(default_norm), dtype, near, "norm vs default")
    want, _ = ref_clip(positions, 2.0)
    default_out = clips[0][0]
    for outs, _ in clips:
        check_clipped(outs, want, LAYOUT, dtypes)
        for i, (a, b, kind) in enumerate(zip(outs, default_out, LAYOUT)):
            if kind != "n":
                ref = dense_part(b, kind).astype(np.float64)
                assert_ulps(dense_part(a, kind), ref, dtype, OUT_ULPS[dtype], f"vs default {i}")


# --- norm_type and per_tensor ------------------------------------------------------


@pytest.mark.parametrize(
    "norm_type",
    [2, 2.0, np.float64(2.0), np.int64(2), INF, np.inf, "inf", np.float32(INF)],
    ids=["2", "2.0", "np.float64(2)", "np.int64(2)", "float-inf", "np.inf", "str-inf", "np32-inf"],
)
def test_norm_type_spellings(norm_type):
    arrays = [np.array([3.0, -4.0], np.float32), np.array([[-12.0]], np.float32)]
    ts = [tf.constant(a) for a in arrays]
    want = ref_global_norm(arrays, norm_type)
    assert want == (12.0 if is_inf_norm(norm_type) else 13.0)
    norm, tensor_norms = clip_ops.global_norm(ts, norm_type=norm_type, per_tensor=True)
    assert_ulps(norm.numpy(), want, F32, 0)
    check_tensor_norms([t.numpy() for t in tensor_norms], arrays, norm_type, 1.0, F32)
    clipped, norm = clip_ops.clip_by_global_norm(ts, 6.0, norm_type=norm_type)
    assert_ulps(norm.numpy(), want, F32, 0)
    for got, ref in zip(clipped, ref_clip(arrays, 6.0, norm_type)[0]):
        assert_ulps(got.numpy(), ref, F32, OUT_ULPS[F32])


@pytest.mark.parametrize("norm_type", [2, "inf"], ids=["l2", "inf"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_global_norm_against_reference(mode, dtype, norm_type):
    arrays = sample(dtype, seed=3, scale=5.0)

    def fn(*ts):
        t_list = entries(ts)
        return (
            clip_ops.global_norm(t_list, norm_type=norm_type),
            clip_ops.global_norm(t_list, norm_type=norm_type, per_tensor=True),
        )

    norm, (norm2, tensor_norms) = run_in_mode(mode, fn, *arrays)
    positions = per_position(arrays)
    want = ref_global_norm(positions, norm_type)
    assert_ulps(norm, want, dtype, NORM_ULPS[dtype], "norm")
    assert_ulps(norm2, want, dtype, NORM_ULPS[dtype], "per_tensor norm")
    check_tensor_norms(tensor_norms, positions, norm_type, 1.0, dtype)
    if is_inf_norm(norm_type):  # max |x| is exact in the dtype
        assert norm.tobytes() == norm2.tobytes() == np.asarray(want, dtype).tobytes()


def test_indexed_slices_count_duplicates_and_stay_sparse(mode):
    values = np.array([[3.0, 0.0], [0.0, 4.0], [1.0, -1.0]], np.float32)
    indices = np.array([1, 1, 3], np.int64)

    def fn(v, i):
        slices = tf.IndexedSlices(v, i, tf.constant([6, 2], tf.int64))
        out = clip_ops.clip_by_global_norm(
            [slices], 2.0, inverse_scale=0.5, norm_type="inf", per_tensor=True
        )
        assert isinstance(out[0][0], tf.IndexedSlices)
        assert out[0][0].indices is slices.indices
        return out, clip_ops.global_norm([slices], per_tensor=True)

    (clipped, norm, tnorms), (l2, l2_tensors) = run_in_mode(mode, fn, values, indices)
    got_values, got_indices, got_shape = clipped[0]
    np.testing.assert_array_equal(got_indices, indices)
    np.testing.assert_array_equal(got_shape, [6, 2])
    assert_ulps(norm, 2.0, F32, 0)
    assert_ulps(tnorms[0], 2.0, F32, 0)
    assert_ulps(got_values, values * 0.5, F32, 0)  # below clip_norm: unscaled
    assert_ulps(l2, np.sqrt(27.0), F32, 1)
    assert_ulps(l2_tensors[0], np.sqrt(27.0), F32, 1)


@pytest.mark.parametrize("norm_type", [2, "inf"], ids=["l2", "inf"])
@pytest.mark.parametrize("with_f64", [False, True], ids=["no-f64", "f64"])
def test_mixed_dtype_lists(mode, norm_type, with_f64):
    rng = np.random.default_rng(4)
    dtypes = [F16, F32, BF16, F16] + ([F64] if with_f64 else [])
    arrays = [(rng.standard_normal(7 + 3 * i) * 4).astype(d) for i, d in enumerate(dtypes)]
    layout = ("d", "n", "d", "s", "d") + (("d",) if with_f64 else ())
    arrays[2] = arrays[2][:12].reshape(3, 4)  # the IndexedSlices' values
    ndt = norm_dtype(dtypes)

    def fn(*ts):
        t_list = entries(ts, layout)
        return (
            clip_ops.global_norm(t_list, norm_type=norm_type, per_tensor=True),
            clip_ops.clip_by_global_norm(
                t_list, 3.0, norm_type=norm_type, inverse_scale=0.75, per_tensor=True
            ),
        )

    (norm, tnorms), (clipped, cnorm, ctnorms) = run_in_mode(mode, fn, *arrays)
    positions = per_position(arrays, layout)
    pos_dtypes = [None if a is None else a.dtype for a in positions]
    assert_ulps(norm, ref_global_norm(positions, norm_type), ndt, NORM_ULPS[ndt], "norm")
    check_tensor_norms(tnorms, positions, norm_type, 1.0, ndt)
    want, want_norm = ref_clip(positions, 3.0, norm_type, 0.75)
    assert_ulps(cnorm, want_norm, ndt, NORM_ULPS[ndt], "clip norm")
    check_tensor_norms(ctnorms, positions, norm_type, 0.75, ndt, "clip tensor_norms")
    check_clipped(clipped, want, layout, pos_dtypes)


def test_mixed_dtypes_are_one_op():
    arrays = [np.ones(3, np.float16), np.ones(2, np.float32), np.ones(4, np.float64)]
    cases = {
        "MonolithGlobalNormV2": [
            lambda *ts: clip_ops.global_norm(list(ts), per_tensor=True),
            lambda *ts: clip_ops.global_norm(list(ts), norm_type="inf"),
        ],
        "MonolithClipByGlobalNormV2": [
            lambda *ts: clip_ops.clip_by_global_norm(list(ts), 1.0, inverse_scale=0.5),
            lambda *ts: clip_ops.clip_by_global_norm(list(ts), 1.0, norm_type="inf"),
            lambda *ts: clip_ops.clip_by_global_norm(list(ts), 1.0, per_tensor=True),
        ],
    }
    for op_type, fns in cases.items():
        for fn in fns:
            types = graph_op_types(fn, *arrays)
            assert types.count(op_type) == 1, types
            assert "GlobalL2Reduce" not in types, types
            others = set(NEW_OPS) - {op_type, "MonolithCheckNormsFinite"}
            assert not set(types) & others, types


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("norm_type", [2, "inf"], ids=["l2", "inf"])
def test_norm_is_the_documented_formula_bitwise(dtype, norm_type):
    """Integer values: the sums of squares are exact in double whatever the
    order, so norm = sqrt(Tnorm(sum * inv^2)) (Tnorm float32 for 32- and
    16-bit inputs) is known bitwise; inv a power of two."""
    rng = np.random.default_rng(5)
    arrays = [rng.integers(-60, 61, size=n).astype(dtype) for n in (9, 1, 20)]
    inv = 0.125
    compute = F64 if dtype == F64 else F32
    sums = [np.sum(a.astype(np.float64) ** 2) for a in arrays]
    maxes = [np.max(np.abs(a.astype(np.float64))) for a in arrays]

    def documented(scale):
        """(global norm, tensor norms) as the dtype's bytes."""
        if norm_type == 2:
            norms = [np.sqrt(compute.type(s * scale * scale)) for s in [sum(sums), *sums]]
        else:
            norms = [compute.type(m * scale) for m in [max(maxes), *maxes]]
        return [np.asarray(n).astype(dtype).tobytes() for n in norms]

    ts = [tf.constant(a) for a in arrays]
    _, norm, tnorms = clip_ops.clip_by_global_norm(
        ts, 1e6, norm_type=norm_type, inverse_scale=inv, per_tensor=True
    )
    assert [t.numpy().tobytes() for t in [norm, *tnorms]] == documented(inv)
    norm, tnorms = clip_ops.global_norm(ts, norm_type=norm_type, per_tensor=True)
    assert [t.numpy().tobytes() for t in [norm, *tnorms]] == documented(1.0)


def test_float16_squares_do_not_overflow(mode):
    x = np.array([300.0, 400.0], np.float16)  # 250000 is above float16's range
    norm, tnorms = run_in_mode(mode, lambda t: clip_ops.global_norm([t], per_tensor=True), x)
    assert norm.dtype == tnorms[0].dtype == F16
    assert norm == tnorms[0] == 500.0


@pytest.mark.parametrize("norm_type", [2, "inf"], ids=["l2", "inf"])
def test_empty_and_all_none_lists(mode, norm_type):
    def fn():
        return (
            clip_ops.global_norm([], norm_type=norm_type, per_tensor=True),
            clip_ops.global_norm([None, None], norm_type=norm_type, per_tensor=True),
            clip_ops.clip_by_global_norm(
                [None], 1.0, norm_type=norm_type, inverse_scale=0.5, per_tensor=True
            ),
        )

    (n0, t0), (n1, t1), (c2, n2, t2) = run_in_mode(mode, fn)
    assert t0 == [] and t1 == [None, None] and list(c2) == [None] and t2 == [None]
    for n in (n0, n1, n2):
        assert n == 0.0 and n.dtype == F32


@pytest.mark.slow
def test_empty_tensors_have_norm_zero(mode):
    arrays = [np.zeros((0, 3), np.float32), np.zeros(0, np.float32)]
    for norm_type in (2, "inf"):
        (outs, norm, tnorms) = run_in_mode(
            mode,
            lambda *ts, nt=norm_type: clip_ops.clip_by_global_norm(
                list(ts), 1.0, norm_type=nt, inverse_scale=0.5, per_tensor=True
            ),
            *arrays,
        )
        assert norm == 0.0 and list(tnorms) == [0.0, 0.0]
        assert [o.shape for o in outs] == [(0, 3), (0,)]


# --- Non-finite values -----------------------------------------------------------

NONFINITE_CASES = {
    "inf": ([[1.0, 2.0], [INF, 0.0], [3.0]], INF, INF),
    "-inf": ([[1.0, 2.0], [-INF], [3.0]], INF, INF),
    "nan": ([[1.0, 2.0], [NAN, 0.0], [3.0]], NAN, NAN),
    "inf-then-nan": ([[INF], [1.0], [NAN]], NAN, NAN),
    "nan-then-inf": ([[NAN], [1.0], [-INF]], NAN, NAN),
    "nan-and-inf-in-one": ([[1.0], [INF, NAN, 2.0]], NAN, NAN),
}


@pytest.mark.parametrize("case", sorted(NONFINITE_CASES))
@pytest.mark.parametrize("dtype", [F32, BF16], ids=["float32", "bfloat16"])
def test_nonfinite_lists(mode, case, dtype):
    values, want_l2, want_inf = NONFINITE_CASES[case]
    arrays = [np.asarray(v, dtype) for v in values]

    def fn(*ts):
        t_list = [None, *ts]
        return [
            (
                clip_ops.global_norm(t_list, norm_type=nt, per_tensor=True),
                clip_ops.clip_by_global_norm(
                    t_list, 1.0, norm_type=nt, inverse_scale=0.5, per_tensor=True
                ),
                clip_ops.clip_by_global_norm(t_list, 1.0, norm_type=nt),
            )
            for nt in (2, "inf")
        ]

    results = run_in_mode(mode, fn, *arrays)
    positions = [None, *arrays]
    for nt, want, ((norm, tnorms), (c1, n1, t1), (c2, n2)) in zip(
        (2, "inf"), (want_l2, want_inf), results
    ):
        assert_ulps(norm, want, dtype, 0, f"{nt} norm")
        assert_ulps(n1, want, dtype, 0, f"{nt} clip norm")
        assert_ulps(n2, want, dtype, 0, f"{nt} clip norm without inverse_scale")
        check_tensor_norms(tnorms, positions, nt, 1.0, dtype)
        check_tensor_norms(t1, positions, nt, 0.5, dtype, "clip tensor_norms")
        for outs in (c1, c2):
            assert outs[0] is None
            for out, a in zip(outs[1:], arrays):
                assert out.shape == a.shape and np.all(np.isnan(out.astype(np.float64)))


# --- inverse_scale -------------------------------------------------------------------


@pytest.mark.parametrize("inv", [None, 1.0, 2.0**-10, 0.37, 3.0], ids=str)
@pytest.mark.parametrize("norm_type", [2, "inf"], ids=["l2", "inf"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_clip_against_reference(mode, dtype, norm_type, inv):
    """Below and above clip_norm, with and without per_tensor."""
    arrays = sample(dtype, seed=6, scale=4.0)
    scale = 1.0 if inv is None else inv
    positions = per_position(arrays)
    unscaled = ref_global_norm(positions, norm_type, scale)
    clips = (unscaled * 0.3, unscaled * 1.7)  # above, then below clip_norm

    def fn(*ts):
        t_list = entries(ts)
        return [
            (
                clip_ops.clip_by_global_norm(
                    t_list, c, norm_type=norm_type, inverse_scale=inv, per_tensor=True
                ),
                clip_ops.clip_by_global_norm(t_list, c, norm_type=norm_type, inverse_scale=inv),
            )
            for c in clips
        ]

    dtypes = [None if a is None else a.dtype for a in positions]
    for c, ((outs, norm, tnorms), (outs2, norm2)) in zip(clips, run_in_mode(mode, fn, *arrays)):
        want, want_norm = ref_clip(positions, c, norm_type, scale)
        for n in (norm, norm2):
            assert_ulps(n, want_norm, dtype, NORM_ULPS[dtype], f"norm, clip_norm {c}")
        check_tensor_norms(tnorms, positions, norm_type, scale, dtype)
        check_clipped(outs, want, LAYOUT, dtypes, what=f"per_tensor, clip_norm {c}")
        check_clipped(outs2, want, LAYOUT, dtypes, what=f"clip_norm {c}")


def _stock_unscale_then_clip(t_list, clip_norm, inv):
    """Stock TF: unscale, then tf.clip_by_global_norm; 16-bit tensors in
    float32 (TF's float16 sum of squares would be far less accurate)."""
    values = [t.values if isinstance(t, tf.IndexedSlices) else t for t in t_list]
    wide = [
        None if v is None else tf.cast(v, tf.float64 if v.dtype == tf.float64 else tf.float32)
        for v in values
    ]
    clipped, norm = tf.clip_by_global_norm(
        [None if w is None else w * tf.constant(inv, w.dtype) for w in wide], clip_norm
    )
    return [None if c is None else tf.cast(c, v.dtype) for c, v in zip(clipped, values)], norm


@pytest.mark.parametrize("inv", [2.0**-16, 0.3], ids=["2^-16", "0.3"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_inverse_scale_matches_stock_tf(mode, dtype, inv):
    arrays = sample(dtype, seed=7, scale=1000.0 if dtype == F16 else 3e4)
    positions = per_position(arrays)
    unscaled = ref_global_norm(positions, 2, inv)
    clip_norm = unscaled * 0.4

    def fn(*ts):
        t_list = entries(ts)
        return (
            clip_ops.clip_by_global_norm(t_list, clip_norm, inverse_scale=inv),
            _stock_unscale_then_clip(t_list, clip_norm, inv),
        )

    (outs, norm), (stock, stock_norm) = run_in_mode(mode, fn, *arrays)
    # TF's float32 and float64 sums are less accurate than ours: ulps of
    # stock TF's error; 16-bit results are one rounding from TF's float32 ones.
    ulps = {F32: 16, F64: 512, F16: 2, BF16: 2}[dtype]
    assert_ulps(norm, np.float64(stock_norm), dtype, ulps, "norm")
    for i, (out, ref, kind) in enumerate(zip(outs, stock, LAYOUT)):
        if kind == "n":
            assert out is None and ref is None
            continue
        assert_ulps(dense_part(out, kind), ref.astype(np.float64), dtype, ulps, f"vs stock [{i}]")


@pytest.mark.parametrize("dtype", [F16, BF16], ids=["float16", "bfloat16"])
def test_16_bit_inverse_scale_2_pow_minus_16_is_not_rounded_to_16_bits(mode, dtype):
    """With a loss scale of 2^16, inverse_scale * clip factor is about
    4.6e-6: a float16 subnormal with 6 or 7 significant bits. The clip factor
    is chosen so that such a rounding would be off by 0.65%, several ulps."""
    rng = np.random.default_rng(8)
    arrays = [
        (rng.choice([-1, 1], n) * rng.uniform(1000, 60000, n)).astype(dtype) for n in (50, 9, 1)
    ]
    inv = 2.0**-16
    unscaled = ref_global_norm(arrays, 2, inv)
    clip_norm = 76.5 / 256 * unscaled  # inv * factor = 76.5 float16 subnormal steps
    outs, norm = run_in_mode(
        mode,
        lambda *ts: clip_ops.clip_by_global_norm(list(ts), clip_norm, inverse_scale=inv),
        *arrays,
    )
    want, want_norm = ref_clip(arrays, clip_norm, 2, inv)
    assert_ulps(norm, want_norm, dtype, NORM_ULPS[dtype], "norm")
    for i, (got, ref) in enumerate(zip(outs, want)):
        assert_ulps(got, ref, dtype, OUT_ULPS[dtype], f"clipped[{i}]")
    # Below clip_norm the outputs are the inputs times 2^-16: exact.
    outs, _ = run_in_mode(
        mode,
        lambda *ts: clip_ops.clip_by_global_norm(list(ts), 2 * unscaled, inverse_scale=inv),
        *arrays,
    )
    for got, a in zip(outs, arrays):
        want = (a.astype(np.float64) * inv).astype(dtype)
        assert got.dtype == dtype and got.tobytes() == want.tobytes()


@pytest.mark.parametrize("inv", [None, 1, 1.0, "tensor"], ids=["None", "int-1", "1.0", "tensor"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_below_clip_norm_inputs_pass_through_bitwise(mode, dtype, inv):
    arrays = sample(dtype, seed=9, scale=1e-3)
    positions = per_position(arrays)
    clip_norm = 0.045971192  # in float32, clip_norm * (1 / clip_norm) is not 1

    def fn(*ts):
        t_list = entries(ts)
        scale = tf.constant(1.0) if inv == "tensor" else inv
        return [
            clip_ops.clip_by_global_norm(
                t_list, clip_norm, norm_type=nt, inverse_scale=scale, per_tensor=True
            )[0]
            for nt in (2, "inf")
        ]

    assert ref_global_norm(positions) < clip_norm
    for outs in run_in_mode(mode, fn, *arrays):
        for i, (out, a, kind) in enumerate(zip(outs, positions, LAYOUT)):
            got = dense_part(out, kind)
            if kind != "n":
                assert got.dtype == a.dtype and got.tobytes() == a.tobytes(), i


def test_inverse_scale_spellings():
    arrays = [np.array([3.0, 4.0], np.float32), np.array([12.0], np.float64)]
    for inv in (np.float32(0.25), tf.constant(0.25, tf.float32), tf.constant(0.25, tf.float64)):
        for a in arrays:
            outs, norm = clip_ops.clip_by_global_norm([tf.constant(a)], 1.0, inverse_scale=inv)
            want, want_norm = ref_clip([a], 1.0, 2, 0.25)
            assert_ulps(norm.numpy(), want_norm, a.dtype, NORM_ULPS[a.dtype])
            assert_ulps(outs[0].numpy(), want[0], a.dtype, OUT_ULPS[a.dtype])
    outs, _ = clip_ops.clip_by_global_norm([tf.constant(arrays[0])], 100.0, inverse_scale=1)
    assert outs[0].numpy().tobytes() == arrays[0].tobytes()


@pytest.mark.parametrize("per_tensor", [False, True])
def test_use_norm_is_the_norm_of_the_unscaled_list(mode, per_tensor):
    arrays = [np.array([3.0, -4.0], np.float32), np.array([[1.0, 2.0]], np.float32)]

    def fn(*ts):
        use = tf.constant(10.0)
        result = clip_ops.clip_by_global_norm(
            list(ts), 4.0, use_norm=use, inverse_scale=0.5, per_tensor=per_tensor
        )
        assert result[1] is use
        return result

    result = run_in_mode(mode, fn, *arrays)
    want, _ = ref_clip(arrays, 4.0, 2, 0.5, use_norm=10.0)
    assert result[1] == 10.0
    for got, ref in zip(result[0], want):
        assert_ulps(got, ref, F32, OUT_ULPS[F32])
    if per_tensor:
        check_tensor_norms(result[2], arrays, 2, 0.5, F32)


# --- Validation ------------------------------------------------------------------------

BAD_NORM_TYPES = {
    ValueError: [1, 3, 0, -1, 2.5, 1.0, -INF, NAN, "l2", "2", "", "max"],
    TypeError: [True, False, np.bool_(True), None, [2], object()],
}


@pytest.mark.parametrize(
    "error,norm_type",
    [(e, v) for e, vs in BAD_NORM_TYPES.items() for v in vs],
    ids=[
        f"{e.__name__}-{'object' if type(v) is object else repr(v)}"
        for e, vs in BAD_NORM_TYPES.items()
        for v in vs
    ],
)
def test_bad_norm_type(error, norm_type):
    t = [tf.constant([1.0, 2.0])]
    with pytest.raises(error, match="norm_type"):
        clip_ops.global_norm(t, norm_type=norm_type)
    with pytest.raises(error, match="norm_type"):
        clip_ops.clip_by_global_norm(t, 1.0, norm_type=norm_type)
    with tf.Graph().as_default():
        with pytest.raises(error, match="norm_type"):
            clip_ops.clip_by_global_norm([tf.constant([1.0])], 1.0, norm_type=norm_type)


def _bad_inverse_scales():
    for v in (0, 0.0, -0.0, -1.0, -INF, INF, NAN, np.float32(0.0), np.float64(-2.0)):
        yield ValueError, v
    yield ValueError, 1e-50  # 0 in float32, the list's norm dtype
    yield ValueError, [0.5, 0.5]
    yield ValueError, np.array([0.5])
    yield ValueError, "tensor-vector"
    yield ValueError, "tensor-0"
    yield ValueError, "tensor-nan"
    yield TypeError, True
    yield TypeError, np.bool_(True)
    yield TypeError, "0.5"


@pytest.mark.parametrize(
    "error,inv",
    list(_bad_inverse_scales()),
    ids=[f"{e.__name__}-{v!r}" for e, v in _bad_inverse_scales()],
)
@pytest.mark.parametrize("where", ["eager", "graph"])
def test_bad_inverse_scale_known_when_built(where, error, inv):
    def call():
        scale = {
            "tensor-vector": lambda: tf.constant([0.5, 0.5]),
            "tensor-0": lambda: tf.constant(0.0),
            "tensor-nan": lambda: tf.constant(NAN),
        }.get(inv if isinstance(inv, str) else None, lambda: inv)()
        clip_ops.clip_by_global_norm([tf.constant([1.0, 2.0])], 1.0, inverse_scale=scale)

    if where == "graph":
        with tf.Graph().as_default(), pytest.raises(error, match="inverse_scale"):
            call()
    else:
        with pytest.raises(error, match="inverse_scale"):
            call()


@pytest.mark.parametrize("value", [0.0, -1.0, INF, -INF, NAN])
def test_bad_inverse_scale_known_when_run(value):
    x = np.array([3.0, 4.0], np.float32)
    for norm_type in (2, "inf"):
        with tf.Graph().as_default():
            inv = tf.compat.v1.placeholder(tf.float32, shape=[])
            out = clip_ops.clip_by_global_norm(
                [tf.constant(x)], 1.0, inverse_scale=inv, norm_type=norm_type
            )
            with tf.compat.v1.Session() as sess:
                with pytest.raises(tf.errors.InvalidArgumentError, match="inverse_scale"):
                    sess.run(out, {inv: value})
                good = to_numpy(sess.run(out, {inv: 0.5}))
        want, want_norm = ref_clip([x], 1.0, norm_type, 0.5)
        assert_ulps(good[1], want_norm, F32, NORM_ULPS[F32])
        assert_ulps(good[0][0], want[0], F32, OUT_ULPS[F32])

    fn = tf.function(lambda t, s: clip_ops.clip_by_global_norm([t], 1.0, inverse_scale=s))
    with pytest.raises(tf.errors.InvalidArgumentError, match="inverse_scale"):
        fn(tf.constant(x), tf.constant(value))


FEATURES = {
    "inf": dict(norm_type="inf"),
    "inverse_scale": dict(inverse_scale=0.5),
    "per_tensor": dict(per_tensor=True),
    "error_if_nonfinite": dict(error_if_nonfinite=True),
}


@pytest.mark.parametrize("feature", sorted(FEATURES))
def test_bad_clip_norm_with_features(feature):
    kwargs = FEATURES[feature]
    t = [tf.constant([3.0, 4.0])]
    for value in (0.0, -1.0, INF):
        with pytest.raises(ValueError, match="clip_norm"):
            clip_ops.clip_by_global_norm(t, value, **kwargs)
    with tf.Graph().as_default():
        clip_norm = tf.compat.v1.placeholder(tf.float32, shape=[])
        out = clip_ops.clip_by_global_norm([tf.constant([3.0, 4.0])], clip_norm, **kwargs)
        with tf.compat.v1.Session() as sess:
            for value in (0.0, -1.0, INF, NAN):
                with pytest.raises(tf.errors.InvalidArgumentError, match="clip_norm"):
                    sess.run(out, {clip_norm: value})


def test_bitwise_deterministic_across_runs_and_thread_counts():
    """Lists long enough to be reduced by several threads."""
    rng = np.random.default_rng(15)
    arrays = [rng.standard_normal(n).astype(np.float32) for n in (1_000_003, 17, 300_001)]
    arrays.append(rng.standard_normal(70_001).astype(np.float16))

    def run(threads):
        config = tf.compat.v1.ConfigProto(
            intra_op_parallelism_threads=threads, inter_op_parallelism_threads=1
        )
        with tf.Graph().as_default():
            ts = [tf.constant(a) for a in arrays]
            out = [clip_ops.global_norm(ts, norm_type=nt, per_tensor=True) for nt in (2, "inf")] + [
                clip_ops.clip_by_global_norm(
                    ts, 1.0, norm_type=nt, inverse_scale=0.3, per_tensor=True
                )
                for nt in (2, "inf")
            ]
            with tf.compat.v1.Session(config=config) as sess:
                return [session_run(sess, out) for _ in range(2)]

    def flat(x):
        if isinstance(x, (list, tuple)):
            return [b for v in x for b in flat(v)]
        return [np.asarray(x).tobytes()]

    first, second = run(2)
    (single, _) = run(1)
    assert flat(first) == flat(second) == flat(single)
    (norm, tnorms), (inf_norm, _) = first[:2]
    assert_ulps(norm, ref_global_norm(arrays), F32, NORM_ULPS[F32], "norm")
    assert_ulps(inf_norm, ref_global_norm(arrays, "inf"), F32, 0, "inf norm")
    check_tensor_norms(tnorms, arrays, 2, 1.0, F32)


# --- error_if_nonfinite ------------------------------------------------------------------


def _raise_message(mode, fn, *arrays):
    with pytest.raises(tf.errors.InvalidArgumentError) as err:
        run_in_mode(mode, fn, *arrays)
    return str(err.value)


@pytest.mark.parametrize("per_tensor", [False, True])
@pytest.mark.parametrize("norm_type", [2, "inf"], ids=["l2", "inf"])
@pytest.mark.parametrize("which", ["global_norm", "clip", "clip-inverse_scale"])
def test_error_names_the_first_nonfinite_entry(mode, which, norm_type, per_tensor):
    """Entry 5 is NaN, entry 6 inf: entry 5 is named, by its index in the
    caller's list (None entries counted) and in graph mode by its name."""
    layout = ("n", "d", "s", "n", "d", "d", "d")
    ok = [np.array([1.0, 2.0], np.float32), np.ones((3, 4), np.float32), np.zeros(0, np.float32)]
    bad = [np.array([1.0, NAN, 3.0], np.float32), np.array([[INF]], np.float32)]

    def fn(*ts):
        ts = list(ts)
        ts[3] = tf.identity(ts[3], name="first_bad")
        t_list = entries(ts, layout)
        kwargs = dict(norm_type=norm_type, per_tensor=per_tensor, error_if_nonfinite=True)
        if which == "global_norm":
            return clip_ops.global_norm(t_list, **kwargs)
        inv = 0.5 if which == "clip-inverse_scale" else None
        return clip_ops.clip_by_global_norm(t_list, 1.0, inverse_scale=inv, **kwargs)

    message = _raise_message(mode, fn, *ok, *bad)
    assert "t_list[5]" in message and "not finite" in message, message
    assert "t_list[6]" not in message, message
    assert "nan" in message.lower(), message
    if mode == "graph":
        assert "(first_bad:0)" in message, message


def test_error_for_an_inf_entry_names_it_and_its_norm(mode):
    arrays = [np.array([1.0], np.float32), np.array([2.0, -INF], np.float32)]

    def fn(a, b):
        return clip_ops.clip_by_global_norm(
            [a, None, tf.identity(b, name="exploded")], 1.0, error_if_nonfinite=True
        )

    message = _raise_message(mode, fn, *arrays)
    assert "t_list[2]" in message and "is not finite: its norm is inf" in message, message
    if mode == "graph":
        assert "t_list[2] (exploded:0)" in message, message


def test_error_in_an_indexed_slices_entry(mode):
    values = np.array([[1.0, NAN]], np.float32)

    def fn(v):
        slices = tf.IndexedSlices(v, tf.constant([0]), tf.constant([3, 2]))
        return clip_ops.clip_by_global_norm(
            [tf.constant([1.0]), slices], 1.0, norm_type="inf", error_if_nonfinite=True
        )

    message = _raise_message(mode, fn, values)
    assert "t_list[1]" in message and "not finite" in message, message


# Lists whose tensors have finite norms, but whose global norm overflows:
# float32 and bfloat16 values of 1.5e19, squares 2.25e38 each, their sum
# above float32's largest; float16 values whose float32 norm (70710.7) is
# above float16's largest, so the float16 norm returned is inf.
OVERFLOW_CASES = {
    "float32": ([np.array([1.5e19], np.float32), np.array([0.0, -1.5e19], np.float32)], 1.0),
    "bfloat16": ([np.array([1.5e19], BF16), np.array([0.0, -1.5e19], BF16)], 1.0),
    "float16": ([np.array([5e4], np.float16), np.array([0.0, -5e4], np.float16)], 1.0),
    "float32-inverse_scale": (
        [np.array([1.2e19], np.float32), np.array([1.2e19], np.float32)],
        1.25,
    ),
}


@pytest.mark.parametrize("case", sorted(OVERFLOW_CASES))
def test_error_when_only_the_global_norm_overflows(mode, case):
    arrays, inv = OVERFLOW_CASES[case]
    dtype = arrays[0].dtype
    tensor_norms = [ref_tensor_norm(a, 2, inv) for a in arrays]
    assert all(n < float(np.finfo(np.float32).max) ** 0.5 for n in tensor_norms)

    def norm_with_check(*ts):
        return clip_ops.global_norm([None, *ts], error_if_nonfinite=True)

    def clip_with_check(*ts):
        return clip_ops.clip_by_global_norm(
            [None, *ts], 1.0, inverse_scale=inv, error_if_nonfinite=True
        )

    for fn in [norm_with_check] * (inv == 1.0) + [clip_with_check]:
        message = _raise_message(mode, fn, *arrays)
        assert "the global norm is not finite" in message, (fn.__name__, message)

    def without_check(*ts):
        return (
            clip_ops.global_norm([None, *ts], per_tensor=True),
            clip_ops.clip_by_global_norm([None, *ts], 1.0, inverse_scale=inv, per_tensor=True),
        )

    (norm, tnorms), (outs, cnorm, ctnorms) = run_in_mode(mode, without_check, *arrays)
    assert norm.dtype == cnorm.dtype == dtype
    if inv == 1.0:
        assert np.isinf(norm.astype(np.float64))
        check_tensor_norms(tnorms, [None, *arrays], 2, 1.0, dtype)
    assert np.isinf(cnorm.astype(np.float64))
    check_tensor_norms(ctnorms, [None, *arrays], 2, inv, dtype)
    if dtype != F16:  # the norm overflows in the dtype the clip factor is computed in
        for out in outs[1:]:
            assert np.all(np.isnan(out.astype(np.float64)))


@pytest.mark.slow
def test_error_when_a_float16_tensor_norm_overflows_float16(mode):
    """The float16 norm of [5e4, 5e4] (70710.7) is inf: returned as is
    without error_if_nonfinite, refused with it."""
    x = np.array([5e4, 5e4], np.float16)

    def plain(t):
        return clip_ops.global_norm([None, t], per_tensor=True)

    norm, tnorms = run_in_mode(mode, plain, x)
    assert np.isinf(norm.astype(np.float64)) and np.isinf(tnorms[1].astype(np.float64))
    for fn in (
        lambda t: clip_ops.global_norm([None, t], per_tensor=True, error_if_nonfinite=True),
        lambda t: clip_ops.clip_by_global_norm([None, t], 1.0, error_if_nonfinite=True),
    ):
        message = _raise_message(mode, fn, x)
        assert "t_list[1]" in message and "not finite" in message, message


@pytest.mark.parametrize("norm_type", [2, "inf"], ids=["l2", "inf"])
def test_without_error_if_nonfinite_the_outputs_are_nan(mode, norm_type):
    arrays = [np.array([1.0, NAN], np.float32), np.array([2.0], np.float32)]

    def fn(*ts):
        return clip_ops.clip_by_global_norm(
            list(ts), 1.0, norm_type=norm_type, inverse_scale=0.5, error_if_nonfinite=False
        )

    outs, norm = run_in_mode(mode, fn, *arrays)
    assert np.isnan(norm)
    for out in outs:
        assert np.all(np.isnan(out))


def test_error_if_nonfinite_with_use_norm_checks_only_use_norm(mode):
    arrays = [np.array([3.0, NAN], np.float32), np.array([4.0], np.float32)]

    def finite_use_norm(*ts):
        return clip_ops.clip_by_global_norm(
            list(ts), 2.0, use_norm=tf.constant(8.0), error_if_nonfinite=True
        )

    outs, norm = run_in_mode(mode, finite_use_norm, *arrays)
    assert norm == 8.0
    np.testing.assert_array_equal(outs[0], np.array([0.75, NAN], np.float32))
    np.testing.assert_array_equal(outs[1], np.array([1.0], np.float32))

    def inf_use_norm(*ts):
        return clip_ops.clip_by_global_norm(
            list(ts), 2.0, use_norm=tf.constant(INF), error_if_nonfinite=True
        )

    message = _raise_message(mode, inf_use_norm, *arrays)
    assert "not finite" in message, message


def test_error_if_nonfinite_with_use_norm_and_per_tensor_checks_the_tensor_norms(mode):
    """Only use_norm is checked when per_tensor is off; with per_tensor on,
    the tensor norms returned are checked too."""
    arrays = [np.array([4.0], np.float32), np.array([3.0, NAN], np.float32)]

    def fn(*ts):
        return clip_ops.clip_by_global_norm(
            [None, *ts], 2.0, use_norm=tf.constant(8.0), per_tensor=True, error_if_nonfinite=True
        )

    message = _raise_message(mode, fn, *arrays)
    assert "t_list[2]" in message and "not finite" in message, message


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_error_if_nonfinite_passes_finite_results_through(mode, dtype):
    arrays = sample(dtype, seed=10, scale=3.0)

    def fn(*ts):
        t_list = entries(ts)
        return [
            (
                clip_ops.global_norm(t_list, norm_type="inf", error_if_nonfinite=check),
                clip_ops.clip_by_global_norm(
                    t_list, 1.0, inverse_scale=0.5, per_tensor=True, error_if_nonfinite=check
                ),
            )
            for check in (False, True)
        ]

    unchecked, checked = run_in_mode(mode, fn, *arrays)
    assert unchecked[0].tobytes() == checked[0].tobytes()
    (o1, n1, t1), (o2, n2, t2) = unchecked[1], checked[1]
    assert n1.tobytes() == n2.tobytes()
    assert [t if t is None else t.tobytes() for t in t1] == [
        t if t is None else t.tobytes() for t in t2
    ]
    for a, b, kind in zip(o1, o2, LAYOUT):
        if kind != "n":
            assert dense_part(a, kind).tobytes() == dense_part(b, kind).tobytes()


def test_error_if_nonfinite_under_xla_is_refused_when_built():
    t = tf.constant([1.0, 2.0])

    @tf.function(jit_compile=True)
    def norm(x):
        return clip_ops.global_norm([x], error_if_nonfinite=True)

    @tf.function(jit_compile=True)
    def clip(x):
        return clip_ops.clip_by_global_norm([x], 1.0, inverse_scale=0.5, error_if_nonfinite=True)

    for fn in (norm, clip):
        with pytest.raises(ValueError, match="error_if_nonfinite"):
            fn(t)


# --- Gradients --------------------------------------------------------------------------


def _formulation(ts, clip_norm, inv, norm_type):
    """The contract in stock TF ops: unscale in the norm's dtype, norms,
    TF's clip factor."""
    nd = clip_norm.dtype
    unscaled = [tf.cast(t, nd) * inv for t in ts]
    if is_inf_norm(norm_type):
        tnorms = [tf.reduce_max(tf.abs(u)) for u in unscaled]
        norm = tf.reduce_max(tf.stack(tnorms))
    else:
        tnorms = [tf.sqrt(tf.reduce_sum(tf.square(u))) for u in unscaled]
        norm = tf.sqrt(tf.add_n([tf.reduce_sum(tf.square(u)) for u in unscaled]))
    factor = clip_norm / tf.maximum(norm, clip_norm)
    return [tf.cast(u * factor, t.dtype) for u, t in zip(unscaled, ts)], norm, tnorms


def _ours(ts, clip_norm, inv, norm_type):
    return clip_ops.clip_by_global_norm(
        ts, clip_norm, norm_type=norm_type, inverse_scale=inv, per_tensor=True
    )


def _gradients(run, impl, arrays, clip_norm, inv, norm_type, seed=11):
    rng = np.random.default_rng(seed)
    wide = tf.float64 if arrays[0].dtype == F64 else tf.float32  # the norm's compute dtype
    out_w = [rng.standard_normal(a.shape) for a in arrays]
    tnorm_w = rng.standard_normal(len(arrays))

    def weighted(x, w):
        return tf.reduce_sum(tf.cast(x, wide) * tf.constant(w, wide))

    def body(clip, scale, *ts):
        ts = list(ts)
        with tf.GradientTape() as tape:
            tape.watch(ts)
            tape.watch([clip, scale])
            outs, norm, tnorms = impl(ts, clip, scale, norm_type)
            loss = (
                tf.add_n([weighted(o, w) for o, w in zip(outs, out_w)])
                + weighted(norm, 0.7)
                + tf.add_n([weighted(n, w) for n, w in zip(tnorms, tnorm_w)])
            )
        return loss, tape.gradient(loss, [*ts, clip, scale])

    if run == "function":
        body = tf.function(body)
    consts = [tf.constant(clip_norm, wide), tf.constant(inv, wide)]
    return to_numpy(body(*consts, *[tf.constant(a) for a in arrays]))


@pytest.mark.parametrize("clipped", [True, False], ids=["clipped", "not-clipped"])
@pytest.mark.parametrize("norm_type", [2, "inf"], ids=["l2", "inf"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("run", ["eager", "function"])
@pytest.mark.slow
def test_clip_gradients_match_the_formulation(run, dtype, norm_type, clipped):
    """Of the outputs, the norm and the tensor norms, with respect to the
    inputs, clip_norm and inverse_scale (16-bit lists: clip_norm and
    inverse_scale float32, the dtype their norm is computed in)."""
    rng = np.random.default_rng(12)
    arrays = [rng.standard_normal(s).astype(dtype) for s in ((4, 3), (7,), (1,))]
    inv = 0.37
    unscaled = ref_global_norm(arrays, norm_type, inv)
    clip_norm = unscaled * (0.45 if clipped else 1.6)
    loss, grads = _gradients(run, _ours, arrays, clip_norm, inv, norm_type)
    want_loss, want = _gradients(run, _formulation, arrays, clip_norm, inv, norm_type)
    # 16-bit: the gradients of the inputs are rounded to 16 bits (2 ulps).
    rtol = {F32: 2e-5, F64: 1e-11, F16: 2e-3, BF16: 1.6e-2}[dtype]
    atol = rtol * 0.1
    np.testing.assert_allclose(loss, want_loss, rtol=rtol)
    names = [f"t[{i}]" for i in range(len(arrays))] + ["clip_norm", "inverse_scale"]
    for name, g, w in zip(names, grads, want):
        assert g is not None, f"no gradient for {name}"
        assert g.dtype == w.dtype, name
        np.testing.assert_allclose(
            g.astype(np.float64), w.astype(np.float64), rtol=rtol, atol=atol, err_msg=name
        )


@pytest.mark.parametrize("norm_type", [2, "inf"], ids=["l2", "inf"])
@pytest.mark.parametrize("run", ["eager", "function"])
def test_global_norm_gradients_match_the_formulation(run, norm_type):
    rng = np.random.default_rng(13)
    arrays = [rng.standard_normal(s) for s in ((5, 2), (3,), ())]
    weights = rng.standard_normal(len(arrays))

    def body(*ts):
        ts = list(ts)
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(ts)
            norm, tnorms = clip_ops.global_norm(ts, norm_type=norm_type, per_tensor=True)
            ours = norm + tf.add_n([w * n for w, n in zip(weights, tnorms)])
            _, fnorm, ftnorms = _formulation(ts, tf.constant(1.0, tf.float64), 1.0, norm_type)
            theirs = fnorm + tf.add_n([w * n for w, n in zip(weights, ftnorms)])
            checked = clip_ops.global_norm(ts, norm_type=norm_type, error_if_nonfinite=True)
        return (
            tape.gradient(ours, ts),
            tape.gradient(theirs, ts),
            tape.gradient(checked, ts),
            tape.gradient(fnorm, ts),
        )

    if run == "function":
        body = tf.function(body)
    ours, theirs, checked, plain = to_numpy(body(*[tf.constant(a) for a in arrays]))
    for i in range(len(arrays)):
        np.testing.assert_allclose(ours[i], theirs[i], rtol=1e-12, atol=1e-14, err_msg=str(i))
        np.testing.assert_allclose(checked[i], plain[i], rtol=1e-12, atol=1e-14, err_msg=str(i))


@pytest.mark.parametrize(
    "values",
    [[[3.0, -3.0, 1.0], [2.0]], [[3.0, 1.0], [-3.0]], [[3.0, 3.0], [-3.0]]],
    ids=["in-one-tensor", "across-tensors", "both"],
)
def test_inf_norm_gradients_with_ties(values):
    """Ties share the gradient as tf.reduce_max shares it: each tensor's max,
    then the max of those (the norm's definition)."""
    arrays = [np.array(v) for v in values]
    for clip_norm in (0.5, 10.0):
        loss, grads = _gradients("eager", _ours, arrays, clip_norm, 0.5, "inf")
        want_loss, want = _gradients("eager", _formulation, arrays, clip_norm, 0.5, "inf")
        np.testing.assert_allclose(loss, want_loss, rtol=1e-12)
        for i, (g, w) in enumerate(zip(grads, want)):
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-14, err_msg=str(i))


def test_gradients_through_the_finite_check_are_unchanged():
    arrays = [np.array([3.0, -4.0]), np.array([[1.0, 2.0]])]

    def grads(check):
        ts = [tf.constant(a) for a in arrays]
        inv, clip = tf.constant(0.5, tf.float64), tf.constant(1.0, tf.float64)
        with tf.GradientTape() as tape:
            tape.watch([*ts, inv, clip])
            outs, norm = clip_ops.clip_by_global_norm(
                ts, clip, inverse_scale=inv, error_if_nonfinite=check
            )
            loss = tf.reduce_sum(outs[0] * [1.0, 2.0]) + tf.reduce_sum(outs[1]) + 3 * norm
        return [g.numpy() for g in tape.gradient(loss, [*ts, inv, clip])]

    for a, b in zip(grads(False), grads(True)):
        np.testing.assert_allclose(a, b, rtol=1e-14)


# --- XLA ---------------------------------------------------------------------------------

XLA_RTOL = {F32: 1e-5, F64: 1e-12, F16: 2e-3, BF16: 1.6e-2}


@pytest.mark.parametrize("norm_type", [2, "inf"], ids=["l2", "inf"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.slow
def test_xla_matches_the_reference(dtype, norm_type):
    arrays = sample(dtype, seed=14, scale=3.0)
    positions = per_position(arrays)
    inv = 0.37
    unscaled = ref_global_norm(positions, norm_type, inv)
    clips = (unscaled * 0.3, unscaled * 2.0)

    @tf.function(jit_compile=True)
    def fn(*ts):
        t_list = entries(ts)
        return (
            clip_ops.global_norm(t_list, norm_type=norm_type, per_tensor=True),
            [
                clip_ops.clip_by_global_norm(
                    t_list, c, norm_type=norm_type, inverse_scale=inv, per_tensor=True
                )
                for c in clips
            ],
        )

    (norm, tnorms), clipped = to_numpy(fn(*[tf.constant(a) for a in arrays]))
    rtol = XLA_RTOL[dtype]

    def close(got, want, what):
        assert np.asarray(got).dtype == dtype, what
        np.testing.assert_allclose(
            np.asarray(got, np.float64), want, rtol=rtol, atol=1e-30, err_msg=what
        )

    close(norm, ref_global_norm(positions, norm_type), "norm")
    for i, (t, a) in enumerate(zip(tnorms, positions)):
        assert (t is None) == (a is None)
        if a is not None:
            close(t, ref_tensor_norm(a, norm_type), f"tensor_norms[{i}]")
    for c, (outs, cnorm, ctnorms) in zip(clips, clipped):
        want, want_norm = ref_clip(positions, c, norm_type, inv)
        close(cnorm, want_norm, "clip norm")
        for i, (t, a) in enumerate(zip(ctnorms, positions)):
            if a is not None:
                close(t, ref_tensor_norm(a, norm_type, inv), f"clip tensor_norms[{i}]")
        for i, (out, ref, kind) in enumerate(zip(outs, want, LAYOUT)):
            if kind != "n":
                close(dense_part(out, kind), ref, f"clipped[{i}], clip_norm {c}")


@pytest.mark.parametrize("norm_type", [2, "inf"], ids=["l2", "inf"])
def test_xla_mixed_dtypes_and_nonfinite(norm_type):
    arrays = [np.array([1.0, -2.0], np.float16), np.array([3.0], np.float64)]
    bad = [np.array([1.0, NAN], np.float32), np.array([INF], np.float32)]

    @tf.function(jit_compile=True)
    def fn(a, b, c, d):
        return (
            clip_ops.clip_by_global_norm(
                [a, None, b], 1.0, norm_type=norm_type, inverse_scale=0.5, per_tensor=True
            ),
            clip_ops.global_norm([c, d], norm_type=norm_type),
        )

    (outs, norm, tnorms), bad_norm = to_numpy(fn(*[tf.constant(x) for x in arrays + bad]))
    want, want_norm = ref_clip([arrays[0], None, arrays[1]], 1.0, norm_type, 0.5)
    assert norm.dtype == F64 and tnorms[1] is None
    np.testing.assert_allclose(norm, want_norm, rtol=1e-12)
    np.testing.assert_allclose(outs[0].astype(np.float64), want[0], rtol=2e-3)
    np.testing.assert_allclose(outs[2], want[2], rtol=1e-12)
    assert np.isnan(bad_norm)
