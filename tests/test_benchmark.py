# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""benchmarks/run.py in its tiny mode: the table, the result file and the
chart are well-formed, every workload (the clip's, the optimizers' and the
demo's step) has its rows, and every time printed is one that something
took (positive and finite). Nothing here asserts how fast anything is."""

import json
import math
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = os.path.join(ROOT, "benchmarks", "run.py")
WORKLOADS = ("dense53", "1000x100", "4x16M", "embedding")
OPS = ("global_norm", "clip_scales", "clip_passes")
# The optimizer workloads, their ops and the floor loop of each op.
OPTIMIZER_OPS = {
    "opt1000x100": {"adam_clips": "adam", "sgd_clips": "sgd"},
    "optdense53": {"adam_clips": "adam", "adam_passes": "adam"},
    "optembedding": {"adagrad_clips": "adagrad"},
    "demo": {"step": "adagrad"},
}
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
    for workload in WORKLOADS + tuple(OPTIMIZER_OPS):
        assert workload in proc.stdout
