// CPU implementation of the framework-free clipping core (see clip_core.h).
//
// The inner loops are written once and compiled twice: for the baseline ISA
// and for AVX2, picked at run time. Both give bitwise the same results: every
// accumulator is added to in a fixed order and floating-point contraction is
// off for this file (see setup.py / BUILD), so FMA never changes a rounding.
#include "cc/kernels/clip_core.h"

#include <algorithm>
#include <limits>
#include <vector>

#include "Eigen/Core"

namespace monolith_ops {
namespace {

// Element type -> the type it is squared and scaled in.
template <typename T>
struct Compute {
  using type = float;
};
template <>
struct Compute<double> {
  using type = double;
};

// Independent accumulators per segment: enough for two AVX2 registers of
// doubles per float vector and for the adder latency.
constexpr int kLanes = 16;

template <typename T>
inline __attribute__((always_inline)) double SumSqImpl(const T* x, int64_t n) {
  double acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) {
      const double v = static_cast<double>(
          static_cast<typename Compute<T>::type>(x[i + j]));
      acc[j] += v * v;
    }
  }
  for (int j = 0; i < n; ++i, ++j) {
    const double v =
        static_cast<double>(static_cast<typename Compute<T>::type>(x[i]));
    acc[j] += v * v;
  }
  for (int width = kLanes / 2; width > 0; width /= 2) {
    for (int j = 0; j < width; ++j) acc[j] += acc[j + width];
  }
  return acc[0];
}

template <typename T, typename S>
inline __attribute__((always_inline)) void ScaleImpl(const T* in, T* out,
                                                     int64_t n, S scale) {
  for (int64_t i = 0; i < n; ++i) {
    out[i] = static_cast<T>(static_cast<S>(in[i]) * scale);
  }
}

template <typename T>
double SumSqBase(const T* x, int64_t n) {
  return SumSqImpl(x, n);
}
template <typename T>
__attribute__((target("avx2,f16c"))) double SumSqAvx2(const T* x, int64_t n) {
  return SumSqImpl(x, n);
}
template <typename T, typename S>
void ScaleBase(const T* in, T* out, int64_t n, S scale) {
  ScaleImpl(in, out, n, scale);
}
template <typename T, typename S>
__attribute__((target("avx2,f16c"))) void ScaleAvx2(const T* in, T* out,
                                                    int64_t n, S scale) {
  ScaleImpl(in, out, n, scale);
}

bool HasAvx2() {
  static const bool has = __builtin_cpu_supports("avx2") &&
                          __builtin_cpu_supports("f16c");
  return has;
}

// Element offsets of each tensor in the concatenated list: offsets[i] is the
// first global element of tensor i, offsets[count] the total.
std::vector<int64_t> Offsets(const int64_t* sizes, int64_t count) {
  std::vector<int64_t> offsets(count + 1);
  offsets[0] = 0;
  for (int64_t i = 0; i < count; ++i) offsets[i + 1] = offsets[i] + sizes[i];
  return offsets;
}

// Calls fn(tensor, first_element, length) for each piece of the global range
// [begin, end), in order.
template <typename Fn>
void ForEachSegment(const std::vector<int64_t>& offsets, int64_t begin,
                    int64_t end, Fn fn) {
  int64_t i = std::upper_bound(offsets.begin(), offsets.end(), begin) -
              offsets.begin() - 1;
  while (begin < end) {
    const int64_t stop = std::min(end, offsets[i + 1]);
    if (stop > begin) fn(i, begin - offsets[i], stop - begin);
    begin = stop;
    ++i;
  }
}

int64_t NumBlocks(int64_t total) {
  return (total + kReduceBlock - 1) / kReduceBlock;
}

// Runs fn(tensor, first_element, length) over every element of the list,
// block by block, in parallel.
template <typename Fn>
void ParallelOverElements(const int64_t* sizes, int64_t count,
                          const ParallelFor& parallel_for, Fn fn) {
  const std::vector<int64_t> offsets = Offsets(sizes, count);
  const int64_t total = offsets[count];
  parallel_for(NumBlocks(total), kReduceBlock * 2,
               [&](int64_t first, int64_t last) {
                 ForEachSegment(offsets, first * kReduceBlock,
                                std::min(total, last * kReduceBlock), fn);
               });
}

}  // namespace

void SerialFor(int64_t n, int64_t, const std::function<void(int64_t, int64_t)>& fn) {
  if (n > 0) fn(0, n);
}

template <typename T>
double SumOfSquares(const T* const* inputs, const int64_t* sizes, int64_t count,
                    const ParallelFor& parallel_for) {
  const std::vector<int64_t> offsets = Offsets(sizes, count);
  const int64_t total = offsets[count];
  std::vector<double> partials(NumBlocks(total), 0.0);
  const bool avx2 = HasAvx2();
  parallel_for(
      static_cast<int64_t>(partials.size()), kReduceBlock * 2,
      [&](int64_t first, int64_t last) {
        for (int64_t b = first; b < last; ++b) {
          double block = 0.0;
          ForEachSegment(offsets, b * kReduceBlock,
                         std::min(total, (b + 1) * kReduceBlock),
                         [&](int64_t t, int64_t start, int64_t len) {
                           const T* x = inputs[t] + start;
                           block += avx2 ? SumSqAvx2(x, len) : SumSqBase(x, len);
                         });
          partials[b] = block;
        }
      });
  double sum = 0.0;
  for (double p : partials) sum += p;
  return sum;
}

template <typename T, typename S>
void Scale(const T* const* inputs, T* const* outputs, const int64_t* sizes,
           int64_t count, S scale, const ParallelFor& parallel_for) {
  const bool avx2 = HasAvx2();
  ParallelOverElements(sizes, count, parallel_for,
                       [&](int64_t t, int64_t start, int64_t len) {
                         const T* in = inputs[t] + start;
                         T* out = outputs[t] + start;
                         if (avx2) {
                           ScaleAvx2(in, out, len, scale);
                         } else {
                           ScaleBase(in, out, len, scale);
                         }
                       });
}

template <typename T>
void FillNaN(T* const* outputs, const int64_t* sizes, int64_t count,
             const ParallelFor& parallel_for) {
  ParallelOverElements(sizes, count, parallel_for,
                       [&](int64_t t, int64_t start, int64_t len) {
                         std::fill_n(outputs[t] + start, len,
                                     std::numeric_limits<T>::quiet_NaN());
                       });
}

#define MONOLITH_OPS_INSTANTIATE(T, S)                                      \
  template double SumOfSquares<T>(const T* const*, const int64_t*, int64_t, \
                                  const ParallelFor&);                      \
  template void Scale<T, S>(const T* const*, T* const*, const int64_t*,     \
                            int64_t, S, const ParallelFor&);                \
  template void FillNaN<T>(T* const*, const int64_t*, int64_t,              \
                           const ParallelFor&);

MONOLITH_OPS_INSTANTIATE(float, float)
MONOLITH_OPS_INSTANTIATE(double, double)
MONOLITH_OPS_INSTANTIATE(Eigen::half, float)
MONOLITH_OPS_INSTANTIATE(Eigen::bfloat16, float)
#undef MONOLITH_OPS_INSTANTIATE

}  // namespace monolith_ops
