# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""Tests for monolith_ops.barrier_ops in one process (threads play the workers).

The cluster behaviour (separate ps, chief and worker processes) is tested in
test_barrier_cluster.py.
"""

import logging
import re
import threading
import time

import pytest
import tensorflow as tf
from conftest import installed_package_parent, run_python
from hypothesis import given, settings
from hypothesis import strategies as st
from tensorflow.python.training import monitored_session

from monolith_ops import barrier_ops
from monolith_ops._barrier import op as barrier_op

JOIN_TIMEOUT = 60.0  # no test thread may outlive this
# "Promptly": well under the 30 s poll interval the tests use to tell a prompt
# stop from a poll, with room for a loaded machine.
PROMPT = 10.0


@pytest.fixture
def graph():
    with tf.compat.v1.Graph().as_default() as g:
        yield g


def _init(sess):
    sess.run(
        [
            tf.compat.v1.global_variables_initializer(),
            tf.compat.v1.local_variables_initializer(),
        ]
    )


def _wait_for(predicate, timeout=JOIN_TIMEOUT):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


class _Polls:
    """Counts the reads of a barrier's state: each waiter reads it once a
    poll. A test waits for a number of polls instead of sleeping, so that
    "a waiter still waits" is seen after it has looked again, not after a
    guess at how long that takes."""

    def __init__(self, op):
        self._cv = threading.Condition()
        self.count = 0
        read = op._read_state

        def counted(*args, **kwargs):
            out = read(*args, **kwargs)
            with self._cv:
                self.count += 1
                self._cv.notify_all()
            return out

        op._read_state = counted

    def wait_for_more(self, n, timeout=JOIN_TIMEOUT):
        with self._cv:
            target = self.count + n
            met = self._cv.wait_for(lambda: self.count >= target, timeout)
        assert met, f"{n} more polls of the barrier expected in {timeout} s"


def _start(target, *args):
    result = {}

    def run():
        try:
            result["value"] = target(*args)
        except BaseException as e:
            result["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def _join(thread):
    thread.join(JOIN_TIMEOUT)
    assert not thread.is_alive(), "thread did not finish: deadlock?"


class CountingSession:
    """Passes runs through to a session and counts them."""

    def __init__(self, sess):
        self._sess = sess
        self.runs = 0
        self.graph = sess.graph

    def run(self, *args, **kwargs):
        self.runs += 1
        return self._sess.run(*args, **kwargs)


# ---------------------------------------------------------------------------
# Ported from the original tests.


def test_basic(graph):
    barrier_op = barrier_ops.BarrierOp(2, False)
    with tf.compat.v1.Session() as sess:
        _init(sess)
        barrier_op.place_barrier(sess)
        assert barrier_op.is_barrier_placed(sess) is True
        with pytest.raises(barrier_ops.BarrierAlreadyPlacedError, match="default"):
            barrier_op.place_barrier(sess)
        assert barrier_op.get_blocked_indices(sess) == [0]
        barrier_op.remove_barrier(sess)
        assert barrier_op.is_barrier_removed(sess) is True
        assert barrier_op.is_none_blocked(sess)
        barrier_op.place_barrier(sess)  # Placing again after removal works.
        assert barrier_op.is_barrier_placed(sess)


def _run(train_op, sess, step=1):
    for _ in range(step):
        sess.run(train_op)


def test_barrier_hook_not_blocked(graph):
    global_step = tf.compat.v1.train.get_or_create_global_step()
    train_op = tf.compat.v1.assign_add(global_step, 1)
    barrier_op = barrier_ops.BarrierOp(2, False)
    hook = barrier_ops.BarrierHook(1, barrier_op)
    with tf.compat.v1.Session() as sess:
        _init(sess)
        counting = CountingSession(sess)
        mon_sess = monitored_session._HookedSession(counting, [hook])
        worker, result = _start(_run, train_op, mon_sess, 5)
        _join(worker)
        assert "error" not in result
        assert sess.run(global_step) == 5
        # The flag came with each step's own run: no extra round trip.
        assert counting.runs == 5


def test_barrier_hook_blocked(graph):
    global_step = tf.compat.v1.train.get_or_create_global_step()
    train_op = tf.compat.v1.assign_add(global_step, 1)
    called_variable = tf.Variable(False, trainable=False)
    set_called = called_variable.assign(True)
    barrier_action = "test_action"
    actions = []

    def action_callback(action, session):
        actions.append(action)
        if action == barrier_action:
            session.run(set_called)

    barrier_op = barrier_ops.BarrierOp(
        2, False, wait_seconds=0.05, barrier_callbacks=[action_callback]
    )
    hook = barrier_ops.BarrierHook(1, barrier_op)
    polls = _Polls(barrier_op)

    with tf.compat.v1.Session() as sess:
        _init(sess)
        mon_sess = monitored_session._HookedSession(sess, [hook])
        barrier_op.place_barrier(sess, action=barrier_action)
        assert actions == [barrier_action]  # The chief's own callback.
        worker, result = _start(_run, train_op, mon_sess, 5)

        _wait_for(lambda: barrier_op.is_all_blocked(sess))
        # Hook is pending after one step, and the callback has already run.
        assert sess.run(global_step) == 1
        assert sess.run(called_variable)
        assert actions == [barrier_action, barrier_action]
        polls.wait_for_more(5)  # the worker has looked again, and waits on
        assert sess.run(global_step) == 1
        assert worker.is_alive()

        barrier_op.remove_barrier(sess)
        _join(worker)
        assert "error" not in result
        assert barrier_op.is_none_blocked(sess)
        assert sess.run(global_step) == 5
        assert actions == [barrier_action, barrier_action]


_NO_OP_LIBRARY_SCRIPT = """
import sys
import tensorflow as tf
from monolith_ops import barrier_ops, basic_restore_hook
with tf.compat.v1.Graph().as_default():
  op = barrier_ops.BarrierOp(2)
  with tf.compat.v1.Session() as sess:
    sess.run(tf.compat.v1.local_variables_initializer())
    op.place_barrier(sess, action="a")
    assert op.get_blocked_indices(sess) == [0]
