// Copyright 2026 The monolith_ops Authors.
// SPDX-License-Identifier: Apache-2.0
// TensorFlow GPU kernels for the clipping ops: thin adapters that unpack
// tensors and call the framework-free CUDA core (clip_core_gpu.h).
//
// Compiled only in the CUDA build (setup.py with MONOLITH_OPS_CUDA=1), by the
// host compiler, against TensorFlow's headers alone: no CUDA header is needed
// here, and none of TensorFlow's GPU headers reaches nvcc.
//
// No kernel reads device memory from the host or waits for the device. The
// tensor list's table (pointers and sizes) goes to the kernels by value, as
// a kernel parameter, for a list of at most gpu::kMaxInlineTensors tensors
// (no host buffer, no copy, no event). A longer list's table is packed into
// pinned host memory, copied on the op's stream and released by
// TensorFlow's EventMgr once the stream has passed the copy, as
// TensorFlow's own GpuDeviceArrayOnHost does.
// Consequences, documented in docs/gpu.md:
// - When the norm is at most clip_norm the outputs are copies of the inputs
//   (or the inputs themselves where TensorFlow lets an input buffer be
//   forwarded), never aliases decided on the host.
// - Values that the CPU kernels reject with InvalidArgument after reading
//   them (a negative global_norm, a clip_norm tensor that is not positive and
//   finite) cannot raise here: they make every output NaN. So does an
//   inverse_scale that is not positive and finite (the V2 ops).
//
// The V2 ops (MonolithGlobalNormV2, MonolithClipByGlobalNormV2) take a list
// of several dtypes: it is split into one table per dtype at run time, each
// table holding its tensors' positions in the list, and every table's
// per-tensor reductions go into one array in list order, from which one
// launch finishes the norms. MonolithCheckNormsFinite runs on the host, its
// arguments in host memory: the norms are copied to the host only when the
// caller asks for the check (error_if_nonfinite).
#include <algorithm>
#include <cstdint>
#include <vector>

#include "cc/core/clip_core_gpu.h"
#include "cc/core/dtypes.h"
#include "cc/tf/clip_adapter.h"
#include "tensorflow/core/common_runtime/device/device_event_mgr.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_reference.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "xla/stream_executor/stream.h"

namespace monolith_ops {

using ::tensorflow::AllocatorAttributes;
using ::tensorflow::DEVICE_GPU;
using ::tensorflow::OpInputList;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Status;
using ::tensorflow::Tensor;
using ::tensorflow::TensorReference;
using ::tensorflow::TensorShape;
namespace errors = ::tensorflow::errors;

namespace {

// The CUDA core's DType of each C++ type of the dtype table.
template <typename T>
struct CoreDType;
#define MONOLITH_OPS_CORE_DTYPE(T, tf_name, gpu_dtype, ComputeT, ...) \
  template <>                                                         \
  struct CoreDType<T> {                                               \
    static constexpr gpu::DType value = gpu::DType::gpu_dtype;        \
  };
MONOLITH_OPS_FOR_EACH_DTYPE(MONOLITH_OPS_CORE_DTYPE)
#undef MONOLITH_OPS_CORE_DTYPE

::stream_executor::Stream* OpStream(OpKernelContext* ctx) {
  return ctx->op_device_context()->stream();
}

gpu::Stream CudaStream(OpKernelContext* ctx) {
  return static_cast<gpu::Stream>(
      OpStream(ctx)->platform_specific_handle().stream);
}

Status CudaStatus(int code, const char* what) {
  if (code == 0) return Status();
  return errors::Internal(
      what, " failed to launch on the GPU: ", gpu::ErrorString(code));
}

// The table of a tensor list, valid on the op's stream: by value for a
// short list, else in device memory.
class DeviceTable {
 public:
  // `outputs` is null for a reduction.
  Status Init(OpKernelContext* ctx, gpu::DType dtype, const OpInputList& list,
              const std::vector<void*>* outputs) {
    std::vector<const Tensor*> tensors;
    tensors.reserve(list.size());
    for (const Tensor& t : list) tensors.push_back(&t);
    return Init(ctx, dtype, tensors, outputs, nullptr);
  }

