// Copyright 2026 The monolith_ops Authors.
// SPDX-License-Identifier: Apache-2.0
// TensorFlow CPU kernels for the clipping ops: thin adapters that unpack
// tensors, validate scalars and call the framework-free core (clip_core.h).
#include <sys/mman.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "cc/kernels/clip_core.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tensorflow/core/framework/variant.h"
#include "tensorflow/core/framework/variant_encode_decode.h"
#include "tensorflow/core/framework/variant_op_registry.h"
#include "tensorflow/core/framework/variant_tensor_data.h"
#include "tensorflow/core/lib/core/threadpool.h"
#include "tensorflow/core/platform/denormal.h"

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
  void Encode(VariantTensorData* data) const {
    data->set_type_name(TypeName());
    for (const Tensor& t : tensors) *data->add_tensors() = t;
  }
  bool Decode(VariantTensorData data) {
    tensors = data.tensors();
    return true;
  }
  std::string DebugString() const {
    return "MonolithGradPack of " + std::to_string(tensors.size()) + " tensors";
  }
};

REGISTER_UNARY_VARIANT_DECODE_FUNCTION(GradPack, "MonolithGradPack");

namespace {

// The core's ParallelFor on this device's CPU worker threads.
ParallelFor WorkerThreads(OpKernelContext* ctx) {
  auto* pool = ctx->device()->tensorflow_cpu_worker_threads()->workers;
  return [pool](int64_t n, int64_t cost,
                const std::function<void(int64_t, int64_t)>& fn) {
    if (n <= 1) {
      SerialFor(n, cost, fn);
    } else {
      pool->ParallelFor(n, cost, fn);
    }
  };
}

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

template <typename Tn>
bool ReadScalar(OpKernelContext* ctx, int index, const char* name, Tn* value) {
  const Tensor& t = ctx->input(index);
  if (!TensorShapeUtils::IsScalar(t.shape())) {
    ctx->CtxFailure(errors::InvalidArgument(
        name, " must be a scalar, got shape ", t.shape().DebugString()));
    return false;
  }
  *value = t.scalar<Tn>()();
  return true;
}

// Checks that clip_norm is positive and finite, on its bits: TensorFlow's
// threads flush denormals to zero, so a compare would take a denormal
// clip_norm for 0 (the clip itself then computes as TensorFlow's ops do).
template <typename F>
::tensorflow::Status CheckClipNorm(F clip_norm) {
  static_assert(sizeof(F) == 4 || sizeof(F) == 8, "float or double");
  using Bits = typename std::conditional<sizeof(F) == 4, uint32_t,
                                        uint64_t>::type;
  const F inf = std::numeric_limits<F>::infinity();
  Bits bits, inf_bits;
  std::memcpy(&bits, &clip_norm, sizeof bits);
  std::memcpy(&inf_bits, &inf, sizeof bits);
  // Positive and finite: sign bit clear, not +0, below +inf.
  if (bits != 0 && bits < inf_bits) return ::tensorflow::Status();
  ::tensorflow::port::ScopedDontFlushDenormal exact;  // to print the value
  return errors::InvalidArgument("clip_norm must be positive and finite, got ",
                                 static_cast<double>(clip_norm));
}

// Sum of squares of the list, rounded to Tn.
template <typename T, typename Tn>
Tn SumOfSquaresOf(OpKernelContext* ctx, const GradList<T>& grads) {
  return static_cast<Tn>(SumOfSquares(grads.data.data(), grads.sizes.data(),
                                      grads.count(), WorkerThreads(ctx)));
}

// Outputs of at most this many bytes that cannot reuse their input share one
// allocation: for lists of many small tensors, allocating each output costs
// more than scaling it.
constexpr int64_t kSharedOutputMaxBytes = 64 << 10;

// Offset granularity of outputs inside the shared allocation, so that each
// starts as aligned as a tensor of its own (Eigen maps assume it).
constexpr int64_t kOutputAlignBytes = 64;

int64_t AlignedElements(int64_t n, int64_t element_bytes) {
  const int64_t per_unit = kOutputAlignBytes / element_bytes;
  return (n + per_unit - 1) / per_unit * per_unit;
}

// Outputs of at least this many bytes are backed by huge pages where the
// kernel allows it (Linux transparent huge pages in "madvise" mode). A large
// output is usually fresh memory that each 4 KiB page of faults in on first
// write: on a 64 MiB output the faults cost more than the clip itself.
// numpy advises its large arrays the same way. MONOLITH_OPS_HUGE_PAGES=0
// turns it off.
constexpr int64_t kHugePageMinBytes = int64_t{4} << 20;

bool HugePagesWanted() {
  static const bool wanted = [] {
    const char* env = std::getenv("MONOLITH_OPS_HUGE_PAGES");
    return env == nullptr || std::string(env) != "0";
  }();
  return wanted;
}

// Advises the whole 2 MiB pages inside [data, data + bytes) to be huge pages.
// Only advice: it changes no data and is ignored where unsupported.
void AdviseHugePages(const char* data, int64_t bytes) {
#ifdef MADV_HUGEPAGE
  if (bytes < kHugePageMinBytes || !HugePagesWanted()) return;
  constexpr uintptr_t kHugePage = uintptr_t{2} << 20;
  const uintptr_t start = reinterpret_cast<uintptr_t>(data);
  const uintptr_t begin = (start + kHugePage - 1) & ~(kHugePage - 1);
  const uintptr_t end = (start + bytes) & ~(kHugePage - 1);
  if (end > begin) {
    madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
  }
#endif
}

// Creates outputs [0, N) of `ctx` with the shapes of `list` and stores their
// data pointers in out[0, N). An input that nothing else holds is reused in
// place; small outputs are slices of one buffer; the others are allocated.
template <typename T>
::tensorflow::Status AllocateOutputs(OpKernelContext* ctx,
                                     const OpInputList& list, T** out) {
  const int n = list.size();
  std::vector<bool> shared(n, false);
  int64_t shared_elements = 0;
  for (int i = 0; i < n; ++i) {
    Tensor* t = nullptr;
    const int64_t bytes = list[i].TotalBytes();
    // forward_input_* is costly, and paid per input on long lists;
    // it can only succeed when this op holds the input's one reference.
    if (list[i].RefCountIsOne()) {
      TF_RETURN_IF_ERROR(ctx->forward_input_or_allocate_output(
          {i}, i, list[i].shape(), &t));
      if (t->tensor_data().data() != list[i].tensor_data().data()) {
        AdviseHugePages(t->tensor_data().data(), bytes);
      }
    } else if (bytes > 0 && bytes <= kSharedOutputMaxBytes) {
      shared[i] = true;
      shared_elements += AlignedElements(list[i].NumElements(), sizeof(T));
      continue;
    } else {
      TF_RETURN_IF_ERROR(ctx->allocate_output(i, list[i].shape(), &t));
      AdviseHugePages(t->tensor_data().data(), bytes);
    }
    out[i] = t->flat<T>().data();
  }
  if (shared_elements == 0) return ::tensorflow::Status();
  Tensor buffer;
  TF_RETURN_IF_ERROR(ctx->allocate_temp(::tensorflow::DataTypeToEnum<T>::v(),
                                        {shared_elements}, &buffer));
  int64_t offset = 0;
  for (int i = 0; i < n; ++i) {
    if (!shared[i]) continue;
    const int64_t size = list[i].NumElements();
    Tensor output;
    if (!output.CopyFrom(buffer.Slice(offset, offset + size),
                         list[i].shape())) {
      return errors::Internal("cannot reshape a slice of the output buffer");
    }
    out[i] = output.flat<T>().data();
    ctx->set_output(i, output);
    offset += AlignedElements(size, sizeof(T));
  }
  return ::tensorflow::Status();
}

// Writes outputs [0, N) of `ctx` as the clip of grad_list by `norm`.
template <typename T, typename Tn>
void ClipInto(OpKernelContext* ctx, const OpInputList& list,
              const GradList<T>& grads, Tn norm, Tn clip_norm) {
  if (norm < 0) {
    ctx->CtxFailure(errors::InvalidArgument(
        "global_norm must be non-negative, got ", static_cast<double>(norm)));
    return;
  }
  Tn scale = 0;
  const ClipAction action = DecideClip(norm, clip_norm, &scale);
  if (action == ClipAction::kPassThrough) {
    for (int i = 0; i < list.size(); ++i) ctx->set_output(i, list[i]);
    return;
  }
  std::vector<T*> out(list.size());
  OP_REQUIRES_OK(ctx, AllocateOutputs(ctx, list, out.data()));
  if (action == ClipAction::kFillNaN) {
    FillNaN(out.data(), grads.sizes.data(), grads.count(), WorkerThreads(ctx));
    return;
  }
  // As tf.clip_by_global_norm: the scale is cast to the tensor's dtype first.
  using S = typename ComputeType<T>::type;
  const S s = static_cast<S>(static_cast<T>(scale));
  Scale(grads.data.data(), out.data(), grads.sizes.data(), grads.count(), s,
        WorkerThreads(ctx));
}

// Appends the tensors held by the "packs" inputs, in order, to `tensors`;
// all must be of dtype `want` unless that is DT_INVALID.
::tensorflow::Status AppendPacks(OpKernelContext* ctx,
                                 ::tensorflow::DataType want,
                                 std::vector<Tensor>* tensors) {
  OpInputList packs;
  TF_RETURN_IF_ERROR(ctx->input_list("packs", &packs));
  for (int i = 0; i < packs.size(); ++i) {
    const GradPack* pack =
        TensorShapeUtils::IsScalar(packs[i].shape())
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
class PackGradListOp : public OpKernel {
 public:
  explicit PackGradListOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    OpInputList list;
    OP_REQUIRES_OK(ctx, ctx->input_list("grad_list", &list));
    GradPack pack;
    pack.tensors.assign(list.begin(), list.end());
    // A pack of packs only (no grad_list) cannot set T: the reduction
    // checks the dtypes.
    OP_REQUIRES_OK(ctx, AppendPacks(ctx, ::tensorflow::DT_INVALID,
                                    &pack.tensors));
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, {}, &out));
    out->scalar<Variant>()() = std::move(pack);
  }
};

