// Copyright 2026 The monolith_ops Authors.
// SPDX-License-Identifier: Apache-2.0
// The instruction sets of the CPU core's loops, and which one runs.
//
// The AVX2 and AVX-512 loops are x86 only. MONOLITH_OPS_X86 is the one
// switch: elsewhere (aarch64, ...), or with MONOLITH_OPS_PORTABLE defined,
// only the baseline loops are compiled, and HasAvx2() is false.
//
// Private to the CPU core (cc/core/clip_core.cc and the headers of
// cc/core/cpu/): an unnamed namespace, as in a source file.
#ifndef MONOLITH_OPS_CC_CORE_CPU_ISA_H_
#define MONOLITH_OPS_CC_CORE_CPU_ISA_H_

#include <cstdint>

#include "cc/core/clip_core.h"

#if (defined(__x86_64__) || defined(__i386__)) && \
    !defined(MONOLITH_OPS_PORTABLE)
#define MONOLITH_OPS_X86 1
#include <immintrin.h>
#else
#define MONOLITH_OPS_X86 0
#endif

namespace monolith_ops {
namespace {

#if MONOLITH_OPS_X86
// The target attributes of the AVX2 and AVX-512 loops.
#define MONOLITH_OPS_AVX2 "avx2,f16c,fma"
#define MONOLITH_OPS_AVX512 "avx512f,avx512bw,avx512vl,avx2,f16c,fma"

bool HasAvx2() {
  static const bool has = __builtin_cpu_supports("avx2") &&
                          __builtin_cpu_supports("f16c") &&
                          __builtin_cpu_supports("fma");
  return has;
}
bool HasAvx512() {
  static const bool has = HasAvx2() && __builtin_cpu_supports("avx512f") &&
                          __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl");
  return has;
}
#else   // No AVX2 here: only the baseline loops are ever chosen.
constexpr bool HasAvx2() { return false; }
constexpr bool HasAvx512() { return false; }
#endif  // MONOLITH_OPS_X86

// The loops the sum of squares (and, AVX2 or not, the scaling) run: the
// widest the CPU has, at most tuning.isa_cap, so that tests can run every
// path on one machine. All give bitwise the same results.
using Isa = CpuIsa;
Isa BestIsa() {
  static const Isa best = HasAvx512() ? Isa::kAvx512
                          : HasAvx2() ? Isa::kAvx2
                                      : Isa::kBaseline;
  return best;
}
Isa ChosenIsa(const CpuTuning& tuning) {
  const Isa best = BestIsa();
  return tuning.isa_cap < best ? tuning.isa_cap : best;
}

}  // namespace
}  // namespace monolith_ops

#endif  // MONOLITH_OPS_CC_CORE_CPU_ISA_H_
