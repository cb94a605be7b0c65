// Copyright 2026 The monolith_ops Authors.
// SPDX-License-Identifier: Apache-2.0
// CUDA implementation of the framework-free clipping core (clip_core_gpu.h).
//
// Includes no TensorFlow header: TensorFlow's GPU headers, compiled by a
// newer nvcc than the one TensorFlow was built with, mix two layouts of the
// runtime's structures. This file needs only the CUDA runtime, which the
// build links statically.
//
// This file holds the launchers and the entry points; what they launch is in
// cc/core/gpu/: elements.cuh (element types, launch shape), multi_tensor.cuh
// (the chunk walk over a tensor list), block_reduce.cuh (fixed-order
// reductions), global_norm_kernels.cuh and per_tensor_kernels.cuh (the
// kernels). A new op on a tensor list is a kernel on ForEachChunk and a
// launcher here.
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <utility>

#include "cc/core/clip_core_gpu.h"
#include "cc/core/clip_decision.h"
#include "cc/core/gpu/elements.cuh"
#include "cc/core/gpu/global_norm_kernels.cuh"
#include "cc/core/gpu/per_tensor_kernels.cuh"

namespace monolith_ops {
namespace gpu {
namespace {

// SetMaxGridForTesting's cap; 0: none.
std::atomic<int>& MaxGridForTesting() {
  static std::atomic<int> cap{0};
  return cap;
}

// The grid of a chunk kernel: as many blocks as fit on the device at once, at
// most one per chunk (and at most SetMaxGridForTesting's cap). The resident
// count is computed once per kernel and device.

template <typename Kernel>
cudaError_t GridSize(Kernel kernel, int threads, int64_t work, int* grid) {
  static std::mutex mu;
  static std::map<std::pair<const void*, int>, int> resident;
  int device = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err != cudaSuccess) return err;
  const std::pair<const void*, int> key(reinterpret_cast<const void*>(kernel),
                                        device);
  int blocks = 0;
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = resident.find(key);
    if (it != resident.end()) blocks = it->second;
  }
  if (blocks == 0) {
    int sms = 0;
    int per_sm = 0;
    err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
    if (err != cudaSuccess) return err;
    err = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel,
                                                        threads, 0);
    if (err != cudaSuccess) return err;
    blocks = std::max(1, sms) * std::max(1, per_sm);
    std::lock_guard<std::mutex> lock(mu);
    resident[key] = blocks;
  }
  const int cap = MaxGridForTesting().load(std::memory_order_relaxed);
  if (cap > 0) blocks = std::min(blocks, cap);
  *grid = static_cast<int>(std::min<int64_t>(work, blocks));
  return cudaSuccess;
}

template <DType D>
cudaError_t SumPartials(const TensorTable& table, double* partials,
                        cudaStream_t stream) {
  if (table.num_chunks == 0) return cudaSuccess;
  int grid = 0;
  cudaError_t err =
      GridSize(SumOfSquaresKernel<D>, kThreads, table.num_chunks, &grid);
  if (err != cudaSuccess) return err;
  SumOfSquaresKernel<D><<<grid, kThreads, 0, stream>>>(table, partials);
  return cudaGetLastError();
}

template <typename Tn>
cudaError_t FinalSum(const double* partials, int64_t n, void* sum_out,
                     void* norm_out, cudaStream_t stream) {
  FinalSumKernel<Tn><<<1, kFinalThreads, 0, stream>>>(
      partials, n, static_cast<Tn*>(sum_out), static_cast<Tn*>(norm_out));
  return cudaGetLastError();
}

template <DType D, typename Tn>
cudaError_t Clip(const TensorTable& table, const void* norm,
                 const void* clip_norm_ptr, double clip_norm_value,
                 cudaStream_t stream) {
  if (table.num_chunks == 0) return cudaSuccess;
  int grid = 0;
  cudaError_t err =
      GridSize(ClipKernel<D, Tn>, kThreads, table.num_chunks, &grid);
  if (err != cudaSuccess) return err;
  ClipKernel<D, Tn><<<grid, kThreads, 0, stream>>>(
      table, static_cast<const Tn*>(norm),
      static_cast<const Tn*>(clip_norm_ptr), static_cast<Tn>(clip_norm_value));
  return cudaGetLastError();
}

