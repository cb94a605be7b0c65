# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""benchmarks/run.py in its tiny mode: the table, the result file and the
chart are well-formed, every workload (the clip's, the optimizers', the
demo's step and, with Keras 3, the Keras step) has its rows, and every time
printed is one that something took (positive and finite); the Keras
workload's weight check catches a wrong optimizer, and the workload is
skipped without Keras 3; --merge keeps the rows of the workloads not run.
Nothing here asserts how fast anything is."""

import importlib.util
import json
import math
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = os.path.join(ROOT, "benchmarks", "run.py")


def _run_module():
    spec = importlib.util.spec_from_file_location("benchmark_run", RUN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


run = _run_module()
KERAS3_MISSING = run.keras3_missing()
WORKLOADS = ("dense53", "1000x100", "4x16M", "embedding")
OPS = ("global_norm", "clip_scales", "clip_passes")
# The optimizer workloads, their ops and the floor loop of each op.
OPTIMIZER_OPS = {
    "opt1000x100": {"adam_clips": "adam", "sgd_clips": "sgd"},
    "optdense53": {"adam_clips": "adam", "adam_passes": "adam"},
    "optembedding": {"adagrad_clips": "adagrad"},
    "demo": {"step": "adagrad"},
}
if not KERAS3_MISSING:
    OPTIMIZER_OPS["keras"] = {"step": "adam"}
EXPECTED_ROWS = [(w, op) for w in WORKLOADS for op in OPS]
EXPECTED_ROWS += [(w, op) for w, ops in OPTIMIZER_OPS.items() for op in ops]
HEADER = ["workload", "op", "ours ms", "stock ms", "stock/ours", "floor ms", "ours/floor"]
HEADER += ["inputs ms"]
TIMES = ("ours_ms", "stock_ms", "floor_ms", "inputs_ms", "ours_iqr_ms", "stock_iqr_ms")
NUMBER = re.compile(r"^(\d+(\.\d*)?(e[-+]?\d+)?)x?$")


def table_problems(text):
    """What is wrong with a printed table: a list of strings, empty if none.
    Each row needs a workload, an op and six numbers, each positive and
    finite (a ratio ends in x)."""
    lines = text.strip().splitlines()
    if not lines or re.split(r"\s{2,}", lines[0].strip()) != HEADER:
        return [f"header: {lines[:1]}"]
    problems = []
    for line in lines[2:]:
        cells = line.split()
        if len(cells) != len(HEADER):
            problems.append(f"{len(cells)} cells: {line}")
            continue
        for cell in cells[2:]:
            match = NUMBER.match(cell)
            if not match or not 0 < float(match.group(1)) < math.inf:
                problems.append(f"not a positive finite number: {cell!r} in {line}")
    return problems


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(out folder, stdout) of one tiny run, from a folder outside the tree:
    it runs against the installed package."""
    out = tmp_path_factory.mktemp("benchmark")
    proc = subprocess.run(
        [sys.executable, RUN, "--tiny", "--out", str(out)],
        cwd=str(out),
        capture_output=True,
        text=True,
        timeout=500,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc.stdout


def test_the_table_has_a_row_per_workload_and_op_and_only_positive_times(tiny):
    _, stdout = tiny
    assert table_problems(stdout) == []
    rows = [tuple(line.split()[:2]) for line in stdout.strip().splitlines()[2:]]
    assert rows == EXPECTED_ROWS


def test_the_result_file_holds_positive_finite_times_and_their_ratios(tiny):
    out, _ = tiny
    with open(os.path.join(out, "performance.json")) as f:
        result = json.load(f)
    assert result["command"] == "python benchmarks/run.py --tiny --out " + str(out)
    assert result["machine"]["threads"] >= 1
    assert set(result["rounds"]) == set(WORKLOADS) | set(OPTIMIZER_OPS)
    assert [(r["workload"], r["op"]) for r in result["rows"]] == EXPECTED_ROWS
    for row in result["rows"]:
        for key in TIMES[:4]:
            assert 0 < row[key] < math.inf, (row, key)
        for key in TIMES[4:]:  # an IQR may be 0, never negative
            assert 0 <= row[key] < math.inf, (row, key)
        assert math.isclose(row["stock_over_ours"], row["stock_ms"] / row["ours_ms"], rel_tol=2e-3)
        assert math.isclose(row["ours_over_floor"], row["ours_ms"] / row["floor_ms"], rel_tol=2e-3)
        loop = row["floor"].split(":")[1]
        if row["workload"] in OPTIMIZER_OPS:
            assert loop == OPTIMIZER_OPS[row["workload"]][row["op"]]
            continue
        assert loop in (
            ("clip", "clip_stream", "clip_inplace") if row["op"] == "clip_scales" else ("norm",)
        )


def test_the_chart_is_a_png(tiny):
    out, _ = tiny
    with open(os.path.join(out, "performance.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("bad", ["-0.039", "nan", "n/a", "infx", "0.000"])
def test_a_table_with_a_time_that_nothing_took_is_caught(bad):
    header = "  ".join(HEADER)
    good = "dense53  global_norm  1.2  1.3  1.08x  0.7  1.71x  0.1"
    assert table_problems(f"{header}\n---\n{good}\n") == []
    assert table_problems(f"{header}\n---\n{good.replace('1.2', bad)}\n") != []


def test_help_names_the_modes():
    proc = subprocess.run(
        [sys.executable, RUN, "--help"], capture_output=True, text=True, timeout=60, check=True
    )
    for option in ("--quick", "--tiny", "--workloads", "--threads", "--out"):
        assert option in proc.stdout
    for workload in WORKLOADS + tuple(OPTIMIZER_OPS) + ("keras",):
        assert workload in proc.stdout
    assert "--merge" in proc.stdout


def test_merge_keeps_the_rows_of_the_workloads_not_run(tiny, tmp_path):
    out, _ = tiny
    with open(os.path.join(out, "performance.json")) as f:
        before = json.load(f)
    with open(tmp_path / "performance.json", "w") as f:
        json.dump(before, f)
    proc = subprocess.run(
        [
            sys.executable,
            RUN,
            "--tiny",
            "--workloads",
            "embedding",
            "--merge",
            "--out",
            str(tmp_path),
        ],
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = [tuple(line.split()[:2]) for line in proc.stdout.strip().splitlines()[2:]]
    assert printed == [("embedding", op) for op in OPS]
    with open(tmp_path / "performance.json") as f:
        after = json.load(f)
    assert [(r["workload"], r["op"]) for r in after["rows"]] == EXPECTED_ROWS
    for old, new in zip(before["rows"], after["rows"]):
        if old["workload"] != "embedding":
            assert new == old
    assert after["command"] == before["command"]
    assert after["machine"] == before["machine"]
    merged = after["merged"]
    assert [m["workloads"] for m in merged] == [["embedding"]]
    assert merged[0]["command"].endswith(
        "--tiny --workloads embedding --merge --out " + str(tmp_path)
    )
    with open(tmp_path / "performance.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


keras3 = pytest.mark.skipif(bool(KERAS3_MISSING), reason=str(KERAS3_MISSING))


def _wrong_optimizers():
    """A wrong optimizer each, (learning rate, clip_norm) -> optimizer."""
    import keras

    from monolith_ops.keras import GlobalNormClipOptimizer

    return {
        "adam_unclipped": lambda lr, c: keras.optimizers.Adam(lr),
        "clip_norm_doubled": lambda lr, c: GlobalNormClipOptimizer(
            keras.optimizers.Adam(lr), 2 * c
        ),
        "sgd": lambda lr, c: GlobalNormClipOptimizer(keras.optimizers.SGD(lr), c),
        "no_update": lambda lr, c: keras.optimizers.SGD(0.0),
    }


@keras3
def test_the_keras_weight_check_passes_for_the_wrapper():
    graph = run.KerasGraph(1, tiny=True)
    graph.check()
    graph.steps(4)
    assert graph.compare() == 5
    assert 0 < graph.clip_norm < graph.first_norm
    assert graph.num_elements > 0


@keras3
@pytest.mark.parametrize("wrong", ["adam_unclipped", "clip_norm_doubled", "sgd", "no_update"])
def test_the_keras_weight_check_fails_for_a_wrong_optimizer(wrong):
    graph = run.KerasGraph(1, tiny=True, ours_optimizer=_wrong_optimizers()[wrong])
    with pytest.raises(RuntimeError, match="differ from stock's"):
        graph.check()
    graph.steps(4)  # and still after more steps, as after the timed ones
    with pytest.raises(RuntimeError, match="after 5 steps ours' weights differ"):
        graph.verify()


@keras3
def test_the_keras_weight_check_fails_when_the_step_counts_differ():
    graph = run.KerasGraph(1, tiny=True)
    graph.fns["ours:step"]()
    with pytest.raises(RuntimeError, match="ours took 1 steps, stock 0"):
        graph.compare()


def test_the_keras_workload_is_skipped_without_keras3(tmp_path):
    """A keras package of version 2 ahead on the path, as on TensorFlow
    2.15: the Keras workload says why it is skipped, the others run."""
    fake = tmp_path / "path" / "keras"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('__version__ = "2.15.0"\n')
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "path"))
    out = tmp_path / "out"
    for chosen, rows in (
        (["keras", "embedding"], [("embedding", op) for op in OPS]),
        (["keras"], []),
    ):
        proc = subprocess.run(
            [sys.executable, RUN, "--tiny", "--workloads", *chosen, "--out", str(out)],
            cwd=str(tmp_path),
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "keras: skipped: Keras 3 is not installed (keras 2.15.0" in proc.stderr
        printed = [tuple(line.split()[:2]) for line in proc.stdout.strip().splitlines()[2:]]
        assert printed == rows
    assert "nothing was timed" in proc.stderr
