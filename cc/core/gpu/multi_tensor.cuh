// Copyright 2026 The monolith_ops Authors.
// SPDX-License-Identifier: Apache-2.0
// The multi-tensor chunk walk of the CUDA core: every kernel that reads or
// writes a whole tensor list runs on it, and an operation supplies only what
// it does with each group of vectors (ForEachChunk's on_group functor).
//
// Work decomposition (see clip_core_gpu.h for why it is deterministic): the
// list is a virtual array in which tensor i starts at Offset(i), a multiple
// of the vector width V = 16 bytes / sizeof(T). The array is cut into chunks
// of kChunkElements elements, and each thread block takes a contiguous run of
// chunks. In a chunk each of the kThreads threads handles the vectors at
// chunk positions (j * kThreads + thread) * V, j = 0 .. kChunkElements / (V *
// kThreads) - 1, loading each with one 16-byte load where the tensor is
// aligned and element by element otherwise (the arithmetic is the same
// either way). A thread block finds the tensor of its first position with a
// 256-ary search over the offsets (__syncthreads_count; no shared memory per
// tensor); from there each thread follows its increasing positions through
// the list, moving to the next tensor it needs by galloping search.
//
// Every kernel reads its table through a TableView, whether the table came
// by value (its words inside the kernel's parameter) or from device memory.
//
// Private to the CUDA core (cc/core/clip_core_gpu.cu and the headers of
// cc/core/gpu/): an unnamed namespace, as in a source file. Compiled by nvcc
// only; includes no TensorFlow header.
#ifndef MONOLITH_OPS_CC_CORE_GPU_MULTI_TENSOR_CUH_
#define MONOLITH_OPS_CC_CORE_GPU_MULTI_TENSOR_CUH_

#include <cuda_runtime.h>

#include <cstdint>

#include "cc/core/clip_core_gpu.h"
#include "cc/core/gpu/elements.cuh"

namespace monolith_ops {
namespace gpu {
namespace {

// The arrays of a TensorTable (clip_core_gpu.h), wherever they lie: in the
// kernel's parameter, for a table passed by value, or in device memory. The
// kernels take the table as a __grid_constant__ parameter, so the address of
// its inline words is that of the parameter itself: nothing is copied to
// local memory.
struct TableView {
  __device__ explicit TableView(const TensorTable& table)
      : ends(table.device_words != nullptr ? table.device_words
                                           : table.inline_words),
        inputs_(reinterpret_cast<const void* const*>(ends + table.count + 1)),
        outputs_(table.outputs_at != 0
                     ? reinterpret_cast<void* const*>(ends + table.outputs_at)
                     : nullptr),
        positions_(table.positions_at != 0 ? ends + table.positions_at
                                           : nullptr),
        count_(table.count),
        padded_total_(table.padded_total),
        num_chunks_(table.num_chunks),
        width_(table.vector_width),
        all_in_place_(table.all_in_place) {}

  __device__ int64_t count() const { return count_; }
  __device__ int64_t padded_total() const { return padded_total_; }
  __device__ int64_t num_chunks() const { return num_chunks_; }
  __device__ bool all_in_place() const { return all_in_place_; }
  __device__ const void* const* inputs() const { return inputs_; }
  // Null for a reduction. Where every output is its input, the inputs'
  // array (no array of outputs is stored).
  __device__ void* const* outputs() const { return outputs_; }

  // `end` rounded up to whole vectors of `width` elements (a power of two).
  __device__ static int64_t PaddedEnd(int64_t end, int64_t width) {
    return (end + width - 1) & ~(width - 1);
  }
  // Tensor t's padded offset: the end of tensor t - 1 rounded up to whole
  // vectors; Offset(count) == padded_total. Never decreases with t.
  __device__ int64_t Offset(int64_t t) const {
    return PaddedEnd(ends[t], width_);
  }
  // Its element count, from the padding: the sizes are not stored.
  __device__ int64_t Size(int64_t t) const { return ends[t + 1] - Offset(t); }
  __device__ const void* Input(int64_t t) const { return inputs_[t]; }
  // Its position in the op's whole list.
  __device__ int64_t Position(int64_t t) const {
    return positions_ != nullptr ? positions_[t] : t;
  }

  const int64_t* const ends;

