# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""monolith_ops.clip_ops against tf.clip_by_global_norm / tf.linalg.global_norm."""

import os
import pickle

import numpy as np
import pytest
import tensorflow as tf
from conftest import (
    dense_shapes,
    installed_package_parent,
    run_in_mode,
    run_python,
    session_run,
    to_numpy,
)

from monolith_ops import clip_ops
from monolith_ops._clip import planner
from monolith_ops._loader import ops

INF, NAN = float("inf"), float("nan")


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


# --- Monolith's clip_ops test cases -------------------------------------------

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


# --- Parity with stock TF across dtypes and modes ------------------------------

TOLERANCE = {
    np.float32: 2e-6,
    np.float64: 1e-13,
    tf.float16.as_numpy_dtype: 2e-3,
    tf.bfloat16.as_numpy_dtype: 1.6e-2,
}


def _random_list(rng, dtype, scale):
    shapes = [(3, 5), (0,), (17,), (4, 1, 6), (), (200,)]
    return [(rng.standard_normal(s) * scale).astype(dtype) for s in shapes]


@pytest.mark.parametrize("dtype", list(TOLERANCE), ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("scale", [0.01, 3.0], ids=["below", "above"])
def test_parity_with_tf(mode, dtype, scale):
    rng = np.random.default_rng(7)
    arrays = _random_list(rng, dtype, scale)
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


def _reference(arrays, clip_norm):
    """TF's formula in float64."""
    norm = np.sqrt(sum(np.sum(np.square(a.astype(np.float64))) for a in arrays))
    scale = clip_norm * min(1.0 / norm, 1.0 / clip_norm) if norm > 0 else 1.0
    return [a.astype(np.float64) * scale for a in arrays], norm


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
    want, want_norm = _reference(arrays, 2.0)
    ours, norm = run_in_mode(mode, lambda *ts: clip_ops.clip_by_global_norm(list(ts), 2.0), *arrays)
    assert norm.dtype == np.float64
    np.testing.assert_allclose(norm, want_norm, rtol=1e-12)
    for got, ref, orig in zip(ours, want, arrays):
        assert got.dtype == orig.dtype
        np.testing.assert_allclose(got.astype(np.float64), ref, rtol=TOLERANCE[orig.dtype.type])
    # Without float64 the norm is float32.
    norm32 = run_in_mode(mode, lambda *ts: clip_ops.global_norm(list(ts)), *arrays[:3])
    assert norm32.dtype == np.float32


# --- None, IndexedSlices, empty lists ------------------------------------------


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


# --- use_norm, Tensor clip_norm, name -----------------------------------------


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


def test_name_scope_in_graph_mode():
    with tf.Graph().as_default() as g:
        t = tf.constant([3.0, 4.0])
        clip_ops.clip_by_global_norm([t], 1.0, name="my_clip")
        clip_ops.global_norm([t], name="my_norm")
        names = [op.name for op in g.get_operations()]
    assert any(
        n.startswith("my_clip/") and "Fused" in op_type
        for n, op_type in ((op.name, op.type) for op in g.get_operations())
    )
    assert any(n.startswith("my_norm/") for n in names)


def test_clip_placement_uses_one_fused_op():
    """A single-dtype clip is one fused kernel, not a norm op plus a clip op."""
    with tf.Graph().as_default() as g:
        ts = [tf.constant([3.0, 4.0]), tf.constant([1.0])]
        clip_ops.clip_by_global_norm(ts, 1.0)
        types = [op.type for op in g.get_operations()]
    assert types.count("MonolithClipByGlobalNormFused") == 1
    assert "GlobalL2Reduce" not in types and "MonolithClipByGlobalNorm" not in types


# --- Kernel behaviour: determinism, threads, 64-bit sizes ----------------------


def _dense_run(threads, seed=1):
    rng = np.random.default_rng(seed)
    grads = [rng.standard_normal(s).astype(np.float32) for s in dense_shapes()]
    config = tf.compat.v1.ConfigProto(
        intra_op_parallelism_threads=threads, inter_op_parallelism_threads=1
    )
    with tf.Graph().as_default():
        ts = [tf.constant(g) for g in grads]
        clipped, norm = clip_ops.clip_by_global_norm(ts, 1.0)
        sq = ops.global_l2_reduce(ts)
        with tf.compat.v1.Session(config=config) as sess:
            first = sess.run([clipped, norm, sq])
            second = sess.run([clipped, norm, sq])
    return grads, first, second


def test_bitwise_deterministic_across_runs_and_thread_counts():
    grads, first, second = _dense_run(threads=2)
    _, single, _ = _dense_run(threads=1)
    for run in (second, single):
        for a, b in zip(first[0], run[0]):
            assert a.tobytes() == b.tobytes()
        assert first[1].tobytes() == run[1].tobytes()
        assert first[2].tobytes() == run[2].tobytes()
    exact = sum(np.sum(np.square(g.astype(np.float64))) for g in grads)
    np.testing.assert_allclose(first[2], exact, rtol=1e-7)


def _documented_sum_of_squares(arrays, block=1 << 14, lanes=16):
    """The sum of squares in the order clip_core.h documents, in numpy.

    The list's elements, concatenated, are cut into blocks. Within a block,
    each tensor's piece sends its element j to lane j % lanes, except its
    last len % lanes elements, which go to lanes 0, 1, ...; every lane adds
    in element order, in double. A block's lanes are summed as a tree
    (lane j += lane j + w for w = 8, 4, 2, 1), and the blocks' sums are
    added in block order.
    """
    flat = [np.asarray(a, np.float64).ravel() for a in arrays]
    sizes = [len(f) for f in flat]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    total = int(offsets[-1])
    result = 0.0
    for begin in range(0, total, block):
        end = min(total, begin + block)
        acc = np.zeros(lanes)
        for t, x in enumerate(flat):
            lo, hi = max(begin, offsets[t]), min(end, offsets[t + 1])
            if hi <= lo:
                continue
            piece = np.square(x[lo - offsets[t] : hi - offsets[t]])
            full = len(piece) // lanes * lanes
            # cumsum adds in order, one element after the other.
            rows = np.vstack([acc, piece[:full].reshape(-1, lanes)])
            acc = np.cumsum(rows, axis=0)[-1]
            tail = piece[full:]
            acc[: len(tail)] += tail
        width = lanes // 2
        while width:
            acc[:width] += acc[width : 2 * width]
            width //= 2
        result += acc[0]
    return result


def test_sum_of_squares_is_bitwise_the_documented_order():
    """Pieces, tails, block edges and lists larger than one thread's share:
    the kernel's sum must be bitwise the documented one."""
    rng = np.random.default_rng(14)
    cases = [
        [rng.standard_normal(n).astype(np.float32) for n in _ODD_SIZES],
        [rng.standard_normal(n).astype(np.float32) for n in rng.integers(0, 5000, size=300)],
        [rng.standard_normal(n).astype(np.float32) * 1e3 for n in (300000, 7, 16384 * 5 + 1, 1)],
    ]
    # Many small tensors, every tail length, in every dtype: the one-thread
    # path, which keeps its lanes in registers from tensor to tensor.
    sizes = np.concatenate([np.arange(40), rng.integers(0, 40, size=1500)])
    cases += [[rng.standard_normal(n).astype(dtype) for n in sizes] for dtype in _DTYPES]
    for arrays in cases:
        got = run_in_mode(
            "graph", lambda *ts: ops.global_l2_reduce(list(ts), Tnorm=tf.float64), *arrays
        )
        want = _documented_sum_of_squares(arrays)
        assert np.float64(got).tobytes() == np.float64(want).tobytes(), (got, want)


@pytest.mark.slow
def test_many_small_tensors(mode):
    rng = np.random.default_rng(5)
    arrays = [rng.standard_normal(rng.integers(0, 4)).astype(np.float32) for _ in range(3000)]
    want, want_norm = _reference(arrays, 1.0)
    ours, norm = run_in_mode(mode, lambda *ts: clip_ops.clip_by_global_norm(list(ts), 1.0), *arrays)
    np.testing.assert_allclose(norm, want_norm, rtol=1e-6)
    for got, ref in zip(ours, want):
        np.testing.assert_allclose(got, ref, rtol=1e-6)


# Sizes whose pieces start at every alignment: a reduction block boundary
# (16,384 elements) falls inside the second and fourth tensors at odd offsets.
_ODD_SIZES = (5, 16384 + 7, 3, 40000, 1, 0, 33)
_DTYPES = (np.float32, np.float64, tf.float16.as_numpy_dtype, tf.bfloat16.as_numpy_dtype)


def _clip_odd_sizes():
    """Our clip (norm above clip_norm) of _ODD_SIZES lists in every dtype,
    as {dtype name: list of output bytes}."""
    rng = np.random.default_rng(11)
    results = {}
    for dtype in _DTYPES:
        arrays = [rng.standard_normal(n).astype(dtype) for n in _ODD_SIZES]
        outs, _ = run_in_mode(
            "graph", lambda *ts: clip_ops.clip_by_global_norm(list(ts), 1.0), *arrays
        )
        results[np.dtype(dtype).name] = [o.tobytes() for o in outs]
    return results


_STREAMED_SCRIPT = """
import pickle, sys
sys.path.insert(0, sys.argv[1])
import test_clip_ops
sys.stdout.buffer.write(pickle.dumps(test_clip_ops._clip_odd_sizes()))
"""


def _python(tmp_path, script, *args, **env):
    """Runs `script` in a fresh interpreter that imports the monolith_ops
    these tests import (not a source tree in the working folder); its
    stdout as bytes."""
    return run_python(
        ["-c", script, *args],
        cwd=tmp_path,
        pythonpath=installed_package_parent(),
        env=env,
        text=False,
    ).stdout


@pytest.mark.slow
def test_streamed_stores_give_bitwise_the_same_outputs(tmp_path):
    """MONOLITH_OPS_STREAM_MIN_BYTES=0 writes every output with streaming
    stores; the values must not change, heads and tails included."""
    here = os.path.dirname(os.path.abspath(__file__))
    streamed = pickle.loads(
        _python(tmp_path, _STREAMED_SCRIPT, here, MONOLITH_OPS_STREAM_MIN_BYTES="0")
    )
    cached = _clip_odd_sizes()  # 1.3 MB at most: below the default threshold
    assert streamed.keys() == cached.keys()
    for name, outs in cached.items():
        assert [len(o) for o in streamed[name]] == [len(o) for o in outs]
        for i, (a, b) in enumerate(zip(streamed[name], outs)):
            assert a == b, f"{name} output {i} differs when streamed"


@pytest.mark.parametrize("dtype", _DTYPES, ids=lambda d: np.dtype(d).name)
def test_small_outputs_sharing_one_buffer_feed_other_ops(dtype):
    """Small outputs are aligned slices of one buffer, large ones are not:
    both must work as inputs of ordinary kernels, which assume alignment."""
    rng = np.random.default_rng(12)
    sizes = (1, 3, 30000, 17, 0, 64, 5)  # 30000 x 8 bytes is above 64 KiB
    arrays = [rng.standard_normal(n).astype(dtype) for n in sizes]

    def clip_then_use(*ts):
        ours, _ = clip_ops.clip_by_global_norm(list(ts), 1.0)
        stock, _ = tf.clip_by_global_norm(list(ts), 1.0)

        def use(t):
            return tf.reduce_sum(tf.cast(t * 2, tf.float64))

        return [use(t) for t in ours], [use(t) for t in stock], ours, stock

    for mode in ("graph", "eager"):
        used, stock_used, ours, stock = run_in_mode(mode, clip_then_use, *arrays)
        rtol = TOLERANCE[dtype]
        for got, want in zip(ours, stock):
            np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=rtol)
        np.testing.assert_allclose(used, stock_used, rtol=rtol, atol=1e-6)