  // The table of `tensors`, all of `dtype`; `outputs` (one per tensor) is
  // null for a reduction. `positions`, when not null, gives each tensor's
  // position in the op's whole list, packed with the table.
  Status Init(OpKernelContext* ctx, gpu::DType dtype,
              const std::vector<const Tensor*>& tensors,
              const std::vector<void*>* outputs,
              const std::vector<int64_t>* positions) {
    std::vector<const void*> inputs;
    std::vector<int64_t> sizes;
    inputs.reserve(tensors.size());
    sizes.reserve(tensors.size());
    for (const Tensor* t : tensors) {
      inputs.push_back(t->data());
      sizes.push_back(t->NumElements());
    }
    const int64_t count = static_cast<int64_t>(tensors.size());
    void* const* out = outputs != nullptr ? outputs->data() : nullptr;
    const int64_t* pos = positions != nullptr ? positions->data() : nullptr;
    const size_t bytes =
        gpu::TableBytes(count, outputs != nullptr, positions != nullptr);
    if (bytes == 0) {
      // At most kMaxInlineTensors tensors (or none): the table is a kernel
      // parameter. Nothing is allocated, copied or released.
      table_ = gpu::PackTable(dtype, inputs.data(), out, sizes.data(), pos,
                              count, nullptr, nullptr);
      return Status();
    }
    // Checked before anything is copied: an error returned after the copy
    // was enqueued would free the pinned buffer while the copy reads it.
    auto* info = ctx->device()->tensorflow_accelerator_device_info();
    if (info == nullptr || info->event_mgr == nullptr) {
      return errors::Internal("no GPU event manager on device ",
                              ctx->device()->name());
    }
    const TensorShape shape({static_cast<int64_t>(bytes)});
    AllocatorAttributes pinned;
    pinned.set_on_host(true);
    pinned.set_gpu_compatible(true);
    Tensor host;
    TF_RETURN_IF_ERROR(
        ctx->allocate_temp(tensorflow::DT_INT8, shape, &host, pinned));
    TF_RETURN_IF_ERROR(
        ctx->allocate_temp(tensorflow::DT_INT8, shape, &device_));
    table_ = gpu::PackTable(dtype, inputs.data(), out, sizes.data(), pos, count,
                            host.data(), device_.data());
    TF_RETURN_IF_ERROR(CudaStatus(
        gpu::CopyTableToDevice(host.data(), device_.data(),
                               static_cast<size_t>(table_.device_bytes),
                               CudaStream(ctx)),
        "copying the tensor table"));
    // The copy may run after Compute returns: the pinned buffer is held
    // until the stream has passed it (info, checked before the copy).
    TensorReference ref(host);
    info->event_mgr->ThenExecute(OpStream(ctx), [ref]() { ref.Unref(); });
    return Status();
  }

  const gpu::TensorTable& table() const { return table_; }

 private:
  // A long list's table, freed with the op (TensorFlow orders its reuse on
  // the stream); empty for a table passed by value.
  Tensor device_;
  gpu::TensorTable table_;
};

// Outputs [0, N) shaped as grad_list, in the inputs' buffers where
// TensorFlow allows it (the kernel then scales in place, or writes nothing
// for a pass-through).
Status AllocateClipOutputs(OpKernelContext* ctx, const OpInputList& list,
                           std::vector<void*>* out) {
  out->resize(list.size());
  for (int i = 0; i < list.size(); ++i) {
    Tensor* t = nullptr;
    TF_RETURN_IF_ERROR(ForwardOrAllocateOutput(ctx, list, i, &t));
    (*out)[i] = t->data();
  }
  return Status();
}

template <typename T, typename Tn>
class GlobalL2ReduceGpuOp : public GradListOpKernel {
 public:
  using GradListOpKernel::GradListOpKernel;

  void ComputeList(OpKernelContext* ctx, const OpInputList& list) override {
    Tensor* sum_of_squares = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, {}, &sum_of_squares));
    DeviceTable table;
    OP_REQUIRES_OK(ctx, table.Init(ctx, CoreDType<T>::value, list, nullptr));
    Tensor partials;
    OP_REQUIRES_OK(ctx,
                   ctx->allocate_temp(tensorflow::DT_DOUBLE,
                                      {table.table().num_chunks}, &partials));
    OP_REQUIRES_OK(ctx, CudaStatus(gpu::LaunchSumOfSquares(
                                       table.table(), CoreDType<Tn>::value,
                                       partials.flat<double>().data(),
                                       sum_of_squares->data(), CudaStream(ctx)),
                                   "GlobalL2Reduce"));
  }
};

