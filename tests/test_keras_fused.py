# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""The Keras wrappers' fused update: the dense updates of SGD, Adam, AdamW and
Adagrad in one MonolithMultiTensorApplyKeras* op, under Keras 3
(GlobalNormClipOptimizer) and Keras 2 (with_global_norm_clipping; tf_keras,
or the tf.keras of TensorFlow 2.15).

The reference is Keras' own optimizer of the same configuration applied to
the gradients clipped by clip_ops.clip_by_global_norm, the update the wrapper
made before it fused them: the fused op must give the same variables and
slots, bitwise, except where the tests below state a bound and why.
"""

import numpy as np
import pytest
import tensorflow as tf
from conftest import K3, needs_keras3

from monolith_ops import clip_ops
from monolith_ops import keras as mk

OPT = K3.optimizers if K3 is not None else None
SHAPES = [(3, 4), (5,), (7, 2), (1,)]

# Each configuration: the optimizer class name and its keyword arguments
# for a keras package.
CONFIGS = {
    "sgd": ("SGD", lambda k: dict(learning_rate=0.1)),
    "momentum": ("SGD", lambda k: dict(learning_rate=0.1, momentum=0.9)),
    "nesterov": ("SGD", lambda k: dict(learning_rate=0.1, momentum=0.9, nesterov=True)),
    "sgd_weight_decay": ("SGD", lambda k: dict(learning_rate=0.1, weight_decay=0.05)),
    "adam": ("Adam", lambda k: dict(learning_rate=0.01)),
    "adam_schedule": (
        "Adam",
        lambda k: dict(learning_rate=k.optimizers.schedules.ExponentialDecay(0.01, 2, 0.5)),
    ),
    "adamw": ("AdamW", lambda k: dict(learning_rate=0.01, weight_decay=0.1)),
    "adagrad": ("Adagrad", lambda k: dict(learning_rate=0.1)),
}
FUSED_OPS = {
    "SGD": "KerasMomentum",
    "Adam": "KerasAdam",
    "AdamW": "KerasAdam",
    "Adagrad": "KerasAdagrad",
}


def _expected_op(keras, config):
    name, kwargs = CONFIGS[config]
    if keras is K3 and name == "SGD" and "momentum" not in kwargs(keras):
        return "MonolithMultiTensorApplyKerasGradientDescent"  # Keras 2 keeps momentums
    return "MonolithMultiTensorApply" + FUSED_OPS[name]


def _data(dtype, steps, scale):
    rng = np.random.default_rng(7)
    init = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    grads = [
        [(rng.standard_normal(s) * scale * (k + 1)).astype(dtype) for s in SHAPES]
        for k in range(steps)
    ]
    return init, grads


def _make(keras, config):
    """(class, kwargs) of a configuration: a CONFIGS key, or (class name or
    a function of the package giving the class, kwargs function)."""
    name, kwargs = CONFIGS[config] if isinstance(config, str) else config
    cls = name(keras) if callable(name) else getattr(keras.optimizers, name)
    return cls, kwargs(keras)


def _train(keras, config, fused, dtype, mode, clip_norm, steps=3):
    """(variables and optimizer variables, traced op types) after `steps`
    of `config` under `keras` (Keras 3 or a Keras 2 package), with the
    wrapper (`fused`) or with the optimizer on clip_ops-clipped gradients."""
    init, grads = _data(dtype, steps, 1.0)
    cls, kwargs = _make(keras, config)
    if keras is K3:
        variables = [keras.Variable(x) for x in init]
        inner = cls(**kwargs)
        opt = mk.GlobalNormClipOptimizer(inner, clip_norm) if fused else inner
    else:
        variables = [tf.Variable(x) for x in init]
        opt = mk.with_global_norm_clipping(cls)(clip_norm, **kwargs) if fused else cls(**kwargs)
        inner = opt

    def step(gs):
        if not fused:
            gs, _ = clip_ops.clip_by_global_norm(list(gs), clip_norm)
        opt.apply_gradients(zip(gs, variables))

    op_types = set()
    if mode == "function":
        step = tf.function(step)
        graph = step.get_concrete_function([tf.TensorSpec(s, dtype) for s in SHAPES]).graph
        op_types = {op.type for op in graph.get_operations()}
    for gs in grads:
        step([tf.constant(g) for g in gs])
    return [v.numpy() for v in variables + list(inner.variables)], op_types


def _assert_within(ours, ref, eps_count, dtype):
    """|ours - ref| <= eps_count machine epsilons times max(1, |ref|)."""
    eps = np.finfo(dtype).eps
    for a, b in zip(ours, ref):
        a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
        bound = eps_count * eps * np.maximum(1.0, np.abs(b64))
        assert np.all(np.abs(a64 - b64) <= bound), np.max(np.abs(a64 - b64) / bound)


def _assert_bitwise(ours, ref):
    for a, b in zip(ours, ref):
        np.testing.assert_array_equal(a, b)


def _check_against_keras(keras, config, dtype, mode, clip_norm):
    ours, op_types = _train(keras, config, True, dtype, mode, clip_norm)
    ref, _ = _train(keras, config, False, dtype, mode, clip_norm)
    if mode == "function":
        assert _expected_op(keras, config) in op_types
    if config == "adagrad" and mode == "function":
        # Grappler rewrites Keras' lr * g / sqrt(a + eps) in a tf.function
        # into a multiplication by TF's Rsqrt, an approximation (one Newton
        # step) whose last bits depend on the CPU; the op divides by the
        # correctly rounded square root, as eager Keras does.
        _assert_within(ours, ref, 4, dtype)
    elif "weight_decay" in config or config == "adamw":
        # Eager Keras decays by (var * wd) * lr; in a tf.function Grappler
        # folds it into var * (wd * lr), the op's form: bitwise there.
        if mode == "eager":
            _assert_within(ours, ref, 2, dtype)
        else:
            _assert_bitwise(ours, ref)
    else:
        _assert_bitwise(ours, ref)


@needs_keras3
@pytest.mark.parametrize("clip_norm", [0.5, 1e6], ids=["clipping", "not_clipping"])
@pytest.mark.parametrize("mode", ["eager", "function"])
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_keras3_fused_update_equals_keras_on_clipped_gradients(config, dtype, mode, clip_norm):
    _check_against_keras(K3, config, dtype, mode, clip_norm)


@pytest.mark.parametrize("clip_norm", [0.5, 1e6], ids=["clipping", "not_clipping"])
@pytest.mark.parametrize("mode", ["eager", "function"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_keras2_fused_update_equals_keras_on_clipped_gradients(k2, config, dtype, mode, clip_norm):
    _check_against_keras(k2, config, dtype, mode, clip_norm)


def test_the_bound_catches_a_wrong_learning_rate(k2):
    """The bound of the inexact cases is tight enough to fail for a
    learning rate off by 0.1%."""
    ours, _ = _train(k2, "adagrad", True, "float32", "function", 0.5)
    wrong = ("Adagrad", lambda k: dict(learning_rate=0.1 * 1.001))
    ref, _ = _train(k2, wrong, False, "float32", "function", 0.5)
    with pytest.raises(AssertionError):
        _assert_within(ours, ref, 4, "float32")


def _subclass(keras):
    return type("MyAdam", (keras.optimizers.Adam,), {})


KERAS_PATH_CONFIGS = {
    "amsgrad": ("Adam", lambda k: dict(learning_rate=0.01, amsgrad=True)),
    "ema": ("Adam", lambda k: dict(learning_rate=0.01, use_ema=True)),
    "rmsprop": ("RMSprop", lambda k: dict(learning_rate=0.01)),
    "subclass": (_subclass, lambda k: dict(learning_rate=0.01)),
}


def _check_keras_path(keras, config):
    ours, op_types = _train(keras, KERAS_PATH_CONFIGS[config], True, "float32", "function", 0.5)
    ref, _ = _train(keras, KERAS_PATH_CONFIGS[config], False, "float32", "function", 0.5)
    assert not any(t.startswith("MonolithMultiTensorApply") for t in op_types)
    _assert_bitwise(ours, ref)


@needs_keras3
@pytest.mark.parametrize("config", sorted(KERAS_PATH_CONFIGS))
def test_keras3_other_optimizers_take_keras_path_with_the_same_result(config):
    _check_keras_path(K3, config)


# (with_global_norm_clipping takes Keras' own classes only, not subclasses)
@pytest.mark.parametrize("config", sorted(set(KERAS_PATH_CONFIGS) - {"subclass"}))
def test_keras2_other_optimizers_take_keras_path_with_the_same_result(k2, config):
    _check_keras_path(k2, config)


@needs_keras3
def test_xla_takes_keras_path():
    variables = [K3.Variable(np.ones(s, "float32")) for s in SHAPES]
    opt = mk.GlobalNormClipOptimizer(OPT.Adam(0.01), 0.5)

    @tf.function(jit_compile=True)
    def step(gs):
        opt.apply_gradients(zip(gs, variables))

    grads = [tf.ones(s) for s in SHAPES]
    step(grads)
    graph = step.get_concrete_function([tf.TensorSpec(s) for s in SHAPES]).graph
    assert not any(op.type.startswith("MonolithMultiTensor") for op in graph.get_operations())
    assert int(opt.iterations.numpy()) == 1


@needs_keras3
def test_mixed_gradients_none_sparse_constraint_decay_exclusion_and_dtypes():
    """Two steps over: a None gradient, an embedding's IndexedSlices with a
    repeated id (clipped by the same norm, its rows summed), a constrained
    variable, a float64 variable (its own op) and a variable excluded from
    AdamW's weight decay (an op without decay)."""

    def run(fused):
        rng = np.random.default_rng(3)
        dense = K3.Variable(rng.standard_normal((4, 3)).astype("float32"), name="dense")
        bias = K3.Variable(rng.standard_normal((3,)).astype("float32"), name="bias")
        table = K3.Variable(rng.standard_normal((6, 2)).astype("float32"), name="table")
        unused = K3.Variable(np.zeros(2, "float32"), name="unused")
        wide = K3.Variable(rng.standard_normal((5,)), name="wide")  # float64
        kept = K3.Variable(
            rng.standard_normal((2, 2)).astype("float32"),
            name="kept",
            constraint=K3.constraints.NonNeg(),
        )
        variables = [dense, bias, table, unused, wide, kept]
        inner = OPT.AdamW(0.05, weight_decay=0.2)
        inner.exclude_from_weight_decay(var_list=[bias])
        inner.build(variables)
        opt = mk.GlobalNormClipOptimizer(inner, 0.3) if fused else inner
        sparse = tf.IndexedSlices(
            tf.constant(rng.standard_normal((3, 2)).astype("float32")),
            tf.constant([4, 1, 4]),
            tf.constant([6, 2]),
        )
        grads = [
            tf.constant(rng.standard_normal((4, 3)).astype("float32")),
            tf.constant(rng.standard_normal((3,)).astype("float32")),
            sparse,
            None,
            tf.constant(rng.standard_normal((5,))),
            tf.constant(rng.standard_normal((2, 2)).astype("float32")),
        ]

        @tf.function
        def step():
            if fused:
                opt.apply_gradients(zip(grads, variables))
                return
            live = [g for g in grads if g is not None]
            clipped, _ = clip_ops.clip_by_global_norm(live, 0.3)
            clipped = iter(clipped)
            gs = [None if g is None else next(clipped) for g in grads]
            # Keras' global_clipnorm (and the wrapper) sum a repeated id.
            gs[2] = tf.IndexedSlices(
                tf.math.unsorted_segment_sum(gs[2].values, [0, 1, 0], 2),
                tf.constant([4, 1]),
                gs[2].dense_shape,
            )
            opt.apply_gradients([(g, v) for g, v in zip(gs, variables) if g is not None])

        step()
        step()
        graph = step.get_concrete_function().graph
        return [v.numpy() for v in variables + list(inner.variables)], graph

    ours, graph = run(True)
    ref, _ = run(False)
    fused = [op for op in graph.get_operations() if op.type == "MonolithMultiTensorApplyKerasAdam"]
    # float32 with decay, float32 without (bias), float64 with decay, and
    # the embedding's IndexedSlices, made dense as Keras' Adam makes them,
    # clipped before (clip False).
    assert sorted(
        (op.get_attr("T").name, op.get_attr("decay"), op.get_attr("clip"), len(op.inputs))
        for op in fused
    ) == sorted(
        [
            ("float32", True, True, 4 * 2 + 8),  # dense, kept: var, m, v, grad each
            ("float32", False, True, 4 + 8),  # bias
            ("float64", True, True, 4 + 8),  # wide
            ("float32", True, False, 4 + 8),  # table
        ]
    )
    assert np.all(ours[5] >= 0)
    _assert_bitwise(ours, ref)