def test_an_output_outlives_the_others():
    """Dropping all but one output of a clip leaves that one intact."""
    rng = np.random.default_rng(13)
    arrays = [rng.standard_normal(n).astype(np.float32) for n in (7, 9, 11)]
    want, _ = _reference(arrays, 1.0)
    outs, _ = clip_ops.clip_by_global_norm([tf.constant(a) for a in arrays], 1.0)
    kept = outs[1]
    del outs
    filler = [tf.fill([9], 123.0) for _ in range(100)]  # reuse freed memory
    np.testing.assert_allclose(kept.numpy(), want[1], rtol=1e-6)
    assert all(f.numpy()[0] == 123.0 for f in filler)


_HUGE_PAGES_SCRIPT = """
import sys
import numpy as np
import tensorflow as tf
from monolith_ops import clip_ops
# Graph mode: eager mode's own allocations may already be huge pages.
with tf.Graph().as_default():
    x = tf.compat.v1.Variable(tf.ones([1 << 24]), use_resource=True)  # 64 MiB
    (out,), _ = clip_ops.clip_by_global_norm([x.value()], 1.0)  # norm 4096
    with tf.compat.v1.Session() as sess:
        sess.run(x.initializer)
        values = sess.run(out)  # shares the output's memory
assert values[0] == np.float32(1 / 4096), values[0]
begin = values.__array_interface__["data"][0]
end = begin + values.nbytes
huge_kb = 0  # over every mapping the output overlaps (advice splits them)
with open("/proc/self/smaps") as f:
    inside = False
    for line in f:
        fields = line.split()
        if "-" in fields[0] and len(fields) >= 5:
            lo, hi = (int(v, 16) for v in fields[0].split("-"))
            inside = lo < end and begin < hi
        elif inside and fields[0] == "AnonHugePages:":
            huge_kb += int(fields[1])
print(huge_kb)
"""


