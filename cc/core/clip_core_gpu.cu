// Copyright 2026 The monolith_ops Authors.
// SPDX-License-Identifier: Apache-2.0
// CUDA implementation of the framework-free clipping core (clip_core_gpu.h).
//
// Includes no TensorFlow header: TensorFlow's GPU headers, compiled by a
// newer nvcc than the one TensorFlow was built with, mix two layouts of the
// runtime's structures. This file needs only the CUDA runtime, which the
// build links statically.
//
// Work decomposition (see the header for why it is deterministic): the list
// is a virtual array in which tensor i starts at offsets[i], a multiple of the
// vector width V = 16 bytes / sizeof(T). The array is cut into chunks of
// kChunkElements elements, and each thread block takes a contiguous run of
// chunks. In a chunk each of the kThreads threads handles the vectors at chunk
// positions (j * kThreads + thread) * V, j = 0 .. kChunkElements / (V *
// kThreads) - 1, loading each with one 16-byte load where the tensor is aligned
// and element by element otherwise (the arithmetic is the same either way). A
// thread block finds the tensor of its first position with a 256-ary search
// over the offsets
// (__syncthreads_count; no shared memory per tensor); from there each thread
// follows its increasing positions through the list, moving to the next
// tensor it needs by galloping search.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>
#include <utility>

#include "cc/core/clip_core_gpu.h"
#include "cc/core/clip_decision.h"

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

// Largest t in [0, count) with offsets[t] <= p, for p in [0, offsets[count]).
// Every thread of the block must call it with the same arguments; each gets
// the answer. Offsets never decrease, so "offsets[candidate] <= p" holds for
// a prefix of evenly spaced candidates and the block counts it in one step.
__device__ int64_t BlockFindTensor(const int64_t* offsets, int64_t count,
                                   int64_t p) {
  int64_t lo = 0;
  int64_t n = count;  // the answer lies in [lo, lo + n)
  while (n > 1) {
    const int64_t step = (n + blockDim.x - 1) / blockDim.x;
    const int64_t rel = static_cast<int64_t>(threadIdx.x) * step;
    const int below = rel < n && offsets[lo + rel] <= p;
    const int64_t c = __syncthreads_count(below);  // >= 1: offsets[lo] <= p
    lo += (c - 1) * step;
    n = min(step, n - (c - 1) * step);
  }
  return lo;
}

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

// Follows one thread's increasing positions through the tensor list.
template <DType D>
struct Cursor {
  using Storage = typename Elem<D>::Storage;

  __device__ Cursor(const TensorTable& table, int64_t first)
      : offsets(table.offsets),
        sizes(table.sizes),
        inputs(table.inputs),
        outputs(table.outputs),
        count(table.count) {
    Load(first);
  }

  __device__ void Load(int64_t t) {
    tensor = t;
    begin = offsets[t];
    end = offsets[t + 1];
    size = sizes[t];
    in = static_cast<const Storage*>(inputs[t]);
    out = outputs != nullptr ? static_cast<Storage*>(outputs[t]) : nullptr;
  }

  // Moves to the tensor holding padded position p, p < offsets[count] and
  // no less than any position before: the largest t with offsets[t] <= p,
  // found by galloping from the current tensor (few steps when tensors are
  // small, and no search at all within a large one).
  __device__ void Seek(int64_t p) {
    if (p < end) return;
    int64_t a = tensor + 1;  // offsets[a] == end <= p
    int64_t step = 1;
    int64_t b = a + step;  // first candidate not known to be <= p
    while (b < count && offsets[b] <= p) {
      a = b;
      step *= 2;
      b = a + step;
    }
    b = min(b, count) - 1;  // the answer lies in [a, b]
    while (a < b) {
      const int64_t m = a + (b - a + 1) / 2;
      if (offsets[m] <= p) {
        a = m;
      } else {
        b = m - 1;
      }
    }
    Load(a);
  }

  const int64_t* const offsets;
  const int64_t* const sizes;
  const void* const* const inputs;
  void* const* const outputs;
  const int64_t count;
  int64_t tensor, begin, end, size;
  const Storage* in;
  Storage* out;
};

// One vector of V elements of a tensor, as located by a Cursor.
template <DType D>
struct Slot {
  using Storage = typename Elem<D>::Storage;
  static constexpr int V = VectorWidth<D>();

  const Storage* in = nullptr;
  Storage* out = nullptr;
  int valid = 0;  // elements of the vector inside the tensor (0: none)

  __device__ void Set(const Cursor<D>& c, int64_t p) {
    const int64_t local = p - c.begin;
    in = c.in + local;
    out = c.out != nullptr ? c.out + local : nullptr;
    valid = static_cast<int>(min(static_cast<int64_t>(V), c.size - local));
  }

  __device__ static bool Aligned(const void* ptr) {
    return (reinterpret_cast<uintptr_t>(ptr) % kVectorBytes) == 0;
  }

