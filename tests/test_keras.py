# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""monolith_ops.keras against Keras' own global_clipnorm.

Keras 3 (TF 2.16+): GlobalNormClipOptimizer. Keras 2 (the tf_keras package,
or tf.keras of TF 2.15): with_global_norm_clipping and
GlobalNormClipTransformer. Each trains a tiny model a few steps with ours and
with the same optimizer given global_clipnorm, and compares the weights.
"""

import os

import numpy as np
import pytest
import tensorflow as tf
from conftest import (
    K3,
    keras_version,
    needs_keras3,
    run_python,
    tf_keras_or_fail,
)

from monolith_ops import keras as mk

CLIP = 0.05  # small enough that every step of these models is clipped


def _data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]], np.float32) + 1).astype(np.float32)
    return x, y


def _max_diff(a, b):
    return max(np.abs(np.float64(p) - np.float64(q)).max() for p, q in zip(a, b))


@pytest.fixture
def policy_keras3(request):
    yield
    if K3 is not None:
        K3.mixed_precision.set_global_policy("float32")


# --- Keras 3 -------------------------------------------------------------------


def _k3_model():
    K3.utils.set_random_seed(1)
    return K3.Sequential(
        [K3.Input((3,)), K3.layers.Dense(8, activation="tanh"), K3.layers.Dense(1)]
    )


def _k3_fit(optimizer, jit_compile, epochs=3):
    x, y = _data()
    model = _k3_model()
    model.compile(optimizer=optimizer, loss="mse", jit_compile=jit_compile)
    model.fit(x, y, batch_size=8, epochs=epochs, verbose=0, shuffle=False)
    return model


@needs_keras3
@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
@pytest.mark.parametrize("jit_compile", ["auto", True, False], ids=str)
@pytest.mark.slow
def test_keras3_fit_matches_global_clipnorm(jit_compile, policy, policy_keras3):
    K3.mixed_precision.set_global_policy(policy)
    ours = _k3_fit(mk.GlobalNormClipOptimizer(K3.optimizers.Adam(0.01), CLIP), jit_compile)
    ref = _k3_fit(K3.optimizers.Adam(0.01, global_clipnorm=CLIP), jit_compile)
    plain = _k3_fit(K3.optimizers.Adam(0.01), jit_compile)
    if policy == "mixed_float16":  # compile wrapped both in a loss scale optimizer
        assert isinstance(ours.optimizer, K3.optimizers.LossScaleOptimizer)
        assert isinstance(ours.optimizer.inner_optimizer, mk.GlobalNormClipOptimizer)
    # (A loss scale optimizer skips the steps whose scaled gradients overflow.)
    assert int(ours.optimizer.iterations) == int(ref.optimizer.iterations) >= 4
    assert _max_diff(ours.get_weights(), ref.get_weights()) < 1e-6
    # The clip matters: without it the weights are elsewhere.
    assert _max_diff(plain.get_weights(), ref.get_weights()) > 1e-3


@needs_keras3
@pytest.mark.parametrize("jit_compile", [None, False, True], ids=str)
@pytest.mark.slow
def test_keras3_custom_loop_with_apply_gradients(jit_compile):
    x, y = _data()

    def train(optimizer):
        model = _k3_model()

        def step(xb, yb):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(model(xb) - yb))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))

        if jit_compile is not None:
            step = tf.function(step, jit_compile=jit_compile)
        for i in range(4):
            step(x[i * 4 : (i + 1) * 4], y[i * 4 : (i + 1) * 4])
        return model.get_weights()

    ours_opt = mk.GlobalNormClipOptimizer(K3.optimizers.SGD(0.1, momentum=0.9), CLIP)
    ours = train(ours_opt)
    ref = train(K3.optimizers.SGD(0.1, momentum=0.9, global_clipnorm=CLIP))
    assert _max_diff(ours, ref) < 1e-6
    assert int(ours_opt.iterations) == 4


# Optimizers whose update is linear in the gradient (SGD) and not (the
# others): for these a repeated index must count once, its rows summed.
K3_OPTIMIZERS = {
    "SGD": lambda **kw: K3.optimizers.SGD(0.5, **kw),
    "Adam": lambda **kw: K3.optimizers.Adam(0.01, **kw),
    "Adagrad": lambda **kw: K3.optimizers.Adagrad(0.1, **kw),
    "RMSprop": lambda **kw: K3.optimizers.RMSprop(0.01, **kw),
}


@needs_keras3
@pytest.mark.parametrize("optimizer", sorted(K3_OPTIMIZERS))
@pytest.mark.parametrize("jit_compile", [True, False], ids=str)
@pytest.mark.slow
def test_keras3_embedding_with_repeated_ids(jit_compile, optimizer):
    """An Embedding's gradient is IndexedSlices whose ids repeat within a
    batch (10 ids, 32 lookups a batch): the updates are those of
    global_clipnorm, which sums the rows of an id."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 10, (16, 4)).astype(np.int32)
    y = rng.standard_normal((16, 1)).astype(np.float32)
    make = K3_OPTIMIZERS[optimizer]

    def fit(opt):
        K3.utils.set_random_seed(1)
        model = K3.Sequential(
            [
                K3.Input((4,), dtype="int32"),
                K3.layers.Embedding(10, 6),
                K3.layers.Flatten(),
                K3.layers.Dense(1),
            ]
        )
        model.compile(optimizer=opt, loss="mse", jit_compile=jit_compile)
        model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
        return model.get_weights()

    ours = fit(mk.GlobalNormClipOptimizer(make(), CLIP))
    ref = fit(make(global_clipnorm=CLIP))
    plain = fit(make())
    assert _max_diff(ours, ref) < 1e-6
    assert _max_diff(plain, ref) > 1e-3


