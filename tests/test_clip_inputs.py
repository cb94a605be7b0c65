# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""The arguments' checks and errors (monolith_ops/_clip/inputs.py and the
kernels' own checks).

t_list and its dtypes, raw ops with bad inputs, the signature and the return
structure, clip_norm and use_norm (when built, when run, as an attr, under
XLA where a bad run-time value gives NaN), norm_type and inverse_scale,
values that round to 0 or inf in the norm's dtype, flags that must be
booleans.
"""

import numpy as np
import pytest
import tensorflow as tf
from clip_reference import F32, INF, NAN, NORM_ULPS, OUT_ULPS, assert_ulps, ref_clip
from conftest import run_graph, to_numpy

from monolith_ops import clip_ops
from monolith_ops._loader import ops

# --- t_list and its dtypes ---------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        tf.constant([1.0]),
        {"a": tf.constant([1.0])},
        "grads",
        (t for t in [tf.constant([1.0])]),
        None,
    ],
    ids=["tensor", "dict", "str", "generator", "none"],
)
@pytest.mark.parametrize(
    "fn",
    [lambda t: clip_ops.clip_by_global_norm(t, 1.0), clip_ops.global_norm],
    ids=["clip", "norm"],
)
def test_t_list_must_be_a_list(bad, fn):
    with pytest.raises(TypeError, match="t_list should be a list") as err:
        fn(bad)
    assert type(bad).__name__ in str(err.value)


@pytest.mark.parametrize("dtype", [tf.int32, tf.int64, tf.complex64, tf.string])
def test_non_float_tensors_are_rejected(dtype):
    bad = tf.zeros([2], dtype)
    with pytest.raises(TypeError, match=r"t_list\[1\].*" + dtype.name):
        clip_ops.clip_by_global_norm([tf.constant([1.0]), bad], 1.0)
    with pytest.raises(TypeError, match=r"t_list\[0\]"):
        clip_ops.global_norm([bad])


def test_supported_dtypes_are_those_the_ops_are_registered_for():
    from tensorflow.python.framework import op_def_registry

    for op_name in ("GlobalL2Reduce", "MonolithClipByGlobalNorm", "MonolithClipByGlobalNormFused"):
        (attr,) = [a for a in op_def_registry.get(op_name).attr if a.name == "T"]
        registered = {tf.as_dtype(t) for t in attr.allowed_values.list.type}
        assert set(clip_ops.SUPPORTED_DTYPES) == registered, op_name
    with pytest.raises(TypeError, match="supports .*float32.* and "):
        clip_ops.global_norm([tf.constant([1, 2], tf.int32)])


def test_raw_ops_reject_integer_inputs():
    with pytest.raises((TypeError, tf.errors.InvalidArgumentError)):
        ops.global_l2_reduce([tf.constant([1, 2])])


@pytest.mark.parametrize(
    "op_type,scalar_inputs",
    [("GlobalL2Reduce", 0), ("MonolithClipByGlobalNorm", 1), ("MonolithClipByGlobalNormFused", 1)],
)
def test_raw_ops_with_mismatched_n(op_type, scalar_inputs):
    """A node whose N disagrees with its inputs is rejected, never run."""
    graph_def = tf.compat.v1.GraphDef()
    for name in ("a", "b", "s"):
        const = graph_def.node.add(name=name, op="Const")
        const.attr["dtype"].type = tf.float32.as_datatype_enum
        const.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(1.0, tf.float32))
    node = graph_def.node.add(name="bad", op=op_type)
    node.input.extend(["a", "b"] + ["s"] * scalar_inputs)
    node.attr["N"].i = 3
    node.attr["T"].type = tf.float32.as_datatype_enum
    if op_type == "MonolithClipByGlobalNorm":
        node.attr["clip_norm"].f = 1.0
    ops.global_l2_reduce  # noqa: B018 (the ops must be registered before the import)
    with tf.Graph().as_default():
        with pytest.raises(ValueError, match="N"):
            tf.graph_util.import_graph_def(graph_def, name="")


# --- Signature, return structure, name ---------------------------------------


def test_new_arguments_are_keyword_only():
    t = [tf.constant([3.0, 4.0])]
    with pytest.raises(TypeError):
        clip_ops.global_norm(t, None, "inf")
    with pytest.raises(TypeError):
        clip_ops.clip_by_global_norm(t, 1.0, None, None, "inf")
    with pytest.raises(TypeError):
        clip_ops.global_norm(t, inverse_scale=0.5)  # clip_by_global_norm only


def test_return_structure():
    t = [tf.constant([3.0, 4.0]), None]
    norm = clip_ops.global_norm(t)
    assert isinstance(norm, tf.Tensor)
    result = clip_ops.global_norm(t, per_tensor=True)
    assert isinstance(result, tuple) and len(result) == 2
    assert isinstance(result[1], list) and len(result[1]) == 2 and result[1][1] is None
    result = clip_ops.clip_by_global_norm(t, 1.0, per_tensor=True)
    assert isinstance(result, tuple) and len(result) == 3
    assert isinstance(result[0], list) and isinstance(result[2], list)
    assert len(clip_ops.clip_by_global_norm(t, 1.0, norm_type="inf", inverse_scale=0.5)) == 2


def test_name_scope_in_graph_mode():
    with tf.Graph().as_default() as g:
        t = tf.constant([3.0, 4.0])
        clip_ops.clip_by_global_norm([t], 1.0, name="my_clip")
        clip_ops.global_norm([t], name="my_norm")
        names = [op.name for op in g.get_operations()]
    assert any(
        n.startswith("my_clip/") and "Fused" in op_type
        for n, op_type in ((op.name, op.type) for op in g.get_operations())
    )
    assert any(n.startswith("my_norm/") for n in names)


# --- clip_norm and use_norm --------------------------------------------------


def test_clip_norm_must_be_a_scalar():
    t = [tf.constant([1.0])]
    with pytest.raises(ValueError, match="clip_norm should be a scalar"):
        clip_ops.clip_by_global_norm(t, tf.constant([1.0, 2.0]))
    with pytest.raises(ValueError, match="use_norm should be a scalar"):
        clip_ops.clip_by_global_norm(t, 1.0, use_norm=[1.0, 2.0])
    with pytest.raises(TypeError, match="clip_norm"):
        clip_ops.clip_by_global_norm(t, "one")
    with pytest.raises(TypeError, match="clip_norm"):
        clip_ops.clip_by_global_norm(t, True)


@pytest.mark.parametrize("clip_norm", [0.0, -1.0, INF, NAN])
def test_clip_norm_must_be_positive_and_finite(clip_norm):
    with pytest.raises(ValueError, match="clip_norm should be positive and finite"):
        clip_ops.clip_by_global_norm([tf.constant([1.0])], clip_norm)


def test_check_clip_norm():
    assert clip_ops.check_clip_norm(np.float32(0.5)) == 0.5
    for bad in (True, "1", None):
        with pytest.raises(TypeError, match="clip_norm should be a positive number"):
            clip_ops.check_clip_norm(bad)
    for bad in (0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="clip_norm should be positive and finite"):
            clip_ops.check_clip_norm(bad)


def test_kernel_rejects_bad_runtime_clip_norm():
    with tf.Graph().as_default():
        c = tf.compat.v1.placeholder(tf.float32, [])
        clipped, _ = clip_ops.clip_by_global_norm([tf.constant([3.0, 4.0])], c)
        with tf.compat.v1.Session() as sess:
            np.testing.assert_allclose(sess.run(clipped, {c: 1.0})[0], [0.6, 0.8])
            with pytest.raises(
                tf.errors.InvalidArgumentError, match="clip_norm must be positive and finite"
            ):
                sess.run(clipped, {c: 0.0})


def test_kernel_rejects_non_scalar_or_negative_norm():
    with tf.Graph().as_default():
        norm = tf.compat.v1.placeholder(tf.float32, None)
        out = ops.monolith_clip_by_global_norm([tf.constant([1.0])], norm, clip_norm=1.0)
        with tf.compat.v1.Session() as sess:
            with pytest.raises(
                tf.errors.InvalidArgumentError, match="global_norm must be a scalar"
            ):
                sess.run(out, {norm: [1.0, 2.0]})
            with pytest.raises(
                tf.errors.InvalidArgumentError, match="global_norm must be non-negative"
            ):
                sess.run(out, {norm: -2.0})
        # A norm of known non-scalar shape fails when the graph is built.
        with pytest.raises(ValueError, match="rank"):
            ops.monolith_clip_by_global_norm(
                [tf.constant([1.0])], tf.constant([1.0, 2.0]), clip_norm=1.0
            )


def test_clip_norm_attr_must_be_positive():
    with pytest.raises(
        tf.errors.InvalidArgumentError, match="clip_norm must be positive and finite"
    ):
        ops.monolith_clip_by_global_norm([tf.constant([1.0])], tf.constant(1.0), clip_norm=-1.0)


def test_runtime_clip_norm_with_use_norm_is_checked_and_passes_through():
    """A clip_norm known only when the graph runs, with use_norm: clipped in
    TF ops, but with the kernels' check and pass-through."""
    x = np.array([1e-3, -2e-3, 3e-3], np.float32)
    with tf.Graph().as_default():
        c = tf.compat.v1.placeholder(tf.float32, [])
        (out,), _ = clip_ops.clip_by_global_norm([tf.constant(x)], c, use_norm=tf.constant(0.01))
        with tf.compat.v1.Session() as sess:
            # 0.045971192 * (1 / 0.045971192) is 0.99999994 in float32.
            assert sess.run(out, {c: 0.045971192}).tobytes() == x.tobytes()
            np.testing.assert_allclose(sess.run(out, {c: 0.005}), x * 0.5, rtol=1e-6)
            for bad in (0.0, -1.0, np.inf, np.nan):
                with pytest.raises(
                    tf.errors.InvalidArgumentError, match="clip_norm must be positive and finite"
                ):
                    sess.run(out, {c: bad})
        (neg,), _ = clip_ops.clip_by_global_norm([tf.constant(x)], c, use_norm=tf.constant(-1.0))
        with tf.compat.v1.Session() as sess:
            with pytest.raises(
                tf.errors.InvalidArgumentError, match="use_norm. must be non-negative"
            ):
                sess.run(neg, {c: 2.0})


