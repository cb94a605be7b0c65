# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""Benchmark of global-norm clipping: monolith_ops vs stock TF vs the
machine's compiled floor, and whole training steps clipped by each.

Not part of the package: it imports monolith_ops as installed. From the
repository root, in the venv that has the package installed::

    python benchmarks/run.py            # full run, writes docs/benchmark.*
    python benchmarks/run.py --quick    # a few rounds, to try it out
    python benchmarks/run.py --help

Workloads: the 53 dense gradient shapes of a production recommendation model
(7,686,760 floats), 1,000 tensors of 100 floats, 4 tensors of 16 M floats, and
an embedding gradient as `tf.IndexedSlices` (20,000 rows of 64 floats out of a
1,000,000 x 64 table). Operations on each: `global_norm`, a clip whose norm is
above clip_norm (it scales) and a clip whose norm is below it (it does not).
Three more, `unscale_f32`, `unscale_f16` and `unscale_bf16`, hold the 53
dense shapes as loss-scaled gradients of that dtype and time the
mixed-precision sequence on them: unscale by 1 / loss scale, check for
inf/NaN, clip by the global norm (which scales): ours, one
`clip_by_global_norm(..., inverse_scale=)` and `is_finite(norm)`, against
stock TF's ops and against Keras 3's LossScaleOptimizer with the inner
optimizer's `global_clipnorm` (see UNSCALE_OPS). Two more workloads time whole
training steps (steps.py): `recsys`, the embedding + MLP click model of
examples/recsys_demo.py in graph mode, and `keras`, a Keras 3
transformer-like model with 198 trainable variables.

How it measures, and why:

* Ours (`monolith_ops.clip_ops`) and stock TF (`tf.linalg.global_norm`,
  `tf.clip_by_global_norm`) run in the same graph-mode session, on the same
  inputs: float32 variables, read afresh by every run. The session's
  intra-op thread count is --threads (default: the CPUs this process may
  use), the thread pool our kernels run on.
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
* All variants of a workload, the floor's loops included, run round-robin in
  a shuffled order each round, after warm-up runs; we report the median of
  the per-round times and their spread (the interquartile range). Each timed
  run comes right after an untimed run of the same variant, so its inputs are
  in cache when they fit, as they would be for an op run step after step: the
  same holds for stock TF, ours and the floor. --cold times them straight
  after whatever ran before.
* A control row runs stock TF's `global_norm` on both sides, as two copies of
  the same graph: its ratio shows the noise of the method and should be ~1.0.
* The floor (compiled_floor.py, floor.cc): loops compiled for this machine
  (-O3 -march=native) over a buffer of the same number of bytes, on 1 thread
  and on --threads threads of a pool started once, timed in C++ with the GIL
  released. The read floor is the fastest of a max and of a sum of squares
  in float lanes; the read+write floor the fastest of scaling into a second
  buffer (plain or streaming stores) and scaling in place. A global norm
  must read its bytes once (floor: the read); a clip that scales must read
  them for the norm, then read and write them (floor: read + read+write); a
  clip that does not scale needs only the norm (floor: the read). The
  unscale workloads' sequence is a clip that scales (floor: read +
  read+write, over buffers of the gradients' bytes).
* The floor is measured in two kinds of memory, in the same rounds: on
  *tensor pages*, buffers allocated as TensorFlow's CPU allocator allocates
  its tensors (64-byte aligned, no advice to the kernel: the system's default
  pages), and on *huge pages*, buffers advised MADV_HUGEPAGE. TensorFlow's
  tensors do not lie in huge pages unless transparent huge pages are
  "always" (the machine's setting is in the JSON): with the setting
  "madvise", allocating 128 MB of tf.Variables leaves AnonHugePages in
  /proc/self/smaps_rollup at 0. Reading 4 KiB pages costs more (a TLB miss
  every 4 KiB; the hardware prefetcher stops at each page's end; measured
  numbers are in docs/benchmark.md). The floor an op is held to ("% of floor",
  the targets) is the floor on tensor pages, the memory it reads; the
  percentage of the huge-page floor is given beside it: how far the op is
  from the same loops when the pages are no obstacle.
* The training steps' variants (stock's clip, ours, and stock's again as a
  control), each its own copy of the model from the same weights, also run
  round-robin; each run is one whole step, nothing subtracted. Before timing,
  one step of each checks that ours and the control update the weights as
  stock does, and that our kernels run in ours' step only.

