"""A barrier on TensorFlow variables that lets a chief pause its workers.

In a parameter-server cluster the chief places the barrier; every worker that
runs a `BarrierHook` notices it at its next step boundary, runs the barrier
callbacks with the chief's *action* string, marks itself blocked and waits.
The chief sees who is blocked (`is_all_blocked`, `get_blocked_indices`), does
its work (save, restore, reshard, ...) and removes the barrier; the workers
clear their flags and continue.

State lives in one bool vector variable of length `capacity` (plus a string
variable for the action), normally placed on a ps task:

* element 0 is the barrier itself: True while the chief holds it;
* element i > 0 is worker i's "I am blocked" flag.

The chief creates its copy of the variables as LOCAL variables (its
`local_init_op` initializes them, and checkpoints never hold them); workers
create theirs as GLOBAL variables, so they never initialize them themselves but
wait, as for any global variable, until the chief has. Both must build the
`BarrierOp` with the same `name_prefix` under the same device placement
(e.g. `tf.compat.v1.train.replica_device_setter`), so that both copies resolve
to the same variables on the ps.

Every flag is written with a one-element scatter update on the variable's own
device, never by a read-modify-write of the whole vector from Python, so
concurrent writers (chief and workers, or threads) never lose each other's
updates.

Order in which TensorFlow calls `BarrierHook` (see `session_run_hook.py`)::

  hook.begin()                         # graph still editable; nothing to do
  sess = tf.compat.v1.Session()
  hook.after_create_session(sess, coord)   # the hook keeps `coord`
  while not stop:
    hook.before_run(run_context)       # asks the step's own run to fetch flag 0
    sess.run(...)                      # the step: no extra round trip
    hook.after_run(run_context, run_values)  # flag set? callbacks, block, wait
  hook.end(sess)

Departures from Monolith's original, on purpose (docs/barrier.md has them all):

* `wait_until_barrier_removed` requires ``0 < index < capacity``; the original
  let ``index == capacity`` through.
* `place_barrier` raises `BarrierAlreadyPlacedError` if the barrier is placed
  (documented for the original, not checked by its code).
* A worker runs the barrier callbacks *before* it marks itself blocked, so once
  the chief sees a worker blocked, that worker's callbacks have finished.
* On workers the action variable is GLOBAL like the flag vector (it was LOCAL
  everywhere), so a worker that (re)starts while a barrier is placed does not
  reset the chief's action to "".
* The chief writes the action before the flag, in one run, so a worker that
  sees the flag always reads the new action.
* The variables are not trainable, and live under ``<name_prefix>_barrier_op/``.
* Waiting threads do not hold the lock, so several can block at once.

Additions: `timeout` on waits and on `BarrierHook` (raises
`BarrierTimeoutError`), and waits that end promptly, returning False, when
`should_stop()` (for the hook: its coordinator) asks for a stop or the session
is closed.
"""

import logging
import math
import numbers
import threading
import time

import tensorflow as tf

