# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""Shared helpers: run a TF computation in graph, eager or tf.function mode,
or build and run one in a v1 graph; run Python in a fresh interpreter."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

MODES = ("graph", "eager", "function")
DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def dense_shapes():
    """Monolith's 53 dense gradient shapes (7,686,760 floats)."""
    with open(os.path.join(DATA_DIR, "dense_shapes.json")) as f:
        return [tuple(s) for s in json.load(f)["shapes"]]


def to_numpy(x):
    """Nested results to numpy: IndexedSlices become (values, indices, shape)."""
    if x is None:
        return None
    if type(x).__name__ == "IndexedSlicesValue":  # what Session.run returns
        return (x.values, x.indices, x.dense_shape)
    if isinstance(x, (list, tuple)):
        return type(x)(to_numpy(v) for v in x)
    if isinstance(x, tf.IndexedSlices):
        return (
            x.values.numpy(),
            x.indices.numpy(),
            None if x.dense_shape is None else x.dense_shape.numpy(),
        )
    if hasattr(x, "numpy"):
        return x.numpy()
    return np.asarray(x)


def run_in_mode(mode, fn, *args):
    """Calls fn(*tensors) in `mode` and returns its results as numpy.

    args are numpy arrays (or None); they become constants (graph), eager
    tensors (eager) or tf.function arguments (function).
    """
    if mode == "graph":
        with tf.Graph().as_default():
            tensors = [None if a is None else tf.constant(a) for a in args]
            out = fn(*tensors)
            with tf.compat.v1.Session() as sess:
                return to_numpy(session_run(sess, out))
    tensors = [None if a is None else tf.constant(a) for a in args]
    if mode == "eager":
        return to_numpy(fn(*tensors))
    if mode == "function":
        return to_numpy(tf.function(fn)(*tensors))
    raise ValueError(mode)


def session_run(sess, out):
    """sess.run over a nested structure that may hold None, in one run."""
    leaves = []

    def collect(x):
        if isinstance(x, (list, tuple)):
            for v in x:
                collect(v)
        elif x is not None:
            leaves.append(x)

    collect(out)
    values = iter(sess.run(leaves))

    def rebuild(x):
        if isinstance(x, (list, tuple)):
            return type(x)(rebuild(v) for v in x)
        return None if x is None else next(values)

    return rebuild(out)


@pytest.fixture(params=MODES)
def mode(request):
    return request.param


def run_python(args, *, cwd=None, pythonpath=None, env=None, timeout=300, check=True, text=True):
    """Runs `python args...` (args: ["-c", code, ...] or [script, ...]) in a
    fresh interpreter, quiet and on the CPU, and returns the CompletedProcess.

    PYTHONPATH is `pythonpath` (None: unset, so the interpreter imports the
    installed monolith_ops unless `cwd` holds another); `env` adds
    variables. With `check` the run must exit 0 (the failure shows the ends
    of its output)."""
    full_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", **(env or {}))
    full_env.pop("PYTHONPATH", None)
    if pythonpath is not None:
        full_env["PYTHONPATH"] = pythonpath
    proc = subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=text,
        timeout=timeout,
    )
    if check:
        out, err = proc.stdout, proc.stderr
        assert proc.returncode == 0, f"exit {proc.returncode}:\n{out[-3000:]!s}\n{err[-3000:]!s}"
    return proc


def installed_package_parent():
    """The folder holding the monolith_ops these tests import."""
    import monolith_ops

    return os.path.dirname(os.path.dirname(os.path.abspath(monolith_ops.__file__)))


def run_graph(build, feed=None):
    """build() in a v1 graph; returns its results as numpy (feed:
    {placeholder name: value} for the placeholders build() made)."""
    with tf.Graph().as_default() as graph:
        out = build()
        with tf.compat.v1.Session() as sess:
            feed_dict = {graph.get_tensor_by_name(k): v for k, v in (feed or {}).items()}
            return to_numpy(session_run(sess, out) if not feed else sess.run(out, feed_dict))


# --- Keras ---------------------------------------------------------------------


def keras_version():
    """The version of the keras package ("" when it is missing); with
    TensorFlow 2.15 it is the Keras 2 that tf.keras is."""
    try:
        import keras
    except ImportError:
        return ""
    return keras.__version__


def _keras3():
    """The keras module when it is Keras 3, else None."""
    if not keras_version() or int(keras_version().split(".")[0]) < 3:
        return None
    import keras

    return keras


K3 = _keras3()
needs_keras3 = pytest.mark.skipif(
    K3 is None,
    reason="Keras 3 does not exist here: TensorFlow 2.15 comes "
    "with Keras 2, which the Keras 2 tests below cover",
)


# Set by scripts/test.sh, which installs tf_keras: there its absence is an
# error, not a reason to skip the Keras 2 tests.
EXPECT_TF_KERAS = os.environ.get("MONOLITH_OPS_EXPECT_TF_KERAS") == "1"
TF_KERAS_MISSING = "tf_keras is not installed"


def tf_keras_or_fail():
    """tf_keras, or None where it may be missing; fails where it is expected."""
    try:
        import tf_keras
    except ImportError:
        if EXPECT_TF_KERAS:
            pytest.fail(f"{TF_KERAS_MISSING}, but MONOLITH_OPS_EXPECT_TF_KERAS=1 expects it")
        return None
    return tf_keras


def keras2_modules():
    """The Keras 2 packages present: tf_keras where it is importable, and
    tf.keras when it is Keras 2 (TensorFlow 2.15). A missing tf_keras that
    is expected is a param whose tests fail."""
    found = []
    try:
        import tf_keras

        found.append(pytest.param(tf_keras, id="tf_keras"))
    except ImportError:
        if EXPECT_TF_KERAS:
            found.append(pytest.param(TF_KERAS_MISSING, id="tf_keras"))
    if K3 is None and keras_version().startswith("2."):
        found.append(pytest.param(tf.keras, id="tf.keras2"))
    return found or [
        pytest.param(
            None,
            id="none",
            marks=pytest.mark.skip(reason="neither tf_keras nor a Keras 2 tf.keras is installed"),
        )
    ]


@pytest.fixture(params=keras2_modules())
def k2(request):
    """Each Keras 2 package present (see keras2_modules), the float32
    policy restored after the test."""
    if request.param == TF_KERAS_MISSING:
        tf_keras_or_fail()
    yield request.param
    if request.param is not None:
        request.param.mixed_precision.set_global_policy("float32")