template <typename T, typename Tn>
class GlobalL2ReduceOp : public OpKernel {
 public:
  explicit GlobalL2ReduceOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    OpInputList list;
    OP_REQUIRES_OK(ctx, ctx->input_list("grad_list", &list));
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, {}, &out));
    out->scalar<Tn>()() = SumOfSquaresOf<T, Tn>(ctx, GradList<T>(list));
  }
};

template <typename T, typename Tn>
class PackedL2ReduceOp : public OpKernel {
 public:
  explicit PackedL2ReduceOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    std::vector<Tensor> tensors;
    OP_REQUIRES_OK(ctx, AppendPacks(ctx, ::tensorflow::DataTypeToEnum<T>::v(),
                                    &tensors));
    GradList<T> grads;
    for (const Tensor& t : tensors) grads.Add(t);
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, {}, &out));
    out->scalar<Tn>()() = SumOfSquaresOf<T, Tn>(ctx, grads);
  }
};

template <typename T, typename Tn>
class ClipByGlobalNormOp : public OpKernel {
 public:
  explicit ClipByGlobalNormOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    float clip_norm = 0;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("clip_norm", &clip_norm));
    clip_norm_ = clip_norm;
    OP_REQUIRES_OK(ctx, CheckClipNorm(clip_norm));
  }

  void Compute(OpKernelContext* ctx) override {
    OpInputList list;
    OP_REQUIRES_OK(ctx, ctx->input_list("grad_list", &list));
    Tn norm = 0;
    if (!ReadScalar(ctx, list.size(), "global_norm", &norm)) return;
    ClipInto<T, Tn>(ctx, list, GradList<T>(list), norm, clip_norm_);
  }

 private:
  Tn clip_norm_;
};

