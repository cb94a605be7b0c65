// Copyright 2026 The monolith_ops Authors.
// SPDX-License-Identifier: Apache-2.0
// CPU implementation of the framework-free clipping core (see clip_core.h).
//
// The inner loops are written once and compiled for the baseline ISA and for
// AVX2 (the sum of squares also for AVX-512), picked at run time. All give
// bitwise the same results: every accumulator is added to in a fixed order
// and floating-point contraction is off for this file (see setup.py / BUILD),
// so the compiler never fuses a multiply and an add. The hand-written loops
// fuse them only where it cannot change a rounding: adding the square of a
// float, half or bfloat16, which is exact in double.
//
// The AVX2 and AVX-512 loops are x86 only. MONOLITH_OPS_X86 is the one
// switch: elsewhere (aarch64, ...), or with MONOLITH_OPS_PORTABLE defined,
// only the baseline loops are compiled, and HasAvx2() is false.
#include "cc/core/clip_core.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "Eigen/Core"

#if (defined(__x86_64__) || defined(__i386__)) && \
    !defined(MONOLITH_OPS_PORTABLE)
#define MONOLITH_OPS_X86 1
#include <immintrin.h>
#else
#define MONOLITH_OPS_X86 0
#endif

namespace monolith_ops {
namespace {

// Independent accumulators of a block: enough for two AVX2 registers of
// doubles per float vector and for the adder latency. Element j of a segment
// always goes to lane j % kLanes, and a block's lanes are added up once, in a
// fixed order, at its end.
constexpr int kLanes = 16;

// Software prefetch distance, in bytes: the loops request the line this far
// ahead of the one they read, within the same tensor (x[0, avail) is the rest
// of it). Even from the last-level cache, the hardware prefetchers alone keep
// too few lines in flight for loops that spend several instructions on each
// element (widening, squaring and adding in double): measured on a 2-core
// AVX-512 Xeon, 1.2x faster on 30.7 MB. On AMD's cores the same requests cost
// more than they bring: on a 2-core AVX-512 EPYC virtual machine,
// benchmarks/core_bench.cc over the 53 dense shapes (30.7 MB) on one thread
// took 1.3 to 1.4 ms without them, 1.6 to 1.8 ms with them. So they are made
// on every CPU but AMD's. (The request for the next tensors' first bytes,
// PrefetchAhead below, is made on every CPU.)
constexpr int64_t kPrefetchDistance = 4096;
bool SoftwarePrefetch() {
#if MONOLITH_OPS_X86
  static const bool wanted = !__builtin_cpu_is("amd");
  return wanted;
#else
  return true;
#endif
}

// The loops prefetch for their rows of kLanes elements from x + i while
// i + kLanes <= PrefetchStop(n, avail), then read the rest without: the test
// stays out of the loop body, which it would slow down. Without software
// prefetch the stop is 0.
template <typename T>
inline __attribute__((always_inline)) int64_t PrefetchStop(int64_t n,
                                                           int64_t avail) {
  return SoftwarePrefetch()
             ? std::min<int64_t>(n, avail - kPrefetchDistance / sizeof(T))
             : 0;
}
template <typename T>
inline __attribute__((always_inline)) void PrefetchLanes(const T* x,
                                                         int64_t i) {
  constexpr int64_t kAhead = kPrefetchDistance / sizeof(T);
  constexpr int64_t kLine = 64 / sizeof(T) > 0 ? 64 / sizeof(T) : 1;
  for (int64_t k = 0; k < kLanes; k += kLine) {
    __builtin_prefetch(x + i + kAhead + k, 0, 3);
  }
}

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

template <typename T, typename S>
inline __attribute__((always_inline)) void ScaleImpl(const T* in, T* out,
                                                     int64_t n, S scale) {
  for (int64_t i = 0; i < n; ++i) {
    out[i] = static_cast<T>(static_cast<S>(in[i]) * scale);
  }
}

template <typename T>
void SumSqBase(const T* x, int64_t n, int64_t avail, double* acc) {
  SumSqImpl(x, n, avail, acc);
}
template <typename T, typename S>
void ScaleBase(const T* in, T* out, int64_t n, S scale) {
  ScaleImpl(in, out, n, scale);
}

#if MONOLITH_OPS_X86
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
#define MONOLITH_OPS_AVX2 "avx2,f16c,fma"
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
#define MONOLITH_OPS_AVX512 "avx512f,avx512bw,avx512vl,avx2,f16c,fma"
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

template <typename T, typename S>
__attribute__((target("avx2,f16c,fma"))) void ScaleAvx2(const T* in, T* out,
                                                        int64_t n, S scale) {
  ScaleImpl(in, out, n, scale);
}
// half by hand: Eigen converts float to half with F16C instructions only when
// the whole file is compiled for them, and its portable conversion is many
// times slower than the memory it works on. The same operations as
// ScaleImpl: the exact widening, the float product, and F16C's conversion
// back, which rounds to nearest even as Eigen's does; so the values are
// bitwise the same (a NaN stays a NaN, its payload aside).
template <>
__attribute__((target("avx2,f16c,fma"))) void ScaleAvx2<Eigen::half, float>(
    const Eigen::half* in, Eigen::half* out, int64_t n, float scale) {
  const __m256 s = _mm256_set1_ps(scale);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i));
    const __m256 product = _mm256_mul_ps(_mm256_cvtph_ps(h), s);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i),
                     _mm256_cvtps_ph(product, _MM_FROUND_TO_NEAREST_INT));
  }
  ScaleImpl(in + i, out + i, n - i, scale);
}
// ScaleImpl with non-temporal stores, for outputs too large to stay in cache:
// a streamed line is written without first being read in, which saves a
// third of the memory traffic. Each 32-byte piece is computed by ScaleAvx2,
// so the values are bitwise those of the other loops.
template <typename T, typename S>
__attribute__((target("avx2,f16c,fma"))) void ScaleStreamAvx2(const T* in,
                                                              T* out, int64_t n,
                                                              S scale) {
  constexpr int64_t kVec = 32 / sizeof(T);
  const int64_t misalign = reinterpret_cast<uintptr_t>(out) % 32;
  int64_t i = misalign % sizeof(T) != 0
                  ? n
                  : std::min<int64_t>(n, (32 - misalign) % 32 / sizeof(T));
  ScaleAvx2(in, out, i, scale);
  for (; i + kVec <= n; i += kVec) {
    alignas(32) T piece[kVec];
    ScaleAvx2(in + i, piece, kVec, scale);
    _mm256_stream_si256(reinterpret_cast<__m256i*>(out + i),
                        _mm256_load_si256(reinterpret_cast<__m256i*>(piece)));
  }
  ScaleAvx2(in + i, out + i, n - i, scale);
  _mm_sfence();  // Streamed stores are weakly ordered: publish them.
}