// Calls fn.template operator()<D>() for the table's dtype.
template <typename Fn>
cudaError_t ByDType(DType dtype, Fn fn) {
  switch (dtype) {
#define MONOLITH_OPS_BY_DTYPE(T, tf_name, gpu_dtype, ComputeT, ...) \
  case DType::gpu_dtype:                                            \
    return fn.template operator()<DType::gpu_dtype>();
    MONOLITH_OPS_FOR_EACH_DTYPE(MONOLITH_OPS_BY_DTYPE)
#undef MONOLITH_OPS_BY_DTYPE
  }
  return cudaErrorInvalidValue;
}

// Calls fn.template operator()<NormT>() for the norm type `tnorm`.
template <typename Fn>
cudaError_t ByNormDType(DType tnorm, Fn fn) {
#define MONOLITH_OPS_BY_NORM_DTYPE(NormT, tf_name, gpu_dtype, ComputeT, ...) \
  if (tnorm == DType::gpu_dtype) return fn.template operator()<NormT>();
  MONOLITH_OPS_FOR_EACH_NORM_DTYPE(MONOLITH_OPS_BY_NORM_DTYPE)
#undef MONOLITH_OPS_BY_NORM_DTYPE
  return cudaErrorInvalidValue;
}

bool IsNormDType(DType tnorm) {
#define MONOLITH_OPS_IS_NORM_DTYPE(NormT, tf_name, gpu_dtype, ComputeT, ...) \
  if (tnorm == DType::gpu_dtype) return true;
  MONOLITH_OPS_FOR_EACH_NORM_DTYPE(MONOLITH_OPS_IS_NORM_DTYPE)
#undef MONOLITH_OPS_IS_NORM_DTYPE
  return false;
}

struct SumPartialsFn {
  const TensorTable& table;
  double* partials;
  cudaStream_t stream;
  template <DType D>
  cudaError_t operator()() const {
    return SumPartials<D>(table, partials, stream);
  }
};

// The arguments of a clip; operator()<NormT>() launches it for the norm type
// NormT and the table's dtype.
struct ClipFn {
  const TensorTable& table;
  const void* norm;
  const void* clip_norm_ptr;
  double clip_norm_value;
  cudaStream_t stream;

  template <typename NormT>
  struct WithNorm {
    const ClipFn& clip;
    template <DType D>
    cudaError_t operator()() const {
      return Clip<D, NormT>(clip.table, clip.norm, clip.clip_norm_ptr,
                            clip.clip_norm_value, clip.stream);
    }
  };

  template <typename NormT>
  cudaError_t operator()() const {
    return ByDType(table.dtype, WithNorm<NormT>{*this});
  }
};

cudaError_t ClipAny(const TensorTable& table, DType tnorm, const void* norm,
                    const void* clip_norm_ptr, double clip_norm_value,
                    cudaStream_t stream) {
  return ByNormDType(
      tnorm, ClipFn{table, norm, clip_norm_ptr, clip_norm_value, stream});
}

struct FinalSumFn {
  const double* partials;
  int64_t n;
  void* sum_out;
  void* norm_out;
  cudaStream_t stream;
  template <typename NormT>
  cudaError_t operator()() const {
    return FinalSum<NormT>(partials, n, sum_out, norm_out, stream);
  }
};

cudaError_t FinalSumAny(DType tnorm, const double* partials, int64_t n,
                        void* sum_out, void* norm_out, cudaStream_t stream) {
  return ByNormDType(tnorm, FinalSumFn{partials, n, sum_out, norm_out, stream});
}

template <DType D, NormType kType>
cudaError_t PerTensorReduceFor(const TensorTable& table, double* workspace,
                               double* per_tensor, cudaStream_t stream) {
  if (table.count == 0) return cudaSuccess;
  int grid = 0;
  cudaError_t err;
  if (table.num_chunks > 0) {
    err = GridSize(PerTensorChunkKernel<D, kType>, kThreads, table.num_chunks,
                   &grid);
    if (err != cudaSuccess) return err;
    auto* const chunk_kernel = PerTensorChunkKernel<D, kType>;
    chunk_kernel<<<grid, kThreads, 0, stream>>>(table, workspace);
    err = cudaGetLastError();
    if (err != cudaSuccess) return err;
  }
  const int64_t gather_blocks =
      (table.count + kThreads / 32 - 1) / (kThreads / 32);
  err = GridSize(PerTensorGatherKernel<kType>, kThreads, gather_blocks, &grid);
  if (err != cudaSuccess) return err;
  auto* const gather_kernel = PerTensorGatherKernel<kType>;
  gather_kernel<<<grid, kThreads, 0, stream>>>(table, workspace, per_tensor);
  return cudaGetLastError();
}

