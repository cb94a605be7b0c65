// Copyright 2026 The monolith_ops Authors.
// SPDX-License-Identifier: Apache-2.0
// CPU implementation of the framework-free clipping core (see clip_core.h).
//
// The inner loops are written once and compiled twice: for the baseline ISA
// and for AVX2, picked at run time. Both give bitwise the same results: every
// accumulator is added to in a fixed order and floating-point contraction is
// off for this file (see setup.py / BUILD), so FMA never changes a rounding.
//
// The AVX2 loops are x86 only. MONOLITH_OPS_X86 is the one switch: elsewhere
// (aarch64, ...), or with MONOLITH_OPS_PORTABLE defined, only the baseline
// loops are compiled, and HasAvx2() is false.
#include "cc/kernels/clip_core.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "Eigen/Core"

#if (defined(__x86_64__) || defined(__i386__)) && !defined(MONOLITH_OPS_PORTABLE)
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

template <typename T>
inline __attribute__((always_inline)) void SumSqImpl(const T* x, int64_t n,
                                                     double* acc) {
  int64_t i = 0;
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

template <typename T, typename S>
inline __attribute__((always_inline)) void ScaleImpl(const T* in, T* out,
                                                     int64_t n, S scale) {
  for (int64_t i = 0; i < n; ++i) {
    out[i] = static_cast<T>(static_cast<S>(in[i]) * scale);
  }
}

template <typename T>
void SumSqBase(const T* x, int64_t n, double* acc) {
  SumSqImpl(x, n, acc);
}
template <typename T, typename S>
void ScaleBase(const T* in, T* out, int64_t n, S scale) {
  ScaleImpl(in, out, n, scale);
}

#if MONOLITH_OPS_X86
template <typename T>
__attribute__((target("avx2,f16c"))) void SumSqAvx2(const T* x, int64_t n,
                                                   double* acc) {
  SumSqImpl(x, n, acc);
}
template <typename T, typename S>
__attribute__((target("avx2,f16c"))) void ScaleAvx2(const T* in, T* out,
                                                    int64_t n, S scale) {
  ScaleImpl(in, out, n, scale);
}
// ScaleImpl with non-temporal stores, for outputs too large to stay in cache:
// a streamed line is written without first being read in, which saves a
// third of the memory traffic. Each 32-byte piece is computed by ScaleImpl,
// so the values are bitwise those of the other loops.
template <typename T, typename S>
__attribute__((target("avx2,f16c"))) void ScaleStreamAvx2(const T* in, T* out,
                                                          int64_t n, S scale) {
  constexpr int64_t kVec = 32 / sizeof(T);
  const int64_t misalign = reinterpret_cast<uintptr_t>(out) % 32;
  int64_t i = misalign % sizeof(T) != 0
                  ? n
                  : std::min<int64_t>(n, (32 - misalign) % 32 / sizeof(T));
  ScaleImpl(in, out, i, scale);
  for (; i + kVec <= n; i += kVec) {
    alignas(32) T piece[kVec];
    ScaleImpl(in + i, piece, kVec, scale);
    _mm256_stream_si256(reinterpret_cast<__m256i*>(out + i),
                        _mm256_load_si256(reinterpret_cast<__m256i*>(piece)));
  }
  ScaleImpl(in + i, out + i, n - i, scale);
  _mm_sfence();  // Streamed stores are weakly ordered: publish them.
}

bool HasAvx2() {
  static const bool has = __builtin_cpu_supports("avx2") &&
                          __builtin_cpu_supports("f16c");
  return has;
}
#else   // No AVX2 here: the AVX2 names are the baseline loops, never chosen.
constexpr bool HasAvx2() { return false; }
template <typename T>
void SumSqAvx2(const T* x, int64_t n, double* acc) {
  SumSqBase(x, n, acc);
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

// float, half and bfloat16: float lanes over short sub-blocks.
//
// The squares are computed and added in float, which moves twice the elements
// per vector of the double lanes above and makes the sum as fast as reading
// the list. To keep the error of float additions small, the float lanes only
// ever hold the squares of one sub-block of kSubBlock elements: element g of
// the list (its global index) goes to float lane g % kFloatLanes, so a lane
// adds at most kSubBlock / kFloatLanes squares, in increasing g. At the end of
// each sub-block (global index a multiple of kSubBlock) every float lane is
// widened to double, added to the double lane of the same index and reset to
// +0. At the end of a reduction block the double lanes are added up in a
// fixed tree, as ReduceLanes does. Every boundary is a multiple of
// kFloatLanes in the global index, so the lane of an element, the order of
// the additions into each lane and the moments lanes are flushed depend only
// on the tensor sizes: the baseline loop, AVX2 and AVX-512 (and any sharding
// of blocks over threads) perform the same IEEE operations on the same values.
//
// A block whose sum is not finite (a square or a lane overflowed float) or is
// below kFloatLaneMin (squares may have underflowed float) is summed again
// from its elements with the double lanes, by the baseline loop on every
// path; an all-zero block is left at +0 without that pass. Both depend only
// on the data, so the result stays deterministic.
constexpr int kFloatLanes = 32;
constexpr int64_t kSubBlock = 256;
static_assert(kSubBlock % kFloatLanes == 0, "sub-blocks hold whole lane rows");
static_assert(kReduceBlock % kSubBlock == 0, "blocks hold whole sub-blocks");
// 2^-80. Underflow loses less than 2^-126 per operation, at most 2^-111 in a
// block of 2^14 elements: under 2^-31 of any block sum above this.
constexpr double kFloatLaneMin = 0x1.0p-80;

// The lanes of one reduction block.
struct FloatLanes {
  alignas(64) float f[kFloatLanes];   // squares of the current sub-block
  alignas(64) double d[kFloatLanes];  // the finished sub-blocks
};

inline __attribute__((always_inline)) void ResetLanes(FloatLanes* s) {
  for (int j = 0; j < kFloatLanes; ++j) s->f[j] = 0.0f;
  for (int j = 0; j < kFloatLanes; ++j) s->d[j] = 0.0;
}

// The end of a sub-block: the float lanes go into the double lanes. (A float
// lane holding +0 leaves its double lane unchanged: lanes only ever hold sums
// of squares, never -0.)
inline __attribute__((always_inline)) void FlushLanes(FloatLanes* s) {
  for (int j = 0; j < kFloatLanes; ++j) {
    s->d[j] += static_cast<double>(s->f[j]);
    s->f[j] = 0.0f;
  }
}

template <typename T>
inline __attribute__((always_inline)) float SquareF(T x) {
  const float v = static_cast<float>(x);
  return v * v;
}

// Adds the squares of x[0, n), whose first element has global index g, to
// the float lanes f; [g, g + n) lies within one sub-block.
template <typename T>
inline __attribute__((always_inline)) void AddSegmentImpl(const T* x,
                                                          int64_t n, int64_t g,
                                                          float* f) {
  int64_t i = 0;
  for (int j = static_cast<int>(g % kFloatLanes); j != 0 && j < kFloatLanes &&
                                                  i < n;
       ++j, ++i) {
    f[j] += SquareF(x[i]);
  }
  for (; i + kFloatLanes <= n; i += kFloatLanes) {
    for (int j = 0; j < kFloatLanes; ++j) f[j] += SquareF(x[i + j]);
  }
  for (int j = 0; i < n; ++i, ++j) f[j] += SquareF(x[i]);
}

// Adds the squares of x[0, n), from global index g, to the block's lanes s,
// flushing at every sub-block end; [g, g + n) lies within one block.
template <typename T>
inline __attribute__((always_inline)) void AddSquaresImpl(const T* x,
                                                          int64_t n, int64_t g,
                                                          FloatLanes* s) {
  for (int64_t i = 0; i < n;) {
    const int64_t room = kSubBlock - (g + i) % kSubBlock;
    const int64_t len = std::min(n - i, room);
    AddSegmentImpl(x + i, len, g + i, s->f);
    i += len;
    if (len == room) FlushLanes(s);
  }
}

template <typename T>
void AddSquaresBase(const T* x, int64_t n, int64_t g, FloatLanes* s) {
  AddSquaresImpl(x, n, g, s);
}

#if MONOLITH_OPS_X86
// AVX2: the 32 float lanes are four registers. The first and last rows of a
// segment are partial: float loads them masked, the 16-bit types through a
// zeroed row; a lane past either end adds +0, which changes nothing.
template <typename T>
__attribute__((target("avx2,f16c"), always_inline)) inline __m256 Load8(
    const T* p);
template <>
__attribute__((target("avx2,f16c"), always_inline)) inline __m256 Load8(
    const float* p) {
  return _mm256_loadu_ps(p);
}
template <>
__attribute__((target("avx2,f16c"), always_inline)) inline __m256 Load8(
    const Eigen::half* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
template <>
__attribute__((target("avx2,f16c"), always_inline)) inline __m256 Load8(
    const Eigen::bfloat16* p) {
  const __m256i wide = _mm256_cvtepu16_epi32(
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}

template <typename T>
__attribute__((target("avx2,f16c"), always_inline)) inline void AddRowAvx2(
    const T* p, __m256* a) {
  for (int k = 0; k < kFloatLanes / 8; ++k) {
    const __m256 v = Load8(p + 8 * k);
    a[k] = _mm256_add_ps(a[k], _mm256_mul_ps(v, v));
  }
}

// The row of lanes [lo, hi) of the 32 from `row`, an address that may lie
// before x: only the elements of lanes lo to hi - 1 are read.
template <typename T>
__attribute__((target("avx2,f16c"), always_inline)) inline void
AddPartialRowAvx2(const T* row, int lo, int hi, __m256* a) {
  alignas(32) T buf[kFloatLanes] = {};
  for (int j = lo; j < hi; ++j) buf[j] = row[j];
  AddRowAvx2(buf, a);
}
template <>
__attribute__((target("avx2,f16c"), always_inline)) inline void
AddPartialRowAvx2(const float* row, int lo, int hi, __m256* a) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (int k = 0; k < kFloatLanes / 8; ++k) {
    const __m256i j = _mm256_add_epi32(lane, _mm256_set1_epi32(8 * k));
    const __m256i in =
        _mm256_and_si256(_mm256_cmpgt_epi32(j, _mm256_set1_epi32(lo - 1)),
                         _mm256_cmpgt_epi32(_mm256_set1_epi32(hi), j));
    const __m256 v = _mm256_maskload_ps(row + 8 * k, in);
    a[k] = _mm256_add_ps(a[k], _mm256_mul_ps(v, v));
  }
}

template <typename T>
__attribute__((target("avx2,f16c"), always_inline)) inline void
AddSegmentAvx2(const T* x, int64_t n, int64_t g, __m256* a) {
  const int head = static_cast<int>(g % kFloatLanes);
  const T* row = x - head;  // global index a multiple of kFloatLanes
  const int64_t end = head + n;
  int64_t r = 0;
  if (head != 0 || end < kFloatLanes) {
    AddPartialRowAvx2(row, head,
                      static_cast<int>(std::min<int64_t>(end, kFloatLanes)), a);
    r = kFloatLanes;
  }
  for (; r + kFloatLanes <= end; r += kFloatLanes) AddRowAvx2(row + r, a);
  if (r < end) AddPartialRowAvx2(row + r, 0, static_cast<int>(end - r), a);
}

template <typename T>
__attribute__((target("avx2,f16c"))) void AddSquaresAvx2(const T* x,
                                                         int64_t n, int64_t g,
                                                         FloatLanes* s) {
  __m256 a[kFloatLanes / 8];
  for (int k = 0; k < kFloatLanes / 8; ++k) a[k] = _mm256_load_ps(s->f + 8 * k);
  for (int64_t i = 0; i < n;) {
    const int64_t room = kSubBlock - (g + i) % kSubBlock;
    const int64_t len = std::min(n - i, room);
    AddSegmentAvx2(x + i, len, g + i, a);
    i += len;
    if (len == room) {
      for (int k = 0; k < kFloatLanes / 8; ++k) {
        _mm256_store_ps(s->f + 8 * k, a[k]);
        a[k] = _mm256_setzero_ps();
      }
      FlushLanes(s);
    }
  }
  for (int k = 0; k < kFloatLanes / 8; ++k) _mm256_store_ps(s->f + 8 * k, a[k]);
}

// AVX-512: two registers, every row loaded under a mask.
#define MONOLITH_OPS_AVX512 "avx512f,avx512bw,avx512vl,avx2,f16c"
template <typename T>
__attribute__((target(MONOLITH_OPS_AVX512), always_inline)) inline __m512
Load16(const T* p, __mmask16 m);
template <>
__attribute__((target(MONOLITH_OPS_AVX512), always_inline)) inline __m512
Load16(const float* p, __mmask16 m) {
  return _mm512_maskz_loadu_ps(m, p);
}
template <>
__attribute__((target(MONOLITH_OPS_AVX512), always_inline)) inline __m512
Load16(const Eigen::half* p, __mmask16 m) {
  return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}
template <>
__attribute__((target(MONOLITH_OPS_AVX512), always_inline)) inline __m512
Load16(const Eigen::bfloat16* p, __mmask16 m) {
  const __m512i wide = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
}

// Lanes [lo, hi) of 16, lo and hi clamped to [0, 16].
inline __mmask16 LaneMask(int64_t lo, int64_t hi) {
  lo = std::min<int64_t>(std::max<int64_t>(lo, 0), 16);
  hi = std::min<int64_t>(std::max<int64_t>(hi, 0), 16);
  if (hi <= lo) return 0;
  return static_cast<__mmask16>(((uint32_t{1} << hi) - 1) ^
                                ((uint32_t{1} << lo) - 1));
}

template <typename T>
__attribute__((target(MONOLITH_OPS_AVX512), always_inline)) inline void
AddRowAvx512(const T* row, __mmask16 m0, __mmask16 m1, __m512* a) {
  const __m512 v0 = Load16(row, m0);
  const __m512 v1 = Load16(row + 16, m1);
  a[0] = _mm512_add_ps(a[0], _mm512_mul_ps(v0, v0));
  a[1] = _mm512_add_ps(a[1], _mm512_mul_ps(v1, v1));
}

template <typename T>
__attribute__((target(MONOLITH_OPS_AVX512), always_inline)) inline void
AddSegmentAvx512(const T* x, int64_t n, int64_t g, __m512* a) {
  const int head = static_cast<int>(g % kFloatLanes);
  const T* row = x - head;  // global index a multiple of kFloatLanes
  const int64_t end = head + n;
  int64_t r = 0;
  if (head != 0 || end < kFloatLanes) {
    AddRowAvx512(row, LaneMask(head, end), LaneMask(head - 16, end - 16), a);
    r = kFloatLanes;
  }
  for (; r + kFloatLanes <= end; r += kFloatLanes) {
    AddRowAvx512(row + r, 0xffff, 0xffff, a);
  }
  if (r < end) {
    AddRowAvx512(row + r, LaneMask(0, end - r), LaneMask(0, end - r - 16), a);
  }
}

template <typename T>
__attribute__((target(MONOLITH_OPS_AVX512))) void AddSquaresAvx512(
    const T* x, int64_t n, int64_t g, FloatLanes* s) {
  __m512 a[2] = {_mm512_load_ps(s->f), _mm512_load_ps(s->f + 16)};
  for (int64_t i = 0; i < n;) {
    const int64_t room = kSubBlock - (g + i) % kSubBlock;
    const int64_t len = std::min(n - i, room);
    AddSegmentAvx512(x + i, len, g + i, a);
    i += len;
    if (len == room) {
      _mm512_store_ps(s->f, a[0]);
      _mm512_store_ps(s->f + 16, a[1]);
      a[0] = a[1] = _mm512_setzero_ps();
      FlushLanes(s);
    }
  }
  _mm512_store_ps(s->f, a[0]);
  _mm512_store_ps(s->f + 16, a[1]);
}
#undef MONOLITH_OPS_AVX512

bool HasAvx512() {
  static const bool has = __builtin_cpu_supports("avx512f") &&
                          __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl") && HasAvx2();
  return has;
}
#else   // Baseline loops only.
constexpr bool HasAvx512() { return false; }
template <typename T>
void AddSquaresAvx2(const T* x, int64_t n, int64_t g, FloatLanes* s) {
  AddSquaresBase(x, n, g, s);
}
template <typename T>
void AddSquaresAvx512(const T* x, int64_t n, int64_t g, FloatLanes* s) {
  AddSquaresBase(x, n, g, s);
}
#endif  // MONOLITH_OPS_X86

// The loops the sum of squares runs: the widest the CPU has, capped by
// MONOLITH_OPS_ISA ("baseline", "avx2" or "avx512") when set, so that tests
// can run every path on one machine. All give bitwise the same sums.
enum class Isa { kBaseline = 0, kAvx2 = 1, kAvx512 = 2 };
Isa SumSqIsa() {
  static const Isa isa = [] {
    Isa best = HasAvx512() ? Isa::kAvx512 : HasAvx2() ? Isa::kAvx2
                                                      : Isa::kBaseline;
    if (const char* env = std::getenv("MONOLITH_OPS_ISA")) {
      const std::string cap = env;
      if (cap == "baseline") best = Isa::kBaseline;
      if (cap == "avx2" && best == Isa::kAvx512) best = Isa::kAvx2;
    }
    return best;
  }();
  return isa;
}

template <typename T>
using AddSquaresFn = void (*)(const T*, int64_t, int64_t, FloatLanes*);
template <typename T>
AddSquaresFn<T> AddSquaresFor(Isa isa) {
  return isa == Isa::kAvx512 ? AddSquaresAvx512<T>
         : isa == Isa::kAvx2 ? AddSquaresAvx2<T>
                             : AddSquaresBase<T>;
}

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

// The sum of squares reads kStreams blocks side by side, kChunk elements of
// each in turn: one thread reading several streams at once keeps more lines
// in flight than one reading a single stream. (Measured on a 2-core EPYC
// virtual machine: up to 1.2x on lists larger than the cache. Writes do not
// gain: the scaling pass goes piece by piece.)
constexpr int kStreams = 4;
constexpr int64_t kChunk = 128;
static_assert(kChunk % kLanes == 0, "chunks must keep elements in their lanes");

// A run of `length` elements of tensor `tensor`, from element `start`.
struct Piece {
  int64_t tensor, start, length;
};

// Walks the pieces of the global range [begin, end) (its part of each tensor,
// in order, empty tensors skipped), at most `chunk` elements at a time. Each
// piece is cut into chunks counted from the piece's start, so that with a
// chunk that is a multiple of kLanes every element meets the same lane, in
// the same order, as in one pass over the piece.
class PieceCursor {
 public:
  void Reset(const std::vector<int64_t>& offsets, int64_t begin, int64_t end,
             int64_t chunk) {
    offsets_ = &offsets;
    pos_ = begin;
    end_ = end;
    chunk_ = chunk;
    tensor_ = std::upper_bound(offsets.begin(), offsets.end(), pos_) -
              offsets.begin() - 1;
  }
  bool done() const { return pos_ >= end_; }
  // The next chunk; only while !done().
  Piece Next() {
    const std::vector<int64_t>& offsets = *offsets_;
    while (offsets[tensor_ + 1] <= pos_) ++tensor_;
    const int64_t stop =
        std::min(std::min(end_, offsets[tensor_ + 1]), pos_ + chunk_);
    const Piece piece{tensor_, pos_ - offsets[tensor_], stop - pos_};
    pos_ = stop;
    return piece;
  }

 private:
  const std::vector<int64_t>* offsets_ = nullptr;
  int64_t pos_ = 0, end_ = 0, chunk_ = 0, tensor_ = 0;
};

// Adds the squares of the global elements [begin, end) of the list to acc,
// a whole piece at a time, each piece by SumSq.
template <typename T, void (*SumSq)(const T*, int64_t, double*)>
void SumSqRange(const T* const* inputs, const int64_t* sizes, int64_t count,
                const std::vector<int64_t>& offsets, int64_t begin,
                int64_t end, double* acc) {
  PieceCursor pieces;
  pieces.Reset(offsets, begin, end, end - begin);
  while (!pieces.done()) {
    const Piece p = pieces.Next();
    PrefetchAhead(inputs, sizes, count, p.tensor, p.start);
    SumSq(inputs[p.tensor] + p.start, p.length, acc);
  }
}
template <typename T>
void SumSqRangeAvx2(const T* const* inputs, const int64_t* sizes,
                    int64_t count, const std::vector<int64_t>& offsets,
                    int64_t begin, int64_t end, double* acc) {
  SumSqRange<T, SumSqAvx2<T>>(inputs, sizes, count, offsets, begin, end, acc);
}

// Global element range of block `block`.
int64_t BlockBegin(int64_t block) { return block * kReduceBlock; }
int64_t BlockEnd(const std::vector<int64_t>& offsets, int64_t block) {
  return std::min(offsets.back(), (block + 1) * kReduceBlock);
}

// Calls fn(block, tensor, first_element, length) on every chunk of the
// blocks [first, last), at most kStreams of them, a chunk of each in turn.
template <typename Fn>
void InterleaveBlocks(const std::vector<int64_t>& offsets, int64_t first,
                      int64_t last, Fn fn) {
  PieceCursor cursors[kStreams];
  for (int64_t b = first; b < last; ++b) {
    cursors[b - first].Reset(offsets, BlockBegin(b), BlockEnd(offsets, b),
                             kChunk);
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

// Below this many elements, handing work to other threads costs more than it
// saves: the blocks run on the calling thread.
constexpr int64_t kSerialElements = int64_t{1} << 18;

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
    pieces.Reset(offsets, BlockBegin(first), BlockEnd(offsets, last - 1),
                 total);
    while (!pieces.done()) {
      const Piece p = pieces.Next();
      fn(p.tensor, p.start, p.length);
    }
  });
}

// The sum of squares of block b from its lanes s; from its elements with the
// double lanes where the float lanes may have overflowed or underflowed.
template <typename T>
double FinishBlock(FloatLanes* s, const T* const* inputs, const int64_t* sizes,
                   int64_t count, const std::vector<int64_t>& offsets,
                   int64_t b) {
  FlushLanes(s);
  for (int width = kFloatLanes / 2; width > 0; width /= 2) {
    for (int j = 0; j < width; ++j) s->d[j] += s->d[j + width];
  }
  const double sum = s->d[0];
  if (sum >= kFloatLaneMin && sum <= std::numeric_limits<double>::max()) {
    return sum;
  }
  if (sum == 0.0) {  // Every square was 0 in float: are the elements all 0?
    bool zero = true;
    PieceCursor pieces;
    pieces.Reset(offsets, BlockBegin(b), BlockEnd(offsets, b), kReduceBlock);
    while (zero && !pieces.done()) {
      const Piece p = pieces.Next();
      const T* x = inputs[p.tensor] + p.start;
      for (int64_t i = 0; i < p.length && zero; ++i) {
        zero = static_cast<float>(x[i]) == 0.0f;
      }
    }
    if (zero) return 0.0;
  }
  double acc[kLanes] = {};
  SumSqRange<T, SumSqBase<T>>(inputs, sizes, count, offsets, BlockBegin(b),
                              BlockEnd(offsets, b), acc);
  return ReduceLanes(acc);
}

// partials[b] = the sum of squares of block b, with the float lanes.
template <typename T>
void FloatLanePartials(const T* const* inputs, const int64_t* sizes,
                       int64_t count, const std::vector<int64_t>& offsets,
                       const ParallelFor& parallel_for, double* partials) {
  const int64_t total = offsets.back();
  const AddSquaresFn<T> add = AddSquaresFor<T>(SumSqIsa());
  if (total <= kSerialElements) {
    // Small enough for one thread, and read from cache: one block at a time.
    for (int64_t b = 0; b < NumBlocks(total); ++b) {
      FloatLanes s;
      ResetLanes(&s);
      PieceCursor pieces;
      pieces.Reset(offsets, BlockBegin(b), BlockEnd(offsets, b), kReduceBlock);
      while (!pieces.done()) {
        const Piece p = pieces.Next();
        PrefetchAhead(inputs, sizes, count, p.tensor, p.start);
        add(inputs[p.tensor] + p.start, p.length,
            offsets[p.tensor] + p.start, &s);
      }
      partials[b] = FinishBlock(&s, inputs, sizes, count, offsets, b);
    }
    return;
  }
  parallel_for(NumBlocks(total), kReduceBlock * 2, [&](int64_t first,
                                                       int64_t last) {
    for (int64_t group = first; group < last; group += kStreams) {
      const int64_t end = std::min(last, group + kStreams);
      FloatLanes s[kStreams];
      for (FloatLanes& lanes : s) ResetLanes(&lanes);
      InterleaveBlocks(offsets, group, end,
                       [&](int64_t b, int64_t t, int64_t start, int64_t len) {
                         PrefetchAhead(inputs, sizes, count, t, start);
                         add(inputs[t] + start, len, offsets[t] + start,
                             &s[b - group]);
                       });
      for (int64_t b = group; b < end; ++b) {
        partials[b] = FinishBlock(&s[b - group], inputs, sizes, count,
                                  offsets, b);
      }
    }
  });
}

}  // namespace

void SerialFor(int64_t n, int64_t, const std::function<void(int64_t, int64_t)>& fn) {
  if (n > 0) fn(0, n);
}

template <typename T>
double SumOfSquares(const T* const* inputs, const int64_t* sizes, int64_t count,
                    const ParallelFor& parallel_for) {
  const std::vector<int64_t> offsets = Offsets(sizes, count);
  const int64_t total = offsets[count];
  std::vector<double> partials(NumBlocks(total), 0.0);
  const bool avx2 = HasAvx2();
  if constexpr (!std::is_same<T, double>::value) {
    FloatLanePartials(inputs, sizes, count, offsets, parallel_for,
                      partials.data());
  } else if (total <= kSerialElements) {
    // Small enough for one thread, and read from cache: one block at a time.
    const auto sum_range =
        avx2 ? SumSqRangeAvx2<T> : SumSqRange<T, SumSqBase<T>>;
    for (int64_t b = 0; b < NumBlocks(total); ++b) {
      double acc[kLanes] = {};
      sum_range(inputs, sizes, count, offsets, BlockBegin(b),
                BlockEnd(offsets, b), acc);
      partials[b] = ReduceLanes(acc);
    }
  } else {
    parallel_for(NumBlocks(total), kReduceBlock * 2, [&](int64_t first,
                                                         int64_t last) {
      for (int64_t group = first; group < last; group += kStreams) {
        const int64_t end = std::min(last, group + kStreams);
        double acc[kStreams][kLanes] = {};
        InterleaveBlocks(
            offsets, group, end,
            [&](int64_t b, int64_t t, int64_t start, int64_t len) {
              PrefetchAhead(inputs, sizes, count, t, start);
              const T* x = inputs[t] + start;
              if (avx2) {
                SumSqAvx2(x, len, acc[b - group]);
              } else {
                SumSqBase(x, len, acc[b - group]);
              }
            });
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

template <typename T, typename S>
void Scale(const T* const* inputs, T* const* outputs, const int64_t* sizes,
           int64_t count, S scale, const ParallelFor& parallel_for) {
  const bool avx2 = HasAvx2();
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

#define MONOLITH_OPS_INSTANTIATE(T, S)                                      \
  template double SumOfSquares<T>(const T* const*, const int64_t*, int64_t, \
                                  const ParallelFor&);                      \
  template void Scale<T, S>(const T* const*, T* const*, const int64_t*,     \
                            int64_t, S, const ParallelFor&);                \
  template void FillNaN<T>(T* const*, const int64_t*, int64_t,              \
                           const ParallelFor&);

MONOLITH_OPS_INSTANTIATE(float, float)
MONOLITH_OPS_INSTANTIATE(double, double)
MONOLITH_OPS_INSTANTIATE(Eigen::half, float)
MONOLITH_OPS_INSTANTIATE(Eigen::bfloat16, float)
#undef MONOLITH_OPS_INSTANTIATE

}  // namespace monolith_ops
