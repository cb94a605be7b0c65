// Copyright 2026 The monolith_ops Authors.
// SPDX-License-Identifier: Apache-2.0
// Framework-free CUDA core of the global-norm clipping kernels.
//
// Nothing here includes TensorFlow or a CUDA header: this header is compiled
// by the host compiler in the TensorFlow adapter (clip_kernels_gpu.cc) and in
// the GPU check's pybind11 binding (tests/gpu/), and the code behind it by
// nvcc (clip_core_gpu.cu). Launchers take raw device pointers, 64-bit sizes
// and a CUDA stream (CUstream_st*, the same handle as cudaStream_t), enqueue
// their work on that stream and return at once: nothing here waits for the
// device or reads device memory from the host, so every launcher may be
// captured into a CUDA graph.
//
// A list of tensors is described to the device by a table that the caller
// builds on the host with PackTable() and copies to device memory (the
// adapter on its own stream from pinned memory; CopyTableToDevice() does it
// with the CUDA runtime). One launch per phase covers the whole list,
// whatever the number of tensors.
//
// Layout and determinism: each tensor is padded, in a virtual address space,
// to a whole number of 16-byte vectors, and that space is cut into chunks of
// kChunkElements elements. Chunk boundaries, the elements each thread reads and
// the order of every addition depend only on the tensor sizes and dtype, never
// on pointers, alignment, the grid size or the device, so the same inputs give
// bitwise the same sum of squares on every run. Each chunk writes its partial
// sum (in double) to a workspace, and one block adds the partials in a fixed
// order: no floating-point atomics anywhere. ("Block" below is always a CUDA
// thread block; the unit of the reduction is the chunk.)
#ifndef MONOLITH_OPS_CC_CORE_CLIP_CORE_GPU_H_
#define MONOLITH_OPS_CC_CORE_CLIP_CORE_GPU_H_

#include <cstddef>
#include <cstdint>

#include "cc/core/clip_decision.h"
#include "cc/core/dtypes.h"

struct CUstream_st;