bool HasAvx2() {
  static const bool has = __builtin_cpu_supports("avx2") &&
                          __builtin_cpu_supports("f16c") &&
                          __builtin_cpu_supports("fma");
  return has;
}
bool HasAvx512() {
  static const bool has = HasAvx2() && __builtin_cpu_supports("avx512f") &&
                          __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl");
  return has;
}
#else   // No AVX2 here: the AVX2 names are the baseline loops, never chosen.
constexpr bool HasAvx2() { return false; }
constexpr bool HasAvx512() { return false; }
template <typename T>
double MaxAbsAvx2(const T* x, int64_t n) {
  return MaxAbsBase(x, n);
}
template <typename T>
void SumSqAvx2(const T* x, int64_t n, int64_t avail, double* acc) {
  SumSqBase(x, n, avail, acc);
}
template <typename T>
void SumSqAvx512(const T* x, int64_t n, int64_t avail, double* acc) {
  SumSqBase(x, n, avail, acc);
}
template <typename T, typename S>
void ScaleAvx2(const T* in, T* out, int64_t n, S scale) {
  ScaleBase(in, out, n, scale);
}
template <typename T, typename S>
void ScaleStreamAvx2(const T* in, T* out, int64_t n, S scale) {
  ScaleBase(in, out, n, scale);
}
#endif  // MONOLITH_OPS_X86

