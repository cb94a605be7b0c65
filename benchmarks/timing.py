# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""Round-robin timing and the statistics of the benchmark."""

import time

import numpy as np


def stats(values):
    """(median, interquartile range) of `values`."""
    values = np.asarray(values, dtype=np.float64)
    q1, med, q3 = np.percentile(values, [25, 50, 75])
    return float(med), float(q3 - q1)


def time_round_robin(fns, rounds, warmup, seed=0, progress=None, hot=True):
    """Times every function of `fns` once per round, in a shuffled order.

    Args:
      fns: {name: no-argument callable}. A callable with a true attribute
        `self_timed` times itself and returns its seconds, which are taken
        instead of the time of the call (the compiled floor does so).
      rounds: number of timed rounds.
      warmup: untimed runs of each function first.
      progress: None or callable(round_done, rounds), called after each round.
      hot: if True, each timed call comes right after an untimed call of the
        same function, so that its data is wherever that function leaves it
        (in cache, when it fits) rather than where the previous one left it.

    Returns:
      {name: list of `rounds` durations in seconds}, index r = round r.
    """
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    rng = np.random.default_rng(seed)
    times = {name: [0.0] * rounds for name in names}
    clock = time.perf_counter
    for r in range(rounds):
        for i in rng.permutation(len(names)):
            fn = fns[names[i]]
            if hot:
                fn()
            if getattr(fn, "self_timed", False):
                times[names[i]][r] = fn()
                continue
            start = clock()
            fn()
            times[names[i]][r] = clock() - start
        if progress is not None:
            progress(r + 1, rounds)
    return times


def own_times(times, variant, baseline):
    """Per-round time of `variant` minus that of `baseline`, in seconds."""
    return [a - b for a, b in zip(times[variant], times[baseline])]


def ratio(numerator, denominator):
    """numerator / denominator; NaN unless both are positive."""
    if denominator <= 0 or numerator <= 0:
        return float("nan")
    return numerator / denominator
