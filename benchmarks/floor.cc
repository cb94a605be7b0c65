// Copyright 2026 The monolith_ops Authors.
// SPDX-License-Identifier: Apache-2.0
//
// The compiled floor of the benchmark: simple vector loops over a buffer of n
// floats, on a given number of threads of a pool started once (the calling
// thread is one of them), as fast as this compiler makes them. A plain C
// interface for ctypes, which releases the GIL around each call.
//
//   floor_new(n, threads) -> handle  a source and an output buffer of n
//                                    floats, 64-byte aligned as TensorFlow's
//                                    CPU allocator aligns tensors
//   floor_run(handle, loop, threads) one pass; returns its seconds, from
//                                    handing the work to the threads to the
//                                    end of the last one
//   floor_result(handle)             the last norm: no loop is dead code
//   floor_free(handle)
//
// Loops: 0 "norm" reads the buffer once (sum of squares in float lanes).
// The others read it once for the norm, then read it again and write each
// element times a factor, as a clip that scales must (the norm is known only
// after the whole first pass): 1 "clip" into the output buffer, 2
// "clip_stream" the same with streaming stores (past the cache), 3
// "clip_inplace" into the buffer it reads (a buffer of its own, scaled by 0.5
// and 2 in turn so that its values stay put).
//
// The optimizer loops read the buffer (the gradients) once for the norm, as
// a clip by global norm must, then update a variable and its slots from the
// gradients times the clip scale, each element read once and the variable
// and slots written once, as the multi-tensor apply must move them: 4 "sgd"
// (the variable), 5 "adagrad" (the variable and an accumulator), 6 "adam"
// (the variable, m and v). Their buffers are allocated on first use, so the
// clip loops alone allocate none.
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__SSE__)
#include <immintrin.h>
#endif

