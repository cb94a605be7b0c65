// Copyright 2026 The monolith_ops Authors.
// SPDX-License-Identifier: Apache-2.0
// A host emulation of the few CUDA runtime features that
// cc/core/clip_core_gpu.cu uses, so that its kernels can be run on a CPU by
// tests/gpu/emulation/check_core.cc (see tests/test_cuda_emulation.py).
//
// The threads of a block run as fibers on the calling thread and switch only
// at barriers: a block-wide barrier releases once every thread of the block
// waits at it, a warp shuffle once the lanes its mask names do. Between
// barriers the waiting threads run in the order of the schedule, chosen when
// the program starts by the environment variable EMULATION_SCHEDULE:
// "forward" (thread index order, the default), "reverse", or "random:SEED"
// (a fresh random order of the threads after every barrier, and the blocks
// of a grid in random order). Blocks run one after another.
//
// What is reported (on stderr, starting "EMULATION FINDING:", then abort):
//   - a data race in shared memory: between two barriers, an element of a
//     __shared__ array written by one thread and read or written by another
//     (a warp shuffle orders the lanes of its warp when its mask names all
//     32); an index past a __shared__ array's end;
//   - a warp shuffle whose mask does not name the calling lane, that reads a
//     lane its mask does not name, or whose named lanes do not all take
//     part;
//   - a __syncthreads() that not every thread of the block reaches, or that
//     releases threads waiting at different lines (a barrier in divergent
//     code).
// The build under test adds AddressSanitizer (each tensor of the checks in a
// buffer of its own exact size, so a read past a tensor's end is caught) and
// UndefinedBehaviorSanitizer's alignment check (a misaligned 16-byte vector
// load or store). Global memory is not checked for races, and nothing here
// models the memory model, timing or performance: tests/gpu/check_gpu.py on
// a GPU does the rest.
//
// For the shadow bookkeeping, the test rewrites each `__shared__ T name[N];`
// of the kernels into `static emulation::Shared<T, N> name{"name"};` and a
// `double* scratch` parameter into `emulation::SharedPtr<double> scratch`.
#ifndef MONOLITH_OPS_TESTS_GPU_EMULATION_CUDA_RUNTIME_H_
#define MONOLITH_OPS_TESTS_GPU_EMULATION_CUDA_RUNTIME_H_

#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define EMULATION_ASAN 1
#else
#define EMULATION_ASAN 0
#endif

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

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

#if defined(__x86_64__)
// Saves the callee-saved registers, MXCSR and the x87 control word on the
// current stack, stores the stack pointer in *save and resumes the context
// whose stack pointer is `next` (a context saved here, or a fresh stack laid
// out by emulation::Fiber::Start()). No system call, unlike swapcontext().
extern "C" void emulation_switch(void** save, void* next);
asm(R"(
  .text
  .globl emulation_switch
  .type emulation_switch, @function
emulation_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size emulation_switch, .-emulation_switch
)");
#endif

