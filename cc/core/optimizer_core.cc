// Copyright 2026 The monolith_ops Authors.
// SPDX-License-Identifier: Apache-2.0
// The CPU multi-tensor optimizer updates (optimizer_core.h).
#include "cc/core/optimizer_core.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "Eigen/Core"
#include "cc/core/cpu/blocks.h"

namespace monolith_ops {
namespace {

// The square root in T, correctly rounded: std::sqrt for float and double
// (which the compiler vectorizes), Eigen's for the 16-bit types (in float,
// rounded, as TF computes it).
template <typename T>
inline T Sqrt(T x) {
  return Eigen::numext::sqrt(x);
}
inline float Sqrt(float x) { return std::sqrt(x); }
inline double Sqrt(double x) { return std::sqrt(x); }

// The gradient element the rule sees: g clipped as tf.clip_by_global_norm
// clips it (g * scale in T, or NaN when the norm is not finite).
template <typename T>
inline T Clipped(const GradientClip<T>& clip, T g) {
  switch (clip.action) {
    case ClipAction::kScale:
      return g * clip.scale;
    case ClipAction::kFillNaN:
      return std::numeric_limits<T>::quiet_NaN();
    default:
      return g;
  }
}

// Adam's step size, as ApplyAdam computes it once per call:
// lr * sqrt(1 - beta2_power) / (1 - beta1_power), each operation in T.
template <typename T>
T AdamStepSize(const UpdateParams<T>& p) {
  return p.lr * Sqrt(T(1) - p.beta2_power) / (T(1) - p.beta1_power);
}

// The per-element rules, each operation in T in TensorFlow's or Keras'
// order. `Form` picks where TensorFlow's dense and sparse kernels order a
// product differently (the Nesterov momentum term).
enum class Form { kDense, kSparse };

constexpr bool IsKeras(UpdateRule rule) {
  return rule == UpdateRule::kKerasGradientDescent ||
         rule == UpdateRule::kKerasMomentum ||
         rule == UpdateRule::kKerasAdagrad || rule == UpdateRule::kKerasAdam;
}

template <typename T>
struct Rules {
  UpdateParams<T> p;
  T alpha, one_minus_beta1, one_minus_beta2;

  // Adam's constants: ApplyAdam computes them in T from beta1, beta2 and the
  // beta powers; Keras' are its inputs.
  Rules(UpdateRule rule, const UpdateParams<T>& params)
      : p(params),
        alpha(IsKeras(rule) ? params.alpha : AdamStepSize(params)),
        one_minus_beta1(IsKeras(rule) ? params.one_minus_beta1
                                      : T(1) - params.beta1),
        one_minus_beta2(IsKeras(rule) ? params.one_minus_beta2
                                      : T(1) - params.beta2) {}

  // ApplyGradientDescent, and Keras' SGD without momentum: var -= grad * lr.
  void GradientDescent(T g, T* var) const { *var = *var - g * p.lr; }

  // ApplyMomentum: accum = accum * momentum + grad; var -= accum * lr, or
  // with Nesterov var -= grad * lr + accum * momentum * lr (the sparse
  // kernel: lr * momentum * accum).
  template <Form kForm, bool kNesterov>
  void Momentum(T g, T* var, T* accum) const {
    const T a = *accum * p.momentum + g;
    *accum = a;
    if (!kNesterov) {
      *var = *var - a * p.lr;
    } else if (kForm == Form::kDense) {
      *var = *var - (g * p.lr + a * p.momentum * p.lr);
    } else {
      *var = *var - (p.lr * g + p.lr * p.momentum * a);
    }
  }

  // Keras' SGD with momentum: m = m * momentum - grad * lr; var += m, or
  // with Nesterov var += m * momentum - grad * lr.
  template <bool kNesterov>
  void KerasMomentum(T g, T* var, T* m) const {
    const T m1 = *m * p.momentum - g * p.lr;
    *m = m1;
    *var = *var + (kNesterov ? m1 * p.momentum - g * p.lr : m1);
  }

  // ApplyAdagrad: accum += grad^2; var -= grad * lr * rsqrt(accum).
  void Adagrad(T g, T* var, T* accum) const {
    const T a = *accum + g * g;
    *accum = a;
    *var = *var - g * p.lr * (T(1) / Sqrt(a));
  }

  // Keras' Adagrad: accum += grad^2; var -= lr * grad / sqrt(accum + epsilon).
  void KerasAdagrad(T g, T* var, T* accum) const {
    const T a = *accum + g * g;
    *accum = a;
    *var = *var - p.lr * g / Sqrt(a + p.epsilon);
  }

