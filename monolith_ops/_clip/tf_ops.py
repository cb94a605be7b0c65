# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""The clip and the norms in TF ops: what the kernels compute, written with
TensorFlow's own ops, for XLA (which cannot compile the kernels), for a
clip_norm the kernel cannot take as its attr, and for the ops' gradients.
Each follows the rule of the kernels in cc/core/clip_decision.h."""

import numpy as np
import tensorflow as tf
from tensorflow.python.ops import control_flow_util

from monolith_ops._clip.inputs import L2_NORM


def in_xla_context():
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


def is_positive_finite(x):
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


def clip_in_tf_ops(values, norm, clip_norm, inverse_scale=None):
    """The clip of MonolithClipByGlobalNorm in TF ops, for a clip_norm the
    kernel cannot take as its attr: one known only at run time (or watched
    by a tape), or a float64 one that float32 cannot hold; under XLA; and
    for an inverse_scale with a given norm. clip_norm and the norm are
    checked when it runs, as the kernel checks them; below clip_norm the
    inputs pass through bitwise."""
    checks = [
        tf.debugging.Assert(
            is_positive_finite(clip_norm),
            ["clip_norm must be positive and finite, got", clip_norm],
        ),
        tf.debugging.Assert(
            tf.logical_not(norm < 0), ["global_norm (use_norm) must be non-negative, got", norm]
        ),
    ]
    if inverse_scale is not None:
        checks.append(
            tf.debugging.Assert(
                is_positive_finite(inverse_scale),
                ["inverse_scale must be positive and finite, got", inverse_scale],
            )
        )
    with tf.control_dependencies(checks):
        return [tf.identity(v) for v in scaled_in_tf_ops(values, norm, clip_norm, inverse_scale)]


def scaled_in_tf_ops(values, norm, clip_norm, inverse_scale):
    """`values` times inverse_scale (None for none) and the clip factor of
    `norm`, in TF ops, as the kernels compute them (DecideUnscaledClip in
    cc/core/clip_decision.h)."""
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


def norms_in_tf_ops(values, norm_dtype, kind, inverse_scale):
    """MonolithGlobalNormV2 in TF ops: (the global norm, the vector of the
    tensors' norms) of `values` times inverse_scale, in norm_dtype. Used
    under XLA and to differentiate the V2 ops."""

    def max_or_nan(x):  # MaxOrNaN of cc/core/clip_decision.h
        nan = tf.reduce_any(tf.math.is_nan(x))
        return tf.where(nan, tf.constant(np.nan, norm_dtype), tf.reduce_max(x))

    reductions = []
    for v in values:
        x = tf.reshape(tf.cast(v, norm_dtype), [-1])
        if kind == L2_NORM:
            reductions.append(tf.reduce_sum(tf.square(x)))
        else:
            reductions.append(max_or_nan(tf.concat([tf.zeros([1], norm_dtype), tf.abs(x)], 0)))
    reductions = tf.stack(reductions)
    if kind == L2_NORM:
        combined = tf.reduce_sum(reductions)
        scale = inverse_scale * inverse_scale
        return tf.sqrt(combined * scale), tf.sqrt(reductions * scale)
    return max_or_nan(reductions) * inverse_scale, reductions * inverse_scale


def nan_under_xla_unless(valid, x):
    """`x`, or NaN where `valid` (a scalar bool tensor) is false, inside XLA.

    XLA drops the run-time assertions that refuse a bad clip_norm,
    inverse_scale or use_norm elsewhere; there such a value gives NaN
    outputs instead, as a non-finite norm does, so that it cannot be taken
    for a clip. Outside XLA `x` is returned as it is."""
    if not in_xla_context():
        return x
    return tf.where(valid, x, tf.constant(np.nan, x.dtype))
