// Copyright 2026 The monolith_ops Authors.
// SPDX-License-Identifier: Apache-2.0
// Host emulation of the half-precision conversions clip_core_gpu.cu uses
// (see cuda_runtime.h here): round to nearest even, as the device does.
#ifndef MONOLITH_OPS_TESTS_GPU_EMULATION_CUDA_FP16_H_
#define MONOLITH_OPS_TESTS_GPU_EMULATION_CUDA_FP16_H_

#include <cmath>
#include <cstdint>
#include <cstring>

struct __half {
  unsigned short bits;
};

inline float __half2float(__half h) {
  const uint32_t sign = static_cast<uint32_t>(h.bits & 0x8000u) << 16;
  const uint32_t exponent = (h.bits >> 10) & 0x1fu;
  const uint32_t mantissa = h.bits & 0x3ffu;
  uint32_t bits;
  if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else if (exponent != 0) {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else {
    const float f = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -f : f;
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline __half __float2half_rn(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  x &= 0x7fffffffu;
  if (x > 0x7f800000u) {  // NaN stays a quiet NaN
    return {static_cast<unsigned short>(sign | 0x7e00u | ((x >> 13) & 0x3ffu))};
  }
  if (x >= 0x477ff000u) {  // 65520 and above round to infinity
    return {static_cast<unsigned short>(sign | 0x7c00u)};
  }
  if (x <
      0x38800000u) {  // below 2**-14: the FPU rounds to a multiple of 2**-24
    float magnitude;
    std::memcpy(&magnitude, &x, 4);
    const float shifted = magnitude + 0.5f;
    uint32_t bits;
    std::memcpy(&bits, &shifted, 4);
    return {static_cast<unsigned short>(sign | (bits - 0x3f000000u))};
  }
  const uint32_t odd = (x >> 13) & 1u;
  x += 0xc8000fffu + odd;  // exponent rebias and round to nearest even
  return {static_cast<unsigned short>(sign | (x >> 13))};
}

inline __half __ushort_as_half(unsigned short s) { return {s}; }
inline unsigned short __half_as_ushort(__half h) { return h.bits; }

#endif  // MONOLITH_OPS_TESTS_GPU_EMULATION_CUDA_FP16_H_
