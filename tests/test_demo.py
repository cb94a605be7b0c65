# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""The demo training job (examples/recsys_demo.py), end to end, as a subprocess.

The demo checks nothing itself beyond its tasks' exit codes and its deadline;
what it must show is checked here, on what it prints. Every run is bounded in
time, and afterwards no process of the demo may be left: the demo's temporary
folder is made under the test's own (TMPDIR), and every task names it on its
command line.
"""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "examples", "recsys_demo.py")

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(400)]


def _run(args, tmp_path, timeout, **env):
    """Runs the demo with its temporary folder under `tmp_path`; on timeout
    stops it as a user would (SIGTERM, then KILL). Returns (exit code, output)."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = dict(
        os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", TMPDIR=str(tmp), **env
    )
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


def _assert_no_leftovers(tmp_path):
    """No process names the test's folder, and the demo removed its own."""
    deadline = time.monotonic() + 10
    while _processes_mentioning(str(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_mentioning(str(tmp_path)) == []
    assert os.listdir(tmp_path / "tmp") == []


def _numbers(pattern, text):
    return [tuple(float(g) for g in m.groups()) for m in re.finditer(pattern, text)]


def test_help_names_its_two_options(tmp_path):
    code, out = _run(["--help"], tmp_path, timeout=60)
    assert code == 0
    assert "--steps" in out and "--timeout" in out and "--task" not in out


def test_demo_clips_places_a_barrier_and_restarts_from_its_checkpoint(tmp_path):
    code, out = _run(["--steps", "200", "--timeout", "240"], tmp_path, timeout=300)
    assert code == 0, out[-6000:]
    _assert_no_leftovers(tmp_path)
    assert out.rstrip().splitlines()[-1].startswith("[demo] OK in ")
    run1, run2 = out.split("[demo] run 2:")
    assert "[demo] run 1:" in run1

    # Training with clip_by_global_norm: progress lines with the global norm,
    # and a loss that went down from run 1's start to run 2's end.
    norms = _numbers(r"global step \d+, loss [\d.]+, global norm ([\d.]+)", out)
    assert norms and all(n > 0 for (n,) in norms)
    first = [a for a, _ in _numbers(r"mean loss ([\d.]+) -> ([\d.]+)", run1)]
    last = [b for _, b in _numbers(r"mean loss ([\d.]+) -> ([\d.]+)", run2)]
    assert len(first) == len(last) == 2
    assert max(last) < max(first) - 0.05, (first, last)

    # The barrier: placed once, in run 1; each worker ran the chief's action
    # once, then blocked; the chief saw both blocked and released them.
    assert re.search(r"\[chief\] barrier 'log-step': workers \[1, 2\] blocked", run1)
    assert len(re.findall(r"\[chief\] barrier ", out)) == 1
    (blocked_at,) = _numbers(r"blocked at step (\d+)", run1)
    assert blocked_at[0] >= 100
    for worker in ("worker 1", "worker 2"):
        actions = _numbers(rf"\[{worker}\] barrier action 'log-step' at global step (\d+)", out)
        assert len(actions) == 1 and actions[0][0] <= blocked_at[0], out
        assert f"[{worker}] barrier" not in run2

    # The restart: run 1 started from nothing and saved model.ckpt-N; run 2's
    # restore listener reports that checkpoint, at its step, and trained on.
    assert "[chief] restore listener: started from no checkpoint, global step 0" in run1
    (saved1,) = _numbers(r"\[chief\] saved model\.ckpt-(\d+)", run1)
    assert saved1[0] >= 200
    restored = _numbers(
        r"restore listener: started from model\.ckpt-(\d+), global step (\d+)", run2
    )
    assert restored == [(saved1[0], saved1[0])]
    (saved2,) = _numbers(r"\[chief\] saved model\.ckpt-(\d+)", run2)
    assert saved2[0] >= 300


def test_a_failed_task_fails_the_demo_and_leaves_no_process(tmp_path):
    # Every process of the demo imports this sitecustomize; worker 2 dies at
    # once, and the demo's message carries the end of its log (its stderr).
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import os, sys\n"
        "if b'\"job\": \"worker\", \"index\": 1,' in open('/proc/self/cmdline', 'rb').read():\n"
        "    sys.stderr.write('injected failure\\n')\n"
        "    sys.stderr.flush()\n"
        "    os._exit(7)\n"
    )
    pythonpath = os.pathsep.join(p for p in [str(site), os.environ.get("PYTHONPATH")] if p)
    code, out = _run(["--steps", "200"], tmp_path, timeout=200, PYTHONPATH=pythonpath)
    assert code == 1, out[-4000:]
    assert "[demo] FAILED: run 1: worker-2 failed" in out and "injected failure" in out
    _assert_no_leftovers(tmp_path)


def test_a_run_out_of_time_fails_and_leaves_no_process(tmp_path):
    code, out = _run(["--steps", "200", "--timeout", "4"], tmp_path, timeout=120)
    assert code == 1, out[-4000:]
    assert "[demo] FAILED: run 1: " in out and "failed or timed out" in out
    _assert_no_leftovers(tmp_path)