// Outputs of at least this many bytes in all are written with streaming
// stores: MONOLITH_OPS_STREAM_MIN_BYTES when set, else half the L3 cache as
// the OS reports it, at most 16 MiB. (Virtual machines and multi-die CPUs
// often report the whole socket's L3, far more than one core's share.)
int64_t StreamMinBytes() {
  static const int64_t bytes = [] {
    if (const char* env = std::getenv("MONOLITH_OPS_STREAM_MIN_BYTES")) {
      char* end = nullptr;
      const long long value = std::strtoll(env, &end, 10);
      if (end != env && *end == '\0' && value >= 0) return int64_t{value};
    }
    const long cache = sysconf(_SC_LEVEL3_CACHE_SIZE);
    const int64_t cap = int64_t{16} << 20;
    return cache > 0 ? std::min(int64_t{cache} / 2, cap) : cap;
  }();
  return bytes;
}

// Lists of many small tensors are bound by memory latency, not bandwidth:
// each tensor is a separate allocation, so the hardware prefetcher cannot
// guess where the next one is. When a tensor's first piece is reached, the
// first kPrefetchBytes of the tensor kPrefetchAhead places further on are
// requested, so that they arrive while the tensors in between are read.
constexpr int64_t kPrefetchAhead = 4;
constexpr int64_t kPrefetchBytes = 1024;

template <typename T>
inline void PrefetchAhead(const T* const* inputs, const int64_t* sizes,
                          int64_t count, int64_t tensor, int64_t start) {
  const int64_t ahead = tensor + kPrefetchAhead;
  if (start != 0 || ahead >= count) return;
  const char* p = reinterpret_cast<const char*>(inputs[ahead]);
  const int64_t bytes =
      std::min<int64_t>(sizes[ahead] * sizeof(T), kPrefetchBytes);
  for (int64_t b = 0; b < bytes; b += 64) __builtin_prefetch(p + b, 0, 3);
}

// Element offsets of each tensor in the concatenated list: offsets[i] is the
// first global element of tensor i, offsets[count] the total.
std::vector<int64_t> Offsets(const int64_t* sizes, int64_t count) {
  std::vector<int64_t> offsets(count + 1);
  offsets[0] = 0;
  for (int64_t i = 0; i < count; ++i) offsets[i + 1] = offsets[i] + sizes[i];
  return offsets;
}

// The sum of squares reads kStreams blocks side by side, a piece of each in
// turn; on AVX-512, blocks that are each one piece of one tensor go 16
// elements of each in turn. One thread reading several streams at once keeps
// more lines in flight than one reading a single stream. (Measured on a
// 2-core EPYC virtual machine: up to 1.2x on lists larger than the cache.
// Writes do not gain: the scaling pass goes piece by piece.)
constexpr int kStreams = 4;

// A run of `length` elements of tensor `tensor`, from element `start`.
struct Piece {
  int64_t tensor, start, length;
};

// Walks the pieces of the global range [begin, end): its part of each
// tensor, in order, empty tensors skipped.
class PieceCursor {
 public:
  void Reset(const std::vector<int64_t>& offsets, int64_t begin, int64_t end) {
    offsets_ = &offsets;
    pos_ = begin;
    end_ = end;
    tensor_ = std::upper_bound(offsets.begin(), offsets.end(), pos_) -
              offsets.begin() - 1;
  }
  bool done() const { return pos_ >= end_; }
  // The next piece; only while !done().
  Piece Next() {
    const std::vector<int64_t>& offsets = *offsets_;
    while (offsets[tensor_ + 1] <= pos_) ++tensor_;
    const int64_t stop = std::min(end_, offsets[tensor_ + 1]);
    const Piece piece{tensor_, pos_ - offsets[tensor_], stop - pos_};
    pos_ = stop;
    return piece;
  }