loaded = sorted(m for m in sys.modules if m.startswith("monolith_ops."))
# Nothing that loads the op library: neither the loader nor the clip.
library = [m for m in loaded if m.startswith(
    ("monolith_ops._loader", "monolith_ops._clip", "monolith_ops.clip_ops"))]
assert not library and "monolith_ops.barrier_ops" in loaded, loaded
print("ok")
"""


@pytest.mark.slow
def test_works_without_the_compiled_op_library():
    out = run_python(["-c", _NO_OP_LIBRARY_SCRIPT], pythonpath=installed_package_parent())
    assert out.stdout.strip() == "ok", out.stderr[-3000:]


# ---------------------------------------------------------------------------
# Variables.


def test_chief_copy_is_local_and_worker_copy_is_global():
    for is_chief, local in ((True, True), (False, False)):
        with tf.compat.v1.Graph().as_default():
            barrier_ops.BarrierOp(3, is_chief=is_chief, name_prefix="p")
            local_names = [v.name for v in tf.compat.v1.local_variables()]
            global_names = [v.name for v in tf.compat.v1.global_variables()]
            names = [
                "p_barrier_op/barrier_var:0",
                "p_barrier_op/barrier_op_action:0",
                "p_barrier_op/barrier_generation:0",
            ]
            assert (local_names if local else global_names) == names
            assert (global_names if local else local_names) == []
            assert tf.compat.v1.trainable_variables() == []


def test_two_barriers_with_different_prefixes_are_independent(graph):
    a = barrier_ops.BarrierOp(2, name_prefix="a")
    b = barrier_ops.BarrierOp(2, name_prefix="b")
    with tf.compat.v1.Session() as sess:
        _init(sess)
        a.place_barrier(sess)
        assert a.is_barrier_placed(sess)
        assert not b.is_barrier_placed(sess)
    with pytest.raises(ValueError, match="already exists"):
        barrier_ops.BarrierOp(2, name_prefix="a")


def test_properties(graph):
    op = barrier_ops.BarrierOp(4, name_prefix="x")
    assert op.capacity == 4
    assert op.name == "x"
    assert op.barrier_placed_tensor.dtype == tf.bool
    assert op.barrier_placed_tensor.shape == []


def test_blocked_and_unblocked_indices(graph):
    op = barrier_ops.BarrierOp(4, wait_seconds=0.02)
    with tf.compat.v1.Session() as sess:
        _init(sess)
        assert op.get_unblocked_indices(sess) == [0, 1, 2, 3]
        assert op.get_blocked_indices(sess) == []
        op.place_barrier(sess)
        threads = [_start(op.wait_until_barrier_removed, sess, i) for i in (1, 3)]
        _wait_for(lambda: op.get_blocked_indices(sess) == [0, 1, 3])
        assert op.get_unblocked_indices(sess) == [2]
        assert not op.is_all_blocked(sess) and not op.is_none_blocked(sess)
        op.remove_barrier(sess)
        for thread, result in threads:
            _join(thread)
            assert result == {"value": True}
        assert op.is_none_blocked(sess)


# ---------------------------------------------------------------------------
# Arguments.


@pytest.mark.parametrize(
    "capacity,error,match",
    [
        (0, ValueError, "capacity must be >= 1"),
        (-2, ValueError, "capacity must be >= 1"),
        (2.0, TypeError, "capacity must be an int"),
        (True, TypeError, "capacity must be an int"),
        ("2", TypeError, "capacity must be an int"),
        (None, TypeError, "capacity must be an int"),
    ],
)
def test_bad_capacity(graph, capacity, error, match):
    with pytest.raises(error, match=match):
        barrier_ops.BarrierOp(capacity)


@pytest.mark.parametrize(
    "wait_seconds,error",
    [
        (0, ValueError),
        (-1, ValueError),
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        ("1", TypeError),
        (None, TypeError),
        (True, TypeError),
    ],
)
def test_bad_wait_seconds(graph, wait_seconds, error):
    with pytest.raises(error, match="wait_seconds"):
        barrier_ops.BarrierOp(2, wait_seconds=wait_seconds)


def test_bad_name_prefix_and_callbacks(graph):
    with pytest.raises(TypeError, match="name_prefix"):
        barrier_ops.BarrierOp(2, name_prefix=None)
    with pytest.raises(ValueError, match="name_prefix"):
        barrier_ops.BarrierOp(2, name_prefix="")
    with pytest.raises(TypeError, match="barrier_callbacks must be a list"):
        barrier_ops.BarrierOp(2, barrier_callbacks=lambda action, session: None)
    with pytest.raises(TypeError, match=r"barrier_callbacks\[1\]"):
        barrier_ops.BarrierOp(2, barrier_callbacks=[print, "not callable"])


def test_numpy_ints_and_tuple_of_callbacks_are_accepted(graph):
    np = pytest.importorskip("numpy")
    op = barrier_ops.BarrierOp(
        np.int64(3), wait_seconds=np.float32(0.5), barrier_callbacks=(print,)
    )
    assert op.capacity == 3 and isinstance(op.capacity, int)
    barrier_ops.BarrierHook(np.int32(2), op)


@pytest.mark.parametrize(
    "index,error",
    [
        (0, ValueError),
        (-1, ValueError),
        (3, ValueError),
        (4, ValueError),
        (1.0, TypeError),
        (True, TypeError),
        ("1", TypeError),
    ],
)
def test_wait_validates_index(graph, index, error):
    # Departure: the original let index == capacity through.
    op = barrier_ops.BarrierOp(3)
    with tf.compat.v1.Session() as sess:
        _init(sess)
        with pytest.raises(error, match="index"):
            op.wait_until_barrier_removed(sess, index)
        assert op.get_blocked_indices(sess) == []


@pytest.mark.parametrize(
    "timeout,error",
    [
        (0, ValueError),
        (-1.0, ValueError),
        (float("nan"), ValueError),
        ("1", TypeError),
        (True, TypeError),
    ],
)
def test_bad_timeout(graph, timeout, error):
    op = barrier_ops.BarrierOp(2)
    with pytest.raises(error, match="timeout"):
        barrier_ops.BarrierHook(1, op, timeout=timeout)
    with tf.compat.v1.Session() as sess:
        _init(sess)
        with pytest.raises(error, match="timeout"):
            op.wait_until_barrier_removed(sess, 1, timeout=timeout)


def test_bad_hook_arguments(graph):
    op = barrier_ops.BarrierOp(2)
    with pytest.raises(TypeError, match="barrier_op must be a BarrierOp"):
        barrier_ops.BarrierHook(1, "op")
    with pytest.raises(ValueError, match="index"):
        barrier_ops.BarrierHook(2, op)
    with pytest.raises(ValueError, match="index"):
        barrier_ops.BarrierHook(-1, op)
    with pytest.raises(TypeError, match="index"):
        barrier_ops.BarrierHook(None, op)


def test_bad_action_and_should_stop(graph):
    op = barrier_ops.BarrierOp(2)
    with tf.compat.v1.Session() as sess:
        _init(sess)
        with pytest.raises(TypeError, match="action must be a str"):
            op.place_barrier(sess, action=b"bytes")
        assert not op.is_barrier_placed(sess)
        with pytest.raises(TypeError, match="should_stop"):
            op.wait_until_barrier_removed(sess, 1, should_stop=True)


def test_needs_graph_mode():
    if tf.executing_eagerly():  # Unless something disabled eager execution.
        with pytest.raises(RuntimeError, match="graph mode"):
            barrier_ops.BarrierOp(2)

    @tf.function
    def build():
        barrier_ops.BarrierOp(2)

    with pytest.raises(RuntimeError, match="graph mode"):
        build()


# ---------------------------------------------------------------------------
# Callbacks.


def test_worker_runs_callbacks_before_it_counts_as_blocked(graph):
    seen = []
    holder = {}

    def callback(action, session):
        seen.append((action, holder["op"].get_blocked_indices(session)))

    op = barrier_ops.BarrierOp(2, wait_seconds=0.02, barrier_callbacks=[callback])
    holder["op"] = op
    with tf.compat.v1.Session() as sess:
        _init(sess)
        op.place_barrier(sess, action="save")
        worker, result = _start(op.wait_until_barrier_removed, sess, 1)
        _wait_for(lambda: op.is_all_blocked(sess))
        # Chief's callback, then the worker's: flag 1 was not yet set during it.
        assert seen == [("save", [0]), ("save", [0])]
        op.remove_barrier(sess)
        _join(worker)
        assert result == {"value": True}


def test_worker_reads_the_latest_action(graph):
    actions = []
    op = barrier_ops.BarrierOp(
        2,
        wait_seconds=0.02,
        barrier_callbacks=[lambda action, session: actions.append(action)],
    )
    with tf.compat.v1.Session() as sess:
        _init(sess)
        for action in ("first", "", "ünïcode"):
            op.place_barrier(sess, action=action)
            worker, _ = _start(op.wait_until_barrier_removed, sess, 1)
            _wait_for(lambda: op.is_all_blocked(sess))
            op.remove_barrier(sess)
            _join(worker)
    assert actions == ["first", "first", "", "", "ünïcode", "ünïcode"]


def test_failing_callbacks_propagate(graph):
    fail_in = set()

    def callback(action, session):
        if action in fail_in:
            raise KeyError("callback failed")

    op = barrier_ops.BarrierOp(2, barrier_callbacks=[callback])
    with tf.compat.v1.Session() as sess:
        _init(sess)
        # On the chief, callbacks run once the barrier is placed: it stays placed.
        fail_in.add("chief")
        with pytest.raises(KeyError, match="callback failed"):
            op.place_barrier(sess, action="chief")
        assert op.get_blocked_indices(sess) == [0]
        op.remove_barrier(sess)
        # On a worker, they run before its flag is set: no flag is left behind.
        op.place_barrier(sess, action="worker")
        fail_in.add("worker")
        with pytest.raises(KeyError, match="callback failed"):
            op.wait_until_barrier_removed(sess, 1)
        assert op.get_blocked_indices(sess) == [0]


# ---------------------------------------------------------------------------
# Timeouts and stopping.


def test_wait_times_out_with_a_clear_error(graph):
    op = barrier_ops.BarrierOp(3, wait_seconds=0.05, name_prefix="sync")
    with tf.compat.v1.Session() as sess:
        _init(sess)
        op.place_barrier(sess)
        start = time.monotonic()
        with pytest.raises(barrier_ops.BarrierTimeoutError) as info:
            op.wait_until_barrier_removed(sess, 2, timeout=0.3)
        waited = time.monotonic() - start
        error = info.value
        assert isinstance(error, TimeoutError)
        assert "'sync'" in str(error)
        assert "Worker 2" in str(error)
        assert re.search(r"waited \d+\.\d s", str(error)), str(error)
        assert "timeout=0.3 s" in str(error)
        assert (error.barrier_name, error.index, error.timeout) == (
            "sync",
            2,
            0.3,
        )
        assert 0.3 <= error.waited_secs <= waited
        assert 0.3 <= waited < PROMPT
        # The worker no longer waits, so its flag is cleared; the barrier stays.
        assert op.get_blocked_indices(sess) == [0]


def test_timeout_is_honoured_even_with_a_long_poll_interval(graph):
    op = barrier_ops.BarrierOp(2, wait_seconds=30)
    with tf.compat.v1.Session() as sess:
        _init(sess)
        op.place_barrier(sess)
        start = time.monotonic()
        with pytest.raises(barrier_ops.BarrierTimeoutError):
            op.wait_until_barrier_removed(sess, 1, timeout=0.2)
        assert time.monotonic() - start < PROMPT


def test_infinite_timeout_means_no_timeout(graph):
    op = barrier_ops.BarrierOp(2, wait_seconds=0.02)
    with tf.compat.v1.Session() as sess:
        _init(sess)
        op.place_barrier(sess)
        worker, result = _start(op.wait_until_barrier_removed, sess, 1, float("inf"))
        _wait_for(lambda: op.is_all_blocked(sess))
        op.remove_barrier(sess)
        _join(worker)
        assert result == {"value": True}
    barrier_ops.BarrierHook(1, op, timeout=float("inf"))


def test_hook_times_out_when_the_chief_never_removes_the_barrier(graph):
    global_step = tf.compat.v1.train.get_or_create_global_step()
    train_op = tf.compat.v1.assign_add(global_step, 1)
    op = barrier_ops.BarrierOp(2, False, wait_seconds=0.05)
    hook = barrier_ops.BarrierHook(1, op, timeout=0.3)
    with tf.compat.v1.Session() as sess:
        _init(sess)
        mon_sess = monitored_session._HookedSession(sess, [hook])
        mon_sess.run(train_op)
        op.place_barrier(sess)  # ... and the chief dies.
        with pytest.raises(barrier_ops.BarrierTimeoutError, match="Worker 1"):
            mon_sess.run(train_op)
        assert sess.run(global_step) == 2
        assert op.get_blocked_indices(sess) == [0]


def test_should_stop_ends_the_wait_promptly(graph):
    op = barrier_ops.BarrierOp(2, wait_seconds=30)
    stop = threading.Event()
    with tf.compat.v1.Session() as sess:
        _init(sess)
        op.place_barrier(sess)
        worker, result = _start(op.wait_until_barrier_removed, sess, 1, None, stop.is_set)
        _wait_for(lambda: op.is_all_blocked(sess))
        start = time.monotonic()
        stop.set()
        _join(worker)
        assert time.monotonic() - start < PROMPT
        assert result == {"value": False}
        assert op.get_blocked_indices(sess) == [0]


def test_closing_the_session_ends_the_wait_promptly(graph):
    op = barrier_ops.BarrierOp(2, wait_seconds=30)
    sess = tf.compat.v1.Session()
    _init(sess)
    op.place_barrier(sess)
    worker, result = _start(op.wait_until_barrier_removed, sess, 1)
    _wait_for(lambda: op.is_all_blocked(sess))
    start = time.monotonic()
    sess.close()
    _join(worker)
    assert time.monotonic() - start < PROMPT
    assert result == {"value": False}


def test_closing_the_monitored_session_releases_a_blocked_hook(graph):
    global_step = tf.compat.v1.train.get_or_create_global_step()
    train_op = tf.compat.v1.assign_add(global_step, 1)
    op = barrier_ops.BarrierOp(2, False, wait_seconds=30)
    hook = barrier_ops.BarrierHook(1, op)
    steps = []

    def train(mon_sess):
        while not mon_sess.should_stop():
            steps.append(mon_sess.run(train_op))

    mon_sess = tf.compat.v1.train.SingularMonitoredSession(hooks=[hook])
    raw = mon_sess.raw_session()
    op.place_barrier(raw)
    worker, result = _start(train, mon_sess)
    _wait_for(lambda: op.is_all_blocked(raw))
    start = time.monotonic()
    mon_sess.close()  # Requests a stop on the coordinator, then closes.
    _join(worker)
    assert time.monotonic() - start < PROMPT
    assert "error" not in result, result
    assert steps == [1]


def test_long_waits_are_logged(graph, caplog, monkeypatch):
    monkeypatch.setattr(barrier_op, "LOG_EVERY_SECS", 0.1)
    op = barrier_ops.BarrierOp(2, wait_seconds=0.02, name_prefix="logged")
    with tf.compat.v1.Session() as sess:
        _init(sess)
        op.place_barrier(sess)
        with caplog.at_level(logging.INFO, logger=barrier_ops.__name__):
            with pytest.raises(barrier_ops.BarrierTimeoutError):
                op.wait_until_barrier_removed(sess, 1, timeout=1.0)
    waiting = [r.getMessage() for r in caplog.records if "has waited" in r.getMessage()]
    assert len(waiting) >= 2, caplog.records
    assert all("Worker 1" in m and "'logged'" in m for m in waiting)


# ---------------------------------------------------------------------------
# Index 0 (the chief) and several waiters on one index.


def test_hook_with_index_zero_never_blocks_and_fetches_nothing(graph):
    global_step = tf.compat.v1.train.get_or_create_global_step()
    train_op = tf.compat.v1.assign_add(global_step, 1)
    op = barrier_ops.BarrierOp(2)
    hook = barrier_ops.BarrierHook(0, op)
    with tf.compat.v1.Session() as sess:
        _init(sess)
        op.place_barrier(sess)
        assert hook.before_run(None) is None
        mon_sess = monitored_session._HookedSession(sess, [hook])
        _run(train_op, mon_sess, 3)
        assert sess.run(global_step) == 3
        assert op.get_blocked_indices(sess) == [0]


def test_flag_stays_set_while_another_thread_waits_on_the_same_index(graph):
    op = barrier_ops.BarrierOp(2, wait_seconds=0.02)
    polls = _Polls(op)
    stop_a = threading.Event()
    with tf.compat.v1.Session() as sess:
        _init(sess)
        op.place_barrier(sess)
        a, result_a = _start(op.wait_until_barrier_removed, sess, 1, None, stop_a.is_set)
        b, result_b = _start(op.wait_until_barrier_removed, sess, 1)
        _wait_for(lambda: op.is_all_blocked(sess))
        stop_a.set()
        _join(a)
        assert result_a == {"value": False}
        polls.wait_for_more(3)  # b, alone now, has looked again
        assert op.get_blocked_indices(sess) == [0, 1]  # b still waits
        op.remove_barrier(sess)
        _join(b)
        assert result_b == {"value": True}
        assert op.is_none_blocked(sess)


# ---------------------------------------------------------------------------
# Thread safety.


def test_concurrent_places_exactly_one_wins(graph):
    op = barrier_ops.BarrierOp(2)
    num_threads = 8
    with tf.compat.v1.Session() as sess:
        _init(sess)
        for round_ in range(10):
            start = threading.Barrier(num_threads)
            outcomes = []

            def place(action, start=start, outcomes=outcomes):
                start.wait()
                try:
                    op.place_barrier(sess, action=action)
                    outcomes.append("placed")
                except barrier_ops.BarrierAlreadyPlacedError:
                    outcomes.append("already")

            threads = [_start(place, f"{round_}-{i}")[0] for i in range(num_threads)]
            for thread in threads:
                _join(thread)
            assert sorted(outcomes) == ["already"] * (num_threads - 1) + ["placed"]
            assert op.is_barrier_placed(sess)
            op.remove_barrier(sess)


def test_stress_place_remove_and_wait_from_many_threads(graph):
    """A chief cycles the barrier; workers wait; intruders try to place."""
    num_workers = 6
    num_intruders = 2
    num_cycles = 15
    records = {i: [] for i in range(1, num_workers + 1)}
    local = threading.local()

    def callback(action, session):
        index = getattr(local, "index", None)
        if index is not None:  # A worker thread (not the chief, not an intruder).
            records[index].append(action)

    op = barrier_ops.BarrierOp(num_workers + 1, wait_seconds=0.01, barrier_callbacks=[callback])
    done = threading.Event()
    # Intruders try to place only while the chief holds the barrier; before it
    # removes the barrier, the chief takes every permit, so none is mid-attempt.
    holding = threading.Event()
    permits = threading.Semaphore(num_intruders)
    intruder_outcomes = []

    def worker(index):
        local.index = index
        while not done.is_set():
            if op.is_barrier_placed(sess):
                assert op.wait_until_barrier_removed(sess, index, timeout=JOIN_TIMEOUT)
            else:
                time.sleep(0.005)

    def intruder():
        while not done.is_set():
            with permits:
                if holding.is_set():
                    try:
                        op.place_barrier(sess, action="intruder")
                        intruder_outcomes.append("placed")
                    except barrier_ops.BarrierAlreadyPlacedError:
                        intruder_outcomes.append("already")
            time.sleep(0.002)

    with tf.compat.v1.Session() as sess:
        _init(sess)
        threads = [_start(worker, i) for i in range(1, num_workers + 1)]
        threads += [_start(intruder) for _ in range(num_intruders)]
        all_blocked_flags = []
        try:
            for k in range(num_cycles):
                action = f"cycle-{k}"
                op.place_barrier(sess, action=action)
                holding.set()
                _wait_for(lambda: op.is_all_blocked(sess))
                all_blocked_flags.append(op.get_blocked_indices(sess))
                assert {i: r[-1] for i, r in records.items()} == {i: action for i in records}
                holding.clear()
                for _ in range(num_intruders):
                    permits.acquire()
                op.remove_barrier(sess)
                for _ in range(num_intruders):
                    permits.release()
                _wait_for(lambda: op.is_none_blocked(sess))
        finally:
            done.set()
            holding.clear()
            op.remove_barrier(sess)
            for thread, result in threads:
                _join(thread)
                assert "error" not in result, result
    assert all_blocked_flags == [list(range(num_workers + 1))] * num_cycles
    assert intruder_outcomes and set(intruder_outcomes) == {"already"}
    expected = [f"cycle-{k}" for k in range(num_cycles)]
    for actions in records.values():
        assert actions == expected  # Each cycle exactly once, in order.


# ---------------------------------------------------------------------------
# Property: place/remove against a model.


_OPS = st.lists(st.sampled_from(["place", "remove", "query"]), min_size=1, max_size=20)


@pytest.fixture(scope="module")
def shared_barrier():
    graph = tf.compat.v1.Graph()
    placed_with = []
    with graph.as_default():
        op = barrier_ops.BarrierOp(
            3,
            barrier_callbacks=[lambda action, session: placed_with.append(action)],
        )
        init = [
            tf.compat.v1.global_variables_initializer(),
            tf.compat.v1.local_variables_initializer(),
        ]
    sess = tf.compat.v1.Session(graph=graph)
    sess.run(init)
    yield op, sess, placed_with
    sess.close()


@settings(max_examples=40, deadline=None)
@given(ops=_OPS)
def test_place_and_remove_follow_a_simple_model(shared_barrier, ops):
    op, sess, placed_with = shared_barrier
    op.remove_barrier(sess)
    del placed_with[:]
    placed = False
    expected_callbacks = []
    for i, name in enumerate(ops):
        if name == "place":
            if placed:
                with pytest.raises(barrier_ops.BarrierAlreadyPlacedError):
                    op.place_barrier(sess, action=str(i))
            else:
                op.place_barrier(sess, action=str(i))
                expected_callbacks.append(str(i))
            placed = True
        elif name == "remove":
            op.remove_barrier(sess)
            placed = False
        assert op.is_barrier_placed(sess) == placed
        assert op.is_barrier_removed(sess) == (not placed)
        assert op.get_blocked_indices(sess) == ([0] if placed else [])
        assert op.is_none_blocked(sess) == (not placed)
    assert placed_with == expected_callbacks


def test_a_restarted_worker_clears_the_flag_it_left_when_it_died(graph):
    """A worker died while blocked: its flag stayed set after the barrier was
    removed, and the chief would wait forever for it to resume. Its next
    session clears it, and a barrier placed after that blocks it again."""
    global_step = tf.compat.v1.train.get_or_create_global_step()
    train_op = tf.compat.v1.assign_add(global_step, 1)
    chief = barrier_ops.BarrierOp(3, True, wait_seconds=0.01)
    block = chief._block_op  # what a blocked worker writes
    with tf.compat.v1.Session() as sess:
        _init(sess)
        generation = chief.place_barrier(sess)
        sess.run(block, feed_dict={chief._idx_ph: 2, chief._gen_ph: generation})
        chief.remove_barrier(sess)  # ... and dies before it can clear it
        assert chief.get_blocked_indices(sess) == [2]

        hook = barrier_ops.BarrierHook(2, chief, timeout=JOIN_TIMEOUT)
        other = barrier_ops.BarrierHook(1, chief, timeout=JOIN_TIMEOUT)
        for h in (hook, other):
            h.after_create_session(sess, None)
        assert chief.is_none_blocked(sess)

        # The restarted worker still blocks at the next barrier.
        mon_sess = monitored_session._HookedSession(sess, [hook])
        chief.place_barrier(sess)
        worker, result = _start(_run, train_op, mon_sess, 1)
        _wait_for(lambda: chief.get_blocked_indices(sess) == [0, 2])
        chief.remove_barrier(sess)
        _join(worker)
        assert "error" not in result
        assert chief.is_none_blocked(sess)


def test_a_new_session_leaves_a_flag_that_a_thread_here_waits_on(graph):
    barrier_op = barrier_ops.BarrierOp(2, True, wait_seconds=0.01)
    with tf.compat.v1.Session() as sess:
        _init(sess)
        barrier_op.place_barrier(sess)
        waiter, result = _start(barrier_op.wait_until_barrier_removed, sess, 1, JOIN_TIMEOUT)
        _wait_for(lambda: barrier_op.is_all_blocked(sess))
        barrier_ops.BarrierHook(1, barrier_op).after_create_session(sess, None)
        assert barrier_op.get_blocked_indices(sess) == [0, 1]
        barrier_op.remove_barrier(sess)
        _join(waiter)
        assert result.get("value") is True


def test_a_flag_left_by_a_waiter_whose_session_closed_is_cleared_next_step(graph):
    """A monitored session recreated by another thread while this one waits:
    the new session is created while the waiter still counts, and the waiter
    then finds its session closed and cannot clear its flag. The hook's next
    step, on the new session, clears it."""
    server = tf.distribute.Server.create_local_server()
    global_step = tf.compat.v1.train.get_or_create_global_step()
    train_op = tf.compat.v1.assign_add(global_step, 1)
    barrier_op = barrier_ops.BarrierOp(2, True, wait_seconds=0.01)
    hook = barrier_ops.BarrierHook(1, barrier_op, timeout=JOIN_TIMEOUT)
    first = tf.compat.v1.Session(server.target)
    _init(first)
    barrier_op.place_barrier(first)
    waiter, result = _start(barrier_op.wait_until_barrier_removed, first, 1, JOIN_TIMEOUT)
    _wait_for(lambda: barrier_op.is_all_blocked(first))
    with tf.compat.v1.Session(server.target) as second:
        hook.after_create_session(second, None)  # the waiter still counts
        first.close()  # ends the wait, and the waiter cannot clear its flag
        _join(waiter)
        assert result == {"value": False}
        barrier_op.remove_barrier(second)
        assert barrier_op.get_blocked_indices(second) == [1]  # left behind
        mon_sess = monitored_session._HookedSession(second, [hook])
        mon_sess.run(train_op)
        assert barrier_op.is_none_blocked(second)


# ---------------------------------------------------------------------------
# Generations: a barrier placed right after the previous one was removed.


def test_back_to_back_barriers_run_every_action_on_every_worker_once(graph):
    """The chief removes each barrier and places the next at once: the
    workers, still polling, never see the barrier down. Each must still run
    every action once, before the chief sees it blocked on that barrier."""
    num_workers = 2
    num_actions = 30
    global_step = tf.compat.v1.train.get_or_create_global_step()
    train_op = tf.compat.v1.assign_add(global_step, 1)
    records = {i: [] for i in range(1, num_workers + 1)}
    local = threading.local()

    def callback(action, session):
        index = getattr(local, "index", None)
        if index is not None:  # a worker, not the chief
            records[index].append(action)

    op = barrier_ops.BarrierOp(
        num_workers + 1, False, wait_seconds=0.05, barrier_callbacks=[callback]
    )
    done = threading.Event()

    def worker(index):
        local.index = index
        hook = barrier_ops.BarrierHook(index, op, timeout=JOIN_TIMEOUT)
        mon_sess = monitored_session._HookedSession(sess, [hook])
        while not done.is_set():
            mon_sess.run(train_op)

    with tf.compat.v1.Session() as sess:
        _init(sess)
        threads = [_start(worker, i) for i in range(1, num_workers + 1)]
        seen = []
        try:
            for k in range(num_actions):
                if k:
                    op.remove_barrier(sess)  # ... and place the next at once
                op.place_barrier(sess, action=f"action-{k}")
                _wait_for(lambda: op.is_all_blocked(sess))
                seen.append({i: r[-1] if r else None for i, r in records.items()})
        finally:
            done.set()
            op.remove_barrier(sess)
            for thread, result in threads:
                _join(thread)
                assert "error" not in result, result
    expected = [f"action-{k}" for k in range(num_actions)]
    # When the chief saw all blocked on barrier k, each had run action k ...
    assert seen == [{i: a for i in records} for a in expected]
    # ... and over the run each worker ran every action exactly once, in order.
    assert records == {i: expected for i in records}


def test_is_all_blocked_means_blocked_on_the_current_barrier(graph):
    """Right after a back-to-back place, the worker's flag from the previous
    barrier is (usually) still set; it does not count until the worker has
    run the new action."""
    global_step = tf.compat.v1.train.get_or_create_global_step()
    train_op = tf.compat.v1.assign_add(global_step, 1)
    release_callback = threading.Event()
    in_callback = threading.Event()
    worker_thread = {}

    def callback(action, session):
        if action == "second" and threading.current_thread() is worker_thread.get("thread"):
            in_callback.set()
            assert release_callback.wait(JOIN_TIMEOUT)

    op = barrier_ops.BarrierOp(2, False, wait_seconds=0.02, barrier_callbacks=[callback])
    hook = barrier_ops.BarrierHook(1, op, timeout=JOIN_TIMEOUT)
    done = threading.Event()

    def worker():
        worker_thread["thread"] = threading.current_thread()
        mon_sess = monitored_session._HookedSession(sess, [hook])
        while not done.is_set():
            mon_sess.run(train_op)

    with tf.compat.v1.Session() as sess:
        _init(sess)
        thread, result = _start(worker)
        try:
            first = op.place_barrier(sess, action="first")
            _wait_for(lambda: op.is_all_blocked(sess))
            op.remove_barrier(sess)
            second = op.place_barrier(sess, action="second")
            assert not op.is_all_blocked(sess)
            assert in_callback.wait(JOIN_TIMEOUT)  # it runs the second action
            assert not op.is_all_blocked(sess)
            release_callback.set()
            _wait_for(lambda: op.is_all_blocked(sess))
            assert (first, second) == (1, 2)  # place_barrier returns the generation
        finally:
            release_callback.set()
            done.set()
            op.remove_barrier(sess)
            _join(thread)
        assert "error" not in result, result
        _wait_for(lambda: op.is_none_blocked(sess))


def test_a_worker_runs_each_barrier_once_across_waits(graph):
    """A worker whose wait ended (timeout, stop) and that waits again on the
    same barrier blocks without running its action a second time."""
    actions = []
    op = barrier_ops.BarrierOp(
        2,
        wait_seconds=0.02,
        barrier_callbacks=[lambda action, session: actions.append(action)],
    )
    with tf.compat.v1.Session() as sess:
        _init(sess)
        op.place_barrier(sess, action="once")
        with pytest.raises(barrier_ops.BarrierTimeoutError):
            op.wait_until_barrier_removed(sess, 1, timeout=0.2)
        assert op.get_blocked_indices(sess) == [0]
        worker, result = _start(op.wait_until_barrier_removed, sess, 1, JOIN_TIMEOUT)
        _wait_for(lambda: op.is_all_blocked(sess))
        op.remove_barrier(sess)
        _join(worker)
        assert result == {"value": True}
    assert actions == ["once", "once"]  # the chief's, then the worker's


# ---------------------------------------------------------------------------
# The chief's bounded wait.


def test_wait_until_all_blocked_returns_once_every_worker_is_blocked(graph):
    op = barrier_ops.BarrierOp(3, wait_seconds=0.02)
    with tf.compat.v1.Session() as sess:
        _init(sess)
        op.place_barrier(sess)
        threads = [_start(op.wait_until_barrier_removed, sess, i, JOIN_TIMEOUT) for i in (1, 2)]
        op.wait_until_all_blocked(sess, timeout=JOIN_TIMEOUT)
        assert op.is_all_blocked(sess)
        op.remove_barrier(sess)
        for thread, result in threads:
            _join(thread)
            assert result == {"value": True}


def test_wait_until_all_blocked_times_out_naming_who_is_missing(graph):
    op = barrier_ops.BarrierOp(3, wait_seconds=0.02, name_prefix="sync")
    with tf.compat.v1.Session() as sess:
        _init(sess)
        op.place_barrier(sess)
        worker, _ = _start(op.wait_until_barrier_removed, sess, 1, JOIN_TIMEOUT)
        start = time.monotonic()
        with pytest.raises(barrier_ops.BarrierTimeoutError) as info:
            op.wait_until_all_blocked(sess, timeout=0.5)
        assert time.monotonic() - start < PROMPT
        error = info.value
        assert (error.barrier_name, error.index, error.timeout) == ("sync", 0, 0.5)
        assert "'sync'" in str(error) and "not blocked: [2]" in str(error), error
        op.remove_barrier(sess)
        _join(worker)


def test_wait_until_all_blocked_raises_when_the_barrier_is_lost(graph):
    """A ps that restarts comes back without the barrier (the chief's local
    init resets it): the chief's wait ends with an error, not a spin."""
    op = barrier_ops.BarrierOp(2, wait_seconds=0.02, name_prefix="lost")
    polls = _Polls(op)
    with tf.compat.v1.Session() as sess:
        _init(sess)
        with pytest.raises(barrier_ops.BarrierLostError, match="'lost'.*not placed"):
            op.wait_until_all_blocked(sess, timeout=JOIN_TIMEOUT)
        op.place_barrier(sess)
        chief, result = _start(op.wait_until_all_blocked, sess, JOIN_TIMEOUT)
        polls.wait_for_more(2)  # the chief waits
        sess.run(tf.compat.v1.local_variables_initializer())  # the ps restarted
        _join(chief)
        assert isinstance(result.get("error"), barrier_ops.BarrierLostError), result
        assert "generation 1" in str(result["error"])
        # Lost before the wait starts: the wait still knows what it placed.
        assert op.place_barrier(sess) == 1
        sess.run(tf.compat.v1.local_variables_initializer())
        with pytest.raises(barrier_ops.BarrierLostError) as info:
            op.wait_until_all_blocked(sess, timeout=JOIN_TIMEOUT)
        assert info.value.generation == 1 and info.value.barrier_name == "lost"


