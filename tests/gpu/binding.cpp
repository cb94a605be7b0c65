// Copyright 2026 The monolith_ops Authors.
// SPDX-License-Identifier: Apache-2.0
// A small pybind11 module over the framework-free CUDA core, for the GPU check
// (check_gpu.py). Tensors are passed as device addresses (torch's data_ptr())
// and the stream as its handle (torch.cuda.current_stream().cuda_stream), so
// the module needs neither TensorFlow nor torch's C++ headers. nvcc compiles
// and links it with the core (the CUDA runtime linked statically).
#include <cuda_runtime.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cctype>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "cc/core/clip_core_gpu.h"
#include "cc/core/dtypes.h"

namespace py = pybind11;
namespace gpu = monolith_ops::gpu;

namespace {

gpu::Stream AsStream(uintptr_t stream) {
  return reinterpret_cast<gpu::Stream>(stream);
}

void Check(int code, const char* what) {
  if (code != 0) {
    throw std::runtime_error(std::string(what) + ": " + gpu::ErrorString(code));
  }
}

// The rows of the dtype table: attr name and the core's DType.
struct DTypeRow {
  const char* name;
  gpu::DType dtype;
};
#define MONOLITH_OPS_DTYPE_ROW(T, tf_name, gpu_dtype, ComputeT, ...) \
  DTypeRow{tf_name, gpu::DType::gpu_dtype},
constexpr DTypeRow kDTypes[] = {
    MONOLITH_OPS_FOR_EACH_DTYPE(MONOLITH_OPS_DTYPE_ROW)};
#undef MONOLITH_OPS_DTYPE_ROW

gpu::DType AsDType(int dtype) {
  for (const DTypeRow& row : kDTypes) {
    if (static_cast<int>(row.dtype) == dtype) return row.dtype;
  }
  throw std::invalid_argument("unknown dtype");
}

monolith_ops::NormType AsNormType(int type) {
  if (type == static_cast<int>(monolith_ops::NormType::kL2)) {
    return monolith_ops::NormType::kL2;
  }
  if (type == static_cast<int>(monolith_ops::NormType::kInf)) {
    return monolith_ops::NormType::kInf;
  }
  throw std::invalid_argument("unknown norm type");
}

}  // namespace

