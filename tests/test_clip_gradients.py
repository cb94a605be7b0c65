# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""Gradients (monolith_ops/_clip/gradients.py).

The default ops against TF's gradients (fused, use_norm, mixed dtypes,
global_norm, clip_norm an attr or a tensor, norm == clip_norm, a tiny
float16 norm), and the features' against their formulation in stock TF ops
(with respect to the inputs, clip_norm and inverse_scale; infinity-norm
ties; through the finite check). The gradient through a list split across
ops is in test_clip_paths.py.
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
    TOLERANCE,
    is_inf_norm,
    random_list,
    ref_global_norm,
)
from conftest import run_in_mode, to_numpy

from monolith_ops import clip_ops

# --- The default ops against TF's gradients ----------------------------------


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
    arrays = random_list(rng, dtype, scale)
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
    arrays = random_list(rng, np.float32, 1.0)
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
    arrays = random_list(rng, np.float32, scale)
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
    arrays = random_list(rng, np.float32, 1.0)

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


# --- The features against their formulation in TF ops ------------------------


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


def _ours_with_features(ts, clip_norm, inv, norm_type):
    return clip_ops.clip_by_global_norm(
        ts, clip_norm, norm_type=norm_type, inverse_scale=inv, per_tensor=True
    )


def _feature_gradients(run, impl, arrays, clip_norm, inv, norm_type, seed=11):
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
    loss, grads = _feature_gradients(run, _ours_with_features, arrays, clip_norm, inv, norm_type)
    want_loss, want = _feature_gradients(run, _formulation, arrays, clip_norm, inv, norm_type)
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
        loss, grads = _feature_gradients(
            "eager", _ours_with_features, arrays, clip_norm, 0.5, "inf"
        )
        want_loss, want = _feature_gradients("eager", _formulation, arrays, clip_norm, 0.5, "inf")
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
