// Copyright 2026 The monolith_ops Authors.
// SPDX-License-Identifier: Apache-2.0
// TensorFlow CPU kernels for the clipping ops: thin adapters that unpack
// tensors, validate scalars and call the framework-free core (clip_core.h).
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "cc/core/clip_core.h"
#include "cc/core/dtypes.h"
#include "cc/tf/clip_adapter.h"
#include "cc/tf/cpu_output_alloc.h"
#include "cc/tf/cpu_threads.h"
#include "cc/tf/cpu_tuning.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tensorflow/core/framework/variant.h"
#include "tensorflow/core/framework/variant_encode_decode.h"
#include "tensorflow/core/framework/variant_op_registry.h"
#include "tensorflow/core/framework/variant_tensor_data.h"

namespace monolith_ops {

using ::tensorflow::DEVICE_CPU;
using ::tensorflow::OpInputList;
using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShapeUtils;
using ::tensorflow::Variant;
using ::tensorflow::VariantTensorData;
namespace errors = ::tensorflow::errors;

// The value of a MonolithPackGradList output: references to its inputs.
struct GradPack {
  std::vector<Tensor> tensors;

  std::string TypeName() const { return "MonolithGradPack"; }
  // The metadata holds the number of tensors, so that a decoded pack that
  // lost tensors (one whose proto did not parse) is refused, not taken for a
  // shorter pack.
  void Encode(VariantTensorData* data) const {
    data->set_type_name(TypeName());
    data->metadata_string() = std::to_string(tensors.size());
    for (const Tensor& t : tensors) *data->add_tensors() = t;
  }
  bool Decode(VariantTensorData data) {
    const std::string& count = data.metadata_string();
    if (count.empty() || count.size() > 18 ||
        count.find_first_not_of("0123456789") != std::string::npos ||
        std::stoll(count) != static_cast<long long>(data.tensors().size())) {
      return false;
    }
    for (const Tensor& t : data.tensors()) {
      if (!t.IsInitialized()) return false;
    }
    tensors = data.tensors();
    return true;
  }
  std::string DebugString() const {
    return "MonolithGradPack of " + std::to_string(tensors.size()) + " tensors";
  }
};

REGISTER_UNARY_VARIANT_DECODE_FUNCTION(GradPack, "MonolithGradPack");

namespace {

// Pointers and element counts of the "grad_list" inputs.
template <typename T>
struct GradList {
  GradList() = default;
  explicit GradList(const OpInputList& list) {
    data.reserve(list.size());
    sizes.reserve(list.size());
    for (const Tensor& t : list) Add(t);
  }
  // The op's type constraint (or the caller) has checked t's dtype.
  void Add(const Tensor& t) {
    data.push_back(reinterpret_cast<const T*>(t.tensor_data().data()));
    sizes.push_back(t.NumElements());
  }
  int64_t count() const { return static_cast<int64_t>(data.size()); }
  std::vector<const T*> data;
  std::vector<int64_t> sizes;
};

// Reads the scalar input `index`, named `name`.
template <typename Tn>
::tensorflow::Status ReadScalar(OpKernelContext* ctx, int index,
                                const char* name, Tn* value) {
  const Tensor& t = ctx->input(index);
  TF_RETURN_IF_ERROR(CheckScalar(t, name));
  *value = t.scalar<Tn>()();
  return ::tensorflow::Status();
}

// Sum of squares of the list, rounded to Tn.
template <typename T, typename Tn>
Tn SumOfSquaresOf(OpKernelContext* ctx, const GradList<T>& grads) {
  return static_cast<Tn>(SumOfSquares(grads.data.data(), grads.sizes.data(),
                                      grads.count(), WorkerThreads(ctx),
                                      CpuTuningFromEnvironment()));
}

// Writes outputs [0, N) of `ctx` as the clip of grad_list by `norm`.
template <typename T, typename Tn>
void ClipInto(OpKernelContext* ctx, const OpInputList& list,
              const GradList<T>& grads, Tn norm, Tn clip_norm) {
  OP_REQUIRES_OK(ctx, CheckGlobalNorm(norm));
  Tn scale = 0;
  const ClipAction action = DecideClip(norm, clip_norm, &scale);
  if (action == ClipAction::kPassThrough) {
    for (int i = 0; i < list.size(); ++i) ctx->set_output(i, list[i]);
    return;
  }
  std::vector<void*> raw(list.size());
  OP_REQUIRES_OK(ctx, AllocateCpuOutputs(ctx, list, raw.data()));
  std::vector<T*> out(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) out[i] = static_cast<T*>(raw[i]);
  if (action == ClipAction::kFillNaN) {
    FillNaN(out.data(), grads.sizes.data(), grads.count(), WorkerThreads(ctx));
    return;
  }
  // As tf.clip_by_global_norm: the scale is cast to the tensor's dtype first.
  using S = typename ComputeType<T>::type;
  const S s = static_cast<S>(static_cast<T>(scale));
  Scale(grads.data.data(), out.data(), grads.sizes.data(), grads.count(), s,
        WorkerThreads(ctx), CpuTuningFromEnvironment());
}

// Appends the tensors held by the "packs" inputs, in order, to `tensors`;
// all must be of dtype `want` unless that is DT_INVALID.
::tensorflow::Status AppendPacks(OpKernelContext* ctx,
                                 ::tensorflow::DataType want,
                                 std::vector<Tensor>* tensors) {
  OpInputList packs;
  TF_RETURN_IF_ERROR(ctx->input_list("packs", &packs));
  for (int i = 0; i < packs.size(); ++i) {
    const GradPack* pack = TensorShapeUtils::IsScalar(packs[i].shape())
                               ? packs[i].scalar<Variant>()().get<GradPack>()
                               : nullptr;
    if (pack == nullptr) {
      return errors::InvalidArgument(
          "packs[", i, "] must be a scalar MonolithPackGradList output");
    }
    for (const Tensor& t : pack->tensors) {
      if (want != ::tensorflow::DT_INVALID && t.dtype() != want) {
        return errors::InvalidArgument(
            "packs[", i, "] holds a ", ::tensorflow::DataTypeString(t.dtype()),
            " tensor; T is ", ::tensorflow::DataTypeString(want));
      }
      tensors->push_back(t);
    }
  }
  return ::tensorflow::Status();
}

template <typename T>
class PackGradListOp : public GradListOpKernel {
 public:
  using GradListOpKernel::GradListOpKernel;

