// Copyright 2026 The monolith_ops Authors.
// SPDX-License-Identifier: Apache-2.0
// The AVX2 and AVX-512 loops of the reductions of one run of elements:
// the sum of squares into a block's kLanes lanes and the largest absolute
// value, bitwise those of the baseline loops (sum_squares_loops.h). x86
// only: included where MONOLITH_OPS_X86 is 1.
//
// Private to the CPU core (cc/core/clip_core.cc and the headers of
// cc/core/cpu/): an unnamed namespace, as in a source file.
#ifndef MONOLITH_OPS_CC_CORE_CPU_SUM_SQUARES_X86_H_
#define MONOLITH_OPS_CC_CORE_CPU_SUM_SQUARES_X86_H_

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>

#include "Eigen/Core"
#include "cc/core/clip_decision.h"
#include "cc/core/cpu/blocks.h"
#include "cc/core/cpu/isa.h"
#include "cc/core/cpu/memory_policy.h"
#include "cc/core/cpu/sum_squares_loops.h"

namespace monolith_ops {
namespace {

template <typename T>
__attribute__((target("avx2,f16c,fma"))) void SumSqAvx2(const T* x, int64_t n,
                                                        int64_t avail,
                                                        double* acc) {
  SumSqImpl(x, n, avail, acc);
}
// Loads of elements widened to float, exactly: float, and half and bfloat16
// by instructions (Eigen converts half with F16C only when the whole file is
// compiled for it, and its portable conversion costs more than the memory
// it reads). Load4 reads 4 elements, Load8 8.
template <typename T>
__m128 Load4(const T* x);
template <>
__attribute__((target(MONOLITH_OPS_AVX2), always_inline)) inline __m128 Load4(
    const float* x) {
  return _mm_loadu_ps(x);
}
template <>
__attribute__((target(MONOLITH_OPS_AVX2), always_inline)) inline __m128 Load4(
    const Eigen::half* x) {
  return _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(x)));
}
template <>
__attribute__((target(MONOLITH_OPS_AVX2), always_inline)) inline __m128 Load4(
    const Eigen::bfloat16* x) {
  const __m128i bits =
      _mm_cvtepu16_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(x)));
  return _mm_castsi128_ps(_mm_slli_epi32(bits, 16));
}
// The last 1 to 3 elements, the lanes past them +0.0.
template <typename T>
__attribute__((target(MONOLITH_OPS_AVX2), always_inline)) inline __m128
Load4Tail(const T* x, int64_t left) {
  static_assert(sizeof(T) == 2, "16-bit types; float has its own");
  alignas(16) uint16_t bits[4] = {0, 0, 0, 0};
  std::memcpy(bits, x, left * sizeof(T));
  return Load4(reinterpret_cast<const T*>(bits));
}
template <>
__attribute__((target(MONOLITH_OPS_AVX2), always_inline)) inline __m128
Load4Tail(const float* x, int64_t left) {
  const __m128i lane = _mm_setr_epi32(0, 1, 2, 3);
  const __m128i count = _mm_set1_epi32(static_cast<int>(left));
  return _mm_maskload_ps(x, _mm_cmpgt_epi32(count, lane));
}

