# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""Tests for monolith_ops.basic_restore_hook."""

import pytest
import tensorflow as tf

from monolith_ops import basic_restore_hook


class CountCheckpointRestorerListener(basic_restore_hook.CheckpointRestorerListener):
    def __init__(self, log=None, name="listener"):
        self.begin_count = 0
        self.before_restore_count = 0
        self.after_restore_count = 0
        self.end_count = 0
        self._log = log if log is not None else []
        self._name = name

    def begin(self):
        self.begin_count += 1
        self._log.append((self._name, "begin"))

    def before_restore(self, session):
        self.before_restore_count += 1
        self._log.append((self._name, "before_restore"))

    def after_restore(self, session):
        self.after_restore_count += 1
        self._log.append((self._name, "after_restore"))

    def end(self, session):
        self.end_count += 1
        self._log.append((self._name, "end"))

    def get_counts(self):
        return {
            "begin": self.begin_count,
            "before_restore": self.before_restore_count,
            "after_restore": self.after_restore_count,
        }


class CountHook(tf.compat.v1.train.SessionRunHook):
    def __init__(self):
        self.after_create_session_count = 0
        self.before_run_count = 0
        self.after_run_count = 0
        self.end_count = 0

    def after_create_session(self, session, coord):
        self.after_create_session_count += 1

    def before_run(self, run_context):
        self.before_run_count += 1

    def after_run(self, run_context, run_values):
        self.after_run_count += 1

    def end(self, session):
        self.end_count += 1

    def get_counts(self):
        return {
            "after_create_session": self.after_create_session_count,
            "before_run": self.before_run_count,
            "after_run": self.after_run_count,
            "end": self.end_count,
        }


def test_restore_only_in_after_create_session():
    with tf.compat.v1.Graph().as_default():
        global_step = tf.compat.v1.train.get_or_create_global_step()
        train_op = tf.compat.v1.assign_add(global_step, 1)
        listener = CountCheckpointRestorerListener()
        hook1 = basic_restore_hook.CheckpointRestorerHook(listeners=[listener])
        hook2 = CountHook()

        with tf.compat.v1.train.SingularMonitoredSession(hooks=[hook1, hook2]) as sess:
            # after_create_session
            assert listener.get_counts() == {
                "begin": 1,
                "before_restore": 1,
                "after_restore": 1,
            }
            assert hook2.get_counts() == {
                "after_create_session": 1,
                "before_run": 0,
                "after_run": 0,
                "end": 0,
            }
            for _ in range(2):
                sess.run(train_op)

    assert listener.get_counts() == {
        "begin": 1,
        "before_restore": 1,
        "after_restore": 1,
    }
    assert hook2.get_counts() == {
        "after_create_session": 1,
        "before_run": 2,
        "after_run": 2,
        "end": 1,
    }


def test_two_listeners_with_restorer():
    with tf.compat.v1.Graph().as_default():
        global_step = tf.compat.v1.train.get_or_create_global_step()
        train_op = tf.compat.v1.assign_add(global_step, 1)
        listener1 = CountCheckpointRestorerListener()
        listener2 = CountCheckpointRestorerListener()
        hook = basic_restore_hook.CheckpointRestorerHook(listeners=[listener1, listener2])

        with tf.compat.v1.train.SingularMonitoredSession(hooks=[hook]) as sess:
            expected = {"begin": 1, "before_restore": 1, "after_restore": 1}
            assert listener1.get_counts() == expected
            assert listener2.get_counts() == expected
            sess.run(train_op)
        assert listener1.get_counts() == expected
        assert listener2.get_counts() == expected


def test_listeners_are_called_in_order_every_before_then_every_after():
    log = []
    with tf.compat.v1.Graph().as_default():
        tf.compat.v1.train.get_or_create_global_step()
        hook = basic_restore_hook.CheckpointRestorerHook(
            listeners=[
                CountCheckpointRestorerListener(log, "a"),
                CountCheckpointRestorerListener(log, "b"),
            ]
        )
        with tf.compat.v1.train.SingularMonitoredSession(hooks=[hook]):
            pass
    assert log == [
        ("a", "begin"),
        ("b", "begin"),
        ("a", "before_restore"),
        ("b", "before_restore"),
        ("a", "after_restore"),
        ("b", "after_restore"),
        ("a", "end"),
        ("b", "end"),
    ]


def test_hook_end_calls_each_listener_end_once():
    # Departure from the original, whose hook never called listener.end().
    with tf.compat.v1.Graph().as_default():
        global_step = tf.compat.v1.train.get_or_create_global_step()
        train_op = tf.compat.v1.assign_add(global_step, 1)
        listeners = [CountCheckpointRestorerListener() for _ in range(2)]
        hook = basic_restore_hook.CheckpointRestorerHook(listeners=listeners)
        with tf.compat.v1.train.SingularMonitoredSession(hooks=[hook]) as sess:
            sess.run(train_op)
            assert [listener.end_count for listener in listeners] == [0, 0]
    assert [listener.end_count for listener in listeners] == [1, 1]


def test_listener_end_is_not_called_when_the_session_fails():
    with tf.compat.v1.Graph().as_default():
        tf.compat.v1.train.get_or_create_global_step()
        listener = CountCheckpointRestorerListener()
        hook = basic_restore_hook.CheckpointRestorerHook(listeners=[listener])
        with pytest.raises(ValueError, match="boom"):
            with tf.compat.v1.train.SingularMonitoredSession(hooks=[hook]):
                raise ValueError("boom")
    assert listener.end_count == 0
    assert listener.get_counts() == {
        "begin": 1,
        "before_restore": 1,
        "after_restore": 1,
    }


