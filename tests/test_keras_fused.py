# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""GlobalNormClipOptimizer's fused update (Keras 3): the dense updates of SGD,
Adam, AdamW and Adagrad in one MonolithMultiTensorApplyKeras* op.

The reference is Keras' own optimizer of the same configuration applied to
the gradients clipped by clip_ops.clip_by_global_norm, the update the wrapper
made before it fused them: the fused op must give the same variables and
slots, bitwise, except where the tests below state a bound and why.
"""

import numpy as np
import pytest
import tensorflow as tf

from monolith_ops import clip_ops

keras = pytest.importorskip("keras")
if int(keras.__version__.split(".")[0]) < 3:
    pytest.skip("Keras 3 does not exist with TensorFlow 2.15", allow_module_level=True)

from monolith_ops.keras import GlobalNormClipOptimizer  # noqa: E402

OPT = keras.optimizers
SHAPES = [(3, 4), (5,), (7, 2), (1,)]

CONFIGS = {
    "sgd": lambda: OPT.SGD(0.1),
    "momentum": lambda: OPT.SGD(0.1, momentum=0.9),
    "nesterov": lambda: OPT.SGD(0.1, momentum=0.9, nesterov=True),
    "sgd_weight_decay": lambda: OPT.SGD(0.1, weight_decay=0.05),
    "adam": lambda: OPT.Adam(0.01),
    "adam_schedule": lambda: OPT.Adam(OPT.schedules.ExponentialDecay(0.01, 2, 0.5)),
    "adamw": lambda: OPT.AdamW(0.01, weight_decay=0.1),
    "adagrad": lambda: OPT.Adagrad(0.1),
}
FUSED_OPS = {
    "sgd": "KerasGradientDescent",
    "momentum": "KerasMomentum",
    "nesterov": "KerasMomentum",
    "sgd_weight_decay": "KerasGradientDescent",
    "adam": "KerasAdam",
    "adam_schedule": "KerasAdam",
    "adamw": "KerasAdam",
    "adagrad": "KerasAdagrad",
}


def _data(dtype, steps, scale):
    rng = np.random.default_rng(7)
    init = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    grads = [
        [(rng.standard_normal(s) * scale * (k + 1)).astype(dtype) for s in SHAPES]
        for k in range(steps)
    ]
    return init, grads


def _train(make, fused, dtype, mode, clip_norm, steps=3, scale=1.0):
    """(variables, optimizer variables, traced op types) after `steps`."""
    init, grads = _data(dtype, steps, scale)
    variables = [keras.Variable(x) for x in init]
    inner = make()
    if fused:
        opt = GlobalNormClipOptimizer(inner, clip_norm)

        def step(gs):
            opt.apply_gradients(zip(gs, variables))

    else:
        opt = inner

        def step(gs):
            clipped, _ = clip_ops.clip_by_global_norm(list(gs), clip_norm)
            opt.apply_gradients(zip(clipped, variables))

    op_types = set()
    if mode == "function":
        step = tf.function(step)
        graph = step.get_concrete_function([tf.TensorSpec(s, dtype) for s in SHAPES]).graph
        op_types = {op.type for op in graph.get_operations()}
    for gs in grads:
        step([tf.constant(g) for g in gs])
    return [v.numpy() for v in variables], [v.numpy() for v in inner.variables], op_types


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


@pytest.mark.parametrize("clip_norm", [0.5, 1e6], ids=["clipping", "not_clipping"])
@pytest.mark.parametrize("mode", ["eager", "function"])
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_fused_update_equals_keras_on_clipped_gradients(config, dtype, mode, clip_norm):
    make = CONFIGS[config]
    ours, ours_slots, op_types = _train(make, True, dtype, mode, clip_norm)
    ref, ref_slots, _ = _train(make, False, dtype, mode, clip_norm)
    if mode == "function":
        assert f"MonolithMultiTensorApply{FUSED_OPS[config]}" in op_types
    if config == "adagrad" and mode == "function":
        # Grappler rewrites Keras' lr * g / sqrt(a + eps) in a tf.function
        # into a multiplication by TF's Rsqrt, an approximation (one Newton
        # step) whose last bits depend on the CPU; the op divides by the
        # correctly rounded square root, as eager Keras does.
        _assert_within(ours + ours_slots, ref + ref_slots, 4, dtype)
    elif "weight_decay" in config and mode == "eager":
        # Eager Keras decays by (var * wd) * lr; in a tf.function Grappler
        # folds it into var * (wd * lr), the op's form (the function case is
        # bitwise).
        _assert_within(ours + ours_slots, ref + ref_slots, 2, dtype)
    else:
        _assert_bitwise(ours + ours_slots, ref + ref_slots)


def test_the_bound_catches_a_wrong_learning_rate():
    """The bound of the two inexact cases is tight enough to fail for a
    learning rate off by 0.1%."""
    ours, _, _ = _train(CONFIGS["adagrad"], True, "float32", "function", 0.5)
    wrong, _, _ = _train(lambda: OPT.Adagrad(0.1 * 1.001), False, "float32", "function", 0.5)
    with pytest.raises(AssertionError):
        _assert_within(ours, wrong, 4, "float32")


@pytest.mark.parametrize(
    "make",
    [
        lambda: OPT.Adam(0.01, amsgrad=True),
        lambda: OPT.Adam(0.01, use_ema=True),
        lambda: OPT.RMSprop(0.01),
        lambda: type("MyAdam", (OPT.Adam,), {})(0.01),
    ],
    ids=["amsgrad", "ema", "rmsprop", "subclass"],
)
def test_other_optimizers_take_keras_path_with_the_same_result(make):
    ours, ours_slots, op_types = _train(make, True, "float32", "function", 0.5)
    ref, ref_slots, _ = _train(make, False, "float32", "function", 0.5)
    assert not any(t.startswith("MonolithMultiTensorApply") for t in op_types)
    _assert_bitwise(ours + ours_slots, ref + ref_slots)


def test_xla_takes_keras_path():
    variables = [keras.Variable(np.ones(s, "float32")) for s in SHAPES]
    opt = GlobalNormClipOptimizer(OPT.Adam(0.01), 0.5)

    @tf.function(jit_compile=True)
    def step(gs):
        opt.apply_gradients(zip(gs, variables))

    grads = [tf.ones(s) for s in SHAPES]
    step(grads)
    graph = step.get_concrete_function([tf.TensorSpec(s) for s in SHAPES]).graph
    assert not any(op.type.startswith("MonolithMultiTensor") for op in graph.get_operations())
    assert int(opt.iterations.numpy()) == 1


def test_mixed_gradients_none_sparse_constraint_decay_exclusion_and_dtypes():
    """One step over: a None gradient, an embedding's IndexedSlices with a
    repeated id (Keras' path, clipped by the same norm), a constrained
    variable, a float64 variable (its own op) and a variable excluded from
    AdamW's weight decay (an op without decay)."""

    def run(fused):
        rng = np.random.default_rng(3)
        dense = keras.Variable(rng.standard_normal((4, 3)).astype("float32"), name="dense")
        bias = keras.Variable(rng.standard_normal((3,)).astype("float32"), name="bias")
        table = keras.Variable(rng.standard_normal((6, 2)).astype("float32"), name="table")
        unused = keras.Variable(np.zeros(2, "float32"), name="unused")
        wide = keras.Variable(rng.standard_normal((5,)), name="wide")  # float64
        kept = keras.Variable(
            rng.standard_normal((2, 2)).astype("float32"),
            name="kept",
            constraint=keras.constraints.NonNeg(),
        )
        variables = [dense, bias, table, unused, wide, kept]
        inner = OPT.AdamW(0.05, weight_decay=0.2)
        inner.exclude_from_weight_decay(var_list=[bias])
        inner.build(variables)
        opt = GlobalNormClipOptimizer(inner, 0.3) if fused else inner
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
    # float32 with decay, float32 without (bias), float64 with decay.
    assert sorted(
        (op.get_attr("T").name, op.get_attr("decay"), len(op.inputs)) for op in fused
    ) == sorted(
        [
            ("float32", True, 4 * 2 + 8),  # dense, kept: var, m, v, grad each
            ("float32", False, 4 + 8),  # bias
            ("float64", True, 4 + 8),  # wide
        ]
    )
    assert np.all(ours[5] >= 0)
    _assert_bitwise(ours, ref)


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
        keras.utils.set_random_seed(5)
        model = keras.Sequential(
            [
                keras.Input((8,)),
                keras.layers.Dense(16, activation="relu"),
                keras.layers.Dense(16, activation="relu"),
                keras.layers.Dense(1),
            ]
        )
        opt = GlobalNormClipOptimizer(inner, 0.05)
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


class KerasPathAdam(OPT.Adam):
    """A subclass, which the wrapper leaves to Keras' path."""


@pytest.mark.parametrize("mode", ["eager", "function", "xla"])
@pytest.mark.parametrize(
    "make",
    [
        lambda: OPT.Adam(0.01),
        lambda: OPT.AdamW(0.01, weight_decay=0.1),
        lambda: OPT.SGD(0.1, momentum=0.9),
        lambda: OPT.Adagrad(0.1),
        lambda: KerasPathAdam(0.01),
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
        variables = [keras.Variable(x) for x in init]
        inner = make()
        opt = GlobalNormClipOptimizer(inner, 0.5, skip_nonfinite=skip)

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


@pytest.mark.slow
def test_skip_nonfinite_is_checked_and_saved(tmp_path):
    with pytest.raises(TypeError, match="skip_nonfinite"):
        GlobalNormClipOptimizer(OPT.Adam(), 1.0, skip_nonfinite="yes")
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(GlobalNormClipOptimizer(OPT.Adam(), 1.0, skip_nonfinite=True), "mse")
    model.fit(np.ones((4, 2), "float32"), np.ones((4, 1), "float32"), verbose=0)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.optimizer.skip_nonfinite is True