def _thp_mode():
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return f.read().split("[")[1].split("]")[0]
    except (OSError, IndexError):
        return None


@pytest.mark.skipif(_thp_mode() != "madvise", reason="needs transparent huge pages in madvise mode")
@pytest.mark.slow
def test_large_outputs_are_advised_into_huge_pages(tmp_path):
    """A fresh 64 MiB output lands in huge pages when the kernel is asked to
    (THP "madvise" mode), and not with MONOLITH_OPS_HUGE_PAGES=0."""

    def huge_kb(**env):
        return int(_python(tmp_path, _HUGE_PAGES_SCRIPT, **env).split()[-1])

    assert huge_kb() >= 32 * 1024
    assert huge_kb(MONOLITH_OPS_HUGE_PAGES="0") == 0


@pytest.mark.slow
def test_more_than_2_pow_31_elements():
    """Sizes and offsets are 64-bit: a 2^31 + 24 element half tensor."""
    n = 2**31 + 24
    with tf.Graph().as_default():
        big = tf.ones([n], tf.float16)
        two = tf.constant([2.0], tf.float16)
        sq = ops.global_l2_reduce([two, big], Tnorm=tf.float64)
        with tf.compat.v1.Session() as sess:
            got = sess.run(sq)
    assert got == n + 4.0


