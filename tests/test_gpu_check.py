# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""scripts/gpu_check.sh, the GPU check as one call, checked without a GPU.

A stand-in interpreter plays tests/gpu/check_gpu.py (it answers the
script's version queries with the real Python, records every other call and
passes, fails or hangs as each test asks), and a stand-in compute-sanitizer
runs the command it is given. They show that:

* without torch the script fails at once, saying why, with its files
  written and the later phases listed as not run;
* the module is built once: only the env phase runs check_gpu.py without
  --prebuilt, and check_gpu.py --prebuilt never compiles;
* the phases run in order, the sanitizer phase with its four tools (or a
  clear skip), and the script exits 0 only when every phase that ran passed;
* a hung phase is stopped at its limit, the files of the phases that ended
  are kept and the later phases still run;
* the total limit holds, even against a phase that ignores SIGTERM, and the
  phases it leaves no time for are listed as not run;
* a run killed from outside keeps the files of the phases that ended.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GPU_CHECK = os.path.join(ROOT, "scripts", "gpu_check.sh")
CHECK_GPU = os.path.join(ROOT, "tests", "gpu", "check_gpu.py")
PHASES = ("env", "quick", "sanitizer", "large", "timings")
# Seconds allowed past a limit: the script's grace before SIGKILL (3 s) and
# a slow machine's start-up of bash and Python.
MARGIN = 20

# Plays check_gpu.py: FAKE_<PHASE> (build, quick, sanitizer, large, timings)
# says what the phase does: pass (default), fail, hang, or stubborn (hangs
# and ignores SIGTERM); FAKE_PROBES=hang makes the version queries hang.
FAKE_PYTHON = """#!{python}
import os, signal, sys, time
args = sys.argv[1:]
if args[:1] == ["-c"]:
    if os.environ.get("FAKE_PROBES") == "hang":
        time.sleep(600)
    os.execv({python!r}, [{python!r}] + args)
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write(" ".join(args) + "\\n")
phase = args[args.index("--phase") + 1] if "--phase" in args else "all"
if "--out" in args:
    with open(args[args.index("--out") + 1], "w") as f:
        f.write("fake table of " + phase + "\\n")
what = os.environ.get("FAKE_" + phase.upper(), "pass")
print("fake check_gpu.py, phase", phase, what, flush=True)
if what == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if what in ("hang", "stubborn"):
    time.sleep(600)
sys.exit(1 if what == "fail" else 0)
"""

# Plays compute-sanitizer: records its tool and runs the command after
# "--tool TOOL --error-exitcode N".
FAKE_SANITIZER = """#!/bin/sh
echo "$2" >>"$FAKE_LOG.sanitizer"
shift 4
exec "$@"
"""


def _write_exe(path, text):
    path.write_text(text)
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def fake(tmp_path):
    """Environment for the script with the stand-ins, and where they log."""
    python = _write_exe(tmp_path / "python", FAKE_PYTHON.format(python=sys.executable))
    sanitizer = _write_exe(tmp_path / "compute-sanitizer", FAKE_SANITIZER)
    log = tmp_path / "calls.log"
    env = dict(
        os.environ,
        PYTHON=python,
        COMPUTE_SANITIZER=sanitizer,
        FAKE_LOG=str(log),
    )
    return env, log