@needs_keras3
@pytest.mark.slow
@pytest.mark.parametrize("jit_compile", [False, True])
def test_model_fit_uses_the_op_and_matches_keras_path(jit_compile, monkeypatch):
    """model.fit with the fused update against the same model whose inner
    optimizer is a subclass (which the wrapper leaves to Keras): bitwise
    equal weights and slots; the op is built into the train function without
    XLA only."""
    from monolith_ops import keras as mk

    built = []
    real = mk._apply_fused
    monkeypatch.setattr(mk, "_apply_fused", lambda *a: built.append(real(*a)) or built[-1])

    class KerasPathAdam(OPT.Adam):
        pass

    def fit(inner):
        built.clear()
        K3.utils.set_random_seed(5)
        model = K3.Sequential(
            [
                K3.Input((8,)),
                K3.layers.Dense(16, activation="relu"),
                K3.layers.Dense(16, activation="relu"),
                K3.layers.Dense(1),
            ]
        )
        opt = mk.GlobalNormClipOptimizer(inner, 0.05)
        model.compile(optimizer=opt, loss="mse", jit_compile=jit_compile)
        rng = np.random.default_rng(0)
        x = rng.standard_normal((64, 8)).astype("float32")
        y = rng.standard_normal((64, 1)).astype("float32")
        model.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False)
        return [w.numpy() for w in model.weights + list(opt.variables)], list(built)

    ours, ours_built = fit(OPT.Adam(0.01))
    ref, ref_built = fit(KerasPathAdam(0.01))
    assert ours_built and all(ours_built) == (not jit_compile)
    assert ref_built and not any(ref_built)
    if jit_compile:
        _assert_within(ours, ref, 4, "float32")
    else:
        _assert_bitwise(ours, ref)


