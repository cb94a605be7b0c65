// Copyright 2026 The monolith_ops Authors.
// SPDX-License-Identifier: Apache-2.0
// The sum of squares of the CPU core over a list: a range of its elements
// or a group of blocks read side by side, on the loops of the chosen
// instruction set (sum_squares_loops.h, sum_squares_x86.h).
//
// Private to the CPU core (cc/core/clip_core.cc and the headers of
// cc/core/cpu/): an unnamed namespace, as in a source file.
#ifndef MONOLITH_OPS_CC_CORE_CPU_SUM_SQUARES_H_
#define MONOLITH_OPS_CC_CORE_CPU_SUM_SQUARES_H_

#include <cstdint>
#include <type_traits>
#include <vector>

#include "cc/core/clip_core.h"
#include "cc/core/cpu/blocks.h"
#include "cc/core/cpu/isa.h"
#include "cc/core/cpu/memory_policy.h"
#include "cc/core/cpu/sum_squares_loops.h"
#if MONOLITH_OPS_X86
#include "cc/core/cpu/sum_squares_x86.h"
#endif

namespace monolith_ops {
namespace {

#if !MONOLITH_OPS_X86  // the x86 names are the baseline loops, never chosen
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
#endif  // !MONOLITH_OPS_X86

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

#if MONOLITH_OPS_X86
// The sum of squares of the blocks [first, last) (at most kStreams) into
// acc[0, last - first), piece by piece as InterleaveBlocks visits them, for
// float and the 16-bit types on AVX-512. Each block's lanes stay in two
// registers for the whole group; when each of the kStreams blocks is one
// piece of kReduceBlock elements (the common case: blocks of large
// tensors), they are read side by side, 16 elements of each in turn, so that
// the kStreams * 2 chains of additions overlap instead of each waiting on the
// adder (one block's two chains alone cannot keep it busy). Whole blocks go
// side by side, not pieces of them: the bookkeeping between pieces costs more
// than it saves (docs/performance.md). The lanes, and the order of the
// additions in each, are those of SumSqAvx512: the sums are bitwise the
// same.
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

}  // namespace
}  // namespace monolith_ops

#endif  // MONOLITH_OPS_CC_CORE_CPU_SUM_SQUARES_H_