namespace monolith_ops {
namespace gpu {

using Stream = CUstream_st*;

// Element types: the rows of the dtype table (dtypes.h), numbered in order.
// The norm type (Tnorm) is a row of its norm table.
#define MONOLITH_OPS_GPU_DTYPE(T, tf_name, gpu_dtype, ComputeT, ...) gpu_dtype,
enum class DType : int32_t {
  MONOLITH_OPS_FOR_EACH_DTYPE(MONOLITH_OPS_GPU_DTYPE)
};
#undef MONOLITH_OPS_GPU_DTYPE

// Elements per reduction chunk. Each chunk's partial sum is one double of
// workspace. (Not the CPU core's reduction block: each has its own size.)
constexpr int64_t kChunkElements = int64_t{1} << 13;

// A tensor list as the kernels see it; every pointer is device memory inside
// the table that PackTable() lays out. Passed to kernels by value.
struct TensorTable {
  const int64_t* offsets = nullptr;  // count + 1 padded offsets (elements)
  const int64_t* sizes = nullptr;    // count element counts
  const void* const* inputs = nullptr;
  void* const* outputs = nullptr;  // null in a table without outputs
  int64_t count = 0;               // number of tensors
  int64_t padded_total = 0;        // offsets[count]
  int64_t num_chunks = 0;          // chunks of the padded list
  DType dtype = DType::kFloat;
  bool all_in_place = false;  // outputs[i] == inputs[i] for every i
  // Optional, set by the caller after PackTable(): device memory holding,
  // for each entry, its position in the op's whole list (a list of several
  // dtypes is one table per dtype). Null: entry i is position i. Only the
  // per-tensor reduction reads it.
  const int64_t* positions = nullptr;
};

// Bytes of host and device memory that PackTable() needs for a list of
// `count` tensors (a multiple of 8; 0 for an empty list).
size_t TableBytes(int64_t count, bool with_outputs);

// Number of reduction chunks, hence of doubles of workspace that
// LaunchSumOfSquares() and LaunchClipFused() need (0 for an empty list).
int64_t NumChunks(DType dtype, const int64_t* sizes, int64_t count);

// Writes the table of a list of `count` tensors into `host` (TableBytes()
// bytes, 8-byte aligned) for a copy to `device`, and returns its description
// with pointers into `device`. inputs[i] and outputs[i] point at sizes[i]
// elements of `dtype` and may be null where sizes[i] is 0; `outputs` is null
// for a reduction. Pointers must be aligned to their element size; 16-byte
// alignment lets the kernels use vector loads.
TensorTable PackTable(DType dtype, const void* const* inputs,
                      void* const* outputs, const int64_t* sizes, int64_t count,
                      void* host, void* device);

// All launchers return 0 on success, else a CUDA error code (ErrorString()
// names it). They enqueue work on `stream` and never wait for it.

// Copies a packed table to the device, asynchronously (cudaMemcpyAsync).
// For a copy that overlaps nothing, `host` should be pinned memory, which
// must stay untouched until the stream has passed the copy.
int CopyTableToDevice(const void* host, void* device, size_t bytes,
                      Stream stream);

// *sum_out (a Tnorm on the device) = sum of the squares of every element,
// widened to double, summed in double in a fixed order and rounded once to
// Tnorm. `partials` is workspace for NumChunks() doubles.
int LaunchSumOfSquares(const TensorTable& table, DType tnorm, double* partials,
                       void* sum_out, Stream stream);

// outputs[i] = inputs[i] clipped by the norm *norm (a Tnorm on the device) and
// clip_norm, decided on the device as DecideClip() in clip_core.h does:
//   norm inf or NaN                    -> every output element NaN;
//   norm <= clip_norm                  -> outputs are a copy of the inputs
//                                         (nothing is written where in place);
//   else scale = clip_norm * min(1 / norm, 1 / clip_norm) in Tnorm, cast to
//        the element type, each element multiplied by it (in float for
//        16-bit types).
// Values the CPU kernel rejects with an error cannot be reported from the
// device without a host read, so they fill every output with NaN too: a
// negative norm, and a clip_norm that is not positive and finite.
// clip_norm is *clip_norm_ptr (a Tnorm on the device) when that is not null,
// else clip_norm_value converted to Tnorm. The table must have outputs
// (cudaErrorInvalidValue otherwise).
int LaunchClip(const TensorTable& table, DType tnorm, const void* norm,
               const void* clip_norm_ptr, double clip_norm_value,
               Stream stream);

// The fused op: *norm_out = sqrt(Tnorm(sum of squares)), as LaunchSumOfSquares
// rounds it, then the clip of LaunchClip() by that norm and *clip_norm_ptr.
// Three launches (partials, final sum, clip), no host read in between.
int LaunchClipFused(const TensorTable& table, DType tnorm,
                    const void* clip_norm_ptr, double* partials, void* norm_out,
                    Stream stream);

// The norms of MonolithGlobalNormV2 and MonolithClipByGlobalNormV2
// (NormType, CombineReductions and UnscaledNorm of clip_decision.h). A list
// whose tensors have several dtypes is one table per dtype: each table's
// per-tensor reductions go into one array indexed by list position
// (TensorTable::positions), then one launch finishes the norms of the list.

// Doubles of workspace that LaunchPerTensorReduce() needs for `table`:
// one per (chunk, tensor) pair that shares elements, at most num_chunks +
// count (0 for an empty table).
int64_t PerTensorWorkspace(const TensorTable& table);

// per_tensor[position of entry i] = the reduction of entry i, in double: the
// sum of the squares of its elements (kL2) or the largest absolute value
// (kInf; NaN when it holds a NaN), 0 for an empty tensor. Each tensor is
// reduced on its own, in an order that depends only on the tensor sizes and
// dtype (never on the grid size): each chunk's part of a tensor is reduced by
// the whole block (a chunk inside one tensor) or by one warp (a chunk shared
// by several), and a tensor's chunk parts are then combined by one warp.
// Two launches; `workspace` holds PerTensorWorkspace() doubles.
int LaunchPerTensorReduce(const TensorTable& table, NormType type,
                          double* workspace, double* per_tensor, Stream stream);

// One block: combines per_tensor[0 .. count) with CombineReductions() in a
// fixed order that depends only on count (tiles of 1,024 in list order, each
// tile by a pairwise tree: entry k with entry k + 512, then k + 256, ...,
// down to 1, entries past the list 0) and writes, in Tnorm on the device,
//   tensor_norms[i] = UnscaledNorm(type, per_tensor[i], inverse_scale),
//   *global_norm    = UnscaledNorm(type, the combination, inverse_scale),
// with inverse_scale = *inverse_scale (a Tnorm on the device), or 1 when
// that pointer is null. An inverse_scale that is not positive and finite
// (which the CPU kernels reject) makes every norm NaN. tensor_norms may be
// null when count is 0.
int LaunchFinishNorms(NormType type, DType tnorm, const double* per_tensor,
                      int64_t count, const void* inverse_scale,
                      void* global_norm, void* tensor_norms, Stream stream);

// LaunchClip() with the loss-scale unscaling of MonolithClipByGlobalNormV2:
// decided on the device by DecideUnscaledClipOrNaN(*norm, *clip_norm,
// inverse_scale) (every pointer a Tnorm on the device; inverse_scale null
// means 1). With inverse_scale == 1 (ScaleThroughElementType) the scale is
// rounded to the element type before it multiplies, and the clip is
// LaunchClip()'s; otherwise each element is multiplied by the Tnorm scale
// taken in the element's compute type (float for float, half and bfloat16,
// double for double), then rounded. A clip_norm or inverse_scale that is not
// positive and finite, a negative norm, or an inf or NaN norm make every
// output NaN. The table must have outputs.
int LaunchClipUnscaled(const TensorTable& table, DType tnorm, const void* norm,
                       const void* clip_norm, const void* inverse_scale,
                       Stream stream);

// For checks only: caps the grid of every chunk kernel launched afterwards,
// in any thread, at `blocks` (0, the default: no cap, the computed grid).
// The results must not change with it: nothing depends on the grid size.
void SetMaxGridForTesting(int blocks);

// The CUDA runtime's description of an error code.
const char* ErrorString(int code);

}  // namespace gpu
}  // namespace monolith_ops

#endif  // MONOLITH_OPS_CC_CORE_CLIP_CORE_GPU_H_