namespace {

#if defined(__AVX512F__)
constexpr int kVectorBytes = 64;
#elif defined(__AVX__)
constexpr int kVectorBytes = 32;
#else
constexpr int kVectorBytes = 16;
#endif
typedef float f32v
    __attribute__((vector_size(kVectorBytes), aligned(kVectorBytes)));
constexpr int64_t kLanes = kVectorBytes / 4;
constexpr int64_t kUnroll = 8;  // independent accumulators
constexpr int64_t kLine = 16;   // floats per 64-byte line

using Clock = std::chrono::steady_clock;

// threads - 1 workers that spin briefly after each task, then sleep.
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
      generation_.fetch_add(1);
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }
  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Runs task(i, used) for i in [0, used), i = 0 on the calling thread.
  template <typename Task>
  void Run(int used, const Task& task) {
    if (used <= 1) return task(0, 1);
    call_ = [](const void* t, int i, int u) {
      (*static_cast<const Task*>(t))(i, u);
    };
    task_ = &task;
    used_ = used;
    pending_.store(used - 1);
    {
      std::lock_guard<std::mutex> lock(mu_);
      generation_.fetch_add(1);
    }
    cv_.notify_all();
    task(0, used);
    while (pending_.load() != 0) std::this_thread::yield();
  }

 private:
  void Serve(int index) {
    uint64_t seen = 0;
    for (;;) {
      uint64_t now;
      const auto until = Clock::now() + std::chrono::microseconds(300);
      while ((now = generation_.load()) == seen && Clock::now() < until) {
      }
      if (now == seen) {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return generation_.load() != seen; });
        now = generation_.load();
      }
      seen = now;
      if (stop_) return;
      if (index < used_) {
        call_(task_, index, used_);
        pending_.fetch_sub(1);
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

float SumSquares(const float* p, int64_t n) {
  f32v acc[kUnroll] = {};
  int64_t i = 0;
  for (; i + kUnroll * kLanes <= n; i += kUnroll * kLanes) {
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

void Scale(const float* src, float* dst, int64_t n, float factor) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    *reinterpret_cast<f32v*>(dst + i) = Load(src + i) * factor;
  for (; i < n; ++i) dst[i] = src[i] * factor;
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

float* Allocate(int64_t n) {
  void* p = nullptr;
  // Room for one vector past the end: a part shorter than a vector is
  // still read a whole vector at a time.
  const size_t bytes = (static_cast<size_t>(n) + kLine) * sizeof(float);
  // On huge pages where the kernel gives them: fewer TLB misses, the
  // fastest memory a loop can stream (the library advises its large
  // outputs the same way, and TensorFlow's allocator may hand it such pages).
  constexpr size_t kHugePage = size_t{2} << 20;
  if (posix_memalign(&p, bytes >= kHugePage ? kHugePage : 64, bytes) != 0)
    return nullptr;
#ifdef MADV_HUGEPAGE
  if (bytes >= kHugePage) madvise(p, bytes, MADV_HUGEPAGE);
#endif
  return static_cast<float*>(p);
}

struct alignas(64) Slot {
  float value = 0.0f;
};

// The optimizer loops' updates of [0, n) with the gradients times `scale`,
// as TF's kernels compute them (Adam's lr_t folds in the bias corrections).
void Sgd(const float* __restrict g, float* __restrict var, int64_t n,
         float scale) {
  const float lr = 1e-3f * scale;
  for (int64_t i = 0; i < n; ++i) var[i] -= lr * g[i];
}

void Adagrad(const float* __restrict g, float* __restrict var,
             float* __restrict acc, int64_t n, float scale) {
  const float lr = 1e-3f;
  for (int64_t i = 0; i < n; ++i) {
    const float x = g[i] * scale;
    const float a = acc[i] + x * x;
    acc[i] = a;
    var[i] -= lr * x / std::sqrt(a);
  }
}

void Adam(const float* __restrict g, float* __restrict var, float* __restrict m,
          float* __restrict v, int64_t n, float scale) {
  const float lr_t = 1e-3f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
  for (int64_t i = 0; i < n; ++i) {
    const float x = g[i] * scale;
    const float mi = m[i] + (x - m[i]) * (1.0f - b1);
    const float vi = v[i] + (x * x - v[i]) * (1.0f - b2);
    m[i] = mi;
    v[i] = vi;
    var[i] -= lr_t * mi / (std::sqrt(vi) + eps);
  }
}

struct Floor {
  Floor(int64_t size, int threads) : n(size), pool(threads), slots(threads) {}
  ~Floor() {
    std::free(src);
    std::free(dst);
    std::free(inplace);
    for (float* p : state) std::free(p);
  }
  int64_t n;
  float* src = nullptr;
  float* dst = nullptr;
  float* inplace = nullptr;
  float* state[3] = {nullptr, nullptr, nullptr};  // variable, slot 1, slot 2
  bool halve = true;
  Pool pool;
  std::vector<Slot> slots;
  double result = 0.0;
};

// [begin, end) of part `index` of `used`, in whole 64-byte lines.
void Part(int64_t n, int index, int used, int64_t* begin, int64_t* end) {
  const int64_t part = ((n + used - 1) / used + kLine - 1) / kLine * kLine;
  *begin = std::min(n, part * index);
  *end = std::min(n, *begin + part);
}

}  // namespace

extern "C" {

void* floor_new(int64_t n, int threads) {
  if (n < 1 || threads < 1) return nullptr;
  Floor* f = new Floor(n, threads);
  f->src = Allocate(n);
  f->dst = Allocate(n);
  f->inplace = Allocate(n);
  if (f->src == nullptr || f->dst == nullptr || f->inplace == nullptr) {
    delete f;
    return nullptr;
  }
  uint32_t state = 12345u;  // values in [-1, 1)
  for (int64_t i = 0; i < n + kLine; ++i) {
    state = state * 1664525u + 1013904223u;
    f->src[i] = static_cast<float>(state >> 8) / 8388608.0f - 1.0f;
    f->dst[i] = 0.0f;
    f->inplace[i] = f->src[i];
  }
  return f;
}

void floor_free(void* handle) { delete static_cast<Floor*>(handle); }

double floor_result(void* handle) {
  return static_cast<Floor*>(handle)->result;
}

// The seconds of one pass, or -1 for an unknown loop or thread count.
double floor_run(void* handle, int loop, int threads) {
  Floor* f = static_cast<Floor*>(handle);
  if (threads < 1 || threads > f->pool.size() || loop < 0 || loop > 6)
    return -1.0;
  if (loop >= 4) {  // the variable and slots, allocated before the clock
    for (int i = 0; i < loop - 3; ++i) {
      if (f->state[i] != nullptr) continue;
      f->state[i] = Allocate(f->n);
      if (f->state[i] == nullptr) return -1.0;
      for (int64_t j = 0; j < f->n + kLine; ++j)
        f->state[i][j] = i == 0 ? f->src[j] : 0.1f;  // Adagrad's initial value
    }
  }
  float* in = loop == 3 ? f->inplace : f->src;
  float* out = loop == 3 ? f->inplace : f->dst;
  const auto start = Clock::now();
  f->pool.Run(threads, [f, in](int index, int used) {
    int64_t begin, end;
    Part(f->n, index, used, &begin, &end);
    f->slots[index].value = SumSquares(in + begin, end - begin);
  });
  double sum = 0.0;
  for (int i = 0; i < threads; ++i) sum += f->slots[i].value;
  const float norm = static_cast<float>(std::sqrt(sum));
  if (loop >= 4) {
    const float scale = 1.0f / (norm + 1.0f);
    f->pool.Run(threads, [f, scale, loop](int index, int used) {
      int64_t begin, end;
      Part(f->n, index, used, &begin, &end);
      const float* g = f->src + begin;
      float* var = f->state[0] + begin;
      if (loop == 4) Sgd(g, var, end - begin, scale);
      if (loop == 5) Adagrad(g, var, f->state[1] + begin, end - begin, scale);
      if (loop == 6)
        Adam(g, var, f->state[1] + begin, f->state[2] + begin, end - begin,
             scale);
    });
  } else if (loop != 0) {
    float factor = 1.0f / (norm + 1.0f);
    if (loop == 3) {
      factor = f->halve ? 0.5f : 2.0f;
      f->halve = !f->halve;
    }
    f->pool.Run(threads, [f, in, out, factor, loop](int index, int used) {
      int64_t begin, end;
      Part(f->n, index, used, &begin, &end);
      (loop == 2 ? ScaleStreaming : Scale)(in + begin, out + begin, end - begin,
                                           factor);
    });
  }
  const auto stop = Clock::now();
  f->result = norm + (loop >= 4   ? f->state[0][f->n / 2]
                      : loop != 0 ? out[f->n / 2]
                                  : 0.0f);
  return std::chrono::duration<double>(stop - start).count();
}

}  // extern "C"