// MonolithClipByGlobalNormFused, and MonolithClipBySumOfSquares (kGiven:
// the sum of squares is input 2 of the op, not computed).
template <typename T, typename Tn, bool kGiven>
class ClipByGlobalNormFusedOp : public OpKernel {
 public:
  explicit ClipByGlobalNormFusedOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    OpInputList list;
    OP_REQUIRES_OK(ctx, ctx->input_list("grad_list", &list));
    Tn clip_norm = 0;
    if (!ReadScalar(ctx, list.size(), "clip_norm", &clip_norm)) return;
    OP_REQUIRES_OK(ctx, CheckClipNorm(clip_norm));
    const GradList<T> grads(list);
    Tn sum = 0;
    if (!kGiven) {
      sum = SumOfSquaresOf<T, Tn>(ctx, grads);
    } else if (!ReadScalar(ctx, list.size() + 1, "sum_of_squares", &sum)) {
      return;
    }
    OP_REQUIRES(ctx, !(sum < 0),
                errors::InvalidArgument("sum_of_squares must be non-negative, "
                                        "got ", static_cast<double>(sum)));
    const Tn norm = std::sqrt(sum);
    Tensor* norm_out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(list.size(), {}, &norm_out));
    norm_out->scalar<Tn>()() = norm;
    ClipInto<T, Tn>(ctx, list, grads, norm, clip_norm);
  }
};

