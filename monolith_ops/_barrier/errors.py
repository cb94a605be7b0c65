# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""The barrier's errors and the checks of its arguments."""

import math
import numbers
from typing import Optional

import tensorflow as tf


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


def check_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r} of type {type(value).__name__}.")
    return int(value)


def check_positive_number(value, name, allow_none=False):
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


def check_barrier_args(capacity, wait_seconds, name_prefix, barrier_callbacks):
    """The arguments of `BarrierOp`, checked: (capacity, wait_seconds,
    name_prefix, list of callbacks). Raises TypeError or ValueError naming
    the argument, and RuntimeError outside graph mode."""
    capacity = check_int(capacity, "capacity")
    if capacity < 1:
        raise ValueError(f"capacity must be >= 1 (1 + the number of workers), got {capacity}.")
    wait_seconds = check_positive_number(wait_seconds, "wait_seconds")
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
