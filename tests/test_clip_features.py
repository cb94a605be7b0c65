# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""The clip's features against the float64 reference (clip_reference).

norm_type (2 and infinity), per_tensor, inverse_scale and error_if_nonfinite,
for global_norm and clip_by_global_norm, in graph, eager and tf.function
modes, in every supported dtype and in mixed-dtype lists with None,
IndexedSlices, empty tensors and scalars; the defaults are bitwise the
explicit defaults. Their gradients are in test_clip_gradients.py, their ops
and XLA in test_clip_paths.py, their argument checks in test_clip_inputs.py.
"""

import numpy as np
import pytest
import tensorflow as tf
from clip_reference import (
    BF16,
    DTYPE_IDS,
    DTYPES,
    F16,
    F32,
    F64,
    INF,
    LAYOUT,
    NAN,
    NORM_ULPS,
    OUT_ULPS,
    assert_ulps,
    check_clipped,
    check_tensor_norms,
    dense_part,
    entries,
    is_inf_norm,
    norm_dtype,
    per_position,
    ref_clip,
    ref_global_norm,
    ref_tensor_norm,
    sample,
)
from conftest import run_graph, run_in_mode

from monolith_ops import clip_ops

# --- Defaults unchanged ------------------------------------------------------


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


# --- norm_type and per_tensor ------------------------------------------------


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


# --- Non-finite values -------------------------------------------------------


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


# --- inverse_scale -----------------------------------------------------------


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


# --- error_if_nonfinite ------------------------------------------------------


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


@pytest.mark.parametrize("which", ["global_norm", "clip", "clip_use_norm"])
def test_error_if_nonfinite_guards_the_tensor_norms_fetched_alone(which):
    def build():
        t = tf.constant([INF, 1.0])
        if which == "global_norm":
            _, tensor_norms = clip_ops.global_norm([t], per_tensor=True, error_if_nonfinite=True)
        else:
            kwargs = {"use_norm": tf.constant(INF)} if which == "clip_use_norm" else {}
            *_, tensor_norms = clip_ops.clip_by_global_norm(
                [t], 1.0, per_tensor=True, error_if_nonfinite=True, **kwargs
            )
        return tensor_norms[0]

    with pytest.raises(tf.errors.InvalidArgumentError, match="not finite"):
        run_graph(build)


def test_error_if_nonfinite_guards_the_nan_tensor_norm_of_global_norm():
    def build():
        t = tf.constant([NAN, 1.0])
        return clip_ops.global_norm([t], per_tensor=True, error_if_nonfinite=True)[1]

    with pytest.raises(tf.errors.InvalidArgumentError, match="not finite"):
        run_graph(build)
