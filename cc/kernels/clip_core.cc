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

// Independent accumulators of a block: kLanes doubles. Element g of the list
// (g is its global index, counted over the concatenated tensors) is widened to
// double, squared and added to lane g % kLanes, so a lane adds the squares of
// its elements in increasing g, at most kReduceBlock / kLanes of them in a
// block, and a block's lanes are added up once, in a fixed tree, at its end.
// Block boundaries are multiples of kLanes, so which lane an element meets,
// and in what order, depends only on the tensor sizes: never on how a block
// is cut into pieces, on threads or on the instruction set.
constexpr int kLanes = 32;
static_assert(kReduceBlock % kLanes == 0, "blocks hold whole lane rows");

// The square of x in double: x is rounded to ComputeType<T> first (a no-op
// for every T but double's own), then widened. The squares of float and
// 16-bit values are exact in double.
template <typename T>
inline __attribute__((always_inline)) double SquareD(T x) {
  const double v =
      static_cast<double>(static_cast<typename ComputeType<T>::type>(x));
  return v * v;
}

// Software prefetch distance, in bytes: the loops request the line this far
// ahead of the one they read, within the same tensor. Reading a list that
// sits in the last-level cache, the hardware prefetchers alone keep too few
// lines in flight for loops that spend several instructions per element.
constexpr int64_t kPrefetchDistance = 4096;

template <typename T>
inline __attribute__((always_inline)) void PrefetchRow(const T* x, int64_t r,
                                                       int64_t avail) {
  constexpr int64_t kAhead = kPrefetchDistance / sizeof(T);
  constexpr int64_t kStep = 64 / sizeof(T) > 0 ? 64 / sizeof(T) : 1;
  for (int64_t k = 0; k < kLanes; k += kStep) {
    if (r + kAhead + k < avail) __builtin_prefetch(x + r + kAhead + k, 0, 3);
  }
}

// Adds the squares of x[0, n), whose first element has global index g, to the
// lanes acc. x[0, avail) with avail >= n is readable (the rest of the tensor):
// only prefetched.
template <typename T>
inline __attribute__((always_inline)) void AddSquaresImpl(const T* x,
                                                          int64_t n, int64_t g,
                                                          int64_t avail,
                                                          double* acc) {
  int64_t i = 0;
  for (int j = static_cast<int>(g % kLanes); j != 0 && j < kLanes && i < n;
       ++j, ++i) {
    acc[j] += SquareD(x[i]);
  }
  for (; i + kLanes <= n; i += kLanes) {
    PrefetchRow(x, i, avail);
    for (int j = 0; j < kLanes; ++j) acc[j] += SquareD(x[i + j]);
  }
  for (int j = 0; i < n; ++i, ++j) acc[j] += SquareD(x[i]);
}

