# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""Does our global_norm use TensorFlow's intra-op threads? Wall and CPU time.

    python benchmarks/thread_scaling.py                 # (intra, inter) 1 1, 2 1, 2 2
    python benchmarks/thread_scaling.py --configs 4,1 --runs 300

For each (intra_op_parallelism_threads, inter_op_parallelism_threads), in a
fresh process (TensorFlow sizes its CPU thread pool once per process), one
GlobalL2Reduce over the 53 dense shapes read from resource variables, and
stock's sum of L2Loss over the same reads, run back to back `--runs` times
after one warm-up run. Prints per run the wall time and the process's CPU
time: CPU time about equal to wall time means one core busy on average,
twice the wall time two cores.
"""

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SHAPES = os.path.join(os.path.dirname(HERE), "tests", "data", "dense_shapes.json")


def measure(intra, inter, runs):
    """Runs in this process: returns {variant: (wall ms, cpu ms)} per run."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from monolith_ops import clip_ops  # pylint: disable=import-outside-toplevel

    with open(SHAPES) as f:
        shapes = json.load(f)["shapes"]
    rng = np.random.default_rng(0)
    out = {}
    with tf.Graph().as_default() as graph:
        variables = [
            tf.compat.v1.Variable(rng.standard_normal(s).astype(np.float32), use_resource=True)
            for s in shapes
        ]
        reads = [v.read_value() for v in variables]
        fetches = {
            "ours": clip_ops.ops.global_l2_reduce(reads, Tnorm=tf.float32),
            "stock": tf.add_n([tf.nn.l2_loss(r) for r in reads]),
            "inputs": tf.group(*reads),
        }
        config = tf.compat.v1.ConfigProto(
            intra_op_parallelism_threads=intra, inter_op_parallelism_threads=inter
        )
        with tf.compat.v1.Session(graph=graph, config=config) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            for name, fetch in fetches.items():
                sess.run(fetch)
                wall, cpu = time.perf_counter(), time.process_time()
                for _ in range(runs):
                    sess.run(fetch)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                out[name] = (wall / runs * 1e3, cpu / runs * 1e3)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python benchmarks/thread_scaling.py", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--configs", nargs="+", default=["1,1", "2,1", "2,2"])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        intra, inter = (int(x) for x in args.child.split(","))
        print(json.dumps(measure(intra, inter, args.runs)))
        return 0
    print("intra inter  variant  wall ms/run  cpu ms/run  cpu/wall")
    for config in args.configs:
        result = subprocess.run(
            [sys.executable, __file__, "--child", config, "--runs", str(args.runs)],
            capture_output=True,
            text=True,
            check=True,
        )
        rows = json.loads(result.stdout.strip().splitlines()[-1])
        intra, inter = config.split(",")
        for name, (wall, cpu) in rows.items():
            print(f"{intra:>5} {inter:>5}  {name:7} {wall:11.3f} {cpu:11.3f} {cpu / wall:9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