template <typename T, typename Tn>
class ClipByGlobalNormGpuOp : public GradListOpKernel {
 public:
  explicit ClipByGlobalNormGpuOp(OpKernelConstruction* ctx)
      : GradListOpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ReadClipNormAttr(ctx, &clip_norm_));
  }

  void ComputeList(OpKernelContext* ctx, const OpInputList& list) override {
    const Tensor& norm = ctx->input(list.size());
    OP_REQUIRES_OK(ctx, CheckScalar(norm, "global_norm"));
    std::vector<void*> outputs;
    OP_REQUIRES_OK(ctx, AllocateClipOutputs(ctx, list, &outputs));
    DeviceTable table;
    OP_REQUIRES_OK(ctx, table.Init(ctx, CoreDType<T>::value, list, &outputs));
    OP_REQUIRES_OK(
        ctx, CudaStatus(gpu::LaunchClip(table.table(), CoreDType<Tn>::value,
                                        norm.data(), nullptr, clip_norm_,
                                        CudaStream(ctx)),
                        "MonolithClipByGlobalNorm"));
  }

 private:
  float clip_norm_ = 0;
};

template <typename T, typename Tn>
class ClipByGlobalNormFusedGpuOp : public GradListOpKernel {
 public:
  using GradListOpKernel::GradListOpKernel;

  void ComputeList(OpKernelContext* ctx, const OpInputList& list) override {
    const Tensor& clip_norm = ctx->input(list.size());
    OP_REQUIRES_OK(ctx, CheckScalar(clip_norm, "clip_norm"));
    std::vector<void*> outputs;
    OP_REQUIRES_OK(ctx, AllocateClipOutputs(ctx, list, &outputs));
    Tensor* norm = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(list.size(), {}, &norm));
    DeviceTable table;
    OP_REQUIRES_OK(ctx, table.Init(ctx, CoreDType<T>::value, list, &outputs));
    Tensor partials;
    OP_REQUIRES_OK(ctx,
                   ctx->allocate_temp(tensorflow::DT_DOUBLE,
                                      {table.table().num_chunks}, &partials));
    OP_REQUIRES_OK(
        ctx, CudaStatus(gpu::LaunchClipFused(
                            table.table(), CoreDType<Tn>::value,
                            clip_norm.data(), partials.flat<double>().data(),
                            norm->data(), CudaStream(ctx)),
                        "MonolithClipByGlobalNormFused"));
  }
};

// The core's DType of a TensorFlow dtype of the dtype table.
bool CoreDTypeOf(::tensorflow::DataType dt, gpu::DType* out) {
#define MONOLITH_OPS_CORE_DTYPE_OF(T, tf_name, gpu_dtype, ComputeT, ...) \
  if (dt == ::tensorflow::DataTypeToEnum<T>::value) {                    \
    *out = gpu::DType::gpu_dtype;                                        \
    return true;                                                         \
  }
  MONOLITH_OPS_FOR_EACH_DTYPE(MONOLITH_OPS_CORE_DTYPE_OF)
#undef MONOLITH_OPS_CORE_DTYPE_OF
  return false;
}

// The tensors of one dtype of a list, with their positions in it.
struct DTypeGroup {
  gpu::DType dtype;
  std::vector<const Tensor*> tensors;
  std::vector<int64_t> positions;
  std::vector<void*> outputs;  // for a clip
};

// Splits `list` by dtype, in the order of the dtype table; `outputs` (one per
// tensor of the list, or null) follow their tensors.
Status GroupByDType(const OpInputList& list, const std::vector<void*>* outputs,
                    std::vector<DTypeGroup>* groups) {
  groups->clear();
  for (int i = 0; i < list.size(); ++i) {
    gpu::DType dtype;
    if (!CoreDTypeOf(list[i].dtype(), &dtype)) {
      return errors::InvalidArgument(
          "grad_list[", i, "] has dtype ",
          ::tensorflow::DataTypeString(list[i].dtype()),
          ", which these kernels do not take");
    }
    auto it =
        std::find_if(groups->begin(), groups->end(),
                     [&](const DTypeGroup& g) { return g.dtype == dtype; });
    if (it == groups->end()) {
      groups->push_back(DTypeGroup{dtype, {}, {}, {}});
      it = groups->end() - 1;
    }
    it->tensors.push_back(&list[i]);
    it->positions.push_back(i);
    if (outputs != nullptr) it->outputs.push_back((*outputs)[i]);
  }
  std::sort(groups->begin(), groups->end(),
            [](const DTypeGroup& a, const DTypeGroup& b) {
              return static_cast<int>(a.dtype) < static_cast<int>(b.dtype);
            });
  return Status();
}

