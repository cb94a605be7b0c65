# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""Benchmark of global-norm clipping: monolith_ops vs stock TF vs the memory floor.

Run it from the source tree or an installed package::

    python -m monolith_ops.benchmark            # full run, writes docs/benchmark.*
    python -m monolith_ops.benchmark --quick    # a few rounds, to try it out
    python -m monolith_ops.benchmark --help

Workloads: the 53 dense gradient shapes of a production recommendation model
(7,686,760 floats), 1,000 tensors of 100 floats, 4 tensors of 16 M floats, and
an embedding gradient as `tf.IndexedSlices` (20,000 rows of 64 floats out of a
1,000,000 x 64 table). Operations on each: `global_norm`, a clip whose norm is
above clip_norm (it scales) and a clip whose norm is below it (it does not).
A fifth workload, `keras`, times one training step of a Keras 3 model with
198 trainable variables, clipped by Keras' own `global_clipnorm` and by
`monolith_ops.keras.GlobalNormClipOptimizer` (see KerasStep).

How it measures, and why:

* Ours (`monolith_ops.clip_ops`) and stock TF (`tf.linalg.global_norm`,
  `tf.clip_by_global_norm`) run in the same graph-mode session, on the same
  inputs: float32 variables, read afresh by every run.
* Every output is consumed: each variant ends in one `IdentityN`, run as the
  target, over all its outputs (a clip's N tensors and the norm; a global
  norm's scalar together with the N inputs, so that every variant's
  `IdentityN` takes N + 1 tensors). Grappler never prunes or hollows out the
  ops feeding it (unlike a `tf.group` of control dependencies, whose inputs
  it turns into no-ops), and it costs the same on every side.
  Before timing, one traced run of each variant checks that every expected
  kernel ran (one `L2Loss` and one `Mul` per tensor for stock TF, our kernel
  for ours, one `ReadVariableOp` per variable).
* An op's own time is a run minus the *inputs-only* run of the same round: the
  same variable reads and the same `IdentityN`, without the op. Reading 1,000
  variables costs more than stock TF's whole global norm over them.
* All variants of a workload, the floors included, run round-robin in a
  shuffled order each round, after warm-up runs; we report the median of the
  per-round times and their spread (the interquartile range). Each timed run
  comes right after an untimed run of the same variant, so its inputs are in
  cache when they fit (the 53 dense shapes are 30.7 MB, which fits in a
  32 MB L3), as they would be for an op run step after step: the same holds
  for stock TF, ours and the floor. --cold times them straight after
  whatever ran before.
* A control row runs stock TF's `global_norm` on both sides, as two copies of
  the same graph: its ratio shows the noise of the method and should be ~1.0.
* The floor, measured in the same rounds on a numpy buffer of the same number
  of bytes, on 1 and on 2 threads (the faster counts): a *read* is
  `np.max` over the buffer; a *read+write* is `np.copyto` into a second,
  preallocated buffer (memcpy). The dispatch of an empty task to the threads
  is measured the same way and subtracted. A global norm must read 4 bytes per
  element (floor: one read); a clip that scales must read them twice and write
  them once, 12 bytes per element (floor: read + read+write); a clip that does
  not scale needs only the norm (floor: one read).

* The Keras step's variants (Keras' clip, ours, and Keras' again as a
  control), each its own copy of the model from the same weights, also run
  round-robin; each run is one whole step, nothing subtracted. Before timing,
  one step of each checks that ours and the control update the weights as
  Keras' clip does, and that our kernels are in ours' step only.

