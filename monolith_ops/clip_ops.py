# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""Global-norm gradient clipping on the library's kernels, a drop-in for TF's.

``clip_by_global_norm`` and ``global_norm`` take what ``tf.clip_by_global_norm``
and ``tf.linalg.global_norm`` take and give their results, within float
rounding. ``clip_by_global_norm`` builds one of three paths
(``choose_clip_path``):

* ``ClipPath.FUSED``: a single-dtype list without ``use_norm``, one
  ``MonolithClipByGlobalNormFused`` kernel (in parts of ``CHUNK_SIZE``
  tensors for a list longer than ``PACK_ABOVE`` in a graph, for Grappler);
* ``ClipPath.KERNEL_WITH_CLIP_NORM_ATTR``: the norm from ``GlobalL2Reduce``
  (or ``use_norm``), the clip by ``MonolithClipByGlobalNorm`` per dtype with
  ``clip_norm`` as its attr;
* ``ClipPath.TF_OPS``: the clip in TF ops (``clip_scale``), under XLA, which
  cannot compile the kernels, and where ``clip_norm`` cannot be an attr;
* ``ClipPath.FUSED_V2``: one ``MonolithClipByGlobalNormV2`` kernel, when
  ``norm_type``, ``per_tensor``, ``inverse_scale`` or ``error_if_nonfinite``
  asks for more than TF's clip (docs/clip_features.md).