template <typename T>
void AddSquaresBase(const T* x, int64_t n, int64_t g, int64_t avail,
                    double* acc) {
  AddSquaresImpl(x, n, g, avail, acc);
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

template <typename T, typename S>
void ScaleBase(const T* in, T* out, int64_t n, S scale) {
  ScaleImpl(in, out, n, scale);
}

#if MONOLITH_OPS_X86
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
template <typename T, typename S>
void ScaleAvx2(const T* in, T* out, int64_t n, S scale) {
  ScaleBase(in, out, n, scale);
}
template <typename T, typename S>
void ScaleStreamAvx2(const T* in, T* out, int64_t n, S scale) {
  ScaleBase(in, out, n, scale);
}
#endif  // MONOLITH_OPS_X86

#if MONOLITH_OPS_X86
// The same lanes, operations and order as AddSquaresImpl, by hand. A lane
// row of kLanes elements starts at a global index that is a multiple of
// kLanes; a segment's first and last rows may be partial, and there the lanes
// outside the segment add the square of +0.0, which leaves them unchanged (a
// lane starts at +0.0 and only squares are added to it, so it is never -0.0).
// These rows are read under a mask from `row`, an address that may lie before
// x; masked-off elements are never read.

// AVX2: the 32 lanes are eight registers of four doubles.
template <typename T>
__attribute__((target("avx2,f16c"), always_inline)) inline __m256d Load4(
    const T* p);
template <>
__attribute__((target("avx2,f16c"), always_inline)) inline __m256d Load4(
    const float* p) {
  return _mm256_cvtps_pd(_mm_loadu_ps(p));
}
template <>
__attribute__((target("avx2,f16c"), always_inline)) inline __m256d Load4(
    const double* p) {
  return _mm256_loadu_pd(p);
}
template <>
__attribute__((target("avx2,f16c"), always_inline)) inline __m256d Load4(
    const Eigen::half* p) {
  return _mm256_cvtps_pd(
      _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}
template <>
__attribute__((target("avx2,f16c"), always_inline)) inline __m256d Load4(
    const Eigen::bfloat16* p) {
  const __m128i wide = _mm_cvtepu16_epi32(
      _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  return _mm256_cvtps_pd(_mm_castsi128_ps(_mm_slli_epi32(wide, 16)));
}

template <typename T>
__attribute__((target("avx2,f16c"), always_inline)) inline void AddRowAvx2(
    const T* row, __m256d* a) {
  for (int k = 0; k < kLanes / 4; ++k) {
    const __m256d v = Load4(row + 4 * k);
    a[k] = _mm256_add_pd(a[k], _mm256_mul_pd(v, v));
  }
}

// Lanes [lo, hi) of the row: through a zeroed copy, or for float a masked
// load.
template <typename T>
__attribute__((target("avx2,f16c"), always_inline)) inline void
AddPartialRowAvx2(const T* row, int lo, int hi, __m256d* a) {
  T buf[kLanes];
  for (int j = 0; j < kLanes; ++j) buf[j] = T(0);
  for (int j = lo; j < hi; ++j) buf[j] = row[j];
  AddRowAvx2(buf, a);
}
template <>
__attribute__((target("avx2,f16c"), always_inline)) inline void
AddPartialRowAvx2(const float* row, int lo, int hi, __m256d* a) {
  const __m128i lane = _mm_setr_epi32(0, 1, 2, 3);
  for (int k = 0; k < kLanes / 4; ++k) {
    const __m128i j = _mm_add_epi32(lane, _mm_set1_epi32(4 * k));
    const __m128i in = _mm_and_si128(_mm_cmpgt_epi32(j, _mm_set1_epi32(lo - 1)),
                                     _mm_cmpgt_epi32(_mm_set1_epi32(hi), j));
    const __m256d v = _mm256_cvtps_pd(_mm_maskload_ps(row + 4 * k, in));
    a[k] = _mm256_add_pd(a[k], _mm256_mul_pd(v, v));
  }
}

template <typename T>
__attribute__((target("avx2,f16c"))) void AddSquaresAvx2(const T* x,
                                                         int64_t n, int64_t g,
                                                         int64_t avail,
                                                         double* acc) {
  __m256d a[kLanes / 4];
  for (int k = 0; k < kLanes / 4; ++k) a[k] = _mm256_loadu_pd(acc + 4 * k);
  const int head = static_cast<int>(g % kLanes);
  const T* row = x - head;  // global index a multiple of kLanes
  const int64_t end = head + n;
  avail += head;
  int64_t r = 0;
  if (head != 0 || end < kLanes) {
    AddPartialRowAvx2(row, head,
                      static_cast<int>(std::min<int64_t>(end, kLanes)), a);
    r = kLanes;
  }
  for (; r + kLanes <= end; r += kLanes) {
    PrefetchRow(row, r, avail);
    AddRowAvx2(row + r, a);
  }
  if (r < end) AddPartialRowAvx2(row + r, 0, static_cast<int>(end - r), a);
  for (int k = 0; k < kLanes / 4; ++k) _mm256_storeu_pd(acc + 4 * k, a[k]);
}

// AVX-512: four registers of eight doubles, every row loaded under a mask.
#define MONOLITH_OPS_AVX512 "avx512f,avx512bw,avx512vl,avx2,f16c"
template <typename T>
__attribute__((target(MONOLITH_OPS_AVX512), always_inline)) inline __m512d
Load8(const T* p, __mmask8 m);
template <>
__attribute__((target(MONOLITH_OPS_AVX512), always_inline)) inline __m512d
Load8(const float* p, __mmask8 m) {
  return _mm512_cvtps_pd(_mm256_maskz_loadu_ps(m, p));
}
template <>
__attribute__((target(MONOLITH_OPS_AVX512), always_inline)) inline __m512d
Load8(const double* p, __mmask8 m) {
  return _mm512_maskz_loadu_pd(m, p);
}
template <>
__attribute__((target(MONOLITH_OPS_AVX512), always_inline)) inline __m512d
Load8(const Eigen::half* p, __mmask8 m) {
  return _mm512_cvtps_pd(_mm256_cvtph_ps(_mm_maskz_loadu_epi16(m, p)));
}
template <>
__attribute__((target(MONOLITH_OPS_AVX512), always_inline)) inline __m512d
Load8(const Eigen::bfloat16* p, __mmask8 m) {
  const __m256i wide = _mm256_cvtepu16_epi32(_mm_maskz_loadu_epi16(m, p));
  return _mm512_cvtps_pd(_mm256_castsi256_ps(_mm256_slli_epi32(wide, 16)));
}

// Lanes [lo, hi) of 8, lo and hi clamped to [0, 8].
inline __mmask8 LaneMask8(int64_t lo, int64_t hi) {
  lo = std::min<int64_t>(std::max<int64_t>(lo, 0), 8);
  hi = std::min<int64_t>(std::max<int64_t>(hi, 0), 8);
  if (hi <= lo) return 0;
  return static_cast<__mmask8>(((1u << hi) - 1) ^ ((1u << lo) - 1));
}

// Lanes [lo, hi) of the row.
template <typename T>
__attribute__((target(MONOLITH_OPS_AVX512), always_inline)) inline void
AddRowAvx512(const T* row, int64_t lo, int64_t hi, __m512d* a) {
  for (int k = 0; k < kLanes / 8; ++k) {
    const __m512d v = Load8(row + 8 * k, LaneMask8(lo - 8 * k, hi - 8 * k));
    a[k] = _mm512_add_pd(a[k], _mm512_mul_pd(v, v));
  }
}

template <typename T>
__attribute__((target(MONOLITH_OPS_AVX512))) void AddSquaresAvx512(
    const T* x, int64_t n, int64_t g, int64_t avail, double* acc) {
  __m512d a[kLanes / 8];
  for (int k = 0; k < kLanes / 8; ++k) a[k] = _mm512_loadu_pd(acc + 8 * k);
  const int head = static_cast<int>(g % kLanes);
  const T* row = x - head;  // global index a multiple of kLanes
  const int64_t end = head + n;
  avail += head;
  int64_t r = 0;
  if (head != 0 || end < kLanes) {
    AddRowAvx512(row, head, end, a);
    r = kLanes;
  }
  for (; r + kLanes <= end; r += kLanes) {
    PrefetchRow(row, r, avail);
    AddRowAvx512(row + r, 0, kLanes, a);
  }
  if (r < end) AddRowAvx512(row + r, 0, end - r, a);
  for (int k = 0; k < kLanes / 8; ++k) _mm512_storeu_pd(acc + 8 * k, a[k]);
}
#undef MONOLITH_OPS_AVX512

bool HasAvx512() {
  static const bool has = __builtin_cpu_supports("avx512f") &&
                          __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl") && HasAvx2();
  return has;
}
#else   // Baseline loops only: the AVX names are never chosen.
constexpr bool HasAvx512() { return false; }
template <typename T>
void AddSquaresAvx2(const T* x, int64_t n, int64_t g, int64_t avail,
                    double* acc) {
  AddSquaresBase(x, n, g, avail, acc);
}
template <typename T>
void AddSquaresAvx512(const T* x, int64_t n, int64_t g, int64_t avail,
                      double* acc) {
  AddSquaresBase(x, n, g, avail, acc);
}
#endif  // MONOLITH_OPS_X86

// The loops the sum of squares runs: the widest the CPU has, capped by
// MONOLITH_OPS_ISA ("baseline" or "avx2") when set, so that tests can run
// every path on one machine. All give bitwise the same sums.
enum class Isa { kBaseline, kAvx2, kAvx512 };
Isa SumSqIsa() {
  static const Isa isa = [] {
    Isa best = HasAvx512() ? Isa::kAvx512
               : HasAvx2() ? Isa::kAvx2
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
using AddSquaresFn = void (*)(const T*, int64_t, int64_t, int64_t, double*);
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
  const AddSquaresFn<T> add = AddSquaresFor<T>(SumSqIsa());
  // Adds the squares of elements [start, start + len) of tensor t to acc.
  const auto add_piece = [&](int64_t t, int64_t start, int64_t len,
                             double* acc) {
    PrefetchAhead(inputs, sizes, count, t, start);
    add(inputs[t] + start, len, offsets[t] + start, sizes[t] - start, acc);
  };
  if (total <= kSerialElements) {
    // Small enough for one thread, and read from cache: one block at a time.
    for (int64_t b = 0; b < NumBlocks(total); ++b) {
      double acc[kLanes] = {};
      PieceCursor pieces;
      pieces.Reset(offsets, BlockBegin(b), BlockEnd(offsets, b), kReduceBlock);
      while (!pieces.done()) {
        const Piece p = pieces.Next();
        add_piece(p.tensor, p.start, p.length, acc);
      }
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
              add_piece(t, start, len, acc[b - group]);
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
