// Copyright 2026 The monolith_ops Authors.
// SPDX-License-Identifier: Apache-2.0
// TensorFlow CPU kernels of the multi-tensor optimizer updates: thin adapters
// that look up and lock the variables, check the inputs, decide the clip and
// call the framework-free core (optimizer_core.h).

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <deque>
#include <string>
#include <utility>
#include <vector>

#include "cc/core/clip_decision.h"
#include "cc/core/dtypes.h"
#include "cc/core/optimizer_core.h"
#include "cc/tf/clip_adapter.h"
#include "cc/tf/cpu_threads.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/resource_mgr.h"
#include "tensorflow/core/framework/resource_var.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tensorflow/core/framework/types.h"

namespace monolith_ops {

using ::tensorflow::DEVICE_CPU;
using ::tensorflow::OpInputList;
using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Status;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;
using ::tensorflow::Var;
namespace errors = ::tensorflow::errors;

namespace {

// The names of a rule's slot inputs and hyperparameter inputs.
struct RuleInputs {
  std::vector<const char*> slots, hyper;
};

RuleInputs InputsOf(UpdateRule rule) {
  switch (rule) {
    case UpdateRule::kGradientDescent:
      return {{}, {"lr"}};
    case UpdateRule::kMomentum:
      return {{"accum"}, {"lr", "momentum"}};
    case UpdateRule::kAdagrad:
      return {{"accum"}, {"lr"}};
    case UpdateRule::kAdam:
      return {
          {"m", "v"},
          {"beta1_power", "beta2_power", "lr", "beta1", "beta2", "epsilon"}};
    case UpdateRule::kKerasGradientDescent:
      return {{}, {"lr", "weight_decay"}};
    case UpdateRule::kKerasMomentum:
      return {{"momentums"}, {"lr", "momentum", "weight_decay"}};
    case UpdateRule::kKerasAdagrad:
      return {{"accumulators"}, {"lr", "epsilon", "weight_decay"}};
    case UpdateRule::kKerasAdam:
      return {{"momentums", "velocities"},
              {"lr", "alpha", "one_minus_beta1", "one_minus_beta2", "epsilon",
               "weight_decay"}};
  }
  return {};
}

template <typename T>
Status ReadHyper(OpKernelContext* ctx, UpdateRule rule, UpdateParams<T>* p) {
  for (const char* name : InputsOf(rule).hyper) {
    const Tensor* t = nullptr;
    TF_RETURN_IF_ERROR(ctx->input(name, &t));
    TF_RETURN_IF_ERROR(CheckScalar(*t, name));
    const T value = t->scalar<T>()();
    const std::string n(name);
    if (n == "lr") p->lr = value;
    if (n == "momentum") p->momentum = value;
    if (n == "beta1") p->beta1 = value;
    if (n == "beta2") p->beta2 = value;
    if (n == "epsilon") p->epsilon = value;
    if (n == "beta1_power") p->beta1_power = value;
    if (n == "beta2_power") p->beta2_power = value;
    if (n == "alpha") p->alpha = value;
    if (n == "one_minus_beta1") p->one_minus_beta1 = value;
    if (n == "one_minus_beta2") p->one_minus_beta2 = value;
    if (n == "weight_decay") p->weight_decay = value;
  }
  return Status();
}

// The clip of the gradients for this global_norm and clip_norm (norm dtype
// Tn), or *skip when skip_nonfinite and the norm is not finite.
template <typename T, typename Tn>
Status DecideIn(OpKernelContext* ctx, bool clip, bool skip_nonfinite,
                GradientClip<T>* out, bool* skip) {
  const Tensor* norm_t = nullptr;
  const Tensor* clip_t = nullptr;
  TF_RETURN_IF_ERROR(ctx->input("global_norm", &norm_t));
  TF_RETURN_IF_ERROR(ctx->input("clip_norm", &clip_t));
  TF_RETURN_IF_ERROR(CheckScalar(*norm_t, "global_norm"));
  TF_RETURN_IF_ERROR(CheckScalar(*clip_t, "clip_norm"));
  const Tn norm = norm_t->scalar<Tn>()();
  *skip = skip_nonfinite && !IsFinite(norm);
  if (!clip || *skip) return Status();
  const Tn clip_norm = clip_t->scalar<Tn>()();
  TF_RETURN_IF_ERROR(CheckClipNorm(clip_norm));
  TF_RETURN_IF_ERROR(CheckGlobalNorm(norm));
  Tn scale = 0;
  out->action = DecideClip(norm, clip_norm, &scale);
  // As tf.clip_by_global_norm: the scale is cast to the tensor's dtype.
  out->scale = static_cast<T>(scale);
  return Status();
}

// The variables of one op call, looked up and locked in address order (as
// TensorFlow's training ops lock theirs).
class LockedVariables {
 public:
  // Looks up resource inputs [0, count), list k of them named
  // list_names[k]; fails on a dtype other than `dtype` or a variable passed
  // twice.
  Status Lookup(OpKernelContext* ctx, int count, int per_list,
                ::tensorflow::DataType dtype,
                const std::vector<std::string>& list_names) {
    auto name = [&](int i) {
      return list_names[i / per_list] + "[" + std::to_string(i % per_list) +
             "]";
    };
    // One lookup under one lock of the resource manager for a graph's
    // handles; one at a time, naming the input that fails, otherwise.
    std::vector<const ::tensorflow::ResourceHandle*> handles(count);
    bool batch = true;
    for (int i = 0; i < count; ++i) {
      handles[i] = &::tensorflow::HandleFromInput(ctx, i);
      batch = batch && !handles[i]->IsRefCounting();
    }
    // (LookupResources leaves a variable it does not find null.)
    batch = batch && ::tensorflow::LookupResources(ctx, handles, &vars_).ok();
    for (int i = 0; batch && i < count; ++i) batch = vars_[i] != nullptr;
    if (!batch) {
      vars_.clear();
      vars_.resize(count);
      for (int i = 0; i < count; ++i) {
        Status s = ::tensorflow::LookupResource(ctx, *handles[i], &vars_[i]);
        if (!s.ok()) {
          return errors::FailedPrecondition(name(i), ": ", s.message());
        }
      }
    }
    for (int i = 0; i < count; ++i) {
      if (vars_[i]->tensor()->dtype() != dtype) {
        return errors::InvalidArgument(
            name(i), " is a ",
            ::tensorflow::DataTypeString(vars_[i]->tensor()->dtype()),
            " variable; T is ", ::tensorflow::DataTypeString(dtype));
      }
    }
    std::vector<std::pair<Var*, int>> order(count);
    for (int i = 0; i < count; ++i) order[i] = {vars_[i].get(), i};
    std::sort(order.begin(), order.end());
    for (int i = 1; i < count; ++i) {
      if (order[i].first == order[i - 1].first) {
        const int a = std::min(order[i].second, order[i - 1].second);
        const int b = std::max(order[i].second, order[i - 1].second);
        return errors::InvalidArgument(
            name(b), " is the same variable as ", name(a),
            ": each variable and slot may appear once");
      }
    }
    // One mutex per variable: locked in address order, each once.
    for (const auto& entry : order) locks_.emplace_back(*entry.first->mu());
    return Status();
  }

