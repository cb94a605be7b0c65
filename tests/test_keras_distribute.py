# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""Global-norm clipping under tf.distribute.MirroredStrategy on two logical
CPU devices: the clip applies to the gradient summed over the replicas, so a
step equals a single-device step on the whole batch.

The logical devices must be configured before TensorFlow initializes its
devices, which the other test modules have done in the pytest process: each
case runs this file as a script in a fresh interpreter, which prints the
weights it trained as JSON.
"""

import functools
import json
import os
import sys

import numpy as np
import pytest
from conftest import run_python

CLIP = 0.05
STEPS_DATA = 16  # samples; batch 8 (4 per replica), 2 epochs: 4 steps


@functools.cache
def _run(case):
    proc = run_python([os.path.abspath(__file__), case], timeout=600, check=False)
    if proc.returncode == 3:
        pytest.skip(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return {k: [np.array(w, np.float64) for w in v] for k, v in result.items()}


def _max_diff(a, b):
    return max(np.abs(p - q).max() for p, q in zip(a, b))


@pytest.mark.slow
def test_keras3_clips_the_summed_gradient():
    w = _run("keras3")
    # Ours: two replicas step as one device on the whole batch.
    assert _max_diff(w["ours_mirrored"], w["ours_single"]) < 1e-6
    assert _max_diff(w["ours_single"], w["keras_single"]) < 1e-6
    assert _max_diff(w["plain_single"], w["keras_single"]) > 1e-3


@pytest.mark.slow
def test_keras3_own_global_clipnorm_clips_each_replica_before_the_sum():
    """Keras 3's global_clipnorm clips each replica's gradient by its own
    norm and then sums them: under MirroredStrategy it is not the
    single-device step (it lets up to N * global_clipnorm through)."""
    w = _run("keras3")
    assert _max_diff(w["keras_mirrored"], w["keras_single"]) > 1e-3


@pytest.mark.slow
def test_keras3_mixed_float16_inside_loss_scale_optimizer():
    w = _run("keras3-mixed")
    # float16 forward passes of 4 and 8 samples round differently.
    assert _max_diff(w["ours_mirrored"], w["ours_single"]) < 1e-4
    assert _max_diff(w["ours_single"], w["keras_single"]) < 1e-6
    assert _max_diff(w["keras_mirrored"], w["keras_single"]) > 1e-3


@pytest.mark.parametrize("kind", ["current", "legacy"])
@pytest.mark.slow
def test_keras2_clips_the_summed_gradient(kind):
    w = _run("keras2-" + kind)
    assert _max_diff(w["ours_mirrored"], w["ours_single"]) < 1e-6
    assert _max_diff(w["ours_single"], w["keras_single"]) < 1e-6
    # Keras 2's own global_clipnorm also clips after the sum.
    assert _max_diff(w["keras_mirrored"], w["keras_single"]) < 1e-6
    assert _max_diff(w["plain_single"], w["keras_single"]) > 1e-3


# --- The script ------------------------------------------------------------------


def _data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((STEPS_DATA, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]], np.float32) + 1).astype(np.float32)
    return x, y


def _train(k, make_optimizer, strategy, initial):
    """Weights after fit with batch 8 for 2 epochs; the model and optimizer
    are made under `strategy` (None: the default, one device)."""
    import contextlib

    x, y = _data()
    with strategy.scope() if strategy else contextlib.nullcontext():
        model = k.Sequential(
            [k.Input((3,)), k.layers.Dense(8, activation="tanh"), k.layers.Dense(1)]
        )
        model.set_weights(initial)
        model.compile(optimizer=make_optimizer(), loss="mse", jit_compile=False)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
    return [w.tolist() for w in model.get_weights()]


def _main(case):
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2

    from monolith_ops import keras as mk

    if case.startswith("keras3"):
        import keras as k

        if int(k.__version__.split(".")[0]) < 3:
            print(f"Keras 3 does not exist with this TensorFlow (its Keras is {k.__version__})")
            return 3
        sgd = k.optimizers.SGD
        makers = {
            "ours": lambda: mk.GlobalNormClipOptimizer(sgd(0.1, momentum=0.9), CLIP),
            "keras": lambda: sgd(0.1, momentum=0.9, global_clipnorm=CLIP),
            "plain": lambda: sgd(0.1, momentum=0.9),
        }
        if case == "keras3-mixed":
            # A small initial loss scale, so that no step overflows: with
            # the default one the steps skipped differ between 2 replicas
            # and 1 device (each replica's loss is half the batch's).
            k.mixed_precision.set_global_policy("mixed_float16")
            makers = {
                name: (lambda make=make: k.optimizers.LossScaleOptimizer(make(), initial_scale=8.0))
                for name, make in makers.items()
            }
    else:
        try:
            import tf_keras as k
        except ImportError:
            import keras

            k = tf.keras
            if not keras.__version__.startswith("2."):
                print("neither tf_keras nor a Keras 2 tf.keras is installed")
                return 3
        if case == "keras2-legacy":
            sgd = k.optimizers.legacy.SGD
            makers = {
                "ours": lambda: sgd(
                    0.1, momentum=0.9, gradient_transformers=[mk.GlobalNormClipTransformer(CLIP)]
                ),
            }
        else:
            sgd = k.optimizers.SGD
            clipped = mk.with_global_norm_clipping(sgd)
            makers = {"ours": lambda: clipped(CLIP, learning_rate=0.1, momentum=0.9)}
        makers["keras"] = lambda: sgd(0.1, momentum=0.9, global_clipnorm=CLIP)
        makers["plain"] = lambda: sgd(0.1, momentum=0.9)

    k.utils.set_random_seed(1)
    initial = k.Sequential(
        [k.Input((3,)), k.layers.Dense(8, activation="tanh"), k.layers.Dense(1)]
    ).get_weights()
    result = {}
    for name, make in makers.items():
        result[name + "_single"] = _train(k, make, None, initial)
        if name != "plain":
            result[name + "_mirrored"] = _train(k, make, strategy, initial)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1]))