  void ComputeList(OpKernelContext* ctx, const OpInputList& list) override {
    GradPack pack;
    pack.tensors.assign(list.begin(), list.end());
    // A pack of packs only (no grad_list) cannot set T: the reduction
    // checks the dtypes.
    OP_REQUIRES_OK(ctx,
                   AppendPacks(ctx, ::tensorflow::DT_INVALID, &pack.tensors));
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, {}, &out));
    out->scalar<Variant>()() = std::move(pack);
  }
};

template <typename T, typename Tn>
class GlobalL2ReduceOp : public GradListOpKernel {
 public:
  using GradListOpKernel::GradListOpKernel;

  void ComputeList(OpKernelContext* ctx, const OpInputList& list) override {
    Tensor* sum_of_squares = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, {}, &sum_of_squares));
    sum_of_squares->scalar<Tn>()() =
        SumOfSquaresOf<T, Tn>(ctx, GradList<T>(list));
  }
};

template <typename T, typename Tn>
class PackedL2ReduceOp : public OpKernel {
 public:
  explicit PackedL2ReduceOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    std::vector<Tensor> tensors;
    OP_REQUIRES_OK(
        ctx, AppendPacks(ctx, ::tensorflow::DataTypeToEnum<T>::v(), &tensors));
    GradList<T> grads;
    for (const Tensor& t : tensors) grads.Add(t);
    Tensor* sum_of_squares = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, {}, &sum_of_squares));
    sum_of_squares->scalar<Tn>()() = SumOfSquaresOf<T, Tn>(ctx, grads);
  }
};