 private:
  const std::vector<int64_t>* offsets_ = nullptr;
  int64_t pos_ = 0, end_ = 0, tensor_ = 0;
};

// Adds the squares of the global elements [begin, end) of the list to acc,
// a whole piece at a time, each piece by SumSq.
template <typename T, void (*SumSq)(const T*, int64_t, int64_t, double*)>
void SumSqRange(const T* const* inputs, const int64_t* sizes, int64_t count,
                const std::vector<int64_t>& offsets, int64_t begin, int64_t end,
                double* acc) {
  PieceCursor pieces;
  pieces.Reset(offsets, begin, end);
  while (!pieces.done()) {
    const Piece p = pieces.Next();
    PrefetchAhead(inputs, sizes, count, p.tensor, p.start);
    SumSq(inputs[p.tensor] + p.start, p.length, sizes[p.tensor] - p.start, acc);
  }
}
template <typename T>
void SumSqRangeAvx2(const T* const* inputs, const int64_t* sizes, int64_t count,
                    const std::vector<int64_t>& offsets, int64_t begin,
                    int64_t end, double* acc) {
  SumSqRange<T, SumSqAvx2<T>>(inputs, sizes, count, offsets, begin, end, acc);
}
template <typename T>
void SumSqRangeAvx512(const T* const* inputs, const int64_t* sizes,
                      int64_t count, const std::vector<int64_t>& offsets,
                      int64_t begin, int64_t end, double* acc) {
  SumSqRange<T, SumSqAvx512<T>>(inputs, sizes, count, offsets, begin, end, acc);
}
#if MONOLITH_OPS_X86
// float, the lanes kept in registers from piece to piece: on lists of many
// small tensors, loading and storing them for every tensor (as SumSqAvx2
// does) cost more than the arithmetic.
template <>
__attribute__((target("avx2,f16c,fma"))) void SumSqRangeAvx2<float>(
    const float* const* inputs, const int64_t* sizes, int64_t count,
    const std::vector<int64_t>& offsets, int64_t begin, int64_t end,
    double* acc) {
  __m256d a[kLanes / 4];
  for (int k = 0; k < kLanes / 4; ++k) a[k] = _mm256_loadu_pd(acc + 4 * k);
  PieceCursor pieces;
  pieces.Reset(offsets, begin, end);
  while (!pieces.done()) {
    const Piece p = pieces.Next();
    PrefetchAhead(inputs, sizes, count, p.tensor, p.start);
    AddSquaresAvx2(inputs[p.tensor] + p.start, p.length,
                   sizes[p.tensor] - p.start, a);
  }
  for (int k = 0; k < kLanes / 4; ++k) _mm256_storeu_pd(acc + 4 * k, a[k]);
}
template <>
__attribute__((target("avx512f,avx512bw,avx512vl,avx2,f16c,fma"))) void
SumSqRangeAvx512<float>(const float* const* inputs, const int64_t* sizes,
                        int64_t count, const std::vector<int64_t>& offsets,
                        int64_t begin, int64_t end, double* acc) {
  __m512d a[2] = {_mm512_loadu_pd(acc), _mm512_loadu_pd(acc + 8)};
  PieceCursor pieces;
  pieces.Reset(offsets, begin, end);
  while (!pieces.done()) {
    const Piece p = pieces.Next();
    PrefetchAhead(inputs, sizes, count, p.tensor, p.start);
    AddSquaresAvx512(inputs[p.tensor] + p.start, p.length,
                     sizes[p.tensor] - p.start, a);
  }
  _mm512_storeu_pd(acc, a[0]);
  _mm512_storeu_pd(acc + 8, a[1]);
}
#endif  // MONOLITH_OPS_X86