 private:
  const void* const* const inputs_;
  void* const* const outputs_;
  const int64_t* const positions_;
  const int64_t count_;
  const int64_t padded_total_;
  const int64_t num_chunks_;
  const int64_t width_;
  const bool all_in_place_;
};

// Largest t in [0, count) with Offset(t) <= p, for p in [0, padded_total).
// Every thread of the block must call it with the same arguments; each gets
// the answer. Offsets never decrease, so "Offset(candidate) <= p" holds for
// a prefix of evenly spaced candidates and the block counts it in one step.
__device__ int64_t BlockFindTensor(const TableView& table, int64_t p) {
  int64_t lo = 0;
  int64_t n = table.count();  // the answer lies in [lo, lo + n)
  while (n > 1) {
    const int64_t step = (n + blockDim.x - 1) / blockDim.x;
    const int64_t rel = static_cast<int64_t>(threadIdx.x) * step;
    const int below = rel < n && table.Offset(lo + rel) <= p;
    const int64_t c = __syncthreads_count(below);  // >= 1: Offset(lo) <= p
    lo += (c - 1) * step;
    n = min(step, n - (c - 1) * step);
  }
  return lo;
}

// Follows one thread's increasing positions through the tensor list.
template <DType D>
struct Cursor {
  using Storage = typename Elem<D>::Storage;
  static constexpr int V = VectorWidth<D>();

  __device__ Cursor(const TableView& table, int64_t first)
      : ends(table.ends),
        inputs(table.inputs()),
        outputs(table.outputs()),
        count(table.count()) {
    Load(first);
  }

  // The width is the dtype's (V), known here at compile time.
  __device__ int64_t Offset(int64_t t) const {
    return TableView::PaddedEnd(ends[t], V);
  }

  __device__ void Load(int64_t t) {
    tensor = t;
    begin = Offset(t);
    end = Offset(t + 1);
    size = ends[t + 1] - begin;
    in = static_cast<const Storage*>(inputs[t]);
    out = outputs != nullptr ? static_cast<Storage*>(outputs[t]) : nullptr;
  }

  // Moves to the tensor holding padded position p, p < padded_total and
  // no less than any position before: the largest t with Offset(t) <= p,
  // found by galloping from the current tensor (few steps when tensors are
  // small, and no search at all within a large one).
  __device__ void Seek(int64_t p) {
    if (p < end) return;
    int64_t a = tensor + 1;  // Offset(a) == end <= p
    int64_t step = 1;
    int64_t b = a + step;  // first candidate not known to be <= p
    // p is a vector's position, a multiple of V, so Offset(b) <= p exactly
    // when ends[b] <= p: no rounding in the search.
    while (b < count && ends[b] <= p) {
      a = b;
      step *= 2;
      b = a + step;
    }
    b = min(b, count) - 1;  // the answer lies in [a, b]
    while (a < b) {
      const int64_t m = a + (b - a + 1) / 2;
      if (ends[m] <= p) {
        a = m;
      } else {
        b = m - 1;
      }
    }
    Load(a);
  }

  const int64_t* const ends;  // TableView's
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
__device__ void ForEachChunk(const TableView& table, OnGroup on_group,
                             OnChunkEnd on_chunk_end) {
  constexpr int V = VectorWidth<D>();
  const int64_t chunks_per_block =
      (table.num_chunks() + gridDim.x - 1) / gridDim.x;
  const int64_t first_chunk = blockIdx.x * chunks_per_block;
  const int64_t end_chunk =
      min(first_chunk + chunks_per_block, table.num_chunks());
  if (first_chunk >= end_chunk) return;
  Cursor<D> cursor(table, BlockFindTensor(table, first_chunk * kChunkElements));
  for (int64_t chunk = first_chunk; chunk < end_chunk; ++chunk) {
    const int64_t begin = chunk * kChunkElements;
    const int64_t end = min(begin + kChunkElements, table.padded_total());
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

// The vector of tensor t at padded position p (Offset(t) <= p < Offset(t +
// 1)).
template <DType D>
__device__ Slot<D> TensorSlot(const TableView& table, int64_t t, int64_t p) {
  using Storage = typename Elem<D>::Storage;
  constexpr int V = VectorWidth<D>();
  const int64_t local = p - table.Offset(t);
  Slot<D> slot;
  slot.in = static_cast<const Storage*>(table.Input(t)) + local;
  slot.valid =
      static_cast<int>(min(static_cast<int64_t>(V), table.Size(t) - local));
  return slot;
}

}  // namespace
}  // namespace gpu
}  // namespace monolith_ops

#endif  // MONOLITH_OPS_CC_CORE_GPU_MULTI_TENSOR_CUH_