FEATURES = {
    "inf": dict(norm_type="inf"),
    "inverse_scale": dict(inverse_scale=0.5),
    "per_tensor": dict(per_tensor=True),
    "error_if_nonfinite": dict(error_if_nonfinite=True),
}


@pytest.mark.parametrize("feature", sorted(FEATURES))
def test_bad_clip_norm_with_features(feature):
    kwargs = FEATURES[feature]
    t = [tf.constant([3.0, 4.0])]
    for value in (0.0, -1.0, INF):
        with pytest.raises(ValueError, match="clip_norm"):
            clip_ops.clip_by_global_norm(t, value, **kwargs)
    with tf.Graph().as_default():
        clip_norm = tf.compat.v1.placeholder(tf.float32, shape=[])
        out = clip_ops.clip_by_global_norm([tf.constant([3.0, 4.0])], clip_norm, **kwargs)
        with tf.compat.v1.Session() as sess:
            for value in (0.0, -1.0, INF, NAN):
                with pytest.raises(tf.errors.InvalidArgumentError, match="clip_norm"):
                    sess.run(out, {clip_norm: value})


# --- norm_type and inverse_scale ---------------------------------------------


BAD_NORM_TYPES = {
    ValueError: [1, 3, 0, -1, 2.5, 1.0, -INF, NAN, "l2", "2", "", "max"],
    TypeError: [True, False, np.bool_(True), None, [2], object()],
}


