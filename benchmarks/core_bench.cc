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
// allocator does (64-byte aligned, no advice: the system's default pages).
// Each round runs, in an order that changes from round to round, each once
// untimed and then once timed (hot, as run.py times), on THREADS threads of the
// floor's pool (the calling thread is one; the core's ParallelFor gets equal
// shares of the blocks): SumOfSquares and Scale (into separate outputs) over
// the list; SumOfSquares over the floor's own source buffer, as one tensor (the
// same bytes as the floor's loops read: the core's loops against the floor's,
// the memory set aside); the floor's max, sum of squares in double and
// scaling loops over that buffer (on tensor pages). Prints each one's minimum
// and median in ms. The core is compiled as setup.py compiles it (its loops are
// chosen at run time), the floor's loops for this machine, as compiled_floor.py
// does.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "benchmarks/floor.cc"
#include "cc/kernels/clip_core.h"

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s THREADS ROUNDS SIZE...\n", argv[0]);
    return 2;
  }
  const int threads = std::atoi(argv[1]);
  const int rounds = std::atoi(argv[2]);
  std::vector<int64_t> sizes;
  for (int a = 3; a < argc; ++a) {
    const std::string arg = argv[a];
    const size_t star = arg.find('*');
    const int64_t n = std::atoll(arg.substr(0, star).c_str());
    const int64_t k = star == std::string::npos
                          ? 1
                          : std::atoll(arg.substr(star + 1).c_str());
    for (int64_t i = 0; i < k; ++i) sizes.push_back(n);
  }
  int64_t total = 0;
  for (int64_t n : sizes) total += n;
  if (threads < 1 || rounds < 1 || total < 1) {
    std::fprintf(stderr, "THREADS, ROUNDS and the sizes must be positive\n");
    return 2;
  }
  std::vector<float*> inputs, outputs;
  for (int64_t n : sizes) {
    const size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
    float* in = static_cast<float*>(std::aligned_alloc(64, bytes));
    float* out = static_cast<float*>(std::aligned_alloc(64, bytes));
    for (int64_t i = 0; i < n; ++i) in[i] = (i % 1999) / 1999.0f - 0.5f;
    std::fill_n(out, n, 0.0f);
    inputs.push_back(in);
    outputs.push_back(out);
  }
  Floor* floor = static_cast<Floor*>(floor_new(total, threads));
  if (floor == nullptr) return 1;
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
  const float* floor_source[1] = {floor->memory[0].src};
  std::vector<std::vector<double>> seconds(kVariants);
  double sink = 0.0;
  // Runs `variant` once untimed, then once timed: each timed pass finds its
  // data in cache as far as it fits, as in run.py.
  auto run = [&](int variant) {
    if (variant >= kFirstFloor) {
      floor_run(floor, loops[variant], threads, 0);
      return floor_run(floor, loops[variant], threads, 0);
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
  for (int r = 0; r < rounds; ++r) {
    // A different order each round, as run.py shuffles its variants.
    for (int i = 0; i < kVariants; ++i) {
      const int k = (i * 3 + r) % kVariants;
      seconds[k].push_back(run(k));
    }
  }
  std::printf("%zu tensors, %lld floats, %d threads, %d rounds\n", sizes.size(),
              static_cast<long long>(total), threads, rounds);
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
