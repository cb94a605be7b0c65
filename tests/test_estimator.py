# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""End to end with tf.estimator: clipping, barrier and restore hooks, restart.

A `tf.estimator.Estimator` whose model_fn clips its gradients with
`monolith_ops.clip_ops.clip_by_global_norm` trains with `BarrierHook` and
`CheckpointRestorerHook` among its hooks, then a new Estimator on the same
model_dir (a restarted job) resumes from the checkpoint.

In this single process the chief's side of the barrier is played by a hook
that places it a few steps in and a thread that removes it once worker 1 is
blocked; `BarrierHook(1, ...)` then stops training at the next step boundary
until the removal, and `BarrierHook(0, ...)` (the chief's) never blocks.

`tf.estimator` is gone from TensorFlow 2.16 on; the module skips there, unless
MONOLITH_OPS_REQUIRE_ESTIMATOR=1 (set by scripts/ci_tf215.sh), which makes a
missing `tf.estimator` a failure instead.
"""

import os
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from monolith_ops import barrier_ops, basic_restore_hook, clip_ops


def _estimator_module():
    try:
        module = tf.estimator
        module.Estimator  # noqa: B018 (raises AttributeError without it)
    except AttributeError:
        return None
    return module


estimator = _estimator_module()
if estimator is None:
    if os.environ.get("MONOLITH_OPS_REQUIRE_ESTIMATOR") == "1":
        raise ImportError(
            f"tf.estimator is required (MONOLITH_OPS_REQUIRE_ESTIMATOR=1) but "
            f"TensorFlow {tf.__version__} has none; install TensorFlow 2.15 with "
            "tensorflow-estimator 2.15"
        )
    pytest.skip(
        f"TensorFlow {tf.__version__} has no tf.estimator (gone in 2.16)", allow_module_level=True
    )

CLIP_NORM = 0.5
LEARNING_RATE = 0.1
FIRST_STEPS = 8
RESUMED_STEPS = 6
PLACE_AFTER_STEPS = 3  # steps into each session before the barrier is placed
WAIT_SECS = 60.0


def _input_fn():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 3)).astype(np.float32)
    y = (x @ np.array([[2.0], [-3.0], [1.0]], np.float32) + 0.5).astype(np.float32)
    return tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(16)


class _RecordingListener(basic_restore_hook.CheckpointRestorerListener):
    """Records its calls, and the global_step and weights seen at each."""

    def __init__(self):
        self.calls = []
        self.restored_step = None
        self.restored_w = None

    def begin(self):
        self.calls.append("begin")

    def before_restore(self, session):
        self.calls.append("before_restore")

    def after_restore(self, session):
        self.calls.append("after_restore")
        graph = session.graph
        self.restored_step = session.run(tf.compat.v1.train.get_global_step(graph))
        self.restored_w = session.run(graph.get_tensor_by_name("w_value:0"))

    def end(self, session):
        self.calls.append("end")


class _ChiefPlacesBarrierHook(tf.compat.v1.train.SessionRunHook):
    """The chief's part: places the barrier `after_steps` steps into a session,
    then a thread removes it once every worker flag is set."""

    def __init__(self, barrier_op, after_steps, action):
        self._op = barrier_op
        self._after_steps = after_steps
        self._action = action
        self._steps = 0
        self._thread = None
        self.blocked_seen = None
        self.blocked_at_end = None
        self.error = None

    def after_run(self, run_context, run_values):
        self._steps += 1
        if self._steps == self._after_steps:
            session = run_context.session
            self._op.place_barrier(session, action=self._action)
            self._thread = threading.Thread(
                target=self._remove_when_all_blocked, args=(session,), daemon=True
            )
            self._thread.start()

    def _remove_when_all_blocked(self, session):
        try:
            deadline = time.monotonic() + WAIT_SECS
            while time.monotonic() < deadline:
                if self._op.is_all_blocked(session):
                    self.blocked_seen = self._op.get_blocked_indices(session)
                    self._op.remove_barrier(session)
                    return
                time.sleep(0.01)
            self.error = "worker 1 never blocked"
            self._op.remove_barrier(session)
        except Exception as err:
            self.error = repr(err)

    def end(self, session):
        if self._thread is not None:
            self._thread.join(WAIT_SECS)
        self.blocked_at_end = self._op.get_blocked_indices(session)


class _ClipCheckHook(tf.compat.v1.train.SessionRunHook):
    """Fetches ours and stock TF's clipping of the same gradients, every step."""

    def __init__(self, fetches):
        self._fetches = fetches
        self.results = []

    def before_run(self, run_context):
        return tf.compat.v1.train.SessionRunArgs(self._fetches)

    def after_run(self, run_context, run_values):
        self.results.append(run_values.results)


class _Run:
    """One Estimator.train call: its model_fn, its hooks and what they saw."""

    def __init__(self, model_dir):
        self.model_dir = model_dir
        self.callback_actions = []
        self.listener = _RecordingListener()
        self.chief_hook = None
        self.clip_hook = None

    def _barrier_callback(self, action, session):
        assert session is not None
        self.callback_actions.append(action)

    def model_fn(self, features, labels, mode):
        assert mode == estimator.ModeKeys.TRAIN
        w = tf.compat.v1.get_variable("w", [3, 1], tf.float32, tf.compat.v1.zeros_initializer())
        b = tf.compat.v1.get_variable("b", [1], tf.float32, tf.compat.v1.zeros_initializer())
        tf.identity(w, name="w_value")
        loss = tf.reduce_mean(tf.square(tf.matmul(features, w) + b - labels))
        optimizer = tf.compat.v1.train.GradientDescentOptimizer(LEARNING_RATE)
        grads, variables = zip(*optimizer.compute_gradients(loss, [w, b]))
        clipped, norm = clip_ops.clip_by_global_norm(list(grads), CLIP_NORM)
        stock_clipped, stock_norm = tf.clip_by_global_norm(list(grads), CLIP_NORM)
        global_step = tf.compat.v1.train.get_global_step()
        train_op = optimizer.apply_gradients(zip(clipped, variables), global_step)

        barrier_op = barrier_ops.BarrierOp(
            capacity=2,
            is_chief=True,
            wait_seconds=0.01,
            name_prefix="estimator",
            barrier_callbacks=[self._barrier_callback],
        )
        self.chief_hook = _ChiefPlacesBarrierHook(barrier_op, PLACE_AFTER_STEPS, action="sync")
        self.clip_hook = _ClipCheckHook(
            {
                "grads": list(grads),
                "clipped": clipped,
                "norm": norm,
                "stock_clipped": stock_clipped,
                "stock_norm": stock_norm,
            }
        )
        hooks = [
            self.chief_hook,
            barrier_ops.BarrierHook(0, barrier_op),  # the chief's: never blocks
            barrier_ops.BarrierHook(1, barrier_op, timeout=WAIT_SECS),
            self.clip_hook,
        ]
        return estimator.EstimatorSpec(mode, loss=loss, train_op=train_op, training_hooks=hooks)

    def train(self, steps):
        config = estimator.RunConfig(
            model_dir=self.model_dir,
            tf_random_seed=0,
            log_step_count_steps=None,
            save_summary_steps=1000,
            session_config=tf.compat.v1.ConfigProto(
                intra_op_parallelism_threads=2, inter_op_parallelism_threads=2
            ),
        )
        est = estimator.Estimator(self.model_fn, config=config)
        restorer = basic_restore_hook.CheckpointRestorerHook([self.listener])
        est.train(_input_fn, steps=steps, hooks=[restorer])
        return est


def _check_run(run, steps):
    """Checks the listener order, the barrier round and every clipping step."""
    assert run.listener.calls == ["begin", "before_restore", "after_restore", "end"]
    chief = run.chief_hook
    assert chief.error is None
    assert chief.blocked_seen == [0, 1]  # worker 1 blocked, barrier placed
    assert chief.blocked_at_end == []  # removed, and worker 1's flag cleared
    # place_barrier runs the callbacks on the chief, the blocked worker again.
    assert run.callback_actions == ["sync", "sync"]

    assert len(run.clip_hook.results) == steps
    clipped_steps = 0
    for r in run.clip_hook.results:
        grads = [np.asarray(g, np.float64) for g in r["grads"]]
        norm = np.sqrt(sum(np.sum(g * g) for g in grads))
        np.testing.assert_allclose(r["norm"], norm, rtol=1e-5)
        np.testing.assert_allclose(r["norm"], r["stock_norm"], rtol=1e-5)
        scale = CLIP_NORM / max(norm, CLIP_NORM)
        clipped_steps += scale < 1
        for g, ours, stock in zip(grads, r["clipped"], r["stock_clipped"]):
            np.testing.assert_allclose(ours, g * scale, rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(ours, stock, rtol=1e-5, atol=1e-7)
    assert clipped_steps > 0  # the clip was active, not a pass-through


@pytest.mark.timeout(600)
def test_estimator_trains_with_hooks_and_resumes_from_checkpoint(tmp_path):
    model_dir = str(tmp_path / "model")

    first = _Run(model_dir)
    est = first.train(FIRST_STEPS)
    _check_run(first, FIRST_STEPS)
    assert first.listener.restored_step == 0  # a fresh start
    np.testing.assert_array_equal(first.listener.restored_w, np.zeros((3, 1)))
    assert est.get_variable_value("global_step") == FIRST_STEPS
    trained_w = est.get_variable_value("w")
    assert np.any(trained_w != 0)
    checkpoint = tf.train.latest_checkpoint(model_dir)
    assert checkpoint is not None and checkpoint.endswith(f"-{FIRST_STEPS}")

    # A restarted job: a new Estimator on the same model_dir.
    resumed = _Run(model_dir)
    est = resumed.train(RESUMED_STEPS)
    _check_run(resumed, RESUMED_STEPS)
    assert resumed.listener.restored_step == FIRST_STEPS
    np.testing.assert_array_equal(resumed.listener.restored_w, trained_w)
    assert est.get_variable_value("global_step") == FIRST_STEPS + RESUMED_STEPS
    assert tf.train.latest_checkpoint(model_dir).endswith(f"-{FIRST_STEPS + RESUMED_STEPS}")


def _optimizer_model_fn(make_optimizer, op_types):
    def model_fn(features, labels, mode):
        w = tf.compat.v1.get_variable("w", [3, 1], tf.float32, tf.compat.v1.zeros_initializer())
        b = tf.compat.v1.get_variable("b", [1], tf.float32, tf.compat.v1.zeros_initializer())
        loss = tf.reduce_mean(tf.square(tf.matmul(features, w) + b - labels))
        train_op = make_optimizer().minimize(loss, tf.compat.v1.train.get_global_step())
        op_types.update(op.type for op in tf.compat.v1.get_default_graph().get_operations())
        return estimator.EstimatorSpec(mode, loss=loss, train_op=train_op)

    return model_fn


def test_estimator_trains_with_the_multi_tensor_optimizer(tmp_path):
    """monolith_ops.optimizers.AdamOptimizer in a model_fn: one update op,
    and after the same steps the same weights as the stock Adam on
    clip_ops-clipped gradients."""
    from monolith_ops import optimizers

    class _StockClippedAdam(tf.compat.v1.train.AdamOptimizer):
        def apply_gradients(self, grads_and_vars, global_step=None, name=None):
            grads, variables = zip(*grads_and_vars)
            clipped, _ = clip_ops.clip_by_global_norm(list(grads), CLIP_NORM)
            return super().apply_gradients(zip(clipped, variables), global_step, name)

    results = {}
    for label, make in [
        ("ours", lambda: optimizers.AdamOptimizer(LEARNING_RATE, clip_norm=CLIP_NORM)),
        ("stock", lambda: _StockClippedAdam(LEARNING_RATE)),
    ]:
        op_types = set()
        est = estimator.Estimator(
            _optimizer_model_fn(make, op_types), model_dir=str(tmp_path / label)
        )
        est.train(_input_fn, steps=FIRST_STEPS)
        results[label] = (
            op_types,
            {n: est.get_variable_value(n) for n in est.get_variable_names()},
        )
    assert "MonolithMultiTensorApplyAdam" in results["ours"][0]
    assert "ResourceApplyAdam" not in results["ours"][0]
    ours, stock = results["ours"][1], results["stock"][1]
    assert sorted(ours) == sorted(stock)  # the same variables, slots and powers
    for name in ours:
        np.testing.assert_array_equal(ours[name], stock[name], err_msg=name)
    assert ours["global_step"] == FIRST_STEPS
