# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""Global-norm gradient clipping on the library's kernels, a drop-in for TF's.

``clip_by_global_norm`` and ``global_norm`` take what ``tf.clip_by_global_norm``
and ``tf.linalg.global_norm`` take and give their results, within float
rounding. ``clip_by_global_norm`` builds one of four paths
(``choose_clip_path``, in ``monolith_ops._clip.planner``):

* ``ClipPath.FUSED``: a single-dtype list without ``use_norm``, one
  ``MonolithClipByGlobalNormFused`` kernel (in parts of ``CHUNK_SIZE``
  tensors for a list longer than ``PACK_ABOVE`` in a graph, for Grappler);
* ``ClipPath.KERNEL_WITH_CLIP_NORM_ATTR``: the norm from ``GlobalL2Reduce``
  (or ``use_norm``), the clip by ``MonolithClipByGlobalNorm`` per dtype with
  ``clip_norm`` as its attr;
* ``ClipPath.TF_OPS``: the clip in TF ops (``clip_scale``), under XLA, which
  cannot compile the kernels, and where ``clip_norm`` cannot be an attr;
* ``ClipPath.FUSED_WITH_FEATURES``: one ``MonolithClipByGlobalNormV2``
  kernel, when ``norm_type``, ``per_tensor``, ``inverse_scale`` or
  ``error_if_nonfinite`` asks for more than TF's clip
  (docs/clip_features.md).

