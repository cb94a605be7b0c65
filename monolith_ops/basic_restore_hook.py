# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""A hook that calls checkpoint-restore listeners when a session is created.

`CheckpointRestorerHook` performs no restore itself: the real restore (or any
work that must run right before and after it) lives in its
`CheckpointRestorerListener`\\ s.

Order in which TensorFlow calls the hook, and the hook its listeners::

  hook.begin()                           -> listener.begin(), for each listener
  sess = tf.compat.v1.Session()
  hook.after_create_session(sess, coord) -> listener.before_restore(sess), for
                                            each listener, then
                                            listener.after_restore(sess), for
                                            each listener
  while not stop:                        (nothing is called during steps)
    hook.before_run(...); sess.run(...); hook.after_run(...)
  hook.end(sess)                         -> listener.end(sess), for each listener

`after_create_session` runs once for every session the monitored session
creates (a recovered session is a new one), so the listeners run around each.

A listener that raises does not stop the later ones: each step calls every
listener, then raises the first error (so no `after_restore` runs when a
`before_restore` raised). The listeners' `end` runs from the hook's `end`
(Monolith's hook never called it). docs/barrier.md ("Restore hooks" and
"Departures from Monolith") has the rest.
"""

import logging
from collections.abc import Iterable
from typing import Any, Optional

import tensorflow as tf

__all__ = ["CheckpointRestorerListener", "CheckpointRestorerHook"]

_logger = logging.getLogger(__name__)


class CheckpointRestorerListener:
    """Interface for listeners that act before or after a restore.

    Every method is a no-op; override the ones you need.
    """

    def begin(self) -> None:
        """Called once, from the hook's `begin`, before any session exists."""

    def before_restore(self, session: Any) -> None:
        """Called when a session is created, before the (listeners') restore."""

    def after_restore(self, session: Any) -> None:
        """Called when a session is created, after every `before_restore`."""

    def end(self, session: Any) -> None:
        """Called from the hook's `end`, when the session ends normally."""


_REQUIRED_METHODS = ("begin", "before_restore", "after_restore", "end")


class CheckpointRestorerHook(tf.compat.v1.train.SessionRunHook):
    """Calls `CheckpointRestorerListener`\\ s around restore at session creation.

    The real restore action is implemented in the listeners.
    """

    def __init__(self, listeners: Optional[Iterable[Any]] = None) -> None:
        """Initializes a `CheckpointRestorerHook`.

        Args:
          listeners: None or a list of `CheckpointRestorerListener`-like objects
            (anything with callable `begin`, `before_restore`, `after_restore` and
            `end`), called in list order.

        Raises:
          TypeError: if `listeners` is not a list of such objects (the message
            names the first bad entry and the missing method).
        """
        if listeners is None:
            listeners = []
        elif isinstance(listeners, (str, bytes)) or not hasattr(listeners, "__iter__"):
            raise TypeError(
                f"listeners must be a list of CheckpointRestorerListener, got {listeners!r}."
            )
        listeners = list(listeners)
        for i, listener in enumerate(listeners):
            if isinstance(listener, type):
                raise TypeError(
                    f"listeners[{i}] must be a listener instance, got the class {listener.__name__}; "
                    f"pass {listener.__name__}() instead."
                )
            for method in _REQUIRED_METHODS:
                if not callable(getattr(listener, method, None)):
                    raise TypeError(
                        f"listeners[{i}] must be a CheckpointRestorerListener (with a "
                        f"callable {method}()), got {listener!r}."
                    )
        _logger.info("Create CheckpointRestorerHook.")
        self._listeners = listeners

    def begin(self) -> None:
        _call_each(self._listeners, "begin")

    def after_create_session(self, session: Any, coord: Any) -> None:
        self._restore(session)

    def end(self, session: Any) -> None:
        _call_each(self._listeners, "end", session)

    def _restore(self, session):
        """Calls the listeners; the restore itself is theirs to do."""
        _logger.info("Calling checkpoint restorer listeners.")
        _call_each(self._listeners, "before_restore", session)
        # This hook performs no restore action itself.
        _call_each(self._listeners, "after_restore", session)


def _call_each(listeners, method, *args):
    """Calls `method` on every listener, in order, even after one raised; then
    raises the first error (the later ones are logged)."""
    first = None
    for listener in listeners:
        try:
            getattr(listener, method)(*args)
        except Exception as e:
            if first is None:
                first = e
            else:
                _logger.error("%r.%s() raised too: %r", listener, method, e)
    if first is not None:
        raise first
