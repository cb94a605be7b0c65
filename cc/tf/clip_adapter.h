// Copyright 2026 The monolith_ops Authors.
// SPDX-License-Identifier: Apache-2.0
// What the CPU and GPU TensorFlow adapters of the clipping ops share: the
// checks of their scalar inputs and attrs, the forwarding of an input buffer
// to an output, and the kernel registration over the dtype table.
#ifndef MONOLITH_OPS_CC_TF_CLIP_ADAPTER_H_
#define MONOLITH_OPS_CC_TF_CLIP_ADAPTER_H_

#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "cc/core/clip_decision.h"
#include "cc/core/dtypes.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tensorflow/core/platform/denormal.h"

namespace monolith_ops {

// InvalidArgument unless `t` is a scalar; `name` is the input's name.
inline ::tensorflow::Status CheckScalar(const ::tensorflow::Tensor& t,
                                        const char* name) {
  if (::tensorflow::TensorShapeUtils::IsScalar(t.shape())) {
    return ::tensorflow::Status();
  }
  return ::tensorflow::errors::InvalidArgument(
      name, " must be a scalar, got shape ", t.shape().DebugString());
}

// Checks that `value`, the input or attr `name`, is positive and finite, on
// its bits: TensorFlow's threads flush denormals to zero, so a compare would
// take a denormal for 0 (the clip itself then computes as TensorFlow's ops
// do).
template <typename F>
::tensorflow::Status CheckPositiveFinite(F value, const char* name) {
  static_assert(sizeof(F) == 4 || sizeof(F) == 8, "float or double");
  using Bits =
      typename std::conditional<sizeof(F) == 4, uint32_t, uint64_t>::type;
  const F inf = std::numeric_limits<F>::infinity();
  Bits bits, inf_bits;
  std::memcpy(&bits, &value, sizeof bits);
  std::memcpy(&inf_bits, &inf, sizeof bits);
  // Positive and finite: sign bit clear, not +0, below +inf.
  if (bits != 0 && bits < inf_bits) return ::tensorflow::Status();
  ::tensorflow::port::ScopedDontFlushDenormal exact;  // to print the value
  return ::tensorflow::errors::InvalidArgument(
      name, " must be positive and finite, got ", static_cast<double>(value));
}

template <typename F>
::tensorflow::Status CheckClipNorm(F clip_norm) {
  return CheckPositiveFinite(clip_norm, "clip_norm");
}

// InvalidArgument unless the global norm a clip is given is non-negative
// (inf and NaN pass: the clip rule turns them into NaN outputs).
template <typename F>
::tensorflow::Status CheckGlobalNorm(F norm) {
  if (!(norm < F(0))) return ::tensorflow::Status();
  return ::tensorflow::errors::InvalidArgument(
      "global_norm must be non-negative, got ", static_cast<double>(norm));
}

// Reads and checks the float attr "clip_norm" of MonolithClipByGlobalNorm.
inline ::tensorflow::Status ReadClipNormAttr(
    ::tensorflow::OpKernelConstruction* ctx, float* clip_norm) {
  TF_RETURN_IF_ERROR(ctx->GetAttr("clip_norm", clip_norm));
  return CheckClipNorm(*clip_norm);
}

// Creates output i with the shape of list[i], in list[i]'s buffer where
// TensorFlow allows it. forward_input_* is costly, and paid per input on long
// lists; it can only succeed when this op holds the input's one reference, so
// it is tried only then.
inline ::tensorflow::Status ForwardOrAllocateOutput(
    ::tensorflow::OpKernelContext* ctx, const ::tensorflow::OpInputList& list,
    int i, ::tensorflow::Tensor** out) {
  if (list[i].RefCountIsOne()) {
    return ctx->forward_input_or_allocate_output({i}, i, list[i].shape(), out);
  }
  return ctx->allocate_output(i, list[i].shape(), out);
}

// Base of the kernels of ops with input list "grad_list": Compute reads the
// list and hands it to ComputeList.
class GradListOpKernel : public ::tensorflow::OpKernel {
 public:
  using ::tensorflow::OpKernel::OpKernel;

  void Compute(::tensorflow::OpKernelContext* ctx) final {
    ::tensorflow::OpInputList list;
    OP_REQUIRES_OK(ctx, ctx->input_list("grad_list", &list));
    ComputeList(ctx, list);
  }

 protected:
  virtual void ComputeList(::tensorflow::OpKernelContext* ctx,
                           const ::tensorflow::OpInputList& list) = 0;
};

// Reads the attr "norm_type" of the V2 ops.
inline ::tensorflow::Status ReadNormType(
    ::tensorflow::OpKernelConstruction* ctx, NormType* type) {
  std::string name;
  TF_RETURN_IF_ERROR(ctx->GetAttr("norm_type", &name));
  *type = name == "inf" ? NormType::kInf : NormType::kL2;
  return ::tensorflow::Status();
}

// MonolithCheckNormsFinite, on the host: on the CPU, and on a GPU with every
// argument in host memory.
template <typename Tn>
class CheckNormsFiniteOp : public ::tensorflow::OpKernel {
 public:
  explicit CheckNormsFiniteOp(::tensorflow::OpKernelConstruction* ctx)
      : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("names", &names_));
  }

  void Compute(::tensorflow::OpKernelContext* ctx) override {
    const ::tensorflow::Tensor& norm = ctx->input(0);
    const ::tensorflow::Tensor& tensor_norms = ctx->input(1);
    OP_REQUIRES_OK(ctx, CheckScalar(norm, "global_norm"));
    OP_REQUIRES(ctx,
                ::tensorflow::TensorShapeUtils::IsVector(tensor_norms.shape()),
                ::tensorflow::errors::InvalidArgument(
                    "tensor_norms must be a vector, got shape ",
                    tensor_norms.shape().DebugString()));
    const Tn value = norm.scalar<Tn>()();
    const auto norms = tensor_norms.vec<Tn>();
    // The tensors' norms first: a norm that was given (use_norm) may be
    // finite while a tensor's is not.
    for (int64_t i = 0; i < norms.size(); ++i) {
      if (IsFinite(norms(i))) continue;
      const std::string name = i < static_cast<int64_t>(names_.size())
                                   ? names_[i]
                                   : "tensor " + std::to_string(i);
      ctx->CtxFailure(::tensorflow::errors::InvalidArgument(
          name, " is not finite: its norm is ", static_cast<double>(norms(i)),
          " (it holds inf or NaN, or its norm overflows the norm's dtype)"));
      return;
    }
    OP_REQUIRES(
        ctx, IsFinite(value),
        ::tensorflow::errors::InvalidArgument(
            "the global norm is not finite: ", static_cast<double>(value),
            norms.size() > 0 ? ", although the norm of each tensor is" : ""));
    ctx->set_output(0, norm);
  }

 private:
  std::vector<std::string> names_;
};

}  // namespace monolith_ops

// Registers `Kernel...` (one class, commas allowed) for op `op` on `device`
// with attrs T and Tnorm.
#define MONOLITH_OPS_REGISTER_PAIR_KERNEL(op, device, T, NormT, ...)        \
  REGISTER_KERNEL_BUILDER(                                                  \
      Name(op).Device(device).TypeConstraint<T>("T").TypeConstraint<NormT>( \
          "Tnorm"),                                                         \
      __VA_ARGS__);

#endif  // MONOLITH_OPS_CC_TF_CLIP_ADAPTER_H_
