# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""A barrier on TensorFlow variables that lets a chief pause its workers.

In a parameter-server cluster the chief places the barrier; every worker that
runs a `BarrierHook` notices it at its next step boundary, runs the barrier
callbacks with the chief's *action* string, marks itself blocked and waits.
The chief waits until every worker is blocked (`wait_until_all_blocked`), does
its work (save, restore, reshard, ...) and removes the barrier; the workers
go on.

Each placement is a new *generation* of the barrier, run once by each worker,
even when the chief places the next one before the workers have seen the
previous one removed.

Order in which TensorFlow calls `BarrierHook` (see `session_run_hook.py`)::

  hook.begin()                         # nothing to do
  sess = tf.compat.v1.Session()
  hook.after_create_session(sess, coord)   # clears this worker's stale flag
  while not stop:
    hook.before_run(run_context)       # the step's own run fetches flag 0
    sess.run(...)
    hook.after_run(run_context, run_values)  # placed? callbacks, block, wait
  hook.end(sess)

The variables, the guarantees, the timeouts, what a hung or dead ps does, and
the departures from Monolith's original: docs/barrier.md.
"""

import collections
import logging
import math
import numbers
import threading
import time
from collections.abc import Sequence
from typing import Any, Callable, Optional

import numpy as np
import tensorflow as tf

__all__ = [
    "BarrierAlreadyPlacedError",
    "BarrierLostError",
    "BarrierTimeoutError",
    "BarrierOp",
    "BarrierHook",
]

_logger = logging.getLogger(__name__)

# How often a waiting worker logs that it is still waiting, in seconds.
_LOG_EVERY_SECS = 60.0

# Longest single sleep while waiting, so that stop requests, closed sessions and
# timeouts are noticed promptly even with a long `wait_seconds`.
_SLEEP_SLICE_SECS = 0.05

# Bound on the run that clears a worker's flag after a failed wait (best effort).
_CLEANUP_SECS = 2.0


class BarrierAlreadyPlacedError(RuntimeError):
    """Raised by `BarrierOp.place_barrier` when the barrier is already placed."""


class BarrierLostError(RuntimeError):
    """Raised by `BarrierOp.wait_until_all_blocked` when the barrier it waits on
    is not placed (any more): removed, or lost with a ps that restarted.

    Attributes:
      barrier_name: the `name_prefix` of the barrier.
      generation: the generation that was lost (None if none was placed).
    """

    def __init__(self, message: str, barrier_name: str, generation: Optional[int]) -> None:
        super().__init__(message)
        self.barrier_name = barrier_name
        self.generation = generation


class BarrierTimeoutError(TimeoutError):
    """Raised when a wait on the barrier outlived its timeout.

    Attributes:
      barrier_name: the `name_prefix` of the barrier.
      index: the worker index that was waiting (0: the chief, waiting for the
        workers to block).
      waited_secs: how long it waited, in seconds.
      timeout: the timeout it was given, in seconds.
    """

    def __init__(
        self, message: str, barrier_name: str, index: int, waited_secs: float, timeout: float
    ) -> None:
        super().__init__(message)
        self.barrier_name = barrier_name
        self.index = index
        self.waited_secs = waited_secs
        self.timeout = timeout


def _check_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r} of type {type(value).__name__}.")
    return int(value)


def _check_positive_number(value, name, allow_none=False):
    """Checks `value` is a real number > 0 (or None if `allow_none`)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            "{} must be {}a number of seconds > 0, got {!r} of type {}.".format(
                name,
                "None or " if allow_none else "",
                value,
                type(value).__name__,
            )
        )
    value = float(value)
    if not value > 0:  # Also rejects NaN.
        raise ValueError(
            "{} must be {}> 0, got {!r}.".format(name, "None or " if allow_none else "", value)
        )
    if allow_none and math.isinf(value):
        return None  # An infinite timeout is no timeout.
    return value


def _session_is_closed(session):
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


class _WorkerFlags:
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
            if not _session_is_closed(session):
                self._run_clear(
                    session, index, None if timeout is None else time.monotonic() + timeout
                )
                self._stale.discard(index)
                return None
            error = "the session is closed"
        except Exception as e:
            if must_succeed and not _session_is_closed(session):
                raise
            error = e
        self._stale.add(index)
        return error

    def _warn_if_failed(self, index, error):
        if error is not None:
            _logger.warning(
                "Could not clear the flag of worker %d on barrier '%s' (%s); its "
                "BarrierHook clears it at its next step.",
                index,
                self._barrier_name,
                error,
            )