The table gives each op's median time in ms (with its IQR), the ratio of stock
TF's time to ours, the bytes the op must move per second, and the floor's time
as a percentage of the op's (100% = at the floor), on tensor pages and on
huge pages. Then the training steps (median time of a step with each clip,
and the ratio) and the verdict on each target. Results go to
`benchmark.json` and `benchmark.png` under --out.
"""

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

# The benchmark's own modules, next to this file (it is not part of the
# package: monolith_ops is imported as installed).
HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import compiled_floor  # noqa: E402  pylint: disable=wrong-import-position
import steps  # noqa: E402  pylint: disable=wrong-import-position
from timing import own_times, ratio, stats, time_round_robin  # noqa: E402  pylint: disable=wrong-import-position

DEFAULT_OUT = os.path.join(os.path.dirname(HERE), "docs")


def load_shapes(path):
    """Shapes from a JSON file with a "shapes" list (or a bare list)."""
    with open(path) as f:
        data = json.load(f)
    shapes = data["shapes"] if isinstance(data, dict) else data
    return tuple(tuple(int(d) for d in s) for s in shapes)


# The 53 dense gradient shapes (7,686,760 floats) of a production
# recommendation model, Monolith's clip_ops "large grad" test case: the file
# the tests read too.
DENSE_SHAPES_FILE = os.path.join(os.path.dirname(HERE), "tests", "data", "dense_shapes.json")
DENSE_SHAPES = load_shapes(DENSE_SHAPES_FILE)


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

# Workload kinds.
CLIP = "clip"
UNSCALE = "unscale"

# The unscale workloads: loss-scaled gradients, unscaled by 1 / LOSS_SCALE,
# checked for inf/NaN and clipped by their global norm (with a clip_norm that
# scales), by three sides in the same rounds:
#   keras:unscale_clip  Keras 3's mixed-precision sequence: LossScaleOptimizer's
#                       check_finite on the gradients, its unscaling
#                       (ops.divide(g, scale), as in its apply) and the inner
#                       optimizer's global_clipnorm clip (its _clip_gradients)
#   stock:unscale_clip  TF ops: g * cast(1 / scale, g.dtype) for each g, an
#                       all-finite check (reduce_all of each one's
#                       reduce_all(is_finite)), then tf.clip_by_global_norm
#   ours:unscale_clip   clip_ops.clip_by_global_norm(grads, clip_norm,
#                       inverse_scale=1 / scale) and tf.math.is_finite(norm)
# Rows: ours against stock TF ("unscale_tf") and against Keras
# ("unscale_keras"). The control is stock TF's sequence against a copy.
UNSCALE_DTYPES = {"float32": "f32", "float16": "f16", "bfloat16": "bf16"}
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
LOSS_SCALE = 1024.0
UNSCALE_OPS = ("unscale_tf", "unscale_keras")
OURS_UNSCALE = "ours:unscale_clip"
STOCK_UNSCALE = "stock:unscale_clip"
KERAS_UNSCALE = "keras:unscale_clip"
CONTROL_UNSCALE = "control:unscale_clip"
# Each row's baseline variant, and its name in the table.
UNSCALE_BASELINES = {
    "unscale_tf": (STOCK_UNSCALE, "stock TF"),
    "unscale_keras": (KERAS_UNSCALE, "Keras 3"),
}
OP_TITLES.update(
    {
        "unscale_tf": "unscale+check+clip\nvs stock TF",
        "unscale_keras": "unscale+check+clip\nvs Keras LossScaleOptimizer",
    }
)


class Workload:
    """A list of gradients: dense shapes, or one IndexedSlices.

    kind "clip" (float32): the ops of OPS. kind "unscale": loss-scaled
    gradients of `dtype`, unscaled, checked for inf/NaN and clipped
    (UNSCALE_OPS).
    """

    def __init__(self, name, title, shapes=(), sparse=None, rounds=40, dtype="float32", kind=CLIP):
        if kind not in (CLIP, UNSCALE):
            raise ValueError(f"no workload kind {kind!r}")
        if kind == CLIP and dtype != "float32":
            raise ValueError("the clip workloads are float32")
        if kind == UNSCALE and sparse:
            raise ValueError("the unscale workloads are dense")
        self.name = name
        self.title = title
        self.shapes = tuple(tuple(s) for s in shapes)
        # sparse: (rows, width, table_rows) of an IndexedSlices gradient.
        self.sparse = sparse
        self.rounds = rounds
        self.dtype = dtype
        self.kind = kind

    @property
    def itemsize(self):
        return DTYPE_BYTES[self.dtype]

    @property
    def nbytes(self):
        """The gradients' bytes."""
        return self.itemsize * self.num_elements

    @property
    def floor_floats(self):
        """The float32 elements the compiled floor runs over: the same bytes."""
        return max(1, self.nbytes // 4)

    @property
    def ops(self):
        return UNSCALE_OPS if self.kind == UNSCALE else OPS

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
            return Workload(
                self.name, title, sparse=(max(1, rows // factor), width, table), rounds=self.rounds
            )
        shapes = [(max(1, int(np.prod(s)) // factor),) for s in self.shapes]
        return Workload(
            self.name, title, shapes, rounds=self.rounds, dtype=self.dtype, kind=self.kind
        )


def default_workloads(dense_shapes=DENSE_SHAPES):
    """The workloads of the benchmark, in order: the four clipping workloads,
    then the loss-scaled dense shapes in each of UNSCALE_DTYPES."""
    return [
        Workload("dense53", f"{len(dense_shapes)} dense shapes", dense_shapes, rounds=60),
        Workload("1000x100", "1,000 x 100 floats", [(100,)] * 1000, rounds=150),
        Workload("4x16M", "4 x 16M floats", [(1 << 24,)] * 4, rounds=20),
        Workload(
            "embedding",
            "IndexedSlices 20,000 x 64 of 1M x 64",
            sparse=(20000, 64, 1000000),
            rounds=100,
        ),
    ] + [
        Workload(
            f"unscale_{UNSCALE_DTYPES[dtype]}",
            f"{len(dense_shapes)} dense shapes, {dtype}, loss scale {LOSS_SCALE:g}",
            dense_shapes,
            rounds=60,
            dtype=dtype,
            kind=UNSCALE,
        )
        for dtype in UNSCALE_DTYPES
    ]


# --------------------------------------------------------------------------
# The graph of one workload: inputs, every variant, and a session to run them.

# Our kernel of a clip with inverse_scale.
OURS_UNSCALE_KERNEL = "MonolithClipByGlobalNormV2"


def _flatten(tf, outs):
    """A list of outputs with each IndexedSlices as its values and indices."""
    flat = []
    for o in outs:
        flat += [o.values, o.indices] if isinstance(o, tf.IndexedSlices) else [o]
    return flat


def keras3():
    """The keras module if it is Keras 3 (with LossScaleOptimizer), else None."""
    try:
        import keras  # pylint: disable=import-outside-toplevel
    except ImportError:
        return None
    if not keras.__version__.startswith("3.") or not hasattr(
        keras.optimizers, "LossScaleOptimizer"
    ):
        return None
    return keras


def _keras_loss_scale_optimizer():
    """keras.optimizers.LossScaleOptimizer over SGD with global_clipnorm (set
    to the workload's clip_norm later), or None without Keras 3."""
    keras = keras3()
    if keras is None:
        return None
    return keras.optimizers.LossScaleOptimizer(
        keras.optimizers.SGD(1e-3, global_clipnorm=1.0), initial_scale=LOSS_SCALE
    )


def _op_type(label):
    """The op type in a step-stats timeline label: 'name = Type(inputs)'."""
    _, _, rest = label.partition(" = ")
    return rest.partition("(")[0]


class WorkloadGraph:
    """Variables holding a workload's inputs, and every variant's target.

    Variants of a clip workload: "inputs" (read and consume the inputs only),
    "ours:<op>" and "stock:<op>" for each op in OPS, and the control
    "control:global_norm" (stock TF again, a second copy). Of an unscale
    workload: "inputs" (which also reads the loss scale), OURS_UNSCALE,
    STOCK_UNSCALE, KERAS_UNSCALE (when Keras 3 imports) and CONTROL_UNSCALE.
    Both have PASSTHROUGH.
    """

    def __init__(self, workload, seed=0, config=None):
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

        self.workload = workload
        self.graph = tf.Graph()
        self.targets = {}  # variant -> the IdentityN op to run
        self.outputs = {}  # variant -> (list of output tensors, norm tensor)
        self.expected = {}  # variant -> {op type: min count that must run}
        self.variables = []  # the variables the inputs are read from, in order
        self.clip_norm = None  # of an unscale workload: a float
        # Keras' optimizer, made outside the graph (eagerly): only its
        # methods are called in the graph, which touch none of its variables.
        keras_optimizer = _keras_loss_scale_optimizer() if workload.kind == UNSCALE else None
        with self.graph.as_default():
            with tf.name_scope("inputs"):
                inputs, consumed, feed, self.norm = self._build_inputs(tf, workload, seed)
                self.loss_scale = None
                if workload.kind == UNSCALE:
                    # A variable, as a dynamic loss scale is; read by every run.
                    self.loss_scale = tf.compat.v1.Variable(
                        LOSS_SCALE, dtype=tf.float32, name="loss_scale", use_resource=True
                    ).value()
                    consumed = consumed + [self.loss_scale]
                self.variables = tf.compat.v1.global_variables()
                init = tf.compat.v1.global_variables_initializer()
            reads = workload.num_tensors + (workload.kind == UNSCALE)
            self._add(tf, INPUTS, consumed, None, {"ReadVariableOp": reads})
            self.session = tf.compat.v1.Session(graph=self.graph, config=config)
            self.session.run(init, feed_dict=feed)
            if workload.kind == UNSCALE:
                self._build_unscale(tf, inputs, keras_optimizer)
            else:
                self._build_clip(tf, inputs, consumed)
            with tf.name_scope("reference"):
                # Returns the inputs unchanged, as a clip that does not scale
                # does: what an op with these N outputs costs at the least.
                # Its extra output stands for the norm. (It repeats an input:
                # grappler folds constant inputs of an IdentityN away, and
                # then an IdentityN of one tensor.)
                values = [v.values if isinstance(v, tf.IndexedSlices) else v for v in inputs]
                passed = tf.identity_n(values + values[:1])
                outs = [
                    tf.IndexedSlices(o, v.indices, v.dense_shape)
                    if isinstance(v, tf.IndexedSlices)
                    else o
                    for v, o in zip(inputs, passed)
                ]
                self._add(
                    tf, PASSTHROUGH, _flatten(tf, outs) + [passed[-1]], None, {"IdentityN": 2}
                )
        self.graph.finalize()

    def _build_clip(self, tf, inputs, consumed):
        """The variants of a clip workload (OPS, stock TF and ours)."""
        from monolith_ops import clip_ops  # pylint: disable=import-outside-toplevel

        n = self.workload.num_tensors
        clip_norms = {"clip_scales": self.norm / 2, "clip_passes": self.norm * 2}

        def flatten(outs):
            return _flatten(tf, outs)

        # A list longer than clip_ops.PACK_ABOVE runs as packed ops.
        parts = len(clip_ops._parts(list(inputs)))  # noqa: WPS437
        reduce_kernels, clip_kernels = (
            ({"GlobalL2Reduce": 1}, {"MonolithClipByGlobalNormFused": 1})
            if parts == 1
            else ({"MonolithPackedL2Reduce": 1}, {"MonolithClipBySumOfSquares": parts})
        )
        with tf.name_scope("ours"):
            with tf.name_scope("global_norm"):
                norm = clip_ops.global_norm(inputs)
            self._add(tf, "ours:global_norm", consumed + [norm], norm, reduce_kernels)
            for op, clip_norm in clip_norms.items():
                with tf.name_scope(op):
                    outs, norm = clip_ops.clip_by_global_norm(inputs, clip_norm)
                self._add(tf, "ours:" + op, flatten(outs) + [norm], norm, clip_kernels, outs)
        with tf.name_scope("stock"):
            with tf.name_scope("global_norm"):
                norm = tf.linalg.global_norm(inputs)
            self._add(tf, "stock:global_norm", consumed + [norm], norm, {"L2Loss": n})
            for op, clip_norm in clip_norms.items():
                with tf.name_scope(op):
                    outs, norm = tf.clip_by_global_norm(inputs, clip_norm)
                self._add(
                    tf,
                    "stock:" + op,
                    flatten(outs) + [norm],
                    norm,
                    {"L2Loss": n, "Mul": n},
                    outs,
                )
        with tf.name_scope("control"):
            norm = tf.linalg.global_norm(inputs)
            self._add(tf, CONTROL, consumed + [norm], norm, {"L2Loss": n})

    def _build_unscale(self, tf, inputs, keras_optimizer):
        """The variants of an unscale workload: every one returns the N
        unscaled, clipped gradients and the all-finite flag (N + 1 tensors,
        as the inputs-only run consumes N inputs and the loss scale).
        `self.outputs` holds (clipped, finite flag)."""
        from monolith_ops import clip_ops  # pylint: disable=import-outside-toplevel

        n = self.workload.num_tensors
        scale = self.loss_scale
        # The norm of the unscaled gradients, and a clip_norm under it.
        self.clip_norm = self.norm / LOSS_SCALE / 2
        clip_norm = self.clip_norm

        def stock_sequence():
            # TF's own loss-scale optimizer's steps: multiply each gradient
            # by the inverse scale in its dtype, then one all-finite flag.
            inv = tf.math.reciprocal(scale)
            unscaled = [g * tf.cast(inv, g.dtype) for g in inputs]
            finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in unscaled])
            clipped, _ = tf.clip_by_global_norm(unscaled, clip_norm)
            return clipped, finite

        stock_kernels = {"L2Loss": n, "Mul": 2 * n, "IsFinite": n}
        with tf.name_scope("ours"):
            clipped, norm = clip_ops.clip_by_global_norm(
                inputs, clip_norm, inverse_scale=tf.math.reciprocal(scale)
            )
            finite = tf.math.is_finite(norm)
            self._add(
                tf, OURS_UNSCALE, clipped + [finite], finite, {OURS_UNSCALE_KERNEL: 1}, clipped
            )
        with tf.name_scope("stock"):
            clipped, finite = stock_sequence()
            self._add(tf, STOCK_UNSCALE, clipped + [finite], finite, stock_kernels, clipped)
        with tf.name_scope("control"):
            clipped, finite = stock_sequence()
            self._add(tf, CONTROL_UNSCALE, clipped + [finite], finite, stock_kernels, clipped)
        if keras_optimizer is not None:
            import keras  # pylint: disable=import-outside-toplevel

            keras_optimizer.inner_optimizer.global_clipnorm = clip_norm
            with tf.name_scope("keras"):
                # LossScaleOptimizer.apply: check_finite(grads); when finite,
                # unscale (its _stateful_handle_finite_grads divides each
                # gradient by its dynamic_scale variable, a float32) and the
                # inner optimizer's apply, whose first step on the gradients
                # is _clip_gradients (global_clipnorm: Keras'
                # clip_by_global_norm). The cond and the update are not timed.
                finite = keras_optimizer.check_finite(inputs)
                unscaled = [keras.ops.divide(g, scale) for g in inputs]
                clipped = keras_optimizer.inner_optimizer._clip_gradients(unscaled)  # noqa: WPS437
                self._add(
                    tf,
                    KERAS_UNSCALE,
                    list(clipped) + [finite],
                    finite,
                    {"Square": n, "IsFinite": n, "RealDiv": n, "Mul": n},
                    list(clipped),
                )

    @staticmethod
    def _build_inputs(tf, workload, seed):
        """Variables holding the inputs, initialized from numpy values.

        Returns:
          (inputs as given to the ops, the tensors the inputs-only run
          consumes, the initializers' feed dict, the values' norm (of the
          values as rounded to the workload's dtype)).
        """
        rng = np.random.default_rng(seed)
        sizes = (
            [workload.num_elements]
            if workload.sparse
            else [int(np.prod(s, dtype=np.int64)) for s in workload.shapes]
        )
        values = rng.standard_normal(sum(sizes), dtype=np.float32)
        dtype = tf.as_dtype(workload.dtype)
        rounded = values.astype(dtype.as_numpy_dtype).astype(np.float64)
        norm = float(np.sqrt(np.sum(np.square(rounded))))
        feed = tf.compat.v1.placeholder(tf.float32, [len(values)], name="initial_values")
        pieces = tf.split(feed, sizes) if len(sizes) > 1 else [feed]
        if workload.sparse:
            rows, width, table_rows = workload.sparse
            var = tf.compat.v1.Variable(
                tf.reshape(pieces[0], [rows, width]),
                name="embedding_grad_values",
                use_resource=True,
            )
            picked = rng.choice(table_rows, rows, replace=False)
            indices = tf.constant(np.sort(picked).astype(np.int64))
            grad = tf.IndexedSlices(
                var.value(), indices, tf.constant([table_rows, width], tf.int64)
            )
            inputs, consumed = [grad], [grad.values, indices]
        else:
            inputs = []
            for i, (shape, piece) in enumerate(zip(workload.shapes, pieces)):
                var = tf.compat.v1.Variable(
                    tf.cast(tf.reshape(piece, shape), dtype), name=f"grad_{i}", use_resource=True
                )
                inputs.append(var.value())
            consumed = list(inputs)
        return inputs, consumed, {feed: values}, norm

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

        options = tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE)
        metadata = tf.compat.v1.RunMetadata()
        self.session.run(self.targets[variant], options=options, run_metadata=metadata)
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
                    "work, so the timing would measure nothing"
                )
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
# Summaries.


# The floor's memories (compiled_floor.MEMORY), and the prefix of their keys
# in a floor summary and a row: the floor on tensor pages is the floor.
FLOOR_MEMORY = {compiled_floor.TENSOR_PAGES: "", compiled_floor.HUGE_PAGES: "huge_"}
# The parts of each op's floor: a read, or a read and then a read+write.
FLOOR_PARTS = {
    "global_norm": ("read",),
    "clip_scales": ("read", "write"),
    "clip_passes": ("read",),
    "unscale_tf": ("read", "write"),
    "unscale_keras": ("read", "write"),
}


def floor_summary(workload, times):
    """The compiled floor of one workload from round-robin `times`.

    In each memory, the read floor is the fastest (median) of the reading
    loops, the read+write floor the fastest of the scaling loops, each over
    1 thread and the benchmark's thread count. The loops run over float32
    buffers of the workload's bytes (workload.floor_floats). Keys: read_*
    and write_* on tensor pages, huge_read_* and huge_write_* on huge pages.
    """
    ms = 1e3
    loops = {}
    for variant in times:
        if not variant.startswith("floor:"):
            continue
        memory, loop, threads = compiled_floor.parse_variant(variant)
        med, iqr = stats(times[variant])
        loops[variant] = {
            "memory": memory,
            "loop": loop,
            "threads": threads,
            "ms": med * ms,
            "iqr_ms": iqr * ms,
        }

    nbytes = workload.nbytes
    summary = {"workload": workload.name, "bytes": nbytes}
    for memory, prefix in FLOOR_MEMORY.items():
        for part, names, moved in (
            ("read", compiled_floor.READ_LOOPS, nbytes),
            ("write", compiled_floor.WRITE_LOOPS, 2 * nbytes),
        ):
            best = min(
                (v for v in loops.values() if v["memory"] == memory and v["loop"] in names),
                key=lambda v: v["ms"],
            )
            summary[f"{prefix}{part}_ms"] = best["ms"]
            summary[f"{prefix}{part}_by"] = f"{best['loop']}:{best['threads']}"
            summary[f"{prefix}{part}_GBps"] = moved / best["ms"] / 1e6
    summary["loops"] = loops
    return summary


def _op_row(workload, op, ours, ours_iqr, stock, stock_iqr, nbytes, floor):
    """One row of the table: times in seconds, nbytes the bytes the op must
    move, floor the workload's floor_summary."""
    ms = 1e3
    row = {
        "workload": workload.name,
        "workload_title": workload.title,
        "op": op,
        "dtype": workload.dtype,
        "tensors": workload.num_tensors,
        "elements": workload.num_elements,
        "bytes": nbytes,
        "ours_ms": ours * ms,
        "ours_iqr_ms": ours_iqr * ms,
        "stock_ms": stock * ms,
        "stock_iqr_ms": stock_iqr * ms,
        "speedup": ratio(stock, ours),
        "ours_GBps": nbytes / ours / 1e9 if ours > 0 else float("nan"),
        "stock_GBps": nbytes / stock / 1e9 if stock > 0 else float("nan"),
    }
    for prefix in FLOOR_MEMORY.values():
        floor_ms = sum(floor[f"{prefix}{part}_ms"] for part in FLOOR_PARTS[op])
        row[f"{prefix}floor_ms"] = floor_ms
        row[f"ours_{prefix}floor_fraction"] = ratio(floor_ms, ours * ms)
        row[f"stock_{prefix}floor_fraction"] = ratio(floor_ms, stock * ms)
    return row


def summarize(workload, times):
    """Rows of results for one workload, from round-robin `times` (seconds):
    (rows, floor, control, inputs-only).

    An unscale workload's rows: ours against stock TF's sequence
    ("unscale_tf") and against Keras' ("unscale_keras", when it ran), each
    in the `stock_*` fields (`baseline` names it); bytes: a read, then a
    read and a write of the gradients; floor: the read floor plus the
    read+write floor.
    """
    n = workload.num_elements
    ms = 1e3

    def own(variant, baseline=INPUTS):
        return stats(own_times(times, variant, baseline))

    floor = floor_summary(workload, times)
    passthrough, passthrough_iqr = own(PASSTHROUGH)
    floor["passthrough_ms"] = passthrough * ms
    floor["passthrough_iqr_ms"] = passthrough_iqr * ms
    rows = []
    if workload.kind == UNSCALE:
        ours, ours_iqr = own(OURS_UNSCALE)
        for op in UNSCALE_OPS:
            baseline, name = UNSCALE_BASELINES[op]
            if baseline not in times:
                continue
            stock, stock_iqr = own(baseline)
            row = _op_row(
                workload, op, ours, ours_iqr, stock, stock_iqr, 3 * workload.nbytes, floor
            )
            row["baseline"] = name
            rows.append(row)
        control_variants = (STOCK_UNSCALE, CONTROL_UNSCALE)
        control_op = "unscale+check+clip (stock TF vs stock TF)"
    else:
        for op in OPS:
            ours, ours_iqr = own("ours:" + op)
            stock, stock_iqr = own("stock:" + op)
            nbytes = OP_BYTES_PER_ELEMENT[op] * n
            rows.append(_op_row(workload, op, ours, ours_iqr, stock, stock_iqr, nbytes, floor))
        control_variants = ("stock:global_norm", CONTROL)
        control_op = "global_norm (stock vs stock)"
    control_a, control_a_iqr = own(control_variants[0])
    control_b, control_b_iqr = own(control_variants[1])
    control = {
        "workload": workload.name,
        "op": control_op,
        "a_ms": control_a * ms,
        "a_iqr_ms": control_a_iqr * ms,
        "b_ms": control_b * ms,
        "b_iqr_ms": control_b_iqr * ms,
        "ratio": ratio(control_a, control_b),
    }
    inputs_ms, inputs_iqr = stats(times[INPUTS])
    return (
        rows,
        floor,
        control,
        {
            "workload": workload.name,
            "inputs_only_ms": inputs_ms * ms,
            "inputs_only_iqr_ms": inputs_iqr * ms,
        },
    )


# --------------------------------------------------------------------------
# Targets.


def _row(rows, workload, op):
    for row in rows:
        if row["workload"] == workload and row["op"] == op:
            return row
    return None


FLOOR_TARGET = 0.85  # of the compiled floor
SPEEDUP_TARGET_1000X100 = 10.0


def check_targets(rows, floors=(), steps=()):
    """The benchmark's targets, each with the measured value and a verdict.

    * dense53 global_norm at least 85% of the compiled read floor;
    * dense53 clip that scales at least 85% of its compiled floor (a read,
      then a read+write);
      both on tensor pages (the rows' ours_floor_fraction), with the
      fraction of the floor on huge pages beside them (`huge_value`);
    * no op on any workload, and no whole training step, slower than stock
      (stock/ours >= 1.0; the slowest is named);
    * 1000x100 global_norm at least 10x faster than stock; its `bound` is
      stock's time over the read floor, the speed-up of an op at the floor.

    `floors` is accepted for the callers' convenience and not used.
    """
    del floors
    targets = []

    def add(text, value, limit, unit="x", bound=None, bound_text="", huge_value=None):
        if value is None:
            return
        met = value >= limit and value == value  # NaN is never met
        targets.append(
            {
                "target": text,
                "value": value,
                "limit": limit,
                "unit": unit,
                "met": bool(met),
                "bound": bound,
                "bound_text": bound_text,
                "huge_value": huge_value,
            }
        )

    row = _row(rows, "dense53", "global_norm")
    if row:
        add(
            f"global_norm on the dense shapes >= {FLOOR_TARGET:.0%} of the compiled read floor",
            row["ours_floor_fraction"],
            FLOOR_TARGET,
            unit="of floor",
            huge_value=row["ours_huge_floor_fraction"],
        )
    row = _row(rows, "dense53", "clip_scales")
    if row:
        add(
            f"a clip that scales on the dense shapes >= {FLOOR_TARGET:.0%} "
            "of the compiled read + read+write floor",
            row["ours_floor_fraction"],
            FLOOR_TARGET,
            unit="of floor",
            huge_value=row["ours_huge_floor_fraction"],
        )
    compared = [(f"{r['workload']} {r['op']}", r["speedup"]) for r in rows]
    compared += [(f"{s['workload']} training step", s["speedup"]) for s in steps]
    if compared:
        # NaN sorts as the slowest: it cannot be shown to be at par.
        name, value = min(compared, key=lambda c: (c[1] == c[1], c[1]))
        add(f"no op or training step slower than stock (slowest: {name})", value, 1.0)
    row = _row(rows, "1000x100", "global_norm")
    if row:
        bound = None
        if "stock_ms" in row and "floor_ms" in row:
            bound = ratio(row["stock_ms"], row["floor_ms"])
        add(
            f"global_norm on 1,000 x 100 floats >= {SPEEDUP_TARGET_1000X100:g}x faster than stock",
            row["speedup"],
            SPEEDUP_TARGET_1000X100,
            bound=bound,
            bound_text="at the read floor",
        )
    return targets


# --------------------------------------------------------------------------
# Output: table, JSON, chart.


def _fmt(value, spec):
    return "n/a" if value != value else format(value, spec)


def format_table(rows, floors, controls, baselines):
    lines = []
    header = (
        f"{'workload':<12} {'op':<13} {'ours ms':>9} {'(IQR)':>8} "
        f"{'stock ms':>9} {'(IQR)':>8} {'stock/ours':>10} "
        f"{'ours GB/s':>9} {'floor ms':>9} {'% of floor':>10} {'huge ms':>9} {'% of huge':>9}"
    )
    lines.append(header)
    lines.append("-" * len(header))
    for r in rows:
        lines.append(
            f"{r['workload']:<12} {r['op']:<13} {_fmt(r['ours_ms'], '9.3f')} "
            f"{_fmt(r['ours_iqr_ms'], '8.3f')} {_fmt(r['stock_ms'], '9.3f')} "
            f"{_fmt(r['stock_iqr_ms'], '8.3f')} {_fmt(r['speedup'], '10.2f'):>10} "
            f"{_fmt(r['ours_GBps'], '9.1f'):>9} {_fmt(r['floor_ms'], '9.3f')} "
            f"{_fmt(100 * r['ours_floor_fraction'], '9.0f') + '%':>10} "
            f"{_fmt(r['huge_floor_ms'], '9.3f')} "
            f"{_fmt(100 * r['ours_huge_floor_fraction'], '8.0f') + '%':>9}"
        )
    lines.append("")
    lines.append(
        "% of floor: the compiled floor's time over ours (100% = at "
        "the floor), on tensor pages (buffers allocated as TensorFlow "
        "allocates its tensors: the memory the op reads); % of huge: the "
        "same with the floor on huge pages. Floor of global_norm and of a "
        "clip that does not scale: a read; of a clip that scales: a read, "
        "then a read+write."
    )
    if any(r["op"] in UNSCALE_OPS for r in rows):
        lines.append(
            "unscale_*: loss-scaled gradients unscaled, checked for inf/NaN and "
            "clipped; ours: clip_by_global_norm(inverse_scale=) and "
            "is_finite(norm); 'stock' is stock TF's sequence (unscale_tf) or "
            "Keras 3's (unscale_keras: LossScaleOptimizer's check_finite and "
            "unscaling, the inner optimizer's global_clipnorm clip); floor: a "
            "read, then a read+write of the gradients' bytes."
        )
    lines.append("")
    lines.append("Control, stock TF on both sides (should be ~1.0):")
    for c in controls:
        lines.append(
            f"  {c['workload']:<12} {c['a_ms']:.3f} ms vs "
            f"{c['b_ms']:.3f} ms: ratio {_fmt(c['ratio'], '.2f')}"
        )
    lines.append("")
    lines.append(
        "Compiled floor (fastest loop, loop:threads) on tensor pages and on "
        "huge pages, and the inputs-only run subtracted from every op:"
    )
    for f, b in zip(floors, baselines):
        lines.append(
            f"  {f['workload']:<12} {f['bytes'] / 1e6:8.1f} MB; "
            f"inputs-only {b['inputs_only_ms']:.3f} ms"
        )
        for memory, prefix in FLOOR_MEMORY.items():
            f64 = [
                v
                for v in f.get("loops", {}).values()
                if v["loop"] == "sumsq_f64" and v["memory"] == memory
            ]
            extra = ""
            if f64:
                best = min(f64, key=lambda v: v["ms"])
                extra = f"; sum of squares in double {best['ms']:.3f} ms ({best['threads']} thr)"
            lines.append(
                f"    {memory + ' pages:':<13} read {f[prefix + 'read_ms']:.3f} ms "
                f"({f[prefix + 'read_GBps']:.1f} GB/s, {f[prefix + 'read_by']}), "
                f"read+write {f[prefix + 'write_ms']:.3f} ms "
                f"({f[prefix + 'write_GBps']:.1f} GB/s, {f[prefix + 'write_by']}){extra}"
            )
    lines.append("")
    lines.append(
        "Returning the same N tensors unchanged (tf.identity_n), the "
        "least an op with N outputs costs:"
    )
    for f in floors:
        lines.append(
            f"  {f['workload']:<12} {_fmt(f['passthrough_ms'], '.3f')} "
            f"ms (IQR {_fmt(f['passthrough_iqr_ms'], '.3f')})"
        )
    return "\n".join(lines)


def format_steps(rows):
    """The whole training steps: stock's clip against ours, per step."""
    lines = [
        ("Whole training steps (ms per step, median and IQR; nothing subtracted):"),
        (
            f"  {'step':<8} {'stock ms':>9} {'(IQR)':>8} {'ours ms':>9} "
            f"{'(IQR)':>8} {'stock/ours':>10} {'stock-ours':>10} "
            f"{'control':>7}"
        ),
    ]
    for r in rows:
        lines.append(
            f"  {r['workload']:<8} {_fmt(r['stock_ms'], '9.3f')} "
            f"{_fmt(r['stock_iqr_ms'], '8.3f')} {_fmt(r['ours_ms'], '9.3f')} "
            f"{_fmt(r['ours_iqr_ms'], '8.3f')} {_fmt(r['speedup'], '10.2f')} "
            f"{_fmt(r['stock_minus_ours_ms'], '10.3f')} "
            f"{_fmt(r['control_ratio'], '7.2f')}"
        )
    for r in rows:
        lines.append(
            f"  {r['workload']}: {r['title']}; "
            f"{r['trainable_variables']} variables, "
            f"{r['parameters']:,} floats, {r['optimizer']}, "
            f"clip_norm {r['clip_norm']:.4g} ({r['clip_fraction']:g} "
            "x the initial gradient norm)"
        )
    lines.append("  control: stock's clip against a second copy of itself (should be ~1.0)")
    return "\n".join(lines)


def format_targets(targets):
    lines = ["Targets:"]
    for t in targets:
        unit = t["unit"]
        if unit == "of floor":
            value = f"{_fmt(100 * t['value'], '.0f')}% of the floor on tensor pages"
            limit = f"{100 * t['limit']:g}%"
        else:
            value = f"{_fmt(t['value'], '.2f')} {unit}"
            limit = f"{t['limit']:g}"
        line = f"  [{'met' if t['met'] else 'MISSED':>6}] {t['target']}: {value} (limit {limit})"
        if t.get("huge_value") is not None:
            line += f"; {_fmt(100 * t['huge_value'], '.0f')}% of the floor on huge pages"
        if t.get("bound") is not None:
            line += f"; {t['bound_text']}: {_fmt(t['bound'], '.2f')} {unit}"
        lines.append(line)
    return "\n".join(lines)


KERAS_COLOR = "#ff7f0e"


def write_chart(path, rows, controls):
    """A bar chart of ms per op: the compiled floor on huge pages and on
    tensor pages, ours and stock, one panel per workload."""
    import matplotlib  # pylint: disable=import-outside-toplevel

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    names = list(dict.fromkeys(r["workload"] for r in rows))
    cols = min(2, len(names))
    nrows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(6.5 * cols, 4.2 * nrows), squeeze=False)
    control_of = {c["workload"]: c for c in controls}
    width = 0.2
    for ax, name in zip(axes.flat, names):
        wrows = [r for r in rows if r["workload"] == name]
        x = np.arange(len(wrows))
        # An unscale workload's "stock" bars are stock TF's sequence and
        # Keras' (in its own colour).
        series = [
            ("floor, huge pages", "huge_floor_ms", None, "#cccccc"),
            ("floor, tensor pages", "floor_ms", None, "#999999"),
            ("monolith_ops", "ours_ms", "ours_iqr_ms", "#1f77b4"),
            (
                "stock TF",
                "stock_ms",
                "stock_iqr_ms",
                [KERAS_COLOR if r.get("baseline") == "Keras 3" else "#d62728" for r in wrows],
            ),
        ]
        for k, (label, key, iqr, color) in enumerate(series):
            vals = [max(r[key], 1e-4) if r[key] == r[key] else 0 for r in wrows]
            errs = None
            if iqr:  # whiskers: the interquartile range, centred on the median
                errs = [
                    [min(r[iqr] / 2, v * 0.999) for r, v in zip(wrows, vals)],
                    [r[iqr] / 2 for r in wrows],
                ]
            ax.bar(
                x + (k - 1.5) * width,
                vals,
                width,
                label=label,
                color=color,
                yerr=errs,
                error_kw={"elinewidth": 0.8, "capsize": 2},
            )
        for i, r in enumerate(wrows):
            if r["speedup"] == r["speedup"]:
                top = max(
                    r["ours_ms"] + r["ours_iqr_ms"] / 2, r["stock_ms"] + r["stock_iqr_ms"] / 2
                )
                ax.annotate(
                    f"{r['speedup']:.1f}x", (x[i], top * 1.08), ha="center", va="bottom", fontsize=8
                )
        ax.set_xticks(x)
        ax.set_xticklabels([OP_TITLES[r["op"]] for r in wrows], fontsize=8)
        ax.set_ylabel("ms (median, own time)")
        ax.set_yscale("log")
        title = wrows[0]["workload_title"]
        if name in control_of:
            title += f"\ncontrol stock/stock = {control_of[name]['ratio']:.2f}"
        ax.set_title(title, fontsize=9)
        ax.margins(y=0.25)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if any(r.get("baseline") == "Keras 3" for r in rows):
        from matplotlib.patches import Patch  # pylint: disable=import-outside-toplevel

        handles.append(Patch(color=KERAS_COLOR))
        labels.append("Keras 3 (unscale_keras)")
    axes.flat[0].legend(handles, labels, fontsize=8)
    fig.suptitle(
        "Global-norm clipping on CPU: each op's own time, median "
        "(whiskers: IQR; labels: stock TF's (or Keras') time / ours)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# Environment variables that change what the timings mean, recorded with them.
_TIMING_ENV = (
    "TF_CPU_ALLOCATOR_USE_BFC",
    "TF_CPU_BFC_MEM_LIMIT_IN_MB",
    "TF_ENABLE_ONEDNN_OPTS",
    "TF_NUM_INTEROP_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "OMP_NUM_THREADS",
    "MALLOC_ARENA_MAX",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "CUDA_VISIBLE_DEVICES",
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
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "load_average": _load_average(),
        "environment": env,
        "transparent_hugepage": transparent_hugepage(),
    }


THP_ENABLED = "/sys/kernel/mm/transparent_hugepage/enabled"


def transparent_hugepage(path=THP_ENABLED):
    """The kernel's transparent huge page mode ("always", "madvise" or
    "never"), None where it cannot be read: with "always", the floor's two
    memories are both huge pages."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    start, end = text.find("["), text.find("]")
    return text[start + 1 : end] if 0 <= start < end else None


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


def default_threads():
    """The CPUs this process may run on: TensorFlow's default intra-op
    thread count, and the floor's."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def run_workload(workload, rounds, warmup, seed=0, log=None, hot=True, threads=None):
    """Builds, checks and times one workload.

    Returns:
      (summarize()'s tuple, {variant: per-round times in ms}).
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    log = log or (lambda msg: None)
    threads = threads or default_threads()
    start = time.perf_counter()
    config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=threads)
    bench = WorkloadGraph(workload, seed=seed, config=config)
    floor = None
    try:
        floor = compiled_floor.CompiledFloor(workload.floor_floats, threads)
        for variant in bench.targets:
            bench.check_executed(variant)
        fns = {v: bench.callable(v) for v in bench.targets}
        fns.update(floor.callables())
        log(
            f"  built and checked in {time.perf_counter() - start:.1f} s; "
            f"{len(fns)} variants x {rounds} rounds"
        )
        times = time_round_robin(
            fns, rounds, warmup, seed=seed, progress=_round_logger(log, start), hot=hot
        )
    finally:
        if floor is not None:
            floor.close()
        bench.close()
    return summarize(workload, times), _raw_ms(times)


def make_step(name, seed=0, threads=None, **model_args):
    """The step workload `name` (steps.STEP_WORKLOADS)."""
    if name == steps.RECSYS:
        return steps.RecsysStep(seed=seed, threads=threads, **model_args)
    if name == steps.KERAS:
        return steps.KerasStep(seed=seed, **model_args)
    raise ValueError(f"no step workload {name!r}")


def run_step(name, rounds, warmup, seed=0, log=None, hot=True, threads=None, **model_args):
    """Builds, checks and times one whole-step workload (steps.py).

    Returns:
      (its row, {variant: per-round times in ms}).
    """
    log = log or (lambda msg: None)
    start = time.perf_counter()
    step = make_step(name, seed=seed, threads=threads, **model_args)
    _, ours_v, _ = steps.variants(name)
    try:
        check = step.check()
        fns = step.callables()
        log(
            f"  built and checked in {time.perf_counter() - start:.1f} s "
            f"(updates of one step: ours within "
            f"{check['relative_difference'][ours_v]:.1e} of stock's); "
            f"{len(fns)} variants x {rounds} rounds"
        )
        times = time_round_robin(
            fns, rounds, warmup, seed=seed, progress=_round_logger(log, start), hot=hot
        )
        row = step.summarize(times)
        row["check"] = check
        row["grad_norm_end"] = {v: step.grad_norm(v) for v in fns}
    finally:
        step.close()
    log(
        f"  one step: stock {row['stock_ms']:.2f} ms, ours "
        f"{row['ours_ms']:.2f} ms: stock/ours {_fmt(row['speedup'], '.2f')} "
        f"(control {_fmt(row['control_ratio'], '.2f')})"
    )
    if min(row["grad_norm_end"].values()) <= row["clip_norm"]:
        log(
            "  note: the gradient's norm fell to clip_norm during the run; "
            "the last steps did not scale"
        )
    return row, _raw_ms(times)


def run(
    workloads, rounds=None, warmup=3, seed=0, log=None, hot=True, steps_to_run=(), threads=None
):
    """Runs the benchmark. Returns a dict with rows, floors, controls,
    targets and the whole-step rows (`steps`, by name).

    Args:
      workloads: list of Workload.
      rounds: None (each workload's default, steps.STEP_ROUNDS for the
        steps) or the number of rounds for all.
      warmup: untimed runs of every variant before timing.
      log: None or callable(str) for progress lines.
      hot: time each run right after an untimed run of the same variant.
      steps_to_run: names of step workloads (steps.STEP_WORKLOADS), or a
        dict {name: model arguments} (a different model).
      threads: TensorFlow's intra-op threads and the floor's (default: the
        CPUs this process may use).
    """
    log = log or (lambda msg: None)
    threads = threads or default_threads()
    if not isinstance(steps_to_run, dict):
        steps_to_run = {name: {} for name in steps_to_run}
    rows, floors, controls, baselines, raw = [], [], [], [], {}
    load = _load_average()
    if load and load[0] > (os.cpu_count() or 1):
        log(
            f"note: the machine is busy (load average {load[0]:.1f} on "
            f"{os.cpu_count()} cores); expect noisy timings"
        )
    start = time.perf_counter()
    total = len(workloads) + len(steps_to_run)
    for i, workload in enumerate(workloads):
        n_rounds = rounds or workload.rounds
        values = "floats" if workload.dtype == "float32" else f"{workload.dtype} values"
        log(
            f"[{i + 1}/{total}] {workload.title}: "
            f"{workload.num_tensors} tensors, {workload.num_elements:,} {values}"
        )
        (w_rows, w_floor, w_control, w_base), raw[workload.name] = run_workload(
            workload, n_rounds, warmup, seed=seed, log=log, hot=hot, threads=threads
        )
        rows += w_rows
        floors.append(w_floor)
        controls.append(w_control)
        baselines.append(w_base)
    step_rows = {}
    for i, (name, model_args) in enumerate(steps_to_run.items()):
        log(f"[{len(workloads) + i + 1}/{total}] training step: {steps.STEP_TITLES[name]}")
        step_rows[name], raw[name] = run_step(
            name,
            rounds or steps.STEP_ROUNDS[name],
            warmup,
            seed=seed,
            log=log,
            hot=hot,
            threads=threads,
            **model_args,
        )
    return {
        "rows": rows,
        "floors": floors,
        "controls": controls,
        "inputs_only": baselines,
        "targets": check_targets(rows, floors, list(step_rows.values())),
        "steps": step_rows,
        "threads": threads,
        "seconds": time.perf_counter() - start,
        "load_average_at_start": load,
        "raw_ms": raw,
    }


COMMAND = "python benchmarks/run.py"
ALL_WORKLOADS = [w.name for w in default_workloads()] + list(steps.STEP_WORKLOADS)


def _parse_args(argv):
    parser = argparse.ArgumentParser(
        prog=COMMAND,
        description="Times monolith_ops' global_norm and clip_by_global_norm "
        "against stock TensorFlow and this machine's compiled floor on CPU, "
        "and whole training steps clipped by each; writes a table, JSON and "
        "a PNG chart.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="5 rounds and 1 warm-up run per workload: a quick try, too noisy to quote",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="timed rounds per workload (default: 20 to 300, by workload size)",
    )
    parser.add_argument(
        "--warmup", type=int, default=3, help="untimed runs of every variant first (default 3)"
    )
    parser.add_argument(
        "--workloads",
        nargs="+",
        default=None,
        choices=ALL_WORKLOADS,
        help="run only these workloads (default: all); "
        f"'{steps.RECSYS}' and '{steps.KERAS}' are whole "
        "training steps (the recommendation demo's model; a "
        "Keras 3 transformer-like model)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="TensorFlow's intra-op threads and the floor's "
        f"(default: the CPUs this process may use, here "
        f"{default_threads()})",
    )
    parser.add_argument(
        "--shapes",
        default=None,
        help="JSON file of dense shapes ({'shapes': [...]}) to "
        "use instead of the built-in 53 shapes",
    )
    parser.add_argument(
        "--out",
        default=DEFAULT_OUT,
        help="folder for benchmark.json and benchmark.png (default: the repository's docs/)",
    )
    parser.add_argument(
        "--cold",
        action="store_true",
        help="time each run straight after the previous "
        "variant's, not after an untimed run of its own: data "
        "that would fit in cache is then mostly not there",
    )
    parser.add_argument("--no-chart", action="store_true", help="do not write the PNG chart")
    parser.add_argument(
        "--scale",
        type=int,
        default=1,
        help="divide every tensor's element count by this "
        "(a smoke test of the machinery; default 1; not the "
        "training steps')",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be >= 1")
    if args.scale < 1:
        parser.error("--scale must be >= 1")
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be >= 1")
    return args


def _set_eager_threads(threads):
    """TensorFlow's eager intra-op threads (the Keras step's), if it is not
    started yet; returns whether they are now `threads`."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError:  # the eager context is already initialized
        pass
    current = tf.config.threading.get_intra_op_parallelism_threads()
    # 0: TensorFlow's default, one thread per CPU it may use.
    return current == threads or (current == 0 and threads == default_threads())


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    shapes = load_shapes(args.shapes) if args.shapes else DENSE_SHAPES
    workloads = default_workloads(shapes)
    names = args.workloads or ALL_WORKLOADS
    workloads = [w for w in workloads if w.name in names]
    if args.scale > 1:
        workloads = [w.scaled(args.scale) for w in workloads]
    step_names = [n for n in steps.STEP_WORKLOADS if n in names]
    missing = steps.keras3_missing() if steps.KERAS in step_names else None
    if missing and args.workloads:
        log(f"error: the {steps.KERAS} workload cannot run: {missing}")
        return 2
    if missing:
        log(f"note: the {steps.KERAS} workload is skipped: {missing}")
        step_names.remove(steps.KERAS)
    threads = args.threads or default_threads()
    if steps.KERAS in step_names and not _set_eager_threads(threads):
        log(
            f"note: TensorFlow was started before --threads; the "
            f"{steps.KERAS} step runs on its default threads"
        )
    rounds, warmup = args.rounds, args.warmup
    if args.quick:
        rounds, warmup = rounds or 5, min(warmup, 1)
    result = run(
        workloads,
        rounds=rounds,
        warmup=warmup,
        seed=args.seed,
        log=log,
        hot=not args.cold,
        steps_to_run=step_names,
        threads=threads,
    )
    result["command"] = " ".join([COMMAND] + argv)
    default_rounds = {w.name: w.rounds for w in workloads}
    default_rounds.update({n: steps.STEP_ROUNDS[n] for n in step_names})
    result["settings"] = {
        "rounds": rounds or default_rounds,
        "warmup": warmup,
        "seed": args.seed,
        "quick": args.quick,
        "scale": args.scale,
        "threads": threads,
        "cache": "cold" if args.cold else "hot",
    }
    result["machine"] = machine_info()
    result["floor_build"] = {
        "compiler": compiled_floor.compiler(),
        "flags": compiled_floor.flags(),
        "source": "benchmarks/floor.cc",
    }
    if result["rows"]:
        print(
            format_table(
                result["rows"], result["floors"], result["controls"], result["inputs_only"]
            )
        )
    if result["steps"]:
        if result["rows"]:
            print()
        print(format_steps(list(result["steps"].values())))
    if result["targets"]:
        print()
        print(format_targets(result["targets"]))
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
