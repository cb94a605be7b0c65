// Copyright 2026 The monolith_ops Authors.
// SPDX-License-Identifier: Apache-2.0
// Op registrations for global-norm gradient clipping.
//
// Names, inputs and attrs follow Monolith's ops so that graphs written with
// them run unchanged; every attr added here has a default. The dtypes that
// attrs T and Tnorm allow come from the dtype tables (cc/core/dtypes.h);
// the Python package reads them back from these registrations.
#include <string>
#include <vector>

#include "cc/core/dtypes.h"
#include "tensorflow/core/framework/common_shape_fns.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace monolith_ops {

using ::tensorflow::Status;
using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;

namespace {

#define MONOLITH_OPS_TF_NAME(T, tf_name, gpu_dtype, ComputeT, ...) tf_name,
constexpr const char* kDTypeNames[] = {
    MONOLITH_OPS_FOR_EACH_DTYPE(MONOLITH_OPS_TF_NAME)};
constexpr const char* kNormDTypeNames[] = {
    MONOLITH_OPS_FOR_EACH_NORM_DTYPE(MONOLITH_OPS_TF_NAME)};
#undef MONOLITH_OPS_TF_NAME

// The spec of a type attr allowing `names`, defaulting to float:
// "T: {float, double, half, bfloat16} = DT_FLOAT" for kDTypeNames.
template <size_t kCount>
std::string TypeAttr(const char* attr, const char* const (&names)[kCount]) {
  std::string spec = std::string(attr) + ": {";
  for (size_t i = 0; i < kCount; ++i) {
    if (i > 0) spec += ", ";
    spec += names[i];
  }
  return spec + "} = DT_FLOAT";
}

std::string ElementTypeAttr() { return TypeAttr("T", kDTypeNames); }
// "T: list({float, double, half, bfloat16}) >= 0": a list whose tensors may
// each have any of the element types.
std::string ElementTypeListAttr() {
  std::string spec = "T: list({";
  for (size_t i = 0; i < sizeof kDTypeNames / sizeof kDTypeNames[0]; ++i) {
    if (i > 0) spec += ", ";
    spec += kDTypeNames[i];
  }
  return spec + "}) >= 0";
}
std::string NormTypeAttr() { return TypeAttr("Tnorm", kNormDTypeNames); }

// Outputs 0..n-1 take the shapes of inputs 0..n-1; the inputs after them
// must be scalars.
Status PassThroughShapes(InferenceContext* c, int n) {
  for (int input = n; input < c->num_inputs(); ++input) {
    ShapeHandle unused;
    TF_RETURN_IF_ERROR(c->WithRank(c->input(input), 0, &unused));
  }
  for (int i = 0; i < n; ++i) c->set_output(i, c->input(i));
  return Status();
}

// The clipped list (shapes of the inputs) and then the scalar norm.
Status ClippedListAndNormShapes(InferenceContext* c) {
  const int n = c->num_outputs() - 1;
  TF_RETURN_IF_ERROR(PassThroughShapes(c, n));
  c->set_output(n, c->Scalar());
  return Status();
}

// The global norm (a scalar) and the norms of the tensors (a vector with one
// element per tensor of the list, input 0).
Status NormsShapes(InferenceContext* c, int first_output) {
  c->set_output(first_output, c->Scalar());
  std::vector<::tensorflow::DataType> types;
  TF_RETURN_IF_ERROR(c->GetAttr("T", &types));
  c->set_output(first_output + 1,
                c->Vector(static_cast<int64_t>(types.size())));
  return Status();
}

constexpr char kNormKindAttr[] = "norm_type: {'l2', 'inf'} = 'l2'";

}  // namespace