def _check_barrier_args(capacity, wait_seconds, name_prefix, barrier_callbacks):
    """The arguments of `BarrierOp`, checked: (capacity, wait_seconds,
    name_prefix, list of callbacks). Raises TypeError or ValueError naming
    the argument, and RuntimeError outside graph mode."""
    capacity = _check_int(capacity, "capacity")
    if capacity < 1:
        raise ValueError(f"capacity must be >= 1 (1 + the number of workers), got {capacity}.")
    wait_seconds = _check_positive_number(wait_seconds, "wait_seconds")
    if not math.isfinite(wait_seconds):
        raise ValueError(f"wait_seconds must be finite, got {wait_seconds!r}.")
    if not isinstance(name_prefix, str):
        raise TypeError(
            f"name_prefix must be a str, got {name_prefix!r} of type {type(name_prefix).__name__}."
        )
    if not name_prefix:
        raise ValueError("name_prefix must be a non-empty str.")
    if barrier_callbacks is None:
        barrier_callbacks = []
    elif callable(barrier_callbacks) or isinstance(barrier_callbacks, (str, bytes)):
        raise TypeError(
            f"barrier_callbacks must be a list of callables, got {barrier_callbacks!r}."
        )
    else:
        barrier_callbacks = list(barrier_callbacks)
        for i, callback in enumerate(barrier_callbacks):
            if not callable(callback):
                raise TypeError(
                    f"barrier_callbacks[{i}] must be callable(action, session), got {callback!r}."
                )
    if tf.executing_eagerly() or tf.inside_function():
        raise RuntimeError(
            "BarrierOp needs graph mode: build it in a tf.compat.v1.Graph (or "
            "after tf.compat.v1.disable_eager_execution()) and run it with a "
            "tf.compat.v1 session, not eagerly or inside a tf.function."
        )
    return capacity, wait_seconds, name_prefix, barrier_callbacks


