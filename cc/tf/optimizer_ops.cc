// Copyright 2026 The monolith_ops Authors.
// SPDX-License-Identifier: Apache-2.0
// Op registrations of the multi-tensor optimizer updates: one op updates a
// whole list of resource variables by one rule, with the global-norm clip
// folded in.
//
// Every op takes, after its variables, slots, gradients and hyperparameters:
//   global_norm, clip_norm (Tnorm scalars): with attr clip, each gradient is
//     multiplied by the scale tf.clip_by_global_norm would apply for this
//     norm, rounded to T; a norm that is not finite makes the gradients NaN,
//     as in TensorFlow. Without it they are read only by skip_nonfinite.
//   attr skip_nonfinite: a global_norm that is inf or NaN changes nothing.
// and returns `applied`, false when skip_nonfinite skipped the update.
#include <string>

#include "cc/core/dtypes.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace monolith_ops {

using ::tensorflow::Status;
using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;

namespace {

#define MONOLITH_OPS_TF_NAME(T, tf_name, gpu_dtype, ComputeT, ...) ", " tf_name
// "T: {float, double, half, bfloat16}" from the dtype table.
const std::string kTypeAttr =
    std::string("T: {") +
    (std::string(MONOLITH_OPS_FOR_EACH_DTYPE(MONOLITH_OPS_TF_NAME)).substr(2)) +
    "}";
const std::string kNormTypeAttr =
    std::string("Tnorm: {") +
    (std::string(MONOLITH_OPS_FOR_EACH_NORM_DTYPE(MONOLITH_OPS_TF_NAME))
         .substr(2)) +
    "} = DT_FLOAT";
#undef MONOLITH_OPS_TF_NAME

// The last kScalars inputs (hyperparameters, global_norm, clip_norm) must be
// scalars; the output is a scalar.
template <int kScalars>
Status ScalarInputs(InferenceContext* c) {
  for (int input = c->num_inputs() - kScalars; input < c->num_inputs();
       ++input) {
    ShapeHandle unused;
    TF_RETURN_IF_ERROR(c->WithRank(c->input(input), 0, &unused));
  }
  c->set_output(0, c->Scalar());
  return Status();
}

}  // namespace

// What every op ends with, after its hyperparameters (kScalars counts them
// with global_norm and clip_norm).
#define MONOLITH_OPS_CLIP_AND_ATTRS(kScalars) \
  Input("global_norm: Tnorm")                 \
      .Input("clip_norm: Tnorm")              \
      .Output("applied: bool")                \
      .Attr("N: int >= 0")                    \
      .Attr(kTypeAttr)                        \
      .Attr(kNormTypeAttr)                    \
      .Attr("clip: bool = false")             \
      .Attr("skip_nonfinite: bool = false")   \
      .Attr("use_locking: bool = false")      \
      .SetShapeFn(ScalarInputs<kScalars>)

REGISTER_OP("MonolithMultiTensorApplyGradientDescent")
    .Input("var: N * resource")
    .Input("grad: N * T")
    .Input("lr: T")
    .MONOLITH_OPS_CLIP_AND_ATTRS(3);

REGISTER_OP("MonolithMultiTensorSparseApplyGradientDescent")
    .Input("var: N * resource")
    .Input("values: N * T")
    .Input("indices: N * Tindices")
    .Input("lr: T")
    .Attr("Tindices: {int32, int64}")
    .MONOLITH_OPS_CLIP_AND_ATTRS(3);

REGISTER_OP("MonolithMultiTensorApplyMomentum")
    .Input("var: N * resource")
    .Input("accum: N * resource")
    .Input("grad: N * T")
    .Input("lr: T")
    .Input("momentum: T")
    .Attr("use_nesterov: bool = false")
    .MONOLITH_OPS_CLIP_AND_ATTRS(4);

REGISTER_OP("MonolithMultiTensorSparseApplyMomentum")
    .Input("var: N * resource")
    .Input("accum: N * resource")
    .Input("values: N * T")
    .Input("indices: N * Tindices")
    .Input("lr: T")
    .Input("momentum: T")
    .Attr("Tindices: {int32, int64}")
    .Attr("use_nesterov: bool = false")
    .MONOLITH_OPS_CLIP_AND_ATTRS(4);

