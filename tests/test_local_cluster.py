# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""monolith_ops.testing.local_cluster: ports, task processes and their cleanup, JSON
files. The clusters it runs for real are in test_barrier_cluster.py and
test_demo.py; here the tasks are plain Python processes."""

import os
import signal
import sys

import pytest

import monolith_ops
from monolith_ops.testing import local_cluster


def test_free_ports_are_distinct():
    ports = local_cluster.free_ports(4)
    assert len(set(ports)) == 4 and all(p > 0 for p in ports)


def test_spec_has_one_ps_one_chief_and_the_workers(tmp_path):
    cluster = local_cluster.LocalCluster(tmp_path, num_workers=3)
    assert [len(cluster.spec[job]) for job in ("ps", "chief", "worker")] == [1, 1, 3]
    addresses = [a for job in cluster.spec.values() for a in job]
    assert len(set(addresses)) == 5
    assert all(a.startswith("127.0.0.1:") for a in addresses)


def test_json_files(tmp_path):
    path = str(tmp_path / "a.json")
    local_cluster.write_json(path, {"x": [1, 2]})
    assert local_cluster.read_json(path) == {"x": [1, 2]}
    assert not os.path.exists(path + ".tmp")
    lines = str(tmp_path / "b.jsonl")
    assert local_cluster.read_jsonl(lines) == []
    local_cluster.append_jsonl(lines, {"i": 1})
    local_cluster.append_jsonl(lines, {"i": 2})
    assert local_cluster.read_jsonl(lines) == [{"i": 1}, {"i": 2}]


def test_wait_for_names_what_it_waited_for():
    local_cluster.wait_for(lambda: True, "nothing", timeout=1)
    with pytest.raises(TimeoutError, match="the moon"):
        local_cluster.wait_for(lambda: False, "the moon", timeout=0.1, poll=0.01)


def test_task_env_leads_to_this_package():
    env = local_cluster.task_env()
    # The folder that holds the monolith_ops package, not monolith_ops/ itself.
    parent = os.path.dirname(os.path.dirname(os.path.abspath(monolith_ops.__file__)))
    assert env["PYTHONPATH"].split(os.pathsep)[0] == parent
    assert env["CUDA_VISIBLE_DEVICES"] == ""


def _sleeper(seconds=120):
    # A task that would outlive the test, with a child in its process group.
    code = (
        "import subprocess, sys, time\n"
        f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep({seconds})'])\n"
        "print('started', flush=True)\n"
        f"time.sleep({seconds})\n"
    )
    return [sys.executable, "-c", code]


def _group_alive(pgid):
    """Whether a process of group `pgid` is alive (zombies are not)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def test_close_kills_every_process_group_also_a_stopped_one(tmp_path):
    lines = []
    with local_cluster.LocalCluster(tmp_path, num_workers=1) as cluster:
        ps = cluster.start_task("ps", _sleeper())
        worker = cluster.start_task("worker-1", _sleeper(), relay_stdout=lines.append)
        assert os.getpgid(ps.pid) == ps.pid != os.getpgid(0)  # a group of its own
        local_cluster.wait_for(lambda: lines == ["started\n"], "the relayed line", timeout=60)
        cluster.signal("ps", signal.SIGSTOP)
        assert sorted(cluster.alive()) == ["ps", "worker-1"]
        assert cluster.exited() == {}
    assert cluster.alive() == []
    assert ps.returncode == worker.returncode == -signal.SIGKILL
    local_cluster.wait_for(
        lambda: not _group_alive(ps.pid) and not _group_alive(worker.pid),
        "the children to die",
        timeout=30,
    )


def test_log_holds_the_task_output(tmp_path):
    with local_cluster.LocalCluster(tmp_path, num_workers=0) as cluster:
        proc = cluster.start_task(
            "ps", [sys.executable, "-c", "print('hello'); raise SystemExit(4)"]
        )
        proc.wait(timeout=60)
        assert cluster.exited() == {"ps": 4}
        assert "hello" in cluster.log_tail("ps")
    assert cluster.log_tail("nobody") == "<no log>"


def test_close_kills_what_an_exited_task_left_running(tmp_path):
    """The task's first process exits at once; the child it started in the
    background lives on in its group until close()."""
    with local_cluster.LocalCluster(tmp_path, num_workers=0) as cluster:
        proc = cluster.start_task(
            "ps", ["sh", "-c", f"sleep 300 & echo $! > {tmp_path / 'child'}; exit 0"]
        )
        assert proc.wait(timeout=60) == 0
        assert (tmp_path / "child").read_text().strip()  # written before the exit
        assert _group_alive(proc.pid)
    local_cluster.wait_for(lambda: not _group_alive(proc.pid), "the child to die", timeout=30)


def test_a_task_name_is_started_once(tmp_path):
    with local_cluster.LocalCluster(tmp_path, num_workers=0) as cluster:
        cluster.start_task("ps", _sleeper())
        with pytest.raises(ValueError, match="'ps' was started already"):
            cluster.start_task("ps", _sleeper())