class BarrierOp:
    """A barrier on TF variables with which a chief blocks its workers.

    Thread safe: any number of threads may place, remove, query and wait on one
    `BarrierOp` (placing is serialized in this process; each flag is written by
    an atomic one-element update on the variable's device).

    Needs graph mode (`tf.compat.v1` sessions): all ops are built here, so the
    graph can be finalized afterwards, as `MonitoredSession` does.
    """

    def __init__(
        self,
        capacity: int,
        is_chief: bool = True,
        wait_seconds: float = 1,
        name_prefix: str = "default",
        barrier_callbacks: Optional[Sequence[Callable[[str, Any], None]]] = None,
    ) -> None:
        """Builds the barrier variables and ops in the default graph.

        Args:
          capacity: int >= 1, the length of the flag vector: 1 + the number of
            workers that may block (worker indices are 1 .. capacity - 1).
          is_chief: True on the chief, whose copy of the variables is LOCAL; False
            on workers, whose copy is GLOBAL (so they wait for the chief to
            initialize it).
          wait_seconds: number > 0, seconds between two polls of the barrier while
            a worker waits.
          name_prefix: non-empty str; the variables live under
            ``<name_prefix>_barrier_op/``. Chief and workers must use the same one.
          barrier_callbacks: None or a list of callables ``callback(action,
            session)``, called on the chief after it places the barrier and on a
            worker when it blocks, with the action string given to
            `place_barrier`.

        Raises:
          TypeError: if an argument has the wrong type (the message names it).
          ValueError: if `capacity` < 1, `wait_seconds` <= 0 or `name_prefix` is
            empty.
          RuntimeError: if called eagerly or inside a `tf.function`.
        """
        capacity, wait_seconds, name_prefix, barrier_callbacks = _check_barrier_args(
            capacity, wait_seconds, name_prefix, barrier_callbacks
        )
        self._capacity = capacity
        self._is_chief = bool(is_chief)
        self._wait_seconds = wait_seconds
        self._name = name_prefix
        self._barrier_callbacks = barrier_callbacks
        # Serializes place_barrier (check, place, callbacks) within this process.
        self._place_lock = threading.Lock()
        # The generation this object placed last (None: none yet).
        self._placed_generation = None
        self._build_graph()
        self._worker_flags = _WorkerFlags(name_prefix, capacity, self._run_clear)

    def _build_graph(self):
        """The variables and every op this object runs, in the default graph,
        under ``<name_prefix>_barrier_op/``."""
        with tf.compat.v1.variable_scope(self._name + "_barrier_op"):
            self._build_variables()
            self._build_ops(tf.compat.v1.get_default_graph())

    def _build_variables(self):
        """The three variables (LOCAL on the chief, GLOBAL on workers) and the
        placeholders the ops are fed with."""
        capacity = self._capacity
        var_collections = [
            tf.compat.v1.GraphKeys.LOCAL_VARIABLES
            if self._is_chief
            else tf.compat.v1.GraphKeys.GLOBAL_VARIABLES
        ]

        def variable(name, initializer, dtype):
            return tf.compat.v1.get_variable(
                name,
                initializer=initializer,
                dtype=dtype,
                trainable=False,
                collections=var_collections,
                use_resource=True,
            )

        self._barrier_vars = variable("barrier_var", [False] * capacity, tf.bool)
        self._action = variable("barrier_op_action", "", tf.string)
        # [0]: the generation of the barrier, incremented by each place;
        # [i > 0]: the generation worker i last blocked on.
        self._generations = variable("barrier_generation", np.zeros(capacity, np.int64), tf.int64)
        self._idx_ph = tf.compat.v1.placeholder(tf.int32, shape=[], name="index_placeholder")
        self._gen_ph = tf.compat.v1.placeholder(tf.int64, shape=[], name="generation_placeholder")
        self._action_placeholder = tf.compat.v1.placeholder(
            tf.string, shape=[], name="barrier_op_action_placeholder"
        )

    def _build_ops(self, graph):
        """The ops on the variables, each colocated with the variable it uses."""
        # Clears a flag: index 0 removes the barrier.
        self._remove_op = _scatter(
            graph, self._barrier_vars, self._idx_ph, tf.constant(False), "remove"
        )
        self._flags_value = _read(graph, self._barrier_vars, "flags")
        with graph.colocate_with(self._barrier_vars.op):
            self._barrier_placed_tensor = tf.identity(self._flags_value[0], name="barrier_placed")
        # The chief's place, in this order: the action, the generation,
        # flag 0; it fetches the new generation.
        with graph.colocate_with(self._action.op):
            assign_action = tf.raw_ops.AssignVariableOp(
                resource=self._action.handle,
                value=self._action_placeholder,
                name="assign_action",
            )
        with tf.control_dependencies([assign_action]):
            with graph.colocate_with(self._generations.op):
                bump = tf.raw_ops.ResourceScatterAdd(
                    resource=self._generations.handle,
                    indices=tf.constant(0, tf.int32),
                    updates=tf.constant(1, tf.int64),
                    name="next_generation",
                )
        with tf.control_dependencies([bump]):
            placed = _scatter(graph, self._barrier_vars, 0, tf.constant(True), "place_with_action")
        with tf.control_dependencies([placed]):
            self._place_op = _read(graph, self._generations, "placed_generation")[0]
        # A worker blocks: its generation, then its flag.
        with tf.control_dependencies(
            [_scatter(graph, self._generations, self._idx_ph, self._gen_ph, "blocked_on")]
        ):
            self._block_op = _scatter(
                graph, self._barrier_vars, self._idx_ph, tf.constant(True), "block"
            )
        # The whole state, read in this order: generations, action, flags,
        # generations. If both generation reads agree and flag 0 is set, the
        # action is that generation's (see _read_state).
        self._state_fetches = [_read(graph, self._generations, "generations_before")]
        for var, name in (
            (self._action, "action"),
            (self._barrier_vars, "state_flags"),
            (self._generations, "generations"),
        ):
            with tf.control_dependencies(self._state_fetches[-1:]):
                self._state_fetches.append(_read(graph, var, name))

    def _run_clear(self, session, index, deadline):
        _run(session, self._remove_op, {self._idx_ph: index}, deadline)

    @property
    def capacity(self) -> int:
        """The length of the flag vector (1 + the number of workers)."""
        return self._capacity

    @property
    def name(self) -> str:
        """The `name_prefix` this barrier was built with."""
        return self._name

    @property
    def barrier_placed_tensor(self) -> tf.Tensor:
        """A bool scalar tensor: True while the chief's barrier is placed."""
        return self._barrier_placed_tensor

    def place_barrier(self, session: Any, action: str = "") -> int:
        """Places a new generation of the barrier with `action`, then runs the
        callbacks.

        Args:
          session: a `tf.compat.v1.Session` (or a monitored session) on the graph.
          action: str handed to every callback, here and on each worker.

        Returns:
          The generation placed, an int: 1 for the first barrier since the
          variables were initialized, then 2, 3, ...

        Raises:
          BarrierAlreadyPlacedError: if the barrier is already placed.
          TypeError: if `action` is not a str.
          ValueError: if `action` cannot be encoded as UTF-8 (lone surrogates).
        """
        if not isinstance(action, str):
            raise TypeError(
                f"action must be a str, got {action!r} of type {type(action).__name__}."
            )
        try:
            action.encode("utf-8")
        except UnicodeEncodeError as e:
            raise ValueError(
                f"action must be text that UTF-8 can encode, got {action!r} ({e})."
            ) from None
        with self._place_lock:
            if session.run(self._barrier_placed_tensor):
                raise BarrierAlreadyPlacedError(
                    f"Barrier '{self._name}' is already placed; remove it before placing it again."
                )
            generation = int(
                session.run(self._place_op, feed_dict={self._action_placeholder: action})
            )
            self._placed_generation = generation
            self._run_barrier_callbacks(action, session)
        return generation

    def remove_barrier(self, session: Any) -> None:
        """Removes the barrier (clears flag 0). No check; workers then resume."""
        session.run(self._remove_op, feed_dict={self._idx_ph: 0})

    def is_barrier_placed(self, session: Any) -> bool:
        """Returns True if the barrier is placed."""
        return bool(session.run(self._barrier_placed_tensor))

    def is_barrier_removed(self, session: Any) -> bool:
        """Returns True if the barrier is not placed."""
        return not self.is_barrier_placed(session)

    def wait_until_barrier_removed(
        self,
        session: Any,
        index: int,
        timeout: Optional[float] = None,
        should_stop: Optional[Callable[[], bool]] = None,
    ) -> bool:
        """Blocks worker `index` on the barrier until the chief removes it.

        For each generation of the barrier it sees placed, and has not yet run,
        the worker runs the callbacks with its action, then marks itself blocked
        on it. It polls every `wait_seconds` (logging every 60 s) until the
        barrier is removed, then clears its flag. docs/barrier.md has the
        details.

        Args:
          session: a `tf.compat.v1.Session` on the graph (in a hook:
            `run_context.session`).
          index: int, this worker's index, 0 < index < capacity.
          timeout: None or float("inf") (wait forever), or seconds > 0: how long
            the worker may wait on one generation, every `session.run` of the
            wait included.
          should_stop: None or a callable returning True when the wait should end
            early (e.g. `coord.should_stop`).

        Returns:
          True if the barrier was removed; False if the wait ended early because
          `should_stop()` returned True or the session was closed (the flag is then
          cleared if the session still allows it).

        Raises:
          ValueError: unless 0 < index < capacity, or if `timeout` <= 0.
          TypeError: if `index`, `timeout` or `should_stop` has the wrong type.
          BarrierTimeoutError: if the barrier is still placed after `timeout`
            seconds, or the ps did not answer within it (flag `index` is
            cleared first, where possible).
        """
        index = self._check_worker_index(index)
        timeout = _check_positive_number(timeout, "timeout", allow_none=True)
        if should_stop is not None and not callable(should_stop):
            raise TypeError(f"should_stop must be None or a callable, got {should_stop!r}.")
        self._worker_flags.enter(index)
        released = False
        try:
            released = self._wait(session, index, timeout, should_stop)
            return released
        except (
            RuntimeError,
            tf.errors.CancelledError,
            tf.errors.FailedPreconditionError,
        ):
            if _session_is_closed(session):
                _logger.info(
                    "Worker %d stops waiting for barrier '%s': the session was closed.",
                    index,
                    self._name,
                )
                return False
            raise
        finally:
            self._worker_flags.leave(
                session,
                index,
                must_succeed=released,
                # Best effort, and bounded, unless the wait succeeded untimed.
                timeout=None if released and timeout is None else _CLEANUP_SECS,
            )

    def wait_until_all_blocked(self, session: Any, timeout: Optional[float] = None) -> None:
        """Waits until every worker is blocked on the barrier.

        For the chief, after `place_barrier`: polls every `wait_seconds`, each
        poll bounded by the time left. The barrier waited on is the generation
        this object placed last, else the one placed when the wait starts.

        Args:
          session: a `tf.compat.v1.Session` (or a monitored session) on the graph.
          timeout: None (wait as long as it takes) or seconds > 0.

        Raises:
          BarrierTimeoutError: if some worker is not blocked after `timeout`
            seconds, or the ps did not answer within it; the message lists the
            workers not blocked. Its `index` is 0.
          BarrierLostError: if that barrier is not placed (any more): removed,
            replaced, or lost with a ps that restarted.
          TypeError, ValueError: if `timeout` is not None or a number > 0.
        """
        timeout = _check_positive_number(timeout, "timeout", allow_none=True)
        start = time.monotonic()
        deadline = None if timeout is None else start + timeout
        generation = self._placed_generation
        missing = None
        while True:
            try:
                state = self._read_state(session, deadline)
            except tf.errors.DeadlineExceededError as e:
                raise self._timeout_error(0, start, timeout, missing) from e
            if not state.placed:
                raise self._lost_error(generation)
            if state.generation is not None:
                if generation not in (None, state.generation):
                    raise self._lost_error(generation)  # removed and placed again
                generation = state.generation
                missing = self._not_blocked(state)
                if not missing:
                    return
            left = _time_left(deadline)
            if left is not None and left <= 0:
                raise self._timeout_error(0, start, timeout, missing)
            if left is not None and left < self._wait_seconds:
                time.sleep(left)
            else:
                time.sleep(self._wait_seconds)

    def is_all_blocked(self, session: Any) -> bool:
        """True if the barrier is placed and every worker is blocked on it (on
        this generation, not an earlier one)."""
        state = self._read_state(session)
        return state.placed and state.generation is not None and not self._not_blocked(state)

    def is_none_blocked(self, session: Any) -> bool:
        """True if no flag (neither the barrier nor any worker) is set."""
        return not any(self._read_flags(session))

    def get_unblocked_indices(self, session: Any) -> list[int]:
        """The indices whose flag is clear (index 0 is the barrier itself)."""
        flags = self._read_flags(session)
        return [i for i in range(self._capacity) if not flags[i]]

    def get_blocked_indices(self, session: Any) -> list[int]:
        """The indices whose flag is set (index 0 is the barrier itself),
        whatever generation each worker is blocked on.

        A worker that died while blocked stays listed until it restarts (its
        `BarrierHook` clears the flag when its session is created) or blocks
        again.
        """
        flags = self._read_flags(session)
        return [i for i in range(self._capacity) if flags[i]]

    def _read_flags(self, session):
        return [bool(f) for f in session.run(self._flags_value)]

    def _read_state(self, session, deadline=None):
        """One ordered read of everything; `generation` is None when a place
        ran during the read (then `action` may belong to either generation).

        Why the order makes `action` safe: the chief writes the action, then
        the generation, then flag 0, and only after flag 0 was cleared. If the
        action read here came from a later place than the first generation
        read, flag 0 was cleared before it and set again before the flag read,
        and that place's new generation is then seen by the last read.
        """
        gens_before, action, flags, gens = _run(session, self._state_fetches, deadline=deadline)
        consistent = gens_before[0] == gens[0]
        return _State(
            placed=bool(flags[0]),
            generation=int(gens[0]) if consistent else None,
            action=action.decode("utf-8") if isinstance(action, bytes) else action,
            flags=[bool(f) for f in flags],
            generations=[int(g) for g in gens],
        )

    def _not_blocked(self, state):
        """Workers not blocked on the generation of `state`."""
        return [
            i
            for i in range(1, self._capacity)
            if not (state.flags[i] and state.generations[i] == state.generation)
        ]

    def _check_worker_index(self, index):
        index = _check_int(index, "index")
        if not 0 < index < self._capacity:
            raise ValueError(
                f"index must satisfy 0 < index < capacity ({self._capacity}), got {index}; index 0 is "
                "the chief's barrier."
            )
        return index

    def _run_barrier_callbacks(self, action, session):
        for callback in self._barrier_callbacks:
            callback(action, session)

    def _stopped(self, session, should_stop):
        return (should_stop is not None and should_stop()) or _session_is_closed(session)

    def _wait(self, session, index, timeout, should_stop):
        """The worker's loop: block on each new generation until removed.

        True once removed, False if stopped; raises BarrierTimeoutError.
        """
        start = last_log = time.monotonic()
        blocked_on = None  # the generation this call has marked itself blocked on
        while True:
            if self._stopped(session, should_stop):
                return False
            deadline = None if timeout is None else start + timeout
            try:
                state = self._read_state(session, deadline)
            except tf.errors.DeadlineExceededError as e:
                raise self._timeout_error(index, start, timeout) from e
            if not state.placed:
                return True
            if state.generation is not None and state.generation != blocked_on:
                if blocked_on is not None:  # a new barrier: a new timeout
                    start = last_log = time.monotonic()
                    deadline = None if timeout is None else start + timeout
                if state.generations[index] != state.generation:
                    self._run_barrier_callbacks(state.action, session)
                try:
                    _run(
                        session,
                        self._block_op,
                        {self._idx_ph: index, self._gen_ph: state.generation},
                        deadline,
                    )
                except tf.errors.DeadlineExceededError as e:
                    raise self._timeout_error(index, start, timeout) from e
                blocked_on = state.generation
                _logger.info(
                    "Worker %d is blocked by barrier '%s' (generation %d, action %r).",
                    index,
                    self._name,
                    blocked_on,
                    state.action,
                )
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise self._timeout_error(index, start, timeout)
            if state.generation is None:
                continue  # the chief is placing right now: read again
            if now - last_log >= _LOG_EVERY_SECS:
                _logger.info(
                    "Worker %d has waited %.0f s for barrier '%s' to be removed.",
                    index,
                    now - start,
                    self._name,
                )
                last_log = now
            wake = now + self._wait_seconds
            if deadline is not None:
                wake = min(wake, deadline)
            while True:
                left = wake - time.monotonic()
                if left <= 0:
                    break
                if self._stopped(session, should_stop):
                    return False
                time.sleep(min(left, _SLEEP_SLICE_SECS))

    def _timeout_error(self, index, start, timeout, missing=None):
        waited = time.monotonic() - start
        if index:
            what = f"Worker {index} waited {waited:.1f} s for barrier '{self._name}' to be removed"
            hint = "Is the chief alive, and does the ps answer?"
        else:
            what = (
                f"The chief waited {waited:.1f} s for every worker to block on barrier "
                f"'{self._name}'"
            )
            hint = "Workers not blocked: {}. Are they alive, and does the ps answer?".format(
                "unknown" if missing is None else missing
            )
        return BarrierTimeoutError(
            f"{what} and gave up (timeout={timeout:g} s). {hint}",
            self._name,
            index,
            waited,
            timeout,
        )

    def _lost_error(self, generation):
        if generation is None:
            message = f"Barrier '{self._name}' is not placed; place it first."
        else:
            message = (
                f"Barrier '{self._name}' (generation {generation}) is no longer placed while the chief "
                "waits for the workers: it was removed, or the ps restarted and "
                "lost it (workers waiting on it were released). See "
                "docs/barrier.md."
            )
        return BarrierLostError(message, self._name, generation)

    def _clear_flag_on_session_start(self, session, index, timeout):
        """For `BarrierHook`: its worker's session was created (see _WorkerFlags)."""
        self._worker_flags.clear_on_session_start(session, index, timeout)

    def _clear_flag_if_stale(self, session, index, timeout):
        """For `BarrierHook`: its worker starts a step (see _WorkerFlags)."""
        self._worker_flags.clear_if_stale(session, index, timeout)


