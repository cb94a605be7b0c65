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
// tensor list's table (pointers and sizes) is packed into pinned host memory,
// copied on the op's stream and released by TensorFlow's EventMgr once the
// stream has passed the copy, as TensorFlow's own GpuDeviceArrayOnHost does.
// Consequences, documented in docs/gpu.md:
// - When the norm is at most clip_norm the outputs are copies of the inputs
//   (or the inputs themselves where TensorFlow lets an input buffer be
//   forwarded), never aliases decided on the host.
// - Values that the CPU kernels reject with InvalidArgument after reading
//   them (a negative global_norm, a clip_norm tensor that is not positive and
//   finite) cannot raise here: they make every output NaN.
#include <cstdint>
#include <vector>

#include "cc/kernels/clip_adapter.h"
#include "cc/kernels/clip_core_gpu.h"
#include "cc/kernels/dtypes.h"
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

// The device-side table of a tensor list, valid on the op's stream.
class DeviceTable {
 public:
  // `outputs` is null for a reduction.
  Status Init(OpKernelContext* ctx, gpu::DType dtype, const OpInputList& list,
              const std::vector<void*>* outputs) {
    std::vector<const void*> inputs;
    std::vector<int64_t> sizes;
    inputs.reserve(list.size());
    sizes.reserve(list.size());
    for (const Tensor& t : list) {
      inputs.push_back(t.data());
      sizes.push_back(t.NumElements());
    }
    const int64_t count = list.size();
    const size_t bytes = gpu::TableBytes(count, outputs != nullptr);
    void* const* out = outputs != nullptr ? outputs->data() : nullptr;
    if (bytes == 0) {
      table_ =
          gpu::PackTable(dtype, nullptr, nullptr, nullptr, 0, nullptr, nullptr);
      return Status();
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
    table_ = gpu::PackTable(dtype, inputs.data(), out, sizes.data(), count,
                            host.data(), device_.data());
    TF_RETURN_IF_ERROR(
        CudaStatus(gpu::CopyTableToDevice(host.data(), device_.data(), bytes,
                                          CudaStream(ctx)),
                   "copying the tensor table"));
    // The copy may run after Compute returns: hold the pinned buffer until
    // the stream has passed it.
    auto* info = ctx->device()->tensorflow_accelerator_device_info();
    if (info == nullptr || info->event_mgr == nullptr) {
      return errors::Internal("no GPU event manager on device ",
                              ctx->device()->name());
    }
    TensorReference ref(host);
    info->event_mgr->ThenExecute(OpStream(ctx), [ref]() { ref.Unref(); });
    return Status();
  }

  const gpu::TensorTable& table() const { return table_; }

 private:
  Tensor device_;  // freed with the op; TensorFlow orders reuse on the stream
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

}  // namespace

}  // namespace monolith_ops