@pytest.mark.parametrize(
    "error,norm_type",
    [(e, v) for e, vs in BAD_NORM_TYPES.items() for v in vs],
    ids=[
        f"{e.__name__}-{'object' if type(v) is object else repr(v)}"
        for e, vs in BAD_NORM_TYPES.items()
        for v in vs
    ],
)
def test_bad_norm_type(error, norm_type):
    t = [tf.constant([1.0, 2.0])]
    with pytest.raises(error, match="norm_type"):
        clip_ops.global_norm(t, norm_type=norm_type)
    with pytest.raises(error, match="norm_type"):
        clip_ops.clip_by_global_norm(t, 1.0, norm_type=norm_type)
    with tf.Graph().as_default():
        with pytest.raises(error, match="norm_type"):
            clip_ops.clip_by_global_norm([tf.constant([1.0])], 1.0, norm_type=norm_type)


def _bad_inverse_scales():
    for v in (0, 0.0, -0.0, -1.0, -INF, INF, NAN, np.float32(0.0), np.float64(-2.0)):
        yield ValueError, v
    yield ValueError, 1e-50  # 0 in float32, the list's norm dtype
    yield ValueError, [0.5, 0.5]
    yield ValueError, np.array([0.5])
    yield ValueError, "tensor-vector"
    yield ValueError, "tensor-0"
    yield ValueError, "tensor-nan"
    yield TypeError, True
    yield TypeError, np.bool_(True)
    yield TypeError, "0.5"