  Var* at(int i) { return vars_[i].get(); }

 private:
  std::vector<::tensorflow::core::RefCountPtr<Var>> vars_;
  std::deque<::tensorflow::mutex_lock> locks_;
};

// Makes var's buffer this op's to write, as TensorFlow's training ops do: a
// dense update copies a buffer that a read still holds (or that reads copy,
// in copy-on-read mode); a sparse update, as TensorFlow's sparse training
// ops, switches the variable to copy-on-read mode (readers then copy, so
// the rows can be written in place) and copies only a buffer still shared.
// The caller holds var's mutex.
Status PrepareToWrite(OpKernelContext* ctx, Var* var, bool sparse) {
  Tensor* tensor = var->tensor();
  const bool copy =
      sparse ? !tensor->RefCountIsOne()
             : var->copy_on_read_mode.load() || !tensor->RefCountIsOne();
  if (copy) {
    ::tensorflow::AllocatorAttributes attr;
    attr.set_gpu_compatible(true);
    attr.set_nic_compatible(true);
    Tensor fresh;
    TF_RETURN_IF_ERROR(
        ctx->allocate_temp(tensor->dtype(), tensor->shape(), &fresh, attr));
    const auto bytes = tensor->tensor_data();
    if (!bytes.empty()) {
      std::memcpy(const_cast<char*>(fresh.tensor_data().data()), bytes.data(),
                  bytes.size());
    }
    *tensor = fresh;
  }
  if (sparse) var->copy_on_read_mode.store(true);
  return Status();
}

template <typename T, UpdateRule kRule, bool kSparse>
class MultiTensorApplyOp : public OpKernel {
 public:
  explicit MultiTensorApplyOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("clip", &clip_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("skip_nonfinite", &skip_nonfinite_));
    if (ctx->HasAttr("use_nesterov")) {
      OP_REQUIRES_OK(ctx, ctx->GetAttr("use_nesterov", &nesterov_));
    }
    if (ctx->HasAttr("decay")) {
      OP_REQUIRES_OK(ctx, ctx->GetAttr("decay", &decay_));
    }
  }

