// Copyright 2026 The monolith_ops Authors.
// SPDX-License-Identifier: Apache-2.0
// Framework-free core of the global-norm clipping kernels.
//
// Nothing here includes TensorFlow. Inputs are raw pointers with 64-bit
// element counts; the CPU entry points take a ParallelFor that runs shards of
// work (the TensorFlow adapter passes its CPU worker pool, tests may pass a
// serial loop). The CUDA entry points live in clip_core_gpu.h.
//
// Determinism: the global element range of a tensor list is cut into blocks of
// kReduceBlock elements whose boundaries depend only on the tensor sizes, never
// on the number of threads. Each block's partial sum of squares is computed in
// double with a fixed order and the partials are added in block order, so the
// same inputs give bitwise the same sum on every run.
#ifndef MONOLITH_OPS_CC_KERNELS_CLIP_CORE_H_
#define MONOLITH_OPS_CC_KERNELS_CLIP_CORE_H_

#include <cmath>
#include <cstdint>
#include <functional>

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

// The type an element of type T is squared and scaled in: float for float and
// the 16-bit types, double for double.
template <typename T>
struct ComputeType {
  using type = float;
};
template <>
struct ComputeType<double> {
  using type = double;
};

// Sum of squares of every element of a list of `count` tensors, accumulated in
// double. inputs[i] points at sizes[i] elements (may be null when empty).
// T is float, double, Eigen::half or Eigen::bfloat16.
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

// What a clip must do once the global norm is known.
enum class ClipAction {
  kPassThrough,  // norm <= clip_norm: outputs are the inputs, unchanged.
  kScale,        // multiply every element by the scale.
  kFillNaN,      // the norm is inf or NaN: every output is NaN, as in TF.
};

// Decides the clip and computes the scale exactly as tf.clip_by_global_norm
// does in the norm's dtype N: clip_norm * min(1 / norm, 1 / clip_norm).
template <typename N>
inline ClipAction DecideClip(N norm, N clip_norm, N* scale) {
  if (!std::isfinite(norm)) return ClipAction::kFillNaN;
  if (norm <= clip_norm) return ClipAction::kPassThrough;
  const N inv_norm = N(1) / norm;
  const N inv_clip = N(1) / clip_norm;
  *scale = clip_norm * (inv_norm < inv_clip ? inv_norm : inv_clip);
  return ClipAction::kScale;
}

}  // namespace monolith_ops

#endif  // MONOLITH_OPS_CC_KERNELS_CLIP_CORE_H_
