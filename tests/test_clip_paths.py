# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""The path a clip takes (monolith_ops/_clip/planner.py and tf_ops.py).

choose_clip_path and the ops each path builds (one fused op, the V2 ops only
for the features, one op for a mixed-dtype list); long lists in graphs
packed and split across ops of at most CHUNK_SIZE tensors, bitwise the
results of one op, gradients included; a pack that does not decode; XLA,
where the clip is TF ops, against the reference.
"""

import numpy as np
import pytest
import tensorflow as tf
from clip_reference import (
    BF16,
    DTYPE_IDS,
    DTYPES,
    F16,
    F32,
    F64,
    INF,
    LAYOUT,
    NAN,
    dense_part,
    entries,
    per_position,
    ref_clip,
    ref_global_norm,
    ref_tensor_norm,
    sample,
)
from conftest import run_graph, to_numpy
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

from monolith_ops import clip_ops
from monolith_ops._clip import planner

# --- The path choice and the ops it builds -----------------------------------


def test_choose_clip_path():
    f32, f64 = tf.float32, tf.float64
    choose = clip_ops.choose_clip_path
    path = clip_ops.ClipPath
    with tf.Graph().as_default():
        assert choose([f32, f32], f32, False, 1.0) == clip_ops.ClipPlan(path.FUSED)
        assert choose([f32], f32, False, None).path is path.FUSED
        assert choose([f32], f32, True, 0.5) == clip_ops.ClipPlan(
            path.KERNEL_WITH_CLIP_NORM_ATTR, 0.5
        )
        assert choose([f32, f64], f64, False, 0.5).path is path.KERNEL_WITH_CLIP_NORM_ATTR
        # A float64 clip_norm that float32 does not hold, or one known only
        # at run time, is not an attr.
        assert choose([f32, f64], f64, False, 0.1).path is path.TF_OPS
        assert choose([f32, f64], f64, False, None).path is path.TF_OPS
        assert choose([f32], f32, True, None).path is path.TF_OPS

    traced = []

    @tf.function(jit_compile=True)
    def traced_under_xla(x):
        traced.append(choose([f32], f32, False, 1.0).path)
        return x

    traced_under_xla(tf.constant(1.0))
    assert traced == [path.TF_OPS]


def test_clip_placement_uses_one_fused_op():
    """A single-dtype clip is one fused kernel, not a norm op plus a clip op."""
    with tf.Graph().as_default() as g:
        ts = [tf.constant([3.0, 4.0]), tf.constant([1.0])]
        clip_ops.clip_by_global_norm(ts, 1.0)
        types = [op.type for op in g.get_operations()]
    assert types.count("MonolithClipByGlobalNormFused") == 1
    assert "GlobalL2Reduce" not in types and "MonolithClipByGlobalNorm" not in types


NEW_OPS = ("MonolithGlobalNormV2", "MonolithClipByGlobalNormV2", "MonolithCheckNormsFinite")


def graph_op_types(fn, *arrays):
    """The op types fn builds in a fresh graph from constants of arrays."""
    with tf.Graph().as_default() as g:
        fn(*[tf.constant(a) for a in arrays])
        return [op.type for op in g.get_operations()]


def test_defaults_build_only_the_existing_ops():
    arrays = [np.ones(3, np.float32), np.ones(2, np.float16), np.ones(4, np.float64)]
    for fn in (
        lambda *ts: clip_ops.global_norm(list(ts)),
        lambda *ts: clip_ops.global_norm(list(ts), norm_type=2, per_tensor=False),
        lambda *ts: clip_ops.clip_by_global_norm(list(ts), 1.0),
        lambda *ts: clip_ops.clip_by_global_norm(list(ts[:1]), 1.0, inverse_scale=None),
    ):
        types = graph_op_types(fn, *arrays)
        assert not set(types) & set(NEW_OPS), types


def test_mixed_dtypes_are_one_op():
    arrays = [np.ones(3, np.float16), np.ones(2, np.float32), np.ones(4, np.float64)]
    cases = {
        "MonolithGlobalNormV2": [
            lambda *ts: clip_ops.global_norm(list(ts), per_tensor=True),
            lambda *ts: clip_ops.global_norm(list(ts), norm_type="inf"),
        ],
        "MonolithClipByGlobalNormV2": [
            lambda *ts: clip_ops.clip_by_global_norm(list(ts), 1.0, inverse_scale=0.5),
            lambda *ts: clip_ops.clip_by_global_norm(list(ts), 1.0, norm_type="inf"),
            lambda *ts: clip_ops.clip_by_global_norm(list(ts), 1.0, per_tensor=True),
        ],
    }
    for op_type, fns in cases.items():
        for fn in fns:
            types = graph_op_types(fn, *arrays)
            assert types.count(op_type) == 1, types
            assert "GlobalL2Reduce" not in types, types
            others = set(NEW_OPS) - {op_type, "MonolithCheckNormsFinite"}
            assert not set(types) & others, types


# --- Long lists in graphs: ops of at most CHUNK_SIZE tensors -----------------


@pytest.fixture
def pack_past_one_chunk(monkeypatch):
    """Lists longer than CHUNK_SIZE packed, so that small lists test the
    packed ops (PACK_ABOVE itself is thousands of tensors)."""
    monkeypatch.setattr(planner, "PACK_ABOVE", planner.CHUNK_SIZE)


def _largest_list_op(graph):
    """The most inputs or outputs of any op of the library in `graph`."""
    library_ops = (
        "GlobalL2Reduce",
        "MonolithPackGradList",
        "MonolithPackedL2Reduce",
        "MonolithClipByGlobalNorm",
        "MonolithClipByGlobalNormFused",
        "MonolithClipBySumOfSquares",
    )
    return max(
        max(len(op.inputs), len(op.outputs))
        for op in graph.get_operations()
        if op.type in library_ops
    )


def _every_clip(ts, clip_norm, mixed):
    """Every path of the module over one list: fused, use_norm (the norm by
    its own op, then MonolithClipByGlobalNorm), global_norm, and the same
    over a list that mixes dtypes."""
    out = [
        clip_ops.clip_by_global_norm(ts, clip_norm),
        clip_ops.clip_by_global_norm(ts, 1e30),  # passes through
        clip_ops.global_norm(ts),
    ]
    norm = clip_ops.global_norm(ts)
    out.append(clip_ops.clip_by_global_norm(ts, 1.0, use_norm=norm))
    out.append(clip_ops.clip_by_global_norm(ts + mixed, 1.0))
    return out


def _flat_bytes(results):
    flat = []

    def walk(x):
        if isinstance(x, (list, tuple)):
            for v in x:
                walk(v)
        else:
            flat.append(np.asarray(x).tobytes())

    walk(results)
    return flat


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
@pytest.mark.slow
def test_lists_split_across_ops_give_bitwise_the_results_of_one_op(dtype, pack_past_one_chunk):
    """In a graph a list longer than CHUNK_SIZE is packed and clipped in
    parts; eager ops take it whole. Sizes around the part boundaries, and
    tensors that cross the reduction's block edges inside a part."""
    size = clip_ops.CHUNK_SIZE
    rng = np.random.default_rng(22)
    mixed = [rng.standard_normal(5).astype(np.float32 if dtype != np.float32 else np.float64)]
    for n in (size - 1, size, size + 1, 2 * size, 2 * size + 1, 3 * size - 1):
        lengths = rng.integers(0, 600, size=n)
        lengths[n // 3] = 40000
        arrays = [rng.standard_normal(k).astype(dtype) for k in lengths]
        arrays[-1][:1] = 0.5  # not empty
        whole = to_numpy(
            _every_clip(
                [tf.constant(a) for a in arrays],
                tf.constant(1.0, tf.float64 if dtype == np.float64 else tf.float32),
                [tf.constant(m) for m in mixed],
            )
        )
        with tf.Graph().as_default() as graph:
            clip_norm = tf.compat.v1.placeholder(
                tf.float64 if dtype == np.float64 else tf.float32, []
            )
            parts = _every_clip(
                [tf.constant(a) for a in arrays], clip_norm, [tf.constant(m) for m in mixed]
            )
            if n > size:
                assert _largest_list_op(graph) <= size + 2
            with tf.compat.v1.Session() as sess:
                split = sess.run(parts, {clip_norm: 1.0})
        assert _flat_bytes(split) == _flat_bytes(whole), n


@pytest.mark.parametrize("extra", [0, 1])
@pytest.mark.slow
def test_lists_are_packed_only_past_pack_above(extra):
    """Up to PACK_ABOVE tensors a clip is one op (each extra op costs every
    step); one more and no op takes more than CHUNK_SIZE of them."""
    n = clip_ops.PACK_ABOVE + extra
    with tf.Graph().as_default() as graph:
        ts = [tf.zeros([2]) for _ in range(n)]
        clip_ops.clip_by_global_norm(ts, 1.0)
        clip_ops.global_norm(ts)
        if extra:
            assert _largest_list_op(graph) <= clip_ops.CHUNK_SIZE + 2
        else:
            assert _largest_list_op(graph) == n + 1  # the list and the norm


@pytest.mark.timeout(400)
@pytest.mark.slow
def test_graph_mode_with_20000_tensors():
    """One Session.run over 20,000 tensors builds and runs in seconds (one
    op of 20,000 outputs took Grappler minutes)."""
    n = 20000
    with tf.Graph().as_default() as graph:
        ts = [tf.random.uniform([3], seed=i) for i in range(n)]
        clipped, norm = clip_ops.clip_by_global_norm(ts, 1.0)
        assert _largest_list_op(graph) <= clip_ops.CHUNK_SIZE + 2
        with tf.compat.v1.Session() as sess:
            inputs, outputs, got = sess.run([ts, clipped, norm])
    want = ref_global_norm(inputs)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    for x, y in zip(inputs, outputs):
        np.testing.assert_allclose(y, x / got, rtol=1e-6)


@pytest.mark.slow
def test_gradient_through_a_list_split_across_ops(pack_past_one_chunk):
    size = clip_ops.CHUNK_SIZE
    rng = np.random.default_rng(23)
    arrays = [rng.standard_normal(7).astype(np.float32) for _ in range(2 * size + 3)]
    weights = [rng.standard_normal(7).astype(np.float32) for _ in arrays]

    def loss(ts, clip):
        clipped, norm = clip(ts, 1.0)
        return tf.add_n([tf.reduce_sum(c * w) for c, w in zip(clipped, weights)]) + norm

    with tf.Graph().as_default():
        ts = [tf.constant(a) for a in arrays]
        ours = tf.gradients(loss(ts, clip_ops.clip_by_global_norm), ts)
        stock = tf.gradients(loss(ts, tf.clip_by_global_norm), ts)
        with tf.compat.v1.Session() as sess:
            ours, stock = sess.run([ours, stock])
    for a, b in zip(ours, stock):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


# --- A pack that does not decode is an error ---------------------------------


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
        run_graph(build)


def test_a_pack_serialized_whole_decodes():
    def build():
        pack = tf.constant(_variant_pack(1, np.float32(3.0).tobytes(), b"1"))
        return clip_ops.ops.monolith_packed_l2_reduce([pack], T=tf.float32, Tnorm=tf.float32)

    assert run_graph(build) == 9.0


# --- XLA: the clip in TF ops -------------------------------------------------


XLA_RTOL = {F32: 1e-5, F64: 1e-12, F16: 2e-3, BF16: 1.6e-2}


@pytest.mark.parametrize("norm_type", [2, "inf"], ids=["l2", "inf"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.slow
def test_xla_matches_the_reference(dtype, norm_type):
    arrays = sample(dtype, seed=14, scale=3.0)
    positions = per_position(arrays)
    inv = 0.37
    unscaled = ref_global_norm(positions, norm_type, inv)
    clips = (unscaled * 0.3, unscaled * 2.0)

    @tf.function(jit_compile=True)
    def fn(*ts):
        t_list = entries(ts)
        return (
            clip_ops.global_norm(t_list, norm_type=norm_type, per_tensor=True),
            [
                clip_ops.clip_by_global_norm(
                    t_list, c, norm_type=norm_type, inverse_scale=inv, per_tensor=True
                )
                for c in clips
            ],
        )

    (norm, tnorms), clipped = to_numpy(fn(*[tf.constant(a) for a in arrays]))
    rtol = XLA_RTOL[dtype]

    def close(got, want, what):
        assert np.asarray(got).dtype == dtype, what
        np.testing.assert_allclose(
            np.asarray(got, np.float64), want, rtol=rtol, atol=1e-30, err_msg=what
        )

    close(norm, ref_global_norm(positions, norm_type), "norm")
    for i, (t, a) in enumerate(zip(tnorms, positions)):
        assert (t is None) == (a is None)
        if a is not None:
            close(t, ref_tensor_norm(a, norm_type), f"tensor_norms[{i}]")
    for c, (outs, cnorm, ctnorms) in zip(clips, clipped):
        want, want_norm = ref_clip(positions, c, norm_type, inv)
        close(cnorm, want_norm, "clip norm")
        for i, (t, a) in enumerate(zip(ctnorms, positions)):
            if a is not None:
                close(t, ref_tensor_norm(a, norm_type, inv), f"clip tensor_norms[{i}]")
        for i, (out, ref, kind) in enumerate(zip(outs, want, LAYOUT)):
            if kind != "n":
                close(dense_part(out, kind), ref, f"clipped[{i}], clip_norm {c}")


@pytest.mark.parametrize("norm_type", [2, "inf"], ids=["l2", "inf"])
def test_xla_mixed_dtypes_and_nonfinite(norm_type):
    arrays = [np.array([1.0, -2.0], np.float16), np.array([3.0], np.float64)]
    bad = [np.array([1.0, NAN], np.float32), np.array([INF], np.float32)]

    @tf.function(jit_compile=True)
    def fn(a, b, c, d):
        return (
            clip_ops.clip_by_global_norm(
                [a, None, b], 1.0, norm_type=norm_type, inverse_scale=0.5, per_tensor=True
            ),
            clip_ops.global_norm([c, d], norm_type=norm_type),
        )

    (outs, norm, tnorms), bad_norm = to_numpy(fn(*[tf.constant(x) for x in arrays + bad]))
    want, want_norm = ref_clip([arrays[0], None, arrays[1]], 1.0, norm_type, 0.5)
    assert norm.dtype == F64 and tnorms[1] is None
    np.testing.assert_allclose(norm, want_norm, rtol=1e-12)
    np.testing.assert_allclose(outs[0].astype(np.float64), want[0], rtol=2e-3)
    np.testing.assert_allclose(outs[2], want[2], rtol=1e-12)
    assert np.isnan(bad_norm)
