# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""clip_ops inside XLA-compiled functions: tf.function(jit_compile=True) and a
Keras model compiled with jit_compile=True.

XLA has no kernel of the library, so there clip_ops builds the same
computation from TF ops; these tests check that it compiles and that its
results are those of the kernels (run eagerly on the same inputs).
"""

import numpy as np
import pytest
import tensorflow as tf

from monolith_ops import clip_ops

INF, NAN = float("inf"), float("nan")
RTOL = {np.float16: 2e-3, np.float32: 2e-6, np.float64: 1e-12, tf.bfloat16.as_numpy_dtype: 1.6e-2}


def _xla(fn):
    return tf.function(fn, jit_compile=True)


def _np(x):
    if x is None:
        return None
    if isinstance(x, tf.IndexedSlices):
        return (x.values.numpy(), x.indices.numpy())
    return x.numpy()


def _assert_same(got, want, rtol):
    got, want = _np(got), _np(want)
    if want is None:
        assert got is None
        return
    if isinstance(want, tuple):
        np.testing.assert_array_equal(got[1], want[1])
        got, want = got[0], want[0]
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(
        got.astype(np.float64), want.astype(np.float64), rtol=rtol, atol=1e-30
    )


def _op_types(fn, *args):
    graph = tf.function(fn).get_concrete_function(*args).graph
    return {op.type for op in graph.get_operations()}


def test_clip_in_a_jit_compiled_function_compiles_and_runs():
    """What failed before: 'Detected unsupported operations when trying to
    compile graph ... MonolithClipByGlobalNormFused'."""
    x = tf.constant([3.0, 4.0])
    clipped, norm = _xla(lambda t: clip_ops.clip_by_global_norm([t], 1.0))(x)
    np.testing.assert_allclose(clipped[0].numpy(), [0.6, 0.8], rtol=1e-6)
    assert norm.numpy() == pytest.approx(5.0)
    assert _xla(lambda t: clip_ops.global_norm([t]))(x).numpy() == pytest.approx(5.0)


def test_outside_xla_the_kernels_are_still_used():
    x = tf.constant([3.0, 4.0])
    assert "MonolithClipByGlobalNormFused" in _op_types(
        lambda t: clip_ops.clip_by_global_norm([t], 1.0), x
    )
    assert "GlobalL2Reduce" in _op_types(lambda t: clip_ops.global_norm([t]), x)


def test_in_xla_no_kernel_of_the_library_is_used():
    x = tf.constant([3.0, 4.0])
    f = _xla(lambda t: (clip_ops.clip_by_global_norm([t, t * 2], 1.0), clip_ops.global_norm([t])))
    types = {op.type for op in f.get_concrete_function(x).graph.get_operations()}
    assert not types & {
        "GlobalL2Reduce",
        "MonolithClipByGlobalNorm",
        "MonolithClipByGlobalNormFused",
    }


def test_a_function_nested_in_a_jit_compiled_one_is_detected():
    """The XLA context is that of an outer graph: a plain tf.function called
    inside a jit-compiled one is compiled by XLA too."""
    inner = tf.function(lambda t: clip_ops.clip_by_global_norm([t], 1.0))
    out, norm = _xla(lambda t: inner(t))(tf.constant([3.0, 4.0]))
    np.testing.assert_allclose(out[0].numpy(), [0.6, 0.8], rtol=1e-6)