# --- skip_nonfinite ----------------------------------------------------------


def _keras_path_adam(learning_rate):
    """An instance of a subclass, which the wrapper leaves to Keras' path."""

    class KerasPathAdam(OPT.Adam):
        pass

    return KerasPathAdam(learning_rate)


@needs_keras3
@pytest.mark.parametrize("mode", ["eager", "function", "xla"])
@pytest.mark.parametrize(
    "make",
    [
        lambda: OPT.Adam(0.01),
        lambda: OPT.AdamW(0.01, weight_decay=0.1),
        lambda: OPT.SGD(0.1, momentum=0.9),
        lambda: OPT.Adagrad(0.1),
        lambda: _keras_path_adam(0.01),
    ],
    ids=["adam", "adamw", "momentum", "adagrad", "keras_path"],
)
def test_skip_nonfinite_changes_nothing_and_counts(make, mode):
    """Steps 2 and 4 have an inf and a NaN gradient: with skip_nonfinite
    they change no variable, slot or iterations, and are counted; the other
    steps are those of a run that never saw them."""
    init, grads = _data("float32", 5, 1.0)
    grads[1][2][0, 1] = np.inf
    grads[3][0][2, 3] = np.nan

    def train(steps, skip):
        variables = [K3.Variable(x) for x in init]
        inner = make()
        opt = mk.GlobalNormClipOptimizer(inner, 0.5, skip_nonfinite=skip)

        def step(gs):
            opt.apply_gradients(zip(gs, variables))

        if mode != "eager":
            step = tf.function(step, jit_compile=mode == "xla")
        for gs in steps:
            step([tf.constant(g) for g in gs])
        state = [v.numpy() for v in variables + list(inner.variables)]
        return state, opt

    ours, opt = train(grads, True)
    ref, _ = train([grads[k] for k in (0, 2, 4)], False)
    if mode == "xla":
        _assert_within(ours, ref, 4, "float32")
    else:
        _assert_bitwise(ours, ref)
    assert int(opt.skipped_steps.numpy()) == 2
    assert int(opt.iterations.numpy()) == 3
    unskipped, plain = train(grads, False)
    assert plain.skipped_steps is None
    assert all(np.isnan(v).all() for v in unskipped[: len(SHAPES)])


