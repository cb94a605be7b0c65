# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""``BarrierOp``: the barrier's variables and the chief's and workers' calls
on them (docs/barrier.md)."""

import threading
import time
from collections.abc import Sequence
from typing import Any, Callable, Optional

import numpy as np
import tensorflow as tf

from monolith_ops._barrier.errors import (
    BarrierAlreadyPlacedError,
    BarrierLostError,
    BarrierTimeoutError,
    check_barrier_args,
    check_int,
    check_positive_number,
)
from monolith_ops._barrier.session import (
    BarrierState,
    WorkerFlags,
    logger,
    read_variable,
    run_bounded,
    scatter,
    session_is_closed,
    time_left,
)

# How often a waiting worker logs that it is still waiting, in seconds.
LOG_EVERY_SECS = 60.0

# Longest single sleep while waiting, so that stop requests, closed sessions and
# timeouts are noticed promptly even with a long `wait_seconds`.
SLEEP_SLICE_SECS = 0.05

# Bound on the run that clears a worker's flag after a failed wait (best effort).
CLEANUP_SECS = 2.0


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
        capacity, wait_seconds, name_prefix, barrier_callbacks = check_barrier_args(
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
        self._worker_flags = WorkerFlags(name_prefix, capacity, self._run_clear)

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
        self._remove_op = scatter(
            graph, self._barrier_vars, self._idx_ph, tf.constant(False), "remove"
        )
        self._flags_value = read_variable(graph, self._barrier_vars, "flags")
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
            placed = scatter(graph, self._barrier_vars, 0, tf.constant(True), "place_with_action")
        with tf.control_dependencies([placed]):
            self._place_op = read_variable(graph, self._generations, "placed_generation")[0]
        # A worker blocks: its generation, then its flag.
        with tf.control_dependencies(
            [scatter(graph, self._generations, self._idx_ph, self._gen_ph, "blocked_on")]
        ):
            self._block_op = scatter(
                graph, self._barrier_vars, self._idx_ph, tf.constant(True), "block"
            )
        # The whole state, read in this order: generations, action, flags,
        # generations. If both generation reads agree and flag 0 is set, the
        # action is that generation's (see _read_state).
        self._state_fetches = [read_variable(graph, self._generations, "generations_before")]
        for var, name in (
            (self._action, "action"),
            (self._barrier_vars, "state_flags"),
            (self._generations, "generations"),
        ):
            with tf.control_dependencies(self._state_fetches[-1:]):
                self._state_fetches.append(read_variable(graph, var, name))

    def _run_clear(self, session, index, deadline):
        run_bounded(session, self._remove_op, {self._idx_ph: index}, deadline)

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
        timeout = check_positive_number(timeout, "timeout", allow_none=True)
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
            if session_is_closed(session):
                logger.info(
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
                timeout=None if released and timeout is None else CLEANUP_SECS,
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
        timeout = check_positive_number(timeout, "timeout", allow_none=True)
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
            left = time_left(deadline)
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
        gens_before, action, flags, gens = run_bounded(
            session, self._state_fetches, deadline=deadline
        )
        consistent = gens_before[0] == gens[0]
        return BarrierState(
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
        index = check_int(index, "index")
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
        return (should_stop is not None and should_stop()) or session_is_closed(session)

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
                    run_bounded(
                        session,
                        self._block_op,
                        {self._idx_ph: index, self._gen_ph: state.generation},
                        deadline,
                    )
                except tf.errors.DeadlineExceededError as e:
                    raise self._timeout_error(index, start, timeout) from e
                blocked_on = state.generation
                logger.info(
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
            if now - last_log >= LOG_EVERY_SECS:
                logger.info(
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
                time.sleep(min(left, SLEEP_SLICE_SECS))

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
        """For `BarrierHook`: its worker's session was created (see WorkerFlags)."""
        self._worker_flags.clear_on_session_start(session, index, timeout)

    def _clear_flag_if_stale(self, session, index, timeout):
        """For `BarrierHook`: its worker starts a step (see WorkerFlags)."""
        self._worker_flags.clear_if_stale(session, index, timeout)
