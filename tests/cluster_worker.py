# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""One task (ps, chief or worker) of the cluster in test_barrier_cluster.py.

Run as a separate process:

  python cluster_worker.py --role worker --task 0 --cluster '{...}' \
      --workdir DIR --deadline EPOCH_SECONDS

with PYTHONPATH leading to the same monolith_ops the test process imported.

Every process exits on its own at --deadline (a watchdog thread), so nothing
outlives the test even if the test process dies. Results and progress go to
JSON files in --workdir; the test process and the chief coordinate through
marker files there:

  worker-<i>.log            worker i's output (written by the test process);
                            the chief reads it to see that the worker waits
  worker-<i>.events.jsonl   worker i: entering_mts, session_ready (timestamps)
  worker-<i>.callbacks.jsonl  one line per barrier callback: action, steps run
  worker-<i>.result.json    worker i: steps run, variable placement, written
                            when it stops training; it then only polls the
                            barrier (no step) for the "hang" phase
  worker-<i>.hang.json      worker i: the error its wait on "hang" raised
  chief.phase.json          the chief's progress (for error messages)
  ready_to_kill             chief -> test: all blocked in the "kill" phase
  killed                    test -> chief: worker 2 has been killed
  workers_done              test -> chief: the surviving workers stopped training
  chief.result.json         the chief's observations, up to the "hang" phase
  ready_to_hang             chief -> test: worker 1 blocked on "hang"
  ps_stopped                test -> chief: the ps is stopped (SIGSTOP)
  chief.hang.json           the chief: the error its wait raised with the ps hung
