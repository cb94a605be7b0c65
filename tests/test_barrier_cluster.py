# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""BarrierOp and BarrierHook in a real cluster: ps, chief and two workers.

Each task is a separate process (tests/cluster_worker.py) on 127.0.0.1, with a
`tf.distribute.Server`; variables are placed with `replica_device_setter`, and
each worker runs `MonitoredTrainingSession` with a `BarrierHook`. One cluster
run drives every scenario in order (first barrier, 20 cycles, barriers placed
back to back, a worker killed while blocked, stop, the ps stopped with SIGSTOP
while worker 1 is blocked); the tests below then check what the processes
observed.

Every process has a hard deadline of its own and is killed (with its process
group) when the run ends, also when it fails.

The run takes about 70 s on 2 cores, most of it by design: the workers
enter MonitoredTrainingSession before the chief initializes, find the
variables uninitialized, and TF's SessionManager retries only every 30 s;
and after the ps is stopped, worker 1's wait runs to its 20 s timeout.
"""

import json
import os
import signal
import sys
import time

import pytest

from monolith_ops.testing.local_cluster import LocalCluster, read_json, read_jsonl, write_json

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "cluster_worker.py")
ROOT = os.path.dirname(HERE)

RUN_TIMEOUT = 300.0  # seconds for the whole cluster run, start to end
NUM_CYCLES = 20
NUM_BACK_TO_BACK = 6
WORKER_HOOK_TIMEOUT = 20.0  # as in cluster_worker.py
CHIEF_HANG_TIMEOUT = 5.0  # as in cluster_worker.py
# Room, on a loaded machine, for a wait that raises at its timeout to clear its
# flag (bounded too), log and write its record.
HANG_MARGIN = 15.0

# A suite-wide --timeout must not cut the cluster run, which has its own.
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(RUN_TIMEOUT + 60)]


class _Cluster(LocalCluster):
    """The scenario's tasks, watched; always all killed at the end."""

    def __init__(self, workdir):
        super().__init__(workdir, num_workers=2)
        self.deadline = time.time() + RUN_TIMEOUT

    def start(self):
        tasks = [
            ("ps", "ps", 0),
            ("worker-1", "worker", 0),
            ("worker-2", "worker", 1),
            ("chief", "chief", 0),
        ]
        for name, role, task in tasks:
            self.start_task(
                name,
                [
                    sys.executable,
                    SCRIPT,
                    "--role",
                    role,
                    "--task",
                    str(task),
                    "--cluster",
                    json.dumps(self.spec),
                    "--workdir",
                    self.workdir,
                    "--deadline",
                    str(self.deadline),
                ],
                cwd=ROOT,
            )

    def fail(self, message):
        phase = "?"
        if os.path.exists(self.path("chief.phase.json")):
            phase = read_json(self.path("chief.phase.json"))["phase"]
        parts = [message, "chief phase: " + phase]
        for name, proc in self.procs.items():
            parts.append(f"----- {name} (rc={proc.poll()}) -----\n{self.log_tail(name)}")
        pytest.fail("\n".join(parts))

    def wait_until(self, predicate, what, may_exit=()):
        """Waits for predicate(); fails early if a task dies or time runs out."""
        while not predicate():
            for name, rc in self.exited().items():
                if name not in may_exit:
                    self.fail(f"{name} exited (rc={rc}) while waiting for {what}")
            if time.time() > self.deadline:
                self.fail("cluster run timed out waiting for " + what)
            time.sleep(0.05)

    def stop_ps_and_wait_for(self, records, timeout):
        """SIGSTOPs the ps, then waits up to `timeout` s for the record files.

        Returns {record: its content, or None if it did not come in time}, and
        "after_secs": {record: seconds from the stop to the record's time}.
        """
        self.signal("ps", signal.SIGSTOP)
        stopped_at = time.time()
        _touch(self.path("ps_stopped"))
        while time.time() < stopped_at + timeout and not all(
            os.path.exists(self.path(r)) for r in records
        ):
            time.sleep(0.1)
        found = {
            r: read_json(self.path(r)) if os.path.exists(self.path(r)) else None for r in records
        }
        found["after_secs"] = {
            r: os.path.getmtime(self.path(r)) - stopped_at for r in records if found[r] is not None
        }
        return found


