// Copyright 2026 The monolith_ops Authors.
// SPDX-License-Identifier: Apache-2.0
// Prints, as hex, what the framework-free CPU core computes for a fixed set of
// inputs: the sum of squares and a hash of the scaled outputs, for every dtype,
// on the single-stream path (lists up to 2^18 elements) and the interleaved
// one (larger lists). Builds of the core for different CPUs (the x86 AVX2
// path, the baseline loops forced with -DMONOLITH_OPS_PORTABLE, an aarch64
// build run under qemu) must print bitwise the same lines; scripts/ci_arch.sh
// compares them. It also exits non-zero if a sum strays from a plain
// long-double sum of the same squares by more than rounding can explain, so a
// core that is wrong the same way everywhere still fails.
//
// No TensorFlow: only the core and Eigen's half and bfloat16 types.
#include "cc/kernels/clip_core.h"

#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "Eigen/Core"

namespace {

using monolith_ops::ComputeType;
using monolith_ops::SerialFor;

// A fixed pseudo-random sequence (splitmix64), the same on every machine.
struct Rng {
  uint64_t state;
  uint64_t Next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // A value in [-scale, scale) with a spread of magnitudes.
  double Value(double scale) {
    const double unit = static_cast<double>(Next() >> 11) * 0x1.0p-53;
    const double magnitude = std::ldexp(1.0, -static_cast<int>(Next() % 12));
    return (2.0 * unit - 1.0) * scale * magnitude;
  }
};

uint64_t Bits(double x) {
  uint64_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  return bits;
}

// FNV-1a over raw bytes.
uint64_t Hash(const void* data, size_t bytes, uint64_t h) {
  const unsigned char* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < bytes; ++i) h = (h ^ p[i]) * 0x100000001b3ULL;
  return h;
}

int failures = 0;

// One case: `sizes` tensors of T filled from seed `seed`.
template <typename T>
void RunCase(const char* dtype, const char* name,
             const std::vector<int64_t>& sizes, uint64_t seed) {
  using S = typename ComputeType<T>::type;
  Rng rng{seed};
  std::vector<std::vector<T>> data(sizes.size());
  std::vector<const T*> inputs;
  long double reference = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    data[i].resize(sizes[i]);
    for (T& x : data[i]) {
      x = static_cast<T>(rng.Value(4.0));
      const long double v = static_cast<double>(static_cast<S>(x));
      reference += v * v;
    }
    inputs.push_back(data[i].empty() ? nullptr : data[i].data());
  }
  const int64_t count = static_cast<int64_t>(sizes.size());
  const double sum = monolith_ops::SumOfSquares<T>(inputs.data(), sizes.data(),
                                                   count, SerialFor);
  // Each of the n squares is exact in double for 16-bit and float inputs and
  // rounded for double ones; the additions round; n * 2^-52 bounds it all.
  int64_t total = 0;
  for (int64_t s : sizes) total += s;
  const long double tolerance =
      reference * (static_cast<long double>(total) + 2) * 0x1.0p-52L;
  if (std::fabs(static_cast<long double>(sum) - reference) > tolerance) {
    std::fprintf(stderr, "%s %s: sum %.17g, reference %.17Lg\n", dtype, name,
                 sum, reference);
    ++failures;
  }

  // Scale into separate outputs by clip_norm / norm, as a clip to 1 does.
  S scale = S(1);
  const monolith_ops::ClipAction action =
      monolith_ops::DecideClip<S>(static_cast<S>(std::sqrt(sum)), S(1), &scale);
  std::vector<std::vector<T>> out(sizes.size());
  std::vector<T*> outputs;
  for (size_t i = 0; i < sizes.size(); ++i) {
    out[i].resize(sizes[i]);
    outputs.push_back(out[i].empty() ? nullptr : out[i].data());
  }
  monolith_ops::Scale<T, S>(inputs.data(), outputs.data(), sizes.data(), count,
                            scale, SerialFor);
  uint64_t h = 0xcbf29ce484222325ULL;
  for (const std::vector<T>& o : out)
    h = Hash(o.data(), o.size() * sizeof(T), h);
  std::printf("%-8s %-10s n=%-8" PRId64 " sum=%016" PRIx64
              " action=%d scale=%016" PRIx64 " outputs=%016" PRIx64 "\n",
              dtype, name, total, Bits(sum), static_cast<int>(action),
              Bits(static_cast<double>(scale)), h);
}

template <typename T>
void RunAll(const char* dtype) {
  // Every tail length, a tensor per lane offset, empty tensors between.
  std::vector<int64_t> small;
  for (int64_t n = 0; n < 40; ++n) small.push_back(n);
  RunCase<T>(dtype, "small", small, 1);
  // One tensor just under and one over a reduction block.
  RunCase<T>(dtype, "blocks",
             {monolith_ops::kReduceBlock - 3, monolith_ops::kReduceBlock + 5},
             2);
  // Over 2^18 elements in all: the interleaved path, many blocks.
  RunCase<T>(dtype, "large", {1, 150001, 0, 131071, 7, 33333}, 3);
}

}  // namespace

int main() {
  RunAll<float>("float");
  RunAll<double>("double");
  RunAll<Eigen::half>("half");
  RunAll<Eigen::bfloat16>("bfloat16");
  if (failures != 0) {
    std::fprintf(stderr, "%d sums off their reference\n", failures);
    return 1;
  }
  return 0;
}
