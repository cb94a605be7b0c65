// Copyright 2026 The monolith_ops Authors.
// SPDX-License-Identifier: Apache-2.0
// Reductions across the threads of a warp or a block, and across a
// thread's vector lanes, each in a fixed order, so that the CUDA core's sums
// and norms do not depend on timing.
//
// Private to the CUDA core (cc/core/clip_core_gpu.cu and the headers of
// cc/core/gpu/): an unnamed namespace, as in a source file. Compiled by nvcc
// only; includes no TensorFlow header.
#ifndef MONOLITH_OPS_CC_CORE_GPU_BLOCK_REDUCE_CUH_
#define MONOLITH_OPS_CC_CORE_GPU_BLOCK_REDUCE_CUH_

#include <cuda_runtime.h>

#include "cc/core/clip_decision.h"

namespace monolith_ops {
namespace gpu {
namespace {

// Sum over the block, in a fixed order; the result is valid in thread 0.
// `scratch` holds one double per warp.
__device__ double BlockSum(double v, double* scratch) {
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const int num_warps = blockDim.x / 32;
  for (int offset = 16; offset > 0; offset /= 2) {
    v += __shfl_down_sync(0xffffffffu, v, offset);
  }
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < num_warps ? scratch[lane] : 0.0;
    for (int offset = 16; offset > 0; offset /= 2) {
      v += __shfl_down_sync(0xffffffffu, v, offset);
    }
  }
  return v;
}

// Adds one element into a thread's reduction: its square (kL2) or its
// absolute value's NaN-propagating maximum (kInf).
template <NormType kType>
__device__ double Accumulate(double acc, double x) {
  if (kType == NormType::kL2) return fma(x, x, acc);
  return MaxOrNaN(acc, fabs(x));
}

// CombineReductions() over a warp, in a fixed order; valid in lane 0. Every
// lane of the warp must call it.
template <NormType kType>
__device__ double WarpReduce(double v) {
  for (int offset = 16; offset > 0; offset /= 2) {
    v = CombineReductions(kType, v, __shfl_down_sync(0xffffffffu, v, offset));
  }
  return v;
}

// CombineReductions() over the block, in a fixed order; valid in thread 0.
// `scratch` holds one double per warp.
template <NormType kType>
__device__ double BlockReduce(double v, double* scratch) {
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const int num_warps = blockDim.x / 32;
  v = WarpReduce<kType>(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = WarpReduce<kType>(lane < num_warps ? scratch[lane] : 0.0);
  }
  return v;
}

// The reduction of one thread's V lanes, combined pairwise in a fixed order.
template <NormType kType, int V>
__device__ double LaneReduce(double (&acc)[V]) {
#pragma unroll
  for (int width = V / 2; width > 0; width /= 2) {
#pragma unroll
    for (int k = 0; k < width; ++k) {
      acc[k] = CombineReductions(kType, acc[k], acc[k + width]);
    }
  }
  return acc[0];
}

}  // namespace
}  // namespace gpu
}  // namespace monolith_ops

#endif  // MONOLITH_OPS_CC_CORE_GPU_BLOCK_REDUCE_CUH_
