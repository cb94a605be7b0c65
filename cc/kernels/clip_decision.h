// Copyright 2026 The monolith_ops Authors.
// SPDX-License-Identifier: Apache-2.0
// The clip rule, shared by the CPU core and the CUDA kernels: what to do with
// a tensor list once its global norm is known, and the scale to apply.
//
// Includes no framework and no CUDA header. Under nvcc the functions are
// __host__ __device__; elsewhere (the host compiler, the CPU emulation of the
// CUDA kernels) they are plain inline functions.
#ifndef MONOLITH_OPS_CC_KERNELS_CLIP_DECISION_H_
#define MONOLITH_OPS_CC_KERNELS_CLIP_DECISION_H_

#include <cmath>

#if defined(__CUDACC__)
#define MONOLITH_OPS_HOST_DEVICE __host__ __device__
#else
#define MONOLITH_OPS_HOST_DEVICE
#endif

namespace monolith_ops {

// What a clip must do once the global norm is known.
enum class ClipAction {
  kPassThrough,  // norm <= clip_norm: outputs are the inputs, unchanged.
  kScale,        // multiply every element by the scale.
  kFillNaN,      // the norm is inf or NaN: every output is NaN, as in TF.
};

template <typename F>
MONOLITH_OPS_HOST_DEVICE inline bool IsFinite(F x) {
#if defined(__CUDA_ARCH__)
  return isfinite(x);
#else
  return std::isfinite(x);
#endif
}

// Decides the clip and computes the scale exactly as tf.clip_by_global_norm
// does in the norm's dtype NormT: clip_norm * min(1 / norm, 1 / clip_norm).
// *scale is written only for kScale. The caller has checked that clip_norm is
// positive and finite and that norm is not negative.
template <typename NormT>
MONOLITH_OPS_HOST_DEVICE inline ClipAction DecideClip(NormT norm,
                                                      NormT clip_norm,
                                                      NormT* scale) {
  if (!IsFinite(norm)) return ClipAction::kFillNaN;
  if (norm <= clip_norm) return ClipAction::kPassThrough;
  const NormT inv_norm = NormT(1) / norm;
  const NormT inv_clip = NormT(1) / clip_norm;
  *scale = clip_norm * (inv_norm < inv_clip ? inv_norm : inv_clip);
  return ClipAction::kScale;
}

// DecideClip() where the inputs cannot be checked first, as on the device,
// where no error can be raised without a host read: the inputs the CPU
// kernels reject (a clip_norm that is not positive and finite, a negative
// norm) fill the outputs with NaN.
template <typename NormT>
MONOLITH_OPS_HOST_DEVICE inline ClipAction DecideClipOrNaN(NormT norm,
                                                           NormT clip_norm,
                                                           NormT* scale) {
  if (!(IsFinite(clip_norm) && clip_norm > NormT(0))) {
    return ClipAction::kFillNaN;
  }
  if (norm < NormT(0)) return ClipAction::kFillNaN;
  return DecideClip(norm, clip_norm, scale);
}

}  // namespace monolith_ops

#endif  // MONOLITH_OPS_CC_KERNELS_CLIP_DECISION_H_