The supported dtypes are those the ops are registered for
(``SUPPORTED_DTYPES``). The ops' gradients are registered here. The README
("Clipping") says what the results are, including where they depart from
TF's; docs/keras.md what differs under XLA.
"""

import dataclasses
import enum
import numbers
from collections.abc import Sequence
from typing import Optional, Union

import numpy as np
import tensorflow as tf
from tensorflow.python.framework import op_def_registry
from tensorflow.python.ops import control_flow_util

from monolith_ops import load_ops
from monolith_ops._loader import built_with_cuda

# Loaded (and the ops registered) on import, so that a graph, SavedModel or
# MetaGraph using them can be loaded after `import monolith_ops.clip_ops`.
ops = load_ops()

__all__ = ["clip_by_global_norm", "global_norm"]


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

# Grappler spends time quadratic in the number of inputs and outputs of one
# node (100,000 tensors in one op did not build in minutes), while every extra
# op costs each step. So in a graph a list of more than PACK_ABOVE tensors is
# packed and clipped in parts of CHUNK_SIZE, with the norm of the whole list
# computed once; a shorter list is one op. The results are bitwise those of
# one op. docs/benchmark.md has the timings behind both numbers.
PACK_ABOVE = 4096
CHUNK_SIZE = 64

_SUPPORTED_NAMES = (
    ", ".join(d.name for d in SUPPORTED_DTYPES[:-1]) + f" and {SUPPORTED_DTYPES[-1].name}"
)


def _check_list(t_list):
    if not isinstance(t_list, (list, tuple)):
        raise TypeError(
            "t_list should be a list or tuple of tensors, IndexedSlices or "
            f"None, but received {type(t_list).__name__}: {t_list!r:.200}"
        )


def _entries(t_list):
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


def _values(entry):
    return entry.values if isinstance(entry, tf.IndexedSlices) else entry


def _norm_dtype(values):
    """The dtype the norm is computed in: float64 if any input is, else float32
    (also for an empty list)."""
    return tf.float64 if any(v.dtype == tf.float64 for v in values) else tf.float32


def _result_dtype(values):
    """The norm's dtype as returned: the inputs' dtype when they share one."""
    dtypes = {v.dtype for v in values}
    return dtypes.pop() if len(dtypes) == 1 else _norm_dtype(values)


def _groups(values):
    """Indices of `values` grouped by dtype, groups in order of first appearance."""
    groups = {}
    for i, v in enumerate(values):
        groups.setdefault(v.dtype, []).append(i)
    return list(groups.values())


def _scalar(value, arg, dtype_hint):
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


def _check_positive_finite(value, held="", arg="clip_norm"):
    """`value` (a float); ValueError naming `arg` unless positive and finite
    (denormals are). `held` tells how the value came from what the caller
    gave."""
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{arg} should be positive and finite, got {value}{held}")
    return value


def _check_positive_in(value, dtype, arg, given=None):
    """`value` (a float, `given` as the caller wrote it, else `value`);
    ValueError naming `arg` unless it is positive and finite once rounded to
    `dtype`, the dtype the clip computes in (denormals are)."""
    with np.errstate(over="ignore", under="ignore"):
        rounded = float(np.asarray(value).astype(dtype.as_numpy_dtype))
    original = value if given is None else given
    held = ""
    if float(original) != rounded:
        held = f" ({original!r} is {rounded} in {dtype.name})"
    _check_positive_finite(rounded, held, arg)
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
    return _check_positive_in(float(clip_norm), dtype, "clip_norm", given=clip_norm)


def _static_positive(tensor, given, dtype, arg="clip_norm"):
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
    return _check_positive_in(value, dtype, arg, given=given if number else None)


def _in_xla_context():
    """True while the graph being built, or a graph it is nested in, is to be
    compiled by XLA (`tf.function(jit_compile=True)`, Keras' `jit_compile`).

    XLA cannot compile the library's kernels, so there the norm and the clip
    are made of TF ops: the sum of squares is accumulated in the norm's dtype
    (float32 for 16-bit and float32 inputs, as TF does, instead of double) in
    XLA's order, and run-time assertions are dropped, as XLA drops TF's."""
    if tf.executing_eagerly():
        return False
    graph = tf.compat.v1.get_default_graph()
    return control_flow_util.GraphOrParentsInXlaContext(graph)


def _parts(values):
    """`values` cut into parts of at most CHUNK_SIZE where that is needed: a
    list of more than PACK_ABOVE tensors in a graph (run by Grappler), on CPU
    kernels. Eager ops are not optimized, and the GPU kernels take a whole
    list (they have no packed form yet)."""
    if len(values) <= PACK_ABOVE or tf.executing_eagerly() or _gpu_kernels():
        return [values]
    return [values[i : i + CHUNK_SIZE] for i in range(0, len(values), CHUNK_SIZE)]


def _gpu_kernels():
    """Whether the ops may be placed on a GPU."""
    return built_with_cuda() and bool(tf.config.list_physical_devices("GPU"))


def _reduce(values, norm_dtype):
    """GlobalL2Reduce of `values` (one dtype), rounded to norm_dtype."""
    parts = _parts(values)
    if len(parts) == 1:
        return ops.global_l2_reduce(values, Tnorm=norm_dtype)
    dtype = values[0].dtype
    packs = [ops.monolith_pack_grad_list(part, packs=[]) for part in parts]
    while len(packs) > CHUNK_SIZE:  # packs of packs
        packs = [
            ops.monolith_pack_grad_list([], packs=packs[i : i + CHUNK_SIZE])
            for i in range(0, len(packs), CHUNK_SIZE)
        ]
    return ops.monolith_packed_l2_reduce(packs, T=dtype, Tnorm=norm_dtype)


def _sum_of_squares(values, norm_dtype):
    """Sum of squares of all `values`, one reduction per dtype group."""
    if _in_xla_context():
        return tf.add_n([tf.reduce_sum(tf.square(tf.cast(v, norm_dtype))) for v in values])
    total = None
    for group in _groups(values):
        part = _reduce([values[i] for i in group], norm_dtype)
        total = part if total is None else total + part
    return total


def _is_positive_finite(x):
    """Whether the float32 or float64 scalar x is positive and finite, from
    its bits: TensorFlow's threads flush denormals to zero, so a compare
    would take a denormal for 0 (as the kernels check it)."""
    itype, inf_bits = (
        (tf.int64, 0x7FF0000000000000) if x.dtype == tf.float64 else (tf.int32, 0x7F800000)
    )
    bits = tf.bitcast(x, itype)
    return tf.logical_and(bits > 0, bits < inf_bits)


def clip_scale(norm: tf.Tensor, clip_norm: tf.Tensor) -> tf.Tensor:
    """The factor TF's ``clip_by_global_norm`` multiplies each tensor by:
    ``clip_norm * min(1 / norm, 1 / clip_norm)``, NaN when the norm is inf or
    NaN.

    From ``norm >= clip_norm`` on it is bitwise ``clip_norm * (1 / norm)``;
    below, within an ulp of 1. Both the TF-ops clip and the ops' gradients
    are written with it. `norm` and `clip_norm` are scalars of one dtype."""
    nan_if_not_finite = norm - norm
    return clip_norm * tf.minimum(1.0 / norm, 1.0 / clip_norm) + nan_if_not_finite


def _clip_in_tf_ops(values, norm, clip_norm, inverse_scale=None):
    """The clip of MonolithClipByGlobalNorm in TF ops, for a clip_norm the
    kernel cannot take as its attr: one known only at run time (or watched
    by a tape), or a float64 one that float32 cannot hold; under XLA; and
    for an inverse_scale with a given norm. clip_norm and the norm are
    checked when it runs, as the kernel checks them; below clip_norm the
    inputs pass through bitwise."""
    checks = [
        tf.debugging.Assert(
            _is_positive_finite(clip_norm),
            ["clip_norm must be positive and finite, got", clip_norm],
        ),
        tf.debugging.Assert(
            tf.logical_not(norm < 0), ["global_norm (use_norm) must be non-negative, got", norm]
        ),
    ]
    if inverse_scale is not None:
        checks.append(
            tf.debugging.Assert(
                _is_positive_finite(inverse_scale),
                ["inverse_scale must be positive and finite, got", inverse_scale],
            )
        )
    with tf.control_dependencies(checks):
        return [tf.identity(v) for v in _scaled_in_tf_ops(values, norm, clip_norm, inverse_scale)]


def _scaled_in_tf_ops(values, norm, clip_norm, inverse_scale):
    """`values` times inverse_scale (None for none) and the clip factor of
    `norm`, in TF ops, as the kernels compute them (DecideUnscaledClip in
    cc/kernels/clip_decision.h)."""
    formula = clip_scale(norm, clip_norm)
    # Below clip_norm the formula is within an ulp of 1: the scale is made
    # exactly 1 there, while its gradient stays the formula's, as TF's
    # (which takes the clipping branch at norm == clip_norm).
    to_one = tf.where(norm <= clip_norm, 1 - formula, tf.zeros_like(norm))
    scale = formula + tf.stop_gradient(to_one)
    if inverse_scale is None:
        return [v * tf.cast(scale, v.dtype) for v in values]
    scale = inverse_scale * scale
    out = []
    for v in values:
        # The scale is rounded to the element type first only when
        # inverse_scale is 1; otherwise it multiplies in the compute type.
        compute = tf.float64 if v.dtype == tf.float64 else tf.float32
        rounded = tf.cast(tf.cast(scale, v.dtype), compute)
        s = tf.where(tf.equal(inverse_scale, 1), rounded, tf.cast(scale, compute))
        out.append(tf.cast(tf.cast(v, compute) * s, v.dtype))
    return out


def _clip_with_kernel(values, norm, clip_norm_attr):
    """Clips `values` by `norm` (a scalar of the norm dtype) with
    MonolithClipByGlobalNorm, one op per dtype (and part), clip_norm an attr."""
    clipped = [None] * len(values)
    for group in _groups(values):
        for part in _parts(group):
            outs = ops.monolith_clip_by_global_norm(
                [values[i] for i in part], norm, clip_norm=clip_norm_attr
            )
            for i, out in zip(part, outs):
                clipped[i] = out
    return clipped


def _fused_norm_and_clip(values, clip_norm, norm_dtype):
    """The norm and the clip of a single-dtype list in one kernel,
    MonolithClipByGlobalNormFused: no host read of the norm between phases.
    In parts of CHUNK_SIZE with the sum of squares given, when _parts splits
    the list."""
    parts = _parts(values)
    if len(parts) == 1:
        clipped, norm = ops.monolith_clip_by_global_norm_fused(values, clip_norm)
        return list(clipped), norm
    sum_of_squares = _reduce(values, norm_dtype)
    clipped = []
    for part in parts:
        outs, norm = ops.monolith_clip_by_sum_of_squares(part, clip_norm, sum_of_squares)
        clipped += outs
    return clipped, norm


class ClipPath(enum.Enum):
    """How ``clip_by_global_norm`` builds a clip."""

    # One MonolithClipByGlobalNormFused kernel computes the norm and clips
    # (a single-dtype list without use_norm), on every device.
    FUSED = "fused"
    # The norm from GlobalL2Reduce (or use_norm), the clip by
    # MonolithClipByGlobalNorm per dtype, clip_norm an attr of the op.
    KERNEL_WITH_CLIP_NORM_ATTR = "kernel_with_clip_norm_attr"
    # The clip made of TF ops: under XLA, which cannot compile the kernels,
    # where clip_norm cannot be an attr (known only at run time, watched by a
    # tape, or a float64 value that float32 does not hold), and for a norm
    # given with a feature below.
    TF_OPS = "tf_ops"
    # One MonolithClipByGlobalNormV2 kernel computes the norms and clips, for
    # a list of any dtypes without use_norm, when a feature of the V2 ops is
    # asked for: an infinity norm, per-tensor norms, an inverse_scale or the
    # finite check.
    FUSED_V2 = "fused_v2"


@dataclasses.dataclass(frozen=True)
class ClipPlan:
    """The path a clip takes, and the clip_norm attr of the kernel path."""

    path: ClipPath
    clip_norm_attr: Optional[float] = None


def choose_clip_path(
    dtypes: Sequence[tf.DType],
    norm_dtype: tf.DType,
    has_use_norm: bool,
    static_clip_norm: Optional[float],
    v2_features: bool = False,
) -> ClipPlan:
    """The path ``clip_by_global_norm`` takes for a non-empty list.

    Args:
      dtypes: The dtypes of the tensors to clip.
      norm_dtype: The dtype the norm is computed in (see `_norm_dtype`).
      has_use_norm: Whether the norm is given (`use_norm`).
      static_clip_norm: clip_norm as a float when it may be an op's attr
        (known when the graph is built, no tape watching it), else None.
      v2_features: Whether a feature of the V2 ops is asked for (see
        ``ClipPath.FUSED_V2``).
    """
    if _in_xla_context():
        return ClipPlan(ClipPath.TF_OPS)
    if v2_features:
        return ClipPlan(ClipPath.TF_OPS if has_use_norm else ClipPath.FUSED_V2)
    if not has_use_norm and len(set(dtypes)) == 1:
        return ClipPlan(ClipPath.FUSED)
    attr_is_exact = static_clip_norm is not None and (
        norm_dtype == tf.float32 or float(np.float32(static_clip_norm)) == static_clip_norm
    )
    if attr_is_exact:
        return ClipPlan(ClipPath.KERNEL_WITH_CLIP_NORM_ATTR, static_clip_norm)
    return ClipPlan(ClipPath.TF_OPS)


# Gradients of the ops, so that the functions above can be differentiated like
# TF's own (for example when clipping is part of a model, or in second-order
# methods). Each follows the op's forward exactly: where the norm is at most
# clip_norm the inputs pass through unchanged, so their gradient passes
# through unchanged too. Products over a whole list are summed in the norm's
# dtype, so that 16-bit inputs cannot overflow them.


def _dense(grad):
    return tf.convert_to_tensor(grad) if isinstance(grad, tf.IndexedSlices) else grad


def _sum_of_squares_grad(xs, grad):
    """d(sum of x^2)/dx = 2x, times `grad` (a scalar of the sum's dtype)."""
    return [tf.cast(tf.cast(x, grad.dtype) * (2 * grad), x.dtype) for x in xs]


@tf.RegisterGradient("GlobalL2Reduce")
def _global_l2_reduce_grad(op, grad):
    return _sum_of_squares_grad(op.inputs, grad)


def _clip_backprop(xs, grads, norm, clip_norm):
    """Backprop through out_i = x_i * scale, the scale being 1 where norm <
    clip_norm, clip_norm / norm from it on, NaN where norm is inf or NaN.
    (At norm == clip_norm the forward passes the inputs through; the
    gradient is that of the clipping branch there, as TF's is.)

    Returns (gradients of the xs, of norm, of clip_norm)."""
    above = norm >= clip_norm
    nan_if_not_finite = norm - norm
    # 1 below clip_norm; the clip factor from it on, and NaN for a norm that
    # is not finite (which is not below it).
    scale = tf.where(norm < clip_norm, tf.ones_like(norm), clip_scale(norm, clip_norm))
    dxs = [None if g is None else _dense(g) * tf.cast(scale, x.dtype) for x, g in zip(xs, grads)]
    # The gradient of the scale: the sum over the list of grad * x.
    dot = tf.add_n(
        [
            tf.reduce_sum(tf.cast(_dense(g), norm.dtype) * tf.cast(x, norm.dtype))
            for x, g in zip(xs, grads)
            if g is not None
        ]
        or [tf.zeros_like(norm)]
    )
    dnorm = (
        tf.where(above, -dot * clip_norm / (norm * norm), tf.zeros_like(norm)) + nan_if_not_finite
    )
    dclip = tf.where(above, dot / norm, tf.zeros_like(norm)) + nan_if_not_finite
    return dxs, dnorm, dclip


def _clip_and_norm_backprop(op, xs, grads, clip_norm):
    """_clip_backprop for an op whose outputs are the clipped list and then
    the norm it computed: the gradient reaching that norm output is added to
    the one through the clip."""
    norm, dnorm_out = op.outputs[-1], grads[-1]
    dxs, dnorm, dclip = _clip_backprop(xs, grads[:-1], norm, clip_norm)
    if dnorm_out is not None:
        dnorm = dnorm + dnorm_out
    return dxs, dnorm, dclip


@tf.RegisterGradient("MonolithClipByGlobalNorm")
def _clip_by_global_norm_grad(op, *grads):
    xs, norm = list(op.inputs[:-1]), op.inputs[-1]
    clip_norm = tf.constant(op.get_attr("clip_norm"), norm.dtype)
    dxs, dnorm, _ = _clip_backprop(xs, grads, norm, clip_norm)
    return dxs + [dnorm]


@tf.RegisterGradient("MonolithClipByGlobalNormFused")
def _clip_by_global_norm_fused_grad(op, *grads):
    xs, clip_norm = list(op.inputs[:-1]), op.inputs[-1]
    norm = op.outputs[-1]
    dxs, dnorm, dclip = _clip_and_norm_backprop(op, xs, grads, clip_norm)
    # d norm / d x = x / norm, multiplied in the norm's dtype.
    per_x = dnorm / norm
    through_norm = [tf.cast(tf.cast(x, norm.dtype) * per_x, x.dtype) for x in xs]
    dxs = [t if dx is None else dx + t for dx, t in zip(dxs, through_norm)]
    return dxs + [dclip]


# A long list in a graph is reduced through packs (see CHUNK_SIZE). The
# gradient of a pack is that of the sum of squares of its tensors: a scalar.


@tf.RegisterGradient("MonolithPackGradList")
def _pack_grad_list_grad(op, grad):
    tensors = op.inputs[: op.get_attr("N")]
    return _sum_of_squares_grad(tensors, grad) + [grad] * (len(op.inputs) - len(tensors))


@tf.RegisterGradient("MonolithPackedL2Reduce")
def _packed_l2_reduce_grad(op, grad):
    return [grad] * len(op.inputs)


@tf.RegisterGradient("MonolithClipBySumOfSquares")
def _clip_by_sum_of_squares_grad(op, *grads):
    xs, clip_norm = list(op.inputs[:-2]), op.inputs[-2]
    dxs, dnorm, dclip = _clip_and_norm_backprop(op, xs, grads, clip_norm)
    return dxs + [dclip, dnorm / (2 * op.outputs[-1])]


# The features of the V2 ops: norm_type, per-tensor norms, inverse_scale and
# error_if_nonfinite. docs/clip_features.md describes them.

_INF_NORM = "inf"
_L2_NORM = "l2"


def _norm_kind(norm_type):
    """The V2 ops' norm_type attr ("l2" or "inf") for the argument
    `norm_type`: 2 or infinity (a number, or the string "inf")."""
    if isinstance(norm_type, (bool, np.bool_)):
        raise TypeError("norm_type should be 2 or inf, but received bool")
    if isinstance(norm_type, str):
        if norm_type == "inf":
            return _INF_NORM
    elif isinstance(norm_type, numbers.Real):
        if float(norm_type) == 2:
            return _L2_NORM
        if float(norm_type) == float("inf"):
            return _INF_NORM
    else:
        raise TypeError(
            "norm_type should be 2 or inf, but received "
            f"{type(norm_type).__name__}: {norm_type!r:.100}"
        )
    raise ValueError(f"norm_type should be 2 or inf (float('inf') or 'inf'), got {norm_type!r}")


def _norms_in_tf_ops(values, norm_dtype, kind, inverse_scale):
    """MonolithGlobalNormV2 in TF ops: (the global norm, the vector of the
    tensors' norms) of `values` times inverse_scale, in norm_dtype. Used
    under XLA and to differentiate the V2 ops."""

    def max_or_nan(x):  # MaxOrNaN of cc/kernels/clip_decision.h
        nan = tf.reduce_any(tf.math.is_nan(x))
        return tf.where(nan, tf.constant(np.nan, norm_dtype), tf.reduce_max(x))

    reductions = []
    for v in values:
        x = tf.reshape(tf.cast(v, norm_dtype), [-1])
        if kind == _L2_NORM:
            reductions.append(tf.reduce_sum(tf.square(x)))
        else:
            reductions.append(max_or_nan(tf.concat([tf.zeros([1], norm_dtype), tf.abs(x)], 0)))
    reductions = tf.stack(reductions)
    if kind == _L2_NORM:
        combined = tf.reduce_sum(reductions)
        scale = inverse_scale * inverse_scale
        return tf.sqrt(combined * scale), tf.sqrt(reductions * scale)
    return max_or_nan(reductions) * inverse_scale, reductions * inverse_scale


def _norms(values, norm_dtype, kind, inverse_scale):
    """(The global norm, the vector of the tensors' norms) of the unscaled
    `values`, by the MonolithGlobalNormV2 kernel (TF ops under XLA)."""
    if _in_xla_context():
        return _norms_in_tf_ops(values, norm_dtype, kind, inverse_scale)
    return tuple(ops.monolith_global_norm_v2(values, inverse_scale, norm_type=kind))


def _names(entries, positions):
    """How the finite check names each tensor: its index in the caller's
    list and, where the graph gives one, its name."""
    names = []
    for i in positions:
        name = None if tf.executing_eagerly() else getattr(entries[i], "name", None)
        names.append(f"t_list[{i}] ({name})" if name else f"t_list[{i}]")
    return names


def _check_finite(norm, tensor_norms, names, returned_dtype):
    """`norm`, once MonolithCheckNormsFinite has checked that it and
    `tensor_norms` are finite as they are returned, in `returned_dtype`
    (a float16 norm overflows where its float32 value does not); the error
    names the first tensor whose norm is not."""

    def as_returned(x):
        return tf.cast(tf.cast(x, returned_dtype), x.dtype)

    return ops.monolith_check_norms_finite(
        as_returned(norm), as_returned(tensor_norms), names=names
    )


def _after(check, tensors):
    """`tensors` (None kept) computed after `check` has run."""
    with tf.control_dependencies([check]):
        return [None if t is None else tf.identity(t) for t in tensors]


def _tensor_norm_list(tensor_norms, positions, length, dtype):
    """The vector of the tensors' norms as a list over the caller's list:
    None where t_list holds None."""
    result = [None] * length
    if positions:
        for i, n in zip(positions, tf.unstack(tf.cast(tensor_norms, dtype), num=len(positions))):
            result[i] = n
    return result


def _v2_inputs_grads(op, forward, grads):
    """Gradients of a V2 op's inputs: those of `forward`, the op in TF ops,
    given the gradients reaching the op's outputs."""
    inputs = list(op.inputs)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        outputs = forward(inputs)
    outputs = list(outputs)
    grads = [tf.zeros_like(o) if g is None else _dense(g) for o, g in zip(outputs, grads)]
    return tape.gradient(
        outputs, inputs, output_gradients=grads, unconnected_gradients=tf.UnconnectedGradients.ZERO
    )


@tf.RegisterGradient("MonolithGlobalNormV2")
def _global_norm_v2_grad(op, dnorm, dtensor_norms):
    kind = op.get_attr("norm_type").decode()

    def forward(inputs):
        xs, inverse_scale = inputs[:-1], inputs[-1]
        return _norms_in_tf_ops(xs, inverse_scale.dtype, kind, inverse_scale)

    return _v2_inputs_grads(op, forward, [dnorm, dtensor_norms])


@tf.RegisterGradient("MonolithClipByGlobalNormV2")
def _clip_by_global_norm_v2_grad(op, *grads):
    kind = op.get_attr("norm_type").decode()

    def forward(inputs):
        xs, clip_norm, inverse_scale = inputs[:-2], inputs[-2], inputs[-1]
        norm, tensor_norms = _norms_in_tf_ops(xs, clip_norm.dtype, kind, inverse_scale)
        return [*_scaled_in_tf_ops(xs, norm, clip_norm, inverse_scale), norm, tensor_norms]

    return _v2_inputs_grads(op, forward, list(grads))


@tf.RegisterGradient("MonolithCheckNormsFinite")
def _check_norms_finite_grad(op, grad):
    return [grad, None]


_Entry = Optional[Union[tf.Tensor, tf.IndexedSlices]]
_Scalar = Union[float, tf.Tensor, tf.Variable, np.number]


def global_norm(
    t_list: Sequence[_Entry],
    name: Optional[str] = None,
    *,
    norm_type: Union[float, str] = 2,
    per_tensor: bool = False,
    error_if_nonfinite: bool = False,
) -> Union[tf.Tensor, tuple[tf.Tensor, list[Optional[tf.Tensor]]]]:
    """The global norm of a list of tensors: sqrt(sum of all squares).

    Like `tf.linalg.global_norm`, computed by the `GlobalL2Reduce` kernel;
    with any of the keyword arguments, by `MonolithGlobalNormV2`, in one pass
    over the data (docs/clip_features.md).

    Args:
      t_list: A list or tuple of Tensors, IndexedSlices (their values count)
        or None (skipped).
      name: Optional name scope for the ops created.
      norm_type: 2 (the L2 norm) or infinity (``float("inf")``, ``np.inf``
        or ``"inf"``: the largest absolute value, NaN if any value is NaN).
      per_tensor: Also return the norm of each entry.
      error_if_nonfinite: Raise, when run, instead of returning a norm that
        is inf or NaN; the error names the first entry whose norm is not
        finite. Not under XLA.

    Returns:
      The norm: a scalar Tensor, float32 0 for a list with no tensors; else
      the inputs' dtype when they share one, float64 if any is float64, else
      float32. It is inf or NaN when an input holds inf or NaN. With
      per_tensor, (norm, tensor_norms): tensor_norms has one entry per
      entry of t_list, None for None, else a scalar of the norm's dtype.

    Raises:
      TypeError: `t_list` is not a list or tuple, or holds a non-float
        tensor; `norm_type` is not a number or string.
      ValueError: `norm_type` is neither 2 nor infinity; error_if_nonfinite
        under XLA.
      tf.errors.InvalidArgumentError: when run with error_if_nonfinite, the
        norm is not finite.
    """
    _check_list(t_list)
    kind = _norm_kind(norm_type)
    _check_flags(per_tensor=per_tensor, error_if_nonfinite=error_if_nonfinite)
    v2 = kind != _L2_NORM or per_tensor or error_if_nonfinite
    _check_not_in_xla(error_if_nonfinite)
    with tf.name_scope(name or "global_norm"):
        entries = _entries(t_list)
        positions = [i for i, e in enumerate(entries) if e is not None]
        values = [_values(entries[i]) for i in positions]
        if not values:
            norm = tf.constant(0.0, tf.float32)
            return (norm, [None] * len(entries)) if per_tensor else norm
        if not v2:
            norm = tf.sqrt(_sum_of_squares(values, _norm_dtype(values)))
            return tf.cast(norm, _result_dtype(values))
        norm_dtype = _norm_dtype(values)
        norm, tensor_norms = _norms(values, norm_dtype, kind, tf.constant(1, norm_dtype))
        result_dtype = _result_dtype(values)
        if error_if_nonfinite:
            check = _check_finite(norm, tensor_norms, _names(entries, positions), result_dtype)
            # Every output waits for the check, whichever is fetched.
            norm, tensor_norms = _after(check, [norm, tensor_norms])
        norm = tf.cast(norm, result_dtype)
        if not per_tensor:
            return norm
        return norm, _tensor_norm_list(tensor_norms, positions, len(entries), norm.dtype)


def _check_flags(**flags):
    """Each keyword a bool (or NumPy bool), as TF's flags: a truthy string
    such as "no" must not turn a feature on."""
    for arg, value in flags.items():
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(
                f"{arg} should be True or False, but received "
                f"{type(value).__name__}: {value!r:.100}"
            )


def _nan_under_xla_unless(valid, x):
    """`x`, or NaN where `valid` (a scalar bool tensor) is false, inside XLA.

    XLA drops the run-time assertions that refuse a bad clip_norm,
    inverse_scale or use_norm elsewhere; there such a value gives NaN
    outputs instead, as a non-finite norm does, so that it cannot be taken
    for a clip. Outside XLA `x` is returned as it is."""
    if not _in_xla_context():
        return x
    return tf.where(valid, x, tf.constant(np.nan, x.dtype))


def _check_not_in_xla(error_if_nonfinite):
    if error_if_nonfinite and _in_xla_context():
        raise ValueError(
            "error_if_nonfinite=True cannot be compiled by XLA (jit_compile), "
            "which cannot raise an error when it runs; check "
            "tf.math.is_finite(global_norm) instead"
        )


def clip_by_global_norm(
    t_list: Sequence[_Entry],
    clip_norm: _Scalar,
    use_norm: Optional[_Scalar] = None,
    name: Optional[str] = None,
    *,
    norm_type: Union[float, str] = 2,
    inverse_scale: Optional[_Scalar] = None,
    per_tensor: bool = False,
    error_if_nonfinite: bool = False,
) -> Union[
    tuple[list[_Entry], tf.Tensor],
    tuple[list[_Entry], tf.Tensor, list[Optional[tf.Tensor]]],
]:
    """Clips tensors by the ratio of the sum of their norms, like TF's.

    out[i] = t_list[i] * clip_norm / max(global_norm, clip_norm).

    With any of the keyword arguments the norms and the clip are computed by
    one `MonolithClipByGlobalNormV2` kernel (docs/clip_features.md).

    Args:
      t_list: A list or tuple of Tensors, IndexedSlices or None.
      clip_norm: A positive number or scalar Tensor, the clipping ratio.
      use_norm: Optional scalar: the global norm to use instead of computing
        it (of the unscaled list, with inverse_scale). It is returned as is.
      name: Optional name scope for the ops created.
      norm_type: 2 (the L2 norm) or infinity (``float("inf")``, ``np.inf``
        or ``"inf"``): the norm clipped by.
      inverse_scale: Optional positive scalar, such as 1 / loss scale: the
        list is unscaled and clipped in one pass, out[i] = t_list[i] *
        inverse_scale * clip_norm / max(global_norm, clip_norm), where
        global_norm is the norm of t_list * inverse_scale.
      per_tensor: Also return the norm of each entry (unscaled).
      error_if_nonfinite: Raise, when run, instead of returning NaN outputs
        when the norm is inf or NaN; the error names the first entry whose
        norm is not finite. Not under XLA.

    Returns:
      (list_clipped, global_norm), and tensor_norms with per_tensor.
      list_clipped has one entry per input: None for None, IndexedSlices
      (same indices and dense_shape) for IndexedSlices, else a Tensor of the
      input's shape and dtype. When the norm is at most clip_norm (and no
      inverse_scale other than 1 is given) they equal the inputs; when it is
      inf or NaN they are entirely NaN. global_norm is float32 0 for a list
      with no tensors, else as `global_norm` returns, or use_norm when given.
      tensor_norms is as `global_norm` returns it.

    Raises:
      TypeError: `t_list` is not a list or tuple, holds a non-float tensor,
        or clip_norm / use_norm / inverse_scale is not numeric, or
        norm_type is not a number or string.
      ValueError: clip_norm, use_norm or inverse_scale is not a scalar; a
        clip_norm or inverse_scale known at graph-build time (or eager) is
        not positive and finite; norm_type is neither 2 nor infinity;
        error_if_nonfinite under XLA.
      tf.errors.InvalidArgumentError: when run, a clip_norm or inverse_scale
        known only then is not positive and finite; with error_if_nonfinite,
        the norm is not finite.
    """
    _check_list(t_list)
    kind = _norm_kind(norm_type)
    _check_flags(per_tensor=per_tensor, error_if_nonfinite=error_if_nonfinite)
    v2 = kind != _L2_NORM or per_tensor or error_if_nonfinite or inverse_scale is not None
    _check_not_in_xla(error_if_nonfinite)
    with tf.name_scope(name or "clip_by_global_norm"):
        entries = _entries(t_list)
        positions = [i for i, e in enumerate(entries) if e is not None]
        values = [_values(entries[i]) for i in positions]
        norm_dtype = _norm_dtype(values)
        clip_norm_tensor = _scalar(clip_norm, "clip_norm", norm_dtype)
        static_clip_norm = _static_positive(clip_norm_tensor, clip_norm, norm_dtype)
        if tf.executing_eagerly() and isinstance(clip_norm, (tf.Tensor, tf.Variable)):
            # Its value is known now, but a tape may be watching it: it stays
            # a tensor, not an attr, so that it can get a gradient.
            static_clip_norm = None
        if use_norm is not None:
            use_norm = _scalar(use_norm, "use_norm", norm_dtype)
        inverse = None
        if inverse_scale is not None:
            inverse = _scalar(inverse_scale, "inverse_scale", norm_dtype)
            _static_positive(inverse, inverse_scale, norm_dtype, "inverse_scale")
            inverse = tf.cast(inverse, norm_dtype)
        if not values:
            norm_out = tf.constant(0.0, tf.float32) if use_norm is None else use_norm
            if per_tensor:
                return list(entries), norm_out, [None] * len(entries)
            return list(entries), norm_out
        clip_norm_tensor = tf.cast(clip_norm_tensor, norm_dtype)
        clip_norm_tensor = _nan_under_xla_unless(
            _is_positive_finite(clip_norm_tensor), clip_norm_tensor
        )
        if inverse is not None:
            inverse = _nan_under_xla_unless(_is_positive_finite(inverse), inverse)
        plan = choose_clip_path(
            [v.dtype for v in values],
            norm_dtype,
            use_norm is not None,
            static_clip_norm,
            v2_features=v2,
        )
        tensor_norms = None
        if v2 and inverse is None:
            inverse = tf.constant(1, norm_dtype)
        if plan.path is ClipPath.FUSED_V2:
            clipped, norm, tensor_norms = ops.monolith_clip_by_global_norm_v2(
                values, clip_norm_tensor, inverse, norm_type=kind
            )
            norm_out = tf.cast(norm, _result_dtype(values))
        elif plan.path is ClipPath.FUSED:
            clipped, norm = _fused_norm_and_clip(values, clip_norm_tensor, norm_dtype)
            norm_out = tf.cast(norm, _result_dtype(values))
        else:
            if use_norm is not None:
                norm = tf.cast(use_norm, norm_dtype)
                norm = _nan_under_xla_unless(tf.logical_not(norm < 0), norm)
                norm_out = use_norm
                if per_tensor:
                    tensor_norms = _norms(values, norm_dtype, kind, inverse)[1]
            elif v2:
                norm, tensor_norms = _norms(values, norm_dtype, kind, inverse)
                norm_out = tf.cast(norm, _result_dtype(values))
            else:
                norm = tf.sqrt(_sum_of_squares(values, norm_dtype))
                norm_out = tf.cast(norm, _result_dtype(values))
            if plan.path is ClipPath.KERNEL_WITH_CLIP_NORM_ATTR:
                clipped = _clip_with_kernel(values, norm, plan.clip_norm_attr)
            else:
                clipped = _clip_in_tf_ops(values, norm, clip_norm_tensor, inverse)
        if error_if_nonfinite:
            checked_by = tensor_norms if tensor_norms is not None else tf.zeros([0], norm_dtype)
            names = _names(entries, positions) if tensor_norms is not None else []
            check = _check_finite(norm, checked_by, names, norm_out.dtype)
            # Every output waits for the check, whichever is fetched.
            clipped = _after(check, clipped)
            norm_out, tensor_norms = _after(check, [norm_out, tensor_norms])
        result = list(entries)
        for i, out in zip(positions, clipped):
            entry = entries[i]
            if isinstance(entry, tf.IndexedSlices):
                out = tf.IndexedSlices(out, entry.indices, entry.dense_shape)
            result[i] = out
        if not per_tensor:
            return result, norm_out
        return (
            result,
            norm_out,
            _tensor_norm_list(tensor_norms, positions, len(entries), norm_out.dtype),
        )