def test_listener_restores_through_the_session_before_training():

    class AssignListener(basic_restore_hook.CheckpointRestorerListener):
        """Plays a restore: writes a value the training then sees."""

        def __init__(self, assign_op, read_op):
            self.assign_op = assign_op
            self.read_op = read_op
            self.seen_after = None

        def before_restore(self, session):
            session.run(self.assign_op)

        def after_restore(self, session):
            self.seen_after = session.run(self.read_op)

    with tf.compat.v1.Graph().as_default():
        global_step = tf.compat.v1.train.get_or_create_global_step()
        assign_op = global_step.assign(41)
        train_op = tf.compat.v1.assign_add(global_step, 1)
        listener = AssignListener(assign_op, global_step.read_value())
        hook = basic_restore_hook.CheckpointRestorerHook(listeners=[listener])
        with tf.compat.v1.train.SingularMonitoredSession(hooks=[hook]) as sess:
            assert listener.seen_after == 41
            assert sess.run(train_op) == 42


def test_no_listeners():
    with tf.compat.v1.Graph().as_default():
        global_step = tf.compat.v1.train.get_or_create_global_step()
        train_op = tf.compat.v1.assign_add(global_step, 1)
        for hook in (
            basic_restore_hook.CheckpointRestorerHook(),
            basic_restore_hook.CheckpointRestorerHook(listeners=[]),
        ):
            with tf.compat.v1.train.SingularMonitoredSession(hooks=[hook]) as sess:
                assert sess.run(train_op) == 1


def test_base_listener_methods_are_no_ops():
    listener = basic_restore_hook.CheckpointRestorerListener()
    assert listener.begin() is None
    assert listener.before_restore(None) is None
    assert listener.after_restore(None) is None
    assert listener.end(None) is None


def test_listeners_must_be_a_list_of_listeners():
    with pytest.raises(TypeError, match="listeners must be a list"):
        basic_restore_hook.CheckpointRestorerHook(
            listeners=basic_restore_hook.CheckpointRestorerListener()
        )
    with pytest.raises(TypeError, match="listeners must be a list"):
        basic_restore_hook.CheckpointRestorerHook(listeners="listener")

    class NoAfterRestore:
        def begin(self):
            pass

        def before_restore(self, session):
            pass

        def end(self, session):
            pass

    with pytest.raises(TypeError, match=r"listeners\[1\].*after_restore"):
        basic_restore_hook.CheckpointRestorerHook(
            listeners=[
                basic_restore_hook.CheckpointRestorerListener(),
                NoAfterRestore(),
            ]
        )


def test_listener_tuple_and_duck_typed_listener_are_accepted():

    class DuckListener:
        def __init__(self):
            self.calls = []

        def begin(self):
            self.calls.append("begin")

        def before_restore(self, session):
            self.calls.append("before_restore")

        def after_restore(self, session):
            self.calls.append("after_restore")

        def end(self, session):
            self.calls.append("end")

    duck = DuckListener()
    with tf.compat.v1.Graph().as_default():
        tf.compat.v1.train.get_or_create_global_step()
        hook = basic_restore_hook.CheckpointRestorerHook(listeners=(duck,))
        with tf.compat.v1.train.SingularMonitoredSession(hooks=[hook]):
            pass
    assert duck.calls == ["begin", "before_restore", "after_restore", "end"]


def test_a_listener_class_instead_of_an_instance_is_rejected_at_once():
    with pytest.raises(TypeError, match=r"listeners\[1\].*class.*CountCheckpoint"):
        basic_restore_hook.CheckpointRestorerHook(
            listeners=[
                CountCheckpointRestorerListener(),
                CountCheckpointRestorerListener,
            ]
        )
    with pytest.raises(TypeError, match=r"listeners\[0\].*class"):
        basic_restore_hook.CheckpointRestorerHook(
            listeners=[basic_restore_hook.CheckpointRestorerListener]
        )


class FailingListener(CountCheckpointRestorerListener):
    """Counts like its base, then raises in the methods named in `fail_in`."""

    def __init__(self, log, name, fail_in):
        super().__init__(log, name)
        self._fail_in = fail_in

    def _maybe_fail(self, method):
        if method in self._fail_in:
            raise KeyError(f"{self._name} failed in {method}")

    def begin(self):
        super().begin()
        self._maybe_fail("begin")

    def before_restore(self, session):
        super().before_restore(session)
        self._maybe_fail("before_restore")

    def after_restore(self, session):
        super().after_restore(session)
        self._maybe_fail("after_restore")

    def end(self, session):
        super().end(session)
        self._maybe_fail("end")


@pytest.mark.parametrize("method", ["begin", "before_restore", "after_restore", "end"])
def test_a_failing_listener_does_not_stop_the_later_ones(method):
    """Every listener is called; the first error is raised after the loop."""
    log = []
    listeners = [
        FailingListener(log, "a", {method}),
        FailingListener(log, "b", {method}),
        CountCheckpointRestorerListener(log, "c"),
    ]
    hook = basic_restore_hook.CheckpointRestorerHook(listeners=listeners)
    with pytest.raises(KeyError, match="a failed in " + method):
        if method == "begin":
            hook.begin()
        elif method == "end":
            hook.end(None)
        else:
            hook.after_create_session(None, None)
    assert [name for name, m in log if m == method] == ["a", "b", "c"]
    if method == "before_restore":
        # The restore failed: no listener hears that it is done.
        assert [m for _, m in log] == ["before_restore"] * 3