// The loops the sum of squares (and, AVX2 or not, the scaling) runs: the
// widest the CPU has, capped by MONOLITH_OPS_ISA ("baseline" or "avx2") when
// set, so that tests can run every path on one machine. All give bitwise
// the same results.
enum class Isa { kBaseline, kAvx2, kAvx512 };
Isa SumSqIsa() {
  static const Isa isa = [] {
    Isa best = HasAvx512() ? Isa::kAvx512
               : HasAvx2() ? Isa::kAvx2
                           : Isa::kBaseline;
    if (const char* env = std::getenv("MONOLITH_OPS_ISA")) {
      const std::string cap = env;
      if (cap == "baseline") {
        best = Isa::kBaseline;
      } else if (cap == "avx2") {
        if (best == Isa::kAvx512) best = Isa::kAvx2;
      } else if (cap != "avx512" && !cap.empty()) {
        std::fprintf(stderr,
                     "monolith_ops: MONOLITH_OPS_ISA=%s is not one of "
                     "baseline, avx2, avx512; it is ignored\n",
                     env);
      }
    }
    return best;
  }();
  return isa;
}

// Global element range of block `block`.
int64_t BlockBegin(int64_t block) { return block * kReduceBlock; }
int64_t BlockEnd(const std::vector<int64_t>& offsets, int64_t block) {
  return std::min(offsets.back(), (block + 1) * kReduceBlock);
}

// Calls fn(block, tensor, first_element, length) on every piece of the
// blocks [first, last), at most kStreams of them, a piece of each in turn.
template <typename Fn>
void InterleaveBlocks(const std::vector<int64_t>& offsets, int64_t first,
                      int64_t last, Fn fn) {
  PieceCursor cursors[kStreams];
  for (int64_t b = first; b < last; ++b) {
    cursors[b - first].Reset(offsets, BlockBegin(b), BlockEnd(offsets, b));
  }
  for (bool more = true; more;) {
    more = false;
    for (int64_t b = first; b < last; ++b) {
      PieceCursor& cursor = cursors[b - first];
      if (cursor.done()) continue;
      const Piece p = cursor.Next();
      fn(b, p.tensor, p.start, p.length);
      more = true;
    }
  }
}

int64_t NumBlocks(int64_t total) {
  return (total + kReduceBlock - 1) / kReduceBlock;
}

