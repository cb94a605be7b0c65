# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""Our ops on a long list, packed and as one op (clip_ops.PACK_ABOVE).

    python benchmarks/pack_ab.py                     # 1000x100, timed
    python benchmarks/pack_ab.py --build 1000 4000   # graph build times

Timed: the workload built twice in one process, once packed (PACK_ABOVE set
to CHUNK_SIZE: parts of CHUNK_SIZE tensors past that many) and once as one
op (PACK_ABOVE above the list's length: one GlobalL2Reduce or
MonolithClipByGlobalNormFused),
every variant of both run round-robin as run.py does (own time: a run less
the inputs-only run of its graph in the same round), `--repeats` times.

--build N...: for N tensors of 100 floats, the seconds of the first run
(graph optimization included) of the norm and of the clip, packed and as one
op, and the median of 200 runs of the norm (variable reads included).
"""

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import run as bench  # noqa: E402  pylint: disable=wrong-import-position
from timing import own_times, stats, time_round_robin  # noqa: E402

VARIANTS = ("ours:global_norm", "stock:global_norm", "ours:clip_passes", "ours:clip_scales")


def forms(clip_ops):
    """(form, PACK_ABOVE) of the two forms compared."""
    return (("packed", clip_ops.CHUNK_SIZE), ("one op", 1 << 30))


def timed(workload, rounds, repeats, threads):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from monolith_ops import clip_ops  # pylint: disable=import-outside-toplevel

    config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=threads)
    default = clip_ops.PACK_ABOVE
    graphs = {}
    try:
        for form, pack_above in forms(clip_ops):
            clip_ops.PACK_ABOVE = pack_above
            graphs[form] = bench.WorkloadGraph(workload, config=config)
    finally:
        clip_ops.PACK_ABOVE = default
    fns = {
        f"{form}/{v}": g.callable(v)
        for form, g in graphs.items()
        for v in VARIANTS + (bench.INPUTS,)
    }
    for repeat in range(repeats):
        times = time_round_robin(fns, rounds, 3, seed=repeat)
        for form in graphs:
            cells = []
            for v in VARIANTS:
                med, iqr = stats(own_times(times, f"{form}/{v}", f"{form}/{bench.INPUTS}"))
                cells.append(f"{v} {med * 1e3:.3f} ({iqr * 1e3:.3f})")
            med, iqr = stats(times[f"{form}/{bench.INPUTS}"])
            cells.append(f"inputs {med * 1e3:.3f} ({iqr * 1e3:.3f})")
            print(f"repeat {repeat + 1}, {form:>6}: ms (IQR): " + "; ".join(cells), flush=True)
    for g in graphs.values():
        g.close()


def build_times(sizes, threads):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from monolith_ops import clip_ops  # pylint: disable=import-outside-toplevel

    default = clip_ops.PACK_ABOVE
    for n in sizes:
        for form, pack_above in forms(clip_ops):
            clip_ops.PACK_ABOVE = pack_above
            graph = tf.Graph()
            with graph.as_default():
                xs = [
                    tf.compat.v1.Variable(np.ones(100, np.float32), use_resource=True).value()
                    for _ in range(n)
                ]
                norm = clip_ops.global_norm(xs)
                outs, clip_norm = clip_ops.clip_by_global_norm(xs, 1.0)
                sink = tf.raw_ops.IdentityN(input=outs + [clip_norm, norm])
                init = tf.compat.v1.global_variables_initializer()
            clip_ops.PACK_ABOVE = default
            session = tf.compat.v1.Session(
                graph=graph, config=tf.compat.v1.ConfigProto(intra_op_parallelism_threads=threads)
            )
            session.run(init)
            start = time.perf_counter()
            session.run(norm)
            first_norm = time.perf_counter() - start
            start = time.perf_counter()
            session.run(sink[0].op)
            first_clip = time.perf_counter() - start
            runs = []
            for _ in range(200):
                start = time.perf_counter()
                session.run(norm)
                runs.append(time.perf_counter() - start)
            print(
                f"{n} tensors, {form}: first run of the norm {first_norm:.2f} s,"
                f" of the clip {first_clip:.2f} s; norm runs, median "
                f"{np.median(runs) * 1e3:.3f} ms",
                flush=True,
            )
            session.close()


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python benchmarks/pack_ab.py", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--rounds", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--build",
        type=int,
        nargs="+",
        default=None,
        help="graph build times for these list lengths",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    threads = args.threads or bench.default_threads()
    if args.build:
        build_times(args.build, threads)
    else:
        workload = {w.name: w for w in bench.default_workloads()}["1000x100"]
        timed(workload, args.rounds, args.repeats, threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