  void Compute(OpKernelContext* ctx) override {
    const RuleInputs inputs = InputsOf(kRule);
    const int slot_count = SlotCount(kRule);
    OpInputList vars, grads, indices;
    OP_REQUIRES_OK(ctx, ctx->input_list("var", &vars));
    OP_REQUIRES_OK(ctx, ctx->input_list(kSparse ? "values" : "grad", &grads));
    if (kSparse) OP_REQUIRES_OK(ctx, ctx->input_list("indices", &indices));
    const int n = vars.size();

    UpdateParams<T> params;
    OP_REQUIRES_OK(ctx, ReadHyper(ctx, kRule, &params));
    params.nesterov = nesterov_;
    params.decay = decay_;
    GradientClip<T> clip;
    bool skip = false;
    const ::tensorflow::DataType norm_dtype =
        ctx->input_dtype(ctx->num_inputs() - 2);
    if (norm_dtype == ::tensorflow::DT_DOUBLE) {
      OP_REQUIRES_OK(ctx, (DecideIn<T, double>(ctx, clip_, skip_nonfinite_,
                                               &clip, &skip)));
    } else {
      OP_REQUIRES_OK(
          ctx, (DecideIn<T, float>(ctx, clip_, skip_nonfinite_, &clip, &skip)));
    }

    std::vector<std::string> list_names = {"var"};
    for (const char* s : inputs.slots) list_names.push_back(s);
    LockedVariables locked;
    OP_REQUIRES_OK(
        ctx, locked.Lookup(ctx, n * (1 + slot_count), n,
                           ::tensorflow::DataTypeToEnum<T>::v(), list_names));

    // Checks every tensor before any is written.
    std::vector<int64_t> sizes(n), rows(n), row_sizes(n), first_dims(n);
    std::vector<std::vector<int64_t>> index_values(kSparse ? n : 0);
    for (int i = 0; i < n; ++i) {
      const Tensor& var = *locked.at(i)->tensor();
      for (int k = 0; k <= slot_count; ++k) {
        const Tensor& t = *locked.at(k * n + i)->tensor();
        OP_REQUIRES(ctx, t.IsInitialized(),
                    errors::FailedPrecondition(
                        "Attempting to use uninitialized variables: ",
                        list_names[k], "[", i, "]"));
        OP_REQUIRES(
            ctx, t.shape() == var.shape(),
            errors::InvalidArgument(list_names[k], "[", i, "] has shape ",
                                    t.shape().DebugString(), "; var[", i,
                                    "] has shape ", var.shape().DebugString()));
      }
      if (!kSparse) {
        OP_REQUIRES(
            ctx, grads[i].shape() == var.shape(),
            errors::InvalidArgument("grad[", i, "] has shape ",
                                    grads[i].shape().DebugString(), "; var[", i,
                                    "] has shape ", var.shape().DebugString()));
        sizes[i] = var.NumElements();
        continue;
      }
      OP_REQUIRES_OK(ctx,
                     CheckSparse(var, grads[i], indices[i], i, &index_values[i],
                                 &rows[i], &row_sizes[i], &first_dims[i]));
    }

    Tensor* applied = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, {}, &applied));
    applied->scalar<bool>()() = !skip;
    if (skip) return;

