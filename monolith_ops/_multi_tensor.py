# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""What the TF1 and the Keras optimizers share around the
``MonolithMultiTensorApply*`` ops: which updates the ops can take, the
global norm that their clip reads, and one op per (device, dtype, gradient
kind) and graph part."""

import tensorflow as tf
from tensorflow.python.ops import resource_variable_ops

from monolith_ops._clip import ops
from monolith_ops._clip.inputs import SUPPORTED_DTYPES, norm_dtype_of
from monolith_ops._clip.planner import gpu_kernels, graph_parts, total_sum_of_squares


def gpu_present():
    """True when the process may place ops on a GPU: the ops have CPU
    kernels only, so updates there take the framework's own path."""
    if gpu_kernels():
        return True
    try:
        devices = tf.config.list_logical_devices()
    except RuntimeError:
        devices = []
    return any(d.device_type == "GPU" for d in devices)


def fusable(grad, var):
    """True when one op can update `var` (a tf.Variable) by `grad`: a
    resource variable on CPU, a gradient of its dtype, one of the library's."""
    return (
        resource_variable_ops.is_resource_variable(var)
        and grad.dtype == var.dtype.base_dtype
        and grad.dtype in SUPPORTED_DTYPES
        and "GPU" not in (var.device or "").upper()
    )


def global_norm(grads):
    """The global norm of `grads` (tensors and IndexedSlices, whose values
    count) in the norm's dtype: float64 if any gradient is, else float32."""
    values = [g.values if isinstance(g, tf.IndexedSlices) else g for g in grads]
    return tf.sqrt(total_sum_of_squares(values, norm_dtype_of(values)))


def _as_norm_dtype(value, dtype):
    """A number converted straight to `dtype` (not through float32), a
    tensor cast."""
    if isinstance(value, (tf.Tensor, tf.Variable)):
        return tf.cast(value, dtype)
    return tf.constant(value, dtype)


def _op_name(rule, sparse):
    snake = "".join("_" + c.lower() if c.isupper() else c for c in rule).lstrip("_")
    return f"monolith_multi_tensor_{'sparse_' if sparse else ''}apply_{snake}"


def apply_in_groups(
    rule,
    pairs,
    slots_of,
    hyper_of,
    norm,
    clip_norm,
    *,
    skip_nonfinite=False,
    attrs=None,
    sparse_inputs=None,
):
    """Updates `pairs` ((gradient, tf.Variable), each `fusable`) by `rule`
    ("Adam", "KerasAdam", ...) with one op per (device, dtype, gradient kind)
    and graph part, placed on the variables' device.

    slots_of(var) gives the variable's slot variables in the op's order;
    hyper_of(dtype) the hyperparameter tensors in that dtype. `norm` is the
    global norm (or None when neither the clip nor the skip reads it) and
    `clip_norm` None for no clip. IndexedSlices gradients go to the sparse op
    as sparse_inputs(grads, variables) gives their (values, indices), which
    it has already clipped.

    Returns (update ops, `applied` of each op)."""
    groups = {}
    for g, v in pairs:
        sparse = isinstance(g, tf.IndexedSlices)
        key = (v.device, v.dtype.base_dtype, g.indices.dtype if sparse else None)
        groups.setdefault(key, []).append((g, v))
    norm_dtype = norm.dtype if norm is not None else tf.float32
    if norm is None:
        norm = tf.constant(0, norm_dtype)
    clip = clip_norm is not None
    clip_norm = _as_norm_dtype(clip_norm if clip else 1, norm_dtype)
    update_ops, applied = [], []
    for (device, dtype, index_dtype), group in groups.items():
        with tf.device(device), tf.name_scope("update_" + dtype.name):
            hyper = hyper_of(dtype)
            for part in graph_parts(group):
                grads = [g for g, _ in part]
                variables = [v for _, v in part]
                slot_lists = [list(s) for s in zip(*[slots_of(v) for v in variables])]
                slots = [[s.handle for s in slot_list] for slot_list in slot_lists]
                handles = [v.handle for v in variables]
                op_attrs = dict(attrs or {}, clip=clip, skip_nonfinite=skip_nonfinite)
                if index_dtype is None:
                    op = getattr(ops, _op_name(rule, sparse=False))
                    out = op(handles, *slots, grads, *hyper, norm, clip_norm, **op_attrs)
                else:
                    values, indices = sparse_inputs(grads, variables)
                    op_attrs["clip"] = False  # sparse_inputs clipped them
                    op = getattr(ops, _op_name(rule, sparse=True))
                    out = op(handles, *slots, values, indices, *hyper, norm, clip_norm, **op_attrs)
                update_ops.append(out if tf.executing_eagerly() else out.op)
                applied.append(out)
    return update_ops, applied