def _scatter(graph, var, index, value, name):
    """var[index] = value, on var's device."""
    with graph.colocate_with(var.op):
        return tf.raw_ops.ResourceScatterUpdate(
            resource=var.handle, indices=index, updates=value, name=name
        )


def _read(graph, var, name):
    """The value of var, read on its device."""
    with graph.colocate_with(var.op):
        return tf.raw_ops.ReadVariableOp(resource=var.handle, dtype=var.dtype, name=name)


_State = collections.namedtuple(
    "_State", ["placed", "generation", "action", "flags", "generations"]
)


def _time_left(deadline):
    return None if deadline is None else deadline - time.monotonic()


def _run(session, fetches, feed_dict=None, deadline=None):
    """session.run, bounded by `deadline` (time.monotonic()) when one is given:
    raises DeadlineExceededError once it has passed or the run outlives it."""
    left = _time_left(deadline)
    if left is None:
        return session.run(fetches, feed_dict)
    if left <= 0:
        raise tf.errors.DeadlineExceededError(None, None, "deadline passed")
    options = tf.compat.v1.RunOptions(timeout_in_ms=max(1, int(left * 1000)))
    return session.run(fetches, feed_dict, options=options)


class BarrierHook(tf.compat.v1.train.SessionRunHook):
    """Blocks a worker at a step boundary while the chief's barrier is placed.

    The barrier flag is fetched with each step's own run (`before_run`), so the
    hook adds no round trip. When it is set, `after_run` calls
    `BarrierOp.wait_until_barrier_removed`. With index 0 (the chief) the hook
    does nothing.

    The wait ends early, and the hook requests a stop, when the monitored
    session's coordinator is asked to stop (e.g. the session is being closed) or
    the session is closed. With a `timeout`, a wait that lasts longer raises
    `BarrierTimeoutError` out of `session.run`.

    When its session is created, the hook clears this worker's flag (one run),
    in case an earlier life of the worker died while blocked. A flag that a
    waiter could not clear because its session was closed (e.g. a monitored
    session recreated by another thread while this one waited) is cleared by
    the hook's next step.
    """

    def __init__(self, index: int, barrier_op: BarrierOp, timeout: Optional[float] = None) -> None:
        """Creates the hook.

        Args:
          index: int, 0 <= index < barrier_op.capacity; this worker's flag index
            (0 for the chief, which never blocks).
          barrier_op: the `BarrierOp` to watch.
          timeout: None (wait as long as the barrier stays) or seconds > 0.

        Raises:
          TypeError: if `barrier_op` is not a `BarrierOp`, or an argument has the
            wrong type.
          ValueError: if `index` is out of range or `timeout` <= 0.
        """
        if not isinstance(barrier_op, BarrierOp):
            raise TypeError(f"barrier_op must be a BarrierOp, got {barrier_op!r}.")
        index = _check_int(index, "index")
        if not 0 <= index < barrier_op.capacity:
            raise ValueError(
                f"index must satisfy 0 <= index < capacity ({barrier_op.capacity}), got {index}."
            )
        self._index = index
        self._barrier_op = barrier_op
        self._timeout = _check_positive_number(timeout, "timeout", allow_none=True)
        self._coord = None

    def after_create_session(self, session: Any, coord: Any) -> None:
        self._coord = coord
        if self._index != 0:
            # This worker is starting, so it is not blocked: a flag left set
            # by a previous life of it that died blocked would otherwise
            # keep the chief from ever seeing every worker resume.
            self._barrier_op._clear_flag_on_session_start(session, self._index, self._timeout)

    def _should_stop(self):
        coord = self._coord
        return coord is not None and coord.should_stop()

    def before_run(self, run_context: Any) -> Optional[tf.compat.v1.train.SessionRunArgs]:
        if self._index == 0:
            return None
        self._barrier_op._clear_flag_if_stale(run_context.session, self._index, self._timeout)
        return tf.compat.v1.train.SessionRunArgs(self._barrier_op.barrier_placed_tensor)

    def after_run(self, run_context: Any, run_values: Any) -> None:
        if self._index == 0 or not run_values.results:
            return
        released = self._barrier_op.wait_until_barrier_removed(
            run_context.session,
            self._index,
            timeout=self._timeout,
            should_stop=self._should_stop,
        )
        if not released:
            run_context.request_stop()
