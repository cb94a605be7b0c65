# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""Which ops a clip is built from: the path (``choose_clip_path``), the
packing of long lists in graphs, and the calls of the library's kernels."""

import dataclasses
import enum
from collections.abc import Sequence
from typing import Optional

import numpy as np
import tensorflow as tf

from monolith_ops._clip import ops
from monolith_ops._clip.inputs import dtype_groups
from monolith_ops._clip.tf_ops import in_xla_context, norms_in_tf_ops
from monolith_ops._loader import built_with_cuda

# Grappler spends time quadratic in the number of inputs and outputs of one
# node (100,000 tensors in one op did not build in minutes), while every extra
# op costs each step. So in a graph a list of more than PACK_ABOVE tensors is
# packed and clipped in parts of CHUNK_SIZE, with the norm of the whole list
# computed once; a shorter list is one op. The results are bitwise those of
# one op. Both numbers were chosen by timing graph builds and steps on either
# side of them (the measurements are in the repository's history).
PACK_ABOVE = 4096


CHUNK_SIZE = 64


def graph_parts(values):
    """`values` cut into parts of at most CHUNK_SIZE where that is needed: a
    list of more than PACK_ABOVE tensors in a graph (run by Grappler), on CPU
    kernels. Eager ops are not optimized, and the GPU kernels take a whole
    list (they have no packed form yet)."""
    if len(values) <= PACK_ABOVE or tf.executing_eagerly() or gpu_kernels():
        return [values]
    return [values[i : i + CHUNK_SIZE] for i in range(0, len(values), CHUNK_SIZE)]


def gpu_kernels():
    """Whether the ops may be placed on a GPU."""
    return built_with_cuda() and bool(tf.config.list_physical_devices("GPU"))


def l2_reduce(values, norm_dtype):
    """GlobalL2Reduce of `values` (one dtype), rounded to norm_dtype."""
    parts = graph_parts(values)
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


def total_sum_of_squares(values, norm_dtype):
    """Sum of squares of all `values`, one reduction per dtype group."""
    if in_xla_context():
        return tf.add_n([tf.reduce_sum(tf.square(tf.cast(v, norm_dtype))) for v in values])
    total = None
    for group in dtype_groups(values):
        part = l2_reduce([values[i] for i in group], norm_dtype)
        total = part if total is None else total + part
    return total


def clip_with_kernel(values, norm, clip_norm_attr):
    """Clips `values` by `norm` (a scalar of the norm dtype) with
    MonolithClipByGlobalNorm, one op per dtype (and part), clip_norm an attr."""
    clipped = [None] * len(values)
    for group in dtype_groups(values):
        for part in graph_parts(group):
            outs = ops.monolith_clip_by_global_norm(
                [values[i] for i in part], norm, clip_norm=clip_norm_attr
            )
            for i, out in zip(part, outs):
                clipped[i] = out
    return clipped


def fused_norm_and_clip(values, clip_norm, norm_dtype):
    """The norm and the clip of a single-dtype list in one kernel,
    MonolithClipByGlobalNormFused: no host read of the norm between phases.
    In parts of CHUNK_SIZE with the sum of squares given, when graph_parts splits
    the list."""
    parts = graph_parts(values)
    if len(parts) == 1:
        clipped, norm = ops.monolith_clip_by_global_norm_fused(values, clip_norm)
        return list(clipped), norm
    sum_of_squares = l2_reduce(values, norm_dtype)
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
    FUSED_WITH_FEATURES = "fused_with_features"


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
    features: bool = False,
) -> ClipPlan:
    """The path ``clip_by_global_norm`` takes for a non-empty list.

    Args:
      dtypes: The dtypes of the tensors to clip.
      norm_dtype: The dtype the norm is computed in (see `norm_dtype_of`).
      has_use_norm: Whether the norm is given (`use_norm`).
      static_clip_norm: clip_norm as a float when it may be an op's attr
        (known when the graph is built, no tape watching it), else None.
      features: Whether a feature of the V2 ops is asked for (see
        ``ClipPath.FUSED_WITH_FEATURES``).
    """
    if in_xla_context():
        return ClipPlan(ClipPath.TF_OPS)
    if features:
        return ClipPlan(ClipPath.TF_OPS if has_use_norm else ClipPath.FUSED_WITH_FEATURES)
    if not has_use_norm and len(set(dtypes)) == 1:
        return ClipPlan(ClipPath.FUSED)
    attr_is_exact = static_clip_norm is not None and (
        norm_dtype == tf.float32 or float(np.float32(static_clip_norm)) == static_clip_norm
    )
    if attr_is_exact:
        return ClipPlan(ClipPath.KERNEL_WITH_CLIP_NORM_ATTR, static_clip_norm)
    return ClipPlan(ClipPath.TF_OPS)


def kernel_norms(values, norm_dtype, kind, inverse_scale):
    """(The global norm, the vector of the tensors' norms) of the unscaled
    `values`, by the MonolithGlobalNormV2 kernel (TF ops under XLA)."""
    if in_xla_context():
        return norms_in_tf_ops(values, norm_dtype, kind, inverse_scale)
    return tuple(ops.monolith_global_norm_v2(values, inverse_scale, norm_type=kind))


def entry_names(entries, positions):
    """How the finite check names each tensor: its index in the caller's
    list and, where the graph gives one, its name."""
    names = []
    for i in positions:
        name = None if tf.executing_eagerly() else getattr(entries[i], "name", None)
        names.append(f"t_list[{i}] ({name})" if name else f"t_list[{i}]")
    return names


def check_finite(norm, tensor_norms, names, returned_dtype):
    """`norm`, once MonolithCheckNormsFinite has checked that it and
    `tensor_norms` are finite as they are returned, in `returned_dtype`
    (a float16 norm overflows where its float32 value does not); the error
    names the first tensor whose norm is not."""

    def as_returned(x):
        return tf.cast(tf.cast(x, returned_dtype), x.dtype)

    return ops.monolith_check_norms_finite(
        as_returned(norm), as_returned(tensor_norms), names=names
    )


def after(check, tensors):
    """`tensors` (None kept) computed after `check` has run."""
    with tf.control_dependencies([check]):
        return [None if t is None else tf.identity(t) for t in tensors]


def tensor_norm_list(tensor_norms, positions, length, dtype):
    """The vector of the tensors' norms as a list over the caller's list:
    None where t_list holds None."""
    result = [None] * length
    if positions:
        for i, n in zip(positions, tf.unstack(tf.cast(tensor_norms, dtype), num=len(positions))):
            result[i] = n
    return result


def check_not_in_xla(error_if_nonfinite):
    if error_if_nonfinite and in_xla_context():
        raise ValueError(
            "error_if_nonfinite=True cannot be compiled by XLA (jit_compile), "
            "which cannot raise an error when it runs; check "
            "tf.math.is_finite(global_norm) instead"
        )