namespace emulation {

// Multiprocessors the emulated device reports (one block fits on each):
// tests change it to vary the grid size.
inline int multiprocessors = 3;

// ------------------------------------------------------------- findings

[[noreturn]] inline void Finding(const std::string& what) {
  std::fflush(stdout);
  std::fprintf(stderr, "EMULATION FINDING: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

template <typename... Args>
std::string Format(const char* format, Args... args) {
  char text[512];
  std::snprintf(text, sizeof text, format, args...);
  return text;
}

// ------------------------------------------------------------- schedule

enum class Order { kForward, kReverse, kRandom };

struct Schedule {
  Order order = Order::kForward;
  std::mt19937_64 rng;
  std::string name = "forward";
};

inline Schedule& TheSchedule() {
  static Schedule schedule = [] {
    Schedule s;
    const char* env = std::getenv("EMULATION_SCHEDULE");
    const std::string text = env != nullptr ? env : "forward";
    if (text == "forward") {
      s.order = Order::kForward;
    } else if (text == "reverse") {
      s.order = Order::kReverse;
    } else if (text.rfind("random:", 0) == 0) {
      s.order = Order::kRandom;
      s.rng.seed(std::strtoull(text.c_str() + 7, nullptr, 10));
    } else {
      std::fprintf(stderr,
                   "EMULATION_SCHEDULE=%s: want forward, reverse "
                   "or random:SEED\n",
                   text.c_str());
      std::exit(2);
    }
    s.name = text;
    return s;
  }();
  return schedule;
}

// Puts `items` in the schedule's order (they arrive in increasing order).
inline void Arrange(std::vector<int>* items) {
  Schedule& s = TheSchedule();
  if (s.order == Order::kReverse) {
    std::reverse(items->begin(), items->end());
  } else if (s.order == Order::kRandom) {
    std::shuffle(items->begin(), items->end(), s.rng);
  }
}

// ------------------------------------------------------------- fibers

enum class Wait { kRunning, kBlock, kWarp, kDone };

struct Fiber {
  void* sp = nullptr;
  char* stack = nullptr;
  size_t stack_size = 0;
  Wait wait = Wait::kRunning;
  const char* file = "";  // where a thread waits at a block barrier
  int line = 0;
  unsigned mask = 0;  // the mask of the shuffle a thread waits at
#if !defined(__x86_64__)
  ucontext_t context;
#endif
};

struct Block {
  std::vector<Fiber> fibers;
  int threads = 0;
  void* scheduler_sp = nullptr;
#if !defined(__x86_64__)
  ucontext_t scheduler;
#endif
  const void* scheduler_bottom = nullptr;
  size_t scheduler_size = 0;
  int current = 0;
  int count = 0;           // __syncthreads_count's tally
  double shuffle[32][32];  // one slot per lane of each warp
  // Shadow clocks: `epoch` grows at every block barrier (and every block),
  // warp_epoch[w] at every shuffle of warp w that names all its lanes.
  uint64_t epoch = 0;
  uint64_t warp_epoch[32] = {};
  void (*body)(void*) = nullptr;
  void* arg = nullptr;
};

inline Block& CurrentBlock() {
  static Block block;
  return block;
}

inline void FiberMain();

#if defined(__x86_64__)
inline void SwitchTo(void** save, void* next, const void* next_bottom,
                     size_t next_size, bool exiting) {
#if EMULATION_ASAN
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(exiting ? nullptr : &fake, next_bottom,
                                 next_size);
#else
  (void)next_bottom;
  (void)next_size;
  (void)exiting;
#endif
  emulation_switch(save, next);
#if EMULATION_ASAN
  __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
}

inline void FiberEntry() {
  Block& b = CurrentBlock();
#if EMULATION_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &b.scheduler_bottom,
                                  &b.scheduler_size);
#endif
  FiberMain();
  void* unused;
  SwitchTo(&unused, b.scheduler_sp, b.scheduler_bottom, b.scheduler_size, true);
  __builtin_unreachable();
}
#endif

// Lays out a fresh stack whose first switch enters FiberMain().
inline void Start(Fiber& f, Block& b) {
#if EMULATION_ASAN
  const size_t size = 512 * 1024;
#else
  const size_t size = 128 * 1024;
#endif
  if (f.stack == nullptr) {
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) Finding("cannot map a fiber stack");
    f.stack = static_cast<char*>(p);
    f.stack_size = size;
  }
#if EMULATION_ASAN
  // A thread that ended left its frames' redzones marked on the stack.
  __asan_unpoison_memory_region(f.stack, f.stack_size);
#endif
#if defined(__x86_64__)
  (void)b;
  uintptr_t top =
      reinterpret_cast<uintptr_t>(f.stack + f.stack_size) & ~uintptr_t{15};
  uint64_t* slot = reinterpret_cast<uint64_t*>(top - 16);
  slot[0] = reinterpret_cast<uint64_t>(&FiberEntry);  // where `ret` goes
  uint64_t* sp = slot - 7;  // MXCSR/x87 word, r15, r14, r13, r12, rbx, rbp
  for (int k = 1; k < 7; ++k) sp[k] = 0;
  const uint32_t control[2] = {0x1f80u, 0x037fu};
  std::memcpy(sp, control, 8);
  f.sp = sp;
#else
  getcontext(&f.context);
  f.context.uc_stack.ss_sp = f.stack;
  f.context.uc_stack.ss_size = f.stack_size;
  f.context.uc_link = &b.scheduler;
  makecontext(&f.context, FiberMain, 0);
#endif
}

// From a thread to the scheduler.
inline void Yield(Wait wait) {
  Block& b = CurrentBlock();
  Fiber& f = b.fibers[b.current];
  f.wait = wait;
#if defined(__x86_64__)
  SwitchTo(&f.sp, b.scheduler_sp, b.scheduler_bottom, b.scheduler_size, false);
#else
  swapcontext(&f.context, &b.scheduler);
#endif
}

// From the scheduler to thread t.
inline void Resume(Block& b, int t) {
  b.current = t;
  threadIdx.x = t;
  Fiber& f = b.fibers[t];
#if defined(__x86_64__)
  SwitchTo(&b.scheduler_sp, f.sp, f.stack, f.stack_size, false);
#else
  swapcontext(&b.scheduler, &f.context);
#endif
}

inline void FiberMain() {
  Block& b = CurrentBlock();
  b.body(b.arg);
  b.fibers[b.current].wait = Wait::kDone;
}

inline const char* WaitName(Wait w) {
  switch (w) {
    case Wait::kRunning:
      return "runs";
    case Wait::kBlock:
      return "waits at __syncthreads()";
    case Wait::kWarp:
      return "waits at a warp shuffle";
    case Wait::kDone:
      return "has exited";
  }
  return "?";
}

// Releases the lanes of warp w that wait at a shuffle once every lane its
// mask names waits there with the same mask; true if it released any.
inline bool ReleaseWarp(Block& b, int w) {
  unsigned waiting = 0;
  unsigned mask = 0;
  for (int k = 0; k < 32; ++k) {
    const Fiber& f = b.fibers[w * 32 + k];
    if (f.wait != Wait::kWarp) continue;
    if (waiting != 0 && f.mask != mask) {
      Finding(Format("warp %d: lanes wait at shuffles with masks %#x and %#x",
                     w, mask, f.mask));
    }
    waiting |= 1u << k;
    mask = f.mask;
  }
  if (waiting == 0 || (waiting & mask) != mask) return false;
  for (int k = 0; k < 32; ++k) {
    if (mask >> k & 1u) b.fibers[w * 32 + k].wait = Wait::kRunning;
  }
  if (mask == 0xffffffffu) ++b.warp_epoch[w];
  return true;
}

// Runs body(arg) as `threads` threads of one block.
inline void RunBlock(int threads, void (*body)(void*), void* arg) {
  Block& b = CurrentBlock();
  if (static_cast<int>(b.fibers.size()) < threads) b.fibers.resize(threads);
  b.threads = threads;
  b.body = body;
  b.arg = arg;
  b.count = 0;
  ++b.epoch;  // nothing of an earlier block races with this one
  for (int t = 0; t < threads; ++t) {
    Fiber& f = b.fibers[t];
    f.wait = Wait::kRunning;
    Start(f, b);
  }
  std::vector<int> order;
  for (;;) {
    order.clear();
    for (int t = 0; t < threads; ++t) {
      if (b.fibers[t].wait == Wait::kRunning) order.push_back(t);
    }
    Arrange(&order);
    for (int t : order) Resume(b, t);
    bool progress = !order.empty();
    int live = 0;
    int at_block = 0;
    int first_at_block = -1;
    for (int t = 0; t < threads; ++t) {
      live += b.fibers[t].wait != Wait::kDone;
      if (b.fibers[t].wait == Wait::kBlock) {
        ++at_block;
        if (first_at_block < 0) first_at_block = t;
      }
    }
    if (live == 0) return;
    if (at_block == live) {
      if (live != threads) {
        int gone = 0;
        while (b.fibers[gone].wait != Wait::kDone) ++gone;
        Finding(
            Format("block %u: __syncthreads() at %s:%d is reached by %d "
                   "of %d threads (thread %d has exited)",
                   blockIdx.x, b.fibers[first_at_block].file,
                   b.fibers[first_at_block].line, live, threads, gone));
      }
      const Fiber& a = b.fibers[first_at_block];
      for (int t = 0; t < threads; ++t) {
        const Fiber& f = b.fibers[t];
        if (f.line != a.line || std::strcmp(f.file, a.file) != 0) {
          Finding(Format(
              "block %u: threads %d and %d wait at different "
              "__syncthreads() (%s:%d and %s:%d): a barrier in "
              "divergent code",
              blockIdx.x, first_at_block, t, a.file, a.line, f.file, f.line));
        }
      }
      for (int t = 0; t < threads; ++t) b.fibers[t].wait = Wait::kRunning;
      ++b.epoch;
      progress = true;
    }
    for (int w = 0; w * 32 < threads; ++w) progress |= ReleaseWarp(b, w);
    if (!progress) {
      // A deadlock: name a thread at a shuffle whose lanes do not all come,
      // else two threads at different kinds of barrier.
      for (int t = 0; t < threads; ++t) {
        const Fiber& f = b.fibers[t];
        if (f.wait != Wait::kWarp) continue;
        for (int k = 0; k < 32; ++k) {
          const Fiber& g = b.fibers[t / 32 * 32 + k];
          if ((f.mask >> k & 1u) && g.wait != Wait::kWarp) {
            Finding(
                Format("block %u: thread %d waits at a shuffle with mask "
                       "%#x, but lane %d of its warp %s",
                       blockIdx.x, t, f.mask, k, WaitName(g.wait)));
          }
        }
      }
      std::fprintf(stderr, "emulation: threads wait at different barriers\n");
      Finding(
          Format("block %u: threads wait at different barriers", blockIdx.x));
    }
  }
}

// ------------------------------------------------------------- shared memory

// Who last wrote and read one element of a __shared__ array, and when.
struct Shadow {
  int writer = -1;
  uint64_t write_epoch = 0, write_warp_epoch = 0;
  int reader = -1;       // -2: several threads
  int reader_warp = -1;  // -1: readers in several warps
  uint64_t read_epoch = 0, read_warp_epoch = 0;
};

// Whether an access by `other` at (epoch, warp_epoch) happened before the
// present point of the current thread: a block barrier since, or a
// full-warp shuffle since when both are in one warp.
inline bool Before(const Block& b, int other_warp, uint64_t epoch,
                   uint64_t warp_epoch) {
  const int warp = static_cast<int>(threadIdx.x / 32);
  return epoch < b.epoch ||
         (other_warp == warp && warp_epoch < b.warp_epoch[warp]);
}

// Reports `access` ("reads" or "writes") of what[i] by thread t when another
// thread wrote it since the last barrier (or shuffle) that orders the two.
inline void CheckLastWriter(const Shadow& s, const Block& b, int t,
                            const char* access, const char* what, int64_t i) {
  if (s.writer >= 0 && s.writer != t &&
      !Before(b, s.writer / 32, s.write_epoch, s.write_warp_epoch)) {
    Finding(Format(
        "block %u: data race in shared memory: thread %d %s "
        "%s[%lld], written by thread %d since the last barrier",
        blockIdx.x, t, access, what, static_cast<long long>(i), s.writer));
  }
}

inline void CheckRead(Shadow& s, const char* what, int64_t i) {
  Block& b = CurrentBlock();
  const int t = static_cast<int>(threadIdx.x);
  const int warp = t / 32;
  CheckLastWriter(s, b, t, "reads", what, i);
  if (s.reader == -1 ||
      Before(b, s.reader_warp, s.read_epoch, s.read_warp_epoch)) {
    s.reader = t;
    s.reader_warp = warp;
    s.read_epoch = b.epoch;
    s.read_warp_epoch = b.warp_epoch[warp];
  } else if (s.reader != t) {
    s.reader = -2;
    if (s.reader_warp != warp) s.reader_warp = -1;
    s.read_warp_epoch = std::max(s.read_warp_epoch, b.warp_epoch[warp]);
  }
}

inline void CheckWrite(Shadow& s, const char* what, int64_t i) {
  Block& b = CurrentBlock();
  const int t = static_cast<int>(threadIdx.x);
  const int warp = t / 32;
  CheckLastWriter(s, b, t, "writes", what, i);
  if (s.reader != -1 && s.reader != t &&
      !Before(b, s.reader_warp, s.read_epoch, s.read_warp_epoch)) {
    Finding(
        Format("block %u: data race in shared memory: thread %d writes "
               "%s[%lld], read by thread %d since the last barrier",
               blockIdx.x, t, what, static_cast<long long>(i), s.reader));
  }
  s.writer = t;
  s.write_epoch = b.epoch;
  s.write_warp_epoch = b.warp_epoch[warp];
  s.reader = -1;
}

// One element of a __shared__ array: reading or assigning it is checked.
template <typename T>
struct SharedRef {
  T* value;
  Shadow* shadow;
  const char* name;
  int64_t index;
  operator T() const {
    CheckRead(*shadow, name, index);
    return *value;
  }
  SharedRef& operator=(T v) {
    CheckWrite(*shadow, name, index);
    *value = v;
    return *this;
  }
  SharedRef& operator=(const SharedRef& other) { return *this = T(other); }
};

template <typename T>
struct SharedPtr {
  T* data;
  Shadow* shadow;
  const char* name;
  int64_t size;
  SharedRef<T> operator[](int64_t i) const {
    if (i < 0 || i >= size) {
      Finding(
          Format("block %u: thread %u indexes the __shared__ array %s of "
                 "%lld at %lld",
                 blockIdx.x, threadIdx.x, name, static_cast<long long>(size),
                 static_cast<long long>(i)));
    }
    return {data + i, shadow + i, name, i};
  }
};

// `__shared__ T name[N];`, rewritten by the test into
// `static emulation::Shared<T, N> name{"name"};`.
template <typename T, int64_t N>
struct Shared {
  explicit Shared(const char* array_name) : name(array_name) {}
  T data[N];
  Shadow shadow[N];
  const char* name;
  SharedRef<T> operator[](int64_t i) { return SharedPtr<T>(*this)[i]; }
  operator SharedPtr<T>() { return {data, shadow, name, N}; }
};

}  // namespace emulation

