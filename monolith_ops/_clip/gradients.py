# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""The registered gradients of the library's clip ops."""

import tensorflow as tf

from monolith_ops._clip.tf_ops import clip_scale, norms_in_tf_ops, scaled_in_tf_ops

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


def _inputs_grads_by_formulation(op, forward, grads):
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
        return norms_in_tf_ops(xs, inverse_scale.dtype, kind, inverse_scale)

    return _inputs_grads_by_formulation(op, forward, [dnorm, dtensor_norms])


@tf.RegisterGradient("MonolithClipByGlobalNormV2")
def _clip_by_global_norm_v2_grad(op, *grads):
    kind = op.get_attr("norm_type").decode()

    def forward(inputs):
        xs, clip_norm, inverse_scale = inputs[:-2], inputs[-2], inputs[-1]
        norm, tensor_norms = norms_in_tf_ops(xs, clip_norm.dtype, kind, inverse_scale)
        return [*scaled_in_tf_ops(xs, norm, clip_norm, inverse_scale), norm, tensor_norms]

    return _inputs_grads_by_formulation(op, forward, list(grads))


@tf.RegisterGradient("MonolithCheckNormsFinite")
def _check_norms_finite_grad(op, grad):
    return [grad, None]