@needs_keras3
@pytest.mark.parametrize("optimizer", sorted(K3_OPTIMIZERS))
@pytest.mark.parametrize("jit_compile", [None, True, False], ids=str)
def test_keras3_one_step_on_a_repeated_index(jit_compile, optimizer):
    """Two rows of index 0, clipped from norm sqrt(2) to 1: one update."""
    make = K3_OPTIMIZERS[optimizer]

    def step(opt):
        v = K3.Variable(np.zeros((3, 2), np.float32))
        opt.build([v])

        def apply():
            g = tf.IndexedSlices(
                tf.constant([[1.0, 0.0], [1.0, 0.0]]), tf.constant([0, 0]), tf.constant([3, 2])
            )
            opt.apply([g], [v])

        if jit_compile is None:
            apply()
        else:
            tf.function(apply, jit_compile=jit_compile)()
        return v.numpy()

    ours = step(mk.GlobalNormClipOptimizer(make(), 1.0))
    ref = step(make(global_clipnorm=1.0))
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-7)
    assert ours[0, 0] != 0 and (ours[1:] == 0).all()


@needs_keras3
def test_keras3_below_clip_norm_is_the_inner_optimizer():
    x, y = _data()
    ours = _k3_fit(mk.GlobalNormClipOptimizer(K3.optimizers.SGD(0.01), 1e6), False)
    ref = _k3_fit(K3.optimizers.SGD(0.01), False)
    assert _max_diff(ours.get_weights(), ref.get_weights()) == 0


@needs_keras3
def test_keras3_loss_scale_optimizer_skips_non_finite_steps():
    """Inside LossScaleOptimizer: gradients are unscaled, then clipped; a step
    with a non-finite gradient is skipped and the scale halved, as with
    Keras' global_clipnorm."""

    def run(inner):
        v = K3.Variable(np.array([1.0, 2.0], np.float32))
        opt = K3.optimizers.LossScaleOptimizer(inner, initial_scale=4.0)
        opt.apply([tf.constant([3.0, 4.0]) * 4.0], [v])  # clipped step
        after_first = v.numpy().copy()
        opt.apply([tf.constant([np.inf, 1.0])], [v])  # skipped
        assert np.array_equal(v.numpy(), after_first)
        return v.numpy(), float(opt.dynamic_scale.numpy())

    ours = run(mk.GlobalNormClipOptimizer(K3.optimizers.SGD(1.0), 1.0))
    ref = run(K3.optimizers.SGD(1.0, global_clipnorm=1.0))
    np.testing.assert_allclose(ours[0], [1.0 - 0.6, 2.0 - 0.8], rtol=1e-6)
    np.testing.assert_allclose(ours[0], ref[0], rtol=1e-7)
    assert ours[1] == ref[1] == 2.0