@needs_keras3
@pytest.mark.slow
def test_skip_nonfinite_is_checked_and_saved(tmp_path):
    with pytest.raises(TypeError, match="skip_nonfinite"):
        mk.GlobalNormClipOptimizer(OPT.Adam(), 1.0, skip_nonfinite="yes")
    model = K3.Sequential([K3.Input((2,)), K3.layers.Dense(1)])
    model.compile(mk.GlobalNormClipOptimizer(OPT.Adam(), 1.0, skip_nonfinite=True), "mse")
    model.fit(np.ones((4, 2), "float32"), np.ones((4, 1), "float32"), verbose=0)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = K3.models.load_model(path)
    assert loaded.optimizer.skip_nonfinite is True


# --- cases the fused path leaves to Keras, or checks as Keras does ------------


def _both_ways(step_fn):
    """step_fn(inner, fused) run with Keras 3's Adam wrapped and with a
    subclass (Keras' path); returns the two results."""
    return step_fn(OPT.Adam(0.05), True), step_fn(_keras_path_adam(0.05), False)


@needs_keras3
@pytest.mark.parametrize("mode", ["eager", "function"])
def test_a_variable_passed_twice_is_updated_twice(mode):
    def run(inner, _):
        v = K3.Variable(np.arange(4, dtype="float32"))
        opt = mk.GlobalNormClipOptimizer(inner, 0.5)

        def step():
            opt.apply_gradients([(tf.ones(4), v), (tf.fill([4], 2.0), v)])

        (tf.function(step) if mode == "function" else step)()
        return v.numpy()

    ours, ref = _both_ways(run)
    _assert_bitwise([ours], [ref])
    assert not np.array_equal(ours, np.arange(4, dtype="float32"))


