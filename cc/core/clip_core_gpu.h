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
// builds on the host with PackTable(). A short list (at most
// kMaxInlineTensors tensors) is held inside the TensorTable itself and
// reaches the kernels by value, as a kernel parameter: nothing to allocate,
// copy or release. A longer one is laid out in a host buffer that the caller
// copies to device memory (the adapter on its own stream from pinned memory;
// CopyTableToDevice() does it with the CUDA runtime). The kernels read both
// through the same code. One launch per phase covers the whole list,
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

// The CUDA limit on a kernel's parameters that the by-value table is sized
// for: 4,096 bytes, as Apex's multi_tensor_apply sizes its
// TensorListMetadata. CUDA 12.1 and newer (toolkit and driver) allow 32,764
// bytes on Volta and newer, which this build's CUDA 13 runtime would have;
// 4 KB is kept because it holds for every toolkit the core may be built
// with, and because the block is passed on every launch, by-value or not.
constexpr int64_t kKernelParameterBytes = 4096;

// Lists of at most this many tensors go to the kernels by value, in
// TensorTable::inline_words; longer ones in a device table. A tensor takes
// at most four 8-byte words (its end, its input, its output, its position)
// and the list one more, so 123 tensors fill 493 words, 3,944 bytes; with the
// rest of the TensorTable (72 bytes) that is 4,016 bytes, which leaves 80
// bytes for the kernels' other parameters (24 at most today). The count is
// the same for every kind of table (a reduction would fit 247), so whether
// a list goes by value depends on its length alone.
constexpr int64_t kMaxInlineTensors = 123;
constexpr int64_t kInlineWords = 4 * kMaxInlineTensors + 1;

// A tensor list as the kernels see it. Passed to kernels by value (as a
// __grid_constant__ parameter, which the kernels read in place). Its arrays
// are 8-byte words, laid out by PackTable() in this order:
//   ends[count + 1]    ends[0] = 0; ends[i + 1] = offset(i) + size(i), where
//                      offset(i) = ends[i] rounded up to the vector width
//                      (16 bytes of elements): tensor i's padded offset, and
//                      offset(count) = padded_total. The sizes are not stored:
//                      size(i) = ends[i + 1] - offset(i).
//   inputs[count]      at word count + 1
//   outputs[count]     at word outputs_at; 0 for a reduction. Not stored
//                      when every output is its input (all_in_place):
//                      outputs_at is then count + 1, the inputs' array
//   positions[count]   at word positions_at (0: not stored, entry i is
//                      position i)
// The words are inline_words when device_words is null (a list of at most
// kMaxInlineTensors), else device memory at device_words.
struct TensorTable {
  const int64_t* device_words = nullptr;  // null: the table is inline
  int64_t count = 0;                      // number of tensors
  int64_t padded_total = 0;               // offset(count)
  int64_t num_chunks = 0;                 // chunks of the padded list
  int64_t outputs_at = 0;                 // word of outputs[0]; 0: none
  int64_t positions_at = 0;  // word of positions[0]; 0: none stored
  // Bytes of the host buffer that PackTable() filled and the caller copies to
  // device_words (0 for an inline or empty table). Host side only.
  int64_t device_bytes = 0;
  DType dtype = DType::kFloat;
  int32_t vector_width = 1;   // elements in 16 bytes of dtype
  bool all_in_place = false;  // outputs were given, and outputs[i] ==
                              // inputs[i] for every non-empty tensor i
                              // (true for an empty list)
  int64_t inline_words[kInlineWords] = {};  // read when device_words is null
};
static_assert(sizeof(TensorTable) + 64 <= kKernelParameterBytes,
              "the by-value table and the kernels' other parameters must fit "
              "CUDA's 4 KB of kernel parameters");

// Bytes of host and device memory that PackTable() may fill for a list of
// `count` tensors: 0 when the list goes by value (count <=
// kMaxInlineTensors) or is empty; else the device table's size with every
// array stored (a multiple of 8; in place, PackTable() fills less:
// TensorTable::device_bytes).
size_t TableBytes(int64_t count, bool with_outputs, bool with_positions);

// Number of reduction chunks, hence of doubles of workspace that
// LaunchSumOfSquares() and LaunchClipFused() need (0 for an empty list).
int64_t NumChunks(DType dtype, const int64_t* sizes, int64_t count);

// The table of a list of `count` tensors. inputs[i] and outputs[i] point at
// sizes[i] elements of `dtype` and may be null where sizes[i] is 0;
// `outputs` is null for a reduction. `positions`, when not null, gives each
// entry's position in the op's whole list (a list of several dtypes is one
// table per dtype; only the per-tensor reduction reads them). Pointers must
// be aligned to their element size; 16-byte alignment lets the kernels use
// vector loads. A list of at most kMaxInlineTensors is written into the
// returned table itself, and `host` and `device` are not used (they may be
// null). A longer one is written into `host` (TableBytes() bytes, 8-byte
// aligned), and the returned table points at `device`, to which the caller
// copies the table's device_bytes bytes of `host` before the first launch.
TensorTable PackTable(DType dtype, const void* const* inputs,
                      void* const* outputs, const int64_t* sizes,
                      const int64_t* positions, int64_t count, void* host,
                      void* device);

// All launchers return 0 on success, else a CUDA error code (ErrorString()
// names it). They enqueue work on `stream` and never wait for it.

// Copies a packed table to the device, asynchronously (cudaMemcpyAsync);
// `bytes` is the table's device_bytes (0, for a table passed by value:
// nothing is enqueued). For a copy that overlaps nothing, `host` should be
// pinned memory, which must stay untouched until the stream has passed the
// copy.
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
// (PackTable()'s positions), then one launch finishes the norms of the list.

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