# --- Bad input -----------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        tf.constant([1.0]),
        {"a": tf.constant([1.0])},
        "grads",
        (t for t in [tf.constant([1.0])]),
        None,
    ],
    ids=["tensor", "dict", "str", "generator", "none"],
)
@pytest.mark.parametrize(
    "fn",
    [lambda t: clip_ops.clip_by_global_norm(t, 1.0), clip_ops.global_norm],
    ids=["clip", "norm"],
)
def test_t_list_must_be_a_list(bad, fn):
    with pytest.raises(TypeError, match="t_list should be a list") as err:
        fn(bad)
    assert type(bad).__name__ in str(err.value)


@pytest.mark.parametrize("dtype", [tf.int32, tf.int64, tf.complex64, tf.string])
def test_non_float_tensors_are_rejected(dtype):
    bad = tf.zeros([2], dtype)
    with pytest.raises(TypeError, match=r"t_list\[1\].*" + dtype.name):
        clip_ops.clip_by_global_norm([tf.constant([1.0]), bad], 1.0)
    with pytest.raises(TypeError, match=r"t_list\[0\]"):
        clip_ops.global_norm([bad])


def test_clip_norm_must_be_a_scalar():
    t = [tf.constant([1.0])]
    with pytest.raises(ValueError, match="clip_norm should be a scalar"):
        clip_ops.clip_by_global_norm(t, tf.constant([1.0, 2.0]))
    with pytest.raises(ValueError, match="use_norm should be a scalar"):
        clip_ops.clip_by_global_norm(t, 1.0, use_norm=[1.0, 2.0])
    with pytest.raises(TypeError, match="clip_norm"):
        clip_ops.clip_by_global_norm(t, "one")
    with pytest.raises(TypeError, match="clip_norm"):
        clip_ops.clip_by_global_norm(t, True)


@pytest.mark.parametrize("clip_norm", [0.0, -1.0, INF, NAN])
def test_clip_norm_must_be_positive_and_finite(clip_norm):
    with pytest.raises(ValueError, match="clip_norm should be positive and finite"):
        clip_ops.clip_by_global_norm([tf.constant([1.0])], clip_norm)


def test_kernel_rejects_bad_runtime_clip_norm():
    with tf.Graph().as_default():
        c = tf.compat.v1.placeholder(tf.float32, [])
        clipped, _ = clip_ops.clip_by_global_norm([tf.constant([3.0, 4.0])], c)
        with tf.compat.v1.Session() as sess:
            np.testing.assert_allclose(sess.run(clipped, {c: 1.0})[0], [0.6, 0.8])
            with pytest.raises(
                tf.errors.InvalidArgumentError, match="clip_norm must be positive and finite"
            ):
                sess.run(clipped, {c: 0.0})


def test_kernel_rejects_non_scalar_or_negative_norm():
    with tf.Graph().as_default():
        norm = tf.compat.v1.placeholder(tf.float32, None)
        out = ops.monolith_clip_by_global_norm([tf.constant([1.0])], norm, clip_norm=1.0)
        with tf.compat.v1.Session() as sess:
            with pytest.raises(
                tf.errors.InvalidArgumentError, match="global_norm must be a scalar"
            ):
                sess.run(out, {norm: [1.0, 2.0]})
            with pytest.raises(
                tf.errors.InvalidArgumentError, match="global_norm must be non-negative"
            ):
                sess.run(out, {norm: -2.0})
        # A norm of known non-scalar shape fails when the graph is built.
        with pytest.raises(ValueError, match="rank"):
            ops.monolith_clip_by_global_norm(
                [tf.constant([1.0])], tf.constant([1.0, 2.0]), clip_norm=1.0
            )


def test_clip_norm_attr_must_be_positive():
    with pytest.raises(
        tf.errors.InvalidArgumentError, match="clip_norm must be positive and finite"
    ):
        ops.monolith_clip_by_global_norm([tf.constant([1.0])], tf.constant(1.0), clip_norm=-1.0)


@pytest.mark.parametrize(
    "op_type,scalar_inputs",
    [("GlobalL2Reduce", 0), ("MonolithClipByGlobalNorm", 1), ("MonolithClipByGlobalNormFused", 1)],
)
def test_raw_ops_with_mismatched_n(op_type, scalar_inputs):
    """A node whose N disagrees with its inputs is rejected, never run."""
    graph_def = tf.compat.v1.GraphDef()
    for name in ("a", "b", "s"):
        const = graph_def.node.add(name=name, op="Const")
        const.attr["dtype"].type = tf.float32.as_datatype_enum
        const.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(1.0, tf.float32))
    node = graph_def.node.add(name="bad", op=op_type)
    node.input.extend(["a", "b"] + ["s"] * scalar_inputs)
    node.attr["N"].i = 3
    node.attr["T"].type = tf.float32.as_datatype_enum
    if op_type == "MonolithClipByGlobalNorm":
        node.attr["clip_norm"].f = 1.0
    ops.global_l2_reduce  # noqa: B018 (the ops must be registered before the import)
    with tf.Graph().as_default():
        with pytest.raises(ValueError, match="N"):
            tf.graph_util.import_graph_def(graph_def, name="")