@pytest.mark.parametrize(
    "error,inv",
    list(_bad_inverse_scales()),
    ids=[f"{e.__name__}-{v!r}" for e, v in _bad_inverse_scales()],
)
@pytest.mark.parametrize("where", ["eager", "graph"])
def test_bad_inverse_scale_known_when_built(where, error, inv):
    def call():
        scale = {
            "tensor-vector": lambda: tf.constant([0.5, 0.5]),
            "tensor-0": lambda: tf.constant(0.0),
            "tensor-nan": lambda: tf.constant(NAN),
        }.get(inv if isinstance(inv, str) else None, lambda: inv)()
        clip_ops.clip_by_global_norm([tf.constant([1.0, 2.0])], 1.0, inverse_scale=scale)

    if where == "graph":
        with tf.Graph().as_default(), pytest.raises(error, match="inverse_scale"):
            call()
    else:
        with pytest.raises(error, match="inverse_scale"):
            call()


@pytest.mark.parametrize("value", [0.0, -1.0, INF, -INF, NAN])
def test_bad_inverse_scale_known_when_run(value):
    x = np.array([3.0, 4.0], np.float32)
    for norm_type in (2, "inf"):
        with tf.Graph().as_default():
            inv = tf.compat.v1.placeholder(tf.float32, shape=[])
            out = clip_ops.clip_by_global_norm(
                [tf.constant(x)], 1.0, inverse_scale=inv, norm_type=norm_type
            )
            with tf.compat.v1.Session() as sess:
                with pytest.raises(tf.errors.InvalidArgumentError, match="inverse_scale"):
                    sess.run(out, {inv: value})
                good = to_numpy(sess.run(out, {inv: 0.5}))
        want, want_norm = ref_clip([x], 1.0, norm_type, 0.5)
        assert_ulps(good[1], want_norm, F32, NORM_ULPS[F32])
        assert_ulps(good[0][0], want[0], F32, OUT_ULPS[F32])

    fn = tf.function(lambda t, s: clip_ops.clip_by_global_norm([t], 1.0, inverse_scale=s))
    with pytest.raises(tf.errors.InvalidArgumentError, match="inverse_scale"):
        fn(tf.constant(x), tf.constant(value))


# --- Bad run-time values under XLA give NaN ----------------------------------


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


# --- Values that round to 0 or inf in the norm's dtype: refused when built


def test_clip_norm_that_the_dtype_cannot_hold_names_the_value():
    with pytest.raises(ValueError, match=r"got 0\.0 \(1e-300 is 0\.0 in float32\)"):
        clip_ops.clip_by_global_norm([tf.constant([1.0])], 1e-300)


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
            run_graph(build)
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


# --- Flags are booleans ------------------------------------------------------


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
