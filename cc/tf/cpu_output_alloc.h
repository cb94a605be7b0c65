// Copyright 2026 The monolith_ops Authors.
// SPDX-License-Identifier: Apache-2.0
// How the CPU clipping kernels allocate their outputs. An input that nothing
// else holds becomes its own output (the clip then runs in place); small
// outputs are slices of one shared buffer; large ones are advised onto huge
// pages. (Whether an output is written with streaming stores is the core's
// choice: see CpuTuning in clip_core.h.)
#ifndef MONOLITH_OPS_CC_TF_CPU_OUTPUT_ALLOC_H_
#define MONOLITH_OPS_CC_TF_CPU_OUTPUT_ALLOC_H_

#include "tensorflow/core/framework/op_kernel.h"

namespace monolith_ops {

// Creates outputs [0, N) of `ctx` with the shapes and dtype of `list` and
// stores their data pointers in out[0, N).
::tensorflow::Status AllocateCpuOutputs(::tensorflow::OpKernelContext* ctx,
                                        const ::tensorflow::OpInputList& list,
                                        void** out);

}  // namespace monolith_ops

#endif  // MONOLITH_OPS_CC_TF_CPU_OUTPUT_ALLOC_H_
