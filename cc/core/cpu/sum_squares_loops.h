// Copyright 2026 The monolith_ops Authors.
// SPDX-License-Identifier: Apache-2.0
// The baseline loops of the reductions of one run of elements: the sum of
// squares into a block's kLanes lanes, the lanes added up, and the largest
// absolute value. The AVX2 and AVX-512 loops (sum_squares_x86.h) give
// bitwise the same results.
//
// Private to the CPU core (cc/core/clip_core.cc and the headers of
// cc/core/cpu/): an unnamed namespace, as in a source file.
#ifndef MONOLITH_OPS_CC_CORE_CPU_SUM_SQUARES_LOOPS_H_
#define MONOLITH_OPS_CC_CORE_CPU_SUM_SQUARES_LOOPS_H_

#include <cmath>
#include <cstdint>
#include <limits>

#include "cc/core/clip_core.h"
#include "cc/core/cpu/blocks.h"
#include "cc/core/cpu/memory_policy.h"

namespace monolith_ops {
namespace {

template <typename T>
inline __attribute__((always_inline)) void SumSqImpl(const T* x, int64_t n,
                                                     int64_t avail,
                                                     double* acc) {
  int64_t i = 0;
  for (const int64_t stop = PrefetchStop<T>(n, avail); i + kLanes <= stop;
       i += kLanes) {
    PrefetchLanes(x, i);
    for (int j = 0; j < kLanes; ++j) {
      const double v = static_cast<double>(
          static_cast<typename ComputeType<T>::type>(x[i + j]));
      acc[j] += v * v;
    }
  }
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) {
      const double v = static_cast<double>(
          static_cast<typename ComputeType<T>::type>(x[i + j]));
      acc[j] += v * v;
    }
  }
  for (int j = 0; i < n; ++i, ++j) {
    const double v =
        static_cast<double>(static_cast<typename ComputeType<T>::type>(x[i]));
    acc[j] += v * v;
  }
}

double ReduceLanes(double* acc) {
  for (int width = kLanes / 2; width > 0; width /= 2) {
    for (int j = 0; j < width; ++j) acc[j] += acc[j + width];
  }
  return acc[0];
}

// The largest absolute value of x[0, n), in T's compute type (exact), NaN if
// any element is NaN.
template <typename T>
double MaxAbsBase(const T* x, int64_t n) {
  using C = typename ComputeType<T>::type;
  C largest = 0;
  bool nan = false;
  for (int64_t i = 0; i < n; ++i) {
    const C a = std::abs(static_cast<C>(x[i]));
    largest = a > largest ? a : largest;
    nan |= a != a;
  }
  return nan ? std::numeric_limits<double>::quiet_NaN()
             : static_cast<double>(largest);
}

template <typename T>
void SumSqBase(const T* x, int64_t n, int64_t avail, double* acc) {
  SumSqImpl(x, n, avail, acc);
}

}  // namespace
}  // namespace monolith_ops

#endif  // MONOLITH_OPS_CC_CORE_CPU_SUM_SQUARES_LOOPS_H_