def test_wait_until_all_blocked_validates_timeout(graph):
    op = barrier_ops.BarrierOp(2)
    with tf.compat.v1.Session() as sess:
        _init(sess)
        op.place_barrier(sess)
        with pytest.raises(ValueError, match="timeout"):
            op.wait_until_all_blocked(sess, timeout=0)
        with pytest.raises(TypeError, match="timeout"):
            op.wait_until_all_blocked(sess, timeout="1")


# ---------------------------------------------------------------------------
# A hung ps: every run of a wait is bounded by its timeout.


class HungPsSession:
    """Passes runs through until `hang` is set; then every run blocks as on a
    stopped ps: until its RunOptions timeout (then DeadlineExceededError), or,
    without one, until `resume` is set."""

    def __init__(self, sess):
        self._sess = sess
        self.graph = sess.graph
        self.hang = threading.Event()
        self.resume = threading.Event()
        self.untimed_runs_while_hung = 0

    def run(self, fetches, feed_dict=None, options=None, run_metadata=None):
        if self.hang.is_set():
            timeout_ms = options.timeout_in_ms if options is not None else 0
            if timeout_ms > 0:
                time.sleep(timeout_ms / 1000.0)
                raise tf.errors.DeadlineExceededError(None, None, "ps hung")
            self.untimed_runs_while_hung += 1
            self.resume.wait(JOIN_TIMEOUT)
        return self._sess.run(fetches, feed_dict, options, run_metadata)