__all__ = [
    "BarrierAlreadyPlacedError",
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


class BarrierAlreadyPlacedError(RuntimeError):
    """Raised by `BarrierOp.place_barrier` when the barrier is already placed."""


class BarrierTimeoutError(TimeoutError):
    """Raised when a worker waited longer than its timeout for the barrier.

    Attributes:
      barrier_name: the `name_prefix` of the barrier.
      index: the worker index that was waiting.
      waited_secs: how long it waited, in seconds.
      timeout: the timeout it was given, in seconds.
    """

    def __init__(self, message, barrier_name, index, waited_secs, timeout):
        super().__init__(message)
        self.barrier_name = barrier_name
        self.index = index
        self.waited_secs = waited_secs
        self.timeout = timeout


def _check_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            "{} must be an int, got {!r} of type {}.".format(
                name, value, type(value).__name__
            )
        )
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
            "{} must be {}> 0, got {!r}.".format(
                name, "None or " if allow_none else "", value
            )
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
        capacity,
        is_chief=True,
        wait_seconds=1,
        name_prefix="default",
        barrier_callbacks=None,
    ):
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
        capacity = _check_int(capacity, "capacity")
        if capacity < 1:
            raise ValueError(
                "capacity must be >= 1 (1 + the number of workers), got {}.".format(
                    capacity
                )
            )
        wait_seconds = _check_positive_number(wait_seconds, "wait_seconds")
        if not math.isfinite(wait_seconds):
            raise ValueError(
                "wait_seconds must be finite, got {!r}.".format(wait_seconds)
            )
        if not isinstance(name_prefix, str):
            raise TypeError(
                "name_prefix must be a str, got {!r} of type {}.".format(
                    name_prefix, type(name_prefix).__name__
                )
            )
        if not name_prefix:
            raise ValueError("name_prefix must be a non-empty str.")
        if barrier_callbacks is None:
            barrier_callbacks = []
        elif callable(barrier_callbacks) or isinstance(barrier_callbacks, (str, bytes)):
            raise TypeError(
                "barrier_callbacks must be a list of callables, got {!r}.".format(
                    barrier_callbacks
                )
            )
        else:
            barrier_callbacks = list(barrier_callbacks)
            for i, callback in enumerate(barrier_callbacks):
                if not callable(callback):
                    raise TypeError(
                        "barrier_callbacks[{}] must be callable(action, session), got "
                        "{!r}.".format(i, callback)
                    )
        if tf.executing_eagerly() or tf.inside_function():
            raise RuntimeError(
                "BarrierOp needs graph mode: build it in a tf.compat.v1.Graph (or "
                "after tf.compat.v1.disable_eager_execution()) and run it with a "
                "tf.compat.v1 session, not eagerly or inside a tf.function."
            )

        self._capacity = capacity
        self._is_chief = bool(is_chief)
        self._wait_seconds = wait_seconds
        self._name = name_prefix
        self._barrier_callbacks = barrier_callbacks
        # Serializes place_barrier (check, place, callbacks) within this process.
        self._place_lock = threading.Lock()
        # Guards the per-index waiter counts below and the writes they decide.
        self._flag_lock = threading.Lock()
        self._local_waiters = [0] * capacity
        # Indices whose flag the last waiter could not clear: its session was
        # closed. The hook clears them with the next session (guarded by
        # _flag_lock).
        self._stale = set()

        collections = [
            (
                tf.compat.v1.GraphKeys.LOCAL_VARIABLES
                if self._is_chief
                else tf.compat.v1.GraphKeys.GLOBAL_VARIABLES
            )
        ]
        graph = tf.compat.v1.get_default_graph()
        with tf.compat.v1.variable_scope(name_prefix + "_barrier_op"):
            self._barrier_vars = tf.compat.v1.get_variable(
                "barrier_var",
                initializer=[False] * capacity,
                dtype=tf.bool,
                trainable=False,
                collections=collections,
                use_resource=True,
            )
            self._action = tf.compat.v1.get_variable(
                "barrier_op_action",
                initializer="",
                dtype=tf.string,
                trainable=False,
                collections=collections,
                use_resource=True,
            )
            self._idx_ph = tf.compat.v1.placeholder(
                tf.int32, shape=[], name="index_placeholder"
            )
            self._action_placeholder = tf.compat.v1.placeholder(
                tf.string, shape=[], name="barrier_op_action_placeholder"
            )
            with graph.colocate_with(self._barrier_vars.op):
                self._place_op = tf.raw_ops.ResourceScatterUpdate(
                    resource=self._barrier_vars.handle,
                    indices=self._idx_ph,
                    updates=tf.constant(True),
                    name="place",
                )
                self._remove_op = tf.raw_ops.ResourceScatterUpdate(
                    resource=self._barrier_vars.handle,
                    indices=self._idx_ph,
                    updates=tf.constant(False),
                    name="remove",
                )
                self._flags_value = tf.identity(
                    self._barrier_vars.read_value(), name="flags"
                )
                self._barrier_placed_tensor = tf.identity(
                    self._flags_value[0], name="barrier_placed"
                )
            with graph.colocate_with(self._action.op):
                self._action_assign = tf.raw_ops.AssignVariableOp(
                    resource=self._action.handle,
                    value=self._action_placeholder,
                    name="assign_action",
                )
                self._action_value = tf.identity(
                    self._action.read_value(), name="action"
                )
            # The chief's place: the action first, then flag 0, in one run.
            with tf.control_dependencies([self._action_assign]):
                with graph.colocate_with(self._barrier_vars.op):
                    self._place_with_action_op = tf.raw_ops.ResourceScatterUpdate(
                        resource=self._barrier_vars.handle,
                        indices=tf.constant(0, tf.int32),
                        updates=tf.constant(True),
                        name="place_with_action",
                    )

    @property
    def capacity(self):
        """The length of the flag vector (1 + the number of workers)."""
        return self._capacity

    @property
    def name(self):
        """The `name_prefix` this barrier was built with."""
        return self._name

    @property
    def barrier_placed_tensor(self):
        """A bool scalar tensor: True while the chief's barrier is placed."""
        return self._barrier_placed_tensor

    def place_barrier(self, session, action=""):
        """Places the barrier (flag 0) with `action`, then runs the callbacks.

        Args:
          session: a `tf.compat.v1.Session` (or a monitored session) on the graph.
          action: str handed to every callback, here and on each worker.

        Raises:
          BarrierAlreadyPlacedError: if the barrier is already placed.
          TypeError: if `action` is not a str.
        """
        if not isinstance(action, str):
            raise TypeError(
                "action must be a str, got {!r} of type {}.".format(
                    action, type(action).__name__
                )
            )
        with self._place_lock:
            if session.run(self._barrier_placed_tensor):
                raise BarrierAlreadyPlacedError(
                    "Barrier '{}' is already placed; remove it before placing it "
                    "again.".format(self._name)
                )
            session.run(
                self._place_with_action_op,
                feed_dict={self._action_placeholder: action},
            )
            self._run_barrier_callbacks(action, session)

    def remove_barrier(self, session):
        """Removes the barrier (clears flag 0). No check; workers then resume."""
        session.run(self._remove_op, feed_dict={self._idx_ph: 0})

    def is_barrier_placed(self, session):
        """Returns True if the barrier is placed."""
        return bool(session.run(self._barrier_placed_tensor))

    def is_barrier_removed(self, session):
        """Returns True if the barrier is not placed."""
        return not self.is_barrier_placed(session)

    def wait_until_barrier_removed(
        self, session, index, timeout=None, should_stop=None
    ):
        """Runs the callbacks, marks worker `index` blocked, waits for removal.

        Reads the chief's action, runs the callbacks with it, sets flag `index`,
        then polls flag 0 every `wait_seconds` (logging every 60 s) until the chief
        removes the barrier, and finally clears flag `index`.

        Args:
          session: a `tf.compat.v1.Session` on the graph (in a hook:
            `run_context.session`).
          index: int, this worker's index, 0 < index < capacity.
          timeout: None or float("inf") (wait forever), or seconds > 0.
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
            seconds (flag `index` is cleared first, where possible).
        """
        index = self._check_worker_index(index)
        timeout = _check_positive_number(timeout, "timeout", allow_none=True)
        if should_stop is not None and not callable(should_stop):
            raise TypeError(
                "should_stop must be None or a callable, got {!r}.".format(should_stop)
            )
        try:
            return self._wait(session, index, timeout, should_stop)
        except (
            RuntimeError,
            tf.errors.CancelledError,
            tf.errors.FailedPreconditionError,
        ):
            if _session_is_closed(session):
                _logger.info(
                    "Worker %d stops waiting for barrier '%s': the session "
                    "was closed.",
                    index,
                    self._name,
                )
                return False
            raise

    def _wait(self, session, index, timeout, should_stop):
        """wait_until_barrier_removed, once the arguments are checked."""
        start = time.monotonic()
        deadline = None if timeout is None else start + timeout

        action = session.run(self._action_value)
        action = action.decode("utf-8") if isinstance(action, bytes) else action
        self._run_barrier_callbacks(action, session)

        released = False
        registered = False
        try:
            with self._flag_lock:
                self._local_waiters[index] += 1
                registered = True
                if self._local_waiters[index] == 1:
                    session.run(self._place_op, feed_dict={self._idx_ph: index})
            _logger.info(
                "Worker %d is blocked by barrier '%s' (action %r).",
                index,
                self._name,
                action,
            )
            released = self._poll_until_removed(
                session, index, start, deadline, timeout, should_stop
            )
            return released
        finally:
            if registered:
                with self._flag_lock:
                    self._local_waiters[index] -= 1
                    if self._local_waiters[index] == 0:
                        self._clear_flag(session, index, must_succeed=released)

    def is_all_blocked(self, session):
        """True if every flag (the barrier and every worker) is set."""
        return sum(self._read_flags(session)) == self._capacity

    def is_none_blocked(self, session):
        """True if no flag (neither the barrier nor any worker) is set."""
        return sum(self._read_flags(session)) == 0

    def get_unblocked_indices(self, session):
        """The indices whose flag is clear (index 0 is the barrier itself)."""
        flags = self._read_flags(session)
        return [i for i in range(self._capacity) if not flags[i]]

    def get_blocked_indices(self, session):
        """The indices whose flag is set (index 0 is the barrier itself).

        A worker that died while blocked stays listed until it restarts (its
        `BarrierHook` clears the flag when its session is created) or blocks
        again.
        """
        flags = self._read_flags(session)
        return [i for i in range(self._capacity) if flags[i]]

    def _clear_stale_flag(self, session, index):
        """Clears flag `index` unless a thread waits on it through this
        BarrierOp: a flag set by an earlier life of this worker that died
        blocked, or one a waiter could not clear because its session closed."""
        with self._flag_lock:
            if self._local_waiters[index] == 0:
                session.run(self._remove_op, feed_dict={self._idx_ph: index})
                self._stale.discard(index)

    def _read_flags(self, session):
        return [bool(f) for f in session.run(self._flags_value)]

    def _check_worker_index(self, index):
        index = _check_int(index, "index")
        if not 0 < index < self._capacity:
            raise ValueError(
                "index must satisfy 0 < index < capacity ({}), got {}; index 0 is "
                "the chief's barrier.".format(self._capacity, index)
            )
        return index

    def _run_barrier_callbacks(self, action, session):
        for callback in self._barrier_callbacks:
            callback(action, session)

    def _stopped(self, session, should_stop):
        return (should_stop is not None and should_stop()) or _session_is_closed(
            session
        )

    def _poll_until_removed(
        self, session, index, start, deadline, timeout, should_stop
    ):
        """Polls flag 0; True once removed, False if stopped; raises on timeout."""
        last_log = start
        while True:
            if self._stopped(session, should_stop):
                return False
            options = None
            if deadline is not None:
                # Bound the poll itself too, in case the ps stops answering.
                left = max(deadline - time.monotonic(), self._wait_seconds, 1.0)
                options = tf.compat.v1.RunOptions(timeout_in_ms=int(left * 1000))
            try:
                placed = session.run(self._barrier_placed_tensor, options=options)
            except tf.errors.DeadlineExceededError as e:
                raise self._timeout_error(index, start, timeout) from e
            if not placed:
                return True
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise self._timeout_error(index, start, timeout)
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

    def _timeout_error(self, index, start, timeout):
        waited = time.monotonic() - start
        return BarrierTimeoutError(
            "Worker {} waited {:.1f} s for barrier '{}' to be removed and gave up "
            "(timeout={:g} s). Is the chief alive?".format(
                index, waited, self._name, timeout
            ),
            self._name,
            index,
            waited,
            timeout,
        )

    def _clear_flag(self, session, index, must_succeed):
        """Clears flag `index`; errors are only logged after a failed wait.

        When the wait failed (timeout, stop, error), clearing is best effort: the
        first error must not be hidden, and a closed session cannot clear anyway.
        """
        try:
            if not _session_is_closed(session):
                session.run(self._remove_op, feed_dict={self._idx_ph: index})
                self._stale.discard(index)
                return
            error = "the session is closed"
        except Exception as e:
            if must_succeed and not _session_is_closed(session):
                raise
            error = e
        self._stale.add(index)
        _logger.warning(
            "Could not clear the flag of worker %d on barrier '%s' (%s); its "
            "BarrierHook clears it with its next session.",
            index,
            self._name,
            error,
        )


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

    def __init__(self, index, barrier_op, timeout=None):
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
            raise TypeError(
                "barrier_op must be a BarrierOp, got {!r}.".format(barrier_op)
            )
        index = _check_int(index, "index")
        if not 0 <= index < barrier_op.capacity:
            raise ValueError(
                "index must satisfy 0 <= index < capacity ({}), got {}.".format(
                    barrier_op.capacity, index
                )
            )
        self._index = index
        self._barrier_op = barrier_op
        self._timeout = _check_positive_number(timeout, "timeout", allow_none=True)
        self._coord = None

    def after_create_session(self, session, coord):
        self._coord = coord
        if self._index != 0:
            # This worker is starting, so it is not blocked: a flag left set
            # by a previous life of it that died blocked would otherwise
            # keep the chief from ever seeing every worker resume.
            self._barrier_op._clear_stale_flag(session, self._index)

    def _should_stop(self):
        coord = self._coord
        return coord is not None and coord.should_stop()

    def before_run(self, run_context):
        if self._index == 0:
            return None
        if self._index in self._barrier_op._stale:
            self._barrier_op._clear_stale_flag(run_context.session, self._index)
        return tf.compat.v1.train.SessionRunArgs(self._barrier_op.barrier_placed_tensor)

    def after_run(self, run_context, run_values):
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
