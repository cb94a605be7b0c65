# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""monolith_ops.optimizers: the multi-tensor updates against TF's optimizers.

The reference is the stock `tf.compat.v1.train` optimizer applied to the
gradients `monolith_ops.clip_ops.clip_by_global_norm` returns (the clip's own
agreement with `tf.clip_by_global_norm` is tested in test_clip_results.py).
Gradient descent, momentum and Adam are bitwise equal to it. Adagrad differs
from it by at most ADAGRAD_EPS machine epsilons of the dtype times
max(1, |value|): TF's vectorized rsqrt is an approximation refined by one
Newton step (whose bits depend on the CPU), while ours is 1 / sqrt, rounded
twice. Sparse Adam is held to the same bound: TF writes its second moment's
rows as TF ops, whose products Grappler reorders (constant push-down), so
its last bit depends on the graph around it.
"""

import numpy as np
import pytest
import tensorflow as tf

from monolith_ops import clip_ops, optimizers
from monolith_ops._clip import ops

DTYPES = [tf.float32, tf.float64, tf.float16, tf.bfloat16]
SHAPES = [(3, 5), (7,), (), (0, 4), (40, 33)]
# (class name, positional args, extra keyword args)
OPTIMIZERS = [
    ("GradientDescentOptimizer", (0.1,), {}),
    ("MomentumOptimizer", (0.1, 0.9), {}),
    ("MomentumOptimizer", (0.1, 0.9), {"use_nesterov": True}),
    ("AdagradOptimizer", (0.1,), {}),
    ("AdamOptimizer", (0.01,), {}),
]
ADAGRAD_EPS = 2
# clip_norm: none, one that clips every step, one that never clips.
CLIPS = [None, 1.0, 1e6]


def _ids(cases):
    return [f"{name}{'-nesterov' if kw else ''}" for name, _, kw in cases]


def _assert_agree(ours, stock, dtype, adagrad):
    """Bitwise (NaN where NaN), or within the Adagrad bound."""
    for i, (a, b) in enumerate(zip(ours, stock)):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape, i
        if not a.size:
            continue
        if a.dtype.kind not in "fV" and a.dtype.name != "bfloat16":
            np.testing.assert_array_equal(a, b)
        elif not adagrad:
            worst = int(_ulps(a, b, dtype).max())
            assert worst == 0, f"output {i}: {worst} ulps"
        else:
            x = a.astype(np.float64)
            y = b.astype(np.float64)
            eps = float(np.finfo(np.float32 if dtype == tf.bfloat16 else dtype.as_numpy_dtype).eps)
            if dtype == tf.bfloat16:
                eps = 2.0**-7
            bound = ADAGRAD_EPS * eps * np.maximum(1.0, np.abs(y))
            both_nan = np.isnan(x) & np.isnan(y)
            with np.errstate(invalid="ignore"):
                close = (x == y) | (np.abs(x - y) <= bound) | both_nan
            assert close.all(), f"output {i}: {np.abs(x - y)[~close].max()} > {ADAGRAD_EPS} eps"


def _ulps(a, b, dtype):
    """Distance in units in the last place, element by element (0 where
    both are the same NaN)."""
    a = np.asarray(a).astype(dtype.as_numpy_dtype)
    b = np.asarray(b).astype(dtype.as_numpy_dtype)
    bits = {2: np.int16, 4: np.int32, 8: np.int64}[a.dtype.itemsize]
    ia = a.view(bits).astype(np.int64)
    ib = b.view(bits).astype(np.int64)
    # Map sign-magnitude to a monotonic integer line.
    top = np.int64(1) << (8 * a.dtype.itemsize - 1)
    ia = np.where(ia < 0, -(ia + top), ia)
    ib = np.where(ib < 0, -(ib + top), ib)
    same_nan = np.isnan(a.astype(np.float64)) & np.isnan(b.astype(np.float64))
    return np.where(same_nan, 0, np.abs(ia - ib))


def _grads(step, shapes, dtype, scale=3.0):
    rng = np.random.RandomState(100 + step)
    return [(np.asarray(rng.randn(*s)) * scale).astype(dtype.as_numpy_dtype) for s in shapes]


def _random_variables(prefix, shapes, dtype):
    """Resource variables `prefix`0, 1, ... of `shapes`, drawn from one seed."""
    rng = np.random.RandomState(0)
    return [
        tf.compat.v1.get_variable(
            f"{prefix}{i}",
            initializer=tf.constant(np.asarray(rng.randn(*s)), dtype),
            use_resource=True,
        )
        for i, s in enumerate(shapes)
    ]


def _train(make_optimizer, reference, dtype, clip, steps=3, shapes=SHAPES, grads=_grads):
    """Variables and slots after `steps` steps: ours (reference=False) or the
    stock optimizer on clip_ops' clipped gradients (reference=True)."""
    graph = tf.Graph()
    with graph.as_default():
        variables = _random_variables("v", shapes, dtype)
        feeds = [tf.compat.v1.placeholder(dtype, s) for s in shapes]
        opt = make_optimizer()
        applied = feeds
        if reference and clip is not None:
            applied, _ = clip_ops.clip_by_global_norm(feeds, clip)
        global_step = tf.compat.v1.train.get_or_create_global_step()
        train = opt.apply_gradients(list(zip(applied, variables)), global_step=global_step)
        slots = [opt.get_slot(v, n) for v in variables for n in sorted(opt.get_slot_names())]
        extra = [v for v in opt.variables() if v not in slots]
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            sess.run(tf.compat.v1.local_variables_initializer())
            for step in range(steps):
                sess.run(train, dict(zip(feeds, grads(step, shapes, dtype))))
            return sess.run(variables + slots + extra + [global_step])


