# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""The clip's outputs in memory (cc/core and cc/tf): streaming stores give
the same bits, small outputs share one aligned buffer and feed other ops, an
output outlives the others, large outputs are advised into huge pages,
sizes and offsets past 2^31 elements.
"""

import os
import pickle

import numpy as np
import pytest
import tensorflow as tf
from clip_reference import DTYPES, ODD_SIZES, TOLERANCE, ref_clip
from conftest import installed_package_parent, run_in_mode, run_python

from monolith_ops import clip_ops
from monolith_ops._loader import ops


def _clip_odd_sizes():
    """Our clip (norm above clip_norm) of ODD_SIZES lists in every dtype,
    as {dtype name: list of output bytes}."""
    rng = np.random.default_rng(11)
    results = {}
    for dtype in DTYPES:
        arrays = [rng.standard_normal(n).astype(dtype) for n in ODD_SIZES]
        outs, _ = run_in_mode(
            "graph", lambda *ts: clip_ops.clip_by_global_norm(list(ts), 1.0), *arrays
        )
        results[np.dtype(dtype).name] = [o.tobytes() for o in outs]
    return results


_STREAMED_SCRIPT = """
import pickle, sys
sys.path.insert(0, sys.argv[1])
import test_clip_memory
sys.stdout.buffer.write(pickle.dumps(test_clip_memory._clip_odd_sizes()))
"""


def _python(tmp_path, script, *args, **env):
    """Runs `script` in a fresh interpreter that imports the monolith_ops
    these tests import (not a source tree in the working folder); its
    stdout as bytes."""
    return run_python(
        ["-c", script, *args],
        cwd=tmp_path,
        pythonpath=installed_package_parent(),
        env=env,
        text=False,
    ).stdout


@pytest.mark.slow
def test_streamed_stores_give_bitwise_the_same_outputs(tmp_path):
    """MONOLITH_OPS_STREAM_MIN_BYTES=0 writes every output with streaming
    stores; the values must not change, heads and tails included."""
    here = os.path.dirname(os.path.abspath(__file__))
    streamed = pickle.loads(
        _python(tmp_path, _STREAMED_SCRIPT, here, MONOLITH_OPS_STREAM_MIN_BYTES="0")
    )
    cached = _clip_odd_sizes()  # 1.3 MB at most: below the default threshold
    assert streamed.keys() == cached.keys()
    for name, outs in cached.items():
        assert [len(o) for o in streamed[name]] == [len(o) for o in outs]
        for i, (a, b) in enumerate(zip(streamed[name], outs)):
            assert a == b, f"{name} output {i} differs when streamed"


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_small_outputs_sharing_one_buffer_feed_other_ops(dtype):
    """Small outputs are aligned slices of one buffer, large ones are not:
    both must work as inputs of ordinary kernels, which assume alignment."""
    rng = np.random.default_rng(12)
    sizes = (1, 3, 30000, 17, 0, 64, 5)  # 30000 x 8 bytes is above 64 KiB
    arrays = [rng.standard_normal(n).astype(dtype) for n in sizes]

    def clip_then_use(*ts):
        ours, _ = clip_ops.clip_by_global_norm(list(ts), 1.0)
        stock, _ = tf.clip_by_global_norm(list(ts), 1.0)

        def use(t):
            return tf.reduce_sum(tf.cast(t * 2, tf.float64))

        return [use(t) for t in ours], [use(t) for t in stock], ours, stock

    for mode in ("graph", "eager"):
        used, stock_used, ours, stock = run_in_mode(mode, clip_then_use, *arrays)
        rtol = TOLERANCE[dtype]
        for got, want in zip(ours, stock):
            np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=rtol)
        np.testing.assert_allclose(used, stock_used, rtol=rtol, atol=1e-6)


def test_an_output_outlives_the_others():
    """Dropping all but one output of a clip leaves that one intact."""
    rng = np.random.default_rng(13)
    arrays = [rng.standard_normal(n).astype(np.float32) for n in (7, 9, 11)]
    want, _ = ref_clip(arrays, 1.0)
    outs, _ = clip_ops.clip_by_global_norm([tf.constant(a) for a in arrays], 1.0)
    kept = outs[1]
    del outs
    filler = [tf.fill([9], 123.0) for _ in range(100)]  # reuse freed memory
    np.testing.assert_allclose(kept.numpy(), want[1], rtol=1e-6)
    assert all(f.numpy()[0] == 123.0 for f in filler)


_HUGE_PAGES_SCRIPT = """
import sys
import numpy as np
import tensorflow as tf
from monolith_ops import clip_ops
# Graph mode: eager mode's own allocations may already be huge pages.
with tf.Graph().as_default():
    x = tf.compat.v1.Variable(tf.ones([1 << 24]), use_resource=True)  # 64 MiB
    (out,), _ = clip_ops.clip_by_global_norm([x.value()], 1.0)  # norm 4096
    with tf.compat.v1.Session() as sess:
        sess.run(x.initializer)
        values = sess.run(out)  # shares the output's memory
assert values[0] == np.float32(1 / 4096), values[0]
begin = values.__array_interface__["data"][0]
end = begin + values.nbytes
huge_kb = 0  # over every mapping the output overlaps (advice splits them)
with open("/proc/self/smaps") as f:
    inside = False
    for line in f:
        fields = line.split()
        if "-" in fields[0] and len(fields) >= 5:
            lo, hi = (int(v, 16) for v in fields[0].split("-"))
            inside = lo < end and begin < hi
        elif inside and fields[0] == "AnonHugePages:":
            huge_kb += int(fields[1])
print(huge_kb)
"""


def _thp_mode():
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return f.read().split("[")[1].split("]")[0]
    except (OSError, IndexError):
        return None


@pytest.mark.skipif(_thp_mode() != "madvise", reason="needs transparent huge pages in madvise mode")
@pytest.mark.slow
def test_large_outputs_are_advised_into_huge_pages(tmp_path):
    """A fresh 64 MiB output lands in huge pages when the kernel is asked to
    (THP "madvise" mode), and not with MONOLITH_OPS_HUGE_PAGES=0."""

    def huge_kb(**env):
        return int(_python(tmp_path, _HUGE_PAGES_SCRIPT, **env).split()[-1])

    assert huge_kb() >= 32 * 1024
    assert huge_kb(MONOLITH_OPS_HUGE_PAGES="0") == 0


@pytest.mark.slow
def test_more_than_2_pow_31_elements():
    """Sizes and offsets are 64-bit: a 2^31 + 24 element half tensor."""
    n = 2**31 + 24
    with tf.Graph().as_default():
        big = tf.ones([n], tf.float16)
        two = tf.constant([2.0], tf.float16)
        sq = ops.global_l2_reduce([two, big], Tnorm=tf.float64)
        with tf.compat.v1.Session() as sess:
            got = sess.run(sq)
    assert got == n + 4.0
