// Copyright 2026 The monolith_ops Authors.
// SPDX-License-Identifier: Apache-2.0
// How the CPU core's loops use memory: software prefetch within a tensor
// and of the next tensors of a list, and when outputs are written with
// streaming stores. None of it changes a result, only when bytes move.
//
// Private to the CPU core (cc/core/clip_core.cc and the headers of
// cc/core/cpu/): an unnamed namespace, as in a source file.
#ifndef MONOLITH_OPS_CC_CORE_CPU_MEMORY_POLICY_H_
#define MONOLITH_OPS_CC_CORE_CPU_MEMORY_POLICY_H_

#include <unistd.h>

#include <algorithm>
#include <cstdint>

#include "cc/core/clip_core.h"
#include "cc/core/cpu/blocks.h"
#include "cc/core/cpu/isa.h"

namespace monolith_ops {
namespace {

// Software prefetch distance, in bytes: the loops request the line this far
// ahead of the one they read, within the same tensor (x[0, avail) is the rest
// of it). Even from the last-level cache, the hardware prefetchers alone keep
// too few lines in flight for loops that spend several instructions on each
// element (widening, squaring and adding in double), so the requests speed
// up lists larger than the cache on Intel's cores. On AMD's cores they cost
// more than they bring, so they are made on every CPU but AMD's. (The request
// for the next tensors' first bytes, PrefetchAhead below, is made on every
// CPU.) The measurements behind this rule: docs/performance.md.
constexpr int64_t kPrefetchDistance = 4096;
bool SoftwarePrefetch() {
#if MONOLITH_OPS_X86
  static const bool wanted = !__builtin_cpu_is("amd");
  return wanted;
#else
  return true;
#endif
}

// The loops prefetch for their rows of kLanes elements from x + i while
// i + kLanes <= PrefetchStop(n, avail), then read the rest without: the test
// stays out of the loop body, which it would slow down. Without software
// prefetch the stop is 0.
template <typename T>
inline __attribute__((always_inline)) int64_t PrefetchStop(int64_t n,
                                                           int64_t avail) {
  return SoftwarePrefetch()
             ? std::min<int64_t>(n, avail - kPrefetchDistance / sizeof(T))
             : 0;
}
template <typename T>
inline __attribute__((always_inline)) void PrefetchLanes(const T* x,
                                                         int64_t i) {
  constexpr int64_t kAhead = kPrefetchDistance / sizeof(T);
  constexpr int64_t kLine = 64 / sizeof(T) > 0 ? 64 / sizeof(T) : 1;
  for (int64_t k = 0; k < kLanes; k += kLine) {
    __builtin_prefetch(x + i + kAhead + k, 0, 3);
  }
}

// Lists of many small tensors are bound by memory latency, not bandwidth:
// each tensor is a separate allocation, so the hardware prefetcher cannot
// guess where the next one is. When a tensor's first piece is reached, the
// first kPrefetchBytes of the tensor kPrefetchAhead places further on are
// requested, so that they arrive while the tensors in between are read.
constexpr int64_t kPrefetchAhead = 4;
constexpr int64_t kPrefetchBytes = 1024;

template <typename T>
inline void PrefetchAhead(const T* const* inputs, const int64_t* sizes,
                          int64_t count, int64_t tensor, int64_t start) {
  const int64_t ahead = tensor + kPrefetchAhead;
  if (start != 0 || ahead >= count) return;
  const char* p = reinterpret_cast<const char*>(inputs[ahead]);
  const int64_t bytes =
      std::min<int64_t>(sizes[ahead] * sizeof(T), kPrefetchBytes);
  for (int64_t b = 0; b < bytes; b += 64) __builtin_prefetch(p + b, 0, 3);
}

// Outputs of at least this many bytes in all are written with streaming
// stores: tuning.stream_min_bytes when it is not negative, else half the L3
// cache as the OS reports it, at most 16 MiB. (Virtual machines and
// multi-die CPUs often report the whole socket's L3, far more than one
// core's share.)
int64_t DefaultStreamMinBytes() {
  static const int64_t bytes = [] {
    const long cache = sysconf(_SC_LEVEL3_CACHE_SIZE);
    const int64_t cap = int64_t{16} << 20;
    return cache > 0 ? std::min(int64_t{cache} / 2, cap) : cap;
  }();
  return bytes;
}
int64_t StreamMinBytes(const CpuTuning& tuning) {
  return tuning.stream_min_bytes >= 0 ? tuning.stream_min_bytes
                                      : DefaultStreamMinBytes();
}

}  // namespace
}  // namespace monolith_ops

#endif  // MONOLITH_OPS_CC_CORE_CPU_MEMORY_POLICY_H_