@needs_keras3
def test_keras3_loss_scale_factor_is_unscaled_before_the_clip():
    v = K3.Variable(np.array([0.0, 0.0], np.float32))
    inner = K3.optimizers.SGD(1.0, loss_scale_factor=8.0)
    opt = mk.GlobalNormClipOptimizer(inner, 1.0)
    assert opt.loss_scale_factor == 8.0 and inner.loss_scale_factor is None
    opt.apply([tf.constant([3.0, 4.0]) * 8.0 / 10.0], [v])  # norm 0.5 unscaled
    np.testing.assert_allclose(v.numpy(), [-0.3, -0.4], rtol=1e-6)


@needs_keras3
def test_keras3_save_and_load(tmp_path):
    ours = _k3_fit(mk.GlobalNormClipOptimizer(K3.optimizers.Adam(0.01), CLIP), False, epochs=1)
    path = str(tmp_path / "model.keras")
    ours.save(path)
    loaded = K3.models.load_model(path)
    opt = loaded.optimizer
    assert isinstance(opt, mk.GlobalNormClipOptimizer) and opt.clip_norm == CLIP
    assert isinstance(opt.inner_optimizer, K3.optimizers.Adam)
    assert float(opt.learning_rate.numpy()) == pytest.approx(0.01)
    assert int(opt.iterations) == 2
    assert (
        _max_diff([v.numpy() for v in opt.variables], [v.numpy() for v in ours.optimizer.variables])
        == 0
    )
    # Both continue the same way.
    x, y = _data()
    for model in (ours, loaded):
        model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
    assert _max_diff(ours.get_weights(), loaded.get_weights()) == 0
    config = opt.get_config()
    again = mk.GlobalNormClipOptimizer.from_config(config)
    assert again.clip_norm == CLIP and again.get_config() == config


@needs_keras3
def test_keras3_bad_arguments():
    sgd = K3.optimizers.SGD
    with pytest.raises(TypeError, match="inner_optimizer"):
        mk.GlobalNormClipOptimizer("adam", 1.0)
    with pytest.raises(TypeError, match="clip_norm"):
        mk.GlobalNormClipOptimizer(sgd(), "1.0")
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="clip_norm"):
            mk.GlobalNormClipOptimizer(sgd(), bad)
    with pytest.raises(ValueError, match="global_clipnorm"):
        mk.GlobalNormClipOptimizer(sgd(global_clipnorm=1.0), 1.0)
    with pytest.raises(ValueError, match="gradient_accumulation_steps"):
        mk.GlobalNormClipOptimizer(sgd(gradient_accumulation_steps=2), 1.0)
    # 0 and inf in float32, the dtype the clip of float32 weights uses.
    for bad in (1e-300, 1e39):
        with pytest.raises(ValueError, match="clip_norm .*in float32"):
            mk.GlobalNormClipOptimizer(sgd(), bad)


@needs_keras3
def test_keras3_loss_scale_optimizer_inside_is_refused():
    """Its loss scale would never reach the loss, yet divide the gradients."""
    inner = K3.optimizers.LossScaleOptimizer(K3.optimizers.SGD(0.1))
    with pytest.raises(ValueError, match=r"LossScaleOptimizer\(GlobalNormClipOptimizer"):
        mk.GlobalNormClipOptimizer(inner, 0.5)
    # The other way round is what compile makes under mixed_float16.
    outer = K3.optimizers.LossScaleOptimizer(
        mk.GlobalNormClipOptimizer(K3.optimizers.SGD(0.1), 0.5)
    )
    assert isinstance(outer.inner_optimizer, mk.GlobalNormClipOptimizer)


def test_keras3_class_is_missing_with_a_clear_message_without_keras3():
    if K3 is not None:
        assert mk.GlobalNormClipOptimizer.__module__ == "monolith_ops.keras"
        return
    with pytest.raises(AttributeError, match="needs Keras 3"):
        mk.GlobalNormClipOptimizer  # noqa: B018 (the access raises)