// float, half and bfloat16 by hand: the same lanes and the same additions
// as SumSqImpl, so the result is bitwise that of the baseline loop. (A fused
// multiply-add rounds once where SumSqImpl rounds the square and then the
// sum; the square of a float, half or bfloat16 is exact in double, so both
// round the same sum once.) The lanes are the kLanes / 4 registers a. The last
// n % kLanes elements go to lanes 0, 1, ... as in SumSqImpl; lanes past the
// end add +0.0, which leaves an accumulator unchanged (it is never -0.0: it
// starts at +0.0 and only squares are added to it).
template <typename T>
__attribute__((target(MONOLITH_OPS_AVX2), always_inline)) inline void
AddSquaresAvx2(const T* x, int64_t n, int64_t avail, __m256d* a) {
  int64_t i = 0;
  for (const int64_t stop = PrefetchStop<T>(n, avail); i + kLanes <= stop;
       i += kLanes) {
    PrefetchLanes(x, i);
    for (int k = 0; k < kLanes / 4; ++k) {
      const __m256d v = _mm256_cvtps_pd(Load4(x + i + 4 * k));
      a[k] = _mm256_fmadd_pd(v, v, a[k]);
    }
  }
  for (; i + kLanes <= n; i += kLanes) {
    for (int k = 0; k < kLanes / 4; ++k) {
      const __m256d v = _mm256_cvtps_pd(Load4(x + i + 4 * k));
      a[k] = _mm256_fmadd_pd(v, v, a[k]);
    }
  }
  for (int k = 0; i < n; ++k, i += 4) {
    const __m256d v =
        _mm256_cvtps_pd(n - i >= 4 ? Load4(x + i) : Load4Tail(x + i, n - i));
    a[k] = _mm256_fmadd_pd(v, v, a[k]);
  }
}
template <typename T>
__attribute__((target(MONOLITH_OPS_AVX2))) void SumSqLanesAvx2(const T* x,
                                                               int64_t n,
                                                               int64_t avail,
                                                               double* acc) {
  __m256d a[kLanes / 4];
  for (int k = 0; k < kLanes / 4; ++k) a[k] = _mm256_loadu_pd(acc + 4 * k);
  AddSquaresAvx2(x, n, avail, a);
  for (int k = 0; k < kLanes / 4; ++k) _mm256_storeu_pd(acc + 4 * k, a[k]);
}
#define MONOLITH_OPS_SUMSQ_BY_HAND(T, Isa)                                \
  template <>                                                             \
  void SumSq##Isa<T>(const T* x, int64_t n, int64_t avail, double* acc) { \
    SumSqLanes##Isa(x, n, avail, acc);                                    \
  }
MONOLITH_OPS_SUMSQ_BY_HAND(float, Avx2)
MONOLITH_OPS_SUMSQ_BY_HAND(Eigen::half, Avx2)
MONOLITH_OPS_SUMSQ_BY_HAND(Eigen::bfloat16, Avx2)

// The largest absolute value, float, half and bfloat16 by hand: maxima are
// exact, so in any order they are bitwise MaxAbsBase's. max_ps(a, m) keeps m
// when a is NaN; NaNs are noted apart.
template <typename T>
__attribute__((target(MONOLITH_OPS_AVX2))) double MaxAbsLanesAvx2(const T* x,
                                                                  int64_t n) {
  const __m128 sign = _mm_set1_ps(-0.0f);
  __m128 m[4] = {_mm_setzero_ps(), _mm_setzero_ps(), _mm_setzero_ps(),
                 _mm_setzero_ps()};
  __m128 unordered = _mm_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    for (int k = 0; k < 4; ++k) {
      const __m128 a = _mm_andnot_ps(sign, Load4(x + i + 4 * k));
      m[k] = _mm_max_ps(a, m[k]);
      unordered = _mm_or_ps(unordered, _mm_cmpunord_ps(a, a));
    }
  }
  const __m128 both =
      _mm_max_ps(_mm_max_ps(m[0], m[1]), _mm_max_ps(m[2], m[3]));
  alignas(16) float lanes[4];
  _mm_store_ps(lanes, both);
  double largest = MaxAbsBase(x + i, n - i);
  for (float lane : lanes) largest = MaxOrNaN(largest, lane);
  return _mm_movemask_ps(unordered) != 0
             ? std::numeric_limits<double>::quiet_NaN()
             : largest;
}
template <typename T>
double MaxAbsAvx2(const T* x, int64_t n) {
  return MaxAbsBase(x, n);
}
#define MONOLITH_OPS_MAXABS_BY_HAND(T)          \
  template <>                                   \
  double MaxAbsAvx2<T>(const T* x, int64_t n) { \
    return MaxAbsLanesAvx2(x, n);               \
  }
MONOLITH_OPS_MAXABS_BY_HAND(float)
MONOLITH_OPS_MAXABS_BY_HAND(Eigen::half)
MONOLITH_OPS_MAXABS_BY_HAND(Eigen::bfloat16)
#undef MONOLITH_OPS_MAXABS_BY_HAND

