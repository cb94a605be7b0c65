// Copyright 2026 The monolith_ops Authors.
// SPDX-License-Identifier: Apache-2.0
// The environment variables that tune the CPU kernels, read once per
// process. The framework-free core reads none: the kernels pass what is read
// here down to it (CpuTuning) and to the output allocation.
//   MONOLITH_OPS_ISA              caps the core's loops: baseline, avx2 or
//                                 avx512 (another value is reported on
//                                 stderr and ignored)
//   MONOLITH_OPS_STREAM_MIN_BYTES outputs of at least this many bytes are
//                                 written with streaming stores
//   MONOLITH_OPS_HUGE_PAGES       0: large outputs are not advised onto huge
//                                 pages
// This file includes no TensorFlow header, so that the core's test
// (tests/cc/clip_core_test.cc) reads the same variables the same way.
#ifndef MONOLITH_OPS_CC_TF_CPU_TUNING_H_
#define MONOLITH_OPS_CC_TF_CPU_TUNING_H_

#include "cc/core/clip_core.h"

namespace monolith_ops {

// The core's tuning from MONOLITH_OPS_ISA and MONOLITH_OPS_STREAM_MIN_BYTES,
// read on the first call; unset or invalid values leave the core's defaults.
const CpuTuning& CpuTuningFromEnvironment();

// Whether large CPU outputs are advised onto huge pages: unless
// MONOLITH_OPS_HUGE_PAGES is 0. Read on the first call.
bool HugePagesFromEnvironment();

}  // namespace monolith_ops

#endif  // MONOLITH_OPS_CC_TF_CPU_TUNING_H_
