# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""Differential tests: thousands of random lists against stock TF.

Lists hold dense tensors (empty ones included), IndexedSlices and None; values
include 0, denormals, tiny and huge numbers, inf and NaN. A mismatch beyond
float rounding fails the test.

Float rounding here includes TensorFlow's flush-to-zero of denormals: TF's
kernels run with denormals flushed, so an output below the smallest normal
number may be 0 on one side and the denormal itself on the other (for example
when the norm is below clip_norm and our outputs are the inputs, untouched).
"""

import numpy as np
import pytest
import tensorflow as tf
from clip_reference import ref_clip
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from monolith_ops import clip_ops

SPECIAL = [
    0.0,
    -0.0,
    1e-45,
    -1e-40,
    1e-38,
    1e-30,
    -1e-30,
    1e30,
    -3e38,
    float("inf"),
    -float("inf"),
    float("nan"),
]
SHAPES = [(), (0,), (1,), (7,), (0, 3), (2, 3), (3, 1, 4), (33,)]
SETTINGS = settings(
    max_examples=2000,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def _elements(dtype, special_weight):
    finite = st.floats(-1e3, 1e3, width=np.finfo(dtype).bits if dtype != np.float64 else 64)
    # Each special value as the dtype holds it, so hypothesis stores it
    # exactly (NumPy < 2, which TF 2.15 needs, compares in float64).
    special = st.sampled_from([float(dtype(v)) for v in SPECIAL])
    return st.one_of(finite, special) if special_weight else finite


@st.composite
def _entry(draw, dtype):
    kind = draw(st.sampled_from(["dense", "dense", "dense", "slices", "none"]))
    special = draw(st.integers(0, 3)) == 0
    if kind == "none":
        return None
    if kind == "dense":
        shape = draw(st.sampled_from(SHAPES))
        return draw(hnp.arrays(dtype, shape, elements=_elements(dtype, special)))
    rows = draw(st.integers(0, 5))
    values = draw(hnp.arrays(dtype, (rows, 3), elements=_elements(dtype, special)))
    indices = draw(hnp.arrays(np.int64, (rows,), elements=st.integers(0, 9)))
    return ("slices", values, indices)


def _lists(dtype):
    return st.tuples(
        st.lists(_entry(dtype), max_size=8),
        st.sampled_from([0.5, 1.0, 4.0, 100.0]) | st.floats(1e-3, 1e3),
    )


def _to_tf(entry):
    if entry is None:
        return None
    if isinstance(entry, tuple):
        return tf.IndexedSlices(
            tf.constant(entry[1]), tf.constant(entry[2]), tf.constant([10, 3], tf.int64)
        )
    return tf.constant(entry)


def _values(x):
    return x.values.numpy() if isinstance(x, tf.IndexedSlices) else x.numpy()


def _assert_close(got, want, rtol):
    tiny = np.finfo(np.float32).tiny
    np.testing.assert_allclose(got, want, rtol=rtol, atol=tiny, equal_nan=True)
    # The same elements are inf, with the same sign.
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want))
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))


def _check_against_tf(entries, clip_norm, rtol):
    t_list = [_to_tf(e) for e in entries]
    ours, norm = clip_ops.clip_by_global_norm(t_list, clip_norm)
    stock, stock_norm = tf.clip_by_global_norm(t_list, clip_norm)
    _assert_close(norm.numpy(), stock_norm.numpy(), rtol)
    _assert_close(clip_ops.global_norm(t_list).numpy(), tf.linalg.global_norm(t_list).numpy(), rtol)
    assert len(ours) == len(stock)
    for got, want, orig in zip(ours, stock, t_list):
        if orig is None:
            assert got is None
            continue
        assert isinstance(got, tf.IndexedSlices) == isinstance(orig, tf.IndexedSlices)
        if isinstance(orig, tf.IndexedSlices):
            assert got.indices is orig.indices
        _assert_close(_values(got), _values(want), rtol)


@SETTINGS
@given(_lists(np.float32))
@pytest.mark.slow
def test_float32_matches_tf(case):
    _check_against_tf(*case, rtol=2e-6)


@settings(SETTINGS, max_examples=500)
@given(_lists(np.float64))
@pytest.mark.slow
def test_float64_matches_tf(case):
    _check_against_tf(*case, rtol=1e-13)


@settings(SETTINGS, max_examples=500)
@given(
    st.sampled_from([np.float16, tf.bfloat16.as_numpy_dtype]),
    st.lists(
        hnp.arrays(np.float32, st.sampled_from(SHAPES), elements=st.floats(-60, 60, width=32)),
        max_size=6,
    ),
    st.floats(0.1, 100.0),
)
def test_16_bit_match_a_float64_reference(dtype, arrays, clip_norm):
    """16-bit lists against the float64 reference (TF itself squares in
    16 bits, so it overflows and loses digits where we do not)."""
    arrays = [a.astype(dtype) for a in arrays]
    want, norm = ref_clip(arrays, clip_norm)
    ours, got_norm = clip_ops.clip_by_global_norm([tf.constant(a) for a in arrays], clip_norm)
    # Machine epsilon and smallest subnormal of the dtype.
    eps, subnormal = (2.0**-10, 2.0**-24) if dtype == np.float16 else (2.0**-7, 2.0**-133)
    # The sum of squares is a float32, which underflows below sqrt(float32
    # tiny); the norm is returned in the 16-bit dtype.
    np.testing.assert_allclose(
        np.float64(got_norm.numpy()),
        norm,
        rtol=eps,
        atol=np.sqrt(np.finfo(np.float32).tiny) + subnormal,
    )
    for got, w in zip(ours, want):
        assert got.dtype == dtype
        np.testing.assert_allclose(
            got.numpy().astype(np.float64),
            w,
            rtol=2 * eps,
            atol=subnormal + np.finfo(np.float32).tiny,
        )