PYBIND11_MODULE(clip_core_gpu, m) {
  m.doc() = "The monolith_ops CUDA core, for checks without TensorFlow.";
  // FLOAT, DOUBLE, HALF, BFLOAT16, ...: each dtype's attr name, upper case.
  for (const DTypeRow& row : kDTypes) {
    std::string name = row.name;
    for (char& c : name) c = static_cast<char>(std::toupper(c));
    m.attr(name.c_str()) = static_cast<int>(row.dtype);
  }
  m.attr("CHUNK") = gpu::kChunkElements;
  m.attr("MAX_INLINE_TENSORS") = gpu::kMaxInlineTensors;
  m.attr("L2") = static_cast<int>(monolith_ops::NormType::kL2);
  m.attr("INF") = static_cast<int>(monolith_ops::NormType::kInf);

  py::class_<gpu::TensorTable>(m, "TensorTable")
      .def_readonly("count", &gpu::TensorTable::count)
      .def_readonly("num_chunks", &gpu::TensorTable::num_chunks)
      .def_readonly("padded_total", &gpu::TensorTable::padded_total)
      .def_readonly("all_in_place", &gpu::TensorTable::all_in_place)
      .def_readonly("device_bytes", &gpu::TensorTable::device_bytes)
      .def_property_readonly("by_value", [](const gpu::TensorTable& t) {
        return t.device_words == nullptr;
      });

  m.def("table_bytes", &gpu::TableBytes, py::arg("count"),
        py::arg("with_outputs"), py::arg("with_positions") = false);
  m.def(
      "num_chunks",
      [](int dtype, const std::vector<int64_t>& sizes) {
        return gpu::NumChunks(AsDType(dtype), sizes.data(),
                              static_cast<int64_t>(sizes.size()));
      },
      py::arg("dtype"), py::arg("sizes"));
  m.def(
      "pack_table",
      [](int dtype, const std::vector<uintptr_t>& inputs, py::object outputs,
         const std::vector<int64_t>& sizes, uintptr_t host, uintptr_t device,
         py::object positions) {
        if (inputs.size() != sizes.size()) {
          throw std::invalid_argument("inputs and sizes differ in length");
        }
        std::vector<const void*> in(inputs.size());
        for (size_t i = 0; i < inputs.size(); ++i) {
          in[i] = reinterpret_cast<const void*>(inputs[i]);
        }
        std::vector<void*> out;
        if (!outputs.is_none()) {
          for (uintptr_t p : outputs.cast<std::vector<uintptr_t>>()) {
            out.push_back(reinterpret_cast<void*>(p));
          }
          if (out.size() != in.size()) {
            throw std::invalid_argument("inputs and outputs differ in length");
          }
        }
        std::vector<int64_t> pos;
        if (!positions.is_none()) {
          pos = positions.cast<std::vector<int64_t>>();
          if (pos.size() != in.size()) {
            throw std::invalid_argument(
                "inputs and positions differ in length");
          }
        }
        return gpu::PackTable(
            AsDType(dtype), in.data(), outputs.is_none() ? nullptr : out.data(),
            sizes.data(), positions.is_none() ? nullptr : pos.data(),
            static_cast<int64_t>(sizes.size()), reinterpret_cast<void*>(host),
            reinterpret_cast<void*>(device));
      },
      py::arg("dtype"), py::arg("inputs"), py::arg("outputs"), py::arg("sizes"),
      py::arg("host"), py::arg("device"), py::arg("positions") = py::none(),
      "The table of a list: by value (host and device unused) for at most "
      "MAX_INLINE_TENSORS tensors, else packed into `host` for a copy of its "
      "device_bytes to `device`. `positions`: each entry's position in the "
      "whole list (None: entry i is position i).");
  m.def(
      "copy_table",
      [](uintptr_t host, uintptr_t device, size_t bytes, uintptr_t stream) {
        Check(gpu::CopyTableToDevice(reinterpret_cast<const void*>(host),
                                     reinterpret_cast<void*>(device), bytes,
                                     AsStream(stream)),
              "copy_table");
      },
      py::arg("host"), py::arg("device"), py::arg("bytes"), py::arg("stream"));
  m.def(
      "sum_of_squares",
      [](const gpu::TensorTable& table, int tnorm, uintptr_t partials,
         uintptr_t sum_out, uintptr_t stream) {
        Check(gpu::LaunchSumOfSquares(
                  table, AsDType(tnorm), reinterpret_cast<double*>(partials),
                  reinterpret_cast<void*>(sum_out), AsStream(stream)),
              "sum_of_squares");
      },
      py::arg("table"), py::arg("tnorm"), py::arg("partials"),
      py::arg("sum_out"), py::arg("stream"));
  m.def(
      "clip",
      [](const gpu::TensorTable& table, int tnorm, uintptr_t norm,
         uintptr_t clip_norm_ptr, double clip_norm_value, uintptr_t stream) {
        Check(gpu::LaunchClip(table, AsDType(tnorm),
                              reinterpret_cast<const void*>(norm),
                              reinterpret_cast<const void*>(clip_norm_ptr),
                              clip_norm_value, AsStream(stream)),
              "clip");
      },
      py::arg("table"), py::arg("tnorm"), py::arg("norm"),
      py::arg("clip_norm_ptr"), py::arg("clip_norm_value"), py::arg("stream"));
  m.def(
      "clip_fused",
      [](const gpu::TensorTable& table, int tnorm, uintptr_t clip_norm,
         uintptr_t partials, uintptr_t norm_out, uintptr_t stream) {
        Check(gpu::LaunchClipFused(table, AsDType(tnorm),
                                   reinterpret_cast<const void*>(clip_norm),
                                   reinterpret_cast<double*>(partials),
                                   reinterpret_cast<void*>(norm_out),
                                   AsStream(stream)),
              "clip_fused");
      },
      py::arg("table"), py::arg("tnorm"), py::arg("clip_norm"),
      py::arg("partials"), py::arg("norm_out"), py::arg("stream"));
  m.def("per_tensor_workspace", &gpu::PerTensorWorkspace, py::arg("table"));
  m.def(
      "per_tensor_reduce",
      [](const gpu::TensorTable& table, int norm_type, uintptr_t workspace,
         uintptr_t per_tensor, uintptr_t stream) {
        Check(gpu::LaunchPerTensorReduce(table, AsNormType(norm_type),
                                         reinterpret_cast<double*>(workspace),
                                         reinterpret_cast<double*>(per_tensor),
                                         AsStream(stream)),
              "per_tensor_reduce");
      },
      py::arg("table"), py::arg("norm_type"), py::arg("workspace"),
      py::arg("per_tensor"), py::arg("stream"));
  m.def(
      "finish_norms",
      [](int norm_type, int tnorm, uintptr_t per_tensor, int64_t count,
         uintptr_t inverse_scale, uintptr_t global_norm, uintptr_t tensor_norms,
         uintptr_t stream) {
        Check(gpu::LaunchFinishNorms(
                  AsNormType(norm_type), AsDType(tnorm),
                  reinterpret_cast<const double*>(per_tensor), count,
                  reinterpret_cast<const void*>(inverse_scale),
                  reinterpret_cast<void*>(global_norm),
                  reinterpret_cast<void*>(tensor_norms), AsStream(stream)),
              "finish_norms");
      },
      py::arg("norm_type"), py::arg("tnorm"), py::arg("per_tensor"),
      py::arg("count"), py::arg("inverse_scale"), py::arg("global_norm"),
      py::arg("tensor_norms"), py::arg("stream"));
  m.def(
      "clip_unscaled",
      [](const gpu::TensorTable& table, int tnorm, uintptr_t norm,
         uintptr_t clip_norm, uintptr_t inverse_scale, uintptr_t stream) {
        Check(
            gpu::LaunchClipUnscaled(
                table, AsDType(tnorm), reinterpret_cast<const void*>(norm),
                reinterpret_cast<const void*>(clip_norm),
                reinterpret_cast<const void*>(inverse_scale), AsStream(stream)),
            "clip_unscaled");
      },
      py::arg("table"), py::arg("tnorm"), py::arg("norm"), py::arg("clip_norm"),
      py::arg("inverse_scale"), py::arg("stream"));
  m.def("set_max_grid", &gpu::SetMaxGridForTesting, py::arg("blocks"),
        "Caps the grid of every chunk kernel launched afterwards at `blocks` "
        "(0: the computed grid), to show that results do not depend on it.");
  m.def(
      "device_count",
      []() {
        int n = 0;
        Check(cudaGetDeviceCount(&n), "no usable CUDA device");
        return n;
      },
      "Number of CUDA devices; raises RuntimeError when there is none or no "
      "driver.");
}