#if MONOLITH_OPS_X86
// The sum of squares of the blocks [first, last) (at most kStreams) into
// acc[0, last - first), piece by piece as InterleaveBlocks visits them, for
// float and the 16-bit types on AVX-512. Each block's lanes stay in two
// registers for the whole group; when each of the kStreams blocks is one
// piece of kReduceBlock elements (the common case: blocks of large
// tensors), they are read side by side, 16 elements of each in turn, so that
// the kStreams * 2 chains of additions overlap instead of each waiting on the
// adder (one block's two chains alone cannot keep it busy). (Side by side in
// pieces of 128 elements, the bookkeeping between pieces cost up to 14%:
// benchmarks/core_bench.cc on the 53 dense shapes, 2-core EPYC.) The lanes,
// and the order of the additions in each, are those of SumSqAvx512: the sums
// are bitwise the same.
template <typename T>
__attribute__((target(MONOLITH_OPS_AVX512))) void SumSqGroupAvx512(
    const T* const* inputs, const int64_t* sizes, int64_t count,
    const std::vector<int64_t>& offsets, int64_t first, int64_t last,
    double (*acc)[kLanes]) {
  static_assert(kLanes == 16 && kReduceBlock % kLanes == 0,
                "two registers a lane");
  constexpr __mmask8 kAll = 0xff;
  const int streams = static_cast<int>(last - first);
  __m512d a[kStreams][2];
  PieceCursor cursors[kStreams];
#pragma GCC unroll 4
  for (int s = 0; s < kStreams; ++s) {
    a[s][0] = a[s][1] = _mm512_setzero_pd();
    if (s >= streams) continue;
    a[s][0] = _mm512_loadu_pd(acc[s]);
    a[s][1] = _mm512_loadu_pd(acc[s] + 8);
    cursors[s].Reset(offsets, BlockBegin(first + s),
                     BlockEnd(offsets, first + s));
  }
  for (;;) {
    Piece p[kStreams];
    int have = 0;
    bool whole = streams == kStreams;
    for (int s = 0; s < streams; ++s) {
      p[s] = cursors[s].done() ? Piece{0, 0, 0} : cursors[s].Next();
      have += p[s].length > 0;
      whole = whole && p[s].length == kReduceBlock;
    }
    if (have == 0) break;
    if (!whole) {
      // Over kStreams, not `streams`: unrolled, every a[s] is a register.
#pragma GCC unroll 4
      for (int s = 0; s < kStreams; ++s) {
        if (s >= streams || p[s].length == 0) continue;
        PrefetchAhead(inputs, sizes, count, p[s].tensor, p[s].start);
        AddSquaresAvx512(inputs[p[s].tensor] + p[s].start, p[s].length,
                         sizes[p[s].tensor] - p[s].start, a[s]);
      }
      continue;
    }
    // Row i prefetches while i + kLanes <= PrefetchStop(...), as in the other
    // loops: never past the tensor's end, and never on AMD's CPUs.
    const T* x[kStreams];
    int64_t stop[kStreams];
    for (int s = 0; s < kStreams; ++s) {
      PrefetchAhead(inputs, sizes, count, p[s].tensor, p[s].start);
      x[s] = inputs[p[s].tensor] + p[s].start;
      stop[s] = PrefetchStop<T>(kReduceBlock, sizes[p[s].tensor] - p[s].start);
    }
    for (int64_t i = 0; i < kReduceBlock; i += kLanes) {
#pragma GCC unroll 4
      for (int s = 0; s < kStreams; ++s) {
        if (i + kLanes <= stop[s]) PrefetchLanes(x[s], i);
        const __m512d v0 = _mm512_cvtps_pd(Load8(x[s] + i, kAll));
        const __m512d v1 = _mm512_cvtps_pd(Load8(x[s] + i + 8, kAll));
        a[s][0] = _mm512_fmadd_pd(v0, v0, a[s][0]);
        a[s][1] = _mm512_fmadd_pd(v1, v1, a[s][1]);
      }
    }
  }
#pragma GCC unroll 4
  for (int s = 0; s < kStreams; ++s) {
    if (s >= streams) continue;
    _mm512_storeu_pd(acc[s], a[s][0]);
    _mm512_storeu_pd(acc[s] + 8, a[s][1]);
  }
}
#endif  // MONOLITH_OPS_X86

// Adds the squares of x[0, n) to the lanes acc with the loops of `isa`.
template <typename T>
void SumSqOn(Isa isa, const T* x, int64_t n, int64_t avail, double* acc) {
  if (isa == Isa::kAvx512) {
    SumSqAvx512(x, n, avail, acc);
  } else if (isa == Isa::kAvx2) {
    SumSqAvx2(x, n, avail, acc);
  } else {
    SumSqBase(x, n, avail, acc);
  }
}

// SumSqGroupAvx512() where it applies (AVX-512 chosen, float or a 16-bit
// type): returns whether it ran.
template <typename T>
bool SumSqGroupFast(Isa isa, const T* const* inputs, const int64_t* sizes,
                    int64_t count, const std::vector<int64_t>& offsets,
                    int64_t first, int64_t last, double (*acc)[kLanes]) {
#if MONOLITH_OPS_X86
  if constexpr (!std::is_same<T, double>::value) {
    if (isa == Isa::kAvx512) {
      SumSqGroupAvx512(inputs, sizes, count, offsets, first, last, acc);
      return true;
    }
  }
#endif
  return false;
}

// Below this many elements, handing work to other threads costs more than it
// saves: the blocks run on the calling thread.
constexpr int64_t kSerialElements = int64_t{1} << 18;

