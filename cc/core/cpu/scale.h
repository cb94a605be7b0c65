// Copyright 2026 The monolith_ops Authors.
// SPDX-License-Identifier: Apache-2.0
// The loops of the scaling of one run of elements (out = in * scale, in
// the compute type): the baseline loop, and on x86 its AVX2 form and a form
// with streaming stores, bitwise the same.
//
// Private to the CPU core (cc/core/clip_core.cc and the headers of
// cc/core/cpu/): an unnamed namespace, as in a source file.
#ifndef MONOLITH_OPS_CC_CORE_CPU_SCALE_H_
#define MONOLITH_OPS_CC_CORE_CPU_SCALE_H_

#include <algorithm>
#include <cstdint>

#include "Eigen/Core"
#include "cc/core/cpu/isa.h"

namespace monolith_ops {
namespace {

template <typename T, typename S>
inline __attribute__((always_inline)) void ScaleImpl(const T* in, T* out,
                                                     int64_t n, S scale) {
  for (int64_t i = 0; i < n; ++i) {
    out[i] = static_cast<T>(static_cast<S>(in[i]) * scale);
  }
}

template <typename T, typename S>
void ScaleBase(const T* in, T* out, int64_t n, S scale) {
  ScaleImpl(in, out, n, scale);
}

#if MONOLITH_OPS_X86
template <typename T, typename S>
__attribute__((target("avx2,f16c,fma"))) void ScaleAvx2(const T* in, T* out,
                                                        int64_t n, S scale) {
  ScaleImpl(in, out, n, scale);
}
// half by hand: Eigen converts float to half with F16C instructions only when
// the whole file is compiled for them, and its portable conversion is many
// times slower than the memory it works on. The same operations as
// ScaleImpl: the exact widening, the float product, and F16C's conversion
// back, which rounds to nearest even as Eigen's does; so the values are
// bitwise the same (a NaN stays a NaN, its payload aside).
template <>
__attribute__((target("avx2,f16c,fma"))) void ScaleAvx2<Eigen::half, float>(
    const Eigen::half* in, Eigen::half* out, int64_t n, float scale) {
  const __m256 s = _mm256_set1_ps(scale);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i));
    const __m256 product = _mm256_mul_ps(_mm256_cvtph_ps(h), s);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i),
                     _mm256_cvtps_ph(product, _MM_FROUND_TO_NEAREST_INT));
  }
  ScaleImpl(in + i, out + i, n - i, scale);
}
// ScaleImpl with non-temporal stores, for outputs too large to stay in cache:
// a streamed line is written without first being read in, which saves a
// third of the memory traffic. Each 32-byte piece is computed by ScaleAvx2,
// so the values are bitwise those of the other loops.
template <typename T, typename S>
__attribute__((target("avx2,f16c,fma"))) void ScaleStreamAvx2(const T* in,
                                                              T* out, int64_t n,
                                                              S scale) {
  constexpr int64_t kVec = 32 / sizeof(T);
  const int64_t misalign = reinterpret_cast<uintptr_t>(out) % 32;
  int64_t i = misalign % sizeof(T) != 0
                  ? n
                  : std::min<int64_t>(n, (32 - misalign) % 32 / sizeof(T));
  ScaleAvx2(in, out, i, scale);
  for (; i + kVec <= n; i += kVec) {
    alignas(32) T piece[kVec];
    ScaleAvx2(in + i, piece, kVec, scale);
    _mm256_stream_si256(reinterpret_cast<__m256i*>(out + i),
                        _mm256_load_si256(reinterpret_cast<__m256i*>(piece)));
  }
  ScaleAvx2(in + i, out + i, n - i, scale);
  _mm_sfence();  // Streamed stores are weakly ordered: publish them.
}

#else   // No AVX2 here: the AVX2 names are the baseline loop.
template <typename T, typename S>
void ScaleAvx2(const T* in, T* out, int64_t n, S scale) {
  ScaleBase(in, out, n, scale);
}
template <typename T, typename S>
void ScaleStreamAvx2(const T* in, T* out, int64_t n, S scale) {
  ScaleBase(in, out, n, scale);
}
#endif  // MONOLITH_OPS_X86

}  // namespace
}  // namespace monolith_ops

#endif  // MONOLITH_OPS_CC_CORE_CPU_SCALE_H_