def _run(tmp_path, env, **changes):
    start = time.monotonic()
    result = subprocess.run(
        ["bash", GPU_CHECK, str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=dict(env, **changes),
        timeout=300,
        check=False,
    )
    return result, time.monotonic() - start


def _summary(tmp_path):
    """{phase: result} from out/summary.md."""
    rows = {}
    for line in (tmp_path / "out" / "summary.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 4 and cells[0] in PHASES:
            rows[cells[0]] = cells[1]
    assert list(rows) == list(PHASES), rows
    return rows


def _calls(log):
    return [line.split() for line in log.read_text().splitlines()]


def _phase_of(call):
    return call[call.index("--phase") + 1]


def test_fails_at_once_without_torch(tmp_path):
    """On a Python without torch: the build fails at once saying why, the
    files are written and the later phases are listed as not run."""
    if subprocess.run([sys.executable, "-c", "import torch"], check=False).returncode == 0:
        pytest.skip("this Python has torch")
    result, took = _run(tmp_path, dict(os.environ, PYTHON=sys.executable))
    out = tmp_path / "out"
    assert result.returncode == 1, result.stdout[-3000:]
    assert took < MARGIN, took
    log = (out / "env.log").read_text()
    assert "gpu_check: torch cannot be imported" in log
    assert "check_gpu: torch cannot be imported (No module named 'torch')" in log, log[-3000:]
    assert "| build | exit status 1 |" in (out / "env.md").read_text()
    rows = _summary(tmp_path)
    assert rows["env"] == "FAIL (exit status 1)"
    assert all(rows[p] == "not run: the build failed" for p in PHASES[1:]), rows
    assert not [p for p in PHASES[1:] if (out / f"{p}.log").exists()]


def test_phases_in_order_and_the_module_built_once(tmp_path, fake):
    env, log = fake
    result, _ = _run(tmp_path, env)
    assert result.returncode == 0, result.stdout[-3000:]
    calls = _calls(log)
    assert [_phase_of(c) for c in calls] == ["build", "quick"] + ["sanitizer"] * 4 + [
        "large",
        "timings",
    ]
    # One build, then every later call imports its module from the same folder.
    build_dir = calls[0][calls[0].index("--build-dir") + 1]
    assert "--prebuilt" not in calls[0]
    for call in calls[1:]:
        assert "--prebuilt" in call and call[call.index("--build-dir") + 1] == build_dir
    tools = (tmp_path / "calls.log.sanitizer").read_text().split()
    assert tools == ["memcheck", "racecheck", "synccheck", "initcheck"]
    out = tmp_path / "out"
    assert all(v == "PASS" for v in _summary(tmp_path).values())
    for phase in PHASES:
        assert (out / f"{phase}.log").exists() and (out / f"{phase}.md").exists(), phase
    assert (out / "quick.md").read_text() == "fake table of quick\n"
    assert "| initcheck | PASS |" in (out / "sanitizer.md").read_text()


def test_prebuilt_never_compiles(tmp_path):
    """check_gpu.py --prebuilt without a built module stops at once, saying
    so, and starts no compiler (an nvcc on PATH records any start)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    marker = tmp_path / "nvcc-ran"
    _write_exe(bin_dir / "nvcc", f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    env.pop("CUDA_HOME", None)
    empty = tmp_path / "build"
    empty.mkdir()
    result = subprocess.run(
        [sys.executable, CHECK_GPU, "--prebuilt", "--build-dir", str(empty), "--phase", "quick"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "no built module" in result.stderr, result.stderr[-2000:]
    assert not marker.exists()


def test_a_failed_phase_fails_the_run_and_the_rest_still_run(tmp_path, fake):
    env, log = fake
    result, _ = _run(tmp_path, env, FAKE_QUICK="fail")
    assert result.returncode == 1
    rows = _summary(tmp_path)
    assert rows["quick"] == "FAIL (exit status 1)"
    assert [rows[p] for p in ("env", "sanitizer", "large", "timings")] == ["PASS"] * 4


def test_no_compute_sanitizer_is_a_clear_skip(tmp_path, fake):
    env, log = fake
    result, _ = _run(tmp_path, env, COMPUTE_SANITIZER=str(tmp_path / "absent"))
    assert result.returncode == 0, result.stdout[-3000:]
    assert _summary(tmp_path)["sanitizer"] == "skipped: compute-sanitizer not found"
    text = (tmp_path / "out" / "sanitizer.md").read_text()
    assert "compute-sanitizer not found" in text and "sanitizer phase skipped" in text
    assert "sanitizer" not in [_phase_of(c) for c in _calls(log)]


@pytest.mark.slow
def test_a_hung_phase_is_stopped_and_the_later_phases_run(tmp_path, fake):
    env, log = fake
    result, took = _run(tmp_path, env, FAKE_QUICK="hang", GPU_CHECK_QUICK_S="3")
    assert result.returncode == 1
    assert took < 3 + MARGIN, took
    rows = _summary(tmp_path)
    assert rows["quick"] == "stopped at its limit of 3 s", rows
    assert [rows[p] for p in ("env", "sanitizer", "large", "timings")] == ["PASS"] * 4
    out = tmp_path / "out"
    assert "fake check_gpu.py, phase quick hang" in (out / "quick.log").read_text()
    assert (out / "env.md").exists() and (out / "timings.md").exists()


@pytest.mark.slow
def test_hung_version_probes_are_stopped_at_the_env_limit(tmp_path, fake):
    env, log = fake
    result, took = _run(tmp_path, env, FAKE_PROBES="hang", GPU_CHECK_ENV_S="3")
    assert result.returncode == 1
    assert took < 3 + MARGIN, took
    rows = _summary(tmp_path)
    assert rows["env"] == "stopped at its limit of 3 s", rows
    assert all(rows[p] == "not run: the build failed" for p in PHASES[1:]), rows
    assert "the probes stopped at the limit of 3 s" in (tmp_path / "out" / "env.md").read_text()
    assert not log.exists()  # check_gpu.py never started


@pytest.mark.slow
def test_the_total_limit_holds_against_a_phase_ignoring_sigterm(tmp_path, fake):
    env, log = fake
    result, took = _run(tmp_path, env, FAKE_LARGE="stubborn", GPU_CHECK_TOTAL_S="10")
    assert result.returncode == 1
    assert took < 10 + MARGIN, took
    rows = _summary(tmp_path)
    assert rows["large"] == "stopped at the total limit of 10 s", rows
    assert rows["timings"] == "not run: the total limit of 10 s was reached", rows
    assert [rows[p] for p in ("env", "quick", "sanitizer")] == ["PASS"] * 3
    assert "timings" not in [_phase_of(c) for c in _calls(log)]


def test_a_run_killed_from_outside_keeps_the_finished_phases(tmp_path, fake):
    env, log = fake
    proc = subprocess.Popen(
        ["bash", GPU_CHECK, str(tmp_path / "out")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(env, FAKE_LARGE="hang"),
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (log.exists() and "--phase large" in log.read_text()):
            assert time.monotonic() < deadline, "the large phase never started"
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    rows = _summary(tmp_path)
    assert [rows[p] for p in ("env", "quick", "sanitizer")] == ["PASS"] * 3
    assert rows["large"] == "running (or cut off)"
    assert rows["timings"] == "not run"
    for phase in ("env", "quick", "sanitizer"):
        assert (tmp_path / "out" / f"{phase}.md").exists(), phase
