# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""Keras model.fit with global-norm gradient clipping by monolith_ops.

Trains a small regression model for a few epochs twice, with
GlobalNormClipOptimizer(Adam, clip_norm) and with Keras' own
Adam(global_clipnorm=clip_norm), and prints how far apart the weights end
up (float rounding). Runs in seconds on CPU:

    python examples/keras_fit.py [--clip-norm 0.1] [--epochs 3] [--jit-compile auto]

Needs Keras 3 (TensorFlow 2.16 or newer); with Keras 2 see docs/keras.md.
"""

import argparse

import keras
import numpy as np
import tensorflow as tf

from monolith_ops.keras import GlobalNormClipOptimizer


def make_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(1),
        ]
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clip-norm", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--jit-compile", default="auto", choices=["auto", "true", "false"])
    args = parser.parse_args()
    jit = {"auto": "auto", "true": True, "false": False}[args.jit_compile]

    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 8)).astype(np.float32)
    y = x @ rng.standard_normal((8, 1)).astype(np.float32)

    weights = {}
    for label, optimizer in [
        (
            "monolith_ops",
            GlobalNormClipOptimizer(keras.optimizers.Adam(1e-2), clip_norm=args.clip_norm),
        ),
        ("keras", keras.optimizers.Adam(1e-2, global_clipnorm=args.clip_norm)),
    ]:
        model = make_model()
        model.compile(optimizer=optimizer, loss="mse", jit_compile=jit)
        history = model.fit(x, y, batch_size=32, epochs=args.epochs, shuffle=False, verbose=0)
        print(
            f"{label:>12}: loss per epoch " + " ".join(f"{v:.4f}" for v in history.history["loss"])
        )
        weights[label] = model.get_weights()
    diff = max(np.abs(a - b).max() for a, b in zip(weights["monolith_ops"], weights["keras"]))
    print(
        f"largest weight difference: {diff:.3g} (TensorFlow {tf.__version__}, "
        f"Keras {keras.__version__})"
    )


if __name__ == "__main__":
    main()