    std::vector<T*> var_ptrs(n), slot_ptrs[2];
    for (int k = 0; k <= slot_count; ++k) {
      std::vector<T*>& ptrs = k == 0 ? var_ptrs : slot_ptrs[k - 1];
      ptrs.resize(n);
      for (int i = 0; i < n; ++i) {
        Var* v = locked.at(k * n + i);
        OP_REQUIRES_OK(ctx, PrepareToWrite(ctx, v, kSparse));
        ptrs[i] = reinterpret_cast<T*>(
            const_cast<char*>(v->tensor()->tensor_data().data()));
      }
    }
    std::vector<const T*> grad_ptrs(n);
    for (int i = 0; i < n; ++i) {
      grad_ptrs[i] = reinterpret_cast<const T*>(grads[i].tensor_data().data());
    }
    if (!kSparse) {
      DenseUpdateList<T> list;
      list.count = n;
      list.vars = var_ptrs.data();
      for (int k = 0; k < slot_count; ++k) list.slots[k] = slot_ptrs[k].data();
      list.grads = grad_ptrs.data();
      list.sizes = sizes.data();
      ApplyDense(kRule, params, clip, list, WorkerThreads(ctx));
      return;
    }
    std::vector<const int64_t*> index_ptrs(n);
    for (int i = 0; i < n; ++i) index_ptrs[i] = index_values[i].data();
    SparseUpdateList<T> list;
    list.count = n;
    list.vars = var_ptrs.data();
    for (int k = 0; k < slot_count; ++k) list.slots[k] = slot_ptrs[k].data();
    list.values = grad_ptrs.data();
    list.indices = index_ptrs.data();
    list.rows = rows.data();
    list.row_sizes = row_sizes.data();
    list.first_dims = first_dims.data();
    ApplySparse(kRule, params, clip, list, WorkerThreads(ctx));
  }

 private:
  // Checks values[i] and indices[i] against var[i] and reads the indices.
  static Status CheckSparse(const Tensor& var, const Tensor& values,
                            const Tensor& indices, int i,
                            std::vector<int64_t>* index_values, int64_t* rows,
                            int64_t* row_size, int64_t* first_dim) {
    if (var.dims() < 1) {
      return errors::InvalidArgument("var[", i,
                                     "] must have at least one dimension for "
                                     "a sparse update, got shape ",
                                     var.shape().DebugString());
    }
    if (indices.dims() != 1) {
      return errors::InvalidArgument("indices[", i,
                                     "] must be a vector, got shape ",
                                     indices.shape().DebugString());
    }
    TensorShape want = var.shape();
    want.set_dim(0, indices.dim_size(0));
    if (values.shape() != want) {
      return errors::InvalidArgument("values[", i, "] has shape ",
                                     values.shape().DebugString(),
                                     "; with indices[", i, "] and var[", i,
                                     "] it must be ", want.DebugString());
    }
    *rows = indices.dim_size(0);
    *first_dim = var.dim_size(0);
    *row_size = *first_dim == 0 ? 0 : var.NumElements() / *first_dim;
    index_values->resize(*rows);
    for (int64_t r = 0; r < *rows; ++r) {
      const int64_t index = indices.dtype() == ::tensorflow::DT_INT32
                                ? indices.flat<int32_t>()(r)
                                : indices.flat<int64_t>()(r);
      if (index < 0 || index >= *first_dim) {
        return errors::InvalidArgument("indices[", i, "][", r, "] = ", index,
                                       " is not in [0, ", *first_dim, ")");
      }
      (*index_values)[r] = index;
    }
    return Status();
  }

  bool clip_ = false;
  bool skip_nonfinite_ = false;
  bool nesterov_ = false;
  bool decay_ = false;
};

#define MONOLITH_OPS_REGISTER_RULE(T, Rule)                                   \
  REGISTER_KERNEL_BUILDER(Name("MonolithMultiTensorApply" #Rule)              \
                              .Device(DEVICE_CPU)                             \
                              .TypeConstraint<T>("T"),                        \
                          MultiTensorApplyOp<T, UpdateRule::k##Rule, false>); \
  REGISTER_KERNEL_BUILDER(Name("MonolithMultiTensorSparseApply" #Rule)        \
                              .Device(DEVICE_CPU)                             \
                              .TypeConstraint<T>("T"),                        \
                          MultiTensorApplyOp<T, UpdateRule::k##Rule, true>);
#define MONOLITH_OPS_REGISTER_KERAS(T, Rule)                     \
  REGISTER_KERNEL_BUILDER(Name("MonolithMultiTensorApply" #Rule) \
                              .Device(DEVICE_CPU)                \
                              .TypeConstraint<T>("T"),           \
                          MultiTensorApplyOp<T, UpdateRule::k##Rule, false>);
#define MONOLITH_OPS_REGISTER_CPU(T, tf_name, gpu_dtype, ComputeT, ...) \
  MONOLITH_OPS_REGISTER_RULE(T, GradientDescent)                        \
  MONOLITH_OPS_REGISTER_RULE(T, Momentum)                               \
  MONOLITH_OPS_REGISTER_RULE(T, Adagrad)                                \
  MONOLITH_OPS_REGISTER_RULE(T, Adam)                                   \
  MONOLITH_OPS_REGISTER_KERAS(T, KerasGradientDescent)                  \
  MONOLITH_OPS_REGISTER_KERAS(T, KerasMomentum)                         \
  MONOLITH_OPS_REGISTER_KERAS(T, KerasAdagrad)                          \
  MONOLITH_OPS_REGISTER_KERAS(T, KerasAdam)
MONOLITH_OPS_FOR_EACH_DTYPE(MONOLITH_OPS_REGISTER_CPU)
#undef MONOLITH_OPS_REGISTER_CPU
#undef MONOLITH_OPS_REGISTER_KERAS
#undef MONOLITH_OPS_REGISTER_RULE

}  // namespace

}  // namespace monolith_ops
