# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""The edges of clip_ops' promises: the clip decision at norm == clip_norm on
every path, bad run-time values under XLA, a 16-bit norm that overflows its
dtype, the finite check whichever output is fetched, values that round to 0
or inf in the norm's dtype, flags that must be booleans, and a pack that
does not decode."""

import numpy as np
import pytest
import tensorflow as tf
from conftest import session_run, to_numpy
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

from monolith_ops import clip_ops

INF, NAN = float("inf"), float("nan")

# clip_norm * (1 / clip_norm) is 0.99999994 in float32, and the float32 sum
# of its square has the square root EQUAL: a list [[EQUAL]] has norm EQUAL on
# every path (the kernels' double sum and XLA's float32 one). At the norm
# equal to clip_norm the outputs are the inputs, bitwise; multiplied by the
# clip factor they would be one ulp lower.
EQUAL = np.float32(3.8429387)
assert EQUAL * (np.float32(1) / EQUAL) != 1
assert np.sqrt(EQUAL * EQUAL) == EQUAL


def _run_graph(build, feed=None):
    """build() in a v1 graph; returns its results (feed: {placeholder name:
    value} for the placeholders build() made)."""
    with tf.Graph().as_default() as graph:
        out = build()
        with tf.compat.v1.Session() as sess:
            feed_dict = {graph.get_tensor_by_name(k): v for k, v in (feed or {}).items()}
            return to_numpy(session_run(sess, out) if not feed else sess.run(out, feed_dict))


def _equal_paths():
    x = np.array([[EQUAL]], np.float32)

    def fused():
        return clip_ops.clip_by_global_norm([tf.constant(x)], float(EQUAL))[0][0]

    def kernel_attr():  # use_norm given, clip_norm an attr of the kernel
        return clip_ops.clip_by_global_norm([tf.constant(x)], float(EQUAL), use_norm=EQUAL)[0][0]

    def v2():
        return clip_ops.clip_by_global_norm([tf.constant(x)], float(EQUAL), per_tensor=True)[0][0]

    def v2_unscaled():
        return clip_ops.clip_by_global_norm([tf.constant(x)], float(EQUAL), inverse_scale=1.0)[0][0]

    def fused_run_time_clip_norm():
        clip_norm = tf.compat.v1.placeholder(tf.float32, [], name="clip_norm")
        return clip_ops.clip_by_global_norm([tf.constant(x)], clip_norm)[0][0]

    def tf_ops_run_time_clip_norm():  # use_norm given: the clip in TF ops
        clip_norm = tf.compat.v1.placeholder(tf.float32, [], name="clip_norm")
        return clip_ops.clip_by_global_norm([tf.constant(x)], clip_norm, use_norm=EQUAL)[0][0]

    def tf_ops_inverse_scale():  # use_norm with a feature: TF ops
        return clip_ops.clip_by_global_norm(
            [tf.constant(x)], float(EQUAL), use_norm=EQUAL, inverse_scale=1.0
        )[0][0]

    def xla():
        fn = tf.function(lambda t, c: clip_ops.clip_by_global_norm([t], c)[0][0], jit_compile=True)
        return fn(tf.constant(x), tf.constant(EQUAL))

    return {
        "fused": lambda: _run_graph(fused),
        "kernel_with_clip_norm_attr": lambda: _run_graph(kernel_attr),
        "fused_v2": lambda: _run_graph(v2),
        "fused_v2_inverse_scale_1": lambda: _run_graph(v2_unscaled),
        "fused_run_time_clip_norm": lambda: _run_graph(
            fused_run_time_clip_norm, {"clip_norm:0": EQUAL}
        ),
        "tf_ops_run_time_clip_norm": lambda: _run_graph(
            tf_ops_run_time_clip_norm, {"clip_norm:0": EQUAL}
        ),
        "tf_ops_inverse_scale_1": lambda: _run_graph(tf_ops_inverse_scale),
        "eager_fused": lambda: fused().numpy(),
        "xla": lambda: xla().numpy(),
    }


@pytest.mark.parametrize("path", sorted(_equal_paths()))
def test_at_norm_equal_to_clip_norm_the_outputs_are_the_inputs(path):
    got = np.asarray(_equal_paths()[path]())
    assert got.tobytes() == np.array([[EQUAL]], np.float32).tobytes(), got
    # With clip_norm one float lower the input is clipped.
    above = np.nextafter(EQUAL, np.float32(0))
    clipped = clip_ops.clip_by_global_norm([tf.constant([[EQUAL]])], float(above))[0][0]
    assert clipped.numpy()[0, 0] < EQUAL


# --- Bad run-time values under XLA give NaN -------------------------------------


@pytest.mark.parametrize("value", [-1.0, 0.0, INF, NAN, -INF])
@pytest.mark.parametrize("arg", ["inverse_scale", "clip_norm"])
def test_bad_run_time_value_under_xla_gives_nan_outputs(arg, value):
    x = tf.constant([3.0, 8.0])

    @tf.function(jit_compile=True)
    def clip(t, v):
        kwargs = {"clip_norm": 1.0, "inverse_scale": v} if arg == "inverse_scale" else {}
        if arg == "clip_norm":
            kwargs = {"clip_norm": v}
        return clip_ops.clip_by_global_norm([t], **kwargs)

    (out,), norm = clip(x, tf.constant(value))
    assert np.isnan(out.numpy()).all(), out
    if arg == "inverse_scale":
        assert np.isnan(norm.numpy())
    # A good value in the same compiled function still clips.
    (good,), _ = clip(x, tf.constant(0.5))
    assert np.isfinite(good.numpy()).all()
    assert 0 < np.linalg.norm(good.numpy()) < np.linalg.norm([3.0, 8.0])


def test_negative_use_norm_under_xla_gives_nan_outputs():
    fn = tf.function(
        lambda t, n: clip_ops.clip_by_global_norm([t], 1.0, use_norm=n), jit_compile=True
    )
    (out,), norm = fn(tf.constant([3.0, 4.0]), tf.constant(-5.0))
    assert np.isnan(out.numpy()).all()
    assert norm.numpy() == -5.0  # use_norm is returned as given
    (good,), _ = fn(tf.constant([3.0, 4.0]), tf.constant(5.0))
    np.testing.assert_allclose(good.numpy(), [0.6, 0.8], rtol=1e-6)


# --- A 16-bit norm is returned in its dtype; the clip uses float32's ----------


def test_float16_norm_that_overflows_is_inf_while_the_clip_is_finite():
    """The norm is computed in float32 and returned in the inputs' dtype, as
    TF returns it: sqrt(2) * 60000 is inf in float16. The outputs are clipped
    by the float32 norm, so they are finite (TF's float16 sum of squares
    overflows and makes them NaN)."""
    x = tf.constant([60000.0], tf.float16)
    clipped, norm, tensor_norms = clip_ops.clip_by_global_norm([x, x], 1.0, per_tensor=True)
    assert norm.dtype == tf.float16 and np.isinf(norm.numpy())
    # As TF clips 16-bit tensors: times the scale rounded to their dtype
    # (here a float16 denormal, so 2 ulps from 1 / sqrt(2)).
    scale = np.float16(1.0 / np.float32(np.sqrt(2.0) * 60000))
    want = np.float16(np.float32(60000) * np.float32(scale))
    for out in clipped:
        assert out.dtype == tf.float16
        np.testing.assert_allclose(out.numpy(), [want], rtol=1e-3)
    assert [t.numpy() for t in tensor_norms] == [np.float16(60000)] * 2
    # A tensor norm that overflows float16 is inf too, where the outputs are
    # clipped as well.
    y = tf.constant([60000.0, 60000.0], tf.float16)
    clipped, norm, (tensor_norm,) = clip_ops.clip_by_global_norm([y], 1.0, per_tensor=True)
    assert np.isinf(norm.numpy()) and np.isinf(tensor_norm.numpy())
    np.testing.assert_allclose(clipped[0].numpy(), [want, want], rtol=1e-3)
    assert np.isinf(clip_ops.global_norm([x, x]).numpy())
    # Stock TF: inf norm and NaN outputs.
    stock, stock_norm = tf.clip_by_global_norm([x, x], 1.0)
    assert np.isinf(stock_norm.numpy()) and np.isnan(stock[0].numpy()).all()


# --- The finite check guards every output -----------------------------------


@pytest.mark.parametrize("which", ["global_norm", "clip", "clip_use_norm"])
def test_error_if_nonfinite_guards_the_tensor_norms_fetched_alone(which):
    def build():
        t = tf.constant([INF, 1.0])
        if which == "global_norm":
            _, tensor_norms = clip_ops.global_norm([t], per_tensor=True, error_if_nonfinite=True)
        else:
            kwargs = {"use_norm": tf.constant(INF)} if which == "clip_use_norm" else {}
            *_, tensor_norms = clip_ops.clip_by_global_norm(
                [t], 1.0, per_tensor=True, error_if_nonfinite=True, **kwargs
            )
        return tensor_norms[0]

    with pytest.raises(tf.errors.InvalidArgumentError, match="not finite"):
        _run_graph(build)


def test_error_if_nonfinite_guards_the_nan_tensor_norm_of_global_norm():
    def build():
        t = tf.constant([NAN, 1.0])
        return clip_ops.global_norm([t], per_tensor=True, error_if_nonfinite=True)[1]

    with pytest.raises(tf.errors.InvalidArgumentError, match="not finite"):
        _run_graph(build)


# --- Values that round to 0 or inf in the norm's dtype are refused when built --


@pytest.mark.parametrize("where", ["eager", "graph", "function"])
@pytest.mark.parametrize("arg", ["clip_norm", "inverse_scale"])
@pytest.mark.parametrize("value,shown", [(1e-50, "0.0"), (1e39, "inf")])
def test_float64_constant_that_float32_cannot_hold_is_refused_when_built(where, arg, value, shown):
    def build():
        constant = tf.constant(value, tf.float64)
        kwargs = {"clip_norm": 1.0, "inverse_scale": constant}
        if arg == "clip_norm":
            kwargs = {"clip_norm": constant}
        return clip_ops.clip_by_global_norm([tf.constant([1.0, 2.0])], **kwargs)

    with pytest.raises(ValueError, match=f"{arg} .* got {shown} .*in float32"):
        if where == "graph":
            _run_graph(build)
        elif where == "function":
            tf.function(build)()
        else:
            build()


def test_float64_constant_is_fine_with_a_float64_list():
    t = tf.constant([1e-40, 0.0], tf.float64)
    clipped, norm = clip_ops.clip_by_global_norm([t], tf.constant(1e-50, tf.float64))
    np.testing.assert_allclose(clipped[0].numpy(), [1e-50, 0.0], rtol=1e-12)


def test_check_clip_norm_checks_in_the_dtype_of_the_clip():
    with pytest.raises(ValueError, match=r"got 0.0 \(1e-300 is 0.0 in float32\)"):
        clip_ops.check_clip_norm(1e-300)
    with pytest.raises(ValueError, match="inf in float32"):
        clip_ops.check_clip_norm(np.float64(1e39))
    assert clip_ops.check_clip_norm(1e-300, tf.float64) == 1e-300
    assert clip_ops.check_clip_norm(1e-40) == 1e-40  # a float32 denormal


# --- Flags are booleans ---------------------------------------------------------


@pytest.mark.parametrize("value", ["no", 1, 0, None, [True]])
@pytest.mark.parametrize("flag", ["per_tensor", "error_if_nonfinite"])
@pytest.mark.parametrize("fn", ["global_norm", "clip_by_global_norm"])
def test_flags_must_be_booleans(fn, flag, value):
    args = ([tf.constant([3.0, 4.0])],) + ((1.0,) if fn == "clip_by_global_norm" else ())
    with pytest.raises(TypeError, match=f"{flag} should be True or False"):
        getattr(clip_ops, fn)(*args, **{flag: value})


def test_numpy_booleans_are_flags():
    norm, (tensor_norm,) = clip_ops.global_norm(
        [tf.constant([3.0, 4.0])], per_tensor=np.bool_(True), error_if_nonfinite=np.bool_(False)
    )
    assert norm.numpy() == tensor_norm.numpy() == 5.0


# --- A pack that does not decode is an error ----------------------------------


def _variant_pack(claimed_elements, payload, metadata=b""):
    """A MonolithGradPack serialized by hand: one float tensor claiming
    `claimed_elements` elements, holding `payload`."""
    shape = tensor_shape_pb2.TensorShapeProto
    inner = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT,
        tensor_shape=shape(dim=[shape.Dim(size=claimed_elements)]),
        tensor_content=payload,
    )
    outer = tensor_pb2.TensorProto(dtype=types_pb2.DT_VARIANT, tensor_shape=shape())
    variant = outer.variant_val.add()
    variant.type_name = "MonolithGradPack"
    variant.metadata = metadata
    variant.tensors.append(inner)
    return outer


ONE = np.float32(1.0).tobytes()


@pytest.mark.parametrize(
    "claimed,metadata",
    [(1_000_000, b"1"), (1_000_000, b""), (1, b""), (1, b"2"), (1, b"x")],
    ids=["short-content", "short-content-no-count", "no-count", "wrong-count", "bad-count"],
)
def test_a_pack_that_does_not_decode_is_an_error(claimed, metadata):
    def build():
        pack = tf.constant(_variant_pack(claimed, ONE, metadata))
        return clip_ops.ops.monolith_packed_l2_reduce([pack], T=tf.float32, Tnorm=tf.float32)

    with pytest.raises(tf.errors.InvalidArgumentError):
        _run_graph(build)


def test_a_pack_serialized_whole_decodes():
    def build():
        pack = tf.constant(_variant_pack(1, np.float32(3.0).tobytes(), b"1"))
        return clip_ops.ops.monolith_packed_l2_reduce([pack], T=tf.float32, Tnorm=tf.float32)

    assert _run_graph(build) == 9.0
