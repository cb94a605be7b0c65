# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""What the clip API accepts: tensor lists, scalars, flags and norm types,
each refused with an error naming the argument; the dtypes the norm is
computed and returned in."""

import numbers
from typing import Union

import numpy as np
import tensorflow as tf
from tensorflow.python.framework import op_def_registry

from monolith_ops._clip import ops  # noqa: F401  (registers the ops first)


def _registered_dtypes(op_names):
    """The dtypes that every op of `op_names` allows for its attr `T`, as the
    library registered them, in the registration's order."""
    allowed = None
    for op_name in op_names:
        op_def = op_def_registry.get(op_name)
        if op_def is None:
            raise RuntimeError(f"monolith_ops: the op {op_name} is not registered")
        (attr,) = [a for a in op_def.attr if a.name == "T"]
        dtypes = [tf.as_dtype(t) for t in attr.allowed_values.list.type]
        allowed = dtypes if allowed is None else [d for d in allowed if d in dtypes]
    return tuple(allowed)


# The dtypes the library's clip ops are registered for (their `T` attr), so a
# dtype added there needs no edit here. The TF-ops path (XLA, a run-time
# clip_norm) accepts the same ones, so that a list is accepted everywhere or
# nowhere.
SUPPORTED_DTYPES = _registered_dtypes(
    ["GlobalL2Reduce", "MonolithClipByGlobalNorm", "MonolithClipByGlobalNormFused"]
)


_SUPPORTED_NAMES = (
    ", ".join(d.name for d in SUPPORTED_DTYPES[:-1]) + f" and {SUPPORTED_DTYPES[-1].name}"
)


def check_list(t_list):
    if not isinstance(t_list, (list, tuple)):
        raise TypeError(
            "t_list should be a list or tuple of tensors, IndexedSlices or "
            f"None, but received {type(t_list).__name__}: {t_list!r:.200}"
        )


def to_entries(t_list):
    """t_list with Tensors converted; None and IndexedSlices kept as they are."""
    entries = []
    for i, t in enumerate(t_list):
        if t is not None and not isinstance(t, tf.IndexedSlices):
            try:
                t = tf.convert_to_tensor(t)
            except (TypeError, ValueError) as err:
                raise TypeError(
                    f"t_list[{i}] should be a Tensor, IndexedSlices or None, "
                    f"but received {type(t).__name__}: {err}"
                ) from err
        if t is not None and t.dtype not in SUPPORTED_DTYPES:
            raise TypeError(
                f"t_list[{i}] has dtype {t.dtype.name}; global-norm clipping "
                f"supports {_SUPPORTED_NAMES}"
            )
        entries.append(t)
    return entries


def values_of(entry):
    return entry.values if isinstance(entry, tf.IndexedSlices) else entry


def norm_dtype_of(values):
    """The dtype the norm is computed in: float64 if any input is, else float32
    (also for an empty list)."""
    return tf.float64 if any(v.dtype == tf.float64 for v in values) else tf.float32


def result_dtype_of(values):
    """The norm's dtype as returned: the inputs' dtype when they share one."""
    dtypes = {v.dtype for v in values}
    return dtypes.pop() if len(dtypes) == 1 else norm_dtype_of(values)


def dtype_groups(values):
    """Indices of `values` grouped by dtype, groups in order of first appearance."""
    groups = {}
    for i, v in enumerate(values):
        groups.setdefault(v.dtype, []).append(i)
    return list(groups.values())


