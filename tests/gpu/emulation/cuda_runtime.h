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
// (a fresh random order of the threads after every barrier). The blocks of
// a grid are interleaved: up to `resident_blocks` of them are resident at
// once, each in a slot with its own __shared__ arrays, and the scheduler
// steps one resident block at a time to its next barrier (in turn for
// forward and reverse, a random one for random:SEED); the blocks start in
// the schedule's order (index order, reverse, random).
//
// What is reported (on stderr, starting "EMULATION FINDING:", then abort):
//   - a data race in shared memory: between two barriers, an element of a
//     __shared__ array written by one thread and read or written by another
//     (a warp shuffle orders the lanes of its warp when its mask names all
//     32); an index past a __shared__ array's end;
//   - a data race in global memory: in one kernel launch, a location written
//     by one thread and read or written by a thread of another block (blocks
//     of a launch are unordered: the kernels use no atomics or fences, and
//     the emulation offers none), or by a thread of the same block with no
//     barrier (or full-warp shuffle) between them. Launches are ordered (one
//     stream). What is checked: every element read or assigned through a
//     kernel's pointer parameters and every element the chunk walk loads or
//     stores (the test rewrites both, below); not the table, which the
//     kernels only read;
//   - a warp shuffle whose mask does not name the calling lane, that reads a
//     lane its mask does not name, or whose named lanes do not all take
//     part;
//   - a __syncthreads() that not every thread of the block reaches, or that
//     releases threads waiting at different lines (a barrier in divergent
//     code).
// cudaMemcpyAsync is deferred: the copy runs when the stream reaches it, at
// the next kernel launch or cudaStreamSynchronize(), so a host buffer freed
// before then is reported by AddressSanitizer (heap-use-after-free), and one
// changed before then is copied changed.
// The build under test adds AddressSanitizer (each tensor of the checks in a
// buffer of its own exact size, so a read past a tensor's end is caught) and
// UndefinedBehaviorSanitizer's alignment check (a misaligned 16-byte vector
// load or store). Nothing here models the memory model (fences, caches,
// reordering), timing or performance: tests/gpu/check_gpu.py on a GPU does
// the rest.
//
// For the shadow bookkeeping, the test rewrites each `__shared__ T name[N];`
// of the kernels into `static emulation::Shared<T, N> name{"name"};`, a
// `double* scratch` parameter into `emulation::SharedPtr<double> scratch`,
// each pointer parameter `T* name` of a kernel into
// `emulation::Global<T> name`, and adds emulation::GlobalRead() and
// GlobalWrite() calls to the chunk walk's Slot::Read() and Slot::Write().
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
#include <type_traits>
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
// A kernel's parameter is a copy of the argument made for each emulated
// thread, which lives as long as the kernel does: its address may be taken,
// as of a __grid_constant__ parameter on a device.
#define __grid_constant__

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

// One resident block: a slot of the emulated device that runs the blocks of
// a grid one after another, while the other slots run theirs.
struct Block {
  std::vector<Fiber> fibers;
  int slot = 0;    // which resident slot (and which copy of __shared__)
  int index = -1;  // the blockIdx.x it runs
  int threads = 0;
  int current = 0;
  int count = 0;           // __syncthreads_count's tally
  double shuffle[32][32];  // one slot per lane of each warp
  // Shadow clocks: `epoch` grows at every block barrier (and every block),
  // warp_epoch[w] at every shuffle of warp w that names all its lanes.
  uint64_t epoch = 0;
  uint64_t warp_epoch[32] = {};
  void (*body)(void*) = nullptr;
  void* arg = nullptr;
  std::vector<int> order;
};

// Blocks resident at once: the blocks of a grid beyond it wait for a slot,
// as on a device whose multiprocessors are full.
inline int resident_blocks = 8;