struct PerTensorReduceFn {
  const TensorTable& table;
  NormType type;
  double* workspace;
  double* per_tensor;
  cudaStream_t stream;
  template <DType D>
  cudaError_t operator()() const {
    if (type == NormType::kInf) {
      return PerTensorReduceFor<D, NormType::kInf>(table, workspace, per_tensor,
                                                   stream);
    }
    return PerTensorReduceFor<D, NormType::kL2>(table, workspace, per_tensor,
                                                stream);
  }
};

struct FinishNormsFn {
  NormType type;
  const double* per_tensor;
  int64_t count;
  const void* inverse_scale;
  void* global_norm;
  void* tensor_norms;
  cudaStream_t stream;
  template <typename NormT>
  cudaError_t operator()() const {
    FinishNormsKernel<NormT><<<1, kFinalThreads, 0, stream>>>(
        type, per_tensor, count, static_cast<const NormT*>(inverse_scale),
        static_cast<NormT*>(global_norm), static_cast<NormT*>(tensor_norms));
    return cudaGetLastError();
  }
};

// The arguments of an unscaled clip; operator()<NormT>() launches it for the
// norm type NormT and the table's dtype.
struct ClipUnscaledFn {
  const TensorTable& table;
  const void* norm;
  const void* clip_norm;
  const void* inverse_scale;
  cudaStream_t stream;

  template <typename NormT>
  struct WithNorm {
    const ClipUnscaledFn& clip;
    template <DType D>
    cudaError_t operator()() const {
      const TensorTable& table = clip.table;
      if (table.num_chunks == 0) return cudaSuccess;
      int grid = 0;
      cudaError_t err = GridSize(ClipUnscaledKernel<D, NormT>, kThreads,
                                 table.num_chunks, &grid);
      if (err != cudaSuccess) return err;
      cudaStream_t stream = clip.stream;
      ClipUnscaledKernel<D, NormT><<<grid, kThreads, 0, stream>>>(
          table, static_cast<const NormT*>(clip.norm),
          static_cast<const NormT*>(clip.clip_norm),
          static_cast<const NormT*>(clip.inverse_scale));
      return cudaGetLastError();
    }
  };

  template <typename NormT>
  cudaError_t operator()() const {
    return ByDType(table.dtype, WithNorm<NormT>{*this});
  }
};

}  // namespace

size_t TableBytes(int64_t count, bool with_outputs, bool with_positions) {
  if (count <= kMaxInlineTensors) return 0;  // by value (or empty)
  // ends, inputs, outputs, positions
  const int64_t arrays = 2 + (with_outputs ? 1 : 0) + (with_positions ? 1 : 0);
  return static_cast<size_t>((arrays * count + 1) * 8);
}

int64_t NumChunks(DType dtype, const int64_t* sizes, int64_t count) {
  const int bytes = ElementBytes(dtype);
  if (bytes == 0) return 0;
  const int64_t width = kVectorBytes / bytes;
  int64_t padded = 0;
  for (int64_t i = 0; i < count; ++i) padded += RoundUp(sizes[i], width);
  return (padded + kChunkElements - 1) / kChunkElements;
}

TensorTable PackTable(DType dtype, const void* const* inputs,
                      void* const* outputs, const int64_t* sizes,
                      const int64_t* positions, int64_t count, void* host,
                      void* device) {
  TensorTable table;
  table.dtype = dtype;
  if (count <= 0 || ElementBytes(dtype) == 0) {
    table.all_in_place = true;  // nothing to write
    return table;
  }
  table.count = count;
  const int64_t width = kVectorBytes / ElementBytes(dtype);
  table.vector_width = static_cast<int32_t>(width);
  bool in_place = outputs != nullptr;
  for (int64_t i = 0; i < count && in_place; ++i) {
    in_place = sizes[i] == 0 || outputs[i] == inputs[i];
  }
  table.all_in_place = in_place;
  // Layout (clip_core_gpu.h): ends, inputs, then outputs unless in place
  // (the inputs serve as outputs), then positions when given.
  const int64_t inputs_at = count + 1;
  int64_t next = inputs_at + count;
  if (in_place) {
    table.outputs_at = inputs_at;
  } else if (outputs != nullptr) {
    table.outputs_at = next;
    next += count;
  }
  if (positions != nullptr) {
    table.positions_at = next;
    next += count;
  }
  const bool by_value = count <= kMaxInlineTensors;
  int64_t* words = by_value ? table.inline_words : static_cast<int64_t*>(host);
  int64_t end = 0;  // ends[i]
  words[0] = 0;
  for (int64_t i = 0; i < count; ++i) {
    const int64_t offset = RoundUp(end, width);
    end = offset + sizes[i];
    words[i + 1] = end;
  }
  std::memcpy(words + inputs_at, inputs, count * sizeof(void*));
  if (outputs != nullptr && !in_place) {
    std::memcpy(words + table.outputs_at, outputs, count * sizeof(void*));
  }
  if (positions != nullptr) {
    std::memcpy(words + table.positions_at, positions, count * sizeof(int64_t));
  }
  if (!by_value) {
    table.device_words = static_cast<const int64_t*>(device);
    table.device_bytes = next * 8;
  }
  table.padded_total = RoundUp(end, width);
  table.num_chunks = (table.padded_total + kChunkElements - 1) / kChunkElements;
  return table;
}

