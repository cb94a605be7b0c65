# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""Results of clip_by_global_norm and global_norm against the float64
reference (clip_reference) and stock TF.

Monolith's original cases; every dtype and mixed-dtype lists in graph, eager
and tf.function modes; use_norm and a clip_norm known only at run time;
None, IndexedSlices, empty lists and empty tensors; below clip_norm and at
a norm equal to clip_norm the outputs are the inputs, bitwise, on every
path; a 16-bit norm that overflows its dtype.
"""

import numpy as np
import pytest
import tensorflow as tf
from clip_reference import (
    DTYPE_IDS,
    DTYPES,
    INF,
    LAYOUT,
    NAN,
    TOLERANCE,
    dense_part,
    entries,
    per_position,
    random_list,
    ref_clip,
    ref_global_norm,
    sample,
)
from conftest import dense_shapes, run_graph, run_in_mode, session_run, to_numpy

from monolith_ops import clip_ops

# --- Monolith's clip_ops test cases ------------------------------------------


def _ours_and_stock(mode, inputs, clip_norm, dtype=np.float32):
    """(ours, stock, inputs as read back in the same run) for one list."""
    arrays = [np.asarray(a, dtype=dtype) for a in inputs]

    def both(*ts):
        ts = list(ts)
        return (
            clip_ops.clip_by_global_norm(ts, clip_norm),
            tf.clip_by_global_norm(ts, clip_norm),
            ts,
        )

    return run_in_mode(mode, both, *arrays)


MONOLITH_CASES = {
    "simple": ([[-3.0, 0.0, 0.0], [4.0, 0.0, 0.0]], 4.0, [[-2.4, 0.0, 0.0], [3.2, 0.0, 0.0]]),
    "uneven": (
        [[-3.0, 0.0, 0.0], [0.0, 0.0, 4.0, 0.0]],
        4.0,
        [[-2.4, 0.0, 0.0], [0.0, 0.0, 3.2, 0.0]],
    ),
    "no_clipping": ([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]], 4.0, [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]),
    "zero_norm": ([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]], 4.0, [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]),
    "exploded": ([[INF] * 3, [INF] * 3], 4.0, [[NAN] * 3, [NAN] * 3]),
}


@pytest.mark.parametrize("case", sorted(MONOLITH_CASES))
def test_monolith_cases(mode, case):
    inputs, clip_norm, expected = MONOLITH_CASES[case]
    (ours, norm), (stock, stock_norm), read_back = _ours_and_stock(mode, inputs, clip_norm)
    for got, want, want_tf in zip(ours, expected, stock):
        np.testing.assert_allclose(got, want, rtol=1e-6, equal_nan=True)
        np.testing.assert_allclose(got, want_tf, rtol=1e-6, equal_nan=True)
    np.testing.assert_allclose(norm, stock_norm, rtol=1e-6)
    # The inputs, read in the same run, are unmodified.
    for got, want in zip(read_back, inputs):
        np.testing.assert_array_equal(got, np.asarray(want, np.float32))


def test_monolith_large_grad(mode):
    rng = np.random.default_rng(0)
    grads = [rng.uniform(size=s).astype(np.float32) for s in dense_shapes()]
    assert sum(g.size for g in grads) == 7_686_760
    (ours, norm), (stock, stock_norm), read_back = _ours_and_stock(mode, grads, 1.0)
    np.testing.assert_allclose(norm, stock_norm, rtol=1e-5)
    for got, want, orig, again in zip(ours, stock, grads, read_back):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-12)
        np.testing.assert_array_equal(again, orig)


@pytest.mark.parametrize(
    "inputs,expected",
    [
        ([[INF] * 3, [INF] * 3], INF),
        ([[-3.0, 0.0, 0.0], [4.0, 0.0, 0.0]], 5.0),
        ([[-3.0, 0.0, 0.0], [0.0, 0.0, 4.0, 0.0]], 5.0),
    ],
)
def test_monolith_global_norm(mode, inputs, expected):
    arrays = [np.asarray(a, np.float32) for a in inputs]
    got = run_in_mode(mode, lambda *ts: clip_ops.global_norm(list(ts)), *arrays)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-6)


# --- Parity with stock TF and the reference across dtypes and modes ----------


@pytest.mark.parametrize("dtype", list(TOLERANCE), ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("scale", [0.01, 3.0], ids=["below", "above"])
def test_parity_with_tf(mode, dtype, scale):
    rng = np.random.default_rng(7)
    arrays = random_list(rng, dtype, scale)
    clip_norm = 5.0

    def both(*ts):
        ts = list(ts)
        return (
            clip_ops.clip_by_global_norm(ts, clip_norm),
            tf.clip_by_global_norm(ts, clip_norm),
            clip_ops.global_norm(ts),
            tf.linalg.global_norm(ts),
        )

    (ours, norm), (stock, stock_norm), gnorm, stock_gnorm = run_in_mode(mode, both, *arrays)
    rtol = TOLERANCE[dtype]
    assert norm.dtype == stock_norm.dtype == gnorm.dtype == np.dtype(dtype)
    np.testing.assert_allclose(np.float64(norm), np.float64(stock_norm), rtol=rtol)
    np.testing.assert_allclose(np.float64(gnorm), np.float64(stock_gnorm), rtol=rtol)
    for got, want in zip(ours, stock):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_allclose(
            got.astype(np.float64), want.astype(np.float64), rtol=rtol, atol=1e-30
        )


def test_fp16_accumulates_in_float32(mode):
    # Stock TF squares in float16: 300^2 + 400^2 overflows and it returns inf.
    x = np.array([300.0, 400.0], np.float16)
    (ours, norm), (stock, stock_norm), _ = _ours_and_stock(mode, [x], 1.0, np.float16)
    assert np.isinf(stock_norm)
    assert norm.dtype == np.float16 and norm == 500.0
    np.testing.assert_allclose(ours[0].astype(np.float32), [0.6, 0.8], rtol=1e-3)


def test_mixed_dtypes(mode):
    rng = np.random.default_rng(3)
    arrays = [
        rng.standard_normal(40).astype(np.float16),
        rng.standard_normal((3, 7)).astype(np.float32),
        rng.standard_normal(9).astype(tf.bfloat16.as_numpy_dtype),
        rng.standard_normal(11).astype(np.float64),
    ]
    want, want_norm = ref_clip(arrays, 2.0)
    ours, norm = run_in_mode(mode, lambda *ts: clip_ops.clip_by_global_norm(list(ts), 2.0), *arrays)
    assert norm.dtype == np.float64
    np.testing.assert_allclose(norm, want_norm, rtol=1e-12)
    for got, ref, orig in zip(ours, want, arrays):
        assert got.dtype == orig.dtype
        np.testing.assert_allclose(got.astype(np.float64), ref, rtol=TOLERANCE[orig.dtype])
    # Without float64 the norm is float32.
    norm32 = run_in_mode(mode, lambda *ts: clip_ops.global_norm(list(ts)), *arrays[:3])
    assert norm32.dtype == np.float32


@pytest.mark.slow
def test_many_small_tensors(mode):
    rng = np.random.default_rng(5)
    arrays = [rng.standard_normal(rng.integers(0, 4)).astype(np.float32) for _ in range(3000)]
    want, want_norm = ref_clip(arrays, 1.0)
    ours, norm = run_in_mode(mode, lambda *ts: clip_ops.clip_by_global_norm(list(ts), 1.0), *arrays)
    np.testing.assert_allclose(norm, want_norm, rtol=1e-6)
    for got, ref in zip(ours, want):
        np.testing.assert_allclose(got, ref, rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clip_scale_is_tfs_factor(dtype):
    clip = dtype(0.045971192)
    norms = [dtype(0.01), clip, dtype(0.5), dtype(np.inf), dtype(np.nan)]
    got = [
        float(clip_ops.clip_scale(tf.constant(n, dtype), tf.constant(clip, dtype))) for n in norms
    ]
    expect = [float(clip * np.minimum(dtype(1) / n, dtype(1) / clip)) for n in norms[:3]]
    assert got[:3] == expect
    assert got[2] == float(clip * (dtype(1) / norms[2]))  # the clipping branch
    assert np.isnan(got[3]) and np.isnan(got[4])


# --- use_norm and a clip_norm known at run time ------------------------------


@pytest.mark.parametrize(
    "dtype, norm_dtype",
    [(np.float32, np.float64), (np.float64, np.float32), (np.float16, np.float64)],
)
def test_use_norm_of_another_dtype_scales_in_its_dtype(mode, dtype, norm_dtype):
    """As TF does, the scale is computed in use_norm's dtype and rounded to
    each tensor's: a float64 norm of a float32 list (an optimizer's global
    norm over mixed dtypes) is not first rounded to float32."""
    rng = np.random.default_rng(11)
    arrays = [rng.standard_normal(s).astype(dtype) for s in [(64,), (3, 5)]]

    def fn(*ts):
        u = tf.constant(7.3, norm_dtype)
        ours, _ = clip_ops.clip_by_global_norm(list(ts), 0.3, use_norm=u)
        return ours, tf.clip_by_global_norm(list(ts), 0.3, use_norm=u)[0]

    ours, stock = run_in_mode(mode, fn, *arrays)
    for got, want in zip(ours, stock):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("use_norm", [2.0, 20.0, INF])
def test_use_norm(mode, dtype, use_norm):
    arrays = [np.array([3.0, 4.0], dtype), np.array([1.0], dtype)]

    def fn(*ts):
        u = tf.constant(use_norm, dtype)
        ours, norm = clip_ops.clip_by_global_norm(list(ts), 4.0, use_norm=u)
        assert norm is u
        return ours, tf.clip_by_global_norm(list(ts), 4.0, use_norm=u)[0]

    ours, stock = run_in_mode(mode, fn, *arrays)
    for got, want in zip(ours, stock):
        np.testing.assert_allclose(got, want, rtol=1e-6, equal_nan=True)


@pytest.mark.parametrize("use_norm", [None, 5.0])
@pytest.mark.parametrize("clip_norm", [1.0, 7.0])
def test_tensor_clip_norm_from_a_variable(mode, use_norm, clip_norm):
    """A clip_norm whose value is only known when the graph runs."""
    arrays = [np.array([3.0, 4.0], np.float32), np.array([[1.0, 2.0]], np.float32)]

    def norm_tensor():  # stock TF wants a tensor use_norm
        return None if use_norm is None else tf.constant(use_norm, tf.float32)

    def fn(*ts):
        c = tf.Variable(clip_norm, dtype=tf.float32)
        u = norm_tensor()
        ours = clip_ops.clip_by_global_norm(list(ts), c.read_value(), u)
        stock = tf.clip_by_global_norm(list(ts), c.read_value(), u)
        return ours, stock, c

    if mode == "graph":
        with tf.Graph().as_default():
            ts = [tf.constant(a) for a in arrays]
            ours, stock, c = fn(*ts)
            assert tf.get_static_value(c.read_value()) is None
            with tf.compat.v1.Session() as sess:
                sess.run(c.initializer)
                ours, stock = to_numpy(session_run(sess, [ours, stock]))
    else:
        holder = {}

        def wrapped(*ts):
            if "var" not in holder:
                holder["var"] = tf.Variable(clip_norm, dtype=tf.float32)
            c, u = holder["var"], norm_tensor()
            return (
                clip_ops.clip_by_global_norm(list(ts), c.read_value(), u),
                tf.clip_by_global_norm(list(ts), c.read_value(), u),
            )

        ours, stock = run_in_mode(mode, wrapped, *arrays)
    (got, norm), (want, want_norm) = ours, stock
    np.testing.assert_allclose(norm, want_norm, rtol=1e-6)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-6)


@pytest.mark.parametrize("clip_norm", [1e-39, 1e-45])
def test_denormal_clip_norm_gives_tf_result(mode, clip_norm):
    """A denormal float32 clip_norm is positive: accepted, and the result is
    TensorFlow's, in eager mode and as a tensor known only when the graph
    runs (the kernel used to read it as 0 and fail)."""
    x = np.array([3.0, 4.0], np.float32)
    if mode == "graph":
        with tf.Graph().as_default():
            c = tf.compat.v1.placeholder(tf.float32, [])
            ours = clip_ops.clip_by_global_norm([tf.constant(x)], c)
            with_use_norm = clip_ops.clip_by_global_norm(
                [tf.constant(x)], c, use_norm=tf.constant(5.0)
            )
            stock = tf.clip_by_global_norm([tf.constant(x)], c)
            with tf.compat.v1.Session() as sess:
                ours, with_use_norm, stock = sess.run([ours, with_use_norm, stock], {c: clip_norm})
        np.testing.assert_array_equal(with_use_norm[0][0], stock[0][0])
    else:
        ours, stock = run_in_mode(
            mode,
            lambda t: (
                clip_ops.clip_by_global_norm([t], clip_norm),
                tf.clip_by_global_norm([t], clip_norm),
            ),
            x,
        )
    np.testing.assert_array_equal(ours[0][0], stock[0][0])
    assert ours[1] == 5.0


# --- None, IndexedSlices, empty lists ----------------------------------------


def test_none_entries_are_kept_and_ignored(mode):
    a = np.array([3.0, 4.0], np.float32)
    ours, norm = run_in_mode(mode, lambda t: clip_ops.clip_by_global_norm([None, t, None], 1.0), a)
    assert ours[0] is None and ours[2] is None
    np.testing.assert_allclose(ours[1], [0.6, 0.8], rtol=1e-6)
    np.testing.assert_allclose(norm, 5.0)


def test_indexed_slices_stay_sparse(mode):
    values = np.array([[3.0, 0.0], [0.0, 4.0]], np.float32)
    dense = np.array([[1.0, 2.0]], np.float32)

    def fn(v, d):
        slices = tf.IndexedSlices(v, tf.constant([4, 1]), tf.constant([10, 2]))
        ours, norm = clip_ops.clip_by_global_norm([slices, d], 2.0)
        assert isinstance(ours[0], tf.IndexedSlices)
        assert ours[0].indices is slices.indices
        assert ours[0].dense_shape is slices.dense_shape
        stock, stock_norm = tf.clip_by_global_norm([slices, d], 2.0)
        return ours, norm, stock, stock_norm, clip_ops.global_norm([slices, d])

    ours, norm, stock, stock_norm, gnorm = run_in_mode(mode, fn, values, dense)
    got_values, got_indices, got_shape = ours[0]
    np.testing.assert_allclose(got_values, stock[0][0], rtol=1e-6)
    np.testing.assert_array_equal(got_indices, [4, 1])
    np.testing.assert_array_equal(got_shape, [10, 2])
    np.testing.assert_allclose(ours[1], stock[1], rtol=1e-6)
    np.testing.assert_allclose([norm, gnorm], [stock_norm] * 2, rtol=1e-6)


def test_empty_list(mode):
    for empty in ([], ()):
        ours, norm = run_in_mode(mode, lambda empty=empty: clip_ops.clip_by_global_norm(empty, 1.0))
        assert list(ours) == [] and norm == 0.0 and norm.dtype == np.float32
    norm = run_in_mode(mode, lambda: clip_ops.global_norm([]))
    assert norm == 0.0 and norm.dtype == np.float32


def test_all_none(mode):
    ours, norm = run_in_mode(mode, lambda: clip_ops.clip_by_global_norm([None, None], 1.0))
    assert list(ours) == [None, None] and norm == 0.0


def test_empty_tensors_count_as_zero(mode):
    arrays = [np.zeros((0, 3), np.float32), np.array([6.0, 8.0], np.float32)]
    ours, norm = run_in_mode(mode, lambda *ts: clip_ops.clip_by_global_norm(list(ts), 5.0), *arrays)
    assert ours[0].shape == (0, 3)
    np.testing.assert_allclose(ours[1], [3.0, 4.0], rtol=1e-6)
    np.testing.assert_allclose(norm, 10.0)


# --- Below clip_norm, and at norm == clip_norm, the outputs are the inputs ---


@pytest.mark.parametrize("clip_norm", [5.0, 0.045971192, 0.3])
def test_below_clip_norm_the_outputs_are_the_inputs(mode, clip_norm):
    """Bitwise, whatever clip_norm. (TF multiplies by clip_norm * (1 /
    clip_norm), which in float32 is 0.99999994 for 0.045971192.)"""
    rng = np.random.default_rng(31)
    arrays = [(rng.standard_normal(n) * 1e-3).astype(np.float32) for n in (7, 100, 3)]
    ours, _ = run_in_mode(
        mode, lambda *ts: clip_ops.clip_by_global_norm(list(ts), clip_norm), *arrays
    )
    for got, want in zip(ours, arrays):
        assert got.tobytes() == want.tobytes()


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


# clip_norm * (1 / clip_norm) is 0.99999994 in float32, and the float32 sum
# of its square has the square root EQUAL: a list [[EQUAL]] has norm EQUAL on
# every path (the kernels' double sum and XLA's float32 one). At the norm
# equal to clip_norm the outputs are the inputs, bitwise; multiplied by the
# clip factor they would be one ulp lower.
EQUAL = np.float32(3.8429387)
assert EQUAL * (np.float32(1) / EQUAL) != 1
assert np.sqrt(EQUAL * EQUAL) == EQUAL


def _equal_paths():
    x = np.array([[EQUAL]], np.float32)

    def fused():
        return clip_ops.clip_by_global_norm([tf.constant(x)], float(EQUAL))[0][0]

    def kernel_attr():  # use_norm given, clip_norm an attr of the kernel
        return clip_ops.clip_by_global_norm([tf.constant(x)], float(EQUAL), use_norm=EQUAL)[0][0]

    def v2():
        return clip_ops.clip_by_global_norm([tf.constant(x)], float(EQUAL), per_tensor=True)[0][0]

    def v2_unscaled():
        return clip_ops.clip_by_global_norm([tf.constant(x)], float(EQUAL), inverse_scale=1.0)[0][0]

    def fused_run_time_clip_norm():
        clip_norm = tf.compat.v1.placeholder(tf.float32, [], name="clip_norm")
        return clip_ops.clip_by_global_norm([tf.constant(x)], clip_norm)[0][0]

    def tf_ops_run_time_clip_norm():  # use_norm given: the clip in TF ops
        clip_norm = tf.compat.v1.placeholder(tf.float32, [], name="clip_norm")
        return clip_ops.clip_by_global_norm([tf.constant(x)], clip_norm, use_norm=EQUAL)[0][0]

    def tf_ops_inverse_scale():  # use_norm with a feature: TF ops
        return clip_ops.clip_by_global_norm(
            [tf.constant(x)], float(EQUAL), use_norm=EQUAL, inverse_scale=1.0
        )[0][0]

    def xla():
        fn = tf.function(lambda t, c: clip_ops.clip_by_global_norm([t], c)[0][0], jit_compile=True)
        return fn(tf.constant(x), tf.constant(EQUAL))

    return {
        "fused": lambda: run_graph(fused),
        "kernel_with_clip_norm_attr": lambda: run_graph(kernel_attr),
        "fused_with_features": lambda: run_graph(v2),
        "fused_with_features_inverse_scale_1": lambda: run_graph(v2_unscaled),
        "fused_run_time_clip_norm": lambda: run_graph(
            fused_run_time_clip_norm, {"clip_norm:0": EQUAL}
        ),
        "tf_ops_run_time_clip_norm": lambda: run_graph(
            tf_ops_run_time_clip_norm, {"clip_norm:0": EQUAL}
        ),
        "tf_ops_inverse_scale_1": lambda: run_graph(tf_ops_inverse_scale),
        "eager_fused": lambda: fused().numpy(),
        "xla": lambda: xla().numpy(),
    }


@pytest.mark.parametrize("path", sorted(_equal_paths()))
def test_at_norm_equal_to_clip_norm_the_outputs_are_the_inputs(path):
    got = np.asarray(_equal_paths()[path]())
    assert got.tobytes() == np.array([[EQUAL]], np.float32).tobytes(), got
    # With clip_norm one float lower the input is clipped.
    above = np.nextafter(EQUAL, np.float32(0))
    clipped = clip_ops.clip_by_global_norm([tf.constant([[EQUAL]])], float(above))[0][0]
    assert clipped.numpy()[0, 0] < EQUAL


# --- A 16-bit norm is returned in its dtype; the clip uses float32's ---------


def test_float16_norm_that_overflows_is_inf_while_the_clip_is_finite():
    """The norm is computed in float32 and returned in the inputs' dtype, as
    TF returns it: sqrt(2) * 60000 is inf in float16. The outputs are clipped
    by the float32 norm, so they are finite (TF's float16 sum of squares
    overflows and makes them NaN)."""
    x = tf.constant([60000.0], tf.float16)
    clipped, norm, tensor_norms = clip_ops.clip_by_global_norm([x, x], 1.0, per_tensor=True)
    assert norm.dtype == tf.float16 and np.isinf(norm.numpy())
    # As TF clips 16-bit tensors: times the scale rounded to their dtype
    # (here a float16 denormal, so 2 ulps from 1 / sqrt(2)).
    scale = np.float16(1.0 / np.float32(np.sqrt(2.0) * 60000))
    want = np.float16(np.float32(60000) * np.float32(scale))
    for out in clipped:
        assert out.dtype == tf.float16
        np.testing.assert_allclose(out.numpy(), [want], rtol=1e-3)
    assert [t.numpy() for t in tensor_norms] == [np.float16(60000)] * 2
    # A tensor norm that overflows float16 is inf too, where the outputs are
    # clipped as well.
    y = tf.constant([60000.0, 60000.0], tf.float16)
    clipped, norm, (tensor_norm,) = clip_ops.clip_by_global_norm([y], 1.0, per_tensor=True)
    assert np.isinf(norm.numpy()) and np.isinf(tensor_norm.numpy())
    np.testing.assert_allclose(clipped[0].numpy(), [want, want], rtol=1e-3)
    assert np.isinf(clip_ops.global_norm([x, x]).numpy())
    # Stock TF: inf norm and NaN outputs.
    stock, stock_norm = tf.clip_by_global_norm([x, x], 1.0)
    assert np.isinf(stock_norm.numpy()) and np.isnan(stock[0].numpy()).all()
