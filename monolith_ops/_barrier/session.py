# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""Session runs bounded by a deadline, the variables' reads and writes on
their device, and the flags each worker clears, for ``BarrierOp``."""

import collections
import logging
import threading
import time

import tensorflow as tf

# Logged as the public module, where users look for it.
logger = logging.getLogger("monolith_ops.barrier_ops")


def session_is_closed(session):
    """True if `session` is known to be closed (or its monitored session stopped)."""
    closed = getattr(session, "_closed", None)  # tf.compat.v1.Session
    if isinstance(closed, bool):
        return closed
    should_stop = getattr(session, "should_stop", None)  # MonitoredSession & co.
    if callable(should_stop):
        try:
            return bool(should_stop())
        except Exception:
            return False
    return False


class WorkerFlags:
    """The one owner of the workers' flags on this side: which indices have a
    waiter in this process, which flags could not be cleared, and every clear.

    One lock guards the waiter counts, the stale set, and each clear's run, so
    that a flag is never cleared under a thread that is waiting on it through
    the same `BarrierOp`. A worker's flag is set only by `BarrierOp._wait`
    (with the block op); it is cleared only here: when the last waiter on the
    index leaves (`leave`), when the worker's session is created
    (`clear_on_session_start`), and at the worker's next step when an earlier
    clear failed (`clear_if_stale`).
    """

    def __init__(self, barrier_name, capacity, run_clear):
        """`run_clear(session, index, deadline)` runs the op clearing flag `index`."""
        self._barrier_name = barrier_name
        self._run_clear = run_clear
        self._lock = threading.Lock()
        self._waiters = [0] * capacity
        # Indices whose flag the last waiter could not clear (e.g. its session
        # was closed); the hook clears them at its next step.
        self._stale = set()

    def enter(self, index):
        """A thread starts waiting on `index`."""
        with self._lock:
            self._waiters[index] += 1

    def leave(self, session, index, must_succeed, timeout):
        """A thread stops waiting on `index`; the last one clears the flag.

        Unless `must_succeed`, a failure to clear is only logged, and the flag
        is cleared at the hook's next step."""
        with self._lock:
            self._waiters[index] -= 1
            error = self._clear_locked(session, index, must_succeed, timeout)
        self._warn_if_failed(index, error)

    def clear_on_session_start(self, session, index, timeout):
        """Clears flag `index` (unless a thread waits on it): a worker whose
        session is being created is not blocked."""
        with self._lock:
            error = self._clear_locked(session, index, True, timeout)
        self._warn_if_failed(index, error)

    def clear_if_stale(self, session, index, timeout):
        """Clears flag `index` if an earlier clear of it failed."""
        # Every step comes here: without the lock when nothing is stale (a
        # set's membership test is atomic), so that a step never waits on a
        # clear that another thread runs under the lock.
        if index not in self._stale:
            return
        with self._lock:
            if index not in self._stale:
                return
            error = self._clear_locked(session, index, True, timeout)
        self._warn_if_failed(index, error)

    def _clear_locked(self, session, index, must_succeed, timeout):
        """Clears flag `index` unless it has a waiter; the lock is held.

        Returns None, or what kept it from being cleared (then marked stale)."""
        if self._waiters[index]:
            return None
        try:
            if not session_is_closed(session):
                self._run_clear(
                    session, index, None if timeout is None else time.monotonic() + timeout
                )
                self._stale.discard(index)
                return None
            error = "the session is closed"
        except Exception as e:
            if must_succeed and not session_is_closed(session):
                raise
            error = e
        self._stale.add(index)
        return error

    def _warn_if_failed(self, index, error):
        if error is not None:
            logger.warning(
                "Could not clear the flag of worker %d on barrier '%s' (%s); its "
                "BarrierHook clears it at its next step.",
                index,
                self._barrier_name,
                error,
            )


def scatter(graph, var, index, value, name):
    """var[index] = value, on var's device."""
    with graph.colocate_with(var.op):
        return tf.raw_ops.ResourceScatterUpdate(
            resource=var.handle, indices=index, updates=value, name=name
        )


def read_variable(graph, var, name):
    """The value of var, read on its device."""
    with graph.colocate_with(var.op):
        return tf.raw_ops.ReadVariableOp(resource=var.handle, dtype=var.dtype, name=name)


BarrierState = collections.namedtuple(
    "BarrierState", ["placed", "generation", "action", "flags", "generations"]
)


def time_left(deadline):
    return None if deadline is None else deadline - time.monotonic()


def run_bounded(session, fetches, feed_dict=None, deadline=None):
    """session.run, bounded by `deadline` (time.monotonic()) when one is given:
    raises DeadlineExceededError once it has passed or the run outlives it."""
    left = time_left(deadline)
    if left is None:
        return session.run(fetches, feed_dict)
    if left <= 0:
        raise tf.errors.DeadlineExceededError(None, None, "deadline passed")
    options = tf.compat.v1.RunOptions(timeout_in_ms=max(1, int(left * 1000)))
    return session.run(fetches, feed_dict, options=options)
