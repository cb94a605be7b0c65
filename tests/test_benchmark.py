# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""Smoke tests of the benchmark machinery (monolith_ops.benchmark).

Tiny sizes and one or two rounds: these check that the benchmark measures what
it says (every expected kernel runs, ours and stock TF agree, the inputs-only
run is subtracted round by round) and that its outputs are well formed. They
assert nothing about speed.
"""
import json
import math

import numpy as np
import pytest

from monolith_ops import benchmark

from conftest import dense_shapes

pytestmark = pytest.mark.timeout(300)

needs_keras3 = pytest.mark.skipif(
    benchmark.keras3_missing() is not None,
    reason=f"Keras row: {benchmark.keras3_missing()}")

# A small Keras model: 2 blocks of width 16, 38 trainable variables.
TINY_KERAS = {"blocks": 2, "width": 16, "batch": 4, "tokens": 4}


def _tiny(name, factor=1000):
    workload = {w.name: w for w in benchmark.default_workloads()}[name]
    return workload.scaled(factor)


def test_built_in_shapes_are_monoliths_53_dense_shapes():
    assert benchmark.DENSE_SHAPES == tuple(dense_shapes())
    workload = benchmark.default_workloads()[0]
    assert workload.num_tensors == 53
    assert workload.num_elements == 7_686_760


def test_default_workloads_are_the_four_clipping_workloads():
    by_name = {w.name: w for w in benchmark.default_workloads()}
    assert list(by_name) == ["dense53", "1000x100", "4x16M", "embedding"]
    assert by_name["1000x100"].num_tensors == 1000
    assert by_name["1000x100"].num_elements == 100_000
    assert by_name["4x16M"].num_elements == 4 * 16 * 2**20
    assert by_name["embedding"].sparse == (20_000, 64, 1_000_000)


def test_own_times_subtract_the_inputs_only_run_of_the_same_round():
    times = {"inputs": [1.0, 5.0, 2.0], "ours:global_norm": [1.5, 5.25, 3.0]}
    assert benchmark.own_times(times, "ours:global_norm", "inputs") == [
        0.5, 0.25, 1.0]


def test_summarize_uses_paired_medians_and_the_floor():
    workload = benchmark.Workload("w", "w", [(1000,)])
    rounds = 5
    times = {name: [0.010] * rounds for name in benchmark.FLOOR_VARIANTS}
    times["floor:read1"] = [0.002] * rounds
    times["floor:copy1"] = [0.004] * rounds
    times["floor:empty2"] = [0.009] * rounds  # 2 threads: 1 ms after dispatch
    times["inputs"] = [0.100, 0.200, 0.300, 0.400, 0.500]  # drifting baseline
    for op, ours, stock in [("global_norm", 0.001, 0.004),
                            ("clip_scales", 0.003, 0.006),
                            ("clip_passes", 0.001, 0.005)]:
        times["ours:" + op] = [b + ours for b in times["inputs"]]
        times["stock:" + op] = [b + stock for b in times["inputs"]]
    times[benchmark.CONTROL] = list(times["stock:global_norm"])
    times[benchmark.PASSTHROUGH] = [b + 0.0005 for b in times["inputs"]]
    rows, floors, control, base = benchmark.summarize(workload, times)
    by_op = {r["op"]: r for r in rows}
    assert by_op["global_norm"]["ours_ms"] == pytest.approx(1.0)
    assert by_op["global_norm"]["stock_ms"] == pytest.approx(4.0)
    assert by_op["global_norm"]["speedup"] == pytest.approx(4.0)
    assert by_op["clip_scales"]["speedup"] == pytest.approx(2.0)
    assert by_op["global_norm"]["ours_iqr_ms"] == pytest.approx(0.0, abs=1e-9)
    # The faster of 1 and 2 threads: read 1 ms on 2 threads, copy 1 ms too.
    assert floors["read_ms"] == pytest.approx(1.0)
    assert floors["read_threads"] == 2
    assert floors["copy_ms"] == pytest.approx(1.0)
    # Floors per op: read; read + read/write; read.
    assert by_op["global_norm"]["floor_ms"] == pytest.approx(1.0)
    assert by_op["clip_scales"]["floor_ms"] == pytest.approx(2.0)
    assert by_op["global_norm"]["ours_floor_fraction"] == pytest.approx(1.0)
    assert by_op["clip_scales"]["bytes"] == 12 * 1000
    assert control["ratio"] == pytest.approx(1.0)
    assert base["inputs_only_ms"] == pytest.approx(300.0)
    assert floors["passthrough_ms"] == pytest.approx(0.5)


@pytest.mark.parametrize("hot", [False, True])
def test_round_robin_calls_everything_and_shuffles(hot):
    calls = []
    fns = {name: (lambda name=name: calls.append(name)) for name in "abcd"}
    times = benchmark.time_round_robin(fns, rounds=6, warmup=2, seed=3,
                                       hot=hot)
    assert sorted(times) == list("abcd")
    assert all(len(t) == 6 and min(t) >= 0 for t in times.values())
    assert calls[:8] == list("abcdabcd")  # warm-up, in order
    calls = calls[8:]
    if hot:  # each timed call comes right after an untimed one of its own
        assert calls[0::2] == calls[1::2]
        calls = calls[0::2]
    timed = [calls[4 * r:4 * r + 4] for r in range(6)]
    assert all(sorted(r) == list("abcd") for r in timed)
    assert len({tuple(r) for r in timed}) > 1  # not the same order every round


def test_check_targets_verdicts():
    rows = [
        {"workload": "dense53", "op": "global_norm", "speedup": 2.5,
         "ours_floor_fraction": 0.7, "ours_ms": 2.0},
        {"workload": "dense53", "op": "clip_scales", "speedup": 1.6,
         "ours_ms": 9.0},
        {"workload": "dense53", "op": "clip_passes", "speedup": 3.0,
         "ours_ms": 2.2},
        {"workload": "1000x100", "op": "global_norm", "speedup": float("nan"),
         "ours_floor_fraction": 0.5, "ours_ms": -0.01},
    ]
    rows[0].update(stock_ms=3.0, floor_ms=1.5)
    floors = [{"workload": "dense53", "passthrough_ms": 0.5}]
    targets = benchmark.check_targets(rows, floors)
    verdicts = {t["target"]: t["met"] for t in targets}
    bounds = {t["target"]: t["bound"] for t in targets}
    assert bounds["global_norm on the dense shapes >= 2x faster than "
                  "tf.linalg.global_norm"] == pytest.approx(2.0)  # 3.0 / 1.5
    assert bounds["a clip that scales on the dense shapes >= 1.5x faster "
                  "than tf.clip_by_global_norm"] == pytest.approx(16 / 12)
    assert bounds["a clip that does not scale (dense53) costs <= 1.2x our "
                  "own global_norm"] == pytest.approx(0.25)  # 0.5 / 2.0
    assert bounds["global_norm on 1,000 x 100 floats >= 10x faster than "
                  "stock"] is None  # no stock or floor time in that row
    met = [text for text, ok in verdicts.items() if ok]
    missed = [text for text, ok in verdicts.items() if not ok]
    assert any("2x faster" in t for t in met)
    assert any("80% of the read floor" in t for t in missed)
    assert any("10x faster" in t for t in missed)  # NaN is never met
    assert any("1.5x faster" in t for t in met)
    assert any("(dense53) costs <= 1.2x" in t for t in met)


@pytest.mark.parametrize("name", ["dense53", "embedding"])
def test_every_expected_kernel_runs_and_ours_agrees_with_stock(name):
    graph = benchmark.WorkloadGraph(_tiny(name))
    try:
        for variant in graph.targets:
            counts = graph.check_executed(variant)
            assert counts  # the trace saw kernels
        _, ours_norm = graph.fetch("ours:global_norm")
        _, stock_norm = graph.fetch("stock:global_norm")
        assert ours_norm == pytest.approx(stock_norm, rel=1e-5)
        assert ours_norm == pytest.approx(graph.norm, rel=1e-5)
        for op in ("clip_scales", "clip_passes"):
            ours, ours_norm = graph.fetch("ours:" + op)
            stock, stock_norm = graph.fetch("stock:" + op)
            assert ours_norm == pytest.approx(stock_norm, rel=1e-5)
            assert len(ours) == len(stock)
            for a, b in zip(ours, stock):
                if name == "embedding":  # IndexedSlices, never densified
                    np.testing.assert_array_equal(a.indices, b.indices)
                    np.testing.assert_array_equal(a.dense_shape, b.dense_shape)
                    a, b = a.values, b.values
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        # The clip that scales really scales: its output norm is clip_norm.
        ours, _ = graph.fetch("ours:clip_scales")
        values = [o.values if name == "embedding" else o for o in ours]
        clipped = math.sqrt(sum(float(np.sum(np.square(v, dtype=np.float64)))
                                for v in values))
        assert clipped == pytest.approx(graph.norm / 2, rel=1e-5)
    finally:
        graph.close()


def test_a_dropped_kernel_is_caught():
    graph = benchmark.WorkloadGraph(_tiny("dense53"))
    try:
        graph.expected["ours:global_norm"] = {"GlobalL2Reduce": 2}
        with pytest.raises(RuntimeError, match="dropped work"):
            graph.check_executed("ours:global_norm")
    finally:
        graph.close()


def test_main_writes_table_json_and_chart(tmp_path, capsys):
    code = benchmark.main(["--quick", "--rounds", "2", "--warmup", "1",
                           "--scale", "1000", "--workloads", "dense53",
                           "embedding", "--out", str(tmp_path)])
    assert code == 0
    out, err = capsys.readouterr()
    assert "stock/ours" in out and "Targets:" in out and "Control" in out
    assert "round 2/2" in err  # progress lines
    with open(tmp_path / "benchmark.json") as f:
        result = json.load(f)
    assert {(r["workload"], r["op"]) for r in result["rows"]} == {
        (w, op) for w in ("dense53", "embedding") for op in benchmark.OPS}
    for row in result["rows"]:
        for key in ("ours_ms", "ours_iqr_ms", "stock_ms", "stock_iqr_ms",
                    "speedup", "ours_GBps", "floor_ms", "ours_floor_fraction"):
            assert key in row
    assert [c["workload"] for c in result["controls"]] == ["dense53",
                                                           "embedding"]
    assert [f["workload"] for f in result["floors"]] == ["dense53", "embedding"]
    assert result["targets"] and all("met" in t for t in result["targets"])
    assert sorted(result["raw_ms"]) == ["dense53", "embedding"]
    assert len(result["raw_ms"]["dense53"]["inputs"]) == 2  # per round
    assert result["command"].startswith("python -m monolith_ops.benchmark")
    assert result["machine"]["tensorflow"]
    png = (tmp_path / "benchmark.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


@needs_keras3
def test_keras_model_has_about_200_trainable_variables():
    import keras  # pylint: disable=import-outside-toplevel
    model = benchmark.KerasStep._model(keras, 12, 64, 8)  # noqa: WPS437
    assert len(model.trainable_variables) == 198


@needs_keras3
def test_keras_row_times_both_clips_in_the_same_rounds():
    result = benchmark.run([], rounds=2, warmup=1, keras=TINY_KERAS)
    row = result["keras"]
    assert row["trainable_variables"] == 38
    for key in ("stock_ms", "ours_ms", "control_ms"):
        assert math.isfinite(row[key]) and row[key] > 0
    assert math.isfinite(row["speedup"]) and row["speedup"] > 0
    assert row["speedup"] == pytest.approx(row["stock_ms"] / row["ours_ms"])
    # The check ran before timing: the same update, our kernels in ours only.
    check = row["check"]
    assert check["update_norm"] > 0
    assert check["relative_difference"][benchmark.KERAS_OURS] < 1e-2
    assert check["relative_difference"][benchmark.KERAS_CONTROL] == 0
    assert check["kernels"][benchmark.KERAS_OURS]
    assert not check["kernels"][benchmark.KERAS_STOCK]
    # The clip scaled in every step: the norm stayed above clip_norm.
    assert min(row["grad_norm_end"].values()) > row["clip_norm"]
    raw = result["raw_ms"][benchmark.KERAS]
    assert sorted(raw) == sorted([benchmark.KERAS_STOCK, benchmark.KERAS_OURS,
                                  benchmark.KERAS_CONTROL])
    assert all(len(times) == 2 for times in raw.values())
    table = benchmark.format_keras(row)
    assert "Keras global_clipnorm" in table
    assert "GlobalNormClipOptimizer" in table and "stock/ours" in table


@needs_keras3
def test_keras_check_catches_a_different_clip_norm():
    step = benchmark.KerasStep(**TINY_KERAS)
    step.optimizers[benchmark.KERAS_OURS].clip_norm = 2 * step.clip_norm
    with pytest.raises(RuntimeError, match="do not compute the same update"):
        step.check()


@needs_keras3
def test_main_runs_the_keras_workload(tmp_path, capsys, monkeypatch):
    tiny = benchmark.KerasStep
    monkeypatch.setattr(benchmark, "KerasStep",
                        lambda **kwargs: tiny(**dict(kwargs, **TINY_KERAS)))
    code = benchmark.main(["--quick", "--rounds", "2", "--warmup", "1",
                           "--scale", "1000", "--workloads", "dense53",
                           "keras", "--out", str(tmp_path)])
    assert code == 0
    out, err = capsys.readouterr()
    assert "stock/ours" in out and "Keras global_clipnorm" in out
    assert "one step: Keras global_clipnorm" in err  # the progress line
    with open(tmp_path / "benchmark.json") as f:
        result = json.load(f)
    assert result["keras"]["ours_ms"] > 0
    assert sorted(result["raw_ms"]) == ["dense53", "keras"]
    assert result["settings"]["rounds"] == 2


def test_main_without_keras_has_no_keras_row(tmp_path):
    assert benchmark.main(["--quick", "--rounds", "1", "--warmup", "0",
                           "--scale", "1000", "--workloads", "embedding",
                           "--no-chart", "--out", str(tmp_path)]) == 0
    with open(tmp_path / "benchmark.json") as f:
        assert json.load(f)["keras"] is None


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as exc:
        benchmark.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for option in ("--quick", "--rounds", "--out", "--workloads", "keras"):
        assert option in out
