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

from monolith_ops._barrier.errors import (
    BarrierAlreadyPlacedError,
    BarrierLostError,
    BarrierTimeoutError,
)
from monolith_ops._barrier.hook import BarrierHook
from monolith_ops._barrier.op import BarrierOp

__all__ = [
    "BarrierAlreadyPlacedError",
    "BarrierLostError",
    "BarrierTimeoutError",
    "BarrierOp",
    "BarrierHook",
]

# Shown (and pickled) as this module's, where users import them from.
for _public in (
    BarrierAlreadyPlacedError,
    BarrierLostError,
    BarrierTimeoutError,
    BarrierOp,
    BarrierHook,
):
    _public.__module__ = __name__
del _public
