# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""A small recommendation model trained by a local parameter-server cluster.

    python examples/recsys_demo.py            # or: scripts/demo.sh
    python examples/recsys_demo.py --help

What it shows, all on 127.0.0.1, each task its own process, every one using
`tf.compat.v1.train.MonitoredTrainingSession`:

* 1 ps, 1 chief and 2 workers (--workers) train an embedding + MLP click model
  on synthetic click data, asynchronously, variables on the ps
  (`replica_device_setter`);
* the optimizer clips gradients with `monolith_ops.clip_ops.clip_by_global_norm`
  (the embedding gradient stays an `IndexedSlices`);
* every worker runs a `monolith_ops.barrier_ops.BarrierHook`. Mid-training the
  chief places the barrier with an action ("log-step-and-flush-summary"); each
  worker runs it at its next step boundary (logs its step, writes and flushes
  a summary), blocks, and the chief, once all are blocked, releases them;
* the chief saves a checkpoint at the end. A second run, by a fresh cluster,
  starts from that checkpoint; the chief's `CheckpointRestorerHook` listener
  reports the restore.

It prints progress (global step, loss, global norm, steps/s) and a summary,
and exits non-zero if anything went wrong (a task failed or timed out, or a
check failed). Every task runs in its own process group with a hard deadline
of its own, and all of them are killed when the demo ends, however it ends.

