# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""The demo training job (examples/recsys_demo.py), end to end, as a subprocess.

Small settings; every run is bounded in time, and afterwards no process of
the demo may be left (each is found by the unique work folder on its command
line).
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "examples", "recsys_demo.py")

pytestmark = pytest.mark.timeout(400)


def _run(args, timeout):
    """Runs the demo; on timeout stops it as a user would (SIGTERM, then KILL)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.Popen(
        [sys.executable, DEMO] + args,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        pytest.fail(f"the demo did not finish in {timeout} s:\n{out[-4000:]}")
    return proc.returncode, out


def _processes_mentioning(text):
    """Pids of live processes whose command line contains `text`."""
    pids = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().decode(errors="replace")
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            pids.append(int(pid))
    return pids


def _assert_no_leftovers(workdir):
    deadline = time.monotonic() + 10
    while _processes_mentioning(workdir) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_mentioning(workdir) == []


def test_help_lists_the_options():
    code, out = _run(["--help"], timeout=60)
    assert code == 0
    for option in ("--workers", "--steps", "--clip-norm", "--resume-steps", "--timeout"):
        assert option in out


def test_demo_trains_places_a_barrier_and_restores(tmp_path):
    workdir = str(tmp_path / "work")
    facts_path = str(tmp_path / "facts.json")
    # The barrier goes up 2 steps before the end: a worker must not finish
    # before it has been through the barrier, or the chief waits in vain.
    code, out = _run(
        [
            "--steps",
            "60",
            "--barrier-at",
            "58",
            "--resume-steps",
            "20",
            "--timeout",
            "240",
            "--workdir",
            workdir,
            "--summary-json",
            facts_path,
        ],
        timeout=300,
    )
    assert code == 0, out[-6000:]
    _assert_no_leftovers(workdir)
    assert "[demo] OK" in out and "Summary" in out
    # Progress lines: step, loss, global norm, steps/s.
    progress = [line for line in out.splitlines() if "steps/s" in line]
    assert progress and all("loss" in line and "global norm" in line for line in progress)

    with open(facts_path) as f:
        facts = json.load(f)
    assert facts["failures"] == []
    assert facts["workers"] == 2
    run1, barrier, run2 = facts["run1"], facts["barrier"], facts["run2"]
    assert run1["final_step"] >= 60
    assert run1["embedding_grad_is_sparse"]
    # The chief's barrier: every worker ran the action once, then blocked.
    assert barrier["placed_at_step"] >= 58
    assert barrier["blocked"] == [0, 1, 2]
    assert barrier["worker_actions"] == {"1": [barrier["action"]], "2": [barrier["action"]]}
    assert barrier["steps_while_held"] == 0
    assert barrier["summaries_flushed"]
    assert barrier["chief_barrier_variable_is_local"]
    # The second run restored the first run's final checkpoint.
    assert run2["restored_checkpoint"] == run1["checkpoint"]
    # The file holds at least the step it is named for (asynchronous workers
    # may step between naming and writing), and the session resumed there.
    assert run2["restored_step"] >= run1["final_step"]
    assert run2["step_after_restore"] >= run2["restored_step"]
    assert run2["final_step"] >= run1["final_step"] + 20
    assert "restore listener: session restored from" in out


def test_a_failed_run_exits_non_zero_and_leaves_no_process(tmp_path):
    workdir = str(tmp_path / "work")
    code, out = _run(["--steps", "60", "--timeout", "4", "--workdir", workdir], timeout=120)
    assert code != 0
    assert "FAILED" in out
    _assert_no_leftovers(workdir)