struct Scheduler {
  void* sp = nullptr;
#if !defined(__x86_64__)
  ucontext_t context;
#endif
  const void* bottom = nullptr;
  size_t size = 0;
  Block* current = nullptr;
  std::vector<Block*> slots;
  // Counts kernel launches: launches on the (one) stream are ordered, the
  // blocks of one launch are not.
  uint64_t launch = 0;
  const char* kernel = "";
};

inline Scheduler& TheScheduler() {
  static Scheduler scheduler;
  return scheduler;
}

inline Block& CurrentBlock() { return *TheScheduler().current; }

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
  Scheduler& s = TheScheduler();
#if EMULATION_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &s.bottom, &s.size);
#endif
  FiberMain();
  void* unused;
  SwitchTo(&unused, s.sp, s.bottom, s.size, true);
  __builtin_unreachable();
}
#endif

// Bytes at the top of a fiber's stack that a thread which ended leaves
// poisoned (the frames of FiberEntry() and the switch): every other frame
// returned, and unpoisoned itself.
constexpr size_t kStackTopPoisoned = 16 * 1024;

// Lays out a fresh stack whose first switch enters FiberMain().
inline void Start(Fiber& f) {
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
  } else {
#if EMULATION_ASAN
    // A thread that ended left its last frames' redzones marked.
    __asan_unpoison_memory_region(f.stack + f.stack_size - kStackTopPoisoned,
                                  kStackTopPoisoned);
#endif
  }
#if defined(__x86_64__)
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
  f.context.uc_link = &TheScheduler().context;
  makecontext(&f.context, FiberMain, 0);
#endif
}

// From a thread to the scheduler.
inline void Yield(Wait wait) {
  Scheduler& s = TheScheduler();
  Block& b = *s.current;
  Fiber& f = b.fibers[b.current];
  f.wait = wait;
#if defined(__x86_64__)
  SwitchTo(&f.sp, s.sp, s.bottom, s.size, false);
#else
  swapcontext(&f.context, &s.context);
#endif
}

// From the scheduler to thread t of block b.
inline void Resume(Block& b, int t) {
  Scheduler& s = TheScheduler();
  s.current = &b;
  b.current = t;
  threadIdx.x = t;
  blockIdx.x = b.index;
  Fiber& f = b.fibers[t];
#if defined(__x86_64__)
  SwitchTo(&s.sp, f.sp, f.stack, f.stack_size, false);
#else
  swapcontext(&s.context, &f.context);
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

// Starts block `index` in resident slot b: `threads` threads of body(arg).
inline void StartBlock(Block& b, int index, int threads, void (*body)(void*),
                       void* arg) {
  if (static_cast<int>(b.fibers.size()) < threads) b.fibers.resize(threads);
  b.index = index;
  b.threads = threads;
  b.body = body;
  b.arg = arg;
  b.count = 0;
  ++b.epoch;  // nothing of an earlier block races with this one
  for (int t = 0; t < threads; ++t) {
    Fiber& f = b.fibers[t];
    f.wait = Wait::kRunning;
    Start(f);
  }
}

// Runs the threads of block b that can run, in the schedule's order, each
// until it waits at a barrier or ends, then releases the barriers that all
// their threads reached. True once every thread of the block has ended.
inline bool StepBlock(Block& b) {
  const int threads = b.threads;
  std::vector<int>& order = b.order;
  order.clear();
  for (int t = 0; t < threads; ++t) {
    if (b.fibers[t].wait == Wait::kRunning) order.push_back(t);
  }
  Arrange(&order);
  for (int t : order) Resume(b, t);
  blockIdx.x = b.index;
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
  if (live == 0) return true;
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
    Finding(Format("block %u: threads wait at different barriers", blockIdx.x));
  }
  return false;
}