"""

import argparse
import json
import os
import sys
import time
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import tensorflow as tf

from monolith_ops import barrier_ops
from monolith_ops.testing.local_cluster import (
    append_jsonl,
    read_jsonl,
    start_watchdog,
    wait_for,
    write_json,
)

NUM_WORKERS = 2
CAPACITY = NUM_WORKERS + 1
NUM_CYCLES = 20
NUM_BACK_TO_BACK = 6  # barriers placed each right after the previous removal
WORKER_WAIT_SECONDS = 0.05  # the workers' BarrierOp poll interval
WORKER_HOOK_TIMEOUT = 20.0  # no worker waits longer for a barrier
CHIEF_HANG_TIMEOUT = 5.0  # the chief's wait_until_all_blocked with the ps hung
CHIEF_POLL_SECONDS = 0.02
PHASE_TIMEOUT = 60.0  # the chief's bound on every wait


def _wait_for(predicate, what, timeout=PHASE_TIMEOUT, poll=CHIEF_POLL_SECONDS):
    wait_for(predicate, what, timeout, poll)


def _variable_info(variables, name_part):
    """Name, device, collections and shared_name of the variable named *name_part*."""
    matches = [v for v in variables if name_part in v.name]
    assert len(matches) == 1, [v.name for v in variables]
    v = matches[0]
    graph = tf.compat.v1.get_default_graph()
    return {
        "name": v.name,
        "device": v.device,
        "shared_name": v.op.get_attr("shared_name").decode(),
        "in_global": v in graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES),
        "in_local": v in graph.get_collection(tf.compat.v1.GraphKeys.LOCAL_VARIABLES),
    }


class _Model:
    """The graph every chief and worker builds, under replica_device_setter."""

    def __init__(self, cluster, job, task, is_chief, callbacks):
        device_setter = tf.compat.v1.train.replica_device_setter(
            worker_device=f"/job:{job}/task:{task}", cluster=cluster
        )
        with tf.compat.v1.device(device_setter):
            self.global_step = tf.compat.v1.train.get_or_create_global_step()
            self.stop = tf.compat.v1.get_variable(
                "stop_training",
                initializer=False,
                trainable=False,
                use_resource=True,
            )
            # hits[i]: how many times worker i ran the barrier callback.
            self.hits = tf.compat.v1.get_variable(
                "callback_hits",
                shape=[CAPACITY],
                dtype=tf.int64,
                initializer=tf.compat.v1.zeros_initializer(),
                trainable=False,
                use_resource=True,
            )
            self.barrier = barrier_ops.BarrierOp(
                CAPACITY,
                is_chief=is_chief,
                wait_seconds=WORKER_WAIT_SECONDS,
                barrier_callbacks=callbacks,
            )
            self.train_op = tf.compat.v1.assign_add(self.global_step, 1)
            self.stop_assign = self.stop.assign(True)
            self.hit_index = tf.compat.v1.placeholder(tf.int32, [])
            self.hit_op = tf.compat.v1.scatter_add(
                self.hits, self.hit_index, tf.constant(1, tf.int64)
            ).op
            self.hits_value = self.hits.read_value()
            self.global_step_value = self.global_step.read_value()


def run_ps(cluster, args):
    server = tf.distribute.Server(cluster, job_name="ps", task_index=args.task)
    server.join()


def run_worker(cluster, args):
    tf.get_logger().setLevel("INFO")  # shows "Waiting for model to be ready"
    index = args.task + 1
    prefix = os.path.join(args.workdir, f"worker-{index}")
    server = tf.distribute.Server(cluster, job_name="worker", task_index=args.task)
    state = {"in_flight": 0}
    holder = {}

    def callback(action, session):
        session.run(holder["model"].hit_op, {holder["model"].hit_index: index})
        append_jsonl(
            prefix + ".callbacks.jsonl",
            {
                "action": action,
                "steps": state["in_flight"],
                "time": time.time(),
            },
        )

    model = _Model(cluster, "worker", args.task, is_chief=False, callbacks=[callback])
    holder["model"] = model
    info = {
        "barrier_var": _variable_info(tf.compat.v1.global_variables(), "barrier_var"),
        "action_var": _variable_info(tf.compat.v1.global_variables(), "barrier_op_action"),
    }
    hook = barrier_ops.BarrierHook(index, model.barrier, timeout=WORKER_HOOK_TIMEOUT)
    config = tf.compat.v1.ConfigProto(device_filters=["/job:ps", f"/job:worker/task:{args.task}"])
    append_jsonl(
        prefix + ".events.jsonl",
        {"event": "entering_mts", "time": time.time()},
    )
    steps = 0
    hang_record = prefix + ".hang.json"
    with tf.compat.v1.train.MonitoredTrainingSession(
        master=server.target,
        is_chief=False,
        hooks=[hook],
        config=config,
        log_step_count_steps=None,
        stop_grace_period_secs=5,
        max_wait_secs=240,
    ) as sess:
        append_jsonl(
            prefix + ".events.jsonl",
            {"event": "session_ready", "time": time.time()},
        )
        while not sess.should_stop():
            state["in_flight"] = steps + 1
            _, stop = sess.run([model.train_op, model.stop])
            steps += 1
            if stop:
                break
            time.sleep(0.01)
        info["steps"] = steps
        write_json(prefix + ".result.json", info)
        # The "hang" phase: no more steps, but the hook still fetches the flag
        # with each run and blocks on the barrier, until the ps stops answering.
        try:
            while not sess.should_stop():
                sess.run(model.stop)
                time.sleep(0.05)
        except barrier_ops.BarrierTimeoutError as e:
            write_json(
                hang_record,
                {
                    "error": type(e).__name__,
                    "message": str(e),
                    "waited_secs": e.waited_secs,
                    "timeout": e.timeout,
                    "time": time.time(),
                },
            )
            raise


def run_chief(cluster, args):
    workdir = args.workdir
    placed_actions = []

    def chief_callback(action, session):
        placed_actions.append(action)

    model = _Model(cluster, "chief", 0, is_chief=True, callbacks=[chief_callback])
    barrier = model.barrier
    result = {
        "barrier_var": _variable_info(tf.compat.v1.local_variables(), "barrier_var"),
        "action_var": _variable_info(tf.compat.v1.local_variables(), "barrier_op_action"),
        "barrier_var_in_chief_globals": any(
            "barrier" in v.name for v in tf.compat.v1.global_variables()
        ),
    }

    def phase(name):
        write_json(os.path.join(workdir, "chief.phase.json"), {"phase": name})

    def worker_records(index):
        return read_jsonl(os.path.join(workdir, f"worker-{index}.callbacks.jsonl"))

    # Initialize only once both workers have found the variables uninitialized
    # inside MonitoredTrainingSession (their log says so) and wait for us.
    server = tf.distribute.Server(cluster, job_name="chief", task_index=0)
    phase("waiting for the workers to wait for initialization")

    def worker_is_waiting(index):
        path = os.path.join(workdir, f"worker-{index}.log")
        if not os.path.exists(path):
            return False
        with open(path, errors="replace") as f:
            return "Waiting for model to be ready" in f.read()

    _wait_for(
        lambda: all(worker_is_waiting(i) for i in range(1, CAPACITY)),
        "the workers to wait for initialization",
        timeout=120,
        poll=0.2,
    )
    result["init_start"] = time.time()
    config = tf.compat.v1.ConfigProto(device_filters=["/job:ps", "/job:chief"])
    with tf.compat.v1.train.MonitoredTrainingSession(
        master=server.target,
        is_chief=True,
        config=config,
        log_step_count_steps=None,
        save_summaries_steps=None,
        save_summaries_secs=None,
        save_checkpoint_secs=None,
        stop_grace_period_secs=5,
    ) as sess:
        result["init_done"] = time.time()
        result["global_step_at_init"] = int(sess.run(model.global_step_value))

        def snapshot(action):
            return {
                "action": action,
                "global_step": int(sess.run(model.global_step_value)),
                "hits": [int(h) for h in sess.run(model.hits_value)],
                "blocked": barrier.get_blocked_indices(sess),
                # What the workers' callbacks had recorded when we saw all blocked.
                "worker_actions": {
                    str(i): [r["action"] for r in worker_records(i)] for i in range(1, CAPACITY)
                },
            }

        def run_barrier(action, hold_secs=0.0):
            barrier.place_barrier(sess, action=action)
            barrier.wait_until_all_blocked(sess, timeout=PHASE_TIMEOUT)
            snap = snapshot(action)
            if hold_secs:
                time.sleep(hold_secs)
                snap["global_step_after_hold"] = int(sess.run(model.global_step_value))
            return snap

        # Phase 1: one barrier with an action.
        phase("wait for the workers to step")
        _wait_for(
            lambda: sess.run(model.global_step_value) >= 2 * NUM_WORKERS,
            "workers stepping",
        )
        phase("first barrier")
        first = run_barrier("sync-1", hold_secs=0.5)
        try:
            barrier.place_barrier(sess, action="again")
            first["second_place_raised"] = False
        except barrier_ops.BarrierAlreadyPlacedError:
            first["second_place_raised"] = True
        barrier.remove_barrier(sess)
        _wait_for(lambda: barrier.is_none_blocked(sess), "none blocked")
        first["after_remove_blocked"] = barrier.get_blocked_indices(sess)
        step = sess.run(model.global_step_value)
        _wait_for(
            lambda: sess.run(model.global_step_value) > step,
            "workers resuming",
        )
        result["first"] = first

        # Phase 2: place/remove cycles back to back.
        cycles = []
        for k in range(NUM_CYCLES):
            phase(f"cycle {k}")
            cycles.append(run_barrier(f"cycle-{k}"))
            barrier.remove_barrier(sess)
            _wait_for(lambda: barrier.is_none_blocked(sess), "none blocked")
        result["cycles"] = cycles

        # Phase 2b: each barrier placed right after the previous one was
        # removed, before the workers (polling every 50 ms) can see it down.
        back_to_back = []
        for k in range(NUM_BACK_TO_BACK):
            phase(f"back to back {k}")
            if k:
                barrier.remove_barrier(sess)
            back_to_back.append(run_barrier(f"b2b-{k}"))
        barrier.remove_barrier(sess)
        _wait_for(lambda: barrier.is_none_blocked(sess), "none blocked")
        result["back_to_back"] = back_to_back

        # Phase 3: a worker is killed while blocked.
        phase("kill")
        kill = run_barrier("kill")
        write_json(os.path.join(workdir, "ready_to_kill"), {})
        _wait_for(
            lambda: os.path.exists(os.path.join(workdir, "killed")),
            "the test to kill worker 2",
        )
        kill["blocked_after_kill"] = barrier.get_blocked_indices(sess)
        barrier.remove_barrier(sess)
        _wait_for(
            lambda: barrier.get_blocked_indices(sess) == [2],
            "worker 1 to unblock",
        )
        kill["blocked_after_remove"] = barrier.get_blocked_indices(sess)
        kill["unblocked_after_remove"] = barrier.get_unblocked_indices(sess)
        step = sess.run(model.global_step_value)
        _wait_for(
            lambda: sess.run(model.global_step_value) >= step + 5,
            "worker 1 stepping after the kill",
        )
        result["kill"] = kill

        # Phase 4: stop; the surviving worker finishes.
        phase("stop")
        sess.run(model.stop_assign)
        _wait_for(
            lambda: os.path.exists(os.path.join(workdir, "workers_done")),
            "the surviving worker to finish",
        )
        result["final_global_step"] = int(sess.run(model.global_step_value))
        result["final_blocked"] = barrier.get_blocked_indices(sess)
        result["chief_callback_actions"] = list(placed_actions)

        # Phase 5: worker 1 (polling, no steps) blocks on "hang"; worker 2 is
        # dead, so the chief's bounded wait names it. Then the test stops the
        # ps: worker 1's wait and the chief's must both end with a timeout.
        phase("hang")
        barrier.place_barrier(sess, action="hang")
        _wait_for(lambda: 1 in barrier.get_blocked_indices(sess), "worker 1 to block")
        try:
            barrier.wait_until_all_blocked(sess, timeout=1.0)
        except barrier_ops.BarrierTimeoutError as e:
            result["hang_wait_error"] = str(e)
        write_json(os.path.join(workdir, "chief.result.json"), result)
        write_json(os.path.join(workdir, "ready_to_hang"), {})
        _wait_for(
            lambda: os.path.exists(os.path.join(workdir, "ps_stopped")),
            "the test to stop the ps",
        )
        start = time.monotonic()
        record = {}
        try:
            barrier.wait_until_all_blocked(sess, timeout=CHIEF_HANG_TIMEOUT)
        except Exception as e:
            record["error"] = type(e).__name__
            record["message"] = str(e)
        record["seconds"] = time.monotonic() - start
        write_json(os.path.join(workdir, "chief.hang.json"), record)
        phase("done")
        # Leaving the session would wait for the stopped ps.
        sys.stdout.flush()
        os._exit(0)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--role", choices=["ps", "chief", "worker"], required=True)
    parser.add_argument("--task", type=int, default=0)
    parser.add_argument("--cluster", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--deadline", type=float, required=True)
    args = parser.parse_args()
    start_watchdog(args.deadline, f"cluster_worker {args.role} {args.task}")
    rc = 0
    try:
        tf.compat.v1.disable_eager_execution()
        cluster = tf.train.ClusterSpec(json.loads(args.cluster))
        {"ps": run_ps, "chief": run_chief, "worker": run_worker}[args.role](cluster, args)
    except BaseException:
        traceback.print_exc()
        rc = 1
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: a live gRPC server can hang it.
    os._exit(rc)


if __name__ == "__main__":
    main()