int CopyTableToDevice(const void* host, void* device, size_t bytes,
                      Stream stream) {
  if (bytes == 0) return cudaSuccess;
  return cudaMemcpyAsync(device, host, bytes, cudaMemcpyHostToDevice, stream);
}

int LaunchSumOfSquares(const TensorTable& table, DType tnorm, double* partials,
                       void* sum_out, Stream stream) {
  if (!IsNormDType(tnorm)) return cudaErrorInvalidValue;
  cudaError_t err =
      ByDType(table.dtype, SumPartialsFn{table, partials, stream});
  if (err != cudaSuccess) return err;
  return FinalSumAny(tnorm, partials, table.num_chunks, sum_out, nullptr,
                     stream);
}

int LaunchClip(const TensorTable& table, DType tnorm, const void* norm,
               const void* clip_norm_ptr, double clip_norm_value,
               Stream stream) {
  if (table.count > 0 && table.outputs_at == 0) return cudaErrorInvalidValue;
  return ClipAny(table, tnorm, norm, clip_norm_ptr, clip_norm_value, stream);
}

int LaunchClipFused(const TensorTable& table, DType tnorm,
                    const void* clip_norm_ptr, double* partials, void* norm_out,
                    Stream stream) {
  if (!IsNormDType(tnorm)) return cudaErrorInvalidValue;
  if (table.count > 0 && table.outputs_at == 0) return cudaErrorInvalidValue;
  cudaError_t err =
      ByDType(table.dtype, SumPartialsFn{table, partials, stream});
  if (err != cudaSuccess) return err;
  err =
      FinalSumAny(tnorm, partials, table.num_chunks, nullptr, norm_out, stream);
  if (err != cudaSuccess) return err;
  return ClipAny(table, tnorm, norm_out, clip_norm_ptr, 0.0, stream);
}

int64_t PerTensorWorkspace(const TensorTable& table) {
  if (table.count <= 0) return 0;
  return table.num_chunks + table.count;
}

int LaunchPerTensorReduce(const TensorTable& table, NormType type,
                          double* workspace, double* per_tensor,
                          Stream stream) {
  return ByDType(table.dtype,
                 PerTensorReduceFn{table, type, workspace, per_tensor, stream});
}

int LaunchFinishNorms(NormType type, DType tnorm, const double* per_tensor,
                      int64_t count, const void* inverse_scale,
                      void* global_norm, void* tensor_norms, Stream stream) {
  if (count > 0 && tensor_norms == nullptr) return cudaErrorInvalidValue;
  return ByNormDType(
      tnorm, FinishNormsFn{type, per_tensor, count, inverse_scale, global_norm,
                           tensor_norms, stream});
}

int LaunchClipUnscaled(const TensorTable& table, DType tnorm, const void* norm,
                       const void* clip_norm, const void* inverse_scale,
                       Stream stream) {
  if (!IsNormDType(tnorm)) return cudaErrorInvalidValue;
  if (table.count > 0 && table.outputs_at == 0) return cudaErrorInvalidValue;
  return ByNormDType(
      tnorm, ClipUnscaledFn{table, norm, clip_norm, inverse_scale, stream});
}

void SetMaxGridForTesting(int blocks) {
  MaxGridForTesting().store(std::max(0, blocks), std::memory_order_relaxed);
}

const char* ErrorString(int code) {
  return cudaGetErrorString(static_cast<cudaError_t>(code));
}

}  // namespace gpu
}  // namespace monolith_ops
