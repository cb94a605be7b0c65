// Copyright 2026 The monolith_ops Authors.
// SPDX-License-Identifier: Apache-2.0
//
// The machine's floor for the benchmark: the fastest loops this compiler
// makes of reading, and of reading and writing, a buffer of n floats, on a
// given number of threads of a persistent pool (the calling thread is one).
// The loops run over buffers of two kinds of memory (Memory below), side by
// side: as TensorFlow's CPU allocator gets its tensors, and in huge pages.
// A plain C interface for ctypes, which releases the GIL around each call.
//
//   floor_new(n, threads) -> handle    a source, an output and an in-place
//                                      buffer of n floats in each memory
//   floor_run(handle, loop, threads, memory)
//                                      one pass; returns its seconds, timed
//                                      from the dispatch to the last thread's
//                                      end (thread start-up is not in it)
//   floor_sink(handle)                 what the loops computed, so that no
//                                      loop is dead code
//   floor_free(handle)
//
// Loops: 0 nothing (the pool's dispatch alone), 1 max of the floats (read),
// 2 sum of squares in float lanes (read), 3 sum of squares widened to double
// (read; for reference, not a floor), 4 scale into the output buffer (read +
// write), 5 the same with streaming stores, 6 scale in place (read + write).
// Memory: 0 tensor pages, 1 huge pages.
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define FLOOR_PAUSE() _mm_pause()
#else
#define FLOOR_PAUSE() std::this_thread::yield()
#endif

