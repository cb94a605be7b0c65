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
// on the number of threads. Each element is widened to double and squared,
// and the square added (rounded once: the square of a float or 16-bit value
// is exact in double; a double's is rounded, then the sum). In a block, each
// tensor's piece sends its element j to lane j % 16 of the block's 16 double
// lanes, except its last length % 16 elements, which go to lanes 0, 1, ...;
// every lane adds in element order. A block's lanes are added up in a fixed
// tree and the block partials in block order. So the same inputs give bitwise
// the same sum on every run, whatever the number of threads or the sharding,
// and on every instruction set: the baseline loops, AVX2 and AVX-512 (chosen at
// run time), aarch64.
//
// Accuracy: the squares of float and 16-bit values are exact in double (a
// double's are rounded once), so with u = 2^-53, n elements in t tensors and
// B = ceil(n / kReduceBlock) blocks, the sum s and the exact sum S of the
// squares satisfy |s - S| <= (r + kReduceBlock / 16 + t + 4 + B) * u * S to
// first order: r = 1 for double inputs, 0 otherwise; at most
// kReduceBlock / 16 + t additions in a lane of a block, 4 in the tree, B
// adding up the blocks. For float32 that is far inside the rounding of the
// float32 result; float32 arithmetic (tf.reduce_sum(tf.square(x))) does much
// worse, and overflows or underflows on squares that double holds. (Denormal
// inputs follow the thread's denormal mode, which TensorFlow sets to flush
// them on all its threads.) tests/cc/clip_core_test.cc and
// tests/test_clip_accuracy.py check the bound against exact sums.
#ifndef MONOLITH_OPS_CC_CORE_CLIP_CORE_H_
#define MONOLITH_OPS_CC_CORE_CLIP_CORE_H_

#include <cstdint>
#include <functional>

#include "Eigen/Core"
#include "cc/core/clip_decision.h"
#include "cc/core/dtypes.h"

namespace monolith_ops {

// Number of elements in one reduction block (64 KiB of float32).
constexpr int64_t kReduceBlock = int64_t{1} << 14;

// Runs fn(begin, end) over disjoint ranges covering [0, n), possibly in
// parallel. cost_per_unit is a hint: the approximate cost of one unit of work,
// in nanoseconds-ish units as TensorFlow's thread pool expects.
using ParallelFor = std::function<void(
    int64_t n, int64_t cost_per_unit,
    const std::function<void(int64_t begin, int64_t end)>& fn)>;

// The instruction sets of the CPU core's loops, narrowest first. Every one
// gives bitwise the same results.
enum class CpuIsa { kBaseline, kAvx2, kAvx512 };

// Tuning of the CPU core: where its loops run and how they write, never what
// they compute. The core reads no environment variable; the caller passes
// this in (the TensorFlow kernels read it from the environment once, see
// cc/tf/cpu_tuning.h). The defaults are the core's own choices.
struct CpuTuning {
  // The loops run on the widest instruction set the CPU has, at most this
  // one (x86: AVX-512, AVX2, baseline; elsewhere always the baseline).
  CpuIsa isa_cap = CpuIsa::kAvx512;
  // Scaled outputs of at least this many bytes in all are written with
  // streaming stores (on AVX2 and wider); negative: half the L3 cache as the
  // OS reports it, at most 16 MiB.
  int64_t stream_min_bytes = -1;
};

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
                    const ParallelFor& parallel_for,
                    const CpuTuning& tuning = CpuTuning());

// The reduction of each tensor of a list on its own, for the V2 ops (see
// NormType in clip_decision.h): per_tensor[i] = the sum of the squares of
// tensor i (kL2), or its largest absolute value (kInf; NaN if it holds a
// NaN), in double. A tensor is cut into blocks of kReduceBlock of its own
// elements, each summed in kLanes lanes as SumOfSquares sums a block, and its
// blocks are added in order; so per_tensor[i] depends on tensor i alone,
// bitwise, whatever the threads and instruction set. The accuracy bound of
// SumOfSquares holds for each tensor with t = 1. Empty tensors give 0.
template <typename T>
void ReducePerTensor(const T* const* inputs, const int64_t* sizes,
                     int64_t count, NormType type, double* per_tensor,
                     const ParallelFor& parallel_for,
                     const CpuTuning& tuning = CpuTuning());

// outputs[i][j] = inputs[i][j] * scale, computed in S (ComputeType<T>).
// outputs[i] may equal inputs[i] (in place).
template <typename T, typename S>
void Scale(const T* const* inputs, T* const* outputs, const int64_t* sizes,
           int64_t count, S scale, const ParallelFor& parallel_for,
           const CpuTuning& tuning = CpuTuning());

// Fills every element of every output with NaN.
template <typename T>
void FillNaN(T* const* outputs, const int64_t* sizes, int64_t count,
             const ParallelFor& parallel_for);

}  // namespace monolith_ops

#endif  // MONOLITH_OPS_CC_CORE_CLIP_CORE_H_
