// Copyright 2026 The monolith_ops Authors.
// SPDX-License-Identifier: Apache-2.0
// The CPU kernels' tuning from the environment (see cpu_tuning.h).
#include "cc/tf/cpu_tuning.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace monolith_ops {
namespace {

CpuTuning ReadCpuTuning() {
  CpuTuning tuning;
  if (const char* env = std::getenv("MONOLITH_OPS_ISA")) {
    const std::string cap = env;
    if (cap == "baseline") {
      tuning.isa_cap = CpuIsa::kBaseline;
    } else if (cap == "avx2") {
      tuning.isa_cap = CpuIsa::kAvx2;
    } else if (cap != "avx512" && !cap.empty()) {
      std::fprintf(stderr,
                   "monolith_ops: MONOLITH_OPS_ISA=%s is not one of "
                   "baseline, avx2, avx512; it is ignored\n",
                   env);
    }
  }
  if (const char* env = std::getenv("MONOLITH_OPS_STREAM_MIN_BYTES")) {
    char* end = nullptr;
    const long long value = std::strtoll(env, &end, 10);
    if (end != env && *end == '\0' && value >= 0) {
      tuning.stream_min_bytes = int64_t{value};
    }
  }
  return tuning;
}

}  // namespace

const CpuTuning& CpuTuningFromEnvironment() {
  static const CpuTuning tuning = ReadCpuTuning();
  return tuning;
}

bool HugePagesFromEnvironment() {
  static const bool wanted = [] {
    const char* env = std::getenv("MONOLITH_OPS_HUGE_PAGES");
    return env == nullptr || std::string(env) != "0";
  }();
  return wanted;
}

}  // namespace monolith_ops