  // Reads the vector; lanes past the tensor's end read as zero.
  __device__ void Read(Storage (&v)[V]) const {
    if (valid == V && Aligned(in)) {
      union {
        uint4 raw;
        Storage e[V];
      } u;
      u.raw = *reinterpret_cast<const uint4*>(in);
#pragma unroll
      for (int k = 0; k < V; ++k) v[k] = u.e[k];
    } else {
#pragma unroll
      for (int k = 0; k < V; ++k) v[k] = k < valid ? in[k] : Storage(0);
    }
  }

  __device__ void Write(const Storage (&v)[V]) const {
    if (valid == V && Aligned(out)) {
      union {
        uint4 raw;
        Storage e[V];
      } u;
#pragma unroll
      for (int k = 0; k < V; ++k) u.e[k] = v[k];
      *reinterpret_cast<uint4*>(out) = u.raw;
    } else {
#pragma unroll
      for (int k = 0; k < V; ++k) {
        if (k < valid) out[k] = v[k];
      }
    }
  }
};

// Runs this block's chunks: for each, on_group(slots) for each group of
// kUnroll vectors of this thread (slots past the end of the list have
// valid == 0), then on_chunk_end(chunk). Every thread of the block must call
// it; the calls to on_chunk_end are uniform across the block.
template <DType D, typename OnGroup, typename OnChunkEnd>
__device__ void ForEachChunk(const TensorTable& table, OnGroup on_group,
                             OnChunkEnd on_chunk_end) {
  constexpr int V = VectorWidth<D>();
  const int64_t chunks_per_block =
      (table.num_chunks + gridDim.x - 1) / gridDim.x;
  const int64_t first_chunk = blockIdx.x * chunks_per_block;
  const int64_t end_chunk =
      min(first_chunk + chunks_per_block, table.num_chunks);
  if (first_chunk >= end_chunk) return;
  Cursor<D> cursor(table, BlockFindTensor(table.offsets, table.count,
                                          first_chunk * kChunkElements));
  for (int64_t chunk = first_chunk; chunk < end_chunk; ++chunk) {
    const int64_t begin = chunk * kChunkElements;
    const int64_t end = min(begin + kChunkElements, table.padded_total);
    for (int j = 0; j < VectorsPerThread<D>(); j += kUnroll) {
      Slot<D> slots[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int64_t p =
            begin + (static_cast<int64_t>(j + u) * kThreads + threadIdx.x) * V;
        if (p < end) {
          cursor.Seek(p);
          slots[u].Set(cursor, p);
        }
      }
      on_group(slots);
    }
    on_chunk_end(chunk);
  }
}