# --- Keras 2 -------------------------------------------------------------------


def _k2_fit(k2, optimizer, jit_compile, epochs=3):
    x, y = _data()
    k2.utils.set_random_seed(1)
    model = k2.Sequential(
        [k2.layers.Dense(8, activation="tanh", input_shape=(3,)), k2.layers.Dense(1)]
    )
    model.compile(optimizer=optimizer, loss="mse", jit_compile=jit_compile)
    model.fit(x, y, batch_size=8, epochs=epochs, verbose=0, shuffle=False)
    return model


def _k2_optimizers(k2, kind):
    """(ours, Keras' global_clipnorm, unclipped) for one kind of optimizer
    (SGD with momentum: Adam would hide much of what the clip does, since it
    is invariant to a constant scale of the gradients)."""
    if kind == "legacy":
        sgd = k2.optimizers.legacy.SGD
        return (
            sgd(0.1, momentum=0.9, gradient_transformers=[mk.GlobalNormClipTransformer(CLIP)]),
            sgd(0.1, momentum=0.9, global_clipnorm=CLIP),
            sgd(0.1, momentum=0.9),
        )
    sgd = k2.optimizers.SGD
    return (
        mk.with_global_norm_clipping(sgd)(CLIP, learning_rate=0.1, momentum=0.9),
        sgd(0.1, momentum=0.9, global_clipnorm=CLIP),
        sgd(0.1, momentum=0.9),
    )


@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
@pytest.mark.parametrize("jit_compile", [True, False], ids=str)
@pytest.mark.parametrize("kind", ["current", "legacy"])
@pytest.mark.slow
def test_keras2_fit_matches_global_clipnorm(k2, kind, jit_compile, policy):
    k2.mixed_precision.set_global_policy(policy)
    ours, ref, plain = (_k2_fit(k2, opt, jit_compile) for opt in _k2_optimizers(k2, kind))
    assert int(ours.optimizer.iterations) == int(ref.optimizer.iterations) == 6
    assert _max_diff(ours.get_weights(), ref.get_weights()) < 1e-6
    assert _max_diff(plain.get_weights(), ref.get_weights()) > 1e-3


@pytest.mark.parametrize("kind", ["current", "legacy"])
def test_keras2_custom_loop(k2, kind):
    x, y = _data()

    def train(optimizer):
        k2.utils.set_random_seed(1)
        model = k2.Sequential([k2.layers.Dense(1, input_shape=(3,))])

        @tf.function
        def step(xb, yb):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(model(xb) - yb))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))

        for i in range(4):
            step(x[i * 4 : (i + 1) * 4], y[i * 4 : (i + 1) * 4])
        return model.get_weights()

    ours, ref, _ = _k2_optimizers(k2, kind)
    assert _max_diff(train(ours), train(ref)) < 1e-6


LEGACY_KERAS_SCRIPT = """
import numpy as np, tensorflow as tf
from monolith_ops import keras as mk
assert tf.keras.__name__.startswith("tf_keras"), tf.keras.__name__
rng = np.random.default_rng(0)
x = rng.standard_normal((16, 3)).astype("float32")
y = rng.standard_normal((16, 1)).astype("float32")
weights = []
for opt in (mk.with_global_norm_clipping(tf.keras.optimizers.SGD)(0.05, learning_rate=0.1),
            tf.keras.optimizers.SGD(0.1, global_clipnorm=0.05),
            tf.keras.optimizers.SGD(0.1)):
    tf.keras.utils.set_random_seed(1)
    model = tf.keras.Sequential([tf.keras.layers.Dense(1, input_shape=(3,))])
    model.compile(optimizer=opt, loss="mse")
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
    weights.append(model.get_weights())
diff = lambda a, b: max(np.abs(p - q).max() for p, q in zip(a, b))
print(diff(weights[0], weights[1]), diff(weights[2], weights[1]))
"""


