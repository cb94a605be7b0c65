// Copyright 2026 The monolith_ops Authors.
// SPDX-License-Identifier: Apache-2.0
// Prints, as hex, what the framework-free CPU core computes for a fixed set of
// inputs: the sum of squares and a hash of the scaled outputs, for every dtype,
// on the single-stream path (lists up to 2^18 elements) and the interleaved
// one (larger lists). Builds of the core for different CPUs (the x86 AVX2
// and AVX-512 paths, the baseline loops forced with -DMONOLITH_OPS_PORTABLE,
// an aarch64 build run under qemu) must print bitwise the same lines;
// scripts/ci_arch.sh compares them. On x86, run without MONOLITH_OPS_ISA, it
// also computes every line again in child processes with MONOLITH_OPS_ISA set
// to avx512, avx2 and baseline, and fails unless all are bitwise the same.
// It exits non-zero if a sum strays from a plain long-double sum of the same
// squares by more than the error bound of clip_core.h, so a core that is
// wrong the same way everywhere still fails.
//
// No TensorFlow: only the core and Eigen's half and bfloat16 types.
#include "cc/core/clip_core.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "Eigen/Core"
#include "cc/tf/cpu_tuning.h"

namespace {

using monolith_ops::ComputeType;
using monolith_ops::SerialFor;

// The core's tuning as the TensorFlow kernels pass it: MONOLITH_OPS_ISA and
// MONOLITH_OPS_STREAM_MIN_BYTES, read once per process.
const monolith_ops::CpuTuning& Tuning() {
  return monolith_ops::CpuTuningFromEnvironment();
}

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
std::string lines;  // what main() prints

// The relative error bound of clip_core.h for n elements in `tensors`
// tensors: a rounding for each square of a double (the squares of the other
// types are exact), at most kReduceBlock / 16 + tensors additions in a lane
// of a block, 4 adding up the 16 lanes, one per block adding up the blocks.
long double Bound(bool exact_squares, int64_t n, int64_t tensors) {
  const int64_t blocks =
      (n + monolith_ops::kReduceBlock - 1) / monolith_ops::kReduceBlock;
  const int64_t roundings = (exact_squares ? 0 : 1) +
                            monolith_ops::kReduceBlock / 16 + tensors + 4 +
                            blocks;
  return static_cast<long double>(roundings) * 0x1.0p-53L * 1.01L;
}

// A ParallelFor that runs shards of 3 units each, last shard first: a
// different sharding and order from SerialFor, to show that results do not
// depend on them.
void ReversedShards(int64_t n, int64_t,
                    const std::function<void(int64_t, int64_t)>& fn) {
  for (int64_t end = n; end > 0; end -= 3)
    fn(std::max<int64_t>(0, end - 3), end);
}

// Checks ReducePerTensor on the list against per-tensor long-double sums of
// squares (within the bound for one tensor) and exact maxima, and that two
// shardings agree bitwise. Returns a hash of the per-tensor results.
template <typename T>
uint64_t CheckPerTensor(const char* dtype, const char* name,
                        const std::vector<const T*>& inputs,
                        const std::vector<int64_t>& sizes,
                        const std::vector<long double>& sums,
                        const std::vector<double>& maxima) {
  using monolith_ops::NormType;
  const int64_t count = static_cast<int64_t>(sizes.size());
  uint64_t h = 0xcbf29ce484222325ULL;
  for (NormType type : {NormType::kL2, NormType::kInf}) {
    std::vector<double> serial(count), reversed(count);
    monolith_ops::ReducePerTensor<T>(inputs.data(), sizes.data(), count, type,
                                     serial.data(), SerialFor, Tuning());
    monolith_ops::ReducePerTensor<T>(inputs.data(), sizes.data(), count, type,
                                     reversed.data(), ReversedShards, Tuning());
    for (int64_t i = 0; i < count; ++i) {
      bool ok = Bits(serial[i]) == Bits(reversed[i]);
      if (std::isnan(type == NormType::kL2 ? static_cast<double>(sums[i])
                                           : maxima[i])) {
        ok = ok && std::isnan(serial[i]);
      } else if (type == NormType::kL2) {
        const long double tolerance =
            sums[i] * Bound(!std::is_same<T, double>::value, sizes[i], 1);
        ok = ok && std::fabs(static_cast<long double>(serial[i]) - sums[i]) <=
                       tolerance;
      } else {
        ok = ok && serial[i] == maxima[i];
      }
      if (!ok) {
        std::fprintf(stderr,
                     "%s %s: tensor %lld, %s reduction %.17g (other sharding "
                     "%.17g), reference %.17Lg / max %.17g\n",
                     dtype, name, static_cast<long long>(i),
                     type == NormType::kL2 ? "l2" : "inf", serial[i],
                     reversed[i], sums[i], maxima[i]);
        ++failures;
      }
    }
    h = Hash(serial.data(), serial.size() * sizeof(double), h);
  }
  return h;
}

// Element values: value(rng, tensor).
using Fill = std::function<double(Rng&, size_t)>;
double Random4(Rng& rng, size_t) { return rng.Value(4.0); }

// One case: `sizes` tensors of T filled by `value` from seed `seed`.
template <typename T>
void RunCase(const char* dtype, const char* name,
             const std::vector<int64_t>& sizes, uint64_t seed,
             const Fill& value = Random4) {
  using S = typename ComputeType<T>::type;
  Rng rng{seed};
  std::vector<std::vector<T>> data(sizes.size());
  std::vector<const T*> inputs;
  long double reference = 0;
  std::vector<long double> sums(sizes.size(), 0);
  std::vector<double> maxima(sizes.size(), 0);
  for (size_t i = 0; i < sizes.size(); ++i) {
    data[i].resize(sizes[i]);
    for (T& x : data[i]) {
      x = static_cast<T>(value(rng, i));
      const long double v = static_cast<double>(static_cast<S>(x));
      reference += v * v;
      sums[i] += v * v;
      maxima[i] = monolith_ops::MaxOrNaN(maxima[i], std::fabs(v));
    }
    inputs.push_back(data[i].empty() ? nullptr : data[i].data());
  }
  const uint64_t per_tensor =
      CheckPerTensor<T>(dtype, name, inputs, sizes, sums, maxima);
  const int64_t count = static_cast<int64_t>(sizes.size());
  const double sum = monolith_ops::SumOfSquares<T>(inputs.data(), sizes.data(),
                                                   count, SerialFor, Tuning());
  int64_t total = 0;
  for (int64_t s : sizes) total += s;
  const long double tolerance =
      reference * Bound(!std::is_same<T, double>::value, total, count);
  const bool off = std::isnan(reference)
                       ? !std::isnan(sum)
                       : !(std::fabs(static_cast<long double>(sum) -
                                     reference) <= tolerance);
  if (off) {
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
                            scale, SerialFor, Tuning());
  uint64_t h = 0xcbf29ce484222325ULL;
  for (const std::vector<T>& o : out)
    h = Hash(o.data(), o.size() * sizeof(T), h);
  char line[256];
  std::snprintf(line, sizeof(line),
                "%-8s %-10s n=%-8" PRId64 " sum=%016" PRIx64
                " action=%d scale=%016" PRIx64 " outputs=%016" PRIx64
                " per_tensor=%016" PRIx64 "\n",
                dtype, name, total, Bits(sum), static_cast<int>(action),
                Bits(static_cast<double>(scale)), h, per_tensor);
  lines += line;
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
  // Tensors starting at every offset from a float lane row and a sub-block,
  // crossing sub-blocks and blocks.
  std::vector<int64_t> ragged;
  for (int64_t n = 1; n < 70; ++n) ragged.push_back(n);
  for (int64_t n : {255, 256, 257, 511, 513, 16383, 16385, 33}) {
    ragged.push_back(n);
  }
  RunCase<T>(dtype, "ragged", ragged, 4);
  RunCase<T>(dtype, "ragged-il", {300000, 5, 31, 33, 257, 16385, 1}, 5);
  // Every element the same: rounding errors that do not cancel.
  RunCase<T>(dtype, "equal", {100003, 7}, 6, [](Rng&, size_t) { return 0.1; });
  // Blocks of zeros, then a few small values.
  RunCase<T>(dtype, "zeros", {monolith_ops::kReduceBlock * 2 + 3, 5}, 7,
             [](Rng& rng, size_t t) { return t == 0 ? 0.0 : rng.Value(1.0); });
  // A NaN in the vector loops of one tensor and in the tail of another.
  RunCase<T>(dtype, "nan", {40, 7, 19}, 11, [](Rng& rng, size_t t) {
    static int element = 0;
    const bool nan = (t == 0 && element % 40 == 5) || (t == 2 && element == 65);
    ++element;
    return nan ? std::numeric_limits<double>::quiet_NaN() : rng.Value(4.0);
  });
  // Values down to 2^-11 * 1e-4, subnormal in half, scaled: conversions
  // that keep and round subnormals.
  RunCase<T>(dtype, "subnormal", {4099, 20011}, 10,
             [](Rng& rng, size_t t) { return rng.Value(t == 0 ? 4.0 : 1e-4); });
  if (static_cast<double>(std::numeric_limits<T>::max()) > 1e30) {
    // bfloat16 and float: squares that would overflow float, squares
    // that would underflow it, both next to ordinary ones.
    RunCase<T>(dtype, "huge", {1000, 20000, 3}, 8, [](Rng& rng, size_t t) {
      return rng.Value(t == 1 ? 1e30 : 1.0);
    });
    RunCase<T>(dtype, "tiny", {1000, 20000, 3}, 9, [](Rng& rng, size_t t) {
      return rng.Value(t == 1 ? 1e-21 : 1e-30);
    });
  }
}

int RunAllTypes() {
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

#if defined(__x86_64__) || defined(__i386__)
// The lines a child process computes with MONOLITH_OPS_ISA=isa (Tuning()
// reads it once per process, so each path needs a process of its own).
bool LinesWithIsa(const char* isa, std::string* out) {
  int fds[2];
  if (pipe(fds) != 0) return false;
  const pid_t pid = fork();
  if (pid < 0) return false;
  if (pid == 0) {
    close(fds[0]);
    setenv("MONOLITH_OPS_ISA", isa, 1);
    const int status = RunAllTypes();
    size_t done = 0;
    while (done < lines.size()) {
      const ssize_t n = write(fds[1], lines.data() + done, lines.size() - done);
      if (n <= 0) _exit(2);
      done += static_cast<size_t>(n);
    }
    _exit(status);
  }
  close(fds[1]);
  char buf[4096];
  for (ssize_t n; (n = read(fds[0], buf, sizeof(buf))) > 0;)
    out->append(buf, n);
  close(fds[0]);
  int status = 0;
  return waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
         WEXITSTATUS(status) == 0;
}
#endif

}  // namespace

int main() {
  std::vector<std::pair<const char*, std::string>> paths;
#if defined(__x86_64__) || defined(__i386__)
  if (std::getenv("MONOLITH_OPS_ISA") == nullptr) {
    // Before this process runs the core: the children must choose afresh.
    for (const char* isa : {"avx512", "avx2", "baseline"}) {
      std::string out;
      if (!LinesWithIsa(isa, &out)) {
        std::fprintf(stderr, "MONOLITH_OPS_ISA=%s: failed\n", isa);
        ++failures;
      }
      paths.emplace_back(isa, out);
    }
  }
#endif
  const int status = RunAllTypes();
  std::fputs(lines.c_str(), stdout);
  for (const auto& path : paths) {
    if (path.second != lines) {
      std::fprintf(stderr, "MONOLITH_OPS_ISA=%s: not bitwise the same sums\n",
                   path.first);
      ++failures;
    }
  }
  return status != 0 || failures != 0 ? 1 : 0;
}