template <typename T, typename Tn>
class ClipByGlobalNormOp : public GradListOpKernel {
 public:
  explicit ClipByGlobalNormOp(OpKernelConstruction* ctx)
      : GradListOpKernel(ctx) {
    float clip_norm = 0;
    OP_REQUIRES_OK(ctx, ReadClipNormAttr(ctx, &clip_norm));
    clip_norm_ = clip_norm;
  }

  void ComputeList(OpKernelContext* ctx, const OpInputList& list) override {
    Tn norm = 0;
    OP_REQUIRES_OK(ctx, ReadScalar(ctx, list.size(), "global_norm", &norm));
    ClipInto<T, Tn>(ctx, list, GradList<T>(list), norm, clip_norm_);
  }

 private:
  Tn clip_norm_ = 0;
};

// MonolithClipByGlobalNormFused, and MonolithClipBySumOfSquares (kGiven:
// the sum of squares is input 2 of the op, not computed).
template <typename T, typename Tn, bool kGiven>
class ClipByGlobalNormFusedOp : public GradListOpKernel {
 public:
  using GradListOpKernel::GradListOpKernel;

  void ComputeList(OpKernelContext* ctx, const OpInputList& list) override {
    Tn clip_norm = 0;
    OP_REQUIRES_OK(ctx, ReadScalar(ctx, list.size(), "clip_norm", &clip_norm));
    OP_REQUIRES_OK(ctx, CheckClipNorm(clip_norm));
    const GradList<T> grads(list);
    Tn sum = 0;
    if (!kGiven) {
      sum = SumOfSquaresOf<T, Tn>(ctx, grads);
    } else {
      OP_REQUIRES_OK(ctx,
                     ReadScalar(ctx, list.size() + 1, "sum_of_squares", &sum));
    }
    OP_REQUIRES(ctx, !(sum < 0),
                errors::InvalidArgument("sum_of_squares must be non-negative, "
                                        "got ",
                                        static_cast<double>(sum)));
    const Tn norm = std::sqrt(sum);
    Tensor* norm_out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(list.size(), {}, &norm_out));
    norm_out->scalar<Tn>()() = norm;
    ClipInto<T, Tn>(ctx, list, grads, norm, clip_norm);
  }
};

// Calls fn(static_cast<const T*>(nullptr), positions) for each element type
// T of the dtype table present in `list`, with the positions of its tensors:
// the V2 ops take lists of several dtypes (their type constraint has
// checked each one).
template <typename Fn>
void ForEachDTypeGroup(const OpInputList& list, Fn&& fn) {
#define MONOLITH_OPS_DTYPE_GROUP(T, tf_name, gpu_dtype, ComputeT, ...)     \
  {                                                                        \
    std::vector<int> positions;                                            \
    for (int i = 0; i < list.size(); ++i) {                                \
      if (list[i].dtype() == ::tensorflow::DataTypeToEnum<T>::v()) {       \
        positions.push_back(i);                                            \
      }                                                                    \
    }                                                                      \
    if (!positions.empty()) fn(static_cast<const T*>(nullptr), positions); \
  }
  MONOLITH_OPS_FOR_EACH_DTYPE(MONOLITH_OPS_DTYPE_GROUP)
#undef MONOLITH_OPS_DTYPE_GROUP
}