def to_scalar(value, arg, dtype_hint):
    """`value` as a numeric scalar tensor, or a clear error naming `arg`.

    Python numbers become `dtype_hint` (the norm's dtype), as in TF."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{arg} should be a number or a scalar Tensor, but received bool")
    try:
        tensor = tf.convert_to_tensor(value, dtype_hint=dtype_hint)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"{arg} should be a number or a scalar Tensor, but "
            f"received {type(value).__name__}: {err}"
        ) from err
    if not (tensor.dtype.is_floating or tensor.dtype.is_integer):
        raise TypeError(
            f"{arg} should be a number or a scalar Tensor, but has dtype {tensor.dtype.name}"
        )
    if tensor.shape.rank is not None and tensor.shape.rank != 0:
        raise ValueError(f"{arg} should be a scalar, but has shape {tensor.shape}")
    return tensor


def check_positive_finite(value, held="", arg="clip_norm"):
    """`value` (a float); ValueError naming `arg` unless positive and finite
    (denormals are). `held` tells how the value came from what the caller
    gave."""
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{arg} should be positive and finite, got {value}{held}")
    return value


def check_positive_in(value, dtype, arg, given=None):
    """`value` (a float, `given` as the caller wrote it, else `value`);
    ValueError naming `arg` unless it is positive and finite once rounded to
    `dtype`, the dtype the clip computes in (denormals are)."""
    with np.errstate(over="ignore", under="ignore"):
        rounded = float(np.asarray(value).astype(dtype.as_numpy_dtype))
    original = value if given is None else given
    held = ""
    if float(original) != rounded:
        held = f" ({original!r} is {rounded} in {dtype.name})"
    check_positive_finite(rounded, held, arg)
    return value


def check_clip_norm(clip_norm: Union[float, np.number], dtype: tf.DType = tf.float32) -> float:
    """`clip_norm` as a float: a positive Python or NumPy number, finite and
    not 0 once rounded to `dtype`.

    The check ``clip_by_global_norm`` makes of a ``clip_norm`` known when the
    graph is built, for a number given ahead of any graph (as the optimizers
    of ``monolith_ops.keras`` take it). The default dtype is the norm's dtype
    of float32 and 16-bit lists, the smallest the clip computes in.

    Raises:
      TypeError: `clip_norm` is not a real number (or is a bool).
      ValueError: it is not positive and finite in `dtype`.
    """
    if isinstance(clip_norm, (bool, np.bool_)) or not isinstance(clip_norm, numbers.Real):
        raise TypeError(
            "clip_norm should be a positive number, but received "
            f"{type(clip_norm).__name__}: {clip_norm!r:.100}"
        )
    return check_positive_in(float(clip_norm), dtype, "clip_norm", given=clip_norm)


def static_positive(tensor, given, dtype, arg="clip_norm"):
    """`tensor` (the scalar tensor made of the argument `arg`, given as
    `given`) as a float when known now, else None.

    A value known now must be positive and finite once rounded to `dtype`,
    the norm's dtype that the clip computes in (denormals are), whether it
    was given as a number, a NumPy scalar or a constant tensor."""
    static = tf.get_static_value(tensor)
    if static is None:
        return None
    value = float(static)
    number = isinstance(given, (int, float, np.number)) and not isinstance(given, bool)
    return check_positive_in(value, dtype, arg, given=given if number else None)


# The features of the V2 ops: norm_type, per-tensor norms, inverse_scale and
# error_if_nonfinite. docs/clip_features.md describes them.

INF_NORM = "inf"


L2_NORM = "l2"


def norm_kind(norm_type):
    """The V2 ops' norm_type attr ("l2" or "inf") for the argument
    `norm_type`: 2 or infinity (a number, or the string "inf")."""
    if isinstance(norm_type, (bool, np.bool_)):
        raise TypeError("norm_type should be 2 or inf, but received bool")
    if isinstance(norm_type, str):
        if norm_type == "inf":
            return INF_NORM
    elif isinstance(norm_type, numbers.Real):
        if float(norm_type) == 2:
            return L2_NORM
        if float(norm_type) == float("inf"):
            return INF_NORM
    else:
        raise TypeError(
            "norm_type should be 2 or inf, but received "
            f"{type(norm_type).__name__}: {norm_type!r:.100}"
        )
    raise ValueError(f"norm_type should be 2 or inf (float('inf') or 'inf'), got {norm_type!r}")


def check_flags(**flags):
    """Each keyword a bool (or NumPy bool), as TF's flags: a truthy string
    such as "no" must not turn a feature on."""
    for arg, value in flags.items():
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(
                f"{arg} should be True or False, but received "
                f"{type(value).__name__}: {value!r:.100}"
            )