// Runs a grid of `grid` blocks of `threads` threads of body(arg): up to
// resident_blocks blocks at once, interleaved (each step of a block runs
// its threads to their next barrier), the blocks starting in the
// schedule's order and the next block to step chosen by it too (in turn
// for forward and reverse, at random for random:SEED).
inline void RunGrid(int grid, int threads, void (*body)(void*), void* arg) {
  Scheduler& s = TheScheduler();
  std::vector<int> pending(grid);
  for (int i = 0; i < grid; ++i) pending[i] = grid - 1 - i;
  Arrange(&pending);  // popped from the back: forward starts block 0
  const int resident = std::max(1, std::min(grid, resident_blocks));
  while (static_cast<int>(s.slots.size()) < resident) {
    Block* b = new Block();
    b->slot = static_cast<int>(s.slots.size());
    s.slots.push_back(b);
  }
  std::vector<Block*> live;
  for (int k = 0; k < resident; ++k) {
    Block& b = *s.slots[k];
    StartBlock(b, pending.back(), threads, body, arg);
    pending.pop_back();
    live.push_back(&b);
  }
  Schedule& schedule = TheSchedule();
  size_t turn = 0;
  while (!live.empty()) {
    size_t k;
    if (schedule.order == Order::kRandom) {
      k = std::uniform_int_distribution<size_t>(0,
                                                live.size() - 1)(schedule.rng);
    } else {
      k = turn++ % live.size();
      if (schedule.order == Order::kReverse) k = live.size() - 1 - k;
    }
    Block& b = *live[k];
    if (!StepBlock(b)) continue;
    if (!pending.empty()) {
      StartBlock(b, pending.back(), threads, body, arg);
      pending.pop_back();
    } else {
      live.erase(live.begin() + k);
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
// `static emulation::Shared<T, N> name{"name"};`: one copy of the array per
// resident block slot, as each block on a device has its own.
template <typename T, int64_t N>
struct Shared {
  explicit Shared(const char* array_name) : name(array_name) {}
  struct Copy {
    T data[N];
    Shadow shadow[N];
  };
  std::vector<Copy*> copies;
  const char* name;
  Copy& Mine() {
    const size_t slot = static_cast<size_t>(CurrentBlock().slot);
    if (copies.size() <= slot) copies.resize(slot + 1, nullptr);
    if (copies[slot] == nullptr) copies[slot] = new Copy();
    return *copies[slot];
  }
  SharedRef<T> operator[](int64_t i) { return SharedPtr<T>(*this)[i]; }
  operator SharedPtr<T>() {
    Copy& c = Mine();
    return {c.data, c.shadow, name, N};
  }
};

// ------------------------------------------------------------- global memory

// Who last wrote and read one location of global memory in the present
// launch. Launches on the stream are ordered, so an entry of an earlier
// launch counts as empty; within a launch, two blocks are ordered by
// nothing (the kernels use no atomics or fences, and the emulation offers
// none), and two threads of one block by a barrier, or a full-warp shuffle
// for the lanes of one warp.
struct GlobalShadow {
  const void* address = nullptr;
  uint32_t launch = 0;  // 0: empty
  int32_t writer_block = -1;
  int32_t reader_block = -1;  // -2: readers in several blocks
  int16_t writer = -1;
  int16_t reader = -1;       // -2: several threads of reader_block
  int16_t reader_warp = -1;  // -1: readers in several warps
  uint32_t write_epoch = 0, write_warp_epoch = 0;
  uint32_t read_epoch = 0, read_warp_epoch = 0;
};

// A direct-mapped table of shadows indexed by address (2-byte steps, the
// smallest element, so that neighbours share no entry and a sweep over a
// tensor sweeps the table): a location whose entry another one took is
// checked afresh (a race may be missed, never invented).
constexpr size_t kGlobalShadowBits = 21;
inline GlobalShadow* GlobalShadows() {
  static GlobalShadow* table = [] {
    void* p = mmap(nullptr, sizeof(GlobalShadow) << kGlobalShadowBits,
                   PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) Finding("cannot map the global memory shadow");
    return static_cast<GlobalShadow*>(p);
  }();
  return table;
}

[[noreturn]] inline void GlobalRace(const char* access, const void* address,
                                    const char* other, int other_block,
                                    int other_thread) {
  const Scheduler& s = TheScheduler();
  char who[64];
  if (other_block == -2) {
    std::snprintf(who, sizeof who, "threads of several blocks");
  } else if (other_thread == -2) {
    std::snprintf(who, sizeof who, "several threads of block %d", other_block);
  } else {
    std::snprintf(who, sizeof who, "block %d thread %d", other_block,
                  other_thread);
  }
  Finding(Format(
      "data race in global memory: in launch %llu (%s), block %u thread %u "
      "%s %p, %s by %s, and nothing orders the two (%s)",
      static_cast<unsigned long long>(s.launch), s.kernel, blockIdx.x,
      threadIdx.x, access, address, other, who,
      other_block == static_cast<int>(blockIdx.x)
          ? "no barrier between them"
          : "blocks of one launch are unordered"));
}

// Whether the access of (block, thread) recorded at (epoch, warp_epoch)
// happened before the present point of the current thread.
inline bool GlobalBefore(const Block& b, int block, int thread, int warp,
                         uint64_t epoch, uint64_t warp_epoch) {
  if (block != b.index) return false;
  if (thread == static_cast<int>(threadIdx.x)) return true;
  return Before(b, warp, epoch, warp_epoch);
}

__attribute__((no_sanitize("address", "undefined"))) inline GlobalShadow&
GlobalEntry(const void* address) {
  const Scheduler& s = TheScheduler();
  const uint64_t key = reinterpret_cast<uintptr_t>(address);
  GlobalShadow& e =
      GlobalShadows()[(key >> 1) & ((size_t{1} << kGlobalShadowBits) - 1)];
  const uint32_t launch = static_cast<uint32_t>(s.launch);
  if (e.address != address || e.launch != launch) {
    e = GlobalShadow();
    e.address = address;
    e.launch = launch;
  }
  return e;
}

__attribute__((no_sanitize("address", "undefined"))) inline void GlobalAccess(
    const void* address, bool write) {
  Scheduler& s = TheScheduler();
  if (s.current == nullptr || s.launch == 0) return;  // the host
  const Block& b = *s.current;
  const int block = b.index;
  const int t = static_cast<int>(threadIdx.x);
  const int warp = t / 32;
  GlobalShadow& e = GlobalEntry(address);
  if (e.writer_block != -1 &&
      !GlobalBefore(b, e.writer_block, e.writer, e.writer / 32, e.write_epoch,
                    e.write_warp_epoch)) {
    GlobalRace(write ? "writes" : "reads", address, "written", e.writer_block,
               e.writer);
  }
  if (write) {
    if (e.reader_block != -1 &&
        (e.reader_block != block ||
         (e.reader != t &&
          !Before(b, e.reader_warp, e.read_epoch, e.read_warp_epoch)))) {
      GlobalRace("writes", address, "read", e.reader_block, e.reader);
    }
    e.writer_block = block;
    e.writer = t;
    e.write_epoch = b.epoch;
    e.write_warp_epoch = b.warp_epoch[warp];
    e.reader_block = -1;
    e.reader = -1;
    return;
  }
  if (e.reader_block == -1 ||
      (e.reader_block == block && e.reader >= 0 &&
       GlobalBefore(b, e.reader_block, e.reader, e.reader_warp, e.read_epoch,
                    e.read_warp_epoch))) {
    e.reader_block = block;
    e.reader = t;
    e.reader_warp = warp;
    e.read_epoch = b.epoch;
    e.read_warp_epoch = b.warp_epoch[warp];
  } else if (e.reader_block != block) {
    e.reader_block = -2;
  } else if (e.reader != t) {
    e.reader = -2;
    if (e.reader_warp != warp) e.reader_warp = -1;
    e.read_warp_epoch = static_cast<uint32_t>(
        std::max<uint64_t>(e.read_warp_epoch, b.warp_epoch[warp]));
  }
}

// Checks a kernel's read or write of n elements of global memory at p
// (the test adds these calls to the kernels' vector loads and stores).
template <typename T>
inline void GlobalRead(const T* p, int n) {
  for (int k = 0; k < n; ++k) GlobalAccess(p + k, false);
}
template <typename T>
inline void GlobalWrite(const T* p, int n) {
  for (int k = 0; k < n; ++k) GlobalAccess(p + k, true);
}

template <typename T>
struct GlobalRef {
  T* p;
  operator T() const {
    GlobalAccess(p, false);
    return *p;
  }
  GlobalRef& operator=(T v) {
    GlobalAccess(p, true);
    *p = v;
    return *this;
  }
  GlobalRef& operator=(const GlobalRef& other) { return *this = T(other); }
};

// A kernel's pointer parameter `T* name`, rewritten by the test into
// `emulation::Global<T> name`: each element read or assigned through it is
// checked. Reads through a pointer to const give the value itself.
template <typename T>
struct Global {
  T* p = nullptr;
  Global(T* pointer) : p(pointer) {}  // NOLINT: a parameter's conversion
  Global(std::nullptr_t) {}           // NOLINT
  template <typename U = T>
  std::enable_if_t<std::is_const_v<U>, T> operator[](int64_t i) const {
    GlobalAccess(p + i, false);
    return p[i];
  }
  template <typename U = T>
  std::enable_if_t<!std::is_const_v<U>, GlobalRef<T>> operator[](
      int64_t i) const {
    return {p + i};
  }
  auto operator*() const { return (*this)[0]; }
  bool operator==(std::nullptr_t) const { return p == nullptr; }
  bool operator!=(std::nullptr_t) const { return p != nullptr; }
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
// EmulatedLaunch("kernel", kernel, grid, threads, args...). The copies
// enqueued before it run first (stream order).
namespace emulation {
inline void RunStream();
}
template <typename... Params, typename... Args>
cudaError_t EmulatedLaunch(const char* name, void (*kernel)(Params...),
                           int grid, int threads, Args... args) {
  if (grid <= 0 || threads <= 0 || threads % 32 != 0 || threads > 1024)
    return cudaErrorInvalidValue;
  emulation::RunStream();
  emulation::Scheduler& s = emulation::TheScheduler();
  ++s.launch;
  s.kernel = name;
  gridDim.x = grid;
  blockDim.x = threads;
  auto body = [&] { kernel(args...); };
  emulation::RunGrid(
      grid, threads, [](void* f) { (*static_cast<decltype(body)*>(f))(); },
      &body);
  s.current = nullptr;
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

// An async copy is run when the stream gets to it: at the next kernel
// launch or synchronization, not when it is enqueued. So a host buffer
// freed before then is read after its free (AddressSanitizer reports a
// heap-use-after-free), and one changed before then gives the copy its new
// contents, as on a device. All streams are one stream here.
namespace emulation {
struct PendingCopy {
  void* dst;
  const void* src;
  size_t bytes;
};
inline std::vector<PendingCopy>& PendingCopies() {
  static std::vector<PendingCopy> pending;
  return pending;
}
inline void RunStream() {
  std::vector<PendingCopy>& pending = PendingCopies();
  for (const PendingCopy& c : pending) std::memcpy(c.dst, c.src, c.bytes);
  pending.clear();
}
}  // namespace emulation
inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes,
                                   cudaMemcpyKind, cudaStream_t) {
  emulation::PendingCopies().push_back({dst, src, bytes});
  return cudaSuccess;
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t) {
  emulation::RunStream();
  return cudaSuccess;
}
inline cudaError_t cudaDeviceSynchronize() {
  emulation::RunStream();
  return cudaSuccess;
}
inline const char* cudaGetErrorString(cudaError_t) { return "emulated error"; }

#endif  // MONOLITH_OPS_TESTS_GPU_EMULATION_CUDA_RUNTIME_H_
