# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""Accuracy of the sum of squares against an exact sum and against TF.

The CPU kernel widens every element to double and adds the squares in 16
double lanes per block of 16,384 elements (see the comment at the top of
cc/core/clip_core.h, which states the bound checked here). On adversarial
inputs (wide dynamic range,
many small values and a few large ones, every value equal, lengths around the
lane, sub-block and block boundaries, 10^7 elements, squares that overflow or
underflow float32) this checks, against math.fsum of the exact squares:

- the sum in double (`GlobalL2Reduce` with `Tnorm=float64`) is within the
  bound of clip_core.h: |ours - exact| <= BOUND(n) * exact;
- it is never less accurate than TF's own float32 sum of the same list
  (`2 * add_n(l2_loss)`, as `tf.linalg.global_norm` computes it, and
  `reduce_sum(square)`, the better of the two; 16-bit lists widened to
  float32 first, which is more accurate than TF on them);
- the float32 norm of `clip_ops.global_norm` is never further from the exact
  norm than `tf.linalg.global_norm`'s;
- the bound is not loose beyond use: on these inputs the largest error is
  above 1/100 of it, so a bound 100 times tighter fails.
"""

import math

import numpy as np
import pytest
import tensorflow as tf

from monolith_ops import clip_ops

BF16 = tf.bfloat16.as_numpy_dtype
U_DOUBLE = 2.0**-53
REDUCE_BLOCK = 1 << 14
LANES = 16


def bound(arrays):
    """Relative error bound of clip_core.h for the list `arrays`."""
    n = sum(a.size for a in arrays)
    blocks = -(-n // REDUCE_BLOCK)
    rounded_squares = int(arrays[0].dtype == np.float64)
    roundings = rounded_squares + REDUCE_BLOCK // LANES + len(arrays) + 4 + blocks
    return roundings * U_DOUBLE * 1.01


def _exact_squares(a):
    """Float64 arrays whose sum is exactly the sum of the squares of a."""
    x = a.astype(np.float64).ravel()
    if a.dtype != np.float64:
        return [x * x]  # float32 and 16-bit values square exactly in float64
    c = 134217729.0 * x  # Veltkamp: x = hi + lo, each of at most 26 bits
    hi = c - (c - x)
    lo = x - hi
    return [hi * hi, 2.0 * hi * lo, lo * lo]


def _exact(arrays):
    return math.fsum(math.fsum(p.tolist()) for a in arrays for p in _exact_squares(a))


def _ours(arrays):
    return float(
        clip_ops.ops.global_l2_reduce([tf.constant(a) for a in arrays], Tnorm=tf.float64).numpy()
    )


def _tf_error(arrays, exact):
    """TF's smallest error on the list in float32 (16-bit lists widened)."""
    ts = [tf.constant(a.astype(np.float32)) for a in arrays]
    l2 = 2.0 * float(tf.add_n([tf.nn.l2_loss(t) for t in ts]).numpy())
    rs = float(tf.add_n([tf.reduce_sum(tf.square(t)) for t in ts]).numpy())
    return min(abs(l2 - exact), abs(rs - exact))


def _norm_errors(arrays, exact):
    """|norm - exact norm| of ours and of tf.linalg.global_norm (float32)."""
    ts = [tf.constant(a) for a in arrays]
    exact_norm = math.sqrt(exact)
    ours = float(clip_ops.global_norm(ts).numpy())
    stock = float(tf.linalg.global_norm([tf.cast(t, tf.float32) for t in ts]).numpy())
    return abs(ours - exact_norm), abs(stock - exact_norm)


def _rng(seed):
    return np.random.default_rng(seed)


def _spread(rng, n, lo, hi):
    """n values with random signs and magnitudes 10^U(lo, hi)."""
    return rng.choice([-1.0, 1.0], n) * 10.0 ** rng.uniform(lo, hi, n)


