// Copyright 2026 The monolith_ops Authors.
// SPDX-License-Identifier: Apache-2.0
// The element types of the clipping ops, listed once.
//
// Every list of dtypes in the C++ and CUDA code expands from these tables:
// the op registrations' attr constraints (from which the Python package reads
// its dtypes), the CPU and GPU kernel registrations, the CPU core's template
// instantiations and compute types, and the CUDA core's DType enum and
// dispatchers. Adding a dtype is adding a row here (and its tests).
//
// This header includes nothing: a table names its C++ types as tokens, so it
// may be expanded where they are not declared (the CUDA core, which sees no
// Eigen header, uses only the other columns). Each table calls
// X(Type, tf_name, gpu_dtype, ComputeType, ...), one call a row, with the
// table's extra arguments passed on after the columns:
//   Type         the C++ element type, as TensorFlow's kernels see it;
//   tf_name      its name in an op's type attr ("float", "half", ...);
//   gpu_dtype    its enumerator in gpu::DType (clip_core_gpu.h);
//   ComputeType  the type the CPU core squares and scales it in.
// gpu::DType numbers the rows in order: new rows go at the end.
#ifndef MONOLITH_OPS_CC_CORE_DTYPES_H_
#define MONOLITH_OPS_CC_CORE_DTYPES_H_

// The element types: attr T of every clipping op.
#define MONOLITH_OPS_FOR_EACH_DTYPE(X, ...)         \
  X(float, "float", kFloat, float, __VA_ARGS__)     \
  X(double, "double", kDouble, double, __VA_ARGS__) \
  X(Eigen::half, "half", kHalf, float, __VA_ARGS__) \
  X(Eigen::bfloat16, "bfloat16", kBFloat16, float, __VA_ARGS__)

// The norm types, attr Tnorm: the rows of the element types that a norm or a
// sum of squares may have.
#define MONOLITH_OPS_FOR_EACH_NORM_DTYPE(X, ...) \
  X(float, "float", kFloat, float, __VA_ARGS__)  \
  X(double, "double", kDouble, double, __VA_ARGS__)

// Calls PAIR(T, NormT) for every element type T and norm type NormT: the
// kernels registered for ops with both attrs.
#define MONOLITH_OPS_FOR_EACH_DTYPE_PAIR(PAIR) \
  MONOLITH_OPS_FOR_EACH_DTYPE(MONOLITH_OPS_DTYPE_PAIR_ROW_, PAIR)
#define MONOLITH_OPS_DTYPE_PAIR_ROW_(T, tf_name, gpu_dtype, ComputeT, PAIR) \
  MONOLITH_OPS_FOR_EACH_NORM_DTYPE(MONOLITH_OPS_DTYPE_PAIR_CELL_, PAIR, T)
#define MONOLITH_OPS_DTYPE_PAIR_CELL_(NormT, tf_name, gpu_dtype, ComputeT, \
                                      PAIR, T)                             \
  PAIR(T, NormT)

#endif  // MONOLITH_OPS_CC_CORE_DTYPES_H_
