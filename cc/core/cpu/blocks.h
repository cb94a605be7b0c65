// Copyright 2026 The monolith_ops Authors.
// SPDX-License-Identifier: Apache-2.0
// How the CPU core walks a list of tensors: the global element range cut
// into blocks of kReduceBlock elements (clip_core.h), each block's pieces of
// the tensors, blocks read side by side, and which blocks run on which
// thread. Every operation of the core (sum of squares, per-tensor
// reductions, scaling, filling) runs on these; an operation supplies only
// what it does with a piece.
//
// Private to the CPU core (cc/core/clip_core.cc, cc/core/optimizer_core.cc
// and the headers of cc/core/cpu/): an unnamed namespace, as in a source
// file.
#ifndef MONOLITH_OPS_CC_CORE_CPU_BLOCKS_H_
#define MONOLITH_OPS_CC_CORE_CPU_BLOCKS_H_

#include <algorithm>
#include <cstdint>
#include <functional>
#include <vector>

#include "cc/core/clip_core.h"

namespace monolith_ops {
namespace {

// Independent accumulators of a block: enough for two AVX2 registers of
// doubles per float vector and for the adder latency. Element j of a segment
// always goes to lane j % kLanes, and a block's lanes are added up once, in a
// fixed order, at its end.
constexpr int kLanes = 16;

// Element offsets of each tensor in the concatenated list: offsets[i] is the
// first global element of tensor i, offsets[count] the total.
std::vector<int64_t> Offsets(const int64_t* sizes, int64_t count) {
  std::vector<int64_t> offsets(count + 1);
  offsets[0] = 0;
  for (int64_t i = 0; i < count; ++i) offsets[i + 1] = offsets[i] + sizes[i];
  return offsets;
}

// The sum of squares reads kStreams blocks side by side, a piece of each in
// turn; on AVX-512, blocks that are each one piece of one tensor go 16
// elements of each in turn. One thread reading several streams at once keeps
// more lines in flight than one reading a single stream, which pays on lists
// larger than the cache. Writes do not gain: the scaling pass goes piece by
// piece. (Measurements: docs/performance.md.)
constexpr int kStreams = 4;

// A run of `length` elements of tensor `tensor`, from element `start`.
struct Piece {
  int64_t tensor, start, length;
};

// Walks the pieces of the global range [begin, end): its part of each
// tensor, in order, empty tensors skipped.
class PieceCursor {
 public:
  void Reset(const std::vector<int64_t>& offsets, int64_t begin, int64_t end) {
    offsets_ = &offsets;
    pos_ = begin;
    end_ = end;
    tensor_ = std::upper_bound(offsets.begin(), offsets.end(), pos_) -
              offsets.begin() - 1;
  }
  bool done() const { return pos_ >= end_; }
  // The next piece; only while !done().
  Piece Next() {
    const std::vector<int64_t>& offsets = *offsets_;
    while (offsets[tensor_ + 1] <= pos_) ++tensor_;
    const int64_t stop = std::min(end_, offsets[tensor_ + 1]);
    const Piece piece{tensor_, pos_ - offsets[tensor_], stop - pos_};
    pos_ = stop;
    return piece;
  }

 private:
  const std::vector<int64_t>* offsets_ = nullptr;
  int64_t pos_ = 0, end_ = 0, tensor_ = 0;
};

// Global element range of block `block`.
int64_t BlockBegin(int64_t block) { return block * kReduceBlock; }
int64_t BlockEnd(const std::vector<int64_t>& offsets, int64_t block) {
  return std::min(offsets.back(), (block + 1) * kReduceBlock);
}

// Calls fn(block, tensor, first_element, length) on every piece of the
// blocks [first, last), at most kStreams of them, a piece of each in turn.
template <typename Fn>
void InterleaveBlocks(const std::vector<int64_t>& offsets, int64_t first,
                      int64_t last, Fn fn) {
  PieceCursor cursors[kStreams];
  for (int64_t b = first; b < last; ++b) {
    cursors[b - first].Reset(offsets, BlockBegin(b), BlockEnd(offsets, b));
  }
  for (bool more = true; more;) {
    more = false;
    for (int64_t b = first; b < last; ++b) {
      PieceCursor& cursor = cursors[b - first];
      if (cursor.done()) continue;
      const Piece p = cursor.Next();
      fn(b, p.tensor, p.start, p.length);
      more = true;
    }
  }
}

int64_t NumBlocks(int64_t total) {
  return (total + kReduceBlock - 1) / kReduceBlock;
}

// Below this many elements, handing work to other threads costs more than it
// saves: the blocks run on the calling thread.
constexpr int64_t kSerialElements = int64_t{1} << 18;

// The sum of squares reads lists of up to this many elements on the calling
// thread too (in interleaved blocks, past kSerialElements): waking a second
// thread of TensorFlow's pool costs more than that thread saves below this
// size, and less above it. (Measurements: docs/performance.md.)
constexpr int64_t kThreadedElements = int64_t{1} << 21;

void ForBlocks(int64_t total, const ParallelFor& parallel_for,
               const std::function<void(int64_t, int64_t)>& fn) {
  const int64_t blocks = NumBlocks(total);
  if (total <= kSerialElements) {
    SerialFor(blocks, kReduceBlock, fn);
  } else {
    parallel_for(blocks, kReduceBlock * 2, fn);
  }
}

// Runs fn(tensor, first_element, length) over every element of the list,
// a whole piece at a time, block by block, in parallel.
template <typename Fn>
void ParallelOverElements(const std::vector<int64_t>& offsets,
                          const ParallelFor& parallel_for, Fn fn) {
  const int64_t total = offsets.back();
  ForBlocks(total, parallel_for, [&](int64_t first, int64_t last) {
    PieceCursor pieces;
    pieces.Reset(offsets, BlockBegin(first), BlockEnd(offsets, last - 1));
    while (!pieces.done()) {
      const Piece p = pieces.Next();
      fn(p.tensor, p.start, p.length);
    }
  });
}

}  // namespace
}  // namespace monolith_ops

#endif  // MONOLITH_OPS_CC_CORE_CPU_BLOCKS_H_
