# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""``BarrierHook``: the ``SessionRunHook`` with which each worker notices a
placed barrier at a step boundary and waits."""

from typing import Any, Optional

import tensorflow as tf

from monolith_ops._barrier.errors import check_int, check_positive_number
from monolith_ops._barrier.op import BarrierOp


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
        index = check_int(index, "index")
        if not 0 <= index < barrier_op.capacity:
            raise ValueError(
                f"index must satisfy 0 <= index < capacity ({barrier_op.capacity}), got {index}."
            )
        self._index = index
        self._barrier_op = barrier_op
        self._timeout = check_positive_number(timeout, "timeout", allow_none=True)
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
