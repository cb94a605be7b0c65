# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""Where a benchmark variant's time goes: TensorFlow's step stats, per op.

    python benchmarks/profile_ops.py --workload embedding
    python benchmarks/profile_ops.py --workload 1000x100 --runs 300 \\
        --variants ours:global_norm stock:global_norm inputs

Runs each variant of one workload (as run.py builds it) `--runs` times with
a full trace, and prints per op type: how many kernels ran, the median over
runs of their summed time (each kernel's start to end, in microseconds, as
the executor records it), and the median of the whole traced run. Tracing
adds its own cost to every kernel, so these are for finding which ops
dominate, not for the benchmark's figures.
"""

import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import run as bench  # noqa: E402  pylint: disable=wrong-import-position


def profile(graph, variant, runs):
    """{op type: (kernels per run, median summed us per run)}, and the
    median traced run in us (first kernel's start to last one's end)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    options = tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE)
    per_type, spans = {}, []
    for r in range(runs):
        metadata = tf.compat.v1.RunMetadata()
        graph.session.run(graph.targets[variant], options=options, run_metadata=metadata)
        totals, counts, first, last = {}, {}, None, None
        for dev in metadata.step_stats.dev_stats:
            for node in dev.node_stats:
                op_type = bench._op_type(node.timeline_label) or node.node_name
                start = node.all_start_micros
                end = start + node.all_end_rel_micros
                first = start if first is None else min(first, start)
                last = end if last is None else max(last, end)
                totals[op_type] = totals.get(op_type, 0) + (end - start)
                counts[op_type] = counts.get(op_type, 0) + 1
        for op_type, total in totals.items():
            per_type.setdefault(op_type, ([], counts[op_type]))[0].append(total)
        if first is not None:
            spans.append(last - first)
        del r
    summary = {
        t: (n, float(np.median(v + [0] * (runs - len(v))))) for t, (v, n) in per_type.items()
    }
    return summary, float(np.median(spans)) if spans else float("nan")


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python benchmarks/profile_ops.py", description=__doc__.split("\n")[0]
    )
    names = [w.name for w in bench.default_workloads()]
    parser.add_argument("--workload", choices=names, default="embedding")
    parser.add_argument("--variants", nargs="+", default=["ours:global_norm", "stock:global_norm"])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    workload = {w.name: w for w in bench.default_workloads()}[args.workload]
    threads = args.threads or bench.default_threads()
    graph = bench.WorkloadGraph(
        workload, config=tf.compat.v1.ConfigProto(intra_op_parallelism_threads=threads)
    )
    try:
        for variant in args.variants:
            for _ in range(5):
                graph.session.run(graph.targets[variant])
            summary, span = profile(graph, variant, args.runs)
            print(
                f"{args.workload} {variant}: median traced run {span:.0f} us "
                f"({args.runs} runs, {threads} threads)"
            )
            ranked = sorted(summary.items(), key=lambda kv: -kv[1][1])
            for op_type, (count, us) in ranked[: args.top]:
                print(f"  {op_type:<34} x{count:<5} {us:9.1f} us")
    finally:
        graph.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
