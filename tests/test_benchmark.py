# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""Smoke tests of the benchmark machinery (benchmarks/run.py).

The benchmark is not part of the package: it is loaded here from the
repository's benchmarks/ folder, and imports monolith_ops as installed, as
these tests do.

Tiny sizes and one or two rounds: these check that the benchmark measures what
it says (every expected kernel runs, ours and stock TF agree, the inputs-only
run is subtracted round by round, the compiled floor computes what its loops
say) and that its outputs are well formed. They assert nothing about speed.
"""

import importlib.util
import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import dense_shapes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(ROOT, "benchmarks")


def _load(name):
    """A module of benchmarks/ (which puts its folder on sys.path)."""
    if BENCHMARKS not in sys.path:
        sys.path.insert(0, BENCHMARKS)
    spec = importlib.util.spec_from_file_location(name, os.path.join(BENCHMARKS, name + ".py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


benchmark = _load("run")
steps = sys.modules["steps"]
compiled_floor = sys.modules["compiled_floor"]

pytestmark = pytest.mark.timeout(300)

needs_keras3 = pytest.mark.skipif(
    steps.keras3_missing() is not None, reason=f"Keras row: {steps.keras3_missing()}"
)

# A small Keras model: 2 blocks of width 16, 38 trainable variables.
TINY_KERAS = {"blocks": 2, "width": 16, "batch": 4, "tokens": 4}


def _tiny(name, factor=1000):
    workload = {w.name: w for w in benchmark.default_workloads()}[name]
    return workload.scaled(factor)


def test_built_in_shapes_are_monoliths_53_dense_shapes():
    # Monolith's "large grad" case: 53 tensors, 7,686,760 floats.
    assert benchmark.DENSE_SHAPES == tuple(dense_shapes())
    assert sum(int(np.prod(s)) for s in benchmark.DENSE_SHAPES) == 7_686_760
    workload = benchmark.default_workloads()[0]
    assert workload.num_tensors == 53
    assert workload.num_elements == 7_686_760


UNSCALE_WORKLOADS = ["unscale_f32", "unscale_f16", "unscale_bf16"]


def test_default_workloads_are_the_clipping_then_the_unscale_workloads():
    by_name = {w.name: w for w in benchmark.default_workloads()}
    assert list(by_name) == ["dense53", "1000x100", "4x16M", "embedding"] + UNSCALE_WORKLOADS
    assert by_name["1000x100"].num_tensors == 1000
    assert by_name["1000x100"].num_elements == 100_000
    assert by_name["4x16M"].num_elements == 4 * 16 * 2**20
    assert by_name["embedding"].sparse == (20_000, 64, 1_000_000)
    assert all(by_name[w].kind == benchmark.CLIP for w in list(by_name)[:4])
    # The unscale workloads: the 53 dense shapes in each dtype; the floor
    # runs over the same bytes.
    for name, dtype, itemsize in zip(
        UNSCALE_WORKLOADS, ("float32", "float16", "bfloat16"), (4, 2, 2)
    ):
        workload = by_name[name]
        assert workload.kind == benchmark.UNSCALE and workload.dtype == dtype
        assert workload.shapes == benchmark.DENSE_SHAPES
        assert workload.nbytes == itemsize * 7_686_760
        assert workload.floor_floats == workload.nbytes // 4
        assert workload.ops == benchmark.UNSCALE_OPS
        scaled = workload.scaled(1000)
        assert (scaled.kind, scaled.dtype) == (benchmark.UNSCALE, dtype)


def test_own_times_subtract_the_inputs_only_run_of_the_same_round():
    times = {"inputs": [1.0, 5.0, 2.0], "ours:global_norm": [1.5, 5.25, 3.0]}
    assert benchmark.own_times(times, "ours:global_norm", "inputs") == [0.5, 0.25, 1.0]


def _floor_times(rounds, read_ms=(2.0, 1.0), write_ms=(4.0, 1.5), huge=0.5):
    """Round-robin times of every floor variant: on tensor pages the reading
    loops take read_ms on (1, 2) threads, the scaling loops write_ms, others
    longer; on huge pages every loop takes `huge` times as long."""
    times = {}
    for memory in compiled_floor.MEMORY:
        for loop in compiled_floor.TIMED_LOOPS:
            for k, threads in enumerate((1, 2)):
                ms = 10.0
                if loop in compiled_floor.READ_LOOPS:
                    ms = read_ms[k] + (0.5 if loop == "read_max" else 0.0)
                elif loop in compiled_floor.WRITE_LOOPS:
                    ms = write_ms[k] + (0.0 if loop == "scale_inplace" else 0.25)
                if memory == compiled_floor.HUGE_PAGES:
                    ms *= huge
                variant = compiled_floor.CompiledFloor.variant(memory, loop, threads)
                times[variant] = [ms / 1e3] * rounds
    return times


def test_summarize_uses_paired_medians_and_the_compiled_floor():
    workload = benchmark.Workload("w", "w", [(1000,)])
    rounds = 5
    times = _floor_times(rounds)
    times["inputs"] = [0.100, 0.200, 0.300, 0.400, 0.500]  # drifting baseline
    for op, ours, stock in [
        ("global_norm", 0.001, 0.004),
        ("clip_scales", 0.003, 0.006),
        ("clip_passes", 0.001, 0.005),
    ]:
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
    # The fastest loop on tensor pages: the read, sumsq_f32 on 2 threads
    # (1 ms); the read+write, scale_inplace on 2 threads (1.5 ms). The floor
    # times are the loops' own: nothing is subtracted from them.
    assert floors["read_ms"] == pytest.approx(1.0)
    assert floors["read_by"] == "sumsq_f32:2"
    assert floors["write_ms"] == pytest.approx(1.5)
    assert floors["write_by"] == "scale_inplace:2"
    assert floors["read_GBps"] == pytest.approx(4000 / 1e6)
    assert floors["write_GBps"] == pytest.approx(2 * 4000 / 1.5e6)
    assert floors["loops"]["floor:tensor:read_max:1"]["ms"] == pytest.approx(2.5)
    assert floors["loops"]["floor:huge:read_max:1"]["memory"] == "huge"
    # The same loops on huge pages (twice as fast here), apart.
    assert floors["huge_read_ms"] == pytest.approx(0.5)
    assert floors["huge_read_by"] == "sumsq_f32:2"
    assert floors["huge_write_ms"] == pytest.approx(0.75)
    assert floors["huge_write_by"] == "scale_inplace:2"
    # Floors per op: read; read then read+write; read. The floor is the
    # one on tensor pages; the huge-page floor is beside it.
    assert by_op["global_norm"]["floor_ms"] == pytest.approx(1.0)
    assert by_op["clip_scales"]["floor_ms"] == pytest.approx(2.5)
    assert by_op["clip_passes"]["floor_ms"] == pytest.approx(1.0)
    assert by_op["global_norm"]["ours_floor_fraction"] == pytest.approx(1.0)
    assert by_op["clip_scales"]["ours_floor_fraction"] == pytest.approx(2.5 / 3)
    assert by_op["clip_passes"]["stock_floor_fraction"] == pytest.approx(1.0 / 5)
    assert by_op["global_norm"]["huge_floor_ms"] == pytest.approx(0.5)
    assert by_op["clip_scales"]["huge_floor_ms"] == pytest.approx(1.25)
    assert by_op["clip_passes"]["huge_floor_ms"] == pytest.approx(0.5)
    assert by_op["global_norm"]["ours_huge_floor_fraction"] == pytest.approx(0.5)
    assert by_op["clip_scales"]["ours_huge_floor_fraction"] == pytest.approx(1.25 / 3)
    assert by_op["clip_passes"]["stock_huge_floor_fraction"] == pytest.approx(0.5 / 5)
    assert by_op["clip_scales"]["bytes"] == 12 * 1000
    assert control["ratio"] == pytest.approx(1.0)
    assert base["inputs_only_ms"] == pytest.approx(300.0)
    assert floors["passthrough_ms"] == pytest.approx(0.5)


def test_summarize_an_unscale_workload_against_stock_tf_and_keras():
    workload = benchmark.Workload("u", "u", [(1000,)], dtype="float16", kind=benchmark.UNSCALE)
    rounds = 5
    times = _floor_times(rounds)
    times["inputs"] = [0.100, 0.200, 0.300, 0.400, 0.500]
    for variant, own in [
        (benchmark.OURS_UNSCALE, 0.002),
        (benchmark.STOCK_UNSCALE, 0.006),
        (benchmark.CONTROL_UNSCALE, 0.006),
        (benchmark.KERAS_UNSCALE, 0.010),
        (benchmark.PASSTHROUGH, 0.0005),
    ]:
        times[variant] = [b + own for b in times["inputs"]]
    rows, floors, control, _ = benchmark.summarize(workload, times)
    by_op = {r["op"]: r for r in rows}
    assert list(by_op) == ["unscale_tf", "unscale_keras"]
    assert by_op["unscale_tf"]["baseline"] == "stock TF"
    assert by_op["unscale_keras"]["baseline"] == "Keras 3"
    for row in rows:
        assert row["ours_ms"] == pytest.approx(2.0)
        assert row["dtype"] == "float16"
        # A read, then a read and a write of 2-byte gradients.
        assert row["bytes"] == 3 * 2 * 1000
        assert row["floor_ms"] == pytest.approx(1.0 + 1.5)
        assert row["ours_floor_fraction"] == pytest.approx(2.5 / 2.0)
        assert row["huge_floor_ms"] == pytest.approx(0.5 + 0.75)
        assert row["ours_huge_floor_fraction"] == pytest.approx(1.25 / 2.0)
    assert by_op["unscale_tf"]["speedup"] == pytest.approx(3.0)
    assert by_op["unscale_keras"]["speedup"] == pytest.approx(5.0)
    assert floors["bytes"] == 2 * 1000
    assert control["ratio"] == pytest.approx(1.0) and "unscale" in control["op"]
    # Without Keras' variant (no Keras 3), its row is left out.
    del times[benchmark.KERAS_UNSCALE]
    rows, _, _, _ = benchmark.summarize(workload, times)
    assert [r["op"] for r in rows] == ["unscale_tf"]


def test_the_sum_of_squares_in_double_is_no_floor():
    workload = benchmark.Workload("w", "w", [(1000,)])
    times = _floor_times(3)
    for memory in compiled_floor.MEMORY:  # faster than every other loop
        times[f"floor:{memory}:sumsq_f64:2"] = [0.0001] * 3
    floors = benchmark.floor_summary(workload, times)
    assert floors["read_ms"] == pytest.approx(1.0)
    assert floors["huge_read_ms"] == pytest.approx(0.5)
    assert floors["loops"]["floor:tensor:sumsq_f64:2"]["ms"] == pytest.approx(0.1)


def test_the_floor_on_tensor_pages_is_not_the_fastest_memorys():
    # Huge pages slower than tensor pages (as they may be when the kernel
    # has none to give): each memory's floor is still its own loops'.
    workload = benchmark.Workload("w", "w", [(1000,)])
    floors = benchmark.floor_summary(workload, _floor_times(3, huge=3.0))
    assert floors["read_ms"] == pytest.approx(1.0)
    assert floors["huge_read_ms"] == pytest.approx(3.0)
    assert floors["write_ms"] == pytest.approx(1.5)
    assert floors["huge_write_ms"] == pytest.approx(4.5)


@pytest.mark.parametrize("memory", ["tensor", "huge"])
def test_floor_variant_names_name_the_memory_and_parse_back(memory):
    name = compiled_floor.CompiledFloor.variant(memory, "sumsq_f32", 2)
    assert name == f"floor:{memory}:sumsq_f32:2"
    assert compiled_floor.parse_variant(name) == (memory, "sumsq_f32", 2)


def test_round_robin_takes_the_time_of_self_timed_variants():
    calls = []

    def plain():
        calls.append("plain")

    timed = compiled_floor.SelfTimed(lambda: calls.append("timed") or 123.0)
    times = benchmark.time_round_robin(
        {"plain": plain, "timed": timed}, rounds=3, warmup=1, hot=True
    )
    assert times["timed"] == [123.0] * 3
    assert all(0 <= t < 1 for t in times["plain"])
    assert calls.count("timed") == 1 + 2 * 3  # warm-up, then hot and timed


@pytest.fixture(scope="module")
def floor():
    f = compiled_floor.CompiledFloor(100_003, 2)  # not a multiple of 16
    yield f
    f.close()


def test_compiled_floor_loops_compute_what_they_say(floor):
    n = floor.num_elements
    assert floor.thread_counts() == [1, 2]
    assert floor.lib.floor_pool_size(floor.handle) == 2

    def result(memory, loop, threads):
        before = floor.sink()
        seconds = floor.run(memory, loop, threads)
        assert seconds > 0
        return floor.sink() - before

    exact = {}
    for memory in compiled_floor.MEMORY:
        for threads in (1, 2):
            # The source holds uniform values in [-1, 1): max near 1, E[x^2]
            # 1/3. (The sink adds up each thread's result: each thread's max.)
            assert 0.99 * threads < result(memory, "read_max", threads) < threads
            exact[memory] = result(memory, "sumsq_f64", threads)
            assert exact[memory] == pytest.approx(n / 3, rel=0.02)
            assert result(memory, "sumsq_f32", threads) == pytest.approx(exact[memory], rel=1e-4)
            assert result(memory, "empty", threads) == 0
            for loop in compiled_floor.WRITE_LOOPS:
                out = result(memory, loop, threads)  # one element of the output
                assert math.isfinite(out) and abs(out) < 2
    # Both memories hold the same values.
    assert exact[compiled_floor.TENSOR_PAGES] == exact[compiled_floor.HUGE_PAGES]
    # Scaling in place halves, then doubles: the values stay where they were.
    for memory in compiled_floor.MEMORY:
        for _ in range(10):
            floor.run(memory, "scale_inplace", 2)
        assert result(memory, "sumsq_f64", 2) == pytest.approx(exact[memory], rel=1e-12)
    with pytest.raises(ValueError):
        floor.run("tensor", "read_max", 3)  # more threads than the pool has
    assert floor.lib.floor_run(floor.handle, 1, 1, len(compiled_floor.MEMORY)) == -1


def test_compiled_floor_releases_the_gil_and_is_cached(floor):
    import ctypes  # pylint: disable=import-outside-toplevel

    # ctypes.CDLL (unlike ctypes.PyDLL) releases the GIL around every call.
    assert type(floor.lib) is ctypes.CDLL  # pylint: disable=unidiomatic-typecheck
    path = compiled_floor.library_path()
    assert os.path.exists(path)
    assert compiled_floor.library_path() == path  # built once, then reused
    assert "-march=native" in compiled_floor.flags()
    names = floor.callables()
    assert sorted(names) == sorted(
        f"floor:{memory}:{loop}:{t}"
        for memory in ("tensor", "huge")
        for loop in compiled_floor.TIMED_LOOPS
        for t in (1, 2)
    )
    assert all(getattr(fn, "self_timed", False) for fn in names.values())


def test_transparent_hugepage_mode_is_the_bracketed_one(tmp_path):
    path = tmp_path / "enabled"
    path.write_text("always [madvise] never\n")
    assert benchmark.transparent_hugepage(str(path)) == "madvise"
    assert benchmark.transparent_hugepage(str(tmp_path / "missing")) is None


@pytest.mark.parametrize("hot", [False, True])
def test_round_robin_calls_everything_and_shuffles(hot):
    calls = []
    fns = {name: (lambda name=name: calls.append(name)) for name in "abcd"}
    times = benchmark.time_round_robin(fns, rounds=6, warmup=2, seed=3, hot=hot)
    assert sorted(times) == list("abcd")
    assert all(len(t) == 6 and min(t) >= 0 for t in times.values())
    assert calls[:8] == list("abcdabcd")  # warm-up, in order
    calls = calls[8:]
    if hot:  # each timed call comes right after an untimed one of its own
        assert calls[0::2] == calls[1::2]
        calls = calls[0::2]
    timed = [calls[4 * r : 4 * r + 4] for r in range(6)]
    assert all(sorted(r) == list("abcd") for r in timed)
    assert len({tuple(r) for r in timed}) > 1  # not the same order every round


def test_check_targets_verdicts():
    # The verdicts are taken on tensor pages; the huge-page fractions (here
    # the other way round) are reported beside them.
    rows = [
        {
            "workload": "dense53",
            "op": "global_norm",
            "speedup": 1.3,
            "ours_floor_fraction": 0.9,
            "ours_huge_floor_fraction": 0.6,
        },
        {
            "workload": "dense53",
            "op": "clip_scales",
            "speedup": 1.4,
            "ours_floor_fraction": 0.8,
            "ours_huge_floor_fraction": 0.95,
        },
        {"workload": "embedding", "op": "global_norm", "speedup": 0.8},
        {
            "workload": "1000x100",
            "op": "global_norm",
            "speedup": 12.0,
            "stock_ms": 0.6,
            "floor_ms": 0.003,
        },
    ]
    step = [{"workload": "recsys", "speedup": 1.1}]
    targets = benchmark.check_targets(rows, [], step)
    by_text = {t["target"]: t for t in targets}
    assert len(targets) == 4
    read = by_text["global_norm on the dense shapes >= 85% of the compiled read floor"]
    assert read["met"] and read["value"] == 0.9 and read["unit"] == "of floor"
    assert read["huge_value"] == 0.6
    clip = by_text[
        "a clip that scales on the dense shapes >= 85% of the compiled read + read+write floor"
    ]
    assert not clip["met"] and clip["huge_value"] == 0.95
    slowest = by_text["no op or training step slower than stock (slowest: embedding global_norm)"]
    assert not slowest["met"] and slowest["value"] == 0.8
    tenx = by_text["global_norm on 1,000 x 100 floats >= 10x faster than stock"]
    assert tenx["met"] and tenx["bound"] == pytest.approx(200.0)
    # A NaN is never met, and counts as the slowest.
    rows[3]["speedup"] = float("nan")
    targets = benchmark.check_targets(rows, [], step)
    slowest = [t for t in targets if t["target"].startswith("no op")][0]
    assert "1000x100 global_norm" in slowest["target"] and not slowest["met"]
    assert not [t for t in targets if "10x" in t["target"]][0]["met"]
    # A slow training step counts too.
    rows[3]["speedup"] = 12.0
    rows[2]["speedup"] = 1.2
    step[0]["speedup"] = 0.9
    slowest = [
        t for t in benchmark.check_targets(rows, [], step) if t["target"].startswith("no op")
    ][0]
    assert "recsys training step" in slowest["target"]
    assert tenx["huge_value"] is None
    text = benchmark.format_targets(targets)
    assert "90% of the floor on tensor pages (limit 85%); 60% of the floor on huge pages" in text
    assert "80% of the floor on tensor pages (limit 85%); 95% of the floor on huge pages" in text
    assert "MISSED" in text


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
        clipped = math.sqrt(sum(float(np.sum(np.square(v, dtype=np.float64))) for v in values))
        assert clipped == pytest.approx(graph.norm / 2, rel=1e-5)
    finally:
        graph.close()


# Tolerances of the unscale variants against each other and the exact
# result: a few units in the last place of the dtype; float16's subnormals
# (unscaled gradients below 6e-5) are rounded at 6e-8 apart.
UNSCALE_TOLERANCE = {
    "float32": {"rtol": 1e-5, "atol": 0},
    "float16": {"rtol": 4e-3, "atol": 2e-7},
    "bfloat16": {"rtol": 2e-2, "atol": 0},
}


def _unscale_graph(dtype):
    name = {"float32": "unscale_f32", "float16": "unscale_f16", "bfloat16": "unscale_bf16"}
    return benchmark.WorkloadGraph(_tiny(name[dtype]))


def _unscale_variants():
    variants = [benchmark.OURS_UNSCALE, benchmark.STOCK_UNSCALE, benchmark.CONTROL_UNSCALE]
    if benchmark.keras3() is not None:
        variants.append(benchmark.KERAS_UNSCALE)
    return variants


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_unscale_variants_compute_the_same_unscaled_clipped_gradients(dtype):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    graph = _unscale_graph(dtype)
    try:
        assert benchmark.KERAS_UNSCALE in graph.targets or benchmark.keras3() is None
        for variant in graph.targets:
            graph.check_executed(variant)  # every expected kernel runs
        # The exact result from the stored (scaled) gradients, in float64.
        scaled = graph.session.run(graph.variables[:-1])
        scaled = [np.asarray(g, np.float64) for g in scaled]
        assert graph.session.run(graph.loss_scale) == benchmark.LOSS_SCALE
        unscaled = [g / benchmark.LOSS_SCALE for g in scaled]
        norm = math.sqrt(sum(float(np.sum(np.square(u))) for u in unscaled))
        assert norm == pytest.approx(graph.norm / benchmark.LOSS_SCALE, rel=1e-9)
        # The clip scales: clip_norm is half the unscaled gradients' norm.
        assert graph.clip_norm == pytest.approx(norm / 2, rel=1e-6)
        exact = [u * graph.clip_norm / norm for u in unscaled]
        tolerance = UNSCALE_TOLERANCE[dtype]
        for variant in _unscale_variants():
            clipped, finite = graph.fetch(variant)
            assert bool(finite) is True, variant
            assert len(clipped) == len(exact)
            # Keras divides by its float32 scale: 16-bit gradients come out
            # as float32. The others keep the gradients' dtype.
            out_dtype = "float32" if variant == benchmark.KERAS_UNSCALE else dtype
            for got, want in zip(clipped, exact):
                assert got.dtype == tf.as_dtype(out_dtype).as_numpy_dtype
                np.testing.assert_allclose(
                    np.asarray(got, np.float64), want, err_msg=variant, **tolerance
                )
    finally:
        graph.close()


@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_unscale_variants_flag_a_nonfinite_gradient(bad):
    graph = _unscale_graph("float16")
    try:
        var = graph.variables[3]
        value = graph.session.run(var)
        value.flat[len(value.flat) // 2] = bad
        # Loads the value through the variable's initializer (the graph is
        # finalized: no new op).
        graph.session.run(var.initializer, feed_dict={var.initializer.inputs[1]: value})
        for variant in _unscale_variants():
            _, finite = graph.fetch(variant)
            assert not bool(finite), variant
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


def _tiny_run(out, *workloads):
    """benchmark.main over `workloads`, 2 rounds at 1/1000 size, into `out`."""
    return benchmark.main(
        ["--quick", "--rounds", "2", "--warmup", "1", "--scale", "1000", "--workloads"]
        + list(workloads)
        + ["--out", str(out)]
    )


def test_main_writes_table_json_and_chart(tmp_path, capsys):
    code = _tiny_run(tmp_path, "dense53", "embedding")
    assert code == 0
    out, err = capsys.readouterr()
    assert "stock/ours" in out and "Targets:" in out and "Control" in out
    assert "% of floor" in out and "Compiled floor" in out
    assert "% of huge" in out
    assert re.search(r"tensor pages: +read", out) and re.search(r"huge pages: +read", out)
    assert "round 2/2" in err  # progress lines
    with open(tmp_path / "benchmark.json") as f:
        result = json.load(f)
    assert {(r["workload"], r["op"]) for r in result["rows"]} == {
        (w, op) for w in ("dense53", "embedding") for op in benchmark.OPS
    }
    for row in result["rows"]:
        for key in (
            "ours_ms",
            "ours_iqr_ms",
            "stock_ms",
            "stock_iqr_ms",
            "speedup",
            "ours_GBps",
            "floor_ms",
            "ours_floor_fraction",
            "huge_floor_ms",
            "ours_huge_floor_fraction",
            "stock_huge_floor_fraction",
        ):
            assert key in row
    assert [c["workload"] for c in result["controls"]] == ["dense53", "embedding"]
    assert [f["workload"] for f in result["floors"]] == ["dense53", "embedding"]
    assert result["targets"] and all("met" in t for t in result["targets"])
    assert sorted(result["raw_ms"]) == ["dense53", "embedding"]
    assert len(result["raw_ms"]["dense53"]["inputs"]) == 2  # per round
    assert result["command"].startswith("python benchmarks/run.py")
    assert result["threads"] == benchmark.default_threads()
    for floor in result["floors"]:
        for prefix in ("", "huge_"):
            assert floor[prefix + "read_ms"] > 0 and floor[prefix + "write_ms"] > 0
            assert floor[prefix + "read_by"].split(":")[0] in compiled_floor.READ_LOOPS
    assert {"floor:tensor:sumsq_f32:1", "floor:huge:sumsq_f32:1"} <= set(
        result["raw_ms"]["dense53"]
    )
    assert result["machine"]["tensorflow"]
    assert "transparent_hugepage" in result["machine"]
    png = (tmp_path / "benchmark.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


@needs_keras3
def test_keras_model_has_about_200_trainable_variables():
    import keras  # pylint: disable=import-outside-toplevel

    model = steps.KerasStep._model(keras, 12, 64, 8)  # noqa: WPS437
    assert len(model.trainable_variables) == 198


def _check_step_row(row, result, name, variables):
    stock_v, ours_v, control_v = steps.variants(name)
    assert row["workload"] == name
    assert row["trainable_variables"] == variables
    for key in ("stock_ms", "ours_ms", "control_ms"):
        assert math.isfinite(row[key]) and row[key] > 0
    assert math.isfinite(row["speedup"]) and row["speedup"] > 0
    assert row["speedup"] == pytest.approx(row["stock_ms"] / row["ours_ms"])
    # The check ran before timing: the same update, our kernels in ours only.
    check = row["check"]
    assert check["update_norm"] > 0
    assert check["relative_difference"][ours_v] < 1e-2
    assert check["relative_difference"][control_v] == 0
    assert check["kernels"][ours_v]
    assert not check["kernels"][stock_v]
    # The clip scaled in every step: the norm stayed above clip_norm.
    assert min(row["grad_norm_end"].values()) > row["clip_norm"]
    raw = result["raw_ms"][name]
    assert sorted(raw) == sorted([stock_v, ours_v, control_v])
    assert all(len(times) == 2 for times in raw.values())
    table = benchmark.format_steps([row])
    assert name in table and "stock/ours" in table and "control" in table


@needs_keras3
def test_keras_row_times_both_clips_in_the_same_rounds():
    result = benchmark.run([], rounds=2, warmup=1, steps_to_run={"keras": TINY_KERAS})
    _check_step_row(result["steps"]["keras"], result, "keras", 38)
    assert [t["target"] for t in result["targets"]] == [
        "no op or training step slower than stock (slowest: keras training step)"
    ]


def test_recsys_row_is_the_demos_model_in_graph_mode():
    result = benchmark.run([], rounds=2, warmup=1, steps_to_run=["recsys"])
    row = result["steps"]["recsys"]
    _check_step_row(row, result, "recsys", 7)
    demo = steps.load_demo()
    assert row["rows"] == demo.NUM_USERS + demo.NUM_ITEMS
    assert row["embedding_dim"] == demo.EMBEDDING_DIM
    assert row["embedding_grad"] == "IndexedSlices"
    assert row["batch"] == 256
    # Ours and stock computed the same norm before the first step.
    norms = row["check"]["norms"]
    assert norms["recsys:ours"] == pytest.approx(norms["recsys:stock"], rel=1e-5)
    assert row["check"]["kernels"]["recsys:ours"] == ["MonolithClipByGlobalNormFused"]


@needs_keras3
def test_keras_check_catches_a_different_clip_norm():
    step = steps.KerasStep(**TINY_KERAS)
    step.optimizers[steps.KERAS_OURS].clip_norm = 2 * step.clip_norm
    with pytest.raises(RuntimeError, match="do not compute the same update"):
        step.check()


@needs_keras3
def test_main_runs_the_step_workloads(tmp_path, capsys, monkeypatch):
    tiny = steps.KerasStep
    monkeypatch.setattr(steps, "KerasStep", lambda **kwargs: tiny(**dict(kwargs, **TINY_KERAS)))
    code = _tiny_run(tmp_path, "dense53", "keras", "recsys")
    assert code == 0
    out, err = capsys.readouterr()
    assert "stock/ours" in out and "Whole training steps" in out
    assert "one step: stock" in err  # the progress line
    with open(tmp_path / "benchmark.json") as f:
        result = json.load(f)
    assert sorted(result["steps"]) == ["keras", "recsys"]
    assert result["steps"]["keras"]["ours_ms"] > 0
    assert sorted(result["raw_ms"]) == ["dense53", "keras", "recsys"]
    assert result["settings"]["rounds"] == 2


def test_main_writes_the_unscale_rows(tmp_path, capsys):
    code = _tiny_run(tmp_path, *UNSCALE_WORKLOADS)
    assert code == 0
    out, err = capsys.readouterr()
    assert "unscale_keras" in out and "unscale_tf" in out
    assert "float16 values" in err and "round 2/2" in err
    with open(tmp_path / "benchmark.json") as f:
        result = json.load(f)
    ops = ["unscale_tf"] + (["unscale_keras"] if benchmark.keras3() is not None else [])
    assert [(r["workload"], r["op"]) for r in result["rows"]] == [
        (w, op) for w in UNSCALE_WORKLOADS for op in ops
    ]
    for row in result["rows"]:
        assert row["ours_ms"] == row["ours_ms"] and row["stock_ms"] == row["stock_ms"]
        assert row["floor_ms"] > 0
    assert [c["workload"] for c in result["controls"]] == UNSCALE_WORKLOADS
    for name in UNSCALE_WORKLOADS:
        raw = result["raw_ms"][name]
        assert {benchmark.OURS_UNSCALE, benchmark.STOCK_UNSCALE, benchmark.INPUTS} <= set(raw)
    floors = {f["workload"]: f for f in result["floors"]}
    assert floors["unscale_f16"]["bytes"] * 2 == floors["unscale_f32"]["bytes"]
    assert (tmp_path / "benchmark.png").read_bytes()[:4] == b"\x89PNG"


# The least run of the command: one round of the embedding workload,
# scaled down, no chart.
ONE_ROUND_OF_EMBEDDING = [
    "--quick",
    "--rounds",
    "1",
    "--warmup",
    "0",
    "--scale",
    "1000",
    "--workloads",
    "embedding",
    "--no-chart",
]


def test_main_without_steps_has_no_step_rows(tmp_path):
    assert benchmark.main(ONE_ROUND_OF_EMBEDDING + ["--out", str(tmp_path)]) == 0
    with open(tmp_path / "benchmark.json") as f:
        assert json.load(f)["steps"] == {}


def test_runs_as_a_script_against_the_installed_package(tmp_path):
    """From another folder, as `python benchmarks/run.py`: no in-place build,
    monolith_ops is the installed one."""
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, os.path.join(BENCHMARKS, "run.py")]
        + ONE_ROUND_OF_EMBEDDING
        + ["--out", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "% of floor" in proc.stdout
    with open(out / "benchmark.json") as f:
        assert [r["workload"] for r in json.load(f)["rows"]] == ["embedding"] * 3


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as exc:
        benchmark.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for option in ("--quick", "--rounds", "--out", "--workloads", "keras", "recsys", "--threads"):
        assert option in out


def test_profile_ops_names_the_kernels(capsys):
    profile_ops = _load("profile_ops")
    assert (
        profile_ops.main(
            [
                "--workload",
                "embedding",
                "--runs",
                "2",
                "--variants",
                "ours:global_norm",
                "stock:global_norm",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "GlobalL2Reduce" in out and "L2Loss" in out


def test_pack_ab_builds_both_forms(capsys):
    pack_ab = _load("pack_ab")
    from monolith_ops import clip_ops  # pylint: disable=import-outside-toplevel

    default, n = clip_ops.PACK_ABOVE, clip_ops.CHUNK_SIZE + 6
    assert pack_ab.main(["--build", str(n)]) == 0
    assert clip_ops.PACK_ABOVE == default  # restored
    out = capsys.readouterr().out
    assert f"{n} tensors, packed" in out
    assert f"{n} tensors, one op" in out


def test_thread_scaling_times_every_variant_in_a_fresh_process(capsys):
    thread_scaling = _load("thread_scaling")
    assert thread_scaling.main(["--configs", "1,1", "--runs", "2"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()[1:]
    assert [row.split()[:3] for row in rows] == [
        ["1", "1", "ours"],
        ["1", "1", "stock"],
        ["1", "1", "inputs"],
    ]
    assert all(float(row.split()[3]) > 0 for row in rows)


@pytest.fixture(scope="module")
def core_bench(tmp_path_factory):
    """core_bench built by the build commands in its header, run as written
    by bash (with its outputs in a temporary folder instead of /tmp/)."""
    out = tmp_path_factory.mktemp("core_bench")
    with open(os.path.join(BENCHMARKS, "core_bench.cc")) as f:
        header = f.read().split("// clang-format on", 1)[0].split("// clang-format off", 1)[1]
    commands = [line[len("//   ") :] for line in header.splitlines() if line.startswith("//   ")]
    assert commands[-1].startswith("/tmp/core_bench ")  # the run line, not a build step
    script = "\n".join(["set -e"] + commands[:-1]).replace("/tmp/", f"{out}/")
    # `python` in the commands is this test's Python.
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, check=True)
    path = out / "core_bench"
    assert path.exists()
    return str(path)


def test_core_bench_times_the_core_and_the_floor(core_bench):
    # 300,500 floats: past the core's serial limit, so the blocks go through
    # the interleaved sum and the scaling through core_bench's thread pool.
    result = subprocess.run(
        [core_bench, "2", "3", "100*5", "300000"], capture_output=True, text=True, check=True
    )
    lines = result.stdout.splitlines()
    assert lines[0] == "6 tensors, 300500 floats, 2 threads, 3 rounds"
    match = re.fullmatch(r"sum of squares (\S+), in order (\S+)", lines[1])
    assert match, lines[1]
    values = [
        (np.arange(n) % 1999).astype(np.float32) / np.float32(1999) - np.float32(0.5)
        for n in [100] * 5 + [300000]
    ]
    exact = math.fsum(float(v) ** 2 for x in values for v in x.astype(np.float64))
    for printed in (float(match.group(1)), float(match.group(2))):
        assert printed == pytest.approx(exact, rel=1e-12)
    rows = {}
    for line in lines[2:]:
        match = re.fullmatch(r"(.+?)\s+min\s+([0-9.]+) ms\s+median\s+([0-9.]+) ms", line)
        assert match, line
        rows[match.group(1)] = (float(match.group(2)), float(match.group(3)))
    assert set(rows) == {
        "core SumOfSquares",
        "core Scale",
        "core SumOfSquares, floor's buffer",
        "floor max",
        "floor sum sq. double",
        "floor scale_out",
        "floor scale_stream",
    }
    for low, median in rows.values():
        assert 0 < low <= median


@pytest.mark.parametrize(
    "args, why",
    [
        ([], "too few arguments"),
        (["0", "3", "10"], "THREADS"),
        (["2", "x", "10"], "ROUNDS"),
        (["2", "3", "0"], "bad SIZE 0"),
        (["2", "3", "-5"], "bad SIZE -5"),
        (["2", "3", "10junk"], "bad SIZE 10junk"),
        (["2", "3", "5*x"], "bad SIZE 5*x"),
        (["2", "3", "1*10000000000"], "bad SIZE"),
        (["2", "3", "99999999999999999999"], "bad SIZE"),
    ],
)
def test_core_bench_rejects_bad_arguments(core_bench, args, why):
    result = subprocess.run([core_bench] + args, capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert why in result.stderr
