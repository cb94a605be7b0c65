# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""Whole training steps, clipped by stock TF or Keras and by monolith_ops.

Each step workload holds three copies of one model from the same initial
weights: "<name>:stock" (clipped by the stock clip), "<name>:ours" (by
monolith_ops) and "<name>:control" (stock again, a second copy: its ratio to
stock is the noise of the method). Before timing, `check()` runs one step of
each and raises unless ours and the control update the weights as stock does,
and unless our kernels run in ours' step and in no other. A row is the median
time of a whole step (nothing subtracted), its IQR, and stock's median over
ours, all from the same round-robin rounds.

  recsys  RecsysStep: the embedding + MLP click model of
          examples/recsys_demo.py, in graph mode, in one process;
          tf.clip_by_global_norm against clip_ops.clip_by_global_norm
  keras   KerasStep: a transformer-like Keras 3 model with 198 trainable
          variables; Keras' global_clipnorm against GlobalNormClipOptimizer
"""

import importlib.util
import os

import numpy as np
from timing import own_times, ratio, stats

HERE = os.path.dirname(os.path.abspath(__file__))
DEMO = os.path.join(os.path.dirname(HERE), "examples", "recsys_demo.py")

RECSYS = "recsys"
KERAS = "keras"
STEP_WORKLOADS = (RECSYS, KERAS)
STEP_ROUNDS = {RECSYS: 300, KERAS: 100}
STEP_TITLES = {
    RECSYS: "recsys demo model (graph mode): tf.clip_by_global_norm vs "
    "clip_ops.clip_by_global_norm",
    KERAS: "Keras 3 transformer-like model: Keras global_clipnorm vs GlobalNormClipOptimizer",
}
KERAS_STOCK = "keras:stock"
KERAS_OURS = "keras:ours"
KERAS_CONTROL = "keras:control"
KERAS_ROUNDS = STEP_ROUNDS[KERAS]


def variants(name):
    """(stock, ours, control) variant names of step workload `name`."""
    return f"{name}:stock", f"{name}:ours", f"{name}:control"


def _update_check(updates, stock, others, rtol):
    """{variant: |its update - stock's| / |stock's|}; raises above rtol."""

    def norm(arrays):
        return float(np.sqrt(sum(np.sum(np.square(a)) for a in arrays)))

    size = norm(updates[stock])
    if not size > 0:
        raise RuntimeError(f"{stock}'s step did not change the weights")
    result = {"update_norm": size, "relative_difference": {}}
    for variant in others:
        diff = norm(a - b for a, b in zip(updates[variant], updates[stock])) / size
        result["relative_difference"][variant] = diff
        if not diff <= rtol:
            raise RuntimeError(
                f"{variant}'s step moved the weights by {diff:.3g} of "
                f"{stock}'s step away from it (more than {rtol:g}): "
                "the two do not compute the same update, so their times "
                "would not compare the same work"
            )
    return result


def _check_kernels(kernels, stock, ours, control):
    if not kernels[ours] or kernels[stock] or kernels[control]:
        raise RuntimeError(
            f"kernels of monolith_ops in the steps: {kernels}; expected some in {ours} only"
        )


def summarize_step(name, info, times):
    """The row of step workload `name` from round-robin `times` (seconds)."""
    stock_v, ours_v, control_v = variants(name)
    ms = 1e3
    stock, stock_iqr = stats(times[stock_v])
    ours, ours_iqr = stats(times[ours_v])
    control, control_iqr = stats(times[control_v])
    saved, saved_iqr = stats(own_times(times, stock_v, ours_v))
    return dict(
        info,
        **{
            "workload": name,
            "title": STEP_TITLES.get(name, name),
            "stock_ms": stock * ms,
            "stock_iqr_ms": stock_iqr * ms,
            "ours_ms": ours * ms,
            "ours_iqr_ms": ours_iqr * ms,
            "speedup": ratio(stock, ours),
            "stock_minus_ours_ms": saved * ms,
            "stock_minus_ours_iqr_ms": saved_iqr * ms,
            "control_ms": control * ms,
            "control_iqr_ms": control_iqr * ms,
            "control_ratio": ratio(stock, control),
        },
    )


# --------------------------------------------------------------------------
# The recommendation demo's model, in graph mode.


def load_demo():
    """examples/recsys_demo.py as a module (its sizes and its data)."""
    spec = importlib.util.spec_from_file_location("recsys_demo", DEMO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class RecsysStep:
    """One training step of examples/recsys_demo.py's click model.

    The demo's graph (its `Model`) without the cluster: one embedding table
    of users then items (NUM_USERS + NUM_ITEMS rows of EMBEDDING_DIM), the
    user's and the item's rows gathered and concatenated, an MLP of 64, 32
    and 1 units (ReLU between), sigmoid cross-entropy on the clicks,
    `AdagradOptimizer(learning_rate)`; the gradients (the embedding's an
    IndexedSlices) clipped before `apply_gradients`. `num_batches` batches of
    the demo's synthetic clicks, `batch_size` examples each, held as
    constants; each copy takes them in turn, one per step (on one fixed
    batch the gradient's norm would fall below any clip_norm within the
    run's steps).

    Three copies of the variables in one graph and one session, from the
    same initial values: "recsys:stock" clips with tf.clip_by_global_norm,
    "recsys:ours" with monolith_ops.clip_ops.clip_by_global_norm,
    "recsys:control" with tf.clip_by_global_norm again. Each variant's run is
    its train op. clip_norm is `clip_fraction` times the gradient's norm at
    the initial weights, so that the clip scales in every step.
    """

    def __init__(
        self,
        batch_size=256,
        num_batches=16,
        learning_rate=0.5,
        clip_fraction=0.01,
        seed=0,
        threads=None,
    ):
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

        from monolith_ops import clip_ops  # pylint: disable=import-outside-toplevel

        demo = load_demo()
        self.name = RECSYS
        clicks_source = demo.SyntheticClicks(seed, batch_size)
        batches = [clicks_source.batch() for _ in range(num_batches)]
        users, items, clicks = (np.stack([b[i] for b in batches]) for i in range(3))
        rows, dim = demo.NUM_USERS + demo.NUM_ITEMS, demo.EMBEDDING_DIM
        rng = np.random.default_rng(seed)
        shapes = [(rows, dim)]
        width = 2 * dim
        for units in (64, 32, 1):
            shapes += [(width, units), (units,)]
            width = units
        initial = [(0.1 * rng.standard_normal(s)).astype(np.float32) for s in shapes]
        self.graph = tf.Graph()
        self.train_ops, self.norms, self.variables = {}, {}, {}
        stock_v, ours_v, control_v = variants(RECSYS)
        clips = {
            stock_v: tf.clip_by_global_norm,
            ours_v: clip_ops.clip_by_global_norm,
            control_v: tf.clip_by_global_norm,
        }
        with self.graph.as_default():
            all_users = tf.constant(users, tf.int64)
            all_items = tf.constant(items + demo.NUM_USERS, tf.int64)
            all_clicks = tf.constant(clicks, tf.float32)
            self.clip_norm = tf.compat.v1.placeholder_with_default(
                np.float32(1.0), [], name="clip_norm"
            )
            grads_of = {}
            for variant, clip in clips.items():
                with tf.compat.v1.variable_scope(variant.replace(":", "_")):
                    # Each copy steps through the same batches, in turn.
                    counter = tf.compat.v1.get_variable(
                        "batch_counter",
                        initializer=tf.constant(0, tf.int64),
                        trainable=False,
                        use_resource=True,
                    )
                    k = counter % num_batches
                    users = tf.gather(all_users, k)
                    items = tf.gather(all_items, k)
                    clicks = tf.gather(all_clicks, k)
                    variables = [
                        tf.compat.v1.get_variable(
                            f"v{i}", initializer=tf.constant(v), use_resource=True
                        )
                        for i, v in enumerate(initial)
                    ]
                    table = variables[0]
                    hidden = tf.concat([tf.gather(table, users), tf.gather(table, items)], axis=1)
                    for i in range(3):
                        hidden = tf.matmul(hidden, variables[1 + 2 * i]) + variables[2 + 2 * i]
                        if i < 2:
                            hidden = tf.nn.relu(hidden)
                    loss = tf.reduce_mean(
                        tf.nn.sigmoid_cross_entropy_with_logits(
                            labels=clicks, logits=tf.squeeze(hidden, 1)
                        )
                    )
                    optimizer = tf.compat.v1.train.AdagradOptimizer(learning_rate)
                    grads = [g for g, _ in optimizer.compute_gradients(loss, variables)]
                    grads_of[variant] = grads
                    clipped, norm = clip(grads, self.clip_norm)
                    apply = optimizer.apply_gradients(zip(clipped, variables))
                    with tf.control_dependencies([apply]):
                        self.train_ops[variant] = counter.assign_add(1).op
                    self.norms[variant] = norm
                    self.variables[variant] = variables
            init = tf.compat.v1.global_variables_initializer()
            stock_norm = tf.linalg.global_norm(grads_of[stock_v])
        config = None
        if threads:
            config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=threads)
        self.session = tf.compat.v1.Session(graph=self.graph, config=config)
        self.session.run(init)
        self.graph.finalize()
        self.sparse_embedding_grad = isinstance(grads_of[ours_v][0], tf.IndexedSlices)
        self.grad_norm_start = float(self.session.run(stock_norm))
        self.clip_norm_value = clip_fraction * self.grad_norm_start
        self.feed = {self.clip_norm: np.float32(self.clip_norm_value)}
        self._stock_norm = stock_norm
        self.info = {
            "batch": batch_size,
            "batches": num_batches,
            "rows": rows,
            "embedding_dim": dim,
            "mlp": [64, 32, 1],
            "trainable_variables": len(shapes),
            "parameters": int(sum(np.prod(s) for s in shapes)),
            "optimizer": f"Adagrad(learning_rate={learning_rate:g})",
            "embedding_grad": ("IndexedSlices" if self.sparse_embedding_grad else "dense"),
            "clip_norm": self.clip_norm_value,
            "clip_fraction": clip_fraction,
            "grad_norm_start": self.grad_norm_start,
        }

    def kernels(self, variant):
        """The op types of monolith_ops that ran in one traced step."""
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

        options = tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE)
        metadata = tf.compat.v1.RunMetadata()
        self.session.run(
            self.train_ops[variant], feed_dict=self.feed, options=options, run_metadata=metadata
        )
        types = set()
        for dev in metadata.step_stats.dev_stats:
            for node in dev.node_stats:
                op_type = node.timeline_label.partition(" = ")[2].partition("(")[0]
                if op_type.startswith("Monolith") or op_type == "GlobalL2Reduce":
                    types.add(op_type)
        return sorted(types)

    def check(self, rtol=1e-3):
        """One step of each variant from equal weights (see the module)."""
        stock_v, ours_v, control_v = variants(RECSYS)
        before = {v: self.session.run(vs) for v, vs in self.variables.items()}
        for variant in (ours_v, control_v):
            for a, b in zip(before[variant], before[stock_v]):
                if not np.array_equal(a, b):
                    raise RuntimeError(
                        f"{variant} does not start from the same weights as {stock_v}"
                    )
        norms = self.session.run(self.norms, feed_dict=self.feed)
        updates = {}
        for variant, op in self.train_ops.items():
            self.session.run(op, feed_dict=self.feed)
            after = self.session.run(self.variables[variant])
            updates[variant] = [(a - b).astype(np.float64) for a, b in zip(after, before[variant])]
        result = _update_check(updates, stock_v, (ours_v, control_v), rtol)
        result["norms"] = {v: float(n) for v, n in norms.items()}
        # The kernel check runs a traced step of each: one more step each.
        result["kernels"] = {v: self.kernels(v) for v in self.train_ops}
        _check_kernels(result["kernels"], stock_v, ours_v, control_v)
        return result

    def grad_norm(self, variant=None):
        """The gradient's global norm of `variant` (stock's copy by default)
        at its current weights, before clipping."""
        variant = variant or variants(RECSYS)[0]
        return float(self.session.run(self.norms[variant], feed_dict=self.feed))

    def callables(self):
        """{variant: a no-argument function that runs one step}."""
        return {v: self.session.make_callable(op, feed_list=[]) for v, op in self.train_ops.items()}

    def summarize(self, times):
        return summarize_step(RECSYS, self.info, times)

    def close(self):
        self.session.close()


# --------------------------------------------------------------------------
# A Keras 3 training step.


def keras3_missing():
    """None if monolith_ops.keras.GlobalNormClipOptimizer (Keras 3) is there,
    else why not."""
    try:
        from monolith_ops import keras as ours  # pylint: disable=import-outside-toplevel
    except ImportError as err:
        return f"monolith_ops.keras does not import: {err}"
    if "GlobalNormClipOptimizer" not in ours.__all__:
        return "it needs Keras 3, which is not installed"
    return None


class KerasStep:
    """One training step of a Keras 3 model, clipped by Keras or by us.

    The model is a transformer-like stack on (batch, tokens, width) inputs:
    an input Dense, then per block a LayerNormalization, four Dense (q, k, v
    and o, mixing each token as o(q * sigmoid(k) + v)), a LayerNormalization
    and a two-Dense feed-forward (4 x width), each half added back to its
    input; then a LayerNormalization and a Dense to one output. 12 blocks:
    198 trainable variables.

    Variants, each a copy of the model with the same initial weights, each
    trained by the same `tf.function` step (`jit_compile=False`, so that our
    kernels run; under XLA `clip_ops` is built from TF ops) that computes the
    mean squared error on one fixed batch and calls
    `optimizer.apply_gradients`:

      "keras:stock"   keras.optimizers.SGD(..., global_clipnorm=clip_norm)
      "keras:ours"    GlobalNormClipOptimizer(keras.optimizers.SGD(...),
                                              clip_norm)
      "keras:control" "keras:stock" again, a second copy.

    SGD with momentum, not Adam: Adam's update hardly depends on the scale of
    the gradient, so equal weights after an Adam step would not show that both
    sides clip to the same norm; SGD's update is proportional to it.
    clip_norm is `clip_fraction` times the gradient's global norm at the
    initial weights, and the learning rate small, so that the clip scales in
    every step of a run (the row records the norm at the end).
    """

    def __init__(
        self,
        blocks=12,
        width=64,
        batch=16,
        tokens=8,
        learning_rate=1e-4,
        momentum=0.9,
        clip_fraction=0.05,
        seed=0,
        jit_compile=False,
    ):
        import keras  # pylint: disable=import-outside-toplevel
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

        from monolith_ops import keras as ours  # pylint: disable=import-outside-toplevel

        self.name = KERAS
        self.jit_compile = jit_compile
        rng = np.random.default_rng(seed)
        self.x = tf.constant(rng.standard_normal((batch, tokens, width), dtype=np.float32))
        self.y = tf.constant(rng.standard_normal((batch, tokens, 1), dtype=np.float32))
        self.loss = keras.losses.MeanSquaredError()
        keras.utils.set_random_seed(seed)
        self.models = {}
        for variant in (KERAS_STOCK, KERAS_OURS, KERAS_CONTROL):
            self.models[variant] = self._model(keras, blocks, width, tokens)
            self.models[variant].set_weights(self.models[KERAS_STOCK].get_weights())
        variables = self.models[KERAS_STOCK].trainable_variables
        self.grad_norm_start = self.grad_norm()
        self.clip_norm = clip_fraction * self.grad_norm_start

        def sgd(**kwargs):
            return keras.optimizers.SGD(learning_rate, momentum=momentum, **kwargs)

        self.optimizers = {
            KERAS_STOCK: sgd(global_clipnorm=self.clip_norm),
            KERAS_OURS: ours.GlobalNormClipOptimizer(sgd(), self.clip_norm),
            KERAS_CONTROL: sgd(global_clipnorm=self.clip_norm),
        }
        self.steps = {}
        for variant, model in self.models.items():
            self.optimizers[variant].build(model.trainable_variables)
            self.steps[variant] = self._step(tf, model, self.optimizers[variant])
        self.info = {
            "blocks": blocks,
            "width": width,
            "batch": batch,
            "tokens": tokens,
            "trainable_variables": len(variables),
            "parameters": int(sum(np.prod(v.shape) for v in variables)),
            "optimizer": f"SGD(learning_rate={learning_rate:g}, momentum={momentum:g})",
            "clip_norm": self.clip_norm,
            "clip_fraction": clip_fraction,
            "grad_norm_start": self.grad_norm_start,
            "jit_compile": jit_compile,
            "keras": keras.__version__,
        }

    @staticmethod
    def _model(keras, blocks, width, tokens):
        layers = keras.layers
        inputs = keras.Input((tokens, width))
        x = layers.Dense(width)(inputs)
        for _ in range(blocks):
            h = layers.LayerNormalization()(x)
            q, k, v = (layers.Dense(width)(h) for _ in range(3))
            x = x + layers.Dense(width)(q * keras.ops.sigmoid(k) + v)
            h = layers.LayerNormalization()(x)
            h = layers.Dense(4 * width, activation="relu")(h)
            x = x + layers.Dense(width)(h)
        x = layers.LayerNormalization()(x)
        return keras.Model(inputs, layers.Dense(1)(x))

    def _step(self, tf, model, optimizer):
        @tf.function(jit_compile=self.jit_compile)
        def step():
            with tf.GradientTape() as tape:
                loss = self.loss(self.y, model(self.x, training=True))
            variables = model.trainable_variables
            optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
            return loss

        return step

    def grad_norm(self, variant=KERAS_STOCK):
        """The global norm of `variant`'s gradient at its current weights."""
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

        model = self.models[variant]
        with tf.GradientTape() as tape:
            loss = self.loss(self.y, model(self.x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        return float(tf.linalg.global_norm(grads))

    def kernels(self, variant):
        """The op types of monolith_ops in the graph of `variant`'s step."""
        step = self.steps[variant].get_concrete_function()
        graph_def = step.graph.as_graph_def()
        nodes = list(graph_def.node)
        for function in graph_def.library.function:
            nodes += function.node_def
        return sorted({n.op for n in nodes if n.op.startswith("Monolith")})

    def check(self, rtol=1e-2):
        """One untimed step of every variant from equal weights; raises
        unless each updated the weights as the stock variant did.

        The updates (weights after minus before) must agree within `rtol` of
        their global norm, and ours' step must hold our kernels (stock's
        none), unless under XLA.

        Returns:
          {"update_norm": the global norm of stock's update,
           "relative_difference": {variant: the global norm of its update's
             difference from stock's, over update_norm},
           "kernels": {variant: our op types in its step}}.
        """
        before = [w.copy() for w in self.models[KERAS_STOCK].get_weights()]
        for variant, model in self.models.items():
            for b, w in zip(before, model.get_weights()):
                if not np.array_equal(b, w):
                    raise RuntimeError(
                        f"{variant} does not start from the same weights as keras:stock"
                    )
        updates = {}
        for variant, model in self.models.items():
            self.steps[variant]()
            updates[variant] = [
                (w - b).astype(np.float64) for w, b in zip(model.get_weights(), before)
            ]

        result = _update_check(updates, KERAS_STOCK, (KERAS_OURS, KERAS_CONTROL), rtol)
        result["kernels"] = {v: self.kernels(v) for v in self.steps}
        if not self.jit_compile:
            _check_kernels(result["kernels"], KERAS_STOCK, KERAS_OURS, KERAS_CONTROL)
        return result

    def callables(self):
        """{variant: a no-argument function that runs one step}."""
        return {v: (lambda step=step: step().numpy()) for v, step in self.steps.items()}

    def summarize(self, times):
        """The Keras row from round-robin `times` (seconds)."""
        return summarize_step(KERAS, self.info, times)

    def close(self):
        pass
