// Copyright 2026 The monolith_ops Authors.
// SPDX-License-Identifier: Apache-2.0
// The CPU kernels' ParallelFor: the framework-free core's shards of work on
// the device's TensorFlow CPU worker threads.
#ifndef MONOLITH_OPS_CC_TF_CPU_THREADS_H_
#define MONOLITH_OPS_CC_TF_CPU_THREADS_H_

#include <cstdint>
#include <functional>

#include "cc/core/clip_core.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/lib/core/threadpool.h"

namespace monolith_ops {

// Runs a single shard on the calling thread, more on ctx's CPU worker pool.
inline ParallelFor WorkerThreads(::tensorflow::OpKernelContext* ctx) {
  auto* pool = ctx->device()->tensorflow_cpu_worker_threads()->workers;
  return [pool](int64_t n, int64_t cost,
                const std::function<void(int64_t, int64_t)>& fn) {
    if (n <= 1) {
      SerialFor(n, cost, fn);
    } else {
      pool->ParallelFor(n, cost, fn);
    }
  };
}

}  // namespace monolith_ops

#endif  // MONOLITH_OPS_CC_TF_CPU_THREADS_H_
