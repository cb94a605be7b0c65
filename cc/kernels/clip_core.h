// Copyright 2026 The monolith_ops Authors.
// SPDX-License-Identifier: Apache-2.0
// Framework-free core of the global-norm clipping kernels.
//
// Nothing here includes TensorFlow. Inputs are raw pointers with 64-bit
// element counts; the CPU entry points take a ParallelFor that runs shards of
// work (the TensorFlow adapter passes its CPU worker pool, tests may pass a
// serial loop). The CUDA entry points live in clip_core_gpu.h, the clip rule
// both use in clip_decision.h, and the dtypes in dtypes.h.
//
// Determinism: the global element range of a tensor list is cut into blocks of
// kReduceBlock elements whose boundaries depend only on the tensor sizes, never
// on the number of threads. Each block's partial sum of squares is computed in
// double with a fixed order and the partials are added in block order, so the
// same inputs give bitwise the same sum on every run.
#ifndef MONOLITH_OPS_CC_KERNELS_CLIP_CORE_H_
#define MONOLITH_OPS_CC_KERNELS_CLIP_CORE_H_

#include <cstdint>
#include <functional>

#include "Eigen/Core"
#include "cc/kernels/clip_decision.h"
#include "cc/kernels/dtypes.h"

namespace monolith_ops {

// Number of elements in one reduction block (64 KiB of float32).
constexpr int64_t kReduceBlock = int64_t{1} << 14;

// Runs fn(begin, end) over disjoint ranges covering [0, n), possibly in
// parallel. cost_per_unit is a hint: the approximate cost of one unit of work,
// in nanoseconds-ish units as TensorFlow's thread pool expects.
using ParallelFor = std::function<void(
    int64_t n, int64_t cost_per_unit,
    const std::function<void(int64_t begin, int64_t end)>& fn)>;

// A ParallelFor that runs everything on the calling thread.
void SerialFor(int64_t n, int64_t cost_per_unit,
               const std::function<void(int64_t, int64_t)>& fn);

// The type an element of type T is squared and scaled in: the ComputeType
// column of the dtype table (float for float and the 16-bit types, double for
// double).
template <typename T>
struct ComputeType;
#define MONOLITH_OPS_COMPUTE_TYPE(T, tf_name, gpu_dtype, ComputeT, ...) \
  template <>                                                           \
  struct ComputeType<T> {                                               \
    using type = ComputeT;                                              \
  };
MONOLITH_OPS_FOR_EACH_DTYPE(MONOLITH_OPS_COMPUTE_TYPE)
#undef MONOLITH_OPS_COMPUTE_TYPE

// Sum of squares of every element of a list of `count` tensors, accumulated in
// double. inputs[i] points at sizes[i] elements (may be null when empty).
// T is a type of the dtype table (dtypes.h).
template <typename T>
double SumOfSquares(const T* const* inputs, const int64_t* sizes, int64_t count,
                    const ParallelFor& parallel_for);

// outputs[i][j] = inputs[i][j] * scale, computed in S (ComputeType<T>).
// outputs[i] may equal inputs[i] (in place).
template <typename T, typename S>
void Scale(const T* const* inputs, T* const* outputs, const int64_t* sizes,
           int64_t count, S scale, const ParallelFor& parallel_for);

// Fills every element of every output with NaN.
template <typename T>
void FillNaN(T* const* outputs, const int64_t* sizes, int64_t count,
             const ParallelFor& parallel_for);

}  // namespace monolith_ops

#endif  // MONOLITH_OPS_CC_KERNELS_CLIP_CORE_H_
