# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""monolith_ops in a small parameter-server training job (scripts/demo.sh runs it).

A ps, a chief and two workers, one process each on 127.0.0.1, train an embedding +
MLP click model in MonitoredTrainingSession. Run 1: monolith_ops' Adagrad
optimizer clips by the global norm in its own update; midway the chief places a barrier whose action each
worker's BarrierHook runs before blocking, then releases them. Run 2: a new cluster
restarts from run 1's checkpoint, as a CheckpointRestorerHook listener reports.
Exits non-zero when a task fails or time runs out; every task is killed at the end.
"""

import argparse
import json
import os
import signal
import sys
import tempfile
import time
import traceback

import numpy as np

from monolith_ops.testing.local_cluster import LocalCluster, start_watchdog, wait_for

# A task of the cluster, or a module importing this one (the benchmark builds
# the model); the launcher itself needs no TensorFlow.
if "--task" in sys.argv or __name__ != "__main__":
    import tensorflow as tf

    from monolith_ops import barrier_ops, basic_restore_hook, clip_ops, optimizers

WORKERS, CLIP_NORM, LEARNING_RATE, ACTION = 2, 0.25, 0.5, "log-step"
NUM_USERS, NUM_ITEMS, EMBEDDING_DIM = 500, 200, 16


class SyntheticClicks:
    """Batches of (users, items, clicks); clicks follow hidden vectors and biases."""

    def __init__(self, seed, batch_size=256):
        truth = np.random.default_rng(1234)
        self.vecs = truth.standard_normal((NUM_USERS, 4)), truth.standard_normal((NUM_ITEMS, 4))
        self.bias = truth.normal(0, 1.5, NUM_USERS), truth.normal(-0.5, 1.5, NUM_ITEMS)
        self.rng, self.size = np.random.default_rng(seed), batch_size

    def batch(self):
        n, (uv, iv), (ub, ib) = self.size, self.vecs, self.bias
        u, i = self.rng.integers(0, NUM_USERS, n), self.rng.integers(0, NUM_ITEMS, n)
        logit = ub[u] + ib[i] + 0.5 * np.sum(uv[u] * iv[i], axis=1)
        return u, i, (self.rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)


def build_model(cluster, job, index, callbacks=None, optimizer=None):
    """The same graph in every task: variables on the ps, ops on this task
    (with no cluster, all on this process). `optimizer` replaces the demo's
    own (benchmarks/run.py times the step with another)."""
    setter = tf.compat.v1.train.replica_device_setter
    with tf.compat.v1.device(setter(worker_device=f"/job:{job}/task:{index}", cluster=cluster)):
        step = tf.compat.v1.train.get_or_create_global_step()
        feed = [tf.compat.v1.placeholder(t, [None]) for t in (tf.int64, tf.int64, tf.float32)]
        table = tf.compat.v1.get_variable("embedding", [NUM_USERS + NUM_ITEMS, EMBEDDING_DIM])
        x = tf.concat([tf.gather(table, feed[0]), tf.gather(table, feed[1] + NUM_USERS)], axis=1)
        for i, width in enumerate((64, 32, 1)):
            w = tf.compat.v1.get_variable(f"w{i}", [x.shape[1], width])
            b = tf.compat.v1.get_variable(f"b{i}", [width], initializer=tf.zeros_initializer())
            x = tf.nn.relu(x @ w + b) if width > 1 else x @ w + b
        loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(feed[2], x[:, 0]))
        if optimizer is None:  # clips by the global norm in its update, in one op
            optimizer = optimizers.AdagradOptimizer(LEARNING_RATE, clip_norm=CLIP_NORM)
        grads_and_vars = optimizer.compute_gradients(loss)  # embedding's: IndexedSlices
        train = optimizer.apply_gradients(grads_and_vars, global_step=step)
        norm = clip_ops.global_norm([g for g, _ in grads_and_vars])  # to report it
        barrier = barrier_ops.BarrierOp(WORKERS + 1, job == "chief", barrier_callbacks=callbacks)
    return dict(step=step, feed=feed, loss=loss, norm=norm, train=train, barrier=barrier)


def chief(cluster, target, t):
    m = build_model(cluster, "chief", 0)

    class ReportRestore(basic_restore_hook.CheckpointRestorerListener):
        def begin(self):  # before the session exists (and saves its first checkpoint)
            found = tf.train.latest_checkpoint(t["checkpoints"])
            self.found = os.path.basename(found) if found else "no checkpoint"

        def after_restore(self, session):
            step = session.run(m["step"])
            print(f"[chief] restore listener: started from {self.found}, global step {step}")

    hook = basic_restore_hook.CheckpointRestorerHook([ReportRestore()])
    config = tf.compat.v1.ConfigProto(device_filters=["/job:ps", "/job:chief"])
    with tf.compat.v1.train.MonitoredTrainingSession(
        target, is_chief=True, checkpoint_dir=t["checkpoints"], hooks=[hook], config=config
    ) as sess:
        open(t["ready"], "w").close()  # the model is initialized or restored: workers may start
        barrier_done = t["run"] == 2
        while (step := sess.run(m["step"])) < t["last_step"] or not barrier_done:
            if not barrier_done and step >= t["last_step"] // 2:
                m["barrier"].place_barrier(sess, action=ACTION)
                m["barrier"].wait_until_all_blocked(sess, timeout=60)
                blocked, step = m["barrier"].get_blocked_indices(sess)[1:], sess.run(m["step"])
                print(f"[chief] barrier {ACTION!r}: workers {blocked} blocked at step {step}")
                m["barrier"].remove_barrier(sess)
                barrier_done = True
            time.sleep(0.05)
    print(f"[chief] saved {os.path.basename(tf.train.latest_checkpoint(t['checkpoints']))}")


def worker(cluster, target, t):
    who, ran = f"[worker {t['index'] + 1}]", []

    def on_barrier(action, session):  # the chief's action, run here before blocking
        ran.append(action)
        print(f"{who} barrier action {action!r} at global step {session.run(m['step'])}")

    m = build_model(cluster, "worker", t["index"], [on_barrier])
    wait_for(lambda: os.path.exists(t["ready"]), "the chief's session", timeout=120)
    hook = barrier_ops.BarrierHook(t["index"] + 1, m["barrier"], timeout=60)
    config = tf.compat.v1.ConfigProto(device_filters=["/job:ps", f"/job:worker/task:{t['index']}"])
    losses, data, step = [], SyntheticClicks(seed=10 * t["run"] + t["index"]), 0
    with tf.compat.v1.train.MonitoredTrainingSession(
        target, is_chief=False, hooks=[hook], config=config
    ) as sess:
        while step < t["last_step"] or not (ran or t["run"] == 2):
            fetches = [m["train"], m["loss"], m["norm"], m["step"]]
            _, loss, norm, step = sess.run(fetches, dict(zip(m["feed"], data.batch())))
            losses.append(loss)
            if len(losses) % 50 == 0:
                print(f"{who} global step {step}, loss {loss:.4f}, global norm {norm:.3f}")
    first, last = np.mean(losses[:20]), np.mean(losses[-20:])
    print(f"{who} done after {len(losses)} steps, mean loss {first:.4f} -> {last:.4f}")


def task(t):
    start_watchdog(t["deadline"], t["job"])  # a task ends at the deadline at the latest
    tf.compat.v1.disable_eager_execution()
    cluster = tf.train.ClusterSpec(t["cluster"])
    server = tf.distribute.Server(cluster, job_name=t["job"], task_index=t["index"])
    try:
        if t["job"] == "ps":
            server.join()
        (chief if t["job"] == "chief" else worker)(cluster, server.target, t)
    except BaseException:
        traceback.print_exc()
        os._exit(1)
    os._exit(0)  # without waiting for the gRPC server's threads (output is unbuffered)


def run_cluster(workdir, run, last_step, deadline):
    """Starts a ps, a chief and the workers; returns once chief and workers exit 0."""
    os.makedirs(workdir)
    with LocalCluster(workdir, WORKERS) as cluster:
        for job, index in [("ps", 0), ("chief", 0)] + [("worker", i) for i in range(WORKERS)]:
            t = dict(job=job, index=index, run=run, last_step=last_step, deadline=deadline)
            t.update(cluster=cluster.spec, ready=cluster.path("chief_ready"))
            t["checkpoints"] = os.path.join(os.path.dirname(workdir), "checkpoints")
            name = f"worker-{index + 1}" if job == "worker" else job
            argv = [sys.executable, os.path.abspath(__file__), "--task", json.dumps(t)]
            cluster.start_task(name, argv, relay_stdout=lambda s: print(s, end="", flush=True))
        while running := [n for n in cluster.alive() if n != "ps"]:
            if any(cluster.exited().values()) or time.time() > deadline:
                name = next((n for n, rc in cluster.exited().items() if rc), running[0])
                log = cluster.log_tail(name)
                raise RuntimeError(f"run {run}: {name} failed or timed out; its log ends:\n{log}")
            time.sleep(0.1)
        if any(cluster.exited().values()):
            raise RuntimeError(f"run {run}: exit codes {cluster.exited()}")
        cluster.join_relays(timeout=5, names=[n for n in cluster.procs if n != "ps"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400, help="global steps of run 1")
    parser.add_argument("--timeout", type=float, default=180, help="seconds for the whole demo")
    parser.add_argument("--task", help=argparse.SUPPRESS)  # the demo starts its tasks with it
    args = parser.parse_args()
    if args.task:
        return task(json.loads(args.task))
    start, deadline = time.time(), time.time() + args.timeout
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # leave through the kills
    with tempfile.TemporaryDirectory(prefix="recsys_demo_") as workdir:
        try:
            for run, steps in [(1, args.steps), (2, args.steps * 3 // 2)]:
                print(f"[demo] run {run}: a new cluster trains to global step {steps}", flush=True)
                run_cluster(os.path.join(workdir, f"run-{run}"), run, steps, deadline)
        except (RuntimeError, TimeoutError, KeyboardInterrupt) as e:
            print(f"[demo] FAILED: {e}", flush=True)
            return 1
    print(f"[demo] OK in {time.time() - start:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
