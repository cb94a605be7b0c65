// Copyright 2026 The monolith_ops Authors.
// SPDX-License-Identifier: Apache-2.0
// The kernels of the global-norm ops on the chunk walk (multi_tensor.cuh):
// the sum of squares of a list into per-chunk partials, the partials added
// into the sum or the norm, and the clip of a list by a norm.
//
// Private to the CUDA core (cc/core/clip_core_gpu.cu and the headers of
// cc/core/gpu/): an unnamed namespace, as in a source file. Compiled by nvcc
// only; includes no TensorFlow header.
#ifndef MONOLITH_OPS_CC_CORE_GPU_GLOBAL_NORM_KERNELS_CUH_
#define MONOLITH_OPS_CC_CORE_GPU_GLOBAL_NORM_KERNELS_CUH_

#include <cuda_runtime.h>

#include <cstdint>

#include "cc/core/clip_core_gpu.h"
#include "cc/core/clip_decision.h"
#include "cc/core/gpu/block_reduce.cuh"
#include "cc/core/gpu/elements.cuh"
#include "cc/core/gpu/multi_tensor.cuh"

namespace monolith_ops {
namespace gpu {
namespace {

// Writes partials[c] = the sum of squares of chunk c, in double.
template <DType D>
__global__ void __launch_bounds__(kThreads)
    SumOfSquaresKernel(const __grid_constant__ TensorTable packed,
                       double* partials) {
  const TableView table(packed);
  using E = Elem<D>;
  constexpr int V = VectorWidth<D>();
  __shared__ double scratch[kThreads / 32];
  double acc[V] = {};
  auto on_group = [&](const Slot<D>(&slots)[kUnroll]) {
    typename E::Storage v[kUnroll][V];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) slots[u].Read(v[u]);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
#pragma unroll
      for (int k = 0; k < V; ++k) {
        const double x = static_cast<double>(E::ToCompute(v[u][k]));
        acc[k] = fma(x, x, acc[k]);
      }
    }
  };
  auto on_chunk_end = [&](int64_t chunk) {
#pragma unroll
    for (int width = V / 2; width > 0; width /= 2) {
#pragma unroll
      for (int k = 0; k < width; ++k) acc[k] += acc[k + width];
    }
    const double sum = BlockSum(acc[0], scratch);
    if (threadIdx.x == 0) partials[chunk] = sum;
#pragma unroll
    for (int k = 0; k < V; ++k) acc[k] = 0.0;
    __syncthreads();  // scratch is reused by the next chunk
  };
  ForEachChunk<D>(table, on_group, on_chunk_end);
}

// Adds the partials in a fixed order: *sum_out = Tn(sum), *norm_out =
// sqrt(Tn(sum)); either may be null.
template <typename Tn>
__global__ void __launch_bounds__(kFinalThreads)
    FinalSumKernel(const double* partials, int64_t n, Tn* sum_out,
                   Tn* norm_out) {
  __shared__ double scratch[kFinalThreads / 32];
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) acc += partials[i];
  const double total = BlockSum(acc, scratch);
  if (threadIdx.x == 0) {
    const Tn sum = static_cast<Tn>(total);
    if (sum_out != nullptr) *sum_out = sum;
    if (norm_out != nullptr) *norm_out = sqrt(sum);
  }
}

// The scale as the CPU kernel applies it: cast to the element type first
// (as tf.clip_by_global_norm does; Eigen converts double to half or bfloat16
// through float), then widened to the type elements are scaled in.
template <DType D, typename Tn>
__device__ typename Elem<D>::Compute ElementScale(Tn scale) {
  using E = Elem<D>;
  return E::ToCompute(E::FromCompute(static_cast<typename E::Compute>(scale)));
}

// Applies a decided clip to the table: every output NaN (kFillNaN), a copy
// of the inputs (kPassThrough; nothing written where in place), or each
// element times `scale` in its compute type, then rounded (kScale).
template <DType D>
__device__ void ApplyClip(const TableView& table, ClipAction action,
                          typename Elem<D>::Compute scale) {
  using E = Elem<D>;
  using Storage = typename E::Storage;
  constexpr int V = VectorWidth<D>();
  if (action == ClipAction::kPassThrough && table.all_in_place()) return;
  auto on_group = [&](const Slot<D>(&slots)[kUnroll]) {
    Storage v[kUnroll][V];
    // A pass-through leaves alone a tensor that is its own output.
    bool skip[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      skip[u] = slots[u].valid == 0 || (action == ClipAction::kPassThrough &&
                                        slots[u].in == slots[u].out);
    }
    if (action == ClipAction::kFillNaN) {
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
#pragma unroll
        for (int k = 0; k < V; ++k) v[u][k] = E::NaN();
      }
    } else {
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        if (!skip[u]) slots[u].Read(v[u]);
      }
    }
    if (action == ClipAction::kScale) {
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
#pragma unroll
        for (int k = 0; k < V; ++k) {
          v[u][k] = E::FromCompute(E::ToCompute(v[u][k]) * scale);
        }
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      if (!skip[u]) slots[u].Write(v[u]);
    }
  };
  ForEachChunk<D>(table, on_group, [](int64_t) {});
}

template <DType D, typename Tn>
__global__ void __launch_bounds__(kThreads)
    ClipKernel(const __grid_constant__ TensorTable packed, const Tn* norm,
               const Tn* clip_norm_ptr, Tn clip_norm_value) {
  const TableView table(packed);
  const Tn clip_norm =
      clip_norm_ptr != nullptr ? *clip_norm_ptr : clip_norm_value;
  Tn scale_tn = Tn(1);
  // The clip rule of clip_decision.h; inputs the CPU kernels reject give NaN.
  const ClipAction action = DecideClipOrNaN(*norm, clip_norm, &scale_tn);
  ApplyClip<D>(table, action, ElementScale<D>(scale_tn));
}

}  // namespace
}  // namespace gpu
}  // namespace monolith_ops

#endif  // MONOLITH_OPS_CC_CORE_GPU_GLOBAL_NORM_KERNELS_CUH_