def _cases():
    rng = _rng(0)
    yield "normal-1e7", [rng.normal(0, 1e-2, 10**7).astype(np.float32)]
    yield "wide-range", [_spread(rng, 300_001, -15, 15).astype(np.float32)]
    yield (
        "small-and-large",
        [
            np.full(1_000_003, 1e-3, np.float32),
            np.full(7, 1e3, np.float32),
            rng.normal(0, 1e-4, 65_537).astype(np.float32),
        ],
    )
    yield "equal-0.1", [np.full(1_000_003, 0.1, np.float32)]
    yield "equal-1/3", [np.full(123_457, 1 / 3, np.float32)]
    yield "equal-1e7", [np.full(10**7, 0.7, np.float32)]
    sizes = list(range(1, 66)) + [255, 256, 257, 511, 513, 16383, 16384, 16385, 31, 33]
    yield "boundaries", [rng.normal(0, 1, s).astype(np.float32) for s in sizes]
    yield (
        "boundaries-large",
        [rng.normal(0, 1, s).astype(np.float32) for s in [262_145, 3, 29, 16_385, 255, 100_000]],
    )
    # Squares that overflow float32 next to ordinary ones: summed in double.
    yield (
        "huge",
        [
            rng.normal(0, 1, 20_000).astype(np.float32),
            _spread(rng, 5_000, 19, 30).astype(np.float32),
        ],
    )
    # Squares that underflow float32, alone and next to larger ones.
    yield "tiny", [_spread(rng, 40_000, -25, -20).astype(np.float32)]
    yield (
        "tiny-and-small",
        [
            _spread(rng, 40_000, -25, -20).astype(np.float32),
            np.full(3, 1e-12, np.float32),
        ],
    )
    yield "half-range", [_spread(rng, 200_003, -7, 4.8).astype(np.float16)]
    yield "half-equal", [np.full(500_001, 0.1, np.float16)]
    yield "bfloat16-range", [_spread(rng, 200_003, -30, 30).astype(BF16)]
    yield (
        "bfloat16-huge",
        [
            _spread(rng, 50_000, 25, 38).astype(BF16),
            rng.normal(0, 1, 1000).astype(BF16),
        ],
    )
    yield "bfloat16-equal", [np.full(500_001, 0.1, BF16)]
    yield "float64-range", [_spread(rng, 300_001, -100, 100)]
    yield "float64-equal", [np.full(1_000_003, 0.1)]


CASES = list(_cases())


@pytest.fixture(scope="module")
def results():
    out = {}
    for name, arrays in CASES:
        exact = _exact(arrays)
        ours = _ours(arrays)
        wide = arrays[0].dtype == np.float64
        out[name] = (
            bound(arrays),
            exact,
            ours,
            None if wide else _tf_error(arrays, exact),
            _norm_errors(arrays, exact) if arrays[0].dtype == np.float32 else None,
        )
    return out


@pytest.mark.parametrize("name", [name for name, _ in CASES])
@pytest.mark.slow
def test_within_bound_and_tf(results, name):
    rel_bound, exact, ours, tf_error, norm_errors = results[name]
    assert math.isfinite(ours) and exact > 0
    error = abs(ours - exact)
    assert error <= rel_bound * exact, (name, error / exact, rel_bound)
    if tf_error is not None:  # float64 lists: the bound only
        assert error <= tf_error, (name, error, tf_error)
    # The norms, where TF's float32 sum neither overflows nor underflows.
    if norm_errors is not None and 1e-30 < exact < 1e38:
        assert norm_errors[0] <= norm_errors[1], (name, norm_errors)


def test_bound_is_tight_enough_to_fail(results):
    worst = max(
        abs(ours - exact) / (rel_bound * exact) for rel_bound, exact, ours, _, _ in results.values()
    )
    assert worst > 0.01, worst


def test_norm_matches_the_sum():
    """The float32 norm is sqrt of the double sum rounded to float32."""
    arrays = CASES[1][1]
    ours = _ours(arrays)
    norm = clip_ops.global_norm([tf.constant(a) for a in arrays]).numpy()
    assert norm == np.sqrt(np.float32(ours))