def _make(name, args, kwargs, ours, **more):
    if ours:
        return lambda: getattr(optimizers, name)(*args, **kwargs, **more)
    return lambda: getattr(tf.compat.v1.train, name)(*args, **kwargs)


@pytest.mark.parametrize("clip", CLIPS, ids=["no-clip", "clipping", "not-clipping"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("case", OPTIMIZERS, ids=_ids(OPTIMIZERS))
def test_dense_updates_equal_the_stock_optimizer(case, dtype, clip):
    name, args, kwargs = case
    ours = _train(_make(name, args, kwargs, True, clip_norm=clip), False, dtype, clip)
    stock = _train(_make(name, args, kwargs, False), True, dtype, clip)
    assert len(ours) == len(stock)
    _assert_agree(ours, stock, dtype, name == "AdagradOptimizer")


def test_adagrad_bound_is_tight_enough_to_catch_a_wrong_learning_rate():
    """The Adagrad bound is not slack: a learning rate off by 0.1% fails it."""
    ours = _train(_make("AdagradOptimizer", (0.1,), {}, True), False, tf.float32, None)
    stock = _train(_make("AdagradOptimizer", (0.1001,), {}, False), True, tf.float32, None)
    with pytest.raises(AssertionError, match="eps"):
        _assert_agree(ours, stock, tf.float32, True)


def _sparse_grads(step, shapes, dtype):
    rng = np.random.RandomState(7 + step)
    return [(np.asarray(rng.randn(6, *s[1:])) * 3).astype(dtype.as_numpy_dtype) for s in shapes]


SPARSE_SHAPES = [(10, 4), (5,), (8, 2, 3)]
# Rows 1 and 3 repeat: TF sums them first (gradient descent scatters them one
# by one).
SPARSE_INDICES = [1, 3, 1, 0, 3, 9]


@pytest.mark.parametrize("index_dtype", [tf.int32, tf.int64], ids=lambda d: d.name)
@pytest.mark.parametrize("clip", CLIPS, ids=["no-clip", "clipping", "not-clipping"])
@pytest.mark.parametrize("dtype", [tf.float32, tf.float16], ids=lambda d: d.name)
@pytest.mark.parametrize("case", OPTIMIZERS, ids=_ids(OPTIMIZERS))
def test_sparse_updates_equal_the_stock_optimizer(case, dtype, clip, index_dtype):
    name, args, kwargs = case

    def train(ours):
        graph = tf.Graph()
        with graph.as_default():
            variables = _random_variables("e", SPARSE_SHAPES, dtype)
            feeds = [tf.compat.v1.placeholder(dtype, (6, *s[1:])) for s in SPARSE_SHAPES]
            slices = [
                tf.IndexedSlices(f, tf.constant([i % s[0] for i in SPARSE_INDICES], index_dtype), s)
                for f, s in zip(feeds, SPARSE_SHAPES)
            ]
            opt = _make(name, args, kwargs, ours, clip_norm=clip)()
            applied = slices
            if not ours and clip is not None:
                applied, _ = clip_ops.clip_by_global_norm(slices, clip)
            train = opt.apply_gradients(list(zip(applied, variables)))
            kinds = {op.type for op in graph.get_operations()}
            slots = [opt.get_slot(v, n) for v in variables for n in sorted(opt.get_slot_names())]
            with tf.compat.v1.Session() as sess:
                sess.run(tf.compat.v1.global_variables_initializer())
                for step in range(3):
                    sess.run(train, dict(zip(feeds, _sparse_grads(step, SPARSE_SHAPES, dtype))))
                return sess.run(variables + slots), kinds

    (ours, kinds), (stock, _) = train(True), train(False)
    assert f"MonolithMultiTensorSparseApply{name[: -len('Optimizer')]}" in kinds
    _assert_agree(ours, stock, dtype, name in ("AdagradOptimizer", "AdamOptimizer"))


def test_one_update_op_per_device_and_dtype():
    graph = tf.Graph()
    with graph.as_default():
        variables = [
            tf.compat.v1.get_variable(f"v{i}", [4], dtype, use_resource=True)
            for i, dtype in enumerate([tf.float32] * 300 + [tf.float64] * 3)
        ]
        grads = [tf.ones_like(v) for v in variables]
        optimizers.AdamOptimizer(0.1, clip_norm=1.0).apply_gradients(zip(grads, variables))
        types = [op.type for op in graph.get_operations()]
    assert types.count("MonolithMultiTensorApplyAdam") == 2
    assert types.count("ResourceApplyAdam") == 0


def test_replica_device_setter_places_one_op_per_ps_task():
    graph = tf.Graph()
    with graph.as_default():
        setter = tf.compat.v1.train.replica_device_setter(ps_tasks=3)
        with tf.compat.v1.device(setter):
            variables = [
                tf.compat.v1.get_variable(f"v{i}", [4], use_resource=True) for i in range(9)
            ]
            grads = [tf.ones_like(v) for v in variables]
            optimizers.MomentumOptimizer(0.1, 0.9, clip_norm=1.0).apply_gradients(
                zip(grads, variables)
            )
        updates = [
            op for op in graph.get_operations() if op.type == "MonolithMultiTensorApplyMomentum"
        ]
    assert sorted(op.device for op in updates) == [f"/job:ps/task:{i}" for i in range(3)]
    for op in updates:
        handles = op.inputs[: len(op.inputs) // 3]
        assert {h.op.device for h in handles} == {op.device}


def _skip_graph(name, args, nan_steps, skip=True):
    """Steps whose gradient holds a NaN where nan_steps says; returns the
    state (variables, global_step, the optimizer's variables) before the
    first step and after each, and the skip counter."""
    graph = tf.Graph()
    with graph.as_default():
        variables = [
            tf.compat.v1.get_variable("a", initializer=[1.0, -2.0], use_resource=True),
            tf.compat.v1.get_variable("b", initializer=[[0.5]], use_resource=True),
        ]
        bad = tf.compat.v1.placeholder(tf.float32, [])
        grads = [tf.constant([0.3, 0.4]) * bad, tf.constant([[0.2]])]
        opt = getattr(optimizers, name)(*args, clip_norm=1.0, skip_nonfinite=skip)
        global_step = tf.compat.v1.train.get_or_create_global_step()
        train = opt.apply_gradients(list(zip(grads, variables)), global_step=global_step)
        state = variables + [global_step] + opt.variables()
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            sess.run(tf.compat.v1.local_variables_initializer())
            history = [sess.run(state)]
            for nan in nan_steps:
                sess.run(train, {bad: np.nan if nan else 1.0})
                history.append(sess.run(state))
            skipped = sess.run(opt.skipped_steps) if skip else None
            return history, skipped


def _assert_same_state(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("case", OPTIMIZERS, ids=_ids(OPTIMIZERS))
def test_skip_nonfinite_changes_nothing_and_counts(case):
    name, args, _ = case
    (initial, after_nan, after_good), skipped = _skip_graph(name, args, [True, False])
    (_, after_first_good), _ = _skip_graph(name, args, [False])
    # The NaN step changed nothing: variables, global_step, slots, beta powers.
    _assert_same_state(after_nan, initial)
    assert skipped == 1
    # The finite step after it is the first step applied.
    _assert_same_state(after_good, after_first_good)
    assert not np.array_equal(after_good[0], initial[0])


def test_without_skip_a_nan_norm_makes_the_variables_nan_as_in_tf():
    (_, after_nan), _ = _skip_graph("AdamOptimizer", (0.1,), [True], skip=False)
    assert np.isnan(after_nan[0]).all() and np.isnan(after_nan[1]).all()
    assert after_nan[2] == 1


@pytest.mark.parametrize("case", OPTIMIZERS[::2], ids=_ids(OPTIMIZERS[::2]))
@pytest.mark.parametrize("direction", ["stock-to-ours", "ours-to-stock"])
def test_checkpoints_restore_both_ways(case, direction, tmp_path):
    """Two steps by one, saved; restored into the other, two more steps:
    the same values as four steps by the stock optimizer (the restoring side
    must find every slot and non-slot variable under TF's names)."""
    name, args, kwargs = case

    def run(ours, restore, save, steps):
        graph = tf.Graph()
        with graph.as_default():
            variables = [
                tf.compat.v1.get_variable(
                    "w", initializer=[[1.0, 2.0], [3.0, 4.0]], use_resource=True
                ),
                tf.compat.v1.get_variable("b", initializer=[0.5, -0.5], use_resource=True),
            ]
            step = tf.compat.v1.train.get_or_create_global_step()
            loss = tf.reduce_sum(tf.square(variables[0])) + tf.reduce_sum(variables[1] * 3.0)
            # skip_nonfinite adds only a local (unsaved) counter.
            opt = (
                _make(name, args, kwargs, ours, skip_nonfinite=True)()
                if ours
                else _make(name, args, kwargs, ours)()
            )
            train = opt.minimize(loss, global_step=step)
            saver = tf.compat.v1.train.Saver()
            with tf.compat.v1.Session() as sess:
                sess.run(tf.compat.v1.global_variables_initializer())
                sess.run(tf.compat.v1.local_variables_initializer())
                if restore:
                    saver.restore(sess, restore)
                for _ in range(steps):
                    sess.run(train)
                if save:
                    saver.save(sess, save)
                return sess.run(variables + opt.variables() + [step])

    first = direction == "ours-to-stock"
    path = str(tmp_path / "ckpt")
    run(first, None, path, 2)
    resumed = run(not first, path, None, 2)
    straight = run(False, None, None, 4)
    assert len(resumed) == len(straight)
    for a, b in zip(resumed, straight):
        np.testing.assert_array_equal(a, b)


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="clip_norm"):
        optimizers.AdamOptimizer(clip_norm=-1.0)
    with pytest.raises(ValueError, match="clip_norm"):
        optimizers.AdamOptimizer(clip_norm=float("nan"))
    with pytest.raises(TypeError, match="clip_norm"):
        optimizers.AdamOptimizer(clip_norm="1")
    with pytest.raises(TypeError, match="skip_nonfinite"):
        optimizers.AdamOptimizer(skip_nonfinite="no")


def test_run_time_clip_norm_is_checked_by_the_kernel():
    graph = tf.Graph()
    with graph.as_default():
        v = tf.compat.v1.get_variable("v", initializer=[1.0], use_resource=True)
        clip = tf.compat.v1.placeholder(tf.float32, [])
        train = optimizers.GradientDescentOptimizer(0.1, clip_norm=clip).apply_gradients(
            [(tf.ones([1]), v)]
        )
        with tf.compat.v1.Session() as sess:
            sess.run(v.initializer)
            with pytest.raises(tf.errors.InvalidArgumentError, match="clip_norm"):
                sess.run(train, {clip: -1.0})
            assert sess.run(v) == [1.0]
            sess.run(train, {clip: 0.5})
            np.testing.assert_allclose(sess.run(v), [0.95])


# The op's own checks, eager, each naming the input.


def _vars(*values, dtype=tf.float32):
    return [tf.Variable(np.asarray(x), dtype=dtype) for x in values]


def _zero():
    return tf.constant(0.0)


def test_op_refuses_a_gradient_of_another_shape():
    v = _vars([1.0, 2.0], [3.0])
    with pytest.raises(
        tf.errors.InvalidArgumentError, match=r"grad\[1\] has shape \[2\]; var\[1\] has shape \[1\]"
    ):
        ops.monolith_multi_tensor_apply_gradient_descent(
            [x.handle for x in v], [tf.ones([2]), tf.ones([2])], 0.1, _zero(), _zero()
        )
    np.testing.assert_array_equal(v[0].numpy(), [1.0, 2.0])  # nothing written


def test_op_refuses_a_variable_of_another_dtype_and_a_repeated_variable():
    (v,) = _vars([1.0])
    (w,) = _vars([1.0], dtype=tf.float64)
    with pytest.raises(
        tf.errors.InvalidArgumentError, match=r"var\[0\] is a double variable; T is float"
    ):
        ops.monolith_multi_tensor_apply_gradient_descent(
            [w.handle], [tf.ones([1])], 0.1, _zero(), _zero()
        )
    with pytest.raises(
        tf.errors.InvalidArgumentError, match=r"var\[1\] is the same variable as var\[0\]"
    ):
        ops.monolith_multi_tensor_apply_gradient_descent(
            [v.handle, v.handle], [tf.ones([1])] * 2, 0.1, _zero(), _zero()
        )
    (m,) = _vars([0.0])
    with pytest.raises(
        tf.errors.InvalidArgumentError, match=r"accum\[0\] is the same variable as var\[0\]"
    ):
        ops.monolith_multi_tensor_apply_adagrad(
            [v.handle], [v.handle], [tf.ones([1])], 0.1, _zero(), _zero()
        )
    np.testing.assert_array_equal(m.numpy(), [0.0])


def test_op_refuses_an_index_out_of_range_and_bad_values():
    v, accum = _vars([[1.0], [2.0]], [[0.1], [0.1]])
    args = ([v.handle], [accum.handle])
    with pytest.raises(
        tf.errors.InvalidArgumentError, match=r"indices\[0\]\[1\] = 2 is not in \[0, 2\)"
    ):
        ops.monolith_multi_tensor_sparse_apply_adagrad(
            *args, [tf.ones([2, 1])], [tf.constant([0, 2])], 0.1, _zero(), _zero()
        )
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"values\[0\] has shape \[2,2\]"):
        ops.monolith_multi_tensor_sparse_apply_adagrad(
            *args, [tf.ones([2, 2])], [tf.constant([0, 1])], 0.1, _zero(), _zero()
        )
    np.testing.assert_array_equal(v.numpy(), np.float32([[1.0], [2.0]]))
    np.testing.assert_array_equal(accum.numpy(), np.float32([[0.1], [0.1]]))


def test_op_refuses_non_scalar_hyperparameters_and_a_bad_clip_norm():
    (v,) = _vars([1.0])
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match="lr|rank"):
        ops.monolith_multi_tensor_apply_gradient_descent(
            [v.handle], [tf.ones([1])], [0.1, 0.2], _zero(), _zero()
        )
    for bad in (0.0, -1.0, np.inf, np.nan):
        with pytest.raises(
            tf.errors.InvalidArgumentError, match="clip_norm must be positive and finite"
        ):
            ops.monolith_multi_tensor_apply_gradient_descent(
                [v.handle], [tf.ones([1])], 0.1, tf.constant(1.0), tf.constant(bad), clip=True
            )
    with pytest.raises(tf.errors.InvalidArgumentError, match="global_norm must be non-negative"):
        ops.monolith_multi_tensor_apply_gradient_descent(
            [v.handle], [tf.ones([1])], 0.1, tf.constant(-1.0), tf.constant(1.0), clip=True
        )
    np.testing.assert_array_equal(v.numpy(), [1.0])


def test_op_refuses_an_uninitialized_variable():
    graph = tf.Graph()
    with graph.as_default():
        v = tf.compat.v1.get_variable("v", [1], use_resource=True)
        train = ops.monolith_multi_tensor_apply_gradient_descent(
            [v.handle], [tf.ones([1])], 0.1, 0.0, 0.0
        )
        with tf.compat.v1.Session() as sess:
            with pytest.raises(tf.errors.FailedPreconditionError, match=r"var\[0\]"):
                sess.run(train)


def test_eager_updates_equal_graph_updates():
    """The ops run eagerly too (TF1 optimizers work in eager mode)."""
    values = [np.arange(6, dtype=np.float32).reshape(2, 3), np.array([0.5, -1.5], np.float32)]
    grads = [np.full((2, 3), 0.7, np.float32), np.array([2.0, -3.0], np.float32)]
    ours = [tf.Variable(x) for x in values]
    stock = [tf.Variable(x) for x in values]
    opt = optimizers.AdamOptimizer(0.1, clip_norm=1.0)
    ref = tf.compat.v1.train.AdamOptimizer(0.1)
    for _ in range(2):
        opt.apply_gradients(zip([tf.constant(g) for g in grads], ours))
        clipped, _ = clip_ops.clip_by_global_norm([tf.constant(g) for g in grads], 1.0)
        ref.apply_gradients(zip(clipped, stock))
    for a, b in zip(ours, stock):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_results_do_not_depend_on_the_thread_count():
    """A list past the serial threshold runs on the pool; one thread or two
    give bitwise the same variables."""
    shapes = [(300, 1000), (1000,), (200, 1001)]

    def run(threads):
        graph = tf.Graph()
        with graph.as_default():
            variables = [
                tf.compat.v1.get_variable(f"v{i}", initializer=tf.ones(s) * 0.5, use_resource=True)
                for i, s in enumerate(shapes)
            ]
            grads = [tf.sin(tf.reshape(tf.range(np.prod(s), dtype=tf.float32), s)) for s in shapes]
            train = optimizers.AdamOptimizer(0.01, clip_norm=1.0).apply_gradients(
                zip(grads, variables)
            )
            config = tf.compat.v1.ConfigProto(
                intra_op_parallelism_threads=threads, inter_op_parallelism_threads=threads
            )
            with tf.compat.v1.Session(config=config) as sess:
                sess.run(tf.compat.v1.global_variables_initializer())
                for _ in range(2):
                    sess.run(train)
                return sess.run(variables)

    for a, b in zip(run(1), run(2)):
        np.testing.assert_array_equal(a, b)


def test_reference_variables_and_constraints_take_the_stock_path_with_the_clip():
    graph = tf.Graph()
    with graph.as_default():
        ref = tf.compat.v1.Variable([1.0, 2.0], use_resource=False)
        constrained = tf.compat.v1.get_variable(
            "c", initializer=[3.0], use_resource=True, constraint=lambda x: tf.minimum(x, 2.5)
        )
        plain = tf.compat.v1.get_variable("p", initializer=[4.0], use_resource=True)
        grads = [tf.constant([3.0, 0.0]), tf.constant([-4.0]), tf.constant([0.0])]
        train = optimizers.GradientDescentOptimizer(1.0, clip_norm=1.0).apply_gradients(
            zip(grads, [ref, constrained, plain])
        )
        types = [op.type for op in graph.get_operations()]
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            sess.run(train)
            got = sess.run([ref, constrained, plain])
    assert "MonolithMultiTensorApplyGradientDescent" in types
    # norm 5: the gradients are scaled by 1/5.
    np.testing.assert_allclose(got[0], [1.0 - 0.6, 2.0], rtol=1e-6)
    np.testing.assert_allclose(got[1], [2.5])
    np.testing.assert_array_equal(got[2], [4.0])


def test_monitored_training_session_over_two_ps_tasks():
    """In-process servers (2 ps, 1 worker): with replica_device_setter the
    variables spread over both ps tasks, one update op runs on each, and
    MonitoredTrainingSession trains to the stock optimizer's values."""
    from monolith_ops.testing.local_cluster import free_ports

    ports = free_ports(3)
    cluster = tf.train.ClusterSpec(
        {
            "ps": [f"127.0.0.1:{ports[0]}", f"127.0.0.1:{ports[1]}"],
            "worker": [f"127.0.0.1:{ports[2]}"],
        }
    )
    servers = [
        tf.distribute.Server(cluster, job_name=job, task_index=i, start=True)
        for job, i in (("ps", 0), ("ps", 1), ("worker", 0))
    ]

    def run(ours):
        graph = tf.Graph()
        with graph.as_default():
            with tf.compat.v1.device(tf.compat.v1.train.replica_device_setter(cluster=cluster)):
                variables = [
                    tf.compat.v1.get_variable(
                        f"v{i}",
                        initializer=tf.constant(np.arange(4, dtype=np.float32) + i),
                        use_resource=True,
                    )
                    for i in range(5)
                ]
                step = tf.compat.v1.train.get_or_create_global_step()
                loss = tf.add_n([tf.reduce_sum(tf.square(v)) for v in variables])
                if ours:
                    train = optimizers.AdamOptimizer(0.1, clip_norm=1.0).minimize(loss, step)
                else:
                    opt = tf.compat.v1.train.AdamOptimizer(0.1)
                    grads, var_list = zip(*opt.compute_gradients(loss))
                    clipped, _ = clip_ops.clip_by_global_norm(list(grads), 1.0)
                    train = opt.apply_gradients(zip(clipped, var_list), step)
            devices = sorted(
                op.device
                for op in graph.get_operations()
                if op.type == "MonolithMultiTensorApplyAdam"
            )
            with tf.compat.v1.train.MonitoredTrainingSession(
                master=servers[2].target, is_chief=True
            ) as sess:
                for _ in range(3):
                    sess.run(train)
                return sess.run(variables + [step]), devices

    (ours, devices), (stock, _) = run(True), run(False)
    assert devices == ["/job:ps/task:0", "/job:ps/task:1"]
    for a, b in zip(ours, stock):
        np.testing.assert_array_equal(a, b)
