// Copyright 2026 The monolith_ops Authors.
// SPDX-License-Identifier: Apache-2.0
// The kernels of the V2 ops: each tensor's reduction (sum of squares or
// largest absolute value) by chunk, then gathered per tensor; the norms from
// those reductions, with inverse_scale; and the clip with unscaling (which
// applies the clip as global_norm_kernels.cuh does).
//
// Private to the CUDA core (cc/core/clip_core_gpu.cu and the headers of
// cc/core/gpu/): an unnamed namespace, as in a source file. Compiled by nvcc
// only; includes no TensorFlow header.
#ifndef MONOLITH_OPS_CC_CORE_GPU_PER_TENSOR_KERNELS_CUH_
#define MONOLITH_OPS_CC_CORE_GPU_PER_TENSOR_KERNELS_CUH_

#include <cuda_runtime.h>

#include <cstdint>

#include "cc/core/clip_core_gpu.h"
#include "cc/core/clip_decision.h"
#include "cc/core/gpu/block_reduce.cuh"
#include "cc/core/gpu/elements.cuh"
#include "cc/core/gpu/global_norm_kernels.cuh"
#include "cc/core/gpu/multi_tensor.cuh"

namespace monolith_ops {
namespace gpu {
namespace {

// Reduces each chunk's part of each tensor: workspace[chunk + t] = the
// reduction of the elements of tensor t in chunk `chunk` (chunk + t is one
// to one over the pairs that share elements, since both grow with the
// position). A chunk inside one tensor is reduced by the whole block, as the
// sum of squares is; a chunk shared by several tensors gives each tensor's
// part to one warp (warp w takes the chunk's tensors w, w + warps, ...). Which
// thread reads which element depends only on the chunk, so the results do
// not depend on the grid size.
template <DType D, NormType kType>
__global__ void __launch_bounds__(kThreads)
    PerTensorChunkKernel(const __grid_constant__ TensorTable packed,
                         double* workspace) {
  const TableView table(packed);
  using E = Elem<D>;
  constexpr int V = VectorWidth<D>();
  constexpr int kWarps = kThreads / 32;
  __shared__ double scratch[kWarps];
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const int64_t chunks_per_block =
      (table.num_chunks() + gridDim.x - 1) / gridDim.x;
  const int64_t first_chunk = blockIdx.x * chunks_per_block;
  const int64_t end_chunk =
      min(first_chunk + chunks_per_block, table.num_chunks());
  for (int64_t chunk = first_chunk; chunk < end_chunk; ++chunk) {
    const int64_t begin = chunk * kChunkElements;
    const int64_t end = min(begin + kChunkElements, table.padded_total());
    const int64_t first = BlockFindTensor(table, begin);
    const int64_t last = BlockFindTensor(table, end - 1);
    if (first == last) {
      double acc[V];
#pragma unroll
      for (int k = 0; k < V; ++k) acc[k] = 0.0;
      for (int j = 0; j < VectorsPerThread<D>(); ++j) {
        const int64_t p =
            begin + (static_cast<int64_t>(j) * kThreads + threadIdx.x) * V;
        if (p >= end) break;
        typename E::Storage v[V];
        TensorSlot<D>(table, first, p).Read(v);
#pragma unroll
        for (int k = 0; k < V; ++k) {
          acc[k] = Accumulate<kType>(acc[k],
                                     static_cast<double>(E::ToCompute(v[k])));
        }
      }
      const double r = BlockReduce<kType>(LaneReduce<kType>(acc), scratch);
      if (threadIdx.x == 0) workspace[chunk + first] = r;
      __syncthreads();  // scratch is reused by the next chunk
      continue;
    }
    for (int64_t t = first + warp; t <= last; t += kWarps) {
      const int64_t seg_begin = max(begin, table.Offset(t));
      const int64_t seg_end = min(end, table.Offset(t + 1));
      if (seg_begin >= seg_end) continue;  // an empty tensor
      double acc[V];
#pragma unroll
      for (int k = 0; k < V; ++k) acc[k] = 0.0;
      for (int64_t p = seg_begin + static_cast<int64_t>(lane) * V; p < seg_end;
           p += 32 * V) {
        typename E::Storage v[V];
        TensorSlot<D>(table, t, p).Read(v);
#pragma unroll
        for (int k = 0; k < V; ++k) {
          acc[k] = Accumulate<kType>(acc[k],
                                     static_cast<double>(E::ToCompute(v[k])));
        }
      }
      const double r = WarpReduce<kType>(LaneReduce<kType>(acc));
      if (lane == 0) workspace[chunk + t] = r;
    }
  }
}

// per_tensor[position of t] = the combination of tensor t's chunk parts,
// each tensor by one warp (lane l takes its chunks l, l + 32, ...), 0 for an
// empty tensor.
template <NormType kType>
__global__ void __launch_bounds__(kThreads)
    PerTensorGatherKernel(const __grid_constant__ TensorTable packed,
                          const double* workspace, double* per_tensor) {
  const TableView table(packed);
  const int lane = threadIdx.x % 32;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (kThreads / 32);
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * (kThreads / 32) +
                   threadIdx.x / 32;
       t < table.count(); t += warps) {
    const int64_t begin = table.Offset(t);
    const int64_t end = table.Offset(t + 1);
    double acc = 0.0;
    if (begin < end) {
      const int64_t first_chunk = begin / kChunkElements;
      const int64_t last_chunk = (end - 1) / kChunkElements;
      for (int64_t c = first_chunk + lane; c <= last_chunk; c += 32) {
        acc = CombineReductions(kType, acc, workspace[c + t]);
      }
    }
    acc = WarpReduce<kType>(acc);
    if (lane == 0) {
      per_tensor[table.Position(t)] = acc;
    }
  }
}

// The norms from the per-tensor reductions (LaunchFinishNorms()). Every
// thread writes the norms of its tensors. The block combines the reductions
// a tile of kFinalThreads at a time, in parallel: each tile by a tree in
// shared memory (tile[t] with tile[t + stride], for stride kFinalThreads / 2
// down to 1; entries past the list are 0, which changes neither a sum nor a
// maximum), and thread 0 combines the tiles' results in list order. The
// order depends only on count: bitwise deterministic.
template <typename Tn>
__global__ void __launch_bounds__(kFinalThreads)
    FinishNormsKernel(NormType type, const double* per_tensor, int64_t count,
                      const Tn* inverse_scale_ptr, Tn* global_norm,
                      Tn* tensor_norms) {
  __shared__ double tile[kFinalThreads];
  const Tn inverse_scale =
      inverse_scale_ptr != nullptr ? *inverse_scale_ptr : Tn(1);
  const bool valid = IsFinite(inverse_scale) && inverse_scale > Tn(0);
  double acc = 0.0;
  for (int64_t base = 0; base < count; base += kFinalThreads) {
    const int64_t i = base + threadIdx.x;
    double r = 0.0;
    if (i < count) {
      r = per_tensor[i];
      tensor_norms[i] =
          valid ? UnscaledNorm<Tn>(type, r, inverse_scale) : QuietNaN<Tn>();
    }
    tile[threadIdx.x] = r;
    for (int stride = kFinalThreads / 2; stride > 0; stride /= 2) {
      __syncthreads();
      if (threadIdx.x < stride) {
        tile[threadIdx.x] = CombineReductions(type, tile[threadIdx.x],
                                              tile[threadIdx.x + stride]);
      }
    }
    if (threadIdx.x == 0) {
      acc = CombineReductions(type, acc, tile[0]);
    }
    __syncthreads();  // the tile is reused
  }
  if (threadIdx.x == 0) {
    *global_norm =
        valid ? UnscaledNorm<Tn>(type, acc, inverse_scale) : QuietNaN<Tn>();
  }
}

// The clip with unscaling (LaunchClipUnscaled()).
template <DType D, typename Tn>
__global__ void __launch_bounds__(kThreads)
    ClipUnscaledKernel(const __grid_constant__ TensorTable packed,
                       const Tn* norm, const Tn* clip_norm,
                       const Tn* inverse_scale_ptr) {
  const TableView table(packed);
  using Compute = typename Elem<D>::Compute;
  const Tn inverse_scale =
      inverse_scale_ptr != nullptr ? *inverse_scale_ptr : Tn(1);
  Tn scale_tn = Tn(1);
  const ClipAction action =
      DecideUnscaledClipOrNaN(*norm, *clip_norm, inverse_scale, &scale_tn);
  const Compute scale = ScaleThroughElementType(inverse_scale)
                            ? ElementScale<D>(scale_tn)
                            : static_cast<Compute>(scale_tn);
  ApplyClip<D>(table, action, scale);
}

}  // namespace
}  // namespace gpu
}  // namespace monolith_ops

#endif  // MONOLITH_OPS_CC_CORE_GPU_PER_TENSOR_KERNELS_CUH_