// What MonolithGlobalNormV2 and MonolithClipByGlobalNormV2 share: the norms
// of the list, written to outputs `first_output` (the global norm) and
// first_output + 1 (the tensors' norms).
template <typename Tn>
class NormsV2OpKernel : public GradListOpKernel {
 public:
  explicit NormsV2OpKernel(OpKernelConstruction* ctx) : GradListOpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ReadNormType(ctx, &type_));
  }

 protected:
  // Reads and checks the scalar input `inverse_scale`, at index `index`.
  ::tensorflow::Status ReadInverseScale(OpKernelContext* ctx, int index,
                                        Tn* inverse_scale) {
    TF_RETURN_IF_ERROR(ReadScalar(ctx, index, "inverse_scale", inverse_scale));
    return CheckPositiveFinite(*inverse_scale, "inverse_scale");
  }

  // Computes the norms of the unscaled list and writes them; *norm is the
  // global norm.
  ::tensorflow::Status WriteNorms(OpKernelContext* ctx, const OpInputList& list,
                                  Tn inverse_scale, int first_output,
                                  Tn* norm) {
    std::vector<double> reductions(list.size(), 0.0);
    ForEachDTypeGroup(list, [&](auto type_tag,
                                const std::vector<int>& positions) {
      using T = std::remove_const_t<std::remove_pointer_t<decltype(type_tag)>>;
      GradList<T> grads;
      for (int i : positions) grads.Add(list[i]);
      std::vector<double> group(positions.size());
      ReducePerTensor(grads.data.data(), grads.sizes.data(), grads.count(),
                      type_, group.data(), WorkerThreads(ctx),
                      CpuTuningFromEnvironment());
      for (size_t k = 0; k < positions.size(); ++k) {
        reductions[positions[k]] = group[k];
      }
    });
    Tensor* norm_out = nullptr;
    Tensor* tensor_norms = nullptr;
    TF_RETURN_IF_ERROR(ctx->allocate_output(first_output, {}, &norm_out));
    TF_RETURN_IF_ERROR(
        ctx->allocate_output(first_output + 1, {list.size()}, &tensor_norms));
    auto norms = tensor_norms->vec<Tn>();
    double combined = 0.0;
    for (int i = 0; i < list.size(); ++i) {
      norms(i) = UnscaledNorm(type_, reductions[i], inverse_scale);
      combined = CombineReductions(type_, combined, reductions[i]);
    }
    *norm = UnscaledNorm(type_, combined, inverse_scale);
    norm_out->scalar<Tn>()() = *norm;
    return ::tensorflow::Status();
  }

 private:
  NormType type_ = NormType::kL2;
};

template <typename Tn>
class GlobalNormV2Op : public NormsV2OpKernel<Tn> {
 public:
  using NormsV2OpKernel<Tn>::NormsV2OpKernel;

  void ComputeList(OpKernelContext* ctx, const OpInputList& list) override {
    Tn inverse_scale = 1;
    OP_REQUIRES_OK(ctx,
                   this->ReadInverseScale(ctx, list.size(), &inverse_scale));
    Tn norm = 0;
    OP_REQUIRES_OK(ctx, this->WriteNorms(ctx, list, inverse_scale, 0, &norm));
  }
};

template <typename Tn>
class ClipByGlobalNormV2Op : public NormsV2OpKernel<Tn> {
 public:
  using NormsV2OpKernel<Tn>::NormsV2OpKernel;

  void ComputeList(OpKernelContext* ctx, const OpInputList& list) override {
    Tn clip_norm = 0, inverse_scale = 1;
    OP_REQUIRES_OK(ctx, ReadScalar(ctx, list.size(), "clip_norm", &clip_norm));
    OP_REQUIRES_OK(ctx, CheckClipNorm(clip_norm));
    OP_REQUIRES_OK(
        ctx, this->ReadInverseScale(ctx, list.size() + 1, &inverse_scale));
    Tn norm = 0;
    OP_REQUIRES_OK(
        ctx, this->WriteNorms(ctx, list, inverse_scale, list.size(), &norm));
    Tn scale = 0;
    const ClipAction action =
        DecideUnscaledClip(norm, clip_norm, inverse_scale, &scale);
    if (action == ClipAction::kPassThrough) {
      for (int i = 0; i < list.size(); ++i) ctx->set_output(i, list[i]);
      return;
    }
    std::vector<void*> raw(list.size());
    OP_REQUIRES_OK(ctx, AllocateCpuOutputs(ctx, list, raw.data()));
    const bool through_element_type = ScaleThroughElementType(inverse_scale);
    ForEachDTypeGroup(list, [&](auto type_tag,
                                const std::vector<int>& positions) {
      using T = std::remove_const_t<std::remove_pointer_t<decltype(type_tag)>>;
      using S = typename ComputeType<T>::type;
      GradList<T> grads;
      std::vector<T*> out;
      for (int i : positions) {
        grads.Add(list[i]);
        out.push_back(static_cast<T*>(raw[i]));
      }
      if (action == ClipAction::kFillNaN) {
        FillNaN(out.data(), grads.sizes.data(), grads.count(),
                WorkerThreads(ctx));
        return;
      }
      const S s = through_element_type ? static_cast<S>(static_cast<T>(scale))
                                       : static_cast<S>(scale);
      Scale(grads.data.data(), out.data(), grads.sizes.data(), grads.count(), s,
            WorkerThreads(ctx), CpuTuningFromEnvironment());
    });
  }
};