// The norms of the V2 ops, on the op's stream: one table per dtype of the
// list (with outputs when `outputs` is given, for the clip that follows),
// per-tensor reductions into one array by list position, then the global
// norm and tensor_norms (of the values times *inverse_scale). `tables`
// receives the tables, valid on the stream.
Status ComputeNormsV2(OpKernelContext* ctx, const OpInputList& list,
                      NormType type, gpu::DType tnorm,
                      const std::vector<void*>* outputs,
                      const void* inverse_scale, void* global_norm,
                      void* tensor_norms, std::vector<DeviceTable>* tables,
                      std::vector<DTypeGroup>* groups) {
  TF_RETURN_IF_ERROR(GroupByDType(list, outputs, groups));
  tables->clear();
  tables->resize(groups->size());
  int64_t workspace_size = 1;
  for (size_t g = 0; g < groups->size(); ++g) {
    DTypeGroup& group = (*groups)[g];
    TF_RETURN_IF_ERROR((*tables)[g].Init(
        ctx, group.dtype, group.tensors,
        outputs != nullptr ? &group.outputs : nullptr, &group.positions));
    workspace_size =
        std::max(workspace_size, gpu::PerTensorWorkspace((*tables)[g].table()));
  }
  const int64_t count = list.size();
  Tensor per_tensor;
  TF_RETURN_IF_ERROR(ctx->allocate_temp(
      tensorflow::DT_DOUBLE, {std::max<int64_t>(1, count)}, &per_tensor));
  // One workspace for every table: they run one after another on the stream.
  Tensor workspace;
  TF_RETURN_IF_ERROR(
      ctx->allocate_temp(tensorflow::DT_DOUBLE, {workspace_size}, &workspace));
  const gpu::Stream stream = CudaStream(ctx);
  for (const DeviceTable& table : *tables) {
    TF_RETURN_IF_ERROR(CudaStatus(
        gpu::LaunchPerTensorReduce(table.table(), type,
                                   workspace.flat<double>().data(),
                                   per_tensor.flat<double>().data(), stream),
        "the per-tensor reduction"));
  }
  return CudaStatus(
      gpu::LaunchFinishNorms(type, tnorm, per_tensor.flat<double>().data(),
                             count, inverse_scale, global_norm,
                             count > 0 ? tensor_norms : nullptr, stream),
      "the norms");
}

template <typename Tn>
class GlobalNormV2GpuOp : public GradListOpKernel {
 public:
  explicit GlobalNormV2GpuOp(OpKernelConstruction* ctx)
      : GradListOpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ReadNormType(ctx, &type_));
  }

  void ComputeList(OpKernelContext* ctx, const OpInputList& list) override {
    const Tensor& inverse_scale = ctx->input(list.size());
    OP_REQUIRES_OK(ctx, CheckScalar(inverse_scale, "inverse_scale"));
    Tensor* global_norm = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, {}, &global_norm));
    Tensor* tensor_norms = nullptr;
    OP_REQUIRES_OK(ctx,
                   ctx->allocate_output(1, {static_cast<int64_t>(list.size())},
                                        &tensor_norms));
    std::vector<DeviceTable> tables;
    std::vector<DTypeGroup> groups;
    OP_REQUIRES_OK(
        ctx, ComputeNormsV2(ctx, list, type_, CoreDType<Tn>::value, nullptr,
                            inverse_scale.data(), global_norm->data(),
                            tensor_norms->data(), &tables, &groups));
  }

 private:
  NormType type_ = NormType::kL2;
};