@pytest.mark.slow
def test_tf_keras_through_tf_use_legacy_keras(tmp_path):
    """With TF_USE_LEGACY_KERAS=1 tf.keras is tf_keras (set before
    TensorFlow is imported, so in a fresh interpreter)."""

    if not keras_version().startswith("3"):
        pytest.skip("TF_USE_LEGACY_KERAS is for TensorFlow 2.16+: tf.keras is already Keras 2 here")
    if tf_keras_or_fail() is None:
        pytest.skip("tf_keras is not installed (TF_USE_LEGACY_KERAS needs it)")
    # (Not from the source tree, whose monolith_ops has no built library.)
    proc = run_python(
        ["-c", LEGACY_KERAS_SCRIPT], env={"TF_USE_LEGACY_KERAS": "1"}, cwd=str(tmp_path)
    )
    ours_vs_keras, plain_vs_keras = map(float, proc.stdout.split()[-2:])
    assert ours_vs_keras < 1e-6 and plain_vs_keras > 1e-3


def test_keras2_current_optimizer_saves_and_loads(k2, tmp_path):
    ours = _k2_fit(
        k2,
        mk.with_global_norm_clipping(k2.optimizers.Adam)(CLIP, learning_rate=0.01),
        False,
        epochs=1,
    )
    path = str(tmp_path / "model.keras")
    ours.save(path)
    loaded = k2.models.load_model(path)
    assert type(loaded.optimizer) is type(ours.optimizer)
    assert loaded.optimizer.clip_norm == CLIP
    x, y = _data()
    for model in (ours, loaded):
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    assert _max_diff(ours.get_weights(), loaded.get_weights()) < 1e-7


def test_keras2_bad_arguments(k2):
    with pytest.raises(TypeError, match="optimizer_class"):
        mk.with_global_norm_clipping(k2.optimizers.legacy.Adam)
    with pytest.raises(TypeError, match="optimizer_class"):
        mk.with_global_norm_clipping("Adam")
    clipped = mk.with_global_norm_clipping(k2.optimizers.SGD)
    assert mk.with_global_norm_clipping(k2.optimizers.SGD) is clipped
    with pytest.raises(ValueError, match="clip_norm"):
        clipped(-1.0)
    with pytest.raises(ValueError, match="global_clipnorm"):
        clipped(1.0, global_clipnorm=2.0)
    with pytest.raises(TypeError, match="clip_norm"):
        mk.GlobalNormClipTransformer(None)
    with pytest.raises(ValueError, match="clip_norm"):
        mk.GlobalNormClipTransformer(float("nan"))
    for bad in (1e-300, 1e39):  # 0 and inf in float32
        with pytest.raises(ValueError, match="clip_norm .*in float32"):
            clipped(bad)
        with pytest.raises(ValueError, match="clip_norm .*in float32"):
            mk.GlobalNormClipTransformer(bad)


@pytest.mark.parametrize("kind", ["current", "legacy"])
def test_keras2_adam_on_an_embedding_with_repeated_ids(k2, kind):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 10, (16, 4)).astype(np.int32)
    y = rng.standard_normal((16, 1)).astype(np.float32)

    def fit(opt):
        k2.utils.set_random_seed(1)
        model = k2.Sequential(
            [k2.layers.Embedding(10, 6, input_length=4), k2.layers.Flatten(), k2.layers.Dense(1)]
        )
        model.compile(optimizer=opt, loss="mse")
        model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
        return model.get_weights()

    if kind == "legacy":
        adam = k2.optimizers.legacy.Adam
        ours = adam(0.01, gradient_transformers=[mk.GlobalNormClipTransformer(CLIP)])
    else:
        adam = k2.optimizers.Adam
        ours = mk.with_global_norm_clipping(adam)(CLIP, learning_rate=0.01)
    ref = fit(adam(0.01, global_clipnorm=CLIP))
    assert _max_diff(fit(ours), ref) < 1e-6
    assert _max_diff(fit(adam(0.01)), ref) > 1e-3


@needs_keras3
def test_keras2_helpers_refuse_keras3_classes():
    with pytest.raises(TypeError, match="Keras 3"):
        mk.with_global_norm_clipping(K3.optimizers.Adam)


@needs_keras3
@pytest.mark.slow
def test_example_runs():

    script = os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "examples", "keras_fit.py"
    )
    proc = run_python([script, "--epochs", "1"])
    diff = float(proc.stdout.split("largest weight difference:")[1].split()[0])
    assert diff < 1e-5