// The sum of squares reads lists of up to this many elements on the calling
// thread too (in interleaved blocks, past kSerialElements): waking a second
// thread of TensorFlow's pool costs more than that thread saves. Measured on
// a 2-core virtual machine with AVX-512, `python benchmarks/run.py
// --workloads embedding --threads N`: 1.28 million floats took 0.109 ms on 1
// thread and 0.128 ms on 2; the 7.7 million of `dense53` were faster on 2.
constexpr int64_t kThreadedElements = int64_t{1} << 21;

void ForBlocks(int64_t total, const ParallelFor& parallel_for,
               const std::function<void(int64_t, int64_t)>& fn) {
  const int64_t blocks = NumBlocks(total);
  if (total <= kSerialElements) {
    SerialFor(blocks, kReduceBlock, fn);
  } else {
    parallel_for(blocks, kReduceBlock * 2, fn);
  }
}

// Runs fn(tensor, first_element, length) over every element of the list,
// a whole piece at a time, block by block, in parallel.
template <typename Fn>
void ParallelOverElements(const std::vector<int64_t>& offsets,
                          const ParallelFor& parallel_for, Fn fn) {
  const int64_t total = offsets.back();
  ForBlocks(total, parallel_for, [&](int64_t first, int64_t last) {
    PieceCursor pieces;
    pieces.Reset(offsets, BlockBegin(first), BlockEnd(offsets, last - 1));
    while (!pieces.done()) {
      const Piece p = pieces.Next();
      fn(p.tensor, p.start, p.length);
    }
  });
}

}  // namespace

void SerialFor(int64_t n, int64_t,
               const std::function<void(int64_t, int64_t)>& fn) {
  if (n > 0) fn(0, n);
}

template <typename T>
double SumOfSquares(const T* const* inputs, const int64_t* sizes, int64_t count,
                    const ParallelFor& parallel_for) {
  const std::vector<int64_t> offsets = Offsets(sizes, count);
  const int64_t total = offsets[count];
  std::vector<double> partials(NumBlocks(total), 0.0);
  const Isa isa = SumSqIsa();
  if (total <= kSerialElements) {
    // Small enough for one thread, and read from cache: one block at a time.
    const auto sum_range = isa == Isa::kAvx512 ? SumSqRangeAvx512<T>
                           : isa == Isa::kAvx2 ? SumSqRangeAvx2<T>
                                               : SumSqRange<T, SumSqBase<T>>;
    for (int64_t b = 0; b < NumBlocks(total); ++b) {
      double acc[kLanes] = {};
      sum_range(inputs, sizes, count, offsets, BlockBegin(b),
                BlockEnd(offsets, b), acc);
      partials[b] = ReduceLanes(acc);
    }
  } else {
    // Up to kThreadedElements, the interleaved blocks on this thread alone.
    const ParallelFor& run_blocks =
        total <= kThreadedElements ? ParallelFor(SerialFor) : parallel_for;
    run_blocks(NumBlocks(total), kReduceBlock * 2,
               [&](int64_t first, int64_t last) {
                 for (int64_t group = first; group < last; group += kStreams) {
                   const int64_t end = std::min(last, group + kStreams);
                   double acc[kStreams][kLanes] = {};
                   if (!SumSqGroupFast(isa, inputs, sizes, count, offsets,
                                       group, end, acc)) {
                     InterleaveBlocks(
                         offsets, group, end,
                         [&](int64_t b, int64_t t, int64_t start, int64_t len) {
                           PrefetchAhead(inputs, sizes, count, t, start);
                           const T* x = inputs[t] + start;
                           const int64_t avail = sizes[t] - start;
                           SumSqOn(isa, x, len, avail, acc[b - group]);
                         });
                   }
                   for (int64_t b = group; b < end; ++b) {
                     partials[b] = ReduceLanes(acc[b - group]);
                   }
                 }
               });
  }
  double sum = 0.0;
  for (double p : partials) sum += p;
  return sum;
}