Internally the same file is the program of every task (--role ps|chief|worker);
`monolith_ops.testing.local_cluster` picks the ports, starts the tasks and kills them.
"""

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

try:  # the installed monolith_ops, else the one of this source tree
    from monolith_ops.testing import local_cluster
except ImportError:
    sys.path.insert(0, ROOT)
    from monolith_ops.testing import local_cluster

BARRIER_ACTION = "log-step-and-flush-summary"
BARRIER_NAME = "demo"
NUM_USERS = 500
NUM_ITEMS = 200
EMBEDDING_DIM = 16
TRUE_DIM = 4
DATA_SEED = 1234
PROGRESS_EVERY_SECS = 1.0
WAIT_SECS = 30.0  # bound on every wait for other tasks (barrier, readiness)


def _say(who, message):
    print(f"[{who}] {message}", flush=True)


# --------------------------------------------------------------------------
# Synthetic click data and the model (every task builds the same graph).


class SyntheticClicks:
    """Batches of (user, item, click): clicks drawn from hidden user and item
    vectors shared by every task, so there is something to learn."""

    def __init__(self, seed, batch_size):
        import numpy as np  # pylint: disable=import-outside-toplevel

        truth = np.random.default_rng(DATA_SEED)
        self._users = truth.standard_normal((NUM_USERS, TRUE_DIM))
        self._items = truth.standard_normal((NUM_ITEMS, TRUE_DIM))
        self._user_bias = truth.normal(0.0, 1.5, NUM_USERS)
        self._item_bias = truth.normal(-0.5, 1.5, NUM_ITEMS)
        self._rng = np.random.default_rng(seed)
        self._np = np
        self.batch_size = batch_size

    def batch(self):
        np = self._np
        users = self._rng.integers(0, NUM_USERS, self.batch_size)
        items = self._rng.integers(0, NUM_ITEMS, self.batch_size)
        logits = (
            self._user_bias[users]
            + self._item_bias[items]
            + 0.5 * np.sum(self._users[users] * self._items[items], axis=1)
        )
        clicks = self._rng.random(self.batch_size) < 1 / (1 + np.exp(-logits))
        return users, items, clicks.astype(np.float32)


class Model:
    """The training graph, built identically by the chief and every worker."""

    def __init__(
        self, tf, cluster, job, task, is_chief, clip_norm, learning_rate, barrier_callbacks
    ):
        from monolith_ops import barrier_ops, clip_ops  # pylint: disable=import-outside-toplevel

        setter = tf.compat.v1.train.replica_device_setter(
            worker_device=f"/job:{job}/task:{task}", cluster=cluster
        )
        with tf.compat.v1.device(setter):
            self.global_step = tf.compat.v1.train.get_or_create_global_step()
            self.users = tf.compat.v1.placeholder(tf.int64, [None], "users")
            self.items = tf.compat.v1.placeholder(tf.int64, [None], "items")
            self.clicks = tf.compat.v1.placeholder(tf.float32, [None], "clicks")
            init = tf.compat.v1.truncated_normal_initializer(stddev=0.1)
            # One table: users first, then items.
            table = tf.compat.v1.get_variable(
                "embedding",
                [NUM_USERS + NUM_ITEMS, EMBEDDING_DIM],
                initializer=init,
                use_resource=True,
            )
            features = tf.concat(
                [tf.gather(table, self.users), tf.gather(table, self.items + NUM_USERS)], axis=1
            )
            hidden = features
            for i, width in enumerate((64, 32, 1)):
                with tf.compat.v1.variable_scope(f"mlp_{i}"):
                    weights = tf.compat.v1.get_variable(
                        "weights",
                        [hidden.shape[1], width],
                        use_resource=True,
                        initializer=tf.compat.v1.glorot_uniform_initializer(),
                    )
                    bias = tf.compat.v1.get_variable(
                        "bias",
                        [width],
                        use_resource=True,
                        initializer=tf.compat.v1.zeros_initializer(),
                    )
                    hidden = tf.matmul(hidden, weights) + bias
                if width > 1:
                    hidden = tf.nn.relu(hidden)
            logits = tf.squeeze(hidden, axis=1)
            self.loss = tf.reduce_mean(
                tf.nn.sigmoid_cross_entropy_with_logits(labels=self.clicks, logits=logits)
            )

            optimizer = tf.compat.v1.train.AdagradOptimizer(learning_rate)
            grads_and_vars = optimizer.compute_gradients(self.loss)
            grads = [g for g, _ in grads_and_vars]
            clipped, self.global_norm = clip_ops.clip_by_global_norm(grads, clip_norm)
            self.embedding_grad_is_sparse = isinstance(grads[0], tf.IndexedSlices)
            apply = optimizer.apply_gradients(
                zip(clipped, [v for _, v in grads_and_vars]), global_step=self.global_step
            )

            # Progress the chief can read: an average of the workers' losses
            # and norms, and how many steps were clipped (all on the ps).
            def stat(name, value, dtype=tf.float32):
                return tf.compat.v1.get_variable(
                    name, initializer=tf.constant(value, dtype), trainable=False, use_resource=True
                )

            self.loss_avg = stat("loss_avg", 0.6931)
            self.norm_avg = stat("global_norm_avg", 0.0)
            self.clipped_steps = stat("clipped_steps", 0, tf.int64)
            with tf.control_dependencies([apply]):
                self.train_op = tf.group(
                    self.loss_avg.assign(0.9 * self.loss_avg + 0.1 * self.loss),
                    self.norm_avg.assign(0.9 * self.norm_avg + 0.1 * self.global_norm),
                    self.clipped_steps.assign_add(tf.cast(self.global_norm > clip_norm, tf.int64)),
                )

            # Chief: LOCAL copy; workers: GLOBAL copy, of the same variables.
            self.barrier = barrier_ops.BarrierOp(
                capacity=_num_workers(cluster) + 1,
                is_chief=is_chief,
                wait_seconds=0.05,
                name_prefix=BARRIER_NAME,
                barrier_callbacks=barrier_callbacks,
            )


def _num_workers(cluster):
    return len(cluster.as_dict().get("worker", []))


# --------------------------------------------------------------------------
# The tasks.


def run_ps(tf, cluster, args):
    server = tf.distribute.Server(cluster, job_name="ps", task_index=args.task)
    server.join()


def run_worker(tf, cluster, args):
    from monolith_ops import barrier_ops  # pylint: disable=import-outside-toplevel

    index = args.task + 1  # flag 0 is the chief's barrier
    who = f"worker {index}"
    state = {"local_step": 0, "loss": None}
    calls = []
    summary_dir = os.path.join(args.workdir, "summaries", f"worker-{index}")
    holder = {}

    def on_barrier(action, session):
        # The barrier's action: log this worker's step, flush a summary.
        global_step = int(session.run(holder["model"].global_step))
        if action == BARRIER_ACTION:
            writer = holder["writer"]
            summary = tf.compat.v1.Summary(
                value=[
                    tf.compat.v1.Summary.Value(tag="loss", simple_value=state["loss"] or 0.0),
                    tf.compat.v1.Summary.Value(tag="local_steps", simple_value=state["local_step"]),
                ]
            )
            writer.add_summary(summary, global_step)
            writer.flush()
        _say(
            who,
            f"barrier action {action!r}: at local step "
            f"{state['local_step']}, global step {global_step}; "
            "summary flushed, now blocked",
        )
        calls.append(
            {
                "action": action,
                "local_step": state["local_step"],
                "global_step": global_step,
                "time": time.time(),
            }
        )

    server = tf.distribute.Server(cluster, job_name="worker", task_index=args.task)
    model = Model(
        tf,
        cluster,
        "worker",
        args.task,
        is_chief=False,
        clip_norm=args.clip_norm,
        learning_rate=args.learning_rate,
        barrier_callbacks=[on_barrier],
    )
    holder["model"] = model
    holder["writer"] = tf.compat.v1.summary.FileWriter(summary_dir)
    data = SyntheticClicks(seed=args.task + 100 * args.run, batch_size=args.batch_size)

    class StopAtStepAfterBarrier(tf.compat.v1.train.SessionRunHook):
        """Stops at --last-step, but in a run with a barrier not before this
        worker has been through it: a worker that finished first would
        never block, and the chief would wait for it in vain."""

        def before_run(self, run_context):
            return tf.compat.v1.train.SessionRunArgs(model.global_step)

        def after_run(self, run_context, run_values):
            if args.barrier_at and not calls:
                return
            if (
                run_values.results + 1 >= args.last_step
                and run_context.session.run(model.global_step) >= args.last_step
            ):
                run_context.request_stop()

    hooks = [
        # First, so that a worker blocks before it decides to stop.
        barrier_ops.BarrierHook(index, model.barrier, timeout=WAIT_SECS),
        StopAtStepAfterBarrier(),
    ]
    config = tf.compat.v1.ConfigProto(
        device_filters=["/job:ps", f"/job:worker/task:{args.task}"],
        intra_op_parallelism_threads=1,
        inter_op_parallelism_threads=2,
    )
    # MonitoredTrainingSession polls a worker's readiness only every 30 s;
    # poll faster first, so that it finds the model ready at once.
    _wait_until_initialized(
        tf, server.target, config, tf.compat.v1.report_uninitialized_variables()
    )
    losses = []
    with tf.compat.v1.train.MonitoredTrainingSession(
        master=server.target,
        is_chief=False,
        hooks=hooks,
        config=config,
        log_step_count_steps=None,
        max_wait_secs=WAIT_SECS,
        stop_grace_period_secs=5,
    ) as sess:
        while not sess.should_stop():
            users, items, clicks = data.batch()
            _, loss = sess.run(
                [model.train_op, model.loss],
                {model.users: users, model.items: items, model.clicks: clicks},
            )
            state["local_step"] += 1
            state["loss"] = float(loss)
            losses.append(float(loss))
    holder["writer"].close()
    head, tail = losses[:20], losses[-20:]
    local_cluster.write_json(
        os.path.join(args.workdir, f"worker-{index}.json"),
        {
            "index": index,
            "local_steps": state["local_step"],
            "first_loss": sum(head) / max(len(head), 1),
            "last_loss": sum(tail) / max(len(tail), 1),
            "barrier_calls": calls,
            "embedding_grad_is_sparse": model.embedding_grad_is_sparse,
            "summary_files": sorted(os.listdir(summary_dir)),
        },
    )


def _wait_until_initialized(tf, target, config, uninitialized):
    """Waits (polling every 0.1 s) until the chief has initialized the model."""
    deadline = time.monotonic() + WAIT_SECS
    with tf.compat.v1.Session(target, config=config) as session:
        while session.run(uninitialized).size:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the chief did not initialize the model within {WAIT_SECS:g} s")
            time.sleep(0.1)


class RestoreReporter:
    """A CheckpointRestorerListener that reports what the session started from."""

    def __init__(self, tf, checkpoint_dir, model):
        self._tf = tf
        self._dir = checkpoint_dir
        self._model = model
        self.report = None
        self._checkpoint = None

    def begin(self):
        self._checkpoint = self._tf.train.latest_checkpoint(self._dir)

    def before_restore(self, session):
        pass

    def after_restore(self, session):
        # The workers may already be training on the restored variables, so
        # the live global step can be past the checkpoint's: report both.
        step, loss = session.run([self._model.global_step, self._model.loss_avg])
        name = os.path.basename(self._checkpoint) if self._checkpoint else None
        saved = (
            int(self._tf.train.load_variable(self._checkpoint, self._model.global_step.op.name))
            if self._checkpoint
            else None
        )
        self.report = {
            "checkpoint": name,
            "checkpoint_step": saved,
            "global_step": int(step),
            "loss_avg": float(loss),
        }
        if name:
            _say(
                "chief",
                f"restore listener: session restored from {name} "
                f"(global step {saved}), now at global step {int(step)}, "
                f"loss {float(loss):.4f}",
            )
        else:
            _say("chief", "restore listener: no checkpoint yet, starting from scratch")

    def end(self, session):
        pass


def run_chief(tf, cluster, args):
    from monolith_ops import basic_restore_hook  # pylint: disable=import-outside-toplevel

    placed = []
    model = Model(
        tf,
        cluster,
        "chief",
        0,
        is_chief=True,
        clip_norm=args.clip_norm,
        learning_rate=args.learning_rate,
        barrier_callbacks=[lambda action, _: placed.append(action)],
    )
    barrier = model.barrier
    reporter = RestoreReporter(tf, args.checkpoint_dir, model)
    hooks = [basic_restore_hook.CheckpointRestorerHook([reporter])]
    server = tf.distribute.Server(cluster, job_name="chief", task_index=0)
    config = tf.compat.v1.ConfigProto(device_filters=["/job:ps", "/job:chief"])
    done_marker = os.path.join(args.workdir, "workers_done")
    result = {"run": args.run, "progress": []}
    with tf.compat.v1.train.MonitoredTrainingSession(
        master=server.target,
        is_chief=True,
        hooks=hooks,
        config=config,
        checkpoint_dir=args.checkpoint_dir,
        save_checkpoint_secs=3600,
        save_summaries_steps=None,
        save_summaries_secs=None,
        log_step_count_steps=None,
        stop_grace_period_secs=5,
    ) as sess:
        result["restore"] = reporter.report
        stats = [model.global_step, model.loss_avg, model.norm_avg, model.clipped_steps]
        start_step = int(sess.run(model.global_step))
        last_time, last_step = time.monotonic(), start_step
        deadline = time.monotonic() + args.timeout

        def progress(force=False):
            nonlocal last_time, last_step
            now = time.monotonic()
            if not force and now - last_time < PROGRESS_EVERY_SECS:
                return
            step, loss, norm, _ = sess.run(stats)
            rate = (step - last_step) / max(now - last_time, 1e-9)
            last_time, last_step = now, int(step)
            result["progress"].append(
                {
                    "step": int(step),
                    "loss": float(loss),
                    "global_norm": float(norm),
                    "steps_per_sec": rate,
                }
            )
            _say(
                "chief",
                f"step {int(step):5d}/{args.last_step}  loss "
                f"{float(loss):.4f}  global norm {float(norm):7.3f}  "
                f"{rate:6.1f} steps/s",
            )

        while not os.path.exists(done_marker):
            if time.monotonic() > deadline:
                raise TimeoutError("the workers did not finish in time")
            step = int(sess.run(model.global_step))
            if args.barrier_at and "barrier" not in result and step >= args.barrier_at:
                result["barrier"] = _barrier_round(sess, model, barrier, placed)
            progress()
            time.sleep(0.02)
        progress(force=True)
        step, loss, _, clipped = sess.run(stats)
        result.update(
            final_step=int(step),
            final_loss_avg=float(loss),
            clipped_steps=int(clipped),
            trained_steps=int(step) - start_step,
        )
        result["barrier_is_local_on_chief"] = any(
            BARRIER_NAME + "_barrier_op" in v.name for v in tf.compat.v1.local_variables()
        ) and not any(
            BARRIER_NAME + "_barrier_op" in v.name for v in tf.compat.v1.global_variables()
        )
    # Leaving the session saved the final checkpoint.
    result["checkpoint"] = tf.train.latest_checkpoint(args.checkpoint_dir)
    local_cluster.write_json(os.path.join(args.workdir, "chief.json"), result)


def _barrier_round(sess, model, barrier, placed):
    """Places the barrier, waits for every worker to block, releases them."""

    def wait_for(predicate, what):
        deadline = time.monotonic() + WAIT_SECS
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"timed out waiting for {what}; flags set: {barrier.get_blocked_indices(sess)}"
                )
            time.sleep(0.01)

    t0 = time.monotonic()
    step = int(sess.run(model.global_step))
    barrier.place_barrier(sess, action=BARRIER_ACTION)
    _say("chief", f"barrier placed at global step {step} with action {BARRIER_ACTION!r}")
    barrier.wait_until_all_blocked(sess, timeout=WAIT_SECS)
    blocked = barrier.get_blocked_indices(sess)
    step_blocked = int(sess.run(model.global_step))
    time.sleep(0.3)  # nobody steps while the barrier holds
    step_held = int(sess.run(model.global_step))
    _say(
        "chief",
        f"workers {blocked[1:]} blocked at global step "
        f"{step_blocked} (still {step_held} after 0.3 s); releasing them",
    )
    barrier.remove_barrier(sess)
    wait_for(lambda: barrier.is_none_blocked(sess), "every worker to resume")
    return {
        "action": BARRIER_ACTION,
        "placed_at_step": step,
        "blocked": blocked,
        "step_when_all_blocked": step_blocked,
        "steps_while_held": step_held - step_blocked,
        "chief_callback_actions": list(placed),
        "seconds": time.monotonic() - t0,
    }


def task_main(args):
    """Entry point of one task process."""
    local_cluster.start_watchdog(args.deadline, f"{args.role} {args.task}")
    rc = 0
    try:
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

        tf.compat.v1.disable_eager_execution()
        cluster = tf.train.ClusterSpec(json.loads(args.cluster))
        {"ps": run_ps, "chief": run_chief, "worker": run_worker}[args.role](tf, cluster, args)
    except BaseException:  # pylint: disable=broad-except
        traceback.print_exc()
        rc = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)  # pylint: disable=protected-access  (a gRPC server can hang exit)


# --------------------------------------------------------------------------
# The launcher.


class DemoError(RuntimeError):
    pass


class Cluster(local_cluster.LocalCluster):
    """The processes of one run: started together, always all killed."""

    def __init__(self, args, run, workdir, last_step, barrier_at, deadline):
        super().__init__(workdir, args.workers)
        self.args = args
        self.run = run
        self.deadline = deadline
        self.last_step = last_step
        self.barrier_at = barrier_at

    def _command(self, role, task):
        a = self.args
        return [
            sys.executable,
            os.path.abspath(__file__),
            "--role",
            role,
            "--task",
            str(task),
            "--cluster",
            json.dumps(self.spec),
            "--workdir",
            self.workdir,
            "--run",
            str(self.run),
            "--deadline",
            str(self.deadline),
            "--checkpoint-dir",
            os.path.join(a.workdir, "checkpoints"),
            "--last-step",
            str(self.last_step),
            "--barrier-at",
            str(self.barrier_at),
            "--clip-norm",
            str(a.clip_norm),
            "--learning-rate",
            str(a.learning_rate),
            "--batch-size",
            str(a.batch_size),
            "--timeout",
            str(max(1.0, self.deadline - time.time())),
        ]

    def start(self, env):
        tasks = [("ps", "ps", 0), ("chief", "chief", 0)] + [
            (f"worker-{i + 1}", "worker", i) for i in range(self.args.workers)
        ]
        for name, role, task in tasks:
            self.start_task(
                name, self._command(role, task), env=env, cwd=ROOT, relay_stdout=self._relay_line
            )

    def _relay_line(self, line):
        if not self.args.quiet or "restore" in line or "barrier" in line:
            sys.stdout.write(line)
            sys.stdout.flush()

    def _check_alive(self, names):
        for name, rc in self.exited(names).items():
            if rc != 0:
                raise DemoError(f"{name} failed (exit code {rc}):\n{self.log_tail(name, 2500)}")

    def wait(self):
        """Waits for the workers, tells the chief, waits for the chief."""
        workers = [n for n in self.procs if n.startswith("worker")]
        while any(self.procs[n].poll() is None for n in workers):
            self._check_alive(list(self.procs))
            if self.procs["ps"].poll() is not None:
                raise DemoError(f"the ps exited early:\n{self.log_tail('ps', 2500)}")
            if self.procs["chief"].poll() is not None:
                raise DemoError(
                    f"the chief exited before the workers:\n{self.log_tail('chief', 2500)}"
                )
            self._check_deadline()
            time.sleep(0.05)
        self._check_alive(workers)
        local_cluster.write_json(os.path.join(self.workdir, "workers_done"), {})
        while self.procs["chief"].poll() is None:
            self._check_deadline()
            time.sleep(0.05)
        self._check_alive(["chief"])
        # Every relay but the ps', which never ends.
        self.join_relays(timeout=2, names=[n for n in self.procs if n != "ps"])

    def _check_deadline(self):
        if time.time() > self.deadline:
            raise DemoError(
                f"run {self.run} timed out (--timeout "
                f"{self.args.timeout:g} s); chief log:\n"
                f"{self.log_tail('chief', 2500)}"
            )


def _run_cluster(args, run, last_step, barrier_at, deadline, env):
    workdir = os.path.join(args.workdir, f"run-{run}")
    os.makedirs(workdir, exist_ok=True)
    cluster = Cluster(args, run, workdir, last_step, barrier_at, deadline)
    try:
        cluster.start(env)
        cluster.wait()
    finally:
        cluster.close()
    left = cluster.alive()
    if left:
        raise DemoError(f"processes still alive after the kill: {left}")
    chief = local_cluster.read_json(os.path.join(workdir, "chief.json"))
    workers = [
        local_cluster.read_json(os.path.join(workdir, f"worker-{i + 1}.json"))
        for i in range(args.workers)
    ]
    return chief, workers


def _check(facts, condition, message):
    if not condition:
        facts["failures"].append(message)


def _summarize(args, runs, seconds):
    """Facts of both runs, the checks on them, and the summary's lines."""
    (chief1, workers1), (chief2, workers2) = runs
    facts = {
        "workers": args.workers,
        "steps": args.steps,
        "resume_steps": args.resume_steps,
        "clip_norm": args.clip_norm,
        "seconds": seconds,
        "failures": [],
    }
    barrier = chief1.get("barrier") or {}
    calls = {w["index"]: w["barrier_calls"] for w in workers1}
    facts["run1"] = {
        "final_step": chief1["final_step"],
        "first_loss": sum(w["first_loss"] for w in workers1) / len(workers1),
        "last_loss": sum(w["last_loss"] for w in workers1) / len(workers1),
        "local_steps": {w["index"]: w["local_steps"] for w in workers1},
        "clipped_steps": chief1["clipped_steps"],
        "checkpoint": os.path.basename(chief1["checkpoint"] or ""),
        "progress_lines": len(chief1["progress"]),
        "embedding_grad_is_sparse": all(w["embedding_grad_is_sparse"] for w in workers1),
    }
    facts["barrier"] = {
        "action": barrier.get("action"),
        "placed_at_step": barrier.get("placed_at_step"),
        "blocked": barrier.get("blocked"),
        "steps_while_held": barrier.get("steps_while_held"),
        "seconds": barrier.get("seconds"),
        "worker_actions": {i: [c["action"] for c in calls[i]] for i in calls},
        "worker_steps": {i: [c["global_step"] for c in calls[i]] for i in calls},
        "summaries_flushed": all(w["summary_files"] for w in workers1),
        "chief_barrier_variable_is_local": chief1["barrier_is_local_on_chief"],
    }
    restore = chief2.get("restore") or {}
    facts["run2"] = {
        "restored_checkpoint": restore.get("checkpoint"),
        "restored_step": restore.get("checkpoint_step"),
        "step_after_restore": restore.get("global_step"),
        "restored_loss_avg": restore.get("loss_avg"),
        "final_step": chief2["final_step"],
        "last_loss": sum(w["last_loss"] for w in workers2) / len(workers2),
    }
    r1, r2, b = facts["run1"], facts["run2"], facts["barrier"]
    _check(
        facts,
        chief1.get("restore", {}).get("checkpoint") is None,
        "run 1 should start from scratch",
    )
    _check(
        facts,
        r1["final_step"] >= args.steps,
        f"run 1 stopped at step {r1['final_step']} < {args.steps}",
    )
    _check(
        facts,
        b["blocked"] == list(range(args.workers + 1)),
        f"not every worker blocked at the barrier: {b['blocked']}",
    )
    _check(
        facts,
        all(a == [BARRIER_ACTION] for a in b["worker_actions"].values()),
        f"each worker should run the action once: {b['worker_actions']}",
    )
    _check(
        facts,
        b["steps_while_held"] == 0,
        f"{b['steps_while_held']} steps ran while the barrier held",
    )
    _check(facts, b["summaries_flushed"], "a worker flushed no summary")
    _check(
        facts, b["chief_barrier_variable_is_local"], "the chief's barrier variable should be local"
    )
    _check(facts, r1["embedding_grad_is_sparse"], "the embedding gradient should be IndexedSlices")
    _check(
        facts,
        r1["last_loss"] < r1["first_loss"],
        f"loss did not go down: {r1['first_loss']:.4f} -> {r1['last_loss']:.4f}",
    )
    # Training is asynchronous: the workers may step between the chief
    # naming its last checkpoint and writing it, so the file can hold a
    # later global step than its name; it never holds an earlier one.
    _check(
        facts,
        r2["restored_checkpoint"] == r1["checkpoint"]
        and (r2["restored_step"] or 0) >= r1["final_step"],
        f"run 2 should restore {r1['checkpoint']} at step "
        f"{r1['final_step']} or later, got {r2['restored_checkpoint']} at "
        f"{r2['restored_step']}",
    )
    _check(
        facts,
        (r2["step_after_restore"] or 0) >= r2["restored_step"],
        f"run 2's session is at step {r2['step_after_restore']} after the "
        f"restore, before the checkpoint's {r2['restored_step']}",
    )
    _check(
        facts,
        r2["final_step"] >= r1["final_step"] + args.resume_steps,
        f"run 2 stopped at step {r2['final_step']}",
    )

    lines = [
        "Summary",
        f"  run 1: {r1['final_step']} global steps by {args.workers} workers "
        f"(local steps {sorted(r1['local_steps'].values())}); loss "
        f"{r1['first_loss']:.4f} -> {r1['last_loss']:.4f}; "
        f"{r1['clipped_steps']} of them clipped at clip_norm {args.clip_norm:g} "
        "by monolith_ops.clip_ops.clip_by_global_norm",
        f"  barrier: placed at step {b['placed_at_step']} with action "
        f"{b['action']!r}; workers {sorted(b['worker_actions'])} ran it (at "
        f"global steps {[s for v in b['worker_steps'].values() for s in v]}),"
        f" {b['steps_while_held']} steps while held, released after "
        f"{b['seconds'] or 0:.2f} s",
        f"  run 2: CheckpointRestorerHook listener reported "
        f"{r2['restored_checkpoint']} restored at step {r2['restored_step']}; "
        f"trained on to step {r2['final_step']}, loss {r2['last_loss']:.4f}",
        f"  {2 * (args.workers + 2)} processes started and cleaned up; {seconds:.1f} s in all",
    ]
    return facts, lines


