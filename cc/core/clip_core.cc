// Copyright 2026 The monolith_ops Authors.
// SPDX-License-Identifier: Apache-2.0
// CPU implementation of the framework-free clipping core (see clip_core.h):
// its entry points. The loops and the iteration they run on are in
// cc/core/cpu/: isa.h (which instruction set), blocks.h (the list cut into
// blocks, pieces and threads), memory_policy.h (prefetch, streaming
// stores), sum_squares*.h (the reductions) and scale.h (the scaling).
//
// The inner loops are written once and compiled for the baseline ISA and for
// AVX2 (the sum of squares also for AVX-512), picked at run time. All give
// bitwise the same results: every accumulator is added to in a fixed order
// and floating-point contraction is off for this file (CXX_FLAGS of
// build_config.bzl), so the compiler never fuses a multiply and an add. The
// hand-written loops fuse them only where it cannot change a rounding: adding
// the square of a float, half or bfloat16, which is exact in double.
#include "cc/core/clip_core.h"

#include <algorithm>
#include <cstdint>
#include <functional>
#include <limits>
#include <vector>

#include "cc/core/cpu/blocks.h"
#include "cc/core/cpu/isa.h"
#include "cc/core/cpu/memory_policy.h"
#include "cc/core/cpu/scale.h"
#include "cc/core/cpu/sum_squares.h"

namespace monolith_ops {

void SerialFor(int64_t n, int64_t,
               const std::function<void(int64_t, int64_t)>& fn) {
  if (n > 0) fn(0, n);
}

template <typename T>
double SumOfSquares(const T* const* inputs, const int64_t* sizes, int64_t count,
                    const ParallelFor& parallel_for, const CpuTuning& tuning) {
  const std::vector<int64_t> offsets = Offsets(sizes, count);
  const int64_t total = offsets[count];
  std::vector<double> partials(NumBlocks(total), 0.0);
  const Isa isa = ChosenIsa(tuning);
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
                     const ParallelFor& parallel_for, const CpuTuning& tuning) {
  // The units of work: block b of tensor t is unit first_unit[t] + b.
  std::vector<int64_t> first_unit(count + 1, 0);
  int64_t total = 0;
  for (int64_t t = 0; t < count; ++t) {
    first_unit[t + 1] = first_unit[t] + NumBlocks(sizes[t]);
    total += sizes[t];
  }
  const int64_t units = first_unit[count];
  std::vector<double> partials(units, 0.0);
  const Isa isa = ChosenIsa(tuning);
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
           int64_t count, S scale, const ParallelFor& parallel_for,
           const CpuTuning& tuning) {
  const bool avx2 = ChosenIsa(tuning) != Isa::kBaseline;
  const std::vector<int64_t> offsets = Offsets(sizes, count);
  const int64_t bytes = offsets.back() * static_cast<int64_t>(sizeof(T));
  const bool stream = avx2 && bytes >= StreamMinBytes(tuning);
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

#define MONOLITH_OPS_INSTANTIATE(T, tf_name, gpu_dtype, S, ...)                \
  template double SumOfSquares<T>(const T* const*, const int64_t*, int64_t,    \
                                  const ParallelFor&, const CpuTuning&);       \
  template void Scale<T, S>(const T* const*, T* const*, const int64_t*,        \
                            int64_t, S, const ParallelFor&, const CpuTuning&); \
  template void FillNaN<T>(T* const*, const int64_t*, int64_t,                 \
                           const ParallelFor&);                                \
  template void ReducePerTensor<T>(const T* const*, const int64_t*, int64_t,   \
                                   NormType, double*, const ParallelFor&,      \
                                   const CpuTuning&);

MONOLITH_OPS_FOR_EACH_DTYPE(MONOLITH_OPS_INSTANTIATE)
#undef MONOLITH_OPS_INSTANTIATE

}  // namespace monolith_ops