// AVX-512: the same lanes, operations and order again. double is SumSqImpl
// compiled for AVX-512; float, half and bfloat16 by hand, the kLanes lanes
// being two registers of eight doubles, the last n % kLanes elements loaded
// under masks into lanes 0, 1, ... as in AddSquaresAvx2.
template <typename T>
__attribute__((target(MONOLITH_OPS_AVX512))) void SumSqAvx512(const T* x,
                                                              int64_t n,
                                                              int64_t avail,
                                                              double* acc) {
  SumSqImpl(x, n, avail, acc);
}
// 8 elements widened to float; lanes outside `mask` are +0.0.
template <typename T>
__m256 Load8(const T* x, __mmask8 mask);
template <>
__attribute__((target(MONOLITH_OPS_AVX512), always_inline)) inline __m256 Load8(
    const float* x, __mmask8 mask) {
  return _mm256_maskz_loadu_ps(mask, x);
}
template <>
__attribute__((target(MONOLITH_OPS_AVX512), always_inline)) inline __m256 Load8(
    const Eigen::half* x, __mmask8 mask) {
  return _mm256_cvtph_ps(_mm_maskz_loadu_epi16(mask, x));
}
template <>
__attribute__((target(MONOLITH_OPS_AVX512), always_inline)) inline __m256 Load8(
    const Eigen::bfloat16* x, __mmask8 mask) {
  const __m256i bits = _mm256_cvtepu16_epi32(_mm_maskz_loadu_epi16(mask, x));
  return _mm256_castsi256_ps(_mm256_slli_epi32(bits, 16));
}
template <typename T>
__attribute__((target(MONOLITH_OPS_AVX512), always_inline)) inline void
AddSquaresAvx512(const T* x, int64_t n, int64_t avail, __m512d* a) {
  static_assert(kLanes == 16, "two registers of eight lanes");
  constexpr __mmask8 kAll = 0xff;
  int64_t i = 0;
  for (const int64_t stop = PrefetchStop<T>(n, avail); i + kLanes <= stop;
       i += kLanes) {
    PrefetchLanes(x, i);
    const __m512d v0 = _mm512_cvtps_pd(Load8(x + i, kAll));
    const __m512d v1 = _mm512_cvtps_pd(Load8(x + i + 8, kAll));
    a[0] = _mm512_fmadd_pd(v0, v0, a[0]);
    a[1] = _mm512_fmadd_pd(v1, v1, a[1]);
  }
  for (; i + kLanes <= n; i += kLanes) {
    const __m512d v0 = _mm512_cvtps_pd(Load8(x + i, kAll));
    const __m512d v1 = _mm512_cvtps_pd(Load8(x + i + 8, kAll));
    a[0] = _mm512_fmadd_pd(v0, v0, a[0]);
    a[1] = _mm512_fmadd_pd(v1, v1, a[1]);
  }
  if (i < n) {
    const int64_t left = n - i;  // 1 to 15
    const __mmask8 m0 =
        static_cast<__mmask8>((1u << std::min<int64_t>(left, 8)) - 1);
    const __mmask8 m1 =
        static_cast<__mmask8>((1u << std::max<int64_t>(left - 8, 0)) - 1);
    const __m512d v0 = _mm512_cvtps_pd(Load8(x + i, m0));
    const __m512d v1 = _mm512_cvtps_pd(Load8(x + i + 8, m1));
    a[0] = _mm512_fmadd_pd(v0, v0, a[0]);
    a[1] = _mm512_fmadd_pd(v1, v1, a[1]);
  }
}
template <typename T>
__attribute__((target(MONOLITH_OPS_AVX512))) void SumSqLanesAvx512(
    const T* x, int64_t n, int64_t avail, double* acc) {
  __m512d a[2] = {_mm512_loadu_pd(acc), _mm512_loadu_pd(acc + 8)};
  AddSquaresAvx512(x, n, avail, a);
  _mm512_storeu_pd(acc, a[0]);
  _mm512_storeu_pd(acc + 8, a[1]);
}
MONOLITH_OPS_SUMSQ_BY_HAND(float, Avx512)
MONOLITH_OPS_SUMSQ_BY_HAND(Eigen::half, Avx512)
MONOLITH_OPS_SUMSQ_BY_HAND(Eigen::bfloat16, Avx512)
#undef MONOLITH_OPS_SUMSQ_BY_HAND

}  // namespace
}  // namespace monolith_ops

#endif  // MONOLITH_OPS_CC_CORE_CPU_SUM_SQUARES_X86_H_