namespace {

// Vectors of the widest width this build has: 512, 256 or 128 bits.
#if defined(__AVX512F__)
constexpr int kVectorBytes = 64;
#elif defined(__AVX__)
constexpr int kVectorBytes = 32;
#else
constexpr int kVectorBytes = 16;
#endif
typedef float f32v
    __attribute__((vector_size(kVectorBytes), aligned(kVectorBytes)));
constexpr int64_t kLanes = kVectorBytes / 4;  // floats per vector
constexpr int64_t kUnroll = 8;                // independent accumulators
constexpr int64_t kBlock = kLanes * kUnroll;
// Parts given to threads start on a 64-byte line (and a vector).
constexpr int64_t kLine = 16;
constexpr auto kSpin = std::chrono::microseconds(300);

using Clock = std::chrono::steady_clock;

// A pool of threads - 1 workers that spin for kSpin after each task, then
// sleep on a condition variable until the next.
class Pool {
 public:
  explicit Pool(int threads) {
    for (int i = 1; i < threads; ++i)
      workers_.emplace_back([this, i] { Serve(i); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
      generation_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }
  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Runs task(i, used) for i in [0, used), i = 0 on the calling thread.
  template <typename Task>
  void Run(int used, const Task& task) {
    if (used <= 1) {
      task(0, 1);
      return;
    }
    call_ = [](const void* t, int i, int u) {
      (*static_cast<const Task*>(t))(i, u);
    };
    task_ = &task;
    used_ = used;
    pending_.store(used - 1, std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> lock(mu_);
      generation_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    task(0, used);
    while (pending_.load(std::memory_order_acquire) != 0) FLOOR_PAUSE();
  }

 private:
  void Serve(int index) {
    uint64_t seen = 0;
    for (;;) {
      uint64_t now = generation_.load(std::memory_order_acquire);
      if (now == seen) {
        const auto until = Clock::now() + kSpin;
        int spins = 0;
        while ((now = generation_.load(std::memory_order_acquire)) == seen) {
          FLOOR_PAUSE();
          if (++spins % 64 == 0 && Clock::now() > until) {
            std::unique_lock<std::mutex> lock(mu_);
            cv_.wait(lock, [&] {
              return generation_.load(std::memory_order_acquire) != seen;
            });
          }
        }
      }
      seen = now;
      if (stop_) return;
      if (index < used_) {
        call_(task_, index, used_);
        pending_.fetch_sub(1, std::memory_order_acq_rel);
      }
    }
  }

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  bool stop_ = false;
  void (*call_)(const void*, int, int) = nullptr;
  const void* task_ = nullptr;
  int used_ = 0;
};

inline f32v Load(const float* p) { return *reinterpret_cast<const f32v*>(p); }

float MaxOf(const float* p, int64_t n) {
  f32v acc[kUnroll];
  for (auto& a : acc) a = Load(p) * 0.0f - 1e30f;
  int64_t i = 0;
  for (; i + kBlock <= n; i += kBlock) {
    for (int64_t u = 0; u < kUnroll; ++u) {
      const f32v x = Load(p + i + u * kLanes);
      acc[u] = acc[u] > x ? acc[u] : x;
    }
  }
  float m = -1e30f;
  for (; i < n; ++i) m = std::max(m, p[i]);
  for (auto& a : acc)
    for (int64_t l = 0; l < kLanes; ++l) m = std::max(m, a[l]);
  return m;
}

float SumSquaresF32(const float* p, int64_t n) {
  f32v acc[kUnroll] = {};
  int64_t i = 0;
  for (; i + kBlock <= n; i += kBlock) {
    for (int64_t u = 0; u < kUnroll; ++u) {
      const f32v x = Load(p + i + u * kLanes);
      acc[u] += x * x;
    }
  }
  float s = 0.0f;
  for (; i < n; ++i) s += p[i] * p[i];
  for (auto& a : acc)
    for (int64_t l = 0; l < kLanes; ++l) s += a[l];
  return s;
}

// (Intrinsics: gcc's vector extensions widen floats in 128-bit pieces.)
double SumSquaresF64(const float* p, int64_t n) {
  int64_t i = 0;
  double s = 0.0;
#if defined(__AVX512F__)
  __m512d acc[kUnroll];
  for (auto& a : acc) a = _mm512_setzero_pd();
  for (; i + 8 * kUnroll <= n; i += 8 * kUnroll) {
    for (int64_t u = 0; u < kUnroll; ++u) {
      const __m512d x = _mm512_cvtps_pd(_mm256_loadu_ps(p + i + 8 * u));
      acc[u] = _mm512_fmadd_pd(x, x, acc[u]);
    }
  }
  alignas(64) double lanes[8];
  for (auto& a : acc) {
    _mm512_store_pd(lanes, a);
    for (double l : lanes) s += l;
  }
#elif defined(__AVX__)
  __m256d acc[kUnroll];
  for (auto& a : acc) a = _mm256_setzero_pd();
  for (; i + 4 * kUnroll <= n; i += 4 * kUnroll) {
    for (int64_t u = 0; u < kUnroll; ++u) {
      const __m256d x = _mm256_cvtps_pd(_mm_loadu_ps(p + i + 4 * u));
      acc[u] = _mm256_add_pd(acc[u], _mm256_mul_pd(x, x));
    }
  }
  alignas(32) double lanes[4];
  for (auto& a : acc) {
    _mm256_store_pd(lanes, a);
    for (double l : lanes) s += l;
  }
#else
  double acc[kBlock] = {};
  for (; i + kBlock <= n; i += kBlock) {
    for (int64_t l = 0; l < kBlock; ++l)
      acc[l] += static_cast<double>(p[i + l]) * p[i + l];
  }
  for (double a : acc) s += a;
#endif
  for (; i < n; ++i) s += static_cast<double>(p[i]) * p[i];
  return s;
}

void Scale(const float* src, float* dst, int64_t n, float factor) {
  for (int64_t i = 0; i + kLanes <= n; i += kLanes)
    *reinterpret_cast<f32v*>(dst + i) = Load(src + i) * factor;
  for (int64_t i = n - n % kLanes; i < n; ++i) dst[i] = src[i] * factor;
}

void ScaleStreaming(const float* src, float* dst, int64_t n, float factor) {
  int64_t i = 0;
#if defined(__AVX512F__)
  const __m512 f = _mm512_set1_ps(factor);
  for (; i + 16 <= n; i += 16)
    _mm512_stream_ps(dst + i, _mm512_mul_ps(_mm512_load_ps(src + i), f));
#elif defined(__AVX__)
  const __m256 f = _mm256_set1_ps(factor);
  for (; i + 8 <= n; i += 8)
    _mm256_stream_ps(dst + i, _mm256_mul_ps(_mm256_load_ps(src + i), f));
#elif defined(__SSE__)
  const __m128 f = _mm_set1_ps(factor);
  for (; i + 4 <= n; i += 4)
    _mm_stream_ps(dst + i, _mm_mul_ps(_mm_load_ps(src + i), f));
#endif
  for (; i < n; ++i) dst[i] = src[i] * factor;
#if defined(__SSE__)
  _mm_sfence();
#endif
}

// The kinds of memory the buffers lie in:
//   kTensorPages  as TensorFlow's CPU allocator gets its tensors: 64-byte
//                 aligned from the C library (posix_memalign), no advice: the
//                 system's default pages (huge ones only where transparent
//                 huge pages are "always")
//   kHugePages    a mapping of their own advised MADV_HUGEPAGE (and unmapped
//                 when freed, so that no advice is left on memory that malloc
//                 hands out again)
enum Memory { kTensorPages = 0, kHugePages = 1, kMemoryKinds = 2 };

// The bytes of a buffer of n floats: whole pages, with room for one vector
// more (a loop's first load may reach past a thread's part when the part is
// shorter than a vector).
size_t MappedBytes(int64_t n) {
  return (static_cast<size_t>(n + 16) * sizeof(float) + 4095) / 4096 * 4096;
}

float* AllocateFloats(int64_t n, int memory) {
  void* p = nullptr;
  if (memory == kTensorPages) {
    if (posix_memalign(&p, 64, MappedBytes(n)) != 0) return nullptr;
    return static_cast<float*>(p);
  }
  p = mmap(nullptr, MappedBytes(n), PROT_READ | PROT_WRITE,
           MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
#ifdef MADV_HUGEPAGE
  madvise(p, MappedBytes(n), MADV_HUGEPAGE);
#endif
  return static_cast<float*>(p);
}

void FreeFloats(float* p, int64_t n, int memory) {
  if (p == nullptr) return;
  if (memory == kTensorPages) {
    std::free(p);
  } else {
    munmap(p, MappedBytes(n));
  }
}

// The buffers of one kind of memory.
struct Buffers {
  float* src = nullptr;
  float* dst = nullptr;
  float* inplace = nullptr;
  bool halve = true;  // scale in place by 0.5 and 2 in turn: values stay put
};

// Both kinds of memory share one pool: two pools would spin against each
// other on the same cores.
struct Floor {
  int64_t n = 0;
  Buffers memory[kMemoryKinds];
  Pool pool;
  double sink = 0.0;
  struct alignas(64) Slot {
    double value = 0.0;
  };
  std::vector<Slot> slots;

  Floor(int64_t size, int threads) : n(size), pool(threads), slots(threads) {}
  ~Floor() {
    for (int m = 0; m < kMemoryKinds; ++m) {
      FreeFloats(memory[m].src, n, m);
      FreeFloats(memory[m].dst, n, m);
      FreeFloats(memory[m].inplace, n, m);
    }
  }
};

}  // namespace

extern "C" {

void* floor_new(int64_t n, int threads) {
  if (n < 1 || threads < 1) return nullptr;
  Floor* f = new Floor(n, threads);
  for (int m = 0; m < kMemoryKinds; ++m) {
    Buffers& b = f->memory[m];
    b.src = AllocateFloats(n, m);
    b.dst = AllocateFloats(n, m);
    b.inplace = AllocateFloats(n, m);
    if (b.src == nullptr || b.dst == nullptr || b.inplace == nullptr) {
      delete f;
      return nullptr;
    }
    if (m == 0) {
      uint32_t state = 12345u;  // values in [-1, 1), never zero
      for (int64_t i = 0; i < n; ++i) {
        state = state * 1664525u + 1013904223u;
        b.src[i] = (static_cast<float>(state >> 8) + 0.5f) / 8388608.0f - 1.0f;
      }
    } else {  // the same values in every memory
      std::memcpy(b.src, f->memory[0].src, n * sizeof(float));
    }
    std::memcpy(b.inplace, b.src, n * sizeof(float));
    std::memset(b.dst, 0, n * sizeof(float));
  }
  return f;
}

void floor_free(void* handle) { delete static_cast<Floor*>(handle); }

int floor_pool_size(void* handle) {
  return static_cast<Floor*>(handle)->pool.size();
}

double floor_sink(void* handle) { return static_cast<Floor*>(handle)->sink; }

// Returns the seconds of one pass, or -1 for an unknown loop, thread count or
// memory.
double floor_run(void* handle, int loop, int threads, int memory) {
  Floor* f = static_cast<Floor*>(handle);
  if (threads < 1 || threads > f->pool.size() || loop < 0 || loop > 6 ||
      memory < 0 || memory >= kMemoryKinds)
    return -1.0;
  Buffers& b = f->memory[memory];
  const float factor = b.halve ? 0.5f : 2.0f;
  if (loop == 6) b.halve = !b.halve;
  auto task = [f, &b, loop, factor](int index, int used) {
    // Equal parts, each a whole number of 64-byte lines.
    const int64_t part = ((f->n + used - 1) / used + kLine - 1) / kLine * kLine;
    const int64_t begin = std::min<int64_t>(f->n, part * index);
    const int64_t size = std::min<int64_t>(f->n, begin + part) - begin;
    double value = 0.0;
    switch (loop) {
      case 1:
        value = MaxOf(b.src + begin, size);
        break;
      case 2:
        value = SumSquaresF32(b.src + begin, size);
        break;
      case 3:
        value = SumSquaresF64(b.src + begin, size);
        break;
      case 4:
        Scale(b.src + begin, b.dst + begin, size, factor);
        break;
      case 5:
        ScaleStreaming(b.src + begin, b.dst + begin, size, factor);
        break;
      case 6:
        Scale(b.inplace + begin, b.inplace + begin, size, factor);
        break;
      default:
        break;
    }
    f->slots[index].value = value;
  };
  const auto start = Clock::now();
  f->pool.Run(threads, task);
  const auto end = Clock::now();
  for (int i = 0; i < threads; ++i) f->sink += f->slots[i].value;
  if (loop >= 4 && loop <= 6) {
    const float* out = loop == 6 ? b.inplace : b.dst;
    f->sink += out[f->n / 2];
  }
  return std::chrono::duration<double>(end - start).count();
}

}  // extern "C"
