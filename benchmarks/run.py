# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""Clips and clipped optimizer steps on CPU: monolith_ops, stock TF, a compiled floor.

    python benchmarks/run.py                 # every workload, every round
    python benchmarks/run.py --quick         # fewer rounds: to try it
    python benchmarks/run.py --out docs      # where performance.{json,png} go
    python benchmarks/run.py --workloads optdense53 --ops   # where the time goes

For each workload one graph-mode session holds the gradients in variables,
and these variants run in the same rounds, in a shuffled order:

  ours    monolith_ops.clip_ops.global_norm / clip_by_global_norm
  stock   tf.linalg.global_norm / tf.clip_by_global_norm
  inputs  the same session run without an op: it reads the gradients and
          hands them on, the least a run of either op can cost
  floor   floor.cc's loops over as many floats, on 1 thread and on the
          session's intra-op thread count (--threads): the fastest counts

The optimizer workloads (OPTIMIZER_WORKLOADS) time a clip by global norm and
an optimizer's update of a list of resource variables, one train op run:

  ours    monolith_ops.optimizers.<Optimizer>(..., clip_norm=c).apply_gradients
  stock   tf.clip_by_global_norm(grads, c), then the tf.compat.v1.train
          optimizer's apply_gradients
  inputs  the session run that reads the gradients and hands them on
  floor   floor.cc's optimizer loop over as many floats: the norm's read of
          the gradients, then the update of the variable and its slots

and the demo's (examples/recsys_demo.py) whole training step, its model built
once with each optimizer (inputs: the step's forward pass alone; floor: the
Adagrad loop over as many floats as its gradients hold), and a Keras 3
model's whole train_on_batch step (keras_model: embeddings and dense layers,
198 variables), once with keras.optimizers.Adam(global_clipnorm=c) (stock)
and once with monolith_ops.keras.GlobalNormClipOptimizer(Adam, c) (ours),
from the same weights (inputs: test_on_batch, the forward pass and the loss;
floor: the Adam loop over as many floats as its gradients hold). After the
timed steps the two models' weights must agree (KERAS_RTOL, KERAS_ATOL). It
is skipped, with a message, where Keras 3 is not installed.