template <typename Tn>
class ClipByGlobalNormV2GpuOp : public GradListOpKernel {
 public:
  explicit ClipByGlobalNormV2GpuOp(OpKernelConstruction* ctx)
      : GradListOpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ReadNormType(ctx, &type_));
  }

  void ComputeList(OpKernelContext* ctx, const OpInputList& list) override {
    const int n = list.size();
    const Tensor& clip_norm = ctx->input(n);
    const Tensor& inverse_scale = ctx->input(n + 1);
    OP_REQUIRES_OK(ctx, CheckScalar(clip_norm, "clip_norm"));
    OP_REQUIRES_OK(ctx, CheckScalar(inverse_scale, "inverse_scale"));
    std::vector<void*> outputs;
    OP_REQUIRES_OK(ctx, AllocateClipOutputs(ctx, list, &outputs));
    Tensor* global_norm = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(n, {}, &global_norm));
    Tensor* tensor_norms = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(n + 1, {static_cast<int64_t>(n)},
                                             &tensor_norms));
    std::vector<DeviceTable> tables;
    std::vector<DTypeGroup> groups;
    // The norms first, from the inputs, then the clip (which may write into
    // forwarded input buffers): both on the op's stream, in that order.
    OP_REQUIRES_OK(
        ctx, ComputeNormsV2(ctx, list, type_, CoreDType<Tn>::value, &outputs,
                            inverse_scale.data(), global_norm->data(),
                            tensor_norms->data(), &tables, &groups));
    for (const DeviceTable& table : tables) {
      OP_REQUIRES_OK(ctx, CudaStatus(gpu::LaunchClipUnscaled(
                                         table.table(), CoreDType<Tn>::value,
                                         global_norm->data(), clip_norm.data(),
                                         inverse_scale.data(), CudaStream(ctx)),
                                     "MonolithClipByGlobalNormV2"));
    }
  }

 private:
  NormType type_ = NormType::kL2;
};

// Every op with a GPU kernel for every (T, Tnorm) pair of the dtype tables.
#define MONOLITH_OPS_REGISTER_GPU(T, Tn)                                       \
  MONOLITH_OPS_REGISTER_PAIR_KERNEL("GlobalL2Reduce", DEVICE_GPU, T, Tn,       \
                                    GlobalL2ReduceGpuOp<T, Tn>)                \
  MONOLITH_OPS_REGISTER_PAIR_KERNEL("MonolithClipByGlobalNorm", DEVICE_GPU, T, \
                                    Tn, ClipByGlobalNormGpuOp<T, Tn>)          \
  MONOLITH_OPS_REGISTER_PAIR_KERNEL("MonolithClipByGlobalNormFused",           \
                                    DEVICE_GPU, T, Tn,                         \
                                    ClipByGlobalNormFusedGpuOp<T, Tn>)
MONOLITH_OPS_FOR_EACH_DTYPE_PAIR(MONOLITH_OPS_REGISTER_GPU)
#undef MONOLITH_OPS_REGISTER_GPU

// The V2 ops take a list of any dtypes of the table: one kernel per Tnorm.
// MonolithCheckNormsFinite reads its arguments on the host.
#define MONOLITH_OPS_REGISTER_V2_GPU(NormT, tf_name, gpu_dtype, ComputeT, ...) \
  REGISTER_KERNEL_BUILDER(Name("MonolithGlobalNormV2")                         \
                              .Device(DEVICE_GPU)                              \
                              .TypeConstraint<NormT>("Tnorm"),                 \
                          GlobalNormV2GpuOp<NormT>);                           \
  REGISTER_KERNEL_BUILDER(Name("MonolithClipByGlobalNormV2")                   \
                              .Device(DEVICE_GPU)                              \
                              .TypeConstraint<NormT>("Tnorm"),                 \
                          ClipByGlobalNormV2GpuOp<NormT>);                     \
  REGISTER_KERNEL_BUILDER(Name("MonolithCheckNormsFinite")                     \
                              .Device(DEVICE_GPU)                              \
                              .TypeConstraint<NormT>("Tnorm")                  \
                              .HostMemory("global_norm")                       \
                              .HostMemory("tensor_norms")                      \
                              .HostMemory("checked_norm"),                     \
                          CheckNormsFiniteOp<NormT>);
MONOLITH_OPS_FOR_EACH_NORM_DTYPE(MONOLITH_OPS_REGISTER_V2_GPU)
#undef MONOLITH_OPS_REGISTER_V2_GPU

}  // namespace

}  // namespace monolith_ops