The table gives each op's median time in ms (with its IQR), the ratio of stock
TF's time to ours, the bytes the op must move per second, and the floor's time
as a fraction of the op's (1.0 = at the floor). It ends with the verdict on
each target, then the Keras step: the median time of a step with each clip
and the ratio. Results go to `benchmark.json` (the Keras row under "keras")
and `benchmark.png` under --out.
"""
import argparse
import json
import os
import platform
import sys
import threading
import time

import numpy as np

# The 53 dense gradient shapes (7,686,760 floats) of a production
# recommendation model: Monolith's clip_ops "large grad" test case.
DENSE_SHAPES = (
    (328, 128), (128,), (128,), (128, 64), (64,), (64,), (1,), (256, 256),
    (256,), (256,), (256, 128), (128,), (128,), (128, 1), (1,), (1,),
    (2488, 256), (256,), (256,), (3184, 256), (256,), (256,), (96, 128),
    (128,), (128,), (128, 64), (64,), (64,), (1,), (64, 16), (16,), (16,),
    (1609, 2048), (2048,), (2048,), (2048, 1024), (1024,), (1024,),
    (1024, 512), (512,), (512,), (512, 256), (256,), (256,), (256, 1), (1,),
    (1,), (96, 64), (64,), (64,), (64, 1), (1,), (1,),
)

OPS = ("global_norm", "clip_scales", "clip_passes")
OP_TITLES = {
    "global_norm": "global_norm",
    "clip_scales": "clip, norm > clip_norm",
    "clip_passes": "clip, norm < clip_norm",
}
# Bytes an op must move per element of float32, and the floor it is held to.
# A clip that scales reads twice and writes once; our kernel streams its
# writes past the cache when the outputs are large.
OP_BYTES_PER_ELEMENT = {"global_norm": 4, "clip_scales": 12, "clip_passes": 4}
# tf.clip_by_global_norm's scaling: L2Loss reads each element, Mul reads it
# again and writes it through the cache, which first reads the line it writes.
STOCK_CLIP_BYTES = 16

INPUTS = "inputs"
CONTROL = "control:global_norm"
PASSTHROUGH = "reference:identity_n"
FLOOR_VARIANTS = ("floor:read1", "floor:read2", "floor:copy1", "floor:copy2",
                  "floor:empty2")


class Workload:
    """A list of float32 gradients: dense shapes, or one IndexedSlices."""

    def __init__(self, name, title, shapes=(), sparse=None, rounds=40):
        self.name = name
        self.title = title
        self.shapes = tuple(tuple(s) for s in shapes)
        # sparse: (rows, width, table_rows) of an IndexedSlices gradient.
        self.sparse = sparse
        self.rounds = rounds

    @property
    def num_tensors(self):
        return 1 if self.sparse else len(self.shapes)

    @property
    def num_elements(self):
        if self.sparse:
            return self.sparse[0] * self.sparse[1]
        return int(sum(np.prod(s, dtype=np.int64) for s in self.shapes))

    def scaled(self, factor):
        """A smaller copy for smoke tests: each tensor 1-D, with its element
        count (or an IndexedSlices' rows) divided by `factor`, at least 1."""
        title = f"{self.title} (1/{factor})"
        if self.sparse:
            rows, width, table = self.sparse
            return Workload(self.name, title,
                            sparse=(max(1, rows // factor), width, table),
                            rounds=self.rounds)
        shapes = [(max(1, int(np.prod(s)) // factor),) for s in self.shapes]
        return Workload(self.name, title, shapes, rounds=self.rounds)


def default_workloads(dense_shapes=DENSE_SHAPES):
    """The four workloads of the benchmark, in order."""
    return [
        Workload("dense53", f"{len(dense_shapes)} dense shapes", dense_shapes,
                 rounds=60),
        Workload("1000x100", "1,000 x 100 floats", [(100,)] * 1000, rounds=150),
        Workload("4x16M", "4 x 16M floats", [(1 << 24,)] * 4, rounds=20),
        Workload("embedding", "IndexedSlices 20,000 x 64 of 1M x 64",
                 sparse=(20000, 64, 1000000), rounds=100),
    ]


def load_shapes(path):
    """Shapes from a JSON file with a "shapes" list (or a bare list)."""
    with open(path) as f:
        data = json.load(f)
    shapes = data["shapes"] if isinstance(data, dict) else data
    return tuple(tuple(int(d) for d in s) for s in shapes)


# --------------------------------------------------------------------------
# The graph of one workload: inputs, every variant, and a session to run them.


def _op_type(label):
    """The op type in a step-stats timeline label: 'name = Type(inputs)'."""
    _, _, rest = label.partition(" = ")
    return rest.partition("(")[0]


class WorkloadGraph:
    """Variables holding a workload's inputs, and every variant's target.

    Variants: "inputs" (read and consume the inputs only), "ours:<op>" and
    "stock:<op>" for each op in OPS, and the control "control:global_norm"
    (stock TF again, a second copy).
    """

    def __init__(self, workload, seed=0, config=None):
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        from monolith_ops import clip_ops  # pylint: disable=import-outside-toplevel

        self.workload = workload
        self.graph = tf.Graph()
        self.targets = {}  # variant -> the IdentityN op to run
        self.outputs = {}  # variant -> (list of output tensors, norm tensor)
        self.expected = {}  # variant -> {op type: min count that must run}
        n = workload.num_tensors
        with self.graph.as_default():
            with tf.name_scope("inputs"):
                inputs, consumed, init, feed, self.norm = self._build_inputs(
                    tf, workload, seed)
            self._add(tf, INPUTS, consumed, None, {"ReadVariableOp": n})
            self.session = tf.compat.v1.Session(graph=self.graph, config=config)
            self.session.run(init, feed_dict=feed)
            clip_norms = {"clip_scales": self.norm / 2, "clip_passes": self.norm * 2}

            def flatten(outs):
                flat = []
                for o in outs:
                    flat += [o.values, o.indices] if isinstance(
                        o, tf.IndexedSlices) else [o]
                return flat

            # A list longer than clip_ops.CHUNK_SIZE runs as packed ops.
            parts = len(clip_ops._parts(list(inputs)))  # noqa: WPS437
            reduce_kernels, clip_kernels = (
                ({"GlobalL2Reduce": 1}, {"MonolithClipByGlobalNormFused": 1})
                if parts == 1 else
                ({"MonolithPackedL2Reduce": 1}, {"MonolithClipBySumOfSquares": parts}))
            with tf.name_scope("ours"):
                with tf.name_scope("global_norm"):
                    norm = clip_ops.global_norm(inputs)
                self._add(tf, "ours:global_norm", consumed + [norm], norm,
                          reduce_kernels)
                for op, clip_norm in clip_norms.items():
                    with tf.name_scope(op):
                        outs, norm = clip_ops.clip_by_global_norm(inputs, clip_norm)
                    self._add(tf, "ours:" + op, flatten(outs) + [norm], norm,
                              clip_kernels, outs)
            with tf.name_scope("stock"):
                with tf.name_scope("global_norm"):
                    norm = tf.linalg.global_norm(inputs)
                self._add(tf, "stock:global_norm", consumed + [norm], norm,
                          {"L2Loss": n})
                for op, clip_norm in clip_norms.items():
                    with tf.name_scope(op):
                        outs, norm = tf.clip_by_global_norm(inputs, clip_norm)
                    self._add(tf, "stock:" + op, flatten(outs) + [norm], norm,
                              {"L2Loss": n, "Mul": n}, outs)
            with tf.name_scope("control"):
                norm = tf.linalg.global_norm(inputs)
                self._add(tf, CONTROL, consumed + [norm], norm, {"L2Loss": n})
            with tf.name_scope("reference"):
                # Returns the inputs unchanged, as a clip that does not scale
                # does: what an op with these N outputs costs at the least.
                # Its extra output stands for the norm. (It repeats an input:
                # grappler folds constant inputs of an IdentityN away, and
                # then an IdentityN of one tensor.)
                values = [v.values if isinstance(v, tf.IndexedSlices) else v
                          for v in inputs]
                passed = tf.identity_n(values + values[:1])
                outs = [tf.IndexedSlices(o, v.indices, v.dense_shape)
                        if isinstance(v, tf.IndexedSlices) else o
                        for v, o in zip(inputs, passed)]
                self._add(tf, PASSTHROUGH, flatten(outs) + [passed[-1]],
                          None, {"IdentityN": 2})
        self.graph.finalize()

    @staticmethod
    def _build_inputs(tf, workload, seed):
        """Variables holding the inputs, initialized from numpy values.

        Returns:
          (inputs as given to the ops, the tensors the inputs-only run
          consumes, the initializer op, its feed dict, the values' norm).
        """
        rng = np.random.default_rng(seed)
        sizes = ([workload.num_elements] if workload.sparse else
                 [int(np.prod(s, dtype=np.int64)) for s in workload.shapes])
        values = rng.standard_normal(sum(sizes), dtype=np.float32)
        norm = float(np.sqrt(np.sum(np.square(values, dtype=np.float64))))
        feed = tf.compat.v1.placeholder(tf.float32, [len(values)],
                                        name="initial_values")
        pieces = tf.split(feed, sizes) if len(sizes) > 1 else [feed]
        if workload.sparse:
            rows, width, table_rows = workload.sparse
            var = tf.compat.v1.Variable(tf.reshape(pieces[0], [rows, width]),
                                        name="embedding_grad_values",
                                        use_resource=True)
            picked = rng.choice(table_rows, rows, replace=False)
            indices = tf.constant(np.sort(picked).astype(np.int64))
            grad = tf.IndexedSlices(var.value(), indices,
                                    tf.constant([table_rows, width], tf.int64))
            inputs, consumed = [grad], [grad.values, indices]
        else:
            inputs = []
            for i, (shape, piece) in enumerate(zip(workload.shapes, pieces)):
                var = tf.compat.v1.Variable(tf.reshape(piece, shape),
                                            name=f"grad_{i}", use_resource=True)
                inputs.append(var.value())
            consumed = list(inputs)
        init = tf.compat.v1.global_variables_initializer()
        return inputs, consumed, init, {feed: values}, norm

    def _add(self, tf, variant, consumed, norm, expected, outs=None):
        sink = tf.raw_ops.IdentityN(input=consumed, name="consume")
        self.targets[variant] = sink[0].op
        self.outputs[variant] = (outs, norm)
        self.expected[variant] = expected

    def callable(self, variant):
        """A no-argument function that runs `variant` once."""
        return self.session.make_callable(self.targets[variant])

    def check_executed(self, variant):
        """Runs `variant` traced; raises unless every expected kernel ran.

        Returns:
          {op type: number of kernels of that type that ran}.
        """
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        options = tf.compat.v1.RunOptions(
            trace_level=tf.compat.v1.RunOptions.FULL_TRACE)
        metadata = tf.compat.v1.RunMetadata()
        self.session.run(self.targets[variant], options=options,
                         run_metadata=metadata)
        counts = {}
        for dev in metadata.step_stats.dev_stats:
            for node in dev.node_stats:
                op_type = _op_type(node.timeline_label)
                counts[op_type] = counts.get(op_type, 0) + 1
        for op_type, minimum in self.expected[variant].items():
            if counts.get(op_type, 0) < minimum:
                raise RuntimeError(
                    f"{self.workload.name} {variant}: expected at least "
                    f"{minimum} {op_type} kernel(s) to run, saw "
                    f"{counts.get(op_type, 0)}; the graph optimizer dropped "
                    "work, so the timing would measure nothing")
        return counts

    def fetch(self, variant):
        """(list of numpy outputs or None, norm) of one run of `variant`."""
        outs, norm = self.outputs[variant]
        if outs is None:
            return None, self.session.run(norm)
        return self.session.run((outs, norm))

    def close(self):
        self.session.close()


# --------------------------------------------------------------------------
# The memory floor: numpy reads and copies of the same number of bytes.


class _Floor:
    """Reads (np.max) and copies (np.copyto) n floats on 1 or 2 threads.

    Two threads: the calling thread does one half, a persistent helper thread
    the other, started and joined through a barrier.
    """

    def __init__(self, num_elements, threads=2):
        n = max(int(num_elements), 2)
        rng = np.random.default_rng(1)
        self.src = rng.standard_normal(n, dtype=np.float32)
        self.dst = np.zeros_like(self.src)
        half = n // 2
        self._halves = [(self.src[:half], self.dst[:half]),
                        (self.src[half:], self.dst[half:])]
        self._task = None
        self._barrier = threading.Barrier(threads)
        self._closed = False
        self._helper = threading.Thread(target=self._serve, daemon=True)
        self._helper.start()

    def _serve(self):
        while True:
            self._barrier.wait()
            if self._closed:
                return
            self._task(*self._halves[1])
            self._barrier.wait()

    def _run2(self, task):
        self._task = task
        self._barrier.wait()
        task(*self._halves[0])
        self._barrier.wait()

    @staticmethod
    def _read(src, dst):  # pylint: disable=unused-argument
        np.max(src)

    @staticmethod
    def _copy(src, dst):
        np.copyto(dst, src)

    @staticmethod
    def _empty(src, dst):  # pylint: disable=unused-argument
        pass

    def callables(self):
        return {
            "floor:read1": lambda: np.max(self.src),
            "floor:read2": lambda: self._run2(self._read),
            "floor:copy1": lambda: np.copyto(self.dst, self.src),
            "floor:copy2": lambda: self._run2(self._copy),
            "floor:empty2": lambda: self._run2(self._empty),
        }

    def close(self):
        self._closed = True
        self._barrier.wait()
        self._helper.join()


# --------------------------------------------------------------------------
# Timing.


def _stats(values):
    values = np.asarray(values, dtype=np.float64)
    q1, med, q3 = np.percentile(values, [25, 50, 75])
    return float(med), float(q3 - q1)


def time_round_robin(fns, rounds, warmup, seed=0, progress=None, hot=True):
    """Times every function of `fns` once per round, in a shuffled order.

    Args:
      fns: {name: no-argument callable}.
      rounds: number of timed rounds.
      warmup: untimed runs of each function first.
      progress: None or callable(round_done, rounds), called after each round.
      hot: if True, each timed call comes right after an untimed call of the
        same function, so that its data is wherever that function leaves it
        (in cache, when it fits) rather than where the previous one left it.

    Returns:
      {name: list of `rounds` durations in seconds}, index r = round r.
    """
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    rng = np.random.default_rng(seed)
    times = {name: [0.0] * rounds for name in names}
    clock = time.perf_counter
    for r in range(rounds):
        for i in rng.permutation(len(names)):
            fn = fns[names[i]]
            if hot:
                fn()
            start = clock()
            fn()
            times[names[i]][r] = clock() - start
        if progress is not None:
            progress(r + 1, rounds)
    return times


def own_times(times, variant, baseline):
    """Per-round time of `variant` minus that of `baseline`, in seconds."""
    return [a - b for a, b in zip(times[variant], times[baseline])]


def _ratio(numerator, denominator):
    if denominator <= 0 or numerator <= 0:
        return float("nan")
    return numerator / denominator


def summarize(workload, times):
    """Rows of results for one workload, from round-robin `times` (seconds)."""
    n = workload.num_elements
    ms = 1e3

    def own(variant, baseline=INPUTS):
        return _stats(own_times(times, variant, baseline))

    floors = {}
    read1, read1_iqr = _stats(times["floor:read1"])
    read2, read2_iqr = own("floor:read2", "floor:empty2")
    copy1, copy1_iqr = _stats(times["floor:copy1"])
    copy2, copy2_iqr = own("floor:copy2", "floor:empty2")
    read, read_threads = (read2, 2) if read2 < read1 and read2 > 0 else (read1, 1)
    copy, copy_threads = (copy2, 2) if copy2 < copy1 and copy2 > 0 else (copy1, 1)
    floors = {
        "workload": workload.name,
        "bytes": 4 * n,
        "read_ms": read * ms, "read_threads": read_threads,
        "read_GBps": 4 * n / read / 1e9,
        "copy_ms": copy * ms, "copy_threads": copy_threads,
        "copy_GBps": 8 * n / copy / 1e9,
        "read1_ms": read1 * ms, "read2_ms": read2 * ms,
        "copy1_ms": copy1 * ms, "copy2_ms": copy2 * ms,
        "read1_iqr_ms": read1_iqr * ms, "read2_iqr_ms": read2_iqr * ms,
        "copy1_iqr_ms": copy1_iqr * ms, "copy2_iqr_ms": copy2_iqr * ms,
        "dispatch2_ms": _stats(times["floor:empty2"])[0] * ms,
    }
    passthrough, passthrough_iqr = own(PASSTHROUGH)
    floors["passthrough_ms"] = passthrough * ms
    floors["passthrough_iqr_ms"] = passthrough_iqr * ms
    floor_of = {"global_norm": read, "clip_scales": read + copy,
                "clip_passes": read}
    rows = []
    for op in OPS:
        ours, ours_iqr = own("ours:" + op)
        stock, stock_iqr = own("stock:" + op)
        nbytes = OP_BYTES_PER_ELEMENT[op] * n
        rows.append({
            "workload": workload.name,
            "workload_title": workload.title,
            "op": op,
            "tensors": workload.num_tensors,
            "elements": n,
            "bytes": nbytes,
            "ours_ms": ours * ms, "ours_iqr_ms": ours_iqr * ms,
            "stock_ms": stock * ms, "stock_iqr_ms": stock_iqr * ms,
            "speedup": _ratio(stock, ours),
            "ours_GBps": nbytes / ours / 1e9 if ours > 0 else float("nan"),
            "stock_GBps": nbytes / stock / 1e9 if stock > 0 else float("nan"),
            "floor_ms": floor_of[op] * ms,
            "ours_floor_fraction": _ratio(floor_of[op], ours),
            "stock_floor_fraction": _ratio(floor_of[op], stock),
        })
    control_a, control_a_iqr = own("stock:global_norm")
    control_b, control_b_iqr = own(CONTROL)
    control = {
        "workload": workload.name, "op": "global_norm (stock vs stock)",
        "a_ms": control_a * ms, "a_iqr_ms": control_a_iqr * ms,
        "b_ms": control_b * ms, "b_iqr_ms": control_b_iqr * ms,
        "ratio": _ratio(control_a, control_b),
    }
    inputs_ms, inputs_iqr = _stats(times[INPUTS])
    return rows, floors, control, {"workload": workload.name,
                                   "inputs_only_ms": inputs_ms * ms,
                                   "inputs_only_iqr_ms": inputs_iqr * ms}


# --------------------------------------------------------------------------
# One Keras 3 training step: Keras' own global_clipnorm against ours.

KERAS = "keras"
KERAS_STOCK = "keras:stock"
KERAS_OURS = "keras:ours"
KERAS_CONTROL = "keras:control"
KERAS_ROUNDS = 100


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

    def __init__(self, blocks=12, width=64, batch=16, tokens=8,
                 learning_rate=1e-4, momentum=0.9, clip_fraction=0.05, seed=0,
                 jit_compile=False):
        import keras  # pylint: disable=import-outside-toplevel
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        from monolith_ops import keras as ours  # pylint: disable=import-outside-toplevel

        self.jit_compile = jit_compile
        rng = np.random.default_rng(seed)
        self.x = tf.constant(rng.standard_normal((batch, tokens, width),
                                                 dtype=np.float32))
        self.y = tf.constant(rng.standard_normal((batch, tokens, 1),
                                                 dtype=np.float32))
        self.loss = keras.losses.MeanSquaredError()
        keras.utils.set_random_seed(seed)
        self.models = {}
        for variant in (KERAS_STOCK, KERAS_OURS, KERAS_CONTROL):
            self.models[variant] = self._model(keras, blocks, width, tokens)
            self.models[variant].set_weights(
                self.models[KERAS_STOCK].get_weights())
        variables = self.models[KERAS_STOCK].trainable_variables
        self.grad_norm_start = self.grad_norm()
        self.clip_norm = clip_fraction * self.grad_norm_start

        def sgd(**kwargs):
            return keras.optimizers.SGD(learning_rate, momentum=momentum,
                                        **kwargs)

        self.optimizers = {
            KERAS_STOCK: sgd(global_clipnorm=self.clip_norm),
            KERAS_OURS: ours.GlobalNormClipOptimizer(sgd(), self.clip_norm),
            KERAS_CONTROL: sgd(global_clipnorm=self.clip_norm),
        }
        self.steps = {}
        for variant, model in self.models.items():
            self.optimizers[variant].build(model.trainable_variables)
            self.steps[variant] = self._step(tf, model,
                                             self.optimizers[variant])
        self.info = {
            "blocks": blocks, "width": width, "batch": batch, "tokens": tokens,
            "trainable_variables": len(variables),
            "parameters": int(sum(np.prod(v.shape) for v in variables)),
            "optimizer": f"SGD(learning_rate={learning_rate:g}, "
                         f"momentum={momentum:g})",
            "clip_norm": self.clip_norm, "clip_fraction": clip_fraction,
            "grad_norm_start": self.grad_norm_start,
            "jit_compile": jit_compile, "keras": keras.__version__,
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
            optimizer.apply_gradients(zip(tape.gradient(loss, variables),
                                          variables))
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
                    raise RuntimeError(f"{variant} does not start from the "
                                       "same weights as keras:stock")
        updates = {}
        for variant, model in self.models.items():
            self.steps[variant]()
            updates[variant] = [(w - b).astype(np.float64) for w, b in
                                zip(model.get_weights(), before)]

        def norm(arrays):
            return float(np.sqrt(sum(np.sum(np.square(a)) for a in arrays)))

        size = norm(updates[KERAS_STOCK])
        if not size > 0:
            raise RuntimeError("keras:stock's step did not change the weights")
        result = {"update_norm": size, "relative_difference": {}}
        for variant in (KERAS_OURS, KERAS_CONTROL):
            diff = norm(a - b for a, b in zip(updates[variant],
                                               updates[KERAS_STOCK])) / size
            result["relative_difference"][variant] = diff
            if not diff <= rtol:
                raise RuntimeError(
                    f"{variant}'s step moved the weights by {diff:.3g} of "
                    f"keras:stock's step away from it (more than {rtol:g}): "
                    "the two do not compute the same update, so their times "
                    "would not compare the same work")
        result["kernels"] = {v: self.kernels(v) for v in self.steps}
        if not self.jit_compile and (
                not result["kernels"][KERAS_OURS] or
                result["kernels"][KERAS_STOCK] or
                result["kernels"][KERAS_CONTROL]):
            raise RuntimeError(f"kernels of monolith_ops in the steps: "
                               f"{result['kernels']}; expected some in "
                               "keras:ours only")
        return result

    def callables(self):
        """{variant: a no-argument function that runs one step}."""
        return {v: (lambda step=step: step().numpy())
                for v, step in self.steps.items()}

    def summarize(self, times):
        """The Keras row from round-robin `times` (seconds)."""
        ms = 1e3
        stock, stock_iqr = _stats(times[KERAS_STOCK])
        ours, ours_iqr = _stats(times[KERAS_OURS])
        control, control_iqr = _stats(times[KERAS_CONTROL])
        saved, saved_iqr = _stats(own_times(times, KERAS_STOCK, KERAS_OURS))
        return dict(self.info, **{
            "stock_ms": stock * ms, "stock_iqr_ms": stock_iqr * ms,
            "ours_ms": ours * ms, "ours_iqr_ms": ours_iqr * ms,
            "speedup": _ratio(stock, ours),
            "stock_minus_ours_ms": saved * ms,
            "stock_minus_ours_iqr_ms": saved_iqr * ms,
            "control_ms": control * ms, "control_iqr_ms": control_iqr * ms,
            "control_ratio": _ratio(stock, control),
        })


# --------------------------------------------------------------------------
# Targets.


def _row(rows, workload, op):
    for row in rows:
        if row["workload"] == workload and row["op"] == op:
            return row
    return None


def check_targets(rows, floors=()):
    """The benchmark's targets, each with the measured value and a verdict.

    Each also carries `bound` and `bound_text`: the best value within
    reach. For global_norm's speed-up, stock TF's time over the read floor
    (what an op at the floor would reach). For a clip that scales, the bytes
    stock TF moves per element over ours: when both are bound by memory
    bandwidth, the speed-up cannot pass it. For the cost of a clip that does
    not scale, the cost of returning the same N tensors with no work at all
    (`tf.identity_n`) over our global_norm.
    """
    targets = []
    passthrough = {f["workload"]: f.get("passthrough_ms") for f in floors}

    def add(text, value, limit, met_if_at_least=True, unit="x", bound=None,
            bound_text=""):
        if value is None:
            return
        met = (value >= limit) if met_if_at_least else (value <= limit)
        if value != value:  # NaN: not measurable
            met = False
        targets.append({"target": text, "value": value, "limit": limit,
                        "unit": unit, "met": bool(met), "bound": bound,
                        "bound_text": bound_text})

    def at_floor(row):
        if "stock_ms" not in row or "floor_ms" not in row:
            return None
        return _ratio(row["stock_ms"], row["floor_ms"])

    row = _row(rows, "dense53", "global_norm")
    if row:
        add("global_norm on the dense shapes >= 2x faster than "
            "tf.linalg.global_norm", row["speedup"], 2.0,
            bound=at_floor(row), bound_text="at the read floor")
        add("global_norm on the dense shapes >= 80% of the read floor",
            row["ours_floor_fraction"], 0.8, unit="of floor")
    row = _row(rows, "1000x100", "global_norm")
    if row:
        add("global_norm on 1,000 x 100 floats >= 10x faster than stock",
            row["speedup"], 10.0, bound=at_floor(row),
            bound_text="at the read floor")
    row = _row(rows, "dense53", "clip_scales")
    if row:
        add("a clip that scales on the dense shapes >= 1.5x faster than "
            "tf.clip_by_global_norm", row["speedup"], 1.5,
            bound=STOCK_CLIP_BYTES / OP_BYTES_PER_ELEMENT["clip_scales"],
            bound_text="bytes moved, stock / ours (16 / 12 per element)")
    for name in dict.fromkeys(r["workload"] for r in rows):
        norm, passes = _row(rows, name, "global_norm"), _row(rows, name,
                                                              "clip_passes")
        if norm and passes:
            identity = passthrough.get(name)
            add(f"a clip that does not scale ({name}) costs <= 1.2x our own "
                "global_norm", _ratio(passes["ours_ms"], norm["ours_ms"]), 1.2,
                met_if_at_least=False, unit="x our global_norm",
                bound=None if identity is None else _ratio(identity,
                                                           norm["ours_ms"]),
                bound_text="returning the N tensors alone (tf.identity_n)")
    return targets


# --------------------------------------------------------------------------
# Output: table, JSON, chart.


def _fmt(value, spec):
    return "n/a" if value != value else format(value, spec)


def format_table(rows, floors, controls, baselines):
    lines = []
    header = (f"{'workload':<10} {'op':<12} {'ours ms':>9} {'(IQR)':>8} "
              f"{'stock ms':>9} {'(IQR)':>8} {'stock/ours':>10} "
              f"{'ours GB/s':>9} {'floor ms':>9} {'floor/ours':>10}")
    lines.append(header)
    lines.append("-" * len(header))
    for r in rows:
        lines.append(
            f"{r['workload']:<10} {r['op']:<12} {_fmt(r['ours_ms'], '9.3f')} "
            f"{_fmt(r['ours_iqr_ms'], '8.3f')} {_fmt(r['stock_ms'], '9.3f')} "
            f"{_fmt(r['stock_iqr_ms'], '8.3f')} {_fmt(r['speedup'], '10.2f')} "
            f"{_fmt(r['ours_GBps'], '9.1f')} {_fmt(r['floor_ms'], '9.3f')} "
            f"{_fmt(r['ours_floor_fraction'], '10.2f')}")
    lines.append("")
    lines.append("Control, stock TF on both sides (should be ~1.0):")
    for c in controls:
        lines.append(f"  {c['workload']:<10} {c['a_ms']:.3f} ms vs "
                     f"{c['b_ms']:.3f} ms: ratio {_fmt(c['ratio'], '.2f')}")
    lines.append("")
    lines.append("Floor (numpy on the same bytes; faster of 1 and 2 threads), "
                 "and the inputs-only run subtracted from every op:")
    for f, b in zip(floors, baselines):
        lines.append(
            f"  {f['workload']:<10} {f['bytes'] / 1e6:8.1f} MB: read "
            f"{f['read_ms']:.3f} ms ({f['read_GBps']:.1f} GB/s, "
            f"{f['read_threads']} thr), read+write {f['copy_ms']:.3f} ms "
            f"({f['copy_GBps']:.1f} GB/s, {f['copy_threads']} thr); "
            f"inputs-only {b['inputs_only_ms']:.3f} ms")
    lines.append("")
    lines.append("Returning the same N tensors unchanged (tf.identity_n), the "
                 "least an op with N outputs costs:")
    for f in floors:
        lines.append(f"  {f['workload']:<10} {_fmt(f['passthrough_ms'], '.3f')} "
                     f"ms (IQR {_fmt(f['passthrough_iqr_ms'], '.3f')})")
    return "\n".join(lines)


def format_keras(row):
    """The Keras row: one training step, clipped by Keras or by us."""
    lines = [
        f"Keras training step: {row['blocks']} blocks of width {row['width']} "
        f"({row['trainable_variables']} variables, {row['parameters']:,} "
        f"floats), batch {row['batch']} x {row['tokens']} tokens, "
        f"{row['optimizer']}, clip_norm {row['clip_norm']:.4g} "
        f"({row['clip_fraction']:g} x the initial gradient norm), "
        f"tf.function(jit_compile={row['jit_compile']}):",
        f"  {'clipped by':<26} {'ms/step':>9} {'(IQR)':>8}",
        f"  {'Keras global_clipnorm':<26} {_fmt(row['stock_ms'], '9.3f')} "
        f"{_fmt(row['stock_iqr_ms'], '8.3f')}",
        f"  {'GlobalNormClipOptimizer':<26} {_fmt(row['ours_ms'], '9.3f')} "
        f"{_fmt(row['ours_iqr_ms'], '8.3f')}",
        f"  stock/ours {_fmt(row['speedup'], '.2f')}; stock - ours, per round: "
        f"{_fmt(row['stock_minus_ours_ms'], '.3f')} ms (IQR "
        f"{_fmt(row['stock_minus_ours_iqr_ms'], '.3f')}); control, Keras "
        f"against itself: {_fmt(row['control_ratio'], '.2f')}",
    ]
    return "\n".join(lines)


def format_targets(targets):
    lines = ["Targets:"]
    for t in targets:
        unit = t["unit"]
        line = (f"  [{'met' if t['met'] else 'MISSED':>6}] {t['target']}: "
                f"{_fmt(t['value'], '.2f')} {unit} (limit {t['limit']:g})")
        if t.get("bound") is not None:
            line += f"; {t['bound_text']}: {_fmt(t['bound'], '.2f')} {unit}"
        lines.append(line)
    return "\n".join(lines)


def write_chart(path, rows, controls):
    """A bar chart of ms per op: floor, ours and stock, one panel per workload."""
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    names = list(dict.fromkeys(r["workload"] for r in rows))
    cols = min(2, len(names))
    nrows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(6.5 * cols, 4.2 * nrows),
                             squeeze=False)
    control_of = {c["workload"]: c for c in controls}
    width = 0.27
    for ax, name in zip(axes.flat, names):
        wrows = [r for r in rows if r["workload"] == name]
        x = np.arange(len(wrows))
        series = [("floor", "floor_ms", None, "#999999"),
                  ("monolith_ops", "ours_ms", "ours_iqr_ms", "#1f77b4"),
                  ("stock TF", "stock_ms", "stock_iqr_ms", "#d62728")]
        for k, (label, key, iqr, color) in enumerate(series):
            vals = [max(r[key], 1e-4) if r[key] == r[key] else 0 for r in wrows]
            errs = None
            if iqr:  # whiskers: the interquartile range, centred on the median
                errs = [[min(r[iqr] / 2, v * 0.999) for r, v in zip(wrows, vals)],
                        [r[iqr] / 2 for r in wrows]]
            ax.bar(x + (k - 1) * width, vals, width, label=label, color=color,
                   yerr=errs, error_kw={"elinewidth": 0.8, "capsize": 2})
        for i, r in enumerate(wrows):
            if r["speedup"] == r["speedup"]:
                top = max(r["ours_ms"] + r["ours_iqr_ms"] / 2,
                          r["stock_ms"] + r["stock_iqr_ms"] / 2)
                ax.annotate(f"{r['speedup']:.1f}x", (x[i], top * 1.08),
                            ha="center", va="bottom", fontsize=8)
        ax.set_xticks(x)
        ax.set_xticklabels([OP_TITLES[r["op"]] for r in wrows], fontsize=8)
        ax.set_ylabel("ms (median, own time)")
        ax.set_yscale("log")
        title = wrows[0]["workload_title"]
        if name in control_of:
            title += f"\ncontrol stock/stock = {control_of[name]['ratio']:.2f}"
        ax.set_title(title, fontsize=9)
        ax.margins(y=0.25)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle("Global-norm clipping on CPU: each op's own time, median "
                 "(whiskers: IQR; labels: stock TF time / ours)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# Environment variables that change what the timings mean, recorded with them.
_TIMING_ENV = (
    "TF_CPU_ALLOCATOR_USE_BFC", "TF_CPU_BFC_MEM_LIMIT_IN_MB",
    "TF_ENABLE_ONEDNN_OPTS", "TF_NUM_INTEROP_THREADS", "TF_NUM_INTRAOP_THREADS",
    "OMP_NUM_THREADS", "MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_", "CUDA_VISIBLE_DEVICES",
)


def machine_info():
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    env = {k: os.environ[k] for k in _TIMING_ENV if k in os.environ}
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "tensorflow": tf.__version__, "numpy": np.__version__,
            "platform": platform.platform(), "load_average": _load_average(),
            "environment": env}


def _load_average():
    try:
        return list(os.getloadavg())
    except OSError:
        return None


# --------------------------------------------------------------------------
# The whole run.


def _round_logger(log, start):
    """A `progress` for time_round_robin: logs a line every 2 s and at the
    end, with the seconds since `start`."""
    last = [time.perf_counter()]

    def progress(done, total):
        now = time.perf_counter()
        if now - last[0] >= 2.0 or done == total:
            last[0] = now
            log(f"  round {done}/{total} ({now - start:.1f} s)")

    return progress


def _raw_ms(times):
    return {v: [round(t * 1e3, 5) for t in ts] for v, ts in times.items()}


def run_workload(workload, rounds, warmup, seed=0, log=None, hot=True):
    """Builds, checks and times one workload.

    Returns:
      (summarize()'s tuple, {variant: per-round times in ms}).
    """
    log = log or (lambda msg: None)
    start = time.perf_counter()
    bench = WorkloadGraph(workload, seed=seed)
    floor = _Floor(workload.num_elements)
    try:
        for variant in bench.targets:
            bench.check_executed(variant)
        fns = {v: bench.callable(v) for v in bench.targets}
        fns.update(floor.callables())
        log(f"  built and checked in {time.perf_counter() - start:.1f} s; "
            f"{len(fns)} variants x {rounds} rounds")
        times = time_round_robin(fns, rounds, warmup, seed=seed,
                                 progress=_round_logger(log, start), hot=hot)
    finally:
        floor.close()
        bench.close()
    return summarize(workload, times), _raw_ms(times)


def run_keras(rounds, warmup, seed=0, log=None, hot=True, **model_args):
    """Builds, checks and times the Keras training step (KerasStep).

    Returns:
      (the Keras row, {variant: per-round times in ms}).
    """
    log = log or (lambda msg: None)
    start = time.perf_counter()
    step = KerasStep(seed=seed, **model_args)
    check = step.check()
    fns = step.callables()
    log(f"  built and checked in {time.perf_counter() - start:.1f} s "
        f"(updates of one step: ours within "
        f"{check['relative_difference'][KERAS_OURS]:.1e} of Keras'); "
        f"{len(fns)} variants x {rounds} rounds")
    times = time_round_robin(fns, rounds, warmup, seed=seed,
                             progress=_round_logger(log, start), hot=hot)
    row = step.summarize(times)
    row["check"] = check
    row["grad_norm_end"] = {v: step.grad_norm(v) for v in fns}
    log(f"  one step: Keras global_clipnorm {row['stock_ms']:.2f} ms, "
        f"GlobalNormClipOptimizer {row['ours_ms']:.2f} ms: stock/ours "
        f"{_fmt(row['speedup'], '.2f')} (control "
        f"{_fmt(row['control_ratio'], '.2f')})")
    if min(row["grad_norm_end"].values()) <= step.clip_norm:
        log("  note: the gradient's norm fell to clip_norm during the run; "
            "the last steps did not scale")
    return row, _raw_ms(times)


def run(workloads, rounds=None, warmup=3, seed=0, log=None, hot=True,
        keras=False):
    """Runs the benchmark. Returns a dict with rows, floors, controls, targets
    and, with `keras`, the Keras row (`keras`).

    Args:
      workloads: list of Workload.
      rounds: None (each workload's default, KERAS_ROUNDS for the Keras
        step) or the number of rounds for all.
      warmup: untimed runs of every variant before timing.
      log: None or callable(str) for progress lines.
      hot: time each run right after an untimed run of the same variant.
      keras: False, True (time the Keras training step) or a dict of
        KerasStep arguments (a different model).
    """
    log = log or (lambda msg: None)
    rows, floors, controls, baselines, raw = [], [], [], [], {}
    load = _load_average()
    if load and load[0] > (os.cpu_count() or 1):
        log(f"note: the machine is busy (load average {load[0]:.1f} on "
            f"{os.cpu_count()} cores); expect noisy timings")
    start = time.perf_counter()
    total = len(workloads) + (1 if keras else 0)
    for i, workload in enumerate(workloads):
        n_rounds = rounds or workload.rounds
        log(f"[{i + 1}/{total}] {workload.title}: "
            f"{workload.num_tensors} tensors, {workload.num_elements:,} floats")
        (w_rows, w_floor, w_control, w_base), raw[workload.name] = run_workload(
            workload, n_rounds, warmup, seed=seed, log=log, hot=hot)
        rows += w_rows
        floors.append(w_floor)
        controls.append(w_control)
        baselines.append(w_base)
    keras_row = None
    if keras:
        model_args = keras if isinstance(keras, dict) else {}
        log(f"[{total}/{total}] Keras training step: Keras' global_clipnorm "
            "against GlobalNormClipOptimizer")
        keras_row, raw[KERAS] = run_keras(rounds or KERAS_ROUNDS, warmup,
                                          seed=seed, log=log, hot=hot,
                                          **model_args)
    return {
        "rows": rows, "floors": floors, "controls": controls,
        "inputs_only": baselines, "targets": check_targets(rows, floors),
        "keras": keras_row,
        "seconds": time.perf_counter() - start,
        "load_average_at_start": load,
        "raw_ms": raw,
    }


def _parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m monolith_ops.benchmark",
        description="Times monolith_ops' global_norm and clip_by_global_norm "
        "against stock TensorFlow and the memory floor, on CPU, and writes a "
        "table, JSON and a PNG chart.")
    parser.add_argument("--quick", action="store_true",
                        help="5 rounds and 1 warm-up run per workload: a "
                        "quick try, too noisy to quote")
    parser.add_argument("--rounds", type=int, default=None,
                        help="timed rounds per workload (default: 20 to 150, "
                        "by workload size)")
    parser.add_argument("--warmup", type=int, default=3,
                        help="untimed runs of every variant first (default 3)")
    parser.add_argument("--workloads", nargs="+", default=None,
                        choices=[w.name for w in default_workloads()] + [KERAS],
                        help="run only these workloads (default: all); "
                        f"'{KERAS}' is one Keras 3 training step clipped by "
                        "Keras' global_clipnorm and by GlobalNormClipOptimizer")
    parser.add_argument("--shapes", default=None,
                        help="JSON file of dense shapes ({'shapes': [...]}) to "
                        "use instead of the built-in 53 shapes")
    parser.add_argument("--out", default="docs",
                        help="folder for benchmark.json and benchmark.png "
                        "(default: docs)")
    parser.add_argument("--cold", action="store_true",
                        help="time each run straight after the previous "
                        "variant's, not after an untimed run of its own: data "
                        "that would fit in cache is then mostly not there")
    parser.add_argument("--no-chart", action="store_true",
                        help="do not write the PNG chart")
    parser.add_argument("--scale", type=int, default=1,
                        help="divide every tensor's element count by this "
                        "(a smoke test of the machinery; default 1; not the "
                        "Keras model's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be >= 1")
    if args.scale < 1:
        parser.error("--scale must be >= 1")
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    shapes = load_shapes(args.shapes) if args.shapes else DENSE_SHAPES
    workloads = default_workloads(shapes)
    names = args.workloads or [w.name for w in workloads] + [KERAS]
    workloads = [w for w in workloads if w.name in names]
    if args.scale > 1:
        workloads = [w.scaled(args.scale) for w in workloads]
    keras = KERAS in names
    missing = keras3_missing() if keras else None
    if missing and args.workloads:
        log(f"error: the {KERAS} workload cannot run: {missing}")
        return 2
    if missing:
        log(f"note: the {KERAS} workload is skipped: {missing}")
        keras = False
    rounds, warmup = args.rounds, args.warmup
    if args.quick:
        rounds, warmup = rounds or 5, min(warmup, 1)
    result = run(workloads, rounds=rounds, warmup=warmup, seed=args.seed,
                 log=log, hot=not args.cold, keras=keras)
    result["command"] = " ".join(["python -m monolith_ops.benchmark"] + argv)
    default_rounds = {w.name: w.rounds for w in workloads}
    if keras:
        default_rounds[KERAS] = KERAS_ROUNDS
    result["settings"] = {"rounds": rounds or default_rounds,
                          "warmup": warmup, "seed": args.seed,
                          "quick": args.quick, "scale": args.scale,
                          "cache": "cold" if args.cold else "hot"}
    result["machine"] = machine_info()
    if result["rows"]:
        print(format_table(result["rows"], result["floors"],
                           result["controls"], result["inputs_only"]))
        print()
        print(format_targets(result["targets"]))
    if result["keras"]:
        if result["rows"]:
            print()
        print(format_keras(result["keras"]))
    os.makedirs(args.out, exist_ok=True)
    json_path = os.path.join(args.out, "benchmark.json")
    with open(json_path, "w") as f:
        json.dump(result, f, indent=1, allow_nan=True)
        f.write("\n")
    written = [json_path]
    if not args.no_chart and result["rows"]:
        png_path = os.path.join(args.out, "benchmark.png")
        write_chart(png_path, result["rows"], result["controls"])
        written.append(png_path)
    print(f"\nWrote {', '.join(written)} in {result['seconds']:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