// Writes partials[c] = the sum of squares of chunk c, in double.
template <DType D>
__global__ void __launch_bounds__(kThreads)
    SumOfSquaresKernel(TensorTable table, double* partials) {
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
__device__ void ApplyClip(const TensorTable& table, ClipAction action,
                          typename Elem<D>::Compute scale) {
  using E = Elem<D>;
  using Storage = typename E::Storage;
  constexpr int V = VectorWidth<D>();
  if (action == ClipAction::kPassThrough && table.all_in_place) return;
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
    ClipKernel(TensorTable table, const Tn* norm, const Tn* clip_norm_ptr,
               Tn clip_norm_value) {
  const Tn clip_norm =
      clip_norm_ptr != nullptr ? *clip_norm_ptr : clip_norm_value;
  Tn scale_tn = Tn(1);
  // The clip rule of clip_decision.h; inputs the CPU kernels reject give NaN.
  const ClipAction action = DecideClipOrNaN(*norm, clip_norm, &scale_tn);
  ApplyClip<D>(table, action, ElementScale<D>(scale_tn));
}

// ------------------------------------------------- per-tensor reductions

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

// The vector of tensor t at padded position p (offsets[t] <= p < offsets[t
// + 1]).
template <DType D>
__device__ Slot<D> TensorSlot(const TensorTable& table, int64_t t, int64_t p) {
  using Storage = typename Elem<D>::Storage;
  constexpr int V = VectorWidth<D>();
  const int64_t local = p - table.offsets[t];
  Slot<D> slot;
  slot.in = static_cast<const Storage*>(table.inputs[t]) + local;
  slot.valid =
      static_cast<int>(min(static_cast<int64_t>(V), table.sizes[t] - local));
  return slot;
}

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
    PerTensorChunkKernel(TensorTable table, double* workspace) {
  using E = Elem<D>;
  constexpr int V = VectorWidth<D>();
  constexpr int kWarps = kThreads / 32;
  __shared__ double scratch[kWarps];
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const int64_t chunks_per_block =
      (table.num_chunks + gridDim.x - 1) / gridDim.x;
  const int64_t first_chunk = blockIdx.x * chunks_per_block;
  const int64_t end_chunk =
      min(first_chunk + chunks_per_block, table.num_chunks);
  for (int64_t chunk = first_chunk; chunk < end_chunk; ++chunk) {
    const int64_t begin = chunk * kChunkElements;
    const int64_t end = min(begin + kChunkElements, table.padded_total);
    const int64_t first = BlockFindTensor(table.offsets, table.count, begin);
    const int64_t last = BlockFindTensor(table.offsets, table.count, end - 1);
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
      const int64_t seg_begin = max(begin, table.offsets[t]);
      const int64_t seg_end = min(end, table.offsets[t + 1]);
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
    PerTensorGatherKernel(TensorTable table, const double* workspace,
                          double* per_tensor) {
  const int lane = threadIdx.x % 32;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (kThreads / 32);
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * (kThreads / 32) +
                   threadIdx.x / 32;
       t < table.count; t += warps) {
    const int64_t begin = table.offsets[t];
    const int64_t end = table.offsets[t + 1];
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
      per_tensor[table.positions != nullptr ? table.positions[t] : t] = acc;
    }
  }
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

// The norms from the per-tensor reductions (LaunchFinishNorms()). Every
// thread writes the norms of its tensors; thread 0 combines the reductions
// in list order, a tile of kFinalThreads at a time through shared memory.
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
    if (i < count) {
      const double r = per_tensor[i];
      tile[threadIdx.x] = r;
      tensor_norms[i] =
          valid ? UnscaledNorm<Tn>(type, r, inverse_scale) : QuietNaN<Tn>();
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      const int n = static_cast<int>(
          min(static_cast<int64_t>(kFinalThreads), count - base));
      for (int k = 0; k < n; ++k) acc = CombineReductions(type, acc, tile[k]);
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
    ClipUnscaledKernel(TensorTable table, const Tn* norm, const Tn* clip_norm,
                       const Tn* inverse_scale_ptr) {
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

// Blocks to launch for `work` chunks: all that fit on the device at once, at
// most one per chunk. Computed once per kernel and device.
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

size_t TableBytes(int64_t count, bool with_outputs) {
  if (count <= 0) return 0;
  const int64_t arrays = with_outputs ? 4 : 3;  // offsets, sizes, in, out
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
                      void* const* outputs, const int64_t* sizes, int64_t count,
                      void* host, void* device) {
  TensorTable table;
  table.dtype = dtype;
  table.count = count;
  table.all_in_place = outputs != nullptr || count <= 0;
  if (count <= 0 || ElementBytes(dtype) == 0) {
    table.count = 0;
    return table;
  }
  const int64_t width = kVectorBytes / ElementBytes(dtype);
  // Layout: offsets[count + 1], sizes[count], inputs[count], outputs[count].
  char* h = static_cast<char*>(host);
  char* d = static_cast<char*>(device);
  const size_t offsets_at = 0;
  const size_t sizes_at = offsets_at + (count + 1) * 8;
  const size_t inputs_at = sizes_at + count * 8;
  const size_t outputs_at = inputs_at + count * 8;
  auto* offsets = reinterpret_cast<int64_t*>(h + offsets_at);
  int64_t padded = 0;
  for (int64_t i = 0; i < count; ++i) {
    offsets[i] = padded;
    padded += RoundUp(sizes[i], width);
    if (outputs != nullptr && sizes[i] > 0 && outputs[i] != inputs[i]) {
      table.all_in_place = false;
    }
  }
  offsets[count] = padded;
  std::memcpy(h + sizes_at, sizes, count * sizeof(int64_t));
  std::memcpy(h + inputs_at, inputs, count * sizeof(void*));
  if (outputs != nullptr) {
    std::memcpy(h + outputs_at, outputs, count * sizeof(void*));
  }
  table.offsets = reinterpret_cast<const int64_t*>(d + offsets_at);
  table.sizes = reinterpret_cast<const int64_t*>(d + sizes_at);
  table.inputs = reinterpret_cast<const void* const*>(d + inputs_at);
  table.outputs = outputs != nullptr
                      ? reinterpret_cast<void* const*>(d + outputs_at)
                      : nullptr;
  table.padded_total = padded;
  table.num_chunks = (padded + kChunkElements - 1) / kChunkElements;
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
  if (table.count > 0 && table.outputs == nullptr) return cudaErrorInvalidValue;
  return ClipAny(table, tnorm, norm, clip_norm_ptr, clip_norm_value, stream);
}

int LaunchClipFused(const TensorTable& table, DType tnorm,
                    const void* clip_norm_ptr, double* partials, void* norm_out,
                    Stream stream) {
  if (!IsNormDType(tnorm)) return cudaErrorInvalidValue;
  if (table.count > 0 && table.outputs == nullptr) return cudaErrorInvalidValue;
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
  if (table.count > 0 && table.outputs == nullptr) return cudaErrorInvalidValue;
  return ByNormDType(
      tnorm, ClipUnscaledFn{table, norm, clip_norm, inverse_scale, stream});
}

const char* ErrorString(int code) {
  return cudaGetErrorString(static_cast<cudaError_t>(code));
}

}  // namespace gpu
}  // namespace monolith_ops