  // ApplyAdam and Keras' Adam: m += (grad - m) * (1 - beta1);
  // v += (grad^2 - v) * (1 - beta2); var -= m * alpha / (sqrt(v) + epsilon),
  // or with Nesterov (ApplyAdam only)
  // var -= (grad * (1 - beta1) + beta1 * m) * alpha / (sqrt(v) + epsilon).
  template <bool kNesterov>
  void Adam(T g, T* var, T* m, T* v) const {
    const T m1 = *m + (g - *m) * one_minus_beta1;
    const T v1 = *v + (g * g - *v) * one_minus_beta2;
    *m = m1;
    *v = v1;
    const T step =
        kNesterov ? (g * one_minus_beta1 + p.beta1 * m1) * alpha : m1 * alpha;
    *var = *var - step / (Sqrt(v1) + p.epsilon);
  }
};

// Applies the rule to n elements: var[j], slot0[j], slot1[j] with gradient
// element clipped(grad[j]), each var[j] first replaced by decayed(var[j]).
template <typename T, Form kForm, typename Clip, typename Decay>
void ApplyRunClipped(UpdateRule rule, const Rules<T>& rules, Clip clipped,
                     Decay decayed, T* var, T* slot0, T* slot1, const T* grad,
                     int64_t n) {
  // One loop per rule, the rule's variant chosen outside it.
  auto each = [&](auto&& step) {
    for (int64_t j = 0; j < n; ++j) {
      var[j] = decayed(var[j]);
      step(clipped(grad[j]), j);
    }
  };
  const bool nesterov = rules.p.nesterov;
  switch (rule) {
    case UpdateRule::kGradientDescent:
    case UpdateRule::kKerasGradientDescent:
      each([&](T g, int64_t j) { rules.GradientDescent(g, var + j); });
      break;
    case UpdateRule::kMomentum:
      if (nesterov) {
        each([&](T g, int64_t j) {
          rules.template Momentum<kForm, true>(g, var + j, slot0 + j);
        });
      } else {
        each([&](T g, int64_t j) {
          rules.template Momentum<kForm, false>(g, var + j, slot0 + j);
        });
      }
      break;
    case UpdateRule::kKerasMomentum:
      if (nesterov) {
        each([&](T g, int64_t j) {
          rules.template KerasMomentum<true>(g, var + j, slot0 + j);
        });
      } else {
        each([&](T g, int64_t j) {
          rules.template KerasMomentum<false>(g, var + j, slot0 + j);
        });
      }
      break;
    case UpdateRule::kAdagrad:
      each([&](T g, int64_t j) { rules.Adagrad(g, var + j, slot0 + j); });
      break;
    case UpdateRule::kKerasAdagrad:
      each([&](T g, int64_t j) { rules.KerasAdagrad(g, var + j, slot0 + j); });
      break;
    case UpdateRule::kAdam:
    case UpdateRule::kKerasAdam:
      if (nesterov) {
        each([&](T g, int64_t j) {
          rules.template Adam<true>(g, var + j, slot0 + j, slot1 + j);
        });
      } else {
        each([&](T g, int64_t j) {
          rules.template Adam<false>(g, var + j, slot0 + j, slot1 + j);
        });
      }
      break;
  }
}

// ApplyRunClipped with the decay chosen once per run: none, or Keras'
// decoupled weight decay. Keras writes var - var * weight_decay * lr; in a
// tf.function (model.fit) Grappler's constant push-down makes it
// var - var * (weight_decay * lr), the form computed here, in T. (Eager
// Keras can differ from it in the last place.)
template <typename T, Form kForm, typename Clip>
void ApplyRunDecayed(UpdateRule rule, const Rules<T>& rules, Clip clipped,
                     T* var, T* slot0, T* slot1, const T* grad, int64_t n) {
  if (rules.p.decay) {
    const T rate = rules.p.weight_decay * rules.p.lr;
    ApplyRunClipped<T, kForm>(
        rule, rules, clipped, [rate](T x) { return x - x * rate; }, var, slot0,
        slot1, grad, n);
  } else {
    ApplyRunClipped<T, kForm>(
        rule, rules, clipped, [](T x) { return x; }, var, slot0, slot1, grad,
        n);
  }
}

// ApplyRunDecayed with the clip's action chosen once per run, so that each
// loop is one straight (vectorizable) formula: g, g * scale in T, or NaN
// when the norm is not finite (as tf.clip_by_global_norm makes it).
template <typename T, Form kForm>
void ApplyRun(UpdateRule rule, const Rules<T>& rules,
              const GradientClip<T>& clip, T* var, T* slot0, T* slot1,
              const T* grad, int64_t n) {
  switch (clip.action) {
    case ClipAction::kScale: {
      const T scale = clip.scale;
      ApplyRunDecayed<T, kForm>(
          rule, rules, [scale](T g) { return g * scale; }, var, slot0, slot1,
          grad, n);
      break;
    }
    case ClipAction::kFillNaN:
      ApplyRunDecayed<T, kForm>(
          rule, rules, [](T) { return std::numeric_limits<T>::quiet_NaN(); },
          var, slot0, slot1, grad, n);
      break;
    default:
      ApplyRunDecayed<T, kForm>(
          rule, rules, [](T g) { return g; }, var, slot0, slot1, grad, n);
  }
}

template <typename T>
T* SlotAt(T* const* slots, int64_t i, int64_t offset) {
  return slots == nullptr ? nullptr : slots[i] + offset;
}

// TensorFlow's sparse Adam (tf.compat.v1.train.AdamOptimizer on
// IndexedSlices): the moments decay everywhere, the clipped rows are added,
// and every element of the variable takes the step. The optimizer writes
// v's rows as (g * g) * (1 - beta2), which Grappler's constant push-down
// turns into g * (g * (1 - beta2)) when beta2 is a constant (the usual
// case); this is that form. (Eager, or with a beta2 tensor that is not
// constant, TF's own v can differ from it in the last place.)
template <typename T>
void SparseAdamOne(const Rules<T>& rules, const GradientClip<T>& clip,
                   const SparseUpdateList<T>& list, int64_t i) {
  const UpdateParams<T>& p = rules.p;
  const int64_t row = list.row_sizes[i];
  const int64_t n = list.first_dims[i] * row;
  T* var = list.vars[i];
  T* m = list.slots[0][i];
  T* v = list.slots[1][i];
  for (int64_t j = 0; j < n; ++j) m[j] = m[j] * p.beta1;
  for (int64_t j = 0; j < n; ++j) v[j] = v[j] * p.beta2;
  for (int64_t r = 0; r < list.rows[i]; ++r) {
    const T* g = list.values[i] + r * row;
    const int64_t at = list.indices[i][r] * row;
    for (int64_t j = 0; j < row; ++j) {
      const T c = Clipped(clip, g[j]);
      m[at + j] = m[at + j] + c * rules.one_minus_beta1;
    }
  }
  for (int64_t r = 0; r < list.rows[i]; ++r) {
    const T* g = list.values[i] + r * row;
    const int64_t at = list.indices[i][r] * row;
    for (int64_t j = 0; j < row; ++j) {
      const T c = Clipped(clip, g[j]);
      v[at + j] = v[at + j] + c * (c * rules.one_minus_beta2);
    }
  }
  for (int64_t j = 0; j < n; ++j) {
    var[j] = var[j] - rules.alpha * m[j] / (Sqrt(v[j]) + p.epsilon);
  }
}

}  // namespace

template <typename T>
void ApplyDense(UpdateRule rule, const UpdateParams<T>& params,
                const GradientClip<T>& clip, const DenseUpdateList<T>& list,
                const ParallelFor& parallel_for) {
  const Rules<T> rules(rule, params);
  ParallelOverElements(Offsets(list.sizes, list.count), parallel_for,
                       [&](int64_t t, int64_t start, int64_t len) {
                         ApplyRun<T, Form::kDense>(
                             rule, rules, clip, list.vars[t] + start,
                             SlotAt(list.slots[0], t, start),
                             SlotAt(list.slots[1], t, start),
                             list.grads[t] + start, len);
                       });
}

template <typename T>
void ApplySparse(UpdateRule rule, const UpdateParams<T>& params,
                 const GradientClip<T>& clip, const SparseUpdateList<T>& list,
                 const ParallelFor& parallel_for) {
  const Rules<T> rules(rule, params);
  // A tensor's rows run in order on one thread (a row may repeat); the
  // tensors are spread over the threads.
  auto tensors = [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      if (rule == UpdateRule::kAdam) {
        SparseAdamOne(rules, clip, list, i);
        continue;
      }
      const int64_t row = list.row_sizes[i];
      for (int64_t r = 0; r < list.rows[i]; ++r) {
        const int64_t at = list.indices[i][r] * row;
        ApplyRun<T, Form::kSparse>(
            rule, rules, clip, list.vars[i] + at, SlotAt(list.slots[0], i, at),
            SlotAt(list.slots[1], i, at), list.values[i] + r * row, row);
      }
    }
  };
  int64_t elements = 0;
  for (int64_t i = 0; i < list.count; ++i) {
    elements += rule == UpdateRule::kAdam
                    ? list.first_dims[i] * list.row_sizes[i]
                    : list.rows[i] * list.row_sizes[i];
  }
  const int64_t per_tensor = elements / std::max<int64_t>(1, list.count) + 1;
  if (elements <= kSerialElements) {
    SerialFor(list.count, per_tensor, tensors);
  } else {
    parallel_for(list.count, per_tensor * 4, tensors);
  }
}

#define MONOLITH_OPS_INSTANTIATE(T, tf_name, gpu_dtype, S, ...)               \
  template void ApplyDense<T>(UpdateRule, const UpdateParams<T>&,             \
                              const GradientClip<T>&,                         \
                              const DenseUpdateList<T>&, const ParallelFor&); \
  template void ApplySparse<T>(                                               \
      UpdateRule, const UpdateParams<T>&, const GradientClip<T>&,             \
      const SparseUpdateList<T>&, const ParallelFor&);
MONOLITH_OPS_FOR_EACH_DTYPE(MONOLITH_OPS_INSTANTIATE)
#undef MONOLITH_OPS_INSTANTIATE

}  // namespace monolith_ops
