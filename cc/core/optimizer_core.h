// Copyright 2026 The monolith_ops Authors.
// SPDX-License-Identifier: Apache-2.0
// Framework-free core of the multi-tensor optimizer ops: one update of a
// whole list of variables, with the global-norm clip folded in.
//
// The update rules are TensorFlow's own (its ApplyGradientDescent,
// ApplyMomentum, ApplyAdagrad and ApplyAdam kernels) and Keras 3's, written
// once, per element, in the variable's type T: every operation of the
// formula is rounded to T in the same order as TensorFlow's Eigen expression
// (or Keras' ops, as Grappler leaves them in a tf.function) rounds it
// (for half and bfloat16, as Eigen's scalar types do: each operation in
// float, rounded to T). The clip multiplies each gradient element by the
// clip scale rounded to T, as tf.clip_by_global_norm does, before the rule
// sees it; the gradients themselves are never written.
//
// Determinism: elements are independent (dense) or each tensor's rows are
// applied in order on one thread (sparse), so the results do not depend on
// the number of threads.
#ifndef MONOLITH_OPS_CC_CORE_OPTIMIZER_CORE_H_
#define MONOLITH_OPS_CC_CORE_OPTIMIZER_CORE_H_

#include <cstdint>

#include "cc/core/clip_core.h"

namespace monolith_ops {

// The update rules: TensorFlow's (tf.compat.v1.train and its Apply*
// kernels) and Keras 3's (keras.optimizers, whose update_step composes them
// from ops). The number of slots each keeps per variable is SlotCount().
enum class UpdateRule {
  kGradientDescent,
  kMomentum,
  kAdagrad,
  kAdam,
  kKerasGradientDescent,
  kKerasMomentum,
  kKerasAdagrad,
  kKerasAdam,
};

constexpr int SlotCount(UpdateRule rule) {
  return rule == UpdateRule::kGradientDescent ||
                 rule == UpdateRule::kKerasGradientDescent
             ? 0
         : rule == UpdateRule::kAdam || rule == UpdateRule::kKerasAdam ? 2
                                                                       : 1;
}

// The hyperparameters of a rule, in the variables' type. A rule reads only
// its own: lr (all); momentum (kMomentum, kKerasMomentum); beta1, beta2,
// beta1_power and beta2_power (kAdam); alpha, one_minus_beta1 and
// one_minus_beta2 (kKerasAdam, which takes Keras' constants as Keras rounds
// them); epsilon (kAdam, kKerasAdagrad, kKerasAdam); nesterov (kMomentum,
// kAdam, kKerasMomentum). With decay, every variable first decays as Keras'
// weight_decay (AdamW's decoupled decay) does: var -= var * weight_decay * lr.
template <typename T>
struct UpdateParams {
  T lr{}, momentum{}, beta1{}, beta2{}, epsilon{}, beta1_power{}, beta2_power{};
  T alpha{}, one_minus_beta1{}, one_minus_beta2{}, weight_decay{};
  bool nesterov = false;
  bool decay = false;
};

// What is done to each gradient element before the rule sees it.
template <typename T>
struct GradientClip {
  ClipAction action = ClipAction::kPassThrough;
  T scale{};  // for kScale: the clip scale, already rounded to T
};

// The tensors of a dense update: count variables, each with SlotCount(rule)
// slots (slots[k][i] is slot k of variable i) and a gradient of the same
// sizes[i] elements.
template <typename T>
struct DenseUpdateList {
  int64_t count = 0;
  T* const* vars = nullptr;
  T* const* slots[2] = {nullptr, nullptr};
  const T* const* grads = nullptr;
  const int64_t* sizes = nullptr;
};

// The tensors of a sparse update (IndexedSlices): variable i has
// first_dims[i] rows of row_sizes[i] elements; its gradient has rows[i] rows,
// row r of values[i] going to row indices[i][r] of the variable. The caller
// has checked every index against first_dims[i]. Rows repeated in indices
// are applied one after another, in order.
template <typename T>
struct SparseUpdateList {
  int64_t count = 0;
  T* const* vars = nullptr;
  T* const* slots[2] = {nullptr, nullptr};
  const T* const* values = nullptr;
  const int64_t* const* indices = nullptr;
  const int64_t* rows = nullptr;
  const int64_t* row_sizes = nullptr;
  const int64_t* first_dims = nullptr;
};

// One update of every variable of `list` by `rule`.
template <typename T>
void ApplyDense(UpdateRule rule, const UpdateParams<T>& params,
                const GradientClip<T>& clip, const DenseUpdateList<T>& list,
                const ParallelFor& parallel_for);

// The sparse update, as TensorFlow's sparse kernels and (for Adam, whose
// moments decay everywhere) TensorFlow's Adam optimizer compose it.
template <typename T>
void ApplySparse(UpdateRule rule, const UpdateParams<T>& params,
                 const GradientClip<T>& clip, const SparseUpdateList<T>& list,
                 const ParallelFor& parallel_for);

}  // namespace monolith_ops

#endif  // MONOLITH_OPS_CC_CORE_OPTIMIZER_CORE_H_
