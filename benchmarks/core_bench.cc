// Copyright 2026 The monolith_ops Authors.
// SPDX-License-Identifier: Apache-2.0
//
// The framework-free core (cc/kernels/clip_core.h) timed without TensorFlow,
// against the floor's loops (floor.cc) in the same rounds, on the same
// threads: what the kernels cost on their own, apart from TensorFlow's
// executor and thread pool.
//
// clang-format off
//   TFI=$(python -c "import tensorflow as tf; print(tf.sysconfig.get_include())")
//   CORE="-c cc/kernels/clip_core.cc -o /tmp/clip_core.o"
//   g++ -std=c++17 -O3 -fPIC -ffp-contract=off -I. -isystem "$TFI" $CORE
//   BENCH="benchmarks/core_bench.cc /tmp/clip_core.o -o /tmp/core_bench"
//   g++ -std=c++17 -O3 -march=native -pthread -I. -isystem "$TFI" $BENCH
//   /tmp/core_bench THREADS ROUNDS SIZE...
// clang-format on
//
// SIZE is a tensor's element count, or N*K for K tensors of N. The 53 dense
// shapes:
//   SHAPES=tests/data/dense_shapes.json
//   /tmp/core_bench 2 300 $(python -c "import json, math; print(*(
//       math.prod(s) for s in json.load(open('$SHAPES'))['shapes']))")
//
// The tensors are float32, each allocated on its own as TensorFlow's CPU
// allocator does (64-byte aligned, no advice: the system's default pages);
// element i of each is (i % 1999) / 1999 - 0.5. Each round runs, in an order
// that changes from round to round, each variant once untimed and then once
// timed (hot, as run.py times), on THREADS threads of the floor's pool (the
// calling thread is one; the core's ParallelFor gets equal shares):
//   - SumOfSquares and Scale (into separate outputs) over the list;
//   - SumOfSquares over the floor's own source buffer, as one tensor: the
//     same bytes the floor's loops read, so the core's loops against the
//     floor's with the memory set aside;
//   - the floor's max, sum of squares in double and scaling loops over that
//     buffer (on tensor pages).
// Prints the list's sum of squares by the core and by a plain loop in
// order, then each variant's minimum and median in ms. The core is compiled
// as setup.py compiles it (its loops are chosen at run time), the floor's
// loops for this machine (-march=native).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "benchmarks/floor.cc"
#include "cc/kernels/clip_core.h"