@needs_keras3
def test_weight_decay_exclusion_by_layer_name_as_keras_decides():
    """Keras matches exclude_from_weight_decay(var_names=...) against the
    tf.Variable's full path ("sequential/head/kernel:0")."""

    def run(inner, _):
        inner.weight_decay = 0.5
        inner.exclude_from_weight_decay(var_names=["head"])
        K3.utils.set_random_seed(2)
        model = K3.Sequential(
            [K3.Input((3,)), K3.layers.Dense(4, name="body"), K3.layers.Dense(1, name="head")]
        )
        model.compile(mk.GlobalNormClipOptimizer(inner, 0.1), "mse", jit_compile=False)
        x = np.random.default_rng(0).standard_normal((8, 3)).astype("float32")
        model.fit(x, x[:, :1], verbose=0, epochs=2)
        return model.get_weights()

    ours, ref = _both_ways(run)
    _assert_bitwise(ours, ref)


@needs_keras3
def test_a_gradient_keras_broadcasts_is_left_to_keras():
    def run(inner, _):
        v = K3.Variable(np.zeros(3, "float32"))
        mk.GlobalNormClipOptimizer(inner, 0.5).apply_gradients([(tf.ones([1]), v)])
        return v.numpy()

    ours, ref = _both_ways(run)
    _assert_bitwise([ours], [ref])


@needs_keras3
def test_an_unknown_variable_is_refused_before_anything_changes():
    known = K3.Variable(np.array([1.0, 2.0], "float32"))
    stranger = K3.Variable(np.array([3.0], "float64"))
    opt = mk.GlobalNormClipOptimizer(OPT.Adam(0.1), 0.5)
    opt.build([known])
    with pytest.raises(ValueError, match="[Uu]nknown variable"):
        opt.apply_gradients([(tf.ones(2), known), (tf.ones(1, tf.float64), stranger)])
    np.testing.assert_array_equal(known.numpy(), [1.0, 2.0])
    assert int(opt.iterations.numpy()) == 0


@needs_keras3
@pytest.mark.parametrize("mode", ["eager", "function"])
@pytest.mark.parametrize(
    "config",
    [
        ("SGD", dict(learning_rate=0.1, momentum=0.9)),
        ("SGD", dict(learning_rate=0.1, momentum=0.9, nesterov=True)),
        ("Adam", dict(learning_rate=0.05)),
        ("AdamW", dict(learning_rate=0.05, weight_decay=0.3)),
        ("SGD", dict(learning_rate=0.1)),  # stays sparse: Keras' path
        ("Adagrad", dict(learning_rate=0.1)),  # Keras' path
    ],
    ids=["momentum", "nesterov", "adam", "adamw", "sgd", "adagrad"],
)
def test_embedding_gradients_against_keras_path(config, mode):
    """IndexedSlices with repeated ids over three steps: Adam's and momentum
    SGD's (which Keras makes dense) in the op, bitwise equal to the
    wrapper's Keras path (a subclass of the same class)."""
    name, kwargs = config

    def run(subclass):
        cls = getattr(OPT, name)
        if subclass:
            cls = type("Keras" + name, (cls,), {})
        table = K3.Variable(np.linspace(-1, 1, 12, dtype="float32").reshape(6, 2))
        opt = mk.GlobalNormClipOptimizer(cls(**kwargs), 0.2)
        rng = np.random.default_rng(4)
        steps = [
            tf.IndexedSlices(
                tf.constant(rng.standard_normal((3, 2)).astype("float32")),
                tf.constant(ids),
                tf.constant([6, 2]),
            )
            for ids in ([4, 1, 4], [0, 0, 5], [2, 3, 2])
        ]

        def step(g):
            opt.apply_gradients([(g, table)])

        if mode == "function":
            step = tf.function(step)
        for g in steps:
            step(g)
        return [table.numpy()] + [v.numpy() for v in opt.variables]

    _assert_bitwise(run(False), run(True))