REGISTER_OP("MonolithMultiTensorApplyAdagrad")
    .Input("var: N * resource")
    .Input("accum: N * resource")
    .Input("grad: N * T")
    .Input("lr: T")
    .MONOLITH_OPS_CLIP_AND_ATTRS(3);

REGISTER_OP("MonolithMultiTensorSparseApplyAdagrad")
    .Input("var: N * resource")
    .Input("accum: N * resource")
    .Input("values: N * T")
    .Input("indices: N * Tindices")
    .Input("lr: T")
    .Attr("Tindices: {int32, int64}")
    .MONOLITH_OPS_CLIP_AND_ATTRS(3);

REGISTER_OP("MonolithMultiTensorApplyAdam")
    .Input("var: N * resource")
    .Input("m: N * resource")
    .Input("v: N * resource")
    .Input("grad: N * T")
    .Input("beta1_power: T")
    .Input("beta2_power: T")
    .Input("lr: T")
    .Input("beta1: T")
    .Input("beta2: T")
    .Input("epsilon: T")
    .Attr("use_nesterov: bool = false")
    .MONOLITH_OPS_CLIP_AND_ATTRS(8);

REGISTER_OP("MonolithMultiTensorSparseApplyAdam")
    .Input("var: N * resource")
    .Input("m: N * resource")
    .Input("v: N * resource")
    .Input("values: N * T")
    .Input("indices: N * Tindices")
    .Input("beta1_power: T")
    .Input("beta2_power: T")
    .Input("lr: T")
    .Input("beta1: T")
    .Input("beta2: T")
    .Input("epsilon: T")
    .Attr("Tindices: {int32, int64}")
    .MONOLITH_OPS_CLIP_AND_ATTRS(8);

// Keras 3's rules (dense gradients). Each takes the hyperparameters as
// Keras' update_step computes them in the variable's type (alpha is Adam's
// lr * sqrt(1 - beta2^t) / (1 - beta1^t)), and weight_decay: with attr decay
// every variable first decays as Keras' weight_decay (AdamW) decays it,
// var -= var * weight_decay * lr.
REGISTER_OP("MonolithMultiTensorApplyKerasGradientDescent")
    .Input("var: N * resource")
    .Input("grad: N * T")
    .Input("lr: T")
    .Input("weight_decay: T")
    .Attr("decay: bool = false")
    .MONOLITH_OPS_CLIP_AND_ATTRS(4);

REGISTER_OP("MonolithMultiTensorApplyKerasMomentum")
    .Input("var: N * resource")
    .Input("momentums: N * resource")
    .Input("grad: N * T")
    .Input("lr: T")
    .Input("momentum: T")
    .Input("weight_decay: T")
    .Attr("use_nesterov: bool = false")
    .Attr("decay: bool = false")
    .MONOLITH_OPS_CLIP_AND_ATTRS(5);

REGISTER_OP("MonolithMultiTensorApplyKerasAdagrad")
    .Input("var: N * resource")
    .Input("accumulators: N * resource")
    .Input("grad: N * T")
    .Input("lr: T")
    .Input("epsilon: T")
    .Input("weight_decay: T")
    .Attr("decay: bool = false")
    .MONOLITH_OPS_CLIP_AND_ATTRS(5);

REGISTER_OP("MonolithMultiTensorApplyKerasAdam")
    .Input("var: N * resource")
    .Input("momentums: N * resource")
    .Input("velocities: N * resource")
    .Input("grad: N * T")
    .Input("lr: T")
    .Input("alpha: T")
    .Input("one_minus_beta1: T")
    .Input("one_minus_beta2: T")
    .Input("epsilon: T")
    .Input("weight_decay: T")
    .Attr("decay: bool = false")
    .MONOLITH_OPS_CLIP_AND_ATTRS(8);

#undef MONOLITH_OPS_CLIP_AND_ATTRS

}  // namespace monolith_ops
