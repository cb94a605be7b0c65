// Copyright 2026 The monolith_ops Authors.
// SPDX-License-Identifier: Apache-2.0
// Host emulation of the bfloat16 conversion clip_core_gpu.cu uses (see
// cuda_runtime.h here): round to nearest even, NaN kept quiet.
#ifndef MONOLITH_OPS_TESTS_GPU_EMULATION_CUDA_BF16_H_
#define MONOLITH_OPS_TESTS_GPU_EMULATION_CUDA_BF16_H_

#include <cstdint>
#include <cstring>

struct __nv_bfloat16 {
  unsigned short bits;
};

inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) {
    return {static_cast<unsigned short>((x >> 16) | 0x40u)};
  }
  x += 0x7fffu + ((x >> 16) & 1u);
  return {static_cast<unsigned short>(x >> 16)};
}

inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 b) { return b.bits; }

#endif  // MONOLITH_OPS_TESTS_GPU_EMULATION_CUDA_BF16_H_