def _parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="recsys_demo.py",
        description="Trains an embedding + MLP click model in a local cluster "
        "(1 ps, 1 chief, N workers, one process each, on 127.0.0.1) with "
        "monolith_ops' clip_by_global_norm, BarrierHook and "
        "CheckpointRestorerHook, then resumes it from its checkpoint.",
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="number of worker processes (default 2)"
    )
    parser.add_argument(
        "--steps", type=int, default=400, help="global steps of the first run (default 400)"
    )
    parser.add_argument(
        "--resume-steps",
        type=int,
        default=100,
        help="global steps of the second run, which starts "
        "from the first run's checkpoint (default 100)",
    )
    parser.add_argument(
        "--clip-norm",
        type=float,
        default=0.25,
        help="clip_norm of clip_by_global_norm (default 0.25)",
    )
    parser.add_argument(
        "--barrier-at",
        type=int,
        default=None,
        help="global step at which the chief places the "
        "barrier (default: half of --steps); workers train "
        "on past --steps until they have been through it",
    )
    parser.add_argument(
        "--batch-size", type=int, default=256, help="examples per step per worker (default 256)"
    )
    parser.add_argument(
        "--learning-rate", type=float, default=0.5, help="Adagrad learning rate (default 0.5)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="hard limit in seconds for the whole demo "
        "(default 120); every process is killed after it",
    )
    parser.add_argument(
        "--workdir",
        default=None,
        help="folder for checkpoints, summaries and logs "
        "(default: a temporary folder, removed at the end)",
    )
    parser.add_argument(
        "--summary-json", default=None, help="also write the summary's facts to this file"
    )
    parser.add_argument(
        "--quiet", action="store_true", help="print only barrier and restore events and the summary"
    )
    # The tasks' own options (the launcher passes them).
    for name, kind in [
        ("--role", str),
        ("--task", int),
        ("--cluster", str),
        ("--run", int),
        ("--deadline", float),
        ("--checkpoint-dir", str),
        ("--last-step", int),
    ]:
        parser.add_argument(name, type=kind, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role is None:
        if args.workers < 1:
            parser.error("--workers must be >= 1")
        if args.steps < 4 or args.resume_steps < 1:
            parser.error("--steps must be >= 4 and --resume-steps >= 1")
        if not args.clip_norm > 0:
            parser.error("--clip-norm must be > 0")
        if args.barrier_at is None:
            args.barrier_at = args.steps // 2
        if not 0 < args.barrier_at < args.steps:
            parser.error("--barrier-at must be between 0 and --steps")
        if not args.timeout > 0:
            parser.error("--timeout must be > 0")
    return args


def main(argv=None):
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    if args.role is not None:
        return task_main(args)
    start = time.time()
    deadline = start + args.timeout
    env = local_cluster.task_env()
    temporary = args.workdir is None
    args.workdir = os.path.abspath(args.workdir or tempfile.mkdtemp(prefix="recsys_demo_"))
    for old in ("checkpoints", "run-1", "run-2"):  # a reused --workdir
        shutil.rmtree(os.path.join(args.workdir, old), ignore_errors=True)
    os.makedirs(args.workdir, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    _say(
        "demo",
        f"{args.workers} workers, 1 ps, 1 chief on 127.0.0.1; "
        f"{args.steps} steps, then {args.resume_steps} more from the "
        f"checkpoint; clip_norm {args.clip_norm:g}; work folder {args.workdir}",
    )
    try:
        _say("demo", "run 1: training from scratch")
        run1 = _run_cluster(args, 1, args.steps, args.barrier_at, deadline, env)
        last = run1[0]["final_step"] + args.resume_steps
        _say(
            "demo",
            f"run 1 done at step {run1[0]['final_step']}; run 2: a "
            f"fresh cluster resumes from the checkpoint, to step {last}",
        )
        run2 = _run_cluster(args, 2, last, 0, deadline, env)
        facts, lines = _summarize(args, (run1, run2), time.time() - start)
    except DemoError as err:
        _say("demo", f"FAILED: {err}")
        return 1
    except KeyboardInterrupt:
        _say("demo", "interrupted; every process was stopped")
        return 130
    except Exception:  # pylint: disable=broad-except
        traceback.print_exc()
        _say("demo", "FAILED: see the error above")
        return 1
    finally:
        if temporary:
            shutil.rmtree(args.workdir, ignore_errors=True)
    print("\n".join(lines), flush=True)
    if args.summary_json:
        local_cluster.write_json(args.summary_json, facts, indent=1)
    if facts["failures"]:
        for failure in facts["failures"]:
            _say("demo", f"FAILED: {failure}")
        return 1
    _say("demo", "OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
