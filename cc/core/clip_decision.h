// Copyright 2026 The monolith_ops Authors.
// SPDX-License-Identifier: Apache-2.0
// The clip rule, shared by the CPU core and the CUDA kernels: what to do with
// a tensor list once its global norm is known, and the scale to apply.
//
// Includes no framework and no CUDA header. Under nvcc the functions are
// __host__ __device__; elsewhere (the host compiler, the CPU emulation of the
// CUDA kernels) they are plain inline functions.
#ifndef MONOLITH_OPS_CC_CORE_CLIP_DECISION_H_
#define MONOLITH_OPS_CC_CORE_CLIP_DECISION_H_

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

// The norms of MonolithGlobalNormV2 and MonolithClipByGlobalNormV2 (attr
// norm_type). Each tensor of a list is reduced on its own to a double: the
// sum of its squares (kL2) or its largest absolute value (kInf, NaN when it
// holds a NaN). The list's reduction combines the tensors' (CombineReductions),
// and a norm is a reduction unscaled by the inverse loss scale and rounded to
// the norm's dtype (UnscaledNorm).
enum class NormType { kL2, kInf };

// max(acc, x) for absolute values, NaN once either is NaN (a NaN x is taken;
// a NaN acc stays, as no compare with it is true).
MONOLITH_OPS_HOST_DEVICE inline double MaxOrNaN(double acc, double x) {
  return (x > acc || x != x) ? x : acc;
}

// Adds (kL2) or takes the NaN-propagating maximum (kInf) of one more tensor's
// reduction into the list's, `acc` (which starts at 0). The CPU calls it on
// the tensors in list order, so its result is the same for every thread
// count; the CUDA kernel in a tree whose shape depends only on the count
// (clip_core_gpu.h, LaunchFinishNorms), so each device's result is
// reproducible and the two agree within rounding.
MONOLITH_OPS_HOST_DEVICE inline double CombineReductions(NormType type,
                                                         double acc,
                                                         double reduction) {
  return type == NormType::kL2 ? acc + reduction : MaxOrNaN(acc, reduction);
}

// The norm of the unscaled values, x * inverse_scale, from the reduction of x:
// sqrt(NormT(sum * inverse_scale * inverse_scale)) for kL2 (rounded to NormT
// before the square root, as GlobalL2Reduce's sum is), NormT(max *
// inverse_scale) for kInf. The products are in double. inverse_scale is
// positive (checked, or NaN-filled, by the caller); 1 leaves the norm as is.
template <typename NormT>
MONOLITH_OPS_HOST_DEVICE inline NormT UnscaledNorm(NormType type,
                                                   double reduction,
                                                   NormT inverse_scale) {
  const double inv = static_cast<double>(inverse_scale);
  if (type == NormType::kInf) return static_cast<NormT>(reduction * inv);
  const NormT sum = static_cast<NormT>(reduction * inv * inv);
#if defined(__CUDA_ARCH__)
  return sqrt(sum);
#else
  return std::sqrt(sum);
#endif
}

// A clip decision (`action`, with the clip factor `factor`) and the scaling
// by inverse_scale folded into one, as DecideUnscaledClip() describes.
template <typename NormT>
MONOLITH_OPS_HOST_DEVICE inline ClipAction WithInverseScale(ClipAction action,
                                                            NormT factor,
                                                            NormT inverse_scale,
                                                            NormT* scale) {
  if (action == ClipAction::kFillNaN) return action;
  if (action == ClipAction::kPassThrough && inverse_scale == NormT(1)) {
    return action;
  }
  *scale = inverse_scale * factor;
  return ClipAction::kScale;
}

// DecideClip() with the loss-scale unscaling folded in: `norm` is the norm of
// the unscaled values, and *scale (written for kScale) is inverse_scale times
// the clip factor, in NormT. The outputs pass through only when nothing
// scales them: norm <= clip_norm and inverse_scale == 1.
//
// How an element is multiplied by *scale: with inverse_scale == 1 the scale
// is rounded to the element type first (ScaleThroughElementType), as
// tf.clip_by_global_norm casts it; otherwise it is taken in the element's
// compute type directly, since a loss scale's inverse times the clip factor
// may be far below what a 16-bit type holds accurately (2^-16 is a half
// denormal).
template <typename NormT>
MONOLITH_OPS_HOST_DEVICE inline ClipAction DecideUnscaledClip(
    NormT norm, NormT clip_norm, NormT inverse_scale, NormT* scale) {
  NormT factor = NormT(1);  // DecideClip writes it for kScale only.
  const ClipAction action = DecideClip(norm, clip_norm, &factor);
  return WithInverseScale(action, factor, inverse_scale, scale);
}

// Whether DecideUnscaledClip()'s scale is rounded to the element type before
// it multiplies (see there).
template <typename NormT>
MONOLITH_OPS_HOST_DEVICE inline bool ScaleThroughElementType(
    NormT inverse_scale) {
  return inverse_scale == NormT(1);
}

// DecideUnscaledClip() where the inputs cannot be checked first (the
// device): a clip_norm or inverse_scale that is not positive and finite, or a
// negative norm, fill the outputs with NaN, as in DecideClipOrNaN().
template <typename NormT>
MONOLITH_OPS_HOST_DEVICE inline ClipAction DecideUnscaledClipOrNaN(
    NormT norm, NormT clip_norm, NormT inverse_scale, NormT* scale) {
  if (!(IsFinite(inverse_scale) && inverse_scale > NormT(0))) {
    return ClipAction::kFillNaN;
  }
  NormT factor = NormT(1);
  const ClipAction action = DecideClipOrNaN(norm, clip_norm, &factor);
  return WithInverseScale(action, factor, inverse_scale, scale);
}

}  // namespace monolith_ops

#endif  // MONOLITH_OPS_CC_CORE_CLIP_DECISION_H_