namespace {

// The whole decimal number in `text`, if it is one in [low, high].
bool ParseCount(const std::string& text, int64_t low, int64_t high,
                int64_t* value) {
  if (text.empty() || text.size() > 12 ||
      text.find_first_not_of("0123456789") != std::string::npos) {
    return false;
  }
  *value = std::stoll(text);
  return *value >= low && *value <= high;
}

int Usage(const char* program, const std::string& why) {
  std::fprintf(stderr,
               "usage: %s THREADS ROUNDS SIZE...  (SIZE: N, or N*K for K "
               "tensors of N floats)\n%s\n",
               program, why.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) return Usage(argv[0], "too few arguments");
  int64_t threads_arg = 0, rounds = 0;
  if (!ParseCount(argv[1], 1, 256, &threads_arg)) {
    return Usage(argv[0], "THREADS must be a whole number from 1 to 256");
  }
  if (!ParseCount(argv[2], 1, 1000000, &rounds)) {
    return Usage(argv[0], "ROUNDS must be a whole number from 1 to 1000000");
  }
  const int threads = static_cast<int>(threads_arg);
  // At most 2^31 floats in all, in at most 10^6 tensors.
  constexpr int64_t kMaxFloats = int64_t{1} << 31, kMaxTensors = 1000000;
  std::vector<int64_t> sizes;
  int64_t total = 0;
  for (int a = 3; a < argc; ++a) {
    const std::string arg = argv[a];
    const size_t star = arg.find('*');
    int64_t n = 0, k = 1;
    if (!ParseCount(arg.substr(0, star), 1, kMaxFloats, &n) ||
        (star != std::string::npos &&
         !ParseCount(arg.substr(star + 1), 1, kMaxTensors, &k)) ||
        static_cast<int64_t>(sizes.size()) + k > kMaxTensors ||
        n * k > kMaxFloats - total) {
      return Usage(argv[0], "bad SIZE " + arg);
    }
    sizes.insert(sizes.end(), k, n);
    total += n * k;
  }
  std::vector<float*> inputs, outputs;
  double in_order = 0.0;  // the sum of squares by a plain loop
  for (int64_t n : sizes) {
    const size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
    float* in = static_cast<float*>(std::aligned_alloc(64, bytes));
    float* out = static_cast<float*>(std::aligned_alloc(64, bytes));
    if (in == nullptr || out == nullptr) {
      std::fprintf(stderr, "out of memory\n");
      return 1;
    }
    for (int64_t i = 0; i < n; ++i) {
      in[i] = (i % 1999) / 1999.0f - 0.5f;
      in_order += static_cast<double>(in[i]) * in[i];
    }
    std::fill_n(out, n, 0.0f);
    inputs.push_back(in);
    outputs.push_back(out);
  }
  Floor* floor = static_cast<Floor*>(floor_new(total, threads));
  if (floor == nullptr) {
    std::fprintf(stderr, "the floor's buffers could not be allocated\n");
    return 1;
  }
  const monolith_ops::ParallelFor parallel_for =
      [&](int64_t n, int64_t, const std::function<void(int64_t, int64_t)>& fn) {
        floor->pool.Run(threads, [&](int index, int used) {
          const int64_t share = (n + used - 1) / used;
          const int64_t begin = std::min(n, share * index);
          const int64_t end = std::min(n, begin + share);
          if (begin < end) fn(begin, end);
        });
      };
  const char* names[] = {"core SumOfSquares",
                         "core Scale",
                         "core SumOfSquares, floor's buffer",
                         "floor max",
                         "floor sum sq. double",
                         "floor scale_out",
                         "floor scale_stream"};
  constexpr int kVariants = 7, kFirstFloor = 3;
  const int loops[kVariants] = {0, 0, 0, 1, 3, 4, 5};
  const float* floor_source[1] = {floor->memory[kTensorPages].src};
  std::vector<std::vector<double>> seconds(kVariants);
  double sink = 0.0;
  // Runs `variant` once untimed, then once timed: each timed pass finds its
  // data in cache as far as it fits, as in run.py.
  auto run = [&](int variant) {
    if (variant >= kFirstFloor) {
      floor_run(floor, loops[variant], threads, kTensorPages);
      return floor_run(floor, loops[variant], threads, kTensorPages);
    }
    double seconds = 0.0;
    for (int pass = 0; pass < 2; ++pass) {
      const auto start = Clock::now();
      if (variant == 0) {
        sink += monolith_ops::SumOfSquares<float>(inputs.data(), sizes.data(),
                                                  sizes.size(), parallel_for);
      } else if (variant == 2) {
        sink += monolith_ops::SumOfSquares<float>(floor_source, &total, 1,
                                                  parallel_for);
      } else {
        monolith_ops::Scale<float, float>(inputs.data(), outputs.data(),
                                          sizes.data(), sizes.size(), 0.5f,
                                          parallel_for);
      }
      seconds = std::chrono::duration<double>(Clock::now() - start).count();
    }
    return seconds;
  };
  for (int64_t r = 0; r < rounds; ++r) {
    // A different order each round, as run.py shuffles its variants.
    for (int i = 0; i < kVariants; ++i) {
      const int k = static_cast<int>((i * 3 + r) % kVariants);
      seconds[k].push_back(run(k));
    }
  }
  std::printf("%zu tensors, %lld floats, %d threads, %lld rounds\n",
              sizes.size(), static_cast<long long>(total), threads,
              static_cast<long long>(rounds));
  std::printf("sum of squares %.17g, in order %.17g\n",
              monolith_ops::SumOfSquares<float>(inputs.data(), sizes.data(),
                                                sizes.size(), parallel_for),
              in_order);
  for (int k = 0; k < kVariants; ++k) {
    std::sort(seconds[k].begin(), seconds[k].end());
    std::printf("%-34s min %8.3f ms  median %8.3f ms\n", names[k],
                seconds[k].front() * 1e3, seconds[k][rounds / 2] * 1e3);
  }
  sink += floor_sink(floor) + outputs[0][0];
  floor_free(floor);
  for (size_t i = 0; i < inputs.size(); ++i) {
    std::free(inputs[i]);
    std::free(outputs[i]);
  }
  return sink == 0.123 ? 3 : 0;  // Uses sink, so nothing is dead code.
}