REGISTER_OP("MonolithPackGradList")
    .Input("grad_list: N * T")
    .Input("packs: K * variant")
    .Output("pack: variant")
    .Attr("N: int >= 0")
    .Attr("K: int >= 0 = 0")
    .Attr(ElementTypeAttr())
    .SetShapeFn(::tensorflow::shape_inference::ScalarShape)
    .Doc(R"doc(
Holds `grad_list`, then the tensors of `packs` (references, no copy), as one
scalar variant, for MonolithPackedL2Reduce. A graph node with thousands of
inputs or outputs costs Grappler time quadratic in their number; packs (of
packs) let one reduction read a list of any length through nodes of a
bounded size. CPU kernels only.

grad_list: The tensors, all of dtype T.
packs: Outputs of MonolithPackGradList (their dtype is checked by
  MonolithPackedL2Reduce, since an op without grad_list has T's default).
pack: A scalar variant holding them all, in order.
)doc");

REGISTER_OP("GlobalL2Reduce")
    .Input("grad_list: N * T")
    // Monolith's name; the value is the squared norm (the sum of squares).
    .Output("global_norm: Tnorm")
    .Attr("N: int >= 0")
    .Attr(ElementTypeAttr())
    .Attr(NormTypeAttr())
    .SetShapeFn(::tensorflow::shape_inference::ScalarShape)
    .Doc(R"doc(
Sum of the squares of every element of every tensor in `grad_list`.

Despite the output's name (kept from Monolith), this is the square of the
global norm; its square root is the norm. The sum is accumulated in double
and rounded once to `Tnorm`. Blocks of elements are summed in a fixed order,
so the same inputs give bitwise the same result on every run.

grad_list: The tensors, all of dtype T. Empty tensors contribute 0.
global_norm: Scalar sum of squares, of dtype Tnorm.
)doc");

REGISTER_OP("MonolithPackedL2Reduce")
    .Input("packs: K * variant")
    .Output("sum_of_squares: Tnorm")
    .Attr("K: int >= 0")
    .Attr(ElementTypeAttr())
    .Attr(NormTypeAttr())
    .SetShapeFn(::tensorflow::shape_inference::ScalarShape)
    .Doc(R"doc(
GlobalL2Reduce of the tensors held by `packs`, in order: bitwise the result
of one GlobalL2Reduce of all of them. CPU kernels only.

packs: Scalar outputs of MonolithPackGradList, holding tensors of dtype T.
sum_of_squares: Scalar sum of squares, of dtype Tnorm.
)doc");

REGISTER_OP("MonolithClipByGlobalNorm")
    .Input("grad_list: N * T")
    .Input("global_norm: Tnorm")
    .Output("clip_grad_list: N * T")
    .Attr("clip_norm: float")
    .Attr("N: int >= 0")
    .Attr(ElementTypeAttr())
    .Attr(NormTypeAttr())
    .SetShapeFn([](InferenceContext* c) {
      const int n = c->num_outputs();
      return PassThroughShapes(c, n);
    })
    .Doc(R"doc(
Scales `grad_list` by clip_norm / max(global_norm, clip_norm).

The scale is computed in Tnorm as tf.clip_by_global_norm does,
clip_norm * min(1 / global_norm, 1 / clip_norm), then cast to T. When
global_norm <= clip_norm the outputs are the inputs (no copy). When
global_norm is inf or NaN every output is entirely NaN.

grad_list: The tensors to clip.
global_norm: Scalar norm of the list, >= 0 (inf and NaN allowed).
clip_norm: The clipping ratio; must be positive and finite.
clip_grad_list: The clipped tensors, with the shapes and dtype of grad_list.
)doc");

REGISTER_OP("MonolithClipByGlobalNormFused")
    .Input("grad_list: N * T")
    .Input("clip_norm: Tnorm")
    .Output("clipped: N * T")
    .Output("global_norm: Tnorm")
    .Attr("N: int >= 0")
    .Attr(ElementTypeAttr())
    .Attr(NormTypeAttr())
    .SetShapeFn(ClippedListAndNormShapes)
    .Doc(R"doc(
Computes the global norm of `grad_list` and clips it in one op.

global_norm = sqrt(sum of squares), the sum accumulated in double and
rounded to Tnorm before the square root, as GlobalL2Reduce does. The
clipped outputs are as MonolithClipByGlobalNorm gives for that norm.

grad_list: The tensors to clip.
clip_norm: Scalar clipping ratio; must be positive and finite.
clipped: The clipped tensors.
global_norm: The global norm of grad_list before clipping.
)doc");

REGISTER_OP("MonolithClipBySumOfSquares")
    .Input("grad_list: N * T")
    .Input("clip_norm: Tnorm")
    .Input("sum_of_squares: Tnorm")
    .Output("clipped: N * T")
    .Output("global_norm: Tnorm")
    .Attr("N: int >= 0")
    .Attr(ElementTypeAttr())
    .Attr(NormTypeAttr())
    .SetShapeFn(ClippedListAndNormShapes)
    .Doc(R"doc(
MonolithClipByGlobalNormFused with the sum of squares given: the global norm
is sqrt(sum_of_squares), and grad_list is only clipped. A long list is
clipped by several of these ops, each holding a bounded part of it, with the
sum of the whole list computed once (by MonolithPackedL2Reduce); the
results are bitwise those of one fused op. CPU kernels only.

grad_list: The tensors to clip.
clip_norm: Scalar clipping ratio; must be positive and finite.
sum_of_squares: Scalar >= 0, the sum of squares of the whole list.
clipped: The clipped tensors.
global_norm: sqrt(sum_of_squares).
)doc");

REGISTER_OP("MonolithGlobalNormV2")
    .Input("grad_list: T")
    .Input("inverse_scale: Tnorm")
    .Output("global_norm: Tnorm")
    .Output("tensor_norms: Tnorm")
    .Attr(ElementTypeListAttr())
    .Attr(NormTypeAttr())
    .Attr(kNormKindAttr)
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle unused;
      TF_RETURN_IF_ERROR(
          c->WithRank(c->input(c->num_inputs() - 1), 0, &unused));
      return NormsShapes(c, 0);
    })
    .Doc(R"doc(
The norm of each tensor of `grad_list` and of the whole list, in one pass over
the data, of the values times `inverse_scale`.

Each tensor is reduced on its own, in double: to the sum of its squares
(norm_type "l2") or its largest absolute value ("inf", NaN if it holds a
NaN). The list's reduction is the tensors' added (or their maximum) in list
order. A norm is sqrt(Tnorm(sum * inverse_scale^2)) for "l2" and
Tnorm(max * inverse_scale) for "inf". The tensors may have different element
types; the results do not depend on the number of threads.

grad_list: The tensors, each of any element type; empty ones have norm 0.
inverse_scale: Positive finite scalar (1 for none), such as the inverse of a
  loss scale.
global_norm: The norm of the whole list.
tensor_norms: Vector of the norms of the tensors, in order.
norm_type: "l2" or "inf".
)doc");

