// Copyright 2026 The monolith_ops Authors.
// SPDX-License-Identifier: Apache-2.0
// A host emulation of the few CUDA runtime features that
// cc/core/clip_core_gpu.cu uses, so that its kernels can be run on a CPU by
// tests/gpu/emulation/check_core.cc (see tests/test_cuda_build.py).
//
// The threads of a block run as fibers (ucontext) on the calling thread and
// switch only at barriers: a block-wide barrier releases once every live
// thread of the block waits at it, a warp barrier (used by the warp shuffle)
// once the 32 lanes of that warp do. Blocks run one after another. This
// checks indexing, coverage, reductions and arithmetic, not the memory model
// or performance; the GPU check (tests/gpu/check_gpu.py) does the rest.
#ifndef MONOLITH_OPS_TESTS_GPU_EMULATION_CUDA_RUNTIME_H_
#define MONOLITH_OPS_TESTS_GPU_EMULATION_CUDA_RUNTIME_H_

#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __shared__ static
#define __launch_bounds__(...)

struct CUstream_st;
typedef CUstream_st* cudaStream_t;
typedef int cudaError_t;
enum { cudaSuccess = 0, cudaErrorInvalidValue = 1 };
enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount = 16 };
enum cudaMemcpyKind { cudaMemcpyHostToDevice = 1 };

struct Dim3 {
  unsigned x = 0;
};
inline Dim3 threadIdx, blockIdx, blockDim, gridDim;

struct alignas(16) uint4 {
  unsigned x, y, z, w;
};

using std::fma;
using std::isfinite;
using std::sqrt;
template <typename T>
inline T min(T a, T b) {
  return a < b ? a : b;
}
template <typename T>
inline T max(T a, T b) {
  return a < b ? b : a;
}

namespace emulation {

// Multiprocessors the emulated device reports (one block fits on each):
// tests change it to vary the grid size.
inline int multiprocessors = 3;

enum class Wait { kRunning, kBlock, kWarp, kDone };

struct Fiber {
  ucontext_t context;
  std::vector<char> stack;
  Wait wait = Wait::kRunning;
};

struct Block {
  std::vector<Fiber> fibers;
  ucontext_t scheduler;
  int current = 0;
  int count = 0;           // __syncthreads_count's tally
  double shuffle[32][32];  // one slot per lane of each warp
  void (*body)(void*) = nullptr;
  void* arg = nullptr;
};

inline Block& CurrentBlock() {
  static Block block;
  return block;
}

inline void Yield(Wait wait) {
  Block& b = CurrentBlock();
  b.fibers[b.current].wait = wait;
  swapcontext(&b.fibers[b.current].context, &b.scheduler);
}

inline void FiberMain() {
  Block& b = CurrentBlock();
  b.body(b.arg);
  b.fibers[b.current].wait = Wait::kDone;
}

// Runs body(arg) as `threads` threads of one block.
inline void RunBlock(int threads, void (*body)(void*), void* arg) {
  Block& b = CurrentBlock();
  if (static_cast<int>(b.fibers.size()) < threads) b.fibers.resize(threads);
  b.body = body;
  b.arg = arg;
  b.count = 0;
  for (int t = 0; t < threads; ++t) {
    Fiber& f = b.fibers[t];
    f.wait = Wait::kRunning;
    f.stack.resize(64 * 1024);
    getcontext(&f.context);
    f.context.uc_stack.ss_sp = f.stack.data();
    f.context.uc_stack.ss_size = f.stack.size();
    f.context.uc_link = &b.scheduler;
    makecontext(&f.context, FiberMain, 0);
  }
  for (;;) {
    bool progress = false;
    for (int t = 0; t < threads; ++t) {
      if (b.fibers[t].wait != Wait::kRunning) continue;
      b.current = t;
      threadIdx.x = t;
      swapcontext(&b.scheduler, &b.fibers[t].context);
      progress = true;
    }
    int live = 0;
    int at_block = 0;
    for (int t = 0; t < threads; ++t) {
      live += b.fibers[t].wait != Wait::kDone;
      at_block += b.fibers[t].wait == Wait::kBlock;
    }
    if (live == 0) return;
    if (at_block == live) {
      for (int t = 0; t < threads; ++t) {
        if (b.fibers[t].wait == Wait::kBlock) b.fibers[t].wait = Wait::kRunning;
      }
      progress = true;
    }
    for (int w = 0; w * 32 < threads; ++w) {
      int waiting = 0;
      for (int k = 0; k < 32; ++k)
        waiting += b.fibers[w * 32 + k].wait == Wait::kWarp;
      if (waiting == 32) {
        for (int k = 0; k < 32; ++k) b.fibers[w * 32 + k].wait = Wait::kRunning;
        progress = true;
      }
    }
    if (!progress) {
      std::fprintf(stderr, "emulation: threads wait at different barriers\n");
      std::abort();
    }
  }
}

}  // namespace emulation

inline void __syncthreads() { emulation::Yield(emulation::Wait::kBlock); }

inline int __syncthreads_count(int predicate) {
  emulation::Block& b = emulation::CurrentBlock();
  b.count += predicate != 0;
  __syncthreads();
  const int count = b.count;
  __syncthreads();
  if (threadIdx.x == 0) b.count = 0;
  __syncthreads();
  return count;
}

inline double __shfl_down_sync(unsigned, double v, int offset) {
  emulation::Block& b = emulation::CurrentBlock();
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  b.shuffle[warp][lane] = v;
  emulation::Yield(emulation::Wait::kWarp);
  const double r = lane + offset < 32 ? b.shuffle[warp][lane + offset] : v;
  emulation::Yield(emulation::Wait::kWarp);
  return r;
}

inline float __int_as_float(int i) {
  float f;
  std::memcpy(&f, &i, 4);
  return f;
}
inline float __uint_as_float(unsigned i) {
  float f;
  std::memcpy(&f, &i, 4);
  return f;
}
inline double __longlong_as_double(long long i) {
  double d;
  std::memcpy(&d, &i, 8);
  return d;
}

// kernel<<<grid, threads, 0, stream>>>(args...) is rewritten by the test into
// EmulatedLaunch(kernel, grid, threads, args...).
template <typename... Params, typename... Args>
cudaError_t EmulatedLaunch(void (*kernel)(Params...), int grid, int threads,
                           Args... args) {
  if (grid <= 0 || threads <= 0 || threads % 32 != 0)
    return cudaErrorInvalidValue;
  gridDim.x = grid;
  blockDim.x = threads;
  auto body = [&] { kernel(args...); };
  for (int b = 0; b < grid; ++b) {
    blockIdx.x = b;
    emulation::RunBlock(
        threads, [](void* f) { (*static_cast<decltype(body)*>(f))(); }, &body);
  }
  return cudaSuccess;
}

// Each value of emulation::multiprocessors acts as a device of its own, so
// that the core's per-device cache of grid sizes follows it.
inline cudaError_t cudaGetDevice(int* device) {
  *device = emulation::multiprocessors;
  return cudaSuccess;
}
inline cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}
inline cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr, int) {
  *value = emulation::multiprocessors;
  return cudaSuccess;
}
template <typename Kernel>
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* blocks, Kernel,
                                                          int, size_t) {
  *blocks = 1;
  return cudaSuccess;
}
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes,
                                   cudaMemcpyKind, cudaStream_t) {
  std::memcpy(dst, src, bytes);
  return cudaSuccess;
}
inline const char* cudaGetErrorString(cudaError_t) { return "emulated error"; }

#endif  // MONOLITH_OPS_TESTS_GPU_EMULATION_CUDA_RUNTIME_H_
