// Copyright 2026 The monolith_ops Authors.
// SPDX-License-Identifier: Apache-2.0
// The CUDA core's element types and launch shape: how each dtype of the
// table is stored and converted (Elem<D>), the vector width of a 16-byte
// load, and the threads of a block.
//
// Private to the CUDA core (cc/core/clip_core_gpu.cu and the headers of
// cc/core/gpu/): an unnamed namespace, as in a source file. Compiled by nvcc
// only; includes no TensorFlow header.
#ifndef MONOLITH_OPS_CC_CORE_GPU_ELEMENTS_CUH_
#define MONOLITH_OPS_CC_CORE_GPU_ELEMENTS_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cc/core/clip_core_gpu.h"
#include "cc/core/dtypes.h"

namespace monolith_ops {
namespace gpu {
namespace {

constexpr int kThreads = 256;        // threads of a chunk kernel's block
constexpr int kFinalThreads = 1024;  // threads of the block adding partials
constexpr int kUnroll = 4;           // vectors a thread loads before using them
constexpr int kVectorBytes = 16;

// Per element type: how it is stored, the type it is squared and scaled in,
// conversions, and its quiet NaN (the bits of std::numeric_limits and
// Eigen's quiet_NaN(), as the CPU kernel writes).
template <DType D>
struct Elem;

template <>
struct Elem<DType::kFloat> {
  using Storage = float;
  using Compute = float;
  static __device__ float ToCompute(float x) { return x; }
  static __device__ float FromCompute(float x) { return x; }
  static __device__ float NaN() { return __int_as_float(0x7fc00000); }
};

template <>
struct Elem<DType::kDouble> {
  using Storage = double;
  using Compute = double;
  static __device__ double ToCompute(double x) { return x; }
  static __device__ double FromCompute(double x) { return x; }
  static __device__ double NaN() {
    return __longlong_as_double(0x7ff8000000000000LL);
  }
};

template <>
struct Elem<DType::kHalf> {
  using Storage = unsigned short;
  using Compute = float;
  static __device__ float ToCompute(unsigned short x) {
    return __half2float(__ushort_as_half(x));
  }
  static __device__ unsigned short FromCompute(float x) {
    return __half_as_ushort(__float2half_rn(x));
  }
  static __device__ unsigned short NaN() { return 0x7e00; }
};

template <>
struct Elem<DType::kBFloat16> {
  using Storage = unsigned short;
  using Compute = float;
  static __device__ float ToCompute(unsigned short x) {
    return __uint_as_float(static_cast<unsigned int>(x) << 16);
  }
  static __device__ unsigned short FromCompute(float x) {
    return __bfloat16_as_ushort(__float2bfloat16_rn(x));
  }
  static __device__ unsigned short NaN() { return 0x7fc0; }
};

template <DType D>
__host__ __device__ constexpr int VectorWidth() {
  return kVectorBytes / static_cast<int>(sizeof(typename Elem<D>::Storage));
}

// Vectors of one chunk that each thread handles.
template <DType D>
__host__ __device__ constexpr int VectorsPerThread() {
  return static_cast<int>(kChunkElements / (VectorWidth<D>() * kThreads));
}

static_assert(kChunkElements % (8 * kThreads * kUnroll) == 0,
              "a chunk must split evenly into unrolled vectors of every dtype");

// Bytes of one element of `dtype` (0 for a value outside the table).
int ElementBytes(DType dtype) {
  switch (dtype) {
#define MONOLITH_OPS_ELEMENT_BYTES(T, tf_name, gpu_dtype, ComputeT, ...) \
  case DType::gpu_dtype:                                                 \
    return static_cast<int>(sizeof(typename Elem<DType::gpu_dtype>::Storage));
    MONOLITH_OPS_FOR_EACH_DTYPE(MONOLITH_OPS_ELEMENT_BYTES)
#undef MONOLITH_OPS_ELEMENT_BYTES
  }
  return 0;
}

int64_t RoundUp(int64_t n, int64_t multiple) {
  return (n + multiple - 1) / multiple * multiple;
}

template <typename Tn>
__device__ Tn QuietNaN();
template <>
__device__ float QuietNaN<float>() {
  return Elem<DType::kFloat>::NaN();
}
template <>
__device__ double QuietNaN<double>() {
  return Elem<DType::kDouble>::NaN();
}

}  // namespace
}  // namespace gpu
}  // namespace monolith_ops

#endif  // MONOLITH_OPS_CC_CORE_GPU_ELEMENTS_CUH_