// Every op for every (T, Tnorm) pair of the dtype tables.
#define MONOLITH_OPS_REGISTER_CPU(T, Tn)                                       \
  MONOLITH_OPS_REGISTER_PAIR_KERNEL("GlobalL2Reduce", DEVICE_CPU, T, Tn,       \
                                    GlobalL2ReduceOp<T, Tn>)                   \
  MONOLITH_OPS_REGISTER_PAIR_KERNEL("MonolithClipByGlobalNorm", DEVICE_CPU, T, \
                                    Tn, ClipByGlobalNormOp<T, Tn>)             \
  MONOLITH_OPS_REGISTER_PAIR_KERNEL("MonolithClipByGlobalNormFused",           \
                                    DEVICE_CPU, T, Tn,                         \
                                    ClipByGlobalNormFusedOp<T, Tn, false>)     \
  MONOLITH_OPS_REGISTER_PAIR_KERNEL("MonolithClipBySumOfSquares", DEVICE_CPU,  \
                                    T, Tn,                                     \
                                    ClipByGlobalNormFusedOp<T, Tn, true>)      \
  MONOLITH_OPS_REGISTER_PAIR_KERNEL("MonolithPackedL2Reduce", DEVICE_CPU, T,   \
                                    Tn, PackedL2ReduceOp<T, Tn>)
MONOLITH_OPS_FOR_EACH_DTYPE_PAIR(MONOLITH_OPS_REGISTER_CPU)
#undef MONOLITH_OPS_REGISTER_CPU

// The V2 ops (attr T a list of element types) and the finite check.
#define MONOLITH_OPS_REGISTER_CPU_V2(Tn, tf_name, gpu_dtype, ComputeT, ...) \
  REGISTER_KERNEL_BUILDER(Name("MonolithGlobalNormV2")                      \
                              .Device(DEVICE_CPU)                           \
                              .TypeConstraint<Tn>("Tnorm"),                 \
                          GlobalNormV2Op<Tn>);                              \
  REGISTER_KERNEL_BUILDER(Name("MonolithClipByGlobalNormV2")                \
                              .Device(DEVICE_CPU)                           \
                              .TypeConstraint<Tn>("Tnorm"),                 \
                          ClipByGlobalNormV2Op<Tn>);                        \
  REGISTER_KERNEL_BUILDER(Name("MonolithCheckNormsFinite")                  \
                              .Device(DEVICE_CPU)                           \
                              .TypeConstraint<Tn>("Tnorm"),                 \
                          CheckNormsFiniteOp<Tn>);
MONOLITH_OPS_FOR_EACH_NORM_DTYPE(MONOLITH_OPS_REGISTER_CPU_V2)
#undef MONOLITH_OPS_REGISTER_CPU_V2

// MonolithPackGradList has attr T only.
#define MONOLITH_OPS_REGISTER_PACK(T, tf_name, gpu_dtype, ComputeT, ...)      \
  REGISTER_KERNEL_BUILDER(                                                    \
      Name("MonolithPackGradList").Device(DEVICE_CPU).TypeConstraint<T>("T"), \
      PackGradListOp<T>);
MONOLITH_OPS_FOR_EACH_DTYPE(MONOLITH_OPS_REGISTER_PACK)
#undef MONOLITH_OPS_REGISTER_PACK

}  // namespace

}  // namespace monolith_ops