template <typename T>
void ReducePerTensor(const T* const* inputs, const int64_t* sizes,
                     int64_t count, NormType type, double* per_tensor,
                     const ParallelFor& parallel_for) {
  // The units of work: block b of tensor t is unit first_unit[t] + b.
  std::vector<int64_t> first_unit(count + 1, 0);
  int64_t total = 0;
  for (int64_t t = 0; t < count; ++t) {
    first_unit[t + 1] = first_unit[t] + NumBlocks(sizes[t]);
    total += sizes[t];
  }
  const int64_t units = first_unit[count];
  std::vector<double> partials(units, 0.0);
  const Isa isa = SumSqIsa();
  auto reduce_units = [&](int64_t begin, int64_t end) {
    int64_t t = std::upper_bound(first_unit.begin(), first_unit.end(), begin) -
                first_unit.begin() - 1;
    for (int64_t u = begin; u < end; ++u) {
      while (first_unit[t + 1] <= u) ++t;
      const int64_t start = (u - first_unit[t]) * kReduceBlock;
      const int64_t len = std::min(kReduceBlock, sizes[t] - start);
      const T* x = inputs[t] + start;
      if (type == NormType::kInf) {
        partials[u] =
            isa == Isa::kBaseline ? MaxAbsBase(x, len) : MaxAbsAvx2(x, len);
        continue;
      }
      double acc[kLanes] = {};
      SumSqOn(isa, x, len, sizes[t] - start, acc);
      partials[u] = ReduceLanes(acc);
    }
  };
  if (total <= kSerialElements) {
    SerialFor(units, kReduceBlock, reduce_units);
  } else {
    parallel_for(units, kReduceBlock * 2, reduce_units);
  }
  for (int64_t t = 0; t < count; ++t) {
    double reduction = 0.0;
    for (int64_t u = first_unit[t]; u < first_unit[t + 1]; ++u) {
      reduction = CombineReductions(type, reduction, partials[u]);
    }
    per_tensor[t] = reduction;
  }
}

template <typename T, typename S>
void Scale(const T* const* inputs, T* const* outputs, const int64_t* sizes,
           int64_t count, S scale, const ParallelFor& parallel_for) {
  const bool avx2 = SumSqIsa() != Isa::kBaseline;
  const std::vector<int64_t> offsets = Offsets(sizes, count);
  const int64_t bytes = offsets.back() * static_cast<int64_t>(sizeof(T));
  const bool stream = avx2 && bytes >= StreamMinBytes();
  ParallelOverElements(offsets, parallel_for,
                       [&](int64_t t, int64_t start, int64_t len) {
                         PrefetchAhead(inputs, sizes, count, t, start);
                         const T* in = inputs[t] + start;
                         T* out = outputs[t] + start;
                         if (stream) {
                           ScaleStreamAvx2(in, out, len, scale);
                         } else if (avx2) {
                           ScaleAvx2(in, out, len, scale);
                         } else {
                           ScaleBase(in, out, len, scale);
                         }
                       });
}

template <typename T>
void FillNaN(T* const* outputs, const int64_t* sizes, int64_t count,
             const ParallelFor& parallel_for) {
  ParallelOverElements(Offsets(sizes, count), parallel_for,
                       [&](int64_t t, int64_t start, int64_t len) {
                         std::fill_n(outputs[t] + start, len,
                                     std::numeric_limits<T>::quiet_NaN());
                       });
}

#define MONOLITH_OPS_INSTANTIATE(T, tf_name, gpu_dtype, S, ...)              \
  template double SumOfSquares<T>(const T* const*, const int64_t*, int64_t,  \
                                  const ParallelFor&);                       \
  template void Scale<T, S>(const T* const*, T* const*, const int64_t*,      \
                            int64_t, S, const ParallelFor&);                 \
  template void FillNaN<T>(T* const*, const int64_t*, int64_t,               \
                           const ParallelFor&);                              \
  template void ReducePerTensor<T>(const T* const*, const int64_t*, int64_t, \
                                   NormType, double*, const ParallelFor&);

MONOLITH_OPS_FOR_EACH_DTYPE(MONOLITH_OPS_INSTANTIATE)
#undef MONOLITH_OPS_INSTANTIATE

}  // namespace monolith_ops