The supported dtypes are those the ops are registered for
(``SUPPORTED_DTYPES``). Their gradients are registered on import
(``monolith_ops._clip.gradients``). docs/clipping.md says what the
results are, including where they depart from TF's; docs/keras.md what
differs under XLA.
"""

from collections.abc import Sequence
from typing import Optional, Union

import numpy as np
import tensorflow as tf

from monolith_ops._clip import gradients  # noqa: F401  (registers the gradients)
from monolith_ops._clip import ops as ops
from monolith_ops._clip.inputs import (
    L2_NORM,
    check_flags,
    check_list,
    norm_dtype_of,
    norm_kind,
    result_dtype_of,
    static_positive,
    to_entries,
    to_scalar,
    values_of,
)
from monolith_ops._clip.inputs import SUPPORTED_DTYPES as SUPPORTED_DTYPES
from monolith_ops._clip.inputs import check_clip_norm as check_clip_norm
from monolith_ops._clip.planner import CHUNK_SIZE as CHUNK_SIZE
from monolith_ops._clip.planner import PACK_ABOVE as PACK_ABOVE
from monolith_ops._clip.planner import (
    ClipPath,
    after,
    check_finite,
    check_not_in_xla,
    choose_clip_path,
    clip_with_kernel,
    entry_names,
    fused_norm_and_clip,
    kernel_norms,
    tensor_norm_list,
    total_sum_of_squares,
)
from monolith_ops._clip.planner import ClipPlan as ClipPlan
from monolith_ops._clip.tf_ops import clip_in_tf_ops, is_positive_finite, nan_under_xla_unless
from monolith_ops._clip.tf_ops import clip_scale as clip_scale

# The names imported `as` themselves are this module's interface too: the
# ops, the dtypes they take, the check of a clip_norm given ahead of any
# graph, the clip factor, the plan type and the packing thresholds.
__all__ = ["clip_by_global_norm", "global_norm"]

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
    check_list(t_list)
    kind = norm_kind(norm_type)
    check_flags(per_tensor=per_tensor, error_if_nonfinite=error_if_nonfinite)
    v2 = kind != L2_NORM or per_tensor or error_if_nonfinite
    check_not_in_xla(error_if_nonfinite)
    with tf.name_scope(name or "global_norm"):
        entries = to_entries(t_list)
        positions = [i for i, e in enumerate(entries) if e is not None]
        values = [values_of(entries[i]) for i in positions]
        if not values:
            norm = tf.constant(0.0, tf.float32)
            return (norm, [None] * len(entries)) if per_tensor else norm
        if not v2:
            norm = tf.sqrt(total_sum_of_squares(values, norm_dtype_of(values)))
            return tf.cast(norm, result_dtype_of(values))
        norm_dtype = norm_dtype_of(values)
        norm, tensor_norms = kernel_norms(values, norm_dtype, kind, tf.constant(1, norm_dtype))
        result_dtype = result_dtype_of(values)
        if error_if_nonfinite:
            check = check_finite(norm, tensor_norms, entry_names(entries, positions), result_dtype)
            # Every output waits for the check, whichever is fetched.
            norm, tensor_norms = after(check, [norm, tensor_norms])
        norm = tf.cast(norm, result_dtype)
        if not per_tensor:
            return norm
        return norm, tensor_norm_list(tensor_norms, positions, len(entries), norm.dtype)


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
    check_list(t_list)
    kind = norm_kind(norm_type)
    check_flags(per_tensor=per_tensor, error_if_nonfinite=error_if_nonfinite)
    v2 = kind != L2_NORM or per_tensor or error_if_nonfinite or inverse_scale is not None
    check_not_in_xla(error_if_nonfinite)
    with tf.name_scope(name or "clip_by_global_norm"):
        entries = to_entries(t_list)
        positions = [i for i, e in enumerate(entries) if e is not None]
        values = [values_of(entries[i]) for i in positions]
        norm_dtype = norm_dtype_of(values)
        if use_norm is not None:
            use_norm = to_scalar(use_norm, "use_norm", norm_dtype)
            if use_norm.dtype in (tf.float32, tf.float64):
                # As in TF, the scale is computed in the given norm's dtype
                # (then rounded to each tensor's), not in the list's.
                norm_dtype = use_norm.dtype
        clip_norm_tensor = to_scalar(clip_norm, "clip_norm", norm_dtype)
        static_clip_norm = static_positive(clip_norm_tensor, clip_norm, norm_dtype)
        if tf.executing_eagerly() and isinstance(clip_norm, (tf.Tensor, tf.Variable)):
            # Its value is known now, but a tape may be watching it: it stays
            # a tensor, not an attr, so that it can get a gradient.
            static_clip_norm = None
        inverse = None
        if inverse_scale is not None:
            inverse = to_scalar(inverse_scale, "inverse_scale", norm_dtype)
            static_positive(inverse, inverse_scale, norm_dtype, "inverse_scale")
            inverse = tf.cast(inverse, norm_dtype)
        if not values:
            norm_out = tf.constant(0.0, tf.float32) if use_norm is None else use_norm
            if per_tensor:
                return list(entries), norm_out, [None] * len(entries)
            return list(entries), norm_out
        clip_norm_tensor = tf.cast(clip_norm_tensor, norm_dtype)
        clip_norm_tensor = nan_under_xla_unless(
            is_positive_finite(clip_norm_tensor), clip_norm_tensor
        )
        if inverse is not None:
            inverse = nan_under_xla_unless(is_positive_finite(inverse), inverse)
        plan = choose_clip_path(
            [v.dtype for v in values],
            norm_dtype,
            use_norm is not None,
            static_clip_norm,
            features=v2,
        )
        tensor_norms = None
        if v2 and inverse is None:
            inverse = tf.constant(1, norm_dtype)
        if plan.path is ClipPath.FUSED_WITH_FEATURES:
            clipped, norm, tensor_norms = ops.monolith_clip_by_global_norm_v2(
                values, clip_norm_tensor, inverse, norm_type=kind
            )
            norm_out = tf.cast(norm, result_dtype_of(values))
        elif plan.path is ClipPath.FUSED:
            clipped, norm = fused_norm_and_clip(values, clip_norm_tensor, norm_dtype)
            norm_out = tf.cast(norm, result_dtype_of(values))
        else:
            if use_norm is not None:
                norm = tf.cast(use_norm, norm_dtype)
                norm = nan_under_xla_unless(tf.logical_not(norm < 0), norm)
                norm_out = use_norm
                if per_tensor:
                    tensor_norms = kernel_norms(values, norm_dtype, kind, inverse)[1]
            elif v2:
                norm, tensor_norms = kernel_norms(values, norm_dtype, kind, inverse)
                norm_out = tf.cast(norm, result_dtype_of(values))
            else:
                norm = tf.sqrt(total_sum_of_squares(values, norm_dtype))
                norm_out = tf.cast(norm, result_dtype_of(values))
            if plan.path is ClipPath.KERNEL_WITH_CLIP_NORM_ATTR:
                clipped = clip_with_kernel(values, norm, plan.clip_norm_attr)
            else:
                clipped = clip_in_tf_ops(values, norm, clip_norm_tensor, inverse)
        if error_if_nonfinite:
            checked_by = tensor_norms if tensor_norms is not None else tf.zeros([0], norm_dtype)
            names = entry_names(entries, positions) if tensor_norms is not None else []
            check = check_finite(norm, checked_by, names, norm_out.dtype)
            # Every output waits for the check, whichever is fetched.
            clipped = after(check, clipped)
            norm_out, tensor_norms = after(check, [norm_out, tensor_norms])
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
            tensor_norm_list(tensor_norms, positions, len(entries), norm_out.dtype),
        )