@pytest.mark.parametrize("dtype", list(RTOL), ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("scale", [0.01, 3.0], ids=["below", "above"])
def test_same_results_as_the_kernels(dtype, scale):
    rng = np.random.default_rng(11)
    shapes = [(3, 5), (0,), (17,), (4, 1, 6), (), (200,)]
    ts = [tf.constant((rng.standard_normal(s) * scale).astype(dtype)) for s in shapes]

    def both(*xs):
        return clip_ops.clip_by_global_norm(list(xs), 5.0), clip_ops.global_norm(list(xs))

    (want, want_norm), want_gnorm = both(*ts)
    (got, norm), gnorm = _xla(both)(*ts)
    rtol = RTOL[dtype]
    _assert_same(norm, want_norm, rtol)
    _assert_same(gnorm, want_gnorm, rtol)
    for g, w in zip(got, want):
        _assert_same(g, w, rtol)
    if scale < 1:  # below clip_norm the inputs pass through, bitwise
        for g, t in zip(got, ts):
            assert g.numpy().tobytes() == t.numpy().tobytes()


@pytest.mark.parametrize("bad", [INF, -INF, NAN])
def test_a_non_finite_norm_gives_nan_everywhere(bad):
    ts = [tf.constant([1.0, bad]), tf.constant([2.0, 3.0])]
    got, norm = _xla(lambda a, b: clip_ops.clip_by_global_norm([a, b], 4.0))(*ts)
    assert all(np.isnan(g.numpy()).all() for g in got)
    assert not np.isfinite(norm.numpy())


def test_float16_accumulates_in_float32():
    x = tf.constant([300.0, 400.0], tf.float16)
    (out,), norm = _xla(lambda t: clip_ops.clip_by_global_norm([t], 1.0))(x)
    assert norm.dtype == tf.float16 and norm.numpy() == 500.0
    np.testing.assert_allclose(out.numpy().astype(np.float32), [0.6, 0.8], rtol=1e-3)
    assert _xla(lambda t: clip_ops.global_norm([t]))(x).numpy() == 500.0


def test_mixed_dtypes_none_and_indexed_slices():
    rng = np.random.default_rng(5)
    values = tf.constant(rng.standard_normal((2, 3)).astype(np.float32))
    indices = tf.constant([0, 4])
    ts = [
        tf.constant(rng.standard_normal(40).astype(np.float16)),
        tf.constant(rng.standard_normal(9).astype(np.float64)),
        tf.constant(rng.standard_normal(7).astype(tf.bfloat16.as_numpy_dtype)),
    ]

    def clip(a, b, c, v, i):
        slices = tf.IndexedSlices(v, i, tf.constant([5, 3]))
        return clip_ops.clip_by_global_norm([a, None, slices, b, c], 1.5)

    want, want_norm = clip(*ts, values, indices)
    got, norm = _xla(clip)(*ts, values, indices)
    assert norm.dtype == tf.float64
    _assert_same(norm, want_norm, 1e-6)
    assert got[1] is None and isinstance(got[2], tf.IndexedSlices)
    for g, w, dtype in zip(
        got, want, [np.float16, None, np.float32, np.float64, tf.bfloat16.as_numpy_dtype]
    ):
        _assert_same(g, w, RTOL.get(dtype, 0))


def test_use_norm_and_a_tensor_clip_norm():
    x = tf.constant([1.0, -2.0, 3.0])
    f = _xla(lambda t, c, n: clip_ops.clip_by_global_norm([t], c, use_norm=n))
    (out,), norm = f(x, tf.constant(2.0), tf.constant(4.0))
    np.testing.assert_allclose(out.numpy(), x.numpy() * 0.5, rtol=1e-6)
    assert norm.numpy() == 4.0
    (out,), _ = f(x, tf.constant(5.0), tf.constant(4.0))
    assert out.numpy().tobytes() == x.numpy().tobytes()
    g = _xla(lambda t, c: clip_ops.clip_by_global_norm([t], c))
    (out,), norm = g(x, tf.constant(1.0))
    np.testing.assert_allclose(out.numpy(), x.numpy() / np.sqrt(14.0), rtol=1e-6)


def test_empty_list():
    out, norm = _xla(lambda: clip_ops.clip_by_global_norm([], 1.0))()
    assert out == [] and norm.numpy() == 0.0


def test_a_static_clip_norm_is_still_checked():
    with pytest.raises(ValueError, match="clip_norm should be positive"):
        _xla(lambda t: clip_ops.clip_by_global_norm([t], -1.0))(tf.constant([1.0]))


def test_gradients_match_the_kernels():
    x = tf.constant([3.0, -4.0, 1.0])
    w = tf.constant([0.5, 2.0, -1.0])

    def grads(t):
        with tf.GradientTape() as tape:
            tape.watch(t)
            (out,), norm = clip_ops.clip_by_global_norm([t], 2.0)
            y = tf.reduce_sum(out * w) + norm
        return tape.gradient(y, t)

    np.testing.assert_allclose(_xla(grads)(x).numpy(), grads(x).numpy(), rtol=1e-6)


def test_keras_model_with_clip_in_train_step_fits_with_jit_compile():
    """A keras.Model whose train_step clips with clip_ops, compiled with
    jit_compile=True: model.fit compiles the step with XLA."""
    keras = tf.keras

    class Clipped(keras.Model):
        def train_step(self, data):
            x, y = data
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(self(x, training=True) - y))
            grads = tape.gradient(loss, self.trainable_variables)
            grads, _ = clip_ops.clip_by_global_norm(grads, 0.1)
            self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
            return {"loss": loss}

    def model(cls):
        inputs = keras.Input((3,))
        m = cls(inputs, keras.layers.Dense(1, kernel_initializer="ones")(inputs))
        m.compile(optimizer=keras.optimizers.SGD(0.5), jit_compile=True)
        return m

    x = np.arange(24, dtype=np.float32).reshape(8, 3) / 10
    y = np.ones((8, 1), np.float32)
    ours = model(Clipped)
    ours.fit(x, y, batch_size=4, epochs=2, verbose=0, shuffle=False)

    # The same steps with TF's clip, step by step.
    ref = model(keras.Model)
    opt = keras.optimizers.SGD(0.5)
    for _ in range(2):
        for i in range(0, 8, 4):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(ref(x[i : i + 4]) - y[i : i + 4]))
            grads = tape.gradient(loss, ref.trainable_variables)
            grads, _ = tf.clip_by_global_norm(grads, 0.1)
            opt.apply_gradients(zip(grads, ref.trainable_variables))
    for a, b in zip(ours.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5)