#define MONOLITH_OPS_REGISTER(T, Tn)                                     \
  REGISTER_KERNEL_BUILDER(Name("GlobalL2Reduce")                         \
                              .Device(DEVICE_CPU)                        \
                              .TypeConstraint<T>("T")                    \
                              .TypeConstraint<Tn>("Tnorm"),              \
                          GlobalL2ReduceOp<T, Tn>);                      \
  REGISTER_KERNEL_BUILDER(Name("MonolithClipByGlobalNorm")               \
                              .Device(DEVICE_CPU)                        \
                              .TypeConstraint<T>("T")                    \
                              .TypeConstraint<Tn>("Tnorm"),              \
                          ClipByGlobalNormOp<T, Tn>);                    \
  REGISTER_KERNEL_BUILDER(Name("MonolithClipByGlobalNormFused")          \
                              .Device(DEVICE_CPU)                        \
                              .TypeConstraint<T>("T")                    \
                              .TypeConstraint<Tn>("Tnorm"),              \
                          ClipByGlobalNormFusedOp<T, Tn, false>);         \
  REGISTER_KERNEL_BUILDER(Name("MonolithClipBySumOfSquares")             \
                              .Device(DEVICE_CPU)                        \
                              .TypeConstraint<T>("T")                    \
                              .TypeConstraint<Tn>("Tnorm"),              \
                          ClipByGlobalNormFusedOp<T, Tn, true>);         \
  REGISTER_KERNEL_BUILDER(Name("MonolithPackedL2Reduce")                 \
                              .Device(DEVICE_CPU)                        \
                              .TypeConstraint<T>("T")                    \
                              .TypeConstraint<Tn>("Tnorm"),              \
                          PackedL2ReduceOp<T, Tn>);

#define MONOLITH_OPS_REGISTER_ALL(T)                                      \
  REGISTER_KERNEL_BUILDER(                                                \
      Name("MonolithPackGradList").Device(DEVICE_CPU).TypeConstraint<T>("T"), \
      PackGradListOp<T>);                                                 \
  MONOLITH_OPS_REGISTER(T, float)                                         \
  MONOLITH_OPS_REGISTER(T, double)

MONOLITH_OPS_REGISTER_ALL(float)
MONOLITH_OPS_REGISTER_ALL(double)
MONOLITH_OPS_REGISTER_ALL(Eigen::half)
MONOLITH_OPS_REGISTER_ALL(Eigen::bfloat16)
#undef MONOLITH_OPS_REGISTER_ALL
#undef MONOLITH_OPS_REGISTER

}  // namespace

}  // namespace monolith_ops