Every op's outputs are consumed by one IdentityN, which the graph optimizer
cannot drop. Each timed run comes right after an untimed run of the same
variant. Every time printed is a median of whole runs (a session run, or a
pass of a compiled loop); nothing is subtracted. stock/ours is stock's
median over ours; ours/floor is ours' median over the floor's.
"""

import argparse
import itertools
import json
import os
import platform
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import compiled_floor  # noqa: E402

ROOT = os.path.dirname(HERE)
SHAPES_FILE = os.path.join(ROOT, "tests", "data", "dense_shapes.json")
DEFAULT_OUT = os.path.join(ROOT, "build", "benchmark")
OPS = ("global_norm", "clip_scales", "clip_passes")
# The floor loops of each op (compiled_floor.LOOPS): a clip that scales reads
# the gradients for the norm, then reads and writes them (into an output, with
# plain or streaming stores, or in place); the other two only read them once.
FLOOR_LOOPS = {
    "global_norm": ("norm",),
    "clip_scales": ("clip", "clip_stream", "clip_inplace"),
    "clip_passes": ("norm",),
}
TINY = 1000  # --tiny divides every tensor by this
# The optimizer of each rule: (stock's class name and ours', constructor
# arguments, floor.cc's loop).
RULES = {
    "GradientDescent": ("GradientDescentOptimizer", dict(learning_rate=1e-3), "sgd"),
    "Adagrad": ("AdagradOptimizer", dict(learning_rate=1e-3), "adagrad"),
    "Adam": ("AdamOptimizer", dict(learning_rate=1e-3), "adam"),
}
DEMO = os.path.join(ROOT, "examples", "recsys_demo.py")
# The Keras workload's model and data (keras_model): `features` categorical
# features, each an Embedding(vocab, dim) of one id, then a Dense(dim) of its
# own; their outputs and `dense` dense features concatenated into an MLP of
# `hidden` units and one logit. 64 features: 3 * 64 + 2 * 3 = 198
# variables, most of them small. The activation is swish, not relu: at
# relu's kink the two clips' last-bit differences become a unit on in one
# model and off in the other, and Adam makes that a full step (with relu
# the weights drifted 0.0068 apart in 206 steps, as far as a wrong
# optimizer's). The data are fixed: one batch of features and
# `label_sets` sets of random labels for it, taken in turn: no weights fit
# them all, so the gradients' norm does not go to 0 (on one set of labels it
# fell from 0.29 to 5e-7 in 206 steps). clip_norm is `clip_fraction` times
# the gradients' global norm at the first step, so that the clip scales the
# gradients on every step of the run (the run says whether it still did at
# its end).
KERAS = dict(
    features=64, vocab=1000, dim=8, dense=13, hidden=(64, 32), batch=256,
    label_sets=8, learning_rate=1e-3, clip_fraction=1e-3, activation="swish",
)  # fmt: skip
KERAS_TINY = dict(KERAS, features=4, vocab=100, dim=4, dense=3, hidden=(8,), batch=32)
# After the timed steps, ours' weights must equal stock's within
# np.allclose(rtol=KERAS_RTOL, atol=KERAS_ATOL): float rounding (the two
# clips sum the squares in another order), not a different update.
KERAS_RTOL, KERAS_ATOL = 1e-4, 1e-5


def workloads(tiny=False):
    """{name: (title, shapes or None, IndexedSlices (rows, width, table rows)
    or None, rounds)}."""
    with open(SHAPES_FILE) as f:
        dense = [tuple(s) for s in json.load(f)["shapes"]]
    out = {
        "dense53": ("Monolith's 53 dense gradient shapes", dense, None, 60),
        "1000x100": ("1,000 tensors of 100 floats", [(100,)] * 1000, None, 150),
        "4x16M": ("4 tensors of 16M floats", [(1 << 24,)] * 4, None, 20),
        "embedding": ("IndexedSlices, 20,000 rows x 64 of 1M", None, (20000, 64, 1000000), 100),
    }
    if tiny:
        for name, (title, shapes, sparse, rounds) in out.items():
            if shapes:
                shapes = [(max(1, int(np.prod(s)) // TINY),) for s in shapes]
            else:
                sparse = (max(1, sparse[0] // TINY), sparse[1], sparse[2] // TINY)
            out[name] = (title + f" (1/{TINY})", shapes, sparse, rounds)
    return out


def optimizer_workloads(tiny=False):
    """{name: (title, shapes or None, IndexedSlices (rows, width, table rows)
    or None, {op: (rule, clip_norm over the norm)}, rounds)}: a clip_norm of
    half the norm scales every gradient, twice the norm none. The demo's
    workload has neither shapes nor slices: its model is the demo's."""
    with open(SHAPES_FILE) as f:
        dense = [tuple(s) for s in json.load(f)["shapes"]]
    out = {
        "opt1000x100": (
            "1,000 variables of 100 floats",
            [(100,)] * 1000,
            None,
            {"adam_clips": ("Adam", 0.5), "sgd_clips": ("GradientDescent", 0.5)},
            60,
        ),
        "optdense53": (
            "Monolith's 53 dense shapes",
            dense,
            None,
            {"adam_clips": ("Adam", 0.5), "adam_passes": ("Adam", 2.0)},
            40,
        ),
        "optembedding": (
            "IndexedSlices, 20,000 rows x 64 of a 1M-row table",
            None,
            (20000, 64, 1000000),
            {"adagrad_clips": ("Adagrad", 0.5)},
            60,
        ),
        "demo": (
            "the demo's model, one training step",
            None,
            None,
            {"step": ("Adagrad", None)},
            100,
        ),
        "keras": (
            "a Keras 3 model (embeddings and dense layers), one train_on_batch step",
            None,
            None,
            {"step": ("Adam", None)},
            100,
        ),
    }
    if tiny:
        for name, (title, shapes, sparse, ops, rounds) in out.items():
            if shapes:
                shapes = [(max(1, int(np.prod(s)) // TINY),) for s in shapes]
            elif sparse:
                sparse = (max(1, sparse[0] // TINY), sparse[1], sparse[2] // TINY)
            out[name] = (
                title + (f" (1/{TINY})" if shapes or sparse else ""),
                shapes,
                sparse,
                ops,
                rounds,
            )
    return out


class Graph:
    """One workload's session: every variant as a callable, and the norms."""

    def __init__(self, shapes, sparse, threads, seed=0):
        import tensorflow as tf

        from monolith_ops import clip_ops

        rng = np.random.default_rng(seed)
        self.graph = tf.Graph()
        self.targets, self.norms, feed = {}, {}, {}

        def variable(value):
            # Initialized from a placeholder: a large constant would bloat the graph.
            held = tf.compat.v1.placeholder(tf.float32, value.shape)
            feed[held] = value
            return tf.compat.v1.Variable(held, use_resource=True).value()

        with self.graph.as_default():
            if sparse:
                rows, width, table = sparse
                values = rng.standard_normal((rows, width), dtype=np.float32)
                indices = tf.constant(np.sort(rng.choice(table, rows, replace=False)))
                grads = [
                    tf.IndexedSlices(
                        variable(values), indices, tf.constant([table, width], tf.int64)
                    )
                ]
                passed = [grads[0].values, indices]
                arrays = [values]
            else:
                arrays = [rng.standard_normal(s, dtype=np.float32) for s in shapes]
                grads = [variable(a) for a in arrays]
                passed = list(grads)
            self.num_elements = sum(a.size for a in arrays)
            norm = float(np.sqrt(sum(np.sum(np.square(a, dtype=np.float64)) for a in arrays)))
            init = tf.compat.v1.global_variables_initializer()
            self._add(tf, "inputs", passed)
            impls = {
                "ours": (clip_ops.global_norm, clip_ops.clip_by_global_norm),
                "stock": (tf.linalg.global_norm, tf.clip_by_global_norm),
            }
            for impl, (global_norm, clip) in impls.items():
                self._add(tf, f"{impl}:global_norm", [global_norm(grads)])
                for op, factor in (("clip_scales", 0.5), ("clip_passes", 2.0)):
                    clipped, op_norm = clip(grads, norm * factor)
                    flat = []
                    for c in clipped:
                        flat += [c.values, c.indices] if isinstance(c, tf.IndexedSlices) else [c]
                    self._add(tf, f"{impl}:{op}", flat + [op_norm])
        config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=threads)
        self.session = tf.compat.v1.Session(graph=self.graph, config=config)
        self.session.run(init, feed_dict=feed)
        self.graph.finalize()

    def _add(self, tf, variant, tensors):
        sink = tf.raw_ops.IdentityN(input=tensors, name=variant.replace(":", "_"))
        self.targets[variant] = sink[0].op
        self.norms[variant] = tensors[-1] if variant != "inputs" else None

    def check(self):
        """Raises unless ours and stock compute the same norm."""
        norms = self.session.run({v: t for v, t in self.norms.items() if t is not None})
        want = norms["stock:global_norm"]
        for variant, got in norms.items():
            if not abs(got - want) <= 1e-4 * want:
                raise RuntimeError(f"{variant} computed the norm {got}, stock {want}")

    def callables(self):
        return {v: self.session.make_callable(t) for v, t in self.targets.items()}


class SelfTimed:
    """A variant that times itself: calling it returns its seconds."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self):
        return self.fn()


def time_round_robin(fns, rounds, warmup, seed=0):
    """{name: [seconds of each timed run]}: every function once per round, in
    a shuffled order, each timed run right after an untimed one."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    rng = np.random.default_rng(seed)
    times = {name: [] for name in names}
    for _ in range(rounds):
        for i in rng.permutation(len(names)):
            fn = fns[names[i]]
            fn()
            if isinstance(fn, SelfTimed):
                times[names[i]].append(fn())
                continue
            start = time.perf_counter()
            fn()
            times[names[i]].append(time.perf_counter() - start)
    return times


def run_workload(name, shapes, sparse, rounds, warmup, threads):
    """The rows of one workload: one per op, times in ms."""
    graph = Graph(shapes, sparse, threads)
    graph.check()
    floor = compiled_floor.CompiledFloor(graph.num_elements, threads)
    fns = graph.callables()
    counts = sorted({1, threads})
    used = {loop for loops in FLOOR_LOOPS.values() for loop in loops}
    for loop in [loop for loop in compiled_floor.LOOPS if loop in used]:
        for t in counts:
            fns[f"floor:{loop}:{t}"] = SelfTimed(lambda loop=loop, t=t: floor.run(loop, t))
    try:
        times = time_round_robin(fns, rounds, warmup)
    finally:
        graph.session.close()
        floor.close()
    ms = {v: 1e3 * float(np.median(s)) for v, s in times.items()}
    iqr = {v: 1e3 * float(np.subtract(*np.percentile(s, [75, 25]))) for v, s in times.items()}
    rows = []
    for op in OPS:
        fastest = min((f"floor:{loop}:{t}" for loop in FLOOR_LOOPS[op] for t in counts), key=ms.get)
        rows.append(_row(name, op, ms, iqr, fastest))
    return rows


class OptimizerGraph:
    """One optimizer workload's session: per op, ours' and stock's train op,
    each on variables (and slots) of its own, from the same gradients."""

    def __init__(self, shapes, sparse, ops, threads, seed=0):
        import tensorflow as tf

        from monolith_ops import optimizers

        rng = np.random.default_rng(seed)
        self.graph = tf.Graph()
        self.targets, self.checks, feed = {}, {}, {}

        def placeholder(value):
            # A large constant would bloat the graph.
            held = tf.compat.v1.placeholder(tf.float32, value.shape)
            feed[held] = value
            return held

        with self.graph.as_default():
            if sparse:
                rows, width, table = sparse
                values = rng.standard_normal((rows, width), dtype=np.float32)
                index_array = np.sort(rng.choice(table, rows, replace=False))
                indices = tf.constant(index_array)
                read = tf.compat.v1.Variable(placeholder(values), use_resource=True).value()
                grads = [tf.IndexedSlices(read, indices, tf.constant([table, width], tf.int64))]
                passed = [read, indices]
                arrays = [values]
            else:
                arrays = [rng.standard_normal(s, dtype=np.float32) for s in shapes]
                grads = [
                    tf.compat.v1.Variable(placeholder(a), use_resource=True).value() for a in arrays
                ]
                passed = list(grads)
            self.num_elements = sum(a.size for a in arrays)
            norm = float(np.sqrt(sum(np.sum(np.square(a, dtype=np.float64)) for a in arrays)))
            self.targets["inputs"] = tf.raw_ops.IdentityN(input=passed, name="inputs")[0].op
            for op, (rule, factor) in ops.items():
                name, kwargs, _ = RULES[rule]
                clip_norm = norm * factor
                for impl in ("ours", "stock"):
                    with tf.compat.v1.variable_scope(f"{impl}_{op}"):
                        if sparse:
                            variables = [
                                tf.compat.v1.get_variable(
                                    "table",
                                    [table, width],
                                    initializer=tf.compat.v1.constant_initializer(0.5),
                                    use_resource=True,
                                )
                            ]
                            checked = [tf.gather(variables[0], indices)]
                        else:
                            variables = [
                                tf.compat.v1.Variable(placeholder(0.1 * a), use_resource=True)
                                for a in arrays
                            ]
                            checked = [v.value() for v in variables]
                        if impl == "ours":
                            opt = getattr(optimizers, name)(**kwargs, clip_norm=clip_norm)
                            train = opt.apply_gradients(zip(grads, variables))
                        else:
                            opt = getattr(tf.compat.v1.train, name)(**kwargs)
                            clipped, _ = tf.clip_by_global_norm(grads, clip_norm)
                            train = opt.apply_gradients(zip(clipped, variables))
                    self.targets[f"{impl}:{op}"] = train
                    self.checks[f"{impl}:{op}"] = checked
            init = tf.compat.v1.global_variables_initializer()
        config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=threads)
        self.session = tf.compat.v1.Session(graph=self.graph, config=config)
        self.session.run(init, feed_dict=feed)
        self.graph.finalize()

    def check(self):
        """One step of each; raises unless ours and stock then hold the same
        variables (they start equal)."""
        for variant, target in self.targets.items():
            if variant != "inputs":
                self.session.run(target)
        values = self.session.run(self.checks)
        for variant, got in values.items():
            if variant.startswith("ours:"):
                want = values["stock:" + variant.split(":", 1)[1]]
                for g, w in zip(got, want):
                    if not np.allclose(g, w, rtol=1e-4, atol=1e-6):
                        worst = float(np.max(np.abs(g - w)))
                        raise RuntimeError(f"{variant} differs from stock by up to {worst}")

    def callables(self):
        return {v: self.session.make_callable(t) for v, t in self.targets.items()}

    def op_times(self, runs=5):
        """{variant: [(op type, ops per run, mean ms per run)]}, the op
        types by their kernels' summed time in `runs` traced session runs,
        the longest first (a traced run is slower than an untraced one)."""
        from tensorflow.core.protobuf import config_pb2

        out = {}
        options = config_pb2.RunOptions(trace_level=config_pb2.RunOptions.FULL_TRACE)
        for variant, target in self.targets.items():
            total, count = {}, {}
            for _ in range(runs):
                meta = config_pb2.RunMetadata()
                self.session.run(target, options=options, run_metadata=meta)
                for device in meta.step_stats.dev_stats:
                    for node in device.node_stats:
                        op = node.timeline_label.split("(")[0].split("= ")[-1] or node.node_name
                        micros = node.op_end_rel_micros - node.op_start_rel_micros
                        total[op] = total.get(op, 0) + micros
                        count[op] = count.get(op, 0) + 1
            out[variant] = sorted(
                ((op, count[op] // runs, total[op] / runs / 1e3) for op in total),
                key=lambda entry: -entry[2],
            )
        return out

    def close(self):
        self.session.close()


def _demo_module():
    """examples/recsys_demo.py as a module (importing it imports TensorFlow)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("recsys_demo", DEMO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class DemoGraph:
    """The demo's model (its own build_model), built once with each
    optimizer, each in a session of its own, fed the same batch: `ours` is
    the demo's optimizer, `stock` tf.clip_by_global_norm and TF's Adagrad.
    A step runs what the demo's workers run but the norm: the train op, the
    loss and the global step."""

    def __init__(self, threads):
        import tensorflow as tf

        demo = _demo_module()

        class ClippedStock(tf.compat.v1.train.AdagradOptimizer):
            """What the demo did before: the stock clip, then TF's optimizer."""

            def apply_gradients(self, grads_and_vars, global_step=None, name=None):
                grads, variables = zip(*grads_and_vars)
                clipped, _ = tf.clip_by_global_norm(grads, demo.CLIP_NORM)
                return super().apply_gradients(zip(clipped, variables), global_step, name)

        optimizers = {"ours": None, "stock": ClippedStock(demo.LEARNING_RATE)}
        batch = demo.SyntheticClicks(seed=0).batch()
        config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=threads)
        self.sessions, self.fns, self.num_elements = [], {}, 0
        for impl, optimizer in optimizers.items():
            graph = tf.Graph()
            with graph.as_default():
                m = demo.build_model(None, "worker", 0, optimizer=optimizer)
                init = tf.compat.v1.global_variables_initializer()
                grads = tf.compat.v1.gradients(m["loss"], tf.compat.v1.trainable_variables())
            session = tf.compat.v1.Session(graph=graph, config=config)
            session.run(init)
            feed = m["feed"]
            step = session.make_callable([m["train"], m["loss"], m["step"]], feed_list=feed)
            self.fns[f"{impl}:step"] = lambda step=step: step(*batch)
            if impl == "ours":
                forward = session.make_callable(m["loss"], feed_list=feed)
                self.fns["inputs"] = lambda forward=forward: forward(*batch)
                # The floats of the gradients: the embedding's gathered rows
                # and the dense variables.
                for g in session.run(grads, dict(zip(feed, batch))):
                    values = g.values if hasattr(g, "values") else g
                    self.num_elements += values.size
            graph.finalize()
            self.sessions.append(session)

    def check(self):
        for fn in self.fns.values():
            fn()

    def callables(self):
        return dict(self.fns)

    def close(self):
        for session in self.sessions:
            session.close()


def keras3_missing():
    """None where Keras 3 is installed, else why the Keras workload is skipped."""
    try:
        import keras
    except ImportError as e:
        return f"Keras 3 is not installed ({e})"
    version = str(getattr(keras, "__version__", "unknown"))
    if not version.split(".")[0].isdigit() or int(version.split(".")[0]) < 3:
        return f"Keras 3 is not installed (keras {version}; TensorFlow 2.16 or newer has it)"
    return None


def keras_model(cfg):
    """The Keras workload's model (KERAS): a recommendation model's shape,
    one small embedding and dense layer per categorical feature, then an
    MLP. Its weights are drawn from keras.utils.set_random_seed(0)."""
    import keras

    keras.utils.set_random_seed(0)
    ids = keras.Input((cfg["features"],), dtype="int32", name="ids")
    dense = keras.Input((cfg["dense"],), name="dense_features")
    towers = []
    for i in range(cfg["features"]):
        embedded = keras.layers.Embedding(cfg["vocab"], cfg["dim"], name=f"embedding_{i}")(
            ids[:, i]
        )
        towers.append(
            keras.layers.Dense(cfg["dim"], activation=cfg["activation"], name=f"tower_{i}")(
                embedded
            )
        )
    x = keras.layers.Concatenate()(towers + [dense])
    for units in cfg["hidden"]:
        x = keras.layers.Dense(units, activation=cfg["activation"])(x)
    return keras.Model([ids, dense], keras.layers.Dense(1)(x))


def _set_keras_threads(threads):
    """Eager TensorFlow's intra-op threads; where the eager context has
    already started they cannot change, and a note says what they are."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError:
        now = tf.config.threading.get_intra_op_parallelism_threads()
        if now != threads:
            print(
                f"  keras: intra-op threads are {now or 'the default'}, not {threads}: "
                "the eager context had started",
                file=sys.stderr,
            )


class KerasGraph:
    """The Keras workload: keras_model built twice from the same weights,
    compiled with jit_compile=False, `stock` with Adam(global_clipnorm=c),
    `ours` with `ours_optimizer(learning_rate, c)` (by default
    GlobalNormClipOptimizer(Adam(learning_rate), c)), each step one
    train_on_batch of one fixed batch; `inputs` is test_on_batch of that
    batch (the forward pass and the loss) on ours' model."""

    def __init__(self, threads, tiny=False, ours_optimizer=None):
        import keras
        import tensorflow as tf

        from monolith_ops.keras import GlobalNormClipOptimizer

        _set_keras_threads(threads)
        cfg = KERAS_TINY if tiny else KERAS
        rng = np.random.default_rng(0)
        self.x = [
            tf.constant(rng.integers(0, cfg["vocab"], (cfg["batch"], cfg["features"]), np.int32)),
            tf.constant(rng.standard_normal((cfg["batch"], cfg["dense"]), dtype=np.float32)),
        ]
        self.labels = [
            tf.constant((rng.random((cfg["batch"], 1)) < 0.3).astype(np.float32))
            for _ in range(cfg["label_sets"])
        ]
        self.loss = keras.losses.BinaryCrossentropy(from_logits=True)
        first = keras_model(cfg)
        weights = first.get_weights()
        grads = self.gradients(first, 0)
        # The floats of the gradients: the embeddings' gathered rows and the
        # dense variables, as the demo counts them.
        self.num_elements = sum(
            int(np.prod((g.values if isinstance(g, tf.IndexedSlices) else g).shape)) for g in grads
        )
        self.first_norm = float(tf.linalg.global_norm(grads))
        self.clip_norm = cfg["clip_fraction"] * self.first_norm
        lr = cfg["learning_rate"]
        if ours_optimizer is None:

            def ours_optimizer(learning_rate, clip_norm):
                return GlobalNormClipOptimizer(keras.optimizers.Adam(learning_rate), clip_norm)

        optimizers = {
            "ours": ours_optimizer(lr, self.clip_norm),
            "stock": keras.optimizers.Adam(lr, global_clipnorm=self.clip_norm),
        }
        self.models, self.fns = {}, {}
        x, labels = self.x, self.labels
        for impl, optimizer in optimizers.items():
            model = keras_model(cfg)
            model.set_weights(weights)
            model.compile(optimizer=optimizer, loss=self.loss, jit_compile=False)
            self.models[impl] = model
            # Each model's own turn through the label sets: the same sequence.
            turns = itertools.cycle(labels)
            self.fns[f"{impl}:step"] = lambda model=model, turns=turns: model.train_on_batch(
                x, next(turns)
            )
        self.fns["inputs"] = lambda model=self.models["ours"]: model.test_on_batch(x, labels[0])
        self.num_variables = len(first.trainable_variables)

    def gradients(self, model, label_set):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = self.loss(self.labels[label_set], model(self.x, training=True))
        return tape.gradient(loss, model.trainable_variables)

    def steps(self, n=1):
        """n steps of ours and of stock."""
        for _ in range(n):
            self.fns["ours:step"]()
            self.fns["stock:step"]()

    def compare(self):
        """Raises unless ours and stock took as many steps and hold the same
        weights, within KERAS_RTOL and KERAS_ATOL."""
        ours, stock = self.models["ours"], self.models["stock"]
        steps = int(ours.optimizer.iterations.numpy()), int(stock.optimizer.iterations.numpy())
        if steps[0] != steps[1]:
            raise RuntimeError(f"keras: ours took {steps[0]} steps, stock {steps[1]}")
        worst = 0.0
        for got, want in zip(ours.get_weights(), stock.get_weights()):
            if not np.allclose(got, want, rtol=KERAS_RTOL, atol=KERAS_ATOL):
                worst = max(worst, float(np.max(np.abs(got - want))))
        if worst:
            raise RuntimeError(
                f"keras: after {steps[0]} steps ours' weights differ from stock's by up to "
                f"{worst:.3g} (allowed: rtol {KERAS_RTOL}, atol {KERAS_ATOL})"
            )
        return steps[0]

    def check(self):
        """One step of each, then the weights must agree."""
        self.steps(1)
        self.compare()

    def verify(self):
        """After the timed steps: the weights must still agree; the norm of
        the gradients then, against clip_norm, to stderr."""
        steps = self.compare()
        import tensorflow as tf

        stock = self.models["stock"]
        norm = float(tf.linalg.global_norm(self.gradients(stock, steps % len(self.labels))))
        print(
            f"  keras: {self.num_variables} variables; weights agree after {steps} steps; "
            f"gradient norm {self.first_norm:.4g} at the first step, {norm:.4g} after the "
            f"last, clip_norm {self.clip_norm:.4g} ({'scales' if norm > self.clip_norm else 'passes'})",
            file=sys.stderr,
            flush=True,
        )

    def callables(self):
        return dict(self.fns)

    def close(self):
        self.models.clear()


def print_op_times(name, graph, top=4):
    """The op types that take the most of each variant's run, to stderr."""
    for variant, entries in graph.op_times().items():
        cells = ", ".join(f"{op} x{n} {ms:.3g} ms" for op, n, ms in entries[:top])
        nodes = sum(n for _, n, _ in entries)
        print(f"  {name} {variant}: {nodes} nodes; {cells}", file=sys.stderr, flush=True)


def run_optimizer_workload(
    name, shapes, sparse, ops, rounds, warmup, threads, op_times=False, tiny=False
):
    """The rows of one optimizer workload: one per op, times in ms; with
    op_times, the op types that take the time, after the timed rounds."""
    if name == "demo":
        graph = DemoGraph(threads)
    elif name == "keras":
        graph = KerasGraph(threads, tiny)
    else:
        graph = OptimizerGraph(shapes, sparse, ops, threads)
    try:
        graph.check()
        fns = graph.callables()
        floor = compiled_floor.CompiledFloor(graph.num_elements, threads)
    except BaseException:
        graph.close()
        raise
    counts = sorted({1, threads})
    loops = sorted({RULES[rule][2] for rule, _ in ops.values()})
    for loop in loops:
        for t in counts:
            fns[f"floor:{loop}:{t}"] = SelfTimed(lambda loop=loop, t=t: floor.run(loop, t))
    try:
        times = time_round_robin(fns, rounds, warmup)
        if hasattr(graph, "verify"):  # the results after the timed runs
            graph.verify()
        if op_times and hasattr(graph, "op_times"):
            print_op_times(name, graph)
    finally:
        graph.close()
        floor.close()
    ms = {v: 1e3 * float(np.median(s)) for v, s in times.items()}
    iqr = {v: 1e3 * float(np.subtract(*np.percentile(s, [75, 25]))) for v, s in times.items()}
    rows = []
    for op, (rule, _) in ops.items():
        fastest = min((f"floor:{RULES[rule][2]}:{t}" for t in counts), key=ms.get)
        rows.append(_row(name, op, ms, iqr, fastest))
    return rows


def _sig(x):  # 4 significant digits: the noise is larger
    return float(f"{x:.4g}")


def _row(name, op, ms, iqr, fastest):
    ours, stock, floor_ms = ms[f"ours:{op}"], ms[f"stock:{op}"], ms[fastest]
    return {
        "workload": name,
        "op": op,
        "ours_ms": _sig(ours),
        "stock_ms": _sig(stock),
        "floor_ms": _sig(floor_ms),
        "inputs_ms": _sig(ms["inputs"]),
        "stock_over_ours": _sig(stock / ours),
        "ours_over_floor": _sig(ours / floor_ms),
        "ours_iqr_ms": _sig(iqr[f"ours:{op}"]),
        "stock_iqr_ms": _sig(iqr[f"stock:{op}"]),
        "floor": fastest,  # floor:<loop>:<threads>, the fastest
    }


COLUMNS = (
    ("workload", "workload", "{}"),
    ("op", "op", "{}"),
    ("ours ms", "ours_ms", "{:.4g}"),
    ("stock ms", "stock_ms", "{:.4g}"),
    ("stock/ours", "stock_over_ours", "{:.2f}x"),
    ("floor ms", "floor_ms", "{:.4g}"),
    ("ours/floor", "ours_over_floor", "{:.2f}x"),
    ("inputs ms", "inputs_ms", "{:.4g}"),
)


def format_table(rows):
    cells = [[h for h, _, _ in COLUMNS]]
    cells += [[fmt.format(row[key]) for _, key, fmt in COLUMNS] for row in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
        for line in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_chart(path, rows):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = (("floor", "floor_ms", "#2ca02c"), ("ours", "ours_ms", "#1f77b4"))
    series += (("stock TF", "stock_ms", "#d62728"), ("inputs only", "inputs_ms", "#bbbbbb"))
    labels = [f"{r['workload']} {r['op']}" for r in rows]
    y = np.arange(len(rows))
    height = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(rows) + 1.5))
    for i, (label, key, color) in enumerate(series):
        ax.barh(y + (i - 1.5) * height, [r[key] for r in rows], height, label=label, color=color)
    for yi, r in zip(y, rows):
        ax.text(
            max(r["stock_ms"], r["ours_ms"]) * 1.1, yi, f"{r['stock_over_ours']:.2f}x", va="center"
        )
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("median ms per run (log scale); beside the bars: stock/ours")
    ax.set_xlim(right=ax.get_xlim()[1] * 3)
    ax.legend(loc="upper right")  # the longest bars are at the bottom
    ax.set_title("Clips and clipped optimizer steps on CPU: ours, stock TF, the compiled floor")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def machine(threads):
    import tensorflow as tf

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cpus": len(os.sched_getaffinity(0)),
        "threads": threads,
        "load_average": round(os.getloadavg()[0], 2),
        "tensorflow": tf.__version__,
        "python": platform.python_version(),
    }


def merge_results(old, new):
    """`old` (a performance.json) with `new`'s workloads' rows in place of
    its rows of those workloads (at the place of their first row; new
    workloads at the end). `command` and `machine` stay old's; `merged`
    lists each merged run's command, machine and workloads."""
    replaced = {row["workload"] for row in new["rows"]}
    rows, placed = [], False
    for row in old["rows"]:
        if row["workload"] not in replaced:
            rows.append(row)
        elif not placed:
            rows += new["rows"]
            placed = True
    if not placed:
        rows += new["rows"]
    run = {"command": new["command"], "machine": new["machine"], "workloads": sorted(replaced)}
    return dict(
        old,
        rounds={**old.get("rounds", {}), **new["rounds"]},
        rows=rows,
        merged=[m for m in old.get("merged", []) if set(m["workloads"]) - replaced] + [run],
    )


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    all_names = list(workloads()) + list(optimizer_workloads())
    parser.add_argument("--workloads", nargs="+", choices=all_names, default=all_names)
    parser.add_argument("--quick", action="store_true", help="a quarter of the rounds")
    parser.add_argument("--tiny", action="store_true", help="tensors 1/1000 the size, 3 rounds")
    parser.add_argument("--rounds", type=int, help="timed rounds of every workload")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--out", default=DEFAULT_OUT, help="folder for performance.{json,png}")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the rows of the workloads not run from the performance.json in --out "
        "(this run's replace theirs; its command and machine are listed under 'merged')",
    )
    parser.add_argument(
        "--ops",
        action="store_true",
        help="after an optimizer workload's rounds, print (to stderr) the op types taking its time",
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    chosen = workloads(args.tiny)
    chosen_optimizers = optimizer_workloads(args.tiny)
    info = machine(args.threads)  # the load average at the start
    rows, rounds_used = [], {}
    for name in args.workloads:
        if name == "keras" and keras3_missing():
            print(f"keras: skipped: {keras3_missing()}", file=sys.stderr, flush=True)
            continue
        if name in chosen:
            title, shapes, sparse, rounds = chosen[name]
        else:
            title, shapes, sparse, ops, rounds = chosen_optimizers[name]
        if args.rounds:
            rounds = args.rounds
        elif args.tiny:
            rounds = 3
        elif args.quick:
            rounds = max(5, rounds // 4)
        rounds_used[name] = rounds
        print(f"{name}: {title}, {rounds} rounds", file=sys.stderr, flush=True)
        warmup = 1 if args.tiny else 5
        if name in chosen:
            rows += run_workload(name, shapes, sparse, rounds, warmup, args.threads)
        else:
            rows += run_optimizer_workload(
                name, shapes, sparse, ops, rounds, warmup, args.threads, args.ops, args.tiny
            )
    if not rows:
        print("nothing was timed: no table, nothing written", file=sys.stderr)
        return
    print(format_table(rows))
    command = "python benchmarks/run.py " + " ".join(sys.argv[1:] if argv is None else argv)
    result = {
        "command": command.strip(),
        "machine": info,
        "rounds": rounds_used,
        "rows": rows,
    }
    path = os.path.join(args.out, "performance.json")
    if args.merge and os.path.exists(path):
        with open(path) as f:
            result = merge_results(json.load(f), result)
    os.makedirs(args.out, exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    write_chart(os.path.join(args.out, "performance.png"), result["rows"])
    print(f"wrote {args.out}/performance.json and performance.png", file=sys.stderr)


if __name__ == "__main__":
    main()