def test_raw_ops_reject_integer_inputs():
    with pytest.raises((TypeError, tf.errors.InvalidArgumentError)):
        ops.global_l2_reduce([tf.constant([1, 2])])


# --- Gradients -----------------------------------------------------------------


def _gradients(clip, ts, clip_norm, weights, norm_weight, use_norm=None):
    """Gradients of sum(weights * clipped) + norm_weight * norm with respect to
    the inputs, clip_norm and use_norm (None where nothing flows)."""
    sources = list(ts) + [clip_norm] + ([use_norm] if use_norm is not None else [])
    with tf.GradientTape() as tape:
        tape.watch(sources)
        if use_norm is None:
            outs, norm = clip(list(ts), clip_norm)
        else:
            outs, norm = clip(list(ts), clip_norm, use_norm=use_norm)
        loss = norm_weight * tf.cast(norm, tf.float64)
        for out, w in zip(outs, weights):
            loss += tf.reduce_sum(tf.cast(out, tf.float64) * w)
    return tape.gradient(loss, sources)


def _assert_gradients_match(ours, stock, rtol):
    """Close, relative to each value and to the largest gradient (where the
    exact gradient is 0, TF's own formula leaves rounding residue)."""
    assert len(ours) == len(stock)
    largest = max(float(np.max(np.abs(np.float64(w)), initial=0.0)) for w in stock if w is not None)
    for got, want in zip(ours, stock):
        if want is None:  # nothing flows in TF: ours is None or zero
            assert got is None or not np.any(got)
            continue
        assert got is not None
        np.testing.assert_allclose(
            np.float64(got), np.float64(want), rtol=rtol, atol=rtol * largest
        )


