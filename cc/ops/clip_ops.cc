// Op registrations for global-norm gradient clipping.
//
// Names, inputs and attrs follow Monolith's ops so that graphs written with
// them run unchanged; every attr added here has a default.
#include "tensorflow/core/framework/common_shape_fns.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace monolith_ops {

using ::tensorflow::Status;
using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;

namespace {

// Outputs 0..n-1 take the shapes of inputs 0..n-1; `scalars` lists inputs
// that must be scalars.
Status PassThroughShapes(InferenceContext* c, int n,
                         std::initializer_list<int> scalars) {
  for (int input : scalars) {
    ShapeHandle unused;
    TF_RETURN_IF_ERROR(c->WithRank(c->input(input), 0, &unused));
  }
  for (int i = 0; i < n; ++i) c->set_output(i, c->input(i));
  return Status();
}

}  // namespace

REGISTER_OP("GlobalL2Reduce")
    .Input("grad_list: N * T")
    .Output("global_norm: Tnorm")
    .Attr("N: int >= 0")
    .Attr("T: {float, double, half, bfloat16} = DT_FLOAT")
    .Attr("Tnorm: {float, double} = DT_FLOAT")
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

REGISTER_OP("MonolithClipByGlobalNorm")
    .Input("grad_list: N * T")
    .Input("global_norm: Tnorm")
    .Output("clip_grad_list: N * T")
    .Attr("clip_norm: float")
    .Attr("N: int >= 0")
    .Attr("T: {float, double, half, bfloat16} = DT_FLOAT")
    .Attr("Tnorm: {float, double} = DT_FLOAT")
    .SetShapeFn([](InferenceContext* c) {
      const int n = c->num_outputs();
      return PassThroughShapes(c, n, {n});
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
    .Attr("T: {float, double, half, bfloat16} = DT_FLOAT")
    .Attr("Tnorm: {float, double} = DT_FLOAT")
    .SetShapeFn([](InferenceContext* c) {
      const int n = c->num_outputs() - 1;
      TF_RETURN_IF_ERROR(PassThroughShapes(c, n, {n}));
      c->set_output(n, c->Scalar());
      return Status();
    })
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

}  // namespace monolith_ops