REGISTER_OP("MonolithClipByGlobalNormV2")
    .Input("grad_list: T")
    .Input("clip_norm: Tnorm")
    .Input("inverse_scale: Tnorm")
    .Output("clipped: T")
    .Output("global_norm: Tnorm")
    .Output("tensor_norms: Tnorm")
    .Attr(ElementTypeListAttr())
    .Attr(NormTypeAttr())
    .Attr(kNormKindAttr)
    .SetShapeFn([](InferenceContext* c) {
      const int n = c->num_inputs() - 2;
      TF_RETURN_IF_ERROR(PassThroughShapes(c, n));
      return NormsShapes(c, n);
    })
    .Doc(R"doc(
MonolithGlobalNormV2, then the clip of the unscaled list by its global norm,
in one op: clipped[i] = grad_list[i] * inverse_scale * clip_norm /
max(global_norm, clip_norm), where global_norm is the norm of the unscaled
values. With inverse_scale 1 the clip is MonolithClipByGlobalNormFused's
(the scale rounded to each tensor's type, outputs that are the inputs when
the norm is at most clip_norm); otherwise inverse_scale times the clip
factor multiplies each element in its compute type (float for float and the
16-bit types). When global_norm is inf or NaN every output is entirely NaN.

grad_list: The tensors, each of any element type.
clip_norm: Scalar clipping ratio; must be positive and finite.
inverse_scale: Scalar; must be positive and finite (1 for none).
clipped: The unscaled, clipped tensors.
global_norm: The global norm of the unscaled list, before clipping.
tensor_norms: Vector of the norms of the unscaled tensors, in order.
norm_type: "l2" or "inf".
)doc");

REGISTER_OP("MonolithCheckNormsFinite")
    .Input("global_norm: Tnorm")
    .Input("tensor_norms: Tnorm")
    .Output("checked_norm: Tnorm")
    .Attr(NormTypeAttr())
    .Attr("names: list(string) = []")
    // Stateful, as TensorFlow's Assert: graph optimizers must neither fold it
    // away on constant inputs nor drop the control edges on it.
    .SetIsStateful()
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle unused;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 0, &unused));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 1, &unused));
      c->set_output(0, c->Scalar());
      return Status();
    })
    .Doc(R"doc(
Passes `global_norm` through when it is finite; otherwise fails with
InvalidArgument naming the first tensor whose norm is not finite. Reads its
inputs on the host (on a GPU, through host memory).

global_norm: Scalar norm of a list.
tensor_norms: Vector of the norms of its tensors, as MonolithGlobalNormV2
  gives them (may be empty, for a norm that was given).
checked_norm: global_norm.
names: How the error names tensor i: names[i] when given, else "tensor i".
)doc");

}  // namespace monolith_ops