@pytest.mark.parametrize("dtype", list(TOLERANCE), ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("scale", [0.01, 3.0], ids=["below", "above"])
@pytest.mark.parametrize("norm_weight", [0.0, 0.7], ids=["clipped", "and_norm"])
def test_gradients_match_tf(mode, dtype, scale, norm_weight):
    """Through the fused op: the inputs, the runtime clip_norm and the norm."""
    rng = np.random.default_rng(21)
    arrays = _random_list(rng, dtype, scale)
    weights = [rng.standard_normal(a.shape) for a in arrays]
    clip_norm = np.asarray(5.0, dtype)

    def both(*ts):
        *ts, c = ts
        return (
            _gradients(clip_ops.clip_by_global_norm, ts, c, weights, norm_weight),
            _gradients(tf.clip_by_global_norm, ts, c, weights, norm_weight),
        )

    ours, stock = run_in_mode(mode, both, *arrays, clip_norm)
    _assert_gradients_match(ours, stock, TOLERANCE[dtype] * 10)


@pytest.mark.parametrize("scale", [0.01, 3.0], ids=["below", "above"])
def test_gradients_with_use_norm_match_tf(mode, scale):
    """Through MonolithClipByGlobalNorm: the norm is an input."""
    rng = np.random.default_rng(22)
    arrays = _random_list(rng, np.float32, 1.0)
    weights = [rng.standard_normal(a.shape) for a in arrays]
    use_norm = np.float32(5.0 / scale)

    def both(*ts):
        *ts, c, n = ts
        return (
            _gradients(clip_ops.clip_by_global_norm, ts, c, weights, 0.3, use_norm=n),
            _gradients(tf.clip_by_global_norm, ts, c, weights, 0.3, use_norm=n),
        )

    ours, stock = run_in_mode(mode, both, *arrays, np.float32(5.0), use_norm)
    # A constant clip_norm in a graph becomes the op's attr: like any
    # constant, it gets no gradient. An eager tensor, or a tf.function
    # argument, stays a tensor, and its gradient must match TF's.
    if mode == "graph":
        assert ours[-2] is None
        ours[-2] = stock[-2] = None
    _assert_gradients_match(ours, stock, 2e-5)


@pytest.mark.parametrize("scale", [0.01, 3.0], ids=["below", "above"])
def test_gradients_of_a_mixed_dtype_list(mode, scale):
    """Through GlobalL2Reduce and MonolithClipByGlobalNorm (stock TF cannot
    take the list: it is compared with TF on the list cast to float64)."""
    rng = np.random.default_rng(23)
    arrays = _random_list(rng, np.float32, scale)
    arrays[1::2] = [a.astype(np.float64) for a in arrays[1::2]]
    weights = [rng.standard_normal(a.shape) for a in arrays]

    def both(*ts):
        *ts, c = ts
        wide = [tf.cast(t, tf.float64) for t in ts]
        return (
            _gradients(clip_ops.clip_by_global_norm, ts, c, weights, 0.5),
            _gradients(tf.clip_by_global_norm, wide, c, weights, 0.5),
        )

    ours, stock = run_in_mode(mode, both, *arrays, np.float64(5.0))
    for got, a in zip(ours, arrays):
        assert got.dtype == a.dtype
    if mode == "graph":  # clip_norm became the op's attr, as above
        assert ours[-1] is None
        ours[-1] = stock[-1] = None
    _assert_gradients_match(ours, stock, 2e-5)


def test_global_norm_gradient_matches_tf(mode):
    rng = np.random.default_rng(24)
    arrays = _random_list(rng, np.float32, 1.0)

    def both(*ts):
        ts = list(ts)
        grads = []
        for fn in (clip_ops.global_norm, tf.linalg.global_norm):
            with tf.GradientTape() as tape:
                tape.watch(ts)
                norm = fn(ts)
            grads.append(tape.gradient(norm, ts))
        return grads

    ours, stock = run_in_mode(mode, both, *arrays)
    _assert_gradients_match(ours, stock, 2e-6)


def test_clip_with_a_python_clip_norm_is_differentiable(mode):
    """clip_norm as a Python float: the attr-based op when the list has two
    dtypes; its gradient against TF's on the float64 list."""
    rng = np.random.default_rng(25)
    arrays = [rng.standard_normal(50).astype(np.float32) * 3, rng.standard_normal(30) * 3]
    weights = [rng.standard_normal(a.shape) for a in arrays]

    def both(*ts):
        ts = list(ts)
        grads = []
        for fn, xs in (
            (clip_ops.clip_by_global_norm, ts),
            (tf.clip_by_global_norm, [tf.cast(t, tf.float64) for t in ts]),
        ):
            with tf.GradientTape() as tape:
                tape.watch(xs)
                outs, _ = fn(xs, 2.5)
                loss = tf.add_n(
                    [tf.reduce_sum(tf.cast(o, tf.float64) * w) for o, w in zip(outs, weights)]
                )
            grads.append(tape.gradient(loss, xs))
        return grads

    ours, stock = run_in_mode(mode, both, *arrays)
    _assert_gradients_match(ours, stock, 2e-5)


@pytest.mark.parametrize("path", ["fused", "use_norm", "mixed"])
def test_gradient_at_norm_equal_to_clip_norm_matches_tf(mode, path):
    """norm == clip_norm exactly: the forward passes the inputs through, the
    gradient is the clipping branch's, as TF's is, on every path: the fused
    kernel, and (for a clip_norm tensor) the clip in TF ops with use_norm or
    for a mixed list (compared with TF on the list cast to float64)."""
    dtype = np.float64 if path == "mixed" else np.float32
    arrays = [np.array([3.0, 0.0, 0.0], np.float32), np.array([4.0, 0.0], dtype)]
    weights = [np.array([1.0, 2.0, 3.0]), np.array([2.0, -1.0])]

    def both(*ts):
        *ts, c = ts
        if path == "use_norm":
            u = tf.constant(5.0, tf.float32)
            return (
                _gradients(clip_ops.clip_by_global_norm, ts, c, weights, 0.0, use_norm=u),
                _gradients(tf.clip_by_global_norm, ts, c, weights, 0.0, use_norm=u),
            )
        wide = [tf.cast(t, tf.float64) for t in ts] if path == "mixed" else ts
        return (
            _gradients(clip_ops.clip_by_global_norm, ts, c, weights, 0.0),
            _gradients(tf.clip_by_global_norm, wide, c, weights, 0.0),
        )

    ours, stock = run_in_mode(mode, both, *arrays, np.asarray(5.0, dtype))
    if path != "fused" and mode == "graph":  # a constant clip_norm: an attr
        assert ours[len(arrays)] is None
        ours[len(arrays)] = stock[len(arrays)] = None
    _assert_gradients_match(ours, stock, 2e-6)


def test_float16_gradients_of_a_tiny_norm_do_not_overflow(mode):
    """The norm of [1e-5, 0, 0] in float16 is representable; so is its
    gradient [1, 0, 0], which an intermediate 1 / norm is not."""
    x = np.array([1e-5, 0.0, 0.0], np.float16)

    def grads(t):
        with tf.GradientTape() as tape:
            tape.watch(t)
            norm = clip_ops.global_norm([t])
        return tape.gradient(norm, t)

    got = run_in_mode(mode, grads, x)
    np.testing.assert_allclose(np.float64(got), [1.0, 0.0, 0.0], rtol=2e-3)


def test_runtime_clip_norm_with_use_norm_is_checked_and_passes_through():
    """A clip_norm known only when the graph runs, with use_norm: clipped in
    TF ops, but with the kernels' check and pass-through."""
    x = np.array([1e-3, -2e-3, 3e-3], np.float32)
    with tf.Graph().as_default():
        c = tf.compat.v1.placeholder(tf.float32, [])
        (out,), _ = clip_ops.clip_by_global_norm([tf.constant(x)], c, use_norm=tf.constant(0.01))
        with tf.compat.v1.Session() as sess:
            # 0.045971192 * (1 / 0.045971192) is 0.99999994 in float32.
            assert sess.run(out, {c: 0.045971192}).tobytes() == x.tobytes()
            np.testing.assert_allclose(sess.run(out, {c: 0.005}), x * 0.5, rtol=1e-6)
            for bad in (0.0, -1.0, np.inf, np.nan):
                with pytest.raises(
                    tf.errors.InvalidArgumentError, match="clip_norm must be positive and finite"
                ):
                    sess.run(out, {c: bad})
        (neg,), _ = clip_ops.clip_by_global_norm([tf.constant(x)], c, use_norm=tf.constant(-1.0))
        with tf.compat.v1.Session() as sess:
            with pytest.raises(
                tf.errors.InvalidArgumentError, match="use_norm. must be non-negative"
            ):
                sess.run(neg, {c: 2.0})


# --- Long lists in graphs: ops of at most CHUNK_SIZE tensors -------------------


@pytest.fixture
def pack_past_one_chunk(monkeypatch):
    """Lists longer than CHUNK_SIZE packed, so that small lists test the
    packed ops (PACK_ABOVE itself is thousands of tensors)."""
    monkeypatch.setattr(planner, "PACK_ABOVE", planner.CHUNK_SIZE)


def _largest_list_op(graph):
    """The most inputs or outputs of any op of the library in `graph`."""
    library_ops = (
        "GlobalL2Reduce",
        "MonolithPackGradList",
        "MonolithPackedL2Reduce",
        "MonolithClipByGlobalNorm",
        "MonolithClipByGlobalNormFused",
        "MonolithClipBySumOfSquares",
    )
    return max(
        max(len(op.inputs), len(op.outputs))
        for op in graph.get_operations()
        if op.type in library_ops
    )


def _every_clip(ts, clip_norm, mixed):
    """Every path of the module over one list: fused, use_norm (the norm by
    its own op, then MonolithClipByGlobalNorm), global_norm, and the same
    over a list that mixes dtypes."""
    out = [
        clip_ops.clip_by_global_norm(ts, clip_norm),
        clip_ops.clip_by_global_norm(ts, 1e30),  # passes through
        clip_ops.global_norm(ts),
    ]
    norm = clip_ops.global_norm(ts)
    out.append(clip_ops.clip_by_global_norm(ts, 1.0, use_norm=norm))
    out.append(clip_ops.clip_by_global_norm(ts + mixed, 1.0))
    return out


def _flat_bytes(results):
    flat = []

    def walk(x):
        if isinstance(x, (list, tuple)):
            for v in x:
                walk(v)
        else:
            flat.append(np.asarray(x).tobytes())

    walk(results)
    return flat


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
@pytest.mark.slow
def test_lists_split_across_ops_give_bitwise_the_results_of_one_op(dtype, pack_past_one_chunk):
    """In a graph a list longer than CHUNK_SIZE is packed and clipped in
    parts; eager ops take it whole. Sizes around the part boundaries, and
    tensors that cross the reduction's block edges inside a part."""
    size = clip_ops.CHUNK_SIZE
    rng = np.random.default_rng(22)
    mixed = [rng.standard_normal(5).astype(np.float32 if dtype != np.float32 else np.float64)]
    for n in (size - 1, size, size + 1, 2 * size, 2 * size + 1, 3 * size - 1):
        lengths = rng.integers(0, 600, size=n)
        lengths[n // 3] = 40000
        arrays = [rng.standard_normal(k).astype(dtype) for k in lengths]
        arrays[-1][:1] = 0.5  # not empty
        whole = to_numpy(
            _every_clip(
                [tf.constant(a) for a in arrays],
                tf.constant(1.0, tf.float64 if dtype == np.float64 else tf.float32),
                [tf.constant(m) for m in mixed],
            )
        )
        with tf.Graph().as_default() as graph:
            clip_norm = tf.compat.v1.placeholder(
                tf.float64 if dtype == np.float64 else tf.float32, []
            )
            parts = _every_clip(
                [tf.constant(a) for a in arrays], clip_norm, [tf.constant(m) for m in mixed]
            )
            if n > size:
                assert _largest_list_op(graph) <= size + 2
            with tf.compat.v1.Session() as sess:
                split = sess.run(parts, {clip_norm: 1.0})
        assert _flat_bytes(split) == _flat_bytes(whole), n


@pytest.mark.parametrize("extra", [0, 1])
@pytest.mark.slow
def test_lists_are_packed_only_past_pack_above(extra):
    """Up to PACK_ABOVE tensors a clip is one op (each extra op costs every
    step); one more and no op takes more than CHUNK_SIZE of them."""
    n = clip_ops.PACK_ABOVE + extra
    with tf.Graph().as_default() as graph:
        ts = [tf.zeros([2]) for _ in range(n)]
        clip_ops.clip_by_global_norm(ts, 1.0)
        clip_ops.global_norm(ts)
        if extra:
            assert _largest_list_op(graph) <= clip_ops.CHUNK_SIZE + 2
        else:
            assert _largest_list_op(graph) == n + 1  # the list and the norm


@pytest.mark.timeout(400)
@pytest.mark.slow
def test_graph_mode_with_20000_tensors():
    """One Session.run over 20,000 tensors builds and runs in seconds (one
    op of 20,000 outputs took Grappler minutes)."""
    n = 20000
    with tf.Graph().as_default() as graph:
        ts = [tf.random.uniform([3], seed=i) for i in range(n)]
        clipped, norm = clip_ops.clip_by_global_norm(ts, 1.0)
        assert _largest_list_op(graph) <= clip_ops.CHUNK_SIZE + 2
        with tf.compat.v1.Session() as sess:
            inputs, outputs, got = sess.run([ts, clipped, norm])
    want = np.sqrt(sum(np.sum(np.square(x.astype(np.float64))) for x in inputs))
    np.testing.assert_allclose(got, want, rtol=1e-6)
    for x, y in zip(inputs, outputs):
        np.testing.assert_allclose(y, x / got, rtol=1e-6)


@pytest.mark.slow
def test_gradient_through_a_list_split_across_ops(pack_past_one_chunk):
    size = clip_ops.CHUNK_SIZE
    rng = np.random.default_rng(23)
    arrays = [rng.standard_normal(7).astype(np.float32) for _ in range(2 * size + 3)]
    weights = [rng.standard_normal(7).astype(np.float32) for _ in arrays]

    def loss(ts, clip):
        clipped, norm = clip(ts, 1.0)
        return tf.add_n([tf.reduce_sum(c * w) for c, w in zip(clipped, weights)]) + norm

    with tf.Graph().as_default():
        ts = [tf.constant(a) for a in arrays]
        ours = tf.gradients(loss(ts, clip_ops.clip_by_global_norm), ts)
        stock = tf.gradients(loss(ts, tf.clip_by_global_norm), ts)
        with tf.compat.v1.Session() as sess:
            ours, stock = sess.run([ours, stock])
    for a, b in zip(ours, stock):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


# --- Denormal clip_norm: TensorFlow's threads flush denormals to zero ----------


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


def test_clip_norm_that_the_dtype_cannot_hold_names_the_value():
    with pytest.raises(ValueError, match=r"got 0\.0 \(1e-300 is 0\.0 in float32\)"):
        clip_ops.clip_by_global_norm([tf.constant([1.0])], 1e-300)


# ---------------------------------------------------------------------------
# The dtypes, the path choice and the clip factor.


def test_supported_dtypes_are_those_the_ops_are_registered_for():
    from tensorflow.python.framework import op_def_registry

    for op_name in ("GlobalL2Reduce", "MonolithClipByGlobalNorm", "MonolithClipByGlobalNormFused"):
        (attr,) = [a for a in op_def_registry.get(op_name).attr if a.name == "T"]
        registered = {tf.as_dtype(t) for t in attr.allowed_values.list.type}
        assert set(clip_ops.SUPPORTED_DTYPES) == registered, op_name
    with pytest.raises(TypeError, match="supports .*float32.* and "):
        clip_ops.global_norm([tf.constant([1, 2], tf.int32)])


def test_choose_clip_path():
    f32, f64 = tf.float32, tf.float64
    choose = clip_ops.choose_clip_path
    path = clip_ops.ClipPath
    with tf.Graph().as_default():
        assert choose([f32, f32], f32, False, 1.0) == clip_ops.ClipPlan(path.FUSED)
        assert choose([f32], f32, False, None).path is path.FUSED
        assert choose([f32], f32, True, 0.5) == clip_ops.ClipPlan(
            path.KERNEL_WITH_CLIP_NORM_ATTR, 0.5
        )
        assert choose([f32, f64], f64, False, 0.5).path is path.KERNEL_WITH_CLIP_NORM_ATTR
        # A float64 clip_norm that float32 does not hold, or one known only
        # at run time, is not an attr.
        assert choose([f32, f64], f64, False, 0.1).path is path.TF_OPS
        assert choose([f32, f64], f64, False, None).path is path.TF_OPS
        assert choose([f32], f32, True, None).path is path.TF_OPS

    traced = []

    @tf.function(jit_compile=True)
    def traced_under_xla(x):
        traced.append(choose([f32], f32, False, 1.0).path)
        return x

    traced_under_xla(tf.constant(1.0))
    assert traced == [path.TF_OPS]


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


def test_check_clip_norm():
    assert clip_ops.check_clip_norm(np.float32(0.5)) == 0.5
    for bad in (True, "1", None):
        with pytest.raises(TypeError, match="clip_norm should be a positive number"):
            clip_ops.check_clip_norm(bad)
    for bad in (0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="clip_norm should be positive and finite"):
            clip_ops.check_clip_norm(bad)