def _touch(path):
    write_json(path, {})


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Runs the whole cluster scenario once; returns what the tasks recorded."""
    cluster = _Cluster(tmp_path_factory.mktemp("barrier_cluster"))
    started = time.monotonic()
    try:
        cluster.start()
        procs = cluster.procs
        cluster.wait_until(
            lambda: os.path.exists(cluster.path("ready_to_kill")),
            "all blocked on the 'kill' barrier",
        )
        cluster.kill("worker-2")
        _touch(cluster.path("killed"))
        cluster.wait_until(
            lambda: os.path.exists(cluster.path("worker-1.result.json")),
            "worker-1 to stop training",
            may_exit={"worker-2"},
        )
        _touch(cluster.path("workers_done"))
        cluster.wait_until(
            lambda: os.path.exists(cluster.path("ready_to_hang")),
            "worker 1 to block on 'hang'",
            may_exit={"worker-2"},
        )
        hang = cluster.stop_ps_and_wait_for(
            ["worker-1.hang.json", "chief.hang.json"],
            WORKER_HOOK_TIMEOUT + HANG_MARGIN,
        )
        result = {
            "chief": read_json(cluster.path("chief.result.json")),
            "worker_result": {
                1: read_json(cluster.path("worker-1.result.json")),
            },
            "worker_events": {
                i: read_jsonl(cluster.path(f"worker-{i}.events.jsonl")) for i in (1, 2)
            },
            "callbacks": {
                i: read_jsonl(cluster.path(f"worker-{i}.callbacks.jsonl")) for i in (1, 2)
            },
            "worker_logs": {i: cluster.log_tail(f"worker-{i}", chars=10**6) for i in (1, 2)},
            "worker_2_rc": procs["worker-2"].returncode,
            "hang": hang,
            "seconds": time.monotonic() - started,
        }
    finally:
        cluster.close()
    return result


_BACK_TO_BACK = [f"b2b-{k}" for k in range(NUM_BACK_TO_BACK)]
# Every barrier the chief places up to the "kill" one, in order.
_ACTIONS = ["sync-1"] + [f"cycle-{k}" for k in range(NUM_CYCLES)] + _BACK_TO_BACK + ["kill"]


def _steps_at(run, action):
    """Steps each worker had run when its callback for *action* ran."""
    steps = {}
    for i, records in run["callbacks"].items():
        matching = [r["steps"] for r in records if r["action"] == action]
        assert len(matching) == 1, (i, action, records)
        steps[i] = matching[0]
    return steps


def test_chief_local_and_worker_global_copy_are_one_ps_variable(run):
    chief = run["chief"]
    worker = run["worker_result"][1]
    for var in ("barrier_var", "action_var"):
        assert chief[var]["in_local"] and not chief[var]["in_global"], chief[var]
        assert worker[var]["in_global"] and not worker[var]["in_local"], worker[var]
        assert chief[var]["name"] == worker[var]["name"]
        assert chief[var]["shared_name"] == worker[var]["shared_name"]
        assert chief[var]["device"].startswith("/job:ps/task:0"), chief[var]
        assert worker[var]["device"] == chief[var]["device"]
    assert not chief["barrier_var_in_chief_globals"]
    # The same variable for real: the chief's flag 0 blocked the workers, and
    # the workers' flags 1 and 2 showed up in the chief's copy.
    assert run["chief"]["first"]["blocked"] == [0, 1, 2]


def test_workers_wait_for_the_chief_to_initialize(run):
    chief = run["chief"]
    for i in (1, 2):
        events = {e["event"]: e["time"] for e in run["worker_events"][i]}
        assert events["entering_mts"] < chief["init_start"], (events, chief)
        assert events["session_ready"] >= chief["init_done"], (events, chief)
        assert "Waiting for model to be ready" in run["worker_logs"][i]
    assert chief["global_step_at_init"] == 0


def test_barrier_blocks_both_workers_and_runs_callback_with_action(run):
    first = run["chief"]["first"]
    assert first["blocked"] == [0, 1, 2]
    # Each worker's callback ran once, with the action, before it counted as
    # blocked: its record and its hit on the ps were there when all were blocked.
    assert first["hits"] == [0, 1, 1]
    for i in ("1", "2"):
        assert first["worker_actions"][i] == ["sync-1"]
    # Blocked at a step boundary: no step ran while the barrier was held.
    assert first["global_step_after_hold"] == first["global_step"]
    assert first["second_place_raised"] is True
    assert first["after_remove_blocked"] == []
    # The chief's own callbacks ran once per place, with the action.
    assert run["chief"]["chief_callback_actions"] == _ACTIONS


def test_global_step_is_the_sum_of_steps_run_at_every_barrier(run):
    chief = run["chief"]
    snapshots = [chief["first"]] + chief["cycles"] + chief["back_to_back"] + [chief["kill"]]
    for snap in snapshots:
        steps = _steps_at(run, snap["action"])
        assert snap["global_step"] == sum(steps.values()), (snap, steps)
    # Both workers made progress between barriers.
    for i in (1, 2):
        steps = [r["steps"] for r in run["callbacks"][i]]
        assert steps == sorted(steps) and steps[-1] > steps[0]


def test_twenty_place_remove_cycles_lose_nothing(run):
    chief = run["chief"]
    cycles = chief["cycles"]
    assert len(cycles) == NUM_CYCLES
    for k, snap in enumerate(cycles):
        assert snap["action"] == f"cycle-{k}"
        assert snap["blocked"] == [0, 1, 2]
        assert snap["hits"] == [0, k + 2, k + 2], snap
        for i in ("1", "2"):
            assert snap["worker_actions"][i][-1] == f"cycle-{k}"
    for i, extra in ((1, ["hang"]), (2, [])):
        assert [r["action"] for r in run["callbacks"][i]] == _ACTIONS + extra


def test_back_to_back_barriers_are_each_run_once_by_every_worker(run):
    """Each barrier placed right after the previous one was removed: the
    workers never saw it down, yet each ran every action exactly once, and
    the chief saw all blocked on each only once both had run it."""
    snaps = run["chief"]["back_to_back"]
    assert [s["action"] for s in snaps] == _BACK_TO_BACK
    first_hits = run["chief"]["cycles"][-1]["hits"][1]
    for k, snap in enumerate(snaps):
        assert snap["blocked"] == [0, 1, 2]
        assert snap["hits"] == [0, first_hits + k + 1, first_hits + k + 1], snap
        for i in ("1", "2"):
            assert snap["worker_actions"][i][-1] == snap["action"]
    for i in (1, 2):
        actions = [r["action"] for r in run["callbacks"][i]]
        assert [a for a in actions if a.startswith("b2b-")] == _BACK_TO_BACK


def test_a_hung_ps_ends_the_waits_at_their_timeout(run):
    """The ps is stopped (SIGSTOP) while worker 1 is blocked: its wait raises
    BarrierTimeoutError within the hook's timeout (plus a margin), and so
    does the chief's wait_until_all_blocked, instead of waiting for the ps."""
    hang = run["hang"]
    worker = hang["worker-1.hang.json"]
    assert worker is not None, (
        f"worker 1 still waited {WORKER_HOOK_TIMEOUT + HANG_MARGIN} s after the ps stopped"
    )
    assert worker["error"] == "BarrierTimeoutError"
    assert worker["timeout"] == WORKER_HOOK_TIMEOUT
    assert worker["waited_secs"] < WORKER_HOOK_TIMEOUT + HANG_MARGIN, worker
    assert hang["after_secs"]["worker-1.hang.json"] < WORKER_HOOK_TIMEOUT + HANG_MARGIN
    chief = hang["chief.hang.json"]
    assert chief is not None, "the chief's wait did not end"
    assert chief["error"] == "BarrierTimeoutError", chief
    assert chief["seconds"] < CHIEF_HANG_TIMEOUT + HANG_MARGIN, chief
    print(
        "after the ps stopped, worker 1 raised in {:.1f} s (timeout {} s), "
        "the chief in {:.1f} s (timeout {} s)".format(
            hang["after_secs"]["worker-1.hang.json"],
            WORKER_HOOK_TIMEOUT,
            chief["seconds"],
            CHIEF_HANG_TIMEOUT,
        )
    )
    # Before the stop, the chief's bounded wait named the dead worker.
    assert "not blocked: [2]" in run["chief"]["hang_wait_error"]


def test_killed_worker_stays_visible_and_does_not_hang_the_others(run):
    kill = run["chief"]["kill"]
    assert kill["blocked"] == [0, 1, 2]
    assert run["worker_2_rc"] == -signal.SIGKILL
    assert kill["blocked_after_kill"] == [0, 1, 2]
    # After removal, worker 1 resumed and cleared its flag; the dead worker's
    # flag stays set, so the chief can tell which index is gone.
    assert kill["blocked_after_remove"] == [2]
    assert kill["unblocked_after_remove"] == [0, 1]
    assert run["chief"]["final_blocked"] == [2]


def test_workers_finish_and_global_step_is_exact(run):
    chief = run["chief"]
    worker_1_steps = run["worker_result"][1]["steps"]
    worker_2_steps = _steps_at(run, "kill")[2]  # it was killed while blocked
    assert worker_1_steps > _steps_at(run, "kill")[1]
    assert chief["final_global_step"] == worker_1_steps + worker_2_steps
    print("cluster run took {:.1f} s".format(run["seconds"]))