@pytest.mark.parametrize("hang_when", ["before the wait", "while blocked"])
@pytest.mark.slow
def test_a_hung_ps_cannot_stretch_the_timeout(graph, hang_when):
    timeout = 1.0
    op = barrier_ops.BarrierOp(2, wait_seconds=0.05)
    with tf.compat.v1.Session() as raw:
        _init(raw)
        sess = HungPsSession(raw)
        op.place_barrier(raw)
        if hang_when == "before the wait":
            sess.hang.set()
        start = time.monotonic()
        worker, result = _start(op.wait_until_barrier_removed, sess, 1, timeout)
        if hang_when == "while blocked":
            _wait_for(lambda: op.is_all_blocked(raw))
            sess.hang.set()
        try:
            worker.join(timeout + PROMPT)
            waited = time.monotonic() - start
            assert not worker.is_alive(), "the wait outlived its timeout"
        finally:
            sess.resume.set()
            _join(worker)
        assert isinstance(result.get("error"), barrier_ops.BarrierTimeoutError), result
        assert sess.untimed_runs_while_hung == 0
        assert waited < timeout + PROMPT


# ---------------------------------------------------------------------------
# Actions.


def test_an_action_that_is_not_valid_unicode_is_a_value_error(graph):
    op = barrier_ops.BarrierOp(2)
    bad = b"\xff\xfe".decode("utf-8", "surrogateescape")  # lone surrogates
    with tf.compat.v1.Session() as sess:
        _init(sess)
        with pytest.raises(ValueError, match="action"):
            op.place_barrier(sess, action=bad)
        assert not op.is_barrier_placed(sess)