#define __syncthreads() ::emulation::SyncThreads(__FILE__, __LINE__)

namespace emulation {
inline void SyncThreads(const char* file, int line) {
  Block& b = CurrentBlock();
  b.fibers[b.current].file = file;
  b.fibers[b.current].line = line;
  Yield(Wait::kBlock);
}
}  // namespace emulation

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

inline double __shfl_down_sync(unsigned mask, double v, int offset) {
  emulation::Block& b = emulation::CurrentBlock();
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  if (!(mask >> lane & 1u)) {
    emulation::Finding(emulation::Format(
        "block %u: lane %d of warp %d calls a shuffle with mask %#x, which "
        "does not name it",
        blockIdx.x, lane, warp, mask));
  }
  b.shuffle[warp][lane] = v;
  b.fibers[b.current].mask = mask;
  emulation::Yield(emulation::Wait::kWarp);
  const int source = lane + offset;
  if (source < 32 && !(mask >> source & 1u)) {
    emulation::Finding(emulation::Format(
        "block %u: lane %d of warp %d reads lane %d, which the shuffle's mask "
        "%#x does not name",
        blockIdx.x, lane, warp, source, mask));
  }
  const double r = source < 32 ? b.shuffle[warp][source] : v;
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
  if (grid <= 0 || threads <= 0 || threads % 32 != 0 || threads > 1024)
    return cudaErrorInvalidValue;
  gridDim.x = grid;
  blockDim.x = threads;
  auto body = [&] { kernel(args...); };
  std::vector<int> blocks(grid);
  for (int b = 0; b < grid; ++b) blocks[b] = b;
  emulation::Arrange(&blocks);
  for (int b : blocks) {
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
