# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""The kernels' sum: the same bits whatever the run and the thread count,
in the order cc/core/clip_core.h documents.
"""

import numpy as np
import tensorflow as tf
from clip_reference import (
    DTYPES,
    F32,
    NORM_ULPS,
    ODD_SIZES,
    assert_ulps,
    check_tensor_norms,
    ref_global_norm,
)
from conftest import dense_shapes, run_in_mode, session_run

from monolith_ops import clip_ops
from monolith_ops._loader import ops

# --- The same bits across runs and thread counts -----------------------------


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


def _features_run(arrays, threads):
    """The V2 ops (norm_type, per_tensor, inverse_scale) over `arrays`, run
    twice in one session of `threads` threads."""
    config = tf.compat.v1.ConfigProto(
        intra_op_parallelism_threads=threads, inter_op_parallelism_threads=1
    )
    with tf.Graph().as_default():
        ts = [tf.constant(a) for a in arrays]
        out = [clip_ops.global_norm(ts, norm_type=nt, per_tensor=True) for nt in (2, "inf")] + [
            clip_ops.clip_by_global_norm(ts, 1.0, norm_type=nt, inverse_scale=0.3, per_tensor=True)
            for nt in (2, "inf")
        ]
        with tf.compat.v1.Session(config=config) as sess:
            return [session_run(sess, out) for _ in range(2)]


def _flat(x):
    if isinstance(x, (list, tuple)):
        return [b for v in x for b in _flat(v)]
    return [np.asarray(x).tobytes()]


def test_bitwise_deterministic_across_runs_and_thread_counts():
    """Lists long enough to be reduced by several threads: twice with two
    threads, once with one, the same bits. The default ops (the fused clip
    and GlobalL2Reduce over Monolith's dense shapes) and the V2 ops."""
    grads, first, second = _dense_run(threads=2)
    _, single, _ = _dense_run(threads=1)
    for run in (second, single):
        for a, b in zip(first[0], run[0]):
            assert a.tobytes() == b.tobytes()
        assert first[1].tobytes() == run[1].tobytes()
        assert first[2].tobytes() == run[2].tobytes()
    np.testing.assert_allclose(first[2], ref_global_norm(grads) ** 2, rtol=1e-7)

    rng = np.random.default_rng(15)
    arrays = [rng.standard_normal(n).astype(np.float32) for n in (1_000_003, 17, 300_001)]
    arrays.append(rng.standard_normal(70_001).astype(np.float16))
    first, second = _features_run(arrays, threads=2)
    (single, _) = _features_run(arrays, threads=1)
    assert _flat(first) == _flat(second) == _flat(single)
    (norm, tnorms), (inf_norm, _) = first[:2]
    assert_ulps(norm, ref_global_norm(arrays), F32, NORM_ULPS[F32], "norm")
    assert_ulps(inf_norm, ref_global_norm(arrays, "inf"), F32, 0, "inf norm")
    check_tensor_norms(tnorms, arrays, 2, 1.0, F32)


# --- The documented order ----------------------------------------------------


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
        [rng.standard_normal(n).astype(np.float32) for n in ODD_SIZES],
        [rng.standard_normal(n).astype(np.float32) for n in rng.integers(0, 5000, size=300)],
        [rng.standard_normal(n).astype(np.float32) * 1e3 for n in (300000, 7, 16384 * 5 + 1, 1)],
    ]
    # Many small tensors, every tail length, in every dtype: the one-thread
    # path, which keeps its lanes in registers from tensor to tensor.
    sizes = np.concatenate([np.arange(40), rng.integers(0, 40, size=1500)])
    cases += [[rng.standard_normal(n).astype(dtype) for n in sizes] for dtype in DTYPES]
    for arrays in cases:
        got = run_in_mode(
            "graph", lambda *ts: ops.global_l2_reduce(list(ts), Tnorm=tf.float64), *arrays
        )
        want = _documented_sum_of_squares(arrays)
        assert np.float64(got).tobytes() == np.float64(want).tobytes(), (got, want)
