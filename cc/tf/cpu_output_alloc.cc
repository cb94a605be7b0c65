// Copyright 2026 The monolith_ops Authors.
// SPDX-License-Identifier: Apache-2.0
// The CPU kernels' output allocation (see cpu_output_alloc.h).
#include "cc/tf/cpu_output_alloc.h"

#include <sys/mman.h>

#include <cstdint>
#include <vector>

#include "cc/tf/clip_adapter.h"
#include "cc/tf/cpu_tuning.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/types.h"

namespace monolith_ops {
namespace {

using ::tensorflow::Tensor;

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
// turns it off (HugePagesFromEnvironment(), cpu_tuning.h).
constexpr int64_t kHugePageMinBytes = int64_t{4} << 20;

// Advises the whole 2 MiB pages inside [data, data + bytes) to be huge pages.
// Only advice: it changes no data and is ignored where unsupported.
void AdviseHugePages(const char* data, int64_t bytes) {
#ifdef MADV_HUGEPAGE
  if (bytes < kHugePageMinBytes || !HugePagesFromEnvironment()) return;
  constexpr uintptr_t kHugePage = uintptr_t{2} << 20;
  const uintptr_t start = reinterpret_cast<uintptr_t>(data);
  const uintptr_t begin = (start + kHugePage - 1) & ~(kHugePage - 1);
  const uintptr_t end = (start + bytes) & ~(kHugePage - 1);
  if (end > begin) {
    madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
  }
#endif
}

}  // namespace

::tensorflow::Status AllocateCpuOutputs(::tensorflow::OpKernelContext* ctx,
                                        const ::tensorflow::OpInputList& list,
                                        void** out) {
  const int n = list.size();
  std::vector<bool> shared(n, false);
  int64_t shared_elements = 0;
  ::tensorflow::DataType dtype = ::tensorflow::DT_INVALID;
  int64_t element_bytes = 0;
  for (int i = 0; i < n; ++i) {
    const int64_t bytes = list[i].TotalBytes();
    // One shared buffer has one dtype: in a list of several (the V2 ops),
    // small outputs of the first small tensor's dtype share it.
    if (!list[i].RefCountIsOne() && bytes > 0 &&
        bytes <= kSharedOutputMaxBytes &&
        (dtype == ::tensorflow::DT_INVALID || dtype == list[i].dtype())) {
      shared[i] = true;
      dtype = list[i].dtype();
      element_bytes = ::tensorflow::DataTypeSize(dtype);
      shared_elements += AlignedElements(list[i].NumElements(), element_bytes);
      continue;
    }
    Tensor* t = nullptr;
    TF_RETURN_IF_ERROR(ForwardOrAllocateOutput(ctx, list, i, &t));
    if (t->tensor_data().data() != list[i].tensor_data().data()) {
      AdviseHugePages(t->tensor_data().data(), bytes);
    }
    out[i] = t->data();
  }
  if (shared_elements == 0) return ::tensorflow::Status();
  Tensor buffer;
  TF_RETURN_IF_ERROR(ctx->allocate_temp(dtype, {shared_elements}, &buffer));
  int64_t offset = 0;
  for (int i = 0; i < n; ++i) {
    if (!shared[i]) continue;
    const int64_t size = list[i].NumElements();
    Tensor output;
    if (!output.CopyFrom(buffer.Slice(offset, offset + size),
                         list[i].shape())) {
      return ::tensorflow::errors::Internal(
          "cannot reshape a slice of the output buffer");
    }
    out[i] = output.data();
    ctx->set_output(i, output);
    offset += AlignedElements(size, element_bytes);
  }
  return ::tensorflow::Status();
}

}  // namespace monolith_ops
