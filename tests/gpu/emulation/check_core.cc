// Copyright 2026 The monolith_ops Authors.
// SPDX-License-Identifier: Apache-2.0
// Runs the CUDA core's kernels on the CPU, under the emulation in
// cuda_runtime.h here, and checks them against plain loops: the sum of
// squares (against a long double sum), its bitwise independence from the
// grid size and from the tensors' alignment, and every clip output bit for
// bit against the CPU kernel's rule (clip_core.h's DecideClip, the scale cast
// to the element type, multiplied in float for 16-bit types, NaN for a
// non-finite norm), out of place and in place, fused or not.
//
// tests/test_cuda_build.py builds it: it rewrites the kernel launches of
// cc/kernels/clip_core_gpu.cu into EmulatedLaunch() calls, saves that as
// clip_core_gpu_emulated.inc and compiles this file with g++. Prints "ALL OK"
// and exits 0 when every check passes.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <random>
#include <vector>

#include "clip_core_gpu_emulated.inc"

namespace {

using monolith_ops::gpu::CopyTableToDevice;
using monolith_ops::gpu::DType;
using monolith_ops::gpu::kChunkElements;
using monolith_ops::gpu::LaunchClip;
using monolith_ops::gpu::LaunchClipFused;
using monolith_ops::gpu::LaunchSumOfSquares;
using monolith_ops::gpu::NumChunks;
using monolith_ops::gpu::PackTable;
using monolith_ops::gpu::TableBytes;
using monolith_ops::gpu::TensorTable;

int failures = 0;

#define EXPECT(cond, ...)                      \
  do {                                         \
    if (!(cond)) {                             \
      ++failures;                              \
      std::printf("FAIL line %d: ", __LINE__); \
      std::printf(__VA_ARGS__);                \
      std::printf("\n");                       \
    }                                          \
  } while (0)

// Element storage: float, double, or the bits of a half / bfloat16.
template <typename S>
double ToDouble(S x, DType d) {
  if (d == DType::kHalf) return __half2float(__ushort_as_half(x));
  if (d == DType::kBFloat16)
    return __uint_as_float(static_cast<uint32_t>(x) << 16);
  return static_cast<double>(x);
}

template <typename S>
S FromFloat(float v, DType d) {
  if (d == DType::kHalf) return __half_as_ushort(__float2half_rn(v));
  if (d == DType::kBFloat16)
    return __bfloat16_as_ushort(__float2bfloat16_rn(v));
  return static_cast<S>(v);
}

template <typename S>
S QuietNaN(DType d) {
  if (d == DType::kHalf) return 0x7e00;
  if (d == DType::kBFloat16) return 0x7fc0;
  return static_cast<S>(NAN);
}

// A tensor list in host memory; `shift` moves tensor i off its 64-byte
// aligned start by i % 3 elements.
template <typename S>
struct List {
  DType dtype;
  std::vector<int64_t> sizes;
  std::vector<std::vector<S>> storage;
  std::vector<const void*> data;

  List(DType d, const std::vector<int64_t>& n, bool shift)
      : dtype(d), sizes(n) {
    for (size_t i = 0; i < n.size(); ++i) {
      storage.emplace_back(n[i] + 64 / sizeof(S) + 3);
      S* base = storage.back().data();
      while (reinterpret_cast<uintptr_t>(base) % 64 != 0) ++base;
      data.push_back(base + (shift ? i % 3 : 0));
    }
  }
  S* at(size_t i) { return const_cast<S*>(static_cast<const S*>(data[i])); }
  void Fill(std::mt19937_64& rng, double scale) {
    std::normal_distribution<double> normal(0.0, scale);
    for (size_t i = 0; i < sizes.size(); ++i) {
      for (int64_t j = 0; j < sizes[i]; ++j) {
        at(i)[j] = FromFloat<S>(static_cast<float>(normal(rng)), dtype);
      }
    }
  }
  void CopyFrom(List& other) {
    for (size_t i = 0; i < sizes.size(); ++i) {
      std::memcpy(at(i), other.at(i), sizes[i] * sizeof(S));
    }
  }
  long double ReferenceSum() {
    long double sum = 0;
    for (size_t i = 0; i < sizes.size(); ++i) {
      for (int64_t j = 0; j < sizes[i]; ++j) {
        const long double v = ToDouble(at(i)[j], dtype);
        sum += v * v;
      }
    }
    return sum;
  }
};

// A packed table: "device" memory is host memory under the emulation.
struct Table {
  std::vector<int64_t> host, device;
  TensorTable table;
  std::vector<double> partials;

  Table(DType d, const std::vector<const void*>& in,
        const std::vector<void*>* out, const std::vector<int64_t>& sizes) {
    const size_t bytes = TableBytes(sizes.size(), out != nullptr);
    host.resize(bytes / 8 + 1);
    device.resize(bytes / 8 + 1);
    table = PackTable(d, in.data(), out != nullptr ? out->data() : nullptr,
                      sizes.data(), sizes.size(), host.data(), device.data());
    EXPECT(CopyTableToDevice(host.data(), device.data(), bytes, nullptr) == 0,
           "copy");
    EXPECT(table.num_chunks == NumChunks(d, sizes.data(), sizes.size()),
           "NumChunks %lld != %lld",
           (long long)NumChunks(d, sizes.data(), sizes.size()),
           (long long)table.num_chunks);
    partials.assign(table.num_chunks + 1, -1.0);
  }
};

template <typename Tn, typename S>
Tn Sum(List<S>& list, DType tnorm, int multiprocessors) {
  emulation::multiprocessors = multiprocessors;
  Table t(list.dtype, list.data, nullptr, list.sizes);
  Tn out = -1;
  EXPECT(
      LaunchSumOfSquares(t.table, tnorm, t.partials.data(), &out, nullptr) == 0,
      "LaunchSumOfSquares");
  return out;
}

// The CPU kernel's output for element x, given the norm and clip_norm.
template <typename S, typename Tn>
S Expected(S x, DType d, Tn norm, Tn clip_norm) {
  if (!(std::isfinite(clip_norm) && clip_norm > 0) || !std::isfinite(norm) ||
      norm < 0) {
    return QuietNaN<S>(d);
  }
  if (norm <= clip_norm) return x;
  const Tn inv_norm = Tn(1) / norm;
  const Tn inv_clip = Tn(1) / clip_norm;
  const Tn scale = clip_norm * (inv_norm < inv_clip ? inv_norm : inv_clip);
  if (d == DType::kDouble)
    return static_cast<S>(ToDouble(x, d) * static_cast<double>(scale));
  // float: cast to float; 16-bit: to the type through float, then back.
  const float s = static_cast<float>(
      ToDouble(FromFloat<S>(static_cast<float>(scale), d), d));
  return FromFloat<S>(static_cast<float>(ToDouble(x, d)) * s, d);
}

// Runs one clip into fresh outputs (or in place) and checks every element.
template <typename S, typename Tn>
void CheckClip(List<S>& list, DType tnorm, Tn norm, Tn clip_norm, bool fused,
               bool in_place, const char* what) {
  List<S> work(list.dtype, list.sizes, true);
  work.CopyFrom(list);
  List<S> out(list.dtype, list.sizes, false);
  for (size_t i = 0; i < list.sizes.size(); ++i) {
    for (int64_t j = 0; j < list.sizes[i]; ++j)
      out.at(i)[j] = FromFloat<S>(7.0f, list.dtype);
  }
  List<S>& target = in_place ? work : out;
  std::vector<void*> outputs;
  for (size_t i = 0; i < list.sizes.size(); ++i)
    outputs.push_back(target.at(i));
  Table t(list.dtype, work.data, &outputs, list.sizes);
  if (in_place) EXPECT(t.table.all_in_place, "%s: all_in_place", what);
  Tn used_norm = norm;
  if (fused) {
    Tn norm_out = -1;
    EXPECT(LaunchClipFused(t.table, tnorm, &clip_norm, t.partials.data(),
                           &norm_out, nullptr) == 0,
           "%s: LaunchClipFused", what);
    const Tn want = std::sqrt(static_cast<Tn>(list.ReferenceSum()));
    EXPECT(std::isnan(want) ? std::isnan(norm_out)
                            : std::fabs(norm_out - want) <= 1e-6 * want,
           "%s: fused norm %.9g, reference %.9g", what, (double)norm_out,
           (double)want);
    used_norm = norm_out;
  } else {
    EXPECT(LaunchClip(t.table, tnorm, &norm, nullptr,
                      static_cast<double>(clip_norm), nullptr) == 0,
           "%s: LaunchClip", what);
  }
  int64_t wrong = 0;
  for (size_t i = 0; i < list.sizes.size(); ++i) {
    for (int64_t j = 0; j < list.sizes[i]; ++j) {
      const S want = Expected(list.at(i)[j], list.dtype, used_norm, clip_norm);
      const S got = target.at(i)[j];
      if (std::memcmp(&want, &got, sizeof(S)) != 0) {
        if (wrong++ < 3) {
          std::printf("  %s: tensor %zu [%lld] = %.9g, want %.9g\n", what, i,
                      (long long)j, ToDouble(got, list.dtype),
                      ToDouble(want, list.dtype));
        }
      }
    }
  }
  EXPECT(wrong == 0, "%s: %lld wrong elements", what, (long long)wrong);
}

template <typename S>
void CheckDType(DType d, const char* name, std::mt19937_64& rng) {
  std::vector<std::vector<int64_t>> cases = {
      {},        {0},
      {0, 0, 0}, {1},
      {3, 0, 5}, {kChunkElements - 1, 2, kChunkElements + 3},
      {70001},   {7, 0, 40000, 1, 0, 9, 33000, 0},
  };
  std::vector<int64_t> many;
  std::uniform_int_distribution<int> small(0, 40);
  for (int i = 0; i < 3000; ++i) many.push_back(i % 17 == 0 ? 0 : small(rng));
  cases.push_back(many);
  for (const auto& sizes : cases) {
    List<S> aligned(d, sizes, false);
    aligned.Fill(rng, 3.0);
    List<S> shifted(d, sizes, true);
    shifted.CopyFrom(aligned);
    const double ref = static_cast<double>(aligned.ReferenceSum());
    const double a = Sum<double>(aligned, DType::kDouble, 3);
    const double b = Sum<double>(shifted, DType::kDouble, 1);
    const float f = Sum<float>(aligned, DType::kFloat, 2);
    EXPECT(std::fabs(a - ref) <= 1e-12 * ref,
           "%s, %zu tensors: sum %.17g, reference %.17g", name, sizes.size(), a,
           ref);
    EXPECT(
        std::memcmp(&a, &b, 8) == 0,
        "%s, %zu tensors: sum differs with alignment and grid: %.17g vs %.17g",
        name, sizes.size(), a, b);
    EXPECT(f == static_cast<float>(a), "%s: float sum %.9g, double sum %.9g",
           name, f, a);
    const double norm = std::sqrt(ref);
    for (bool in_place : {false, true}) {
      for (double clip : {norm * 0.5 + 1e-3, norm * 2 + 1.0}) {
        CheckClip<S, float>(shifted, DType::kFloat, static_cast<float>(norm),
                            static_cast<float>(clip), false, in_place,
                            "clip, float norm");
        CheckClip<S, double>(aligned, DType::kDouble, norm, clip, false,
                             in_place, "clip, double norm");
        CheckClip<S, float>(shifted, DType::kFloat, 0.0f,
                            static_cast<float>(clip), true, in_place,
                            "fused, float norm");
      }
      for (double bad_norm : {(double)INFINITY, (double)NAN, -1.0}) {
        CheckClip<S, double>(aligned, DType::kDouble, bad_norm, 1.0, false,
                             in_place, "clip by a bad norm");
      }
      for (double bad_clip : {0.0, -2.0, (double)INFINITY, (double)NAN}) {
        CheckClip<S, double>(aligned, DType::kDouble, 0.0, bad_clip, true,
                             in_place, "fused, bad clip_norm");
      }
    }
  }
  std::printf("%s: checked\n", name);
}

}  // namespace

int main() {
  std::mt19937_64 rng(20240607);
  CheckDType<float>(DType::kFloat, "float", rng);
  CheckDType<double>(DType::kDouble, "double", rng);
  CheckDType<unsigned short>(DType::kHalf, "half", rng);
  CheckDType<unsigned short>(DType::kBFloat16, "bfloat16", rng);
  {
    // A table without outputs cannot be clipped.
    List<float> list(DType::kFloat, {10}, false);
    Table t(DType::kFloat, list.data, nullptr, list.sizes);
    float norm = 1, clip = 1;
    EXPECT(
        LaunchClip(t.table, DType::kFloat, &norm, nullptr, 1.0, nullptr) != 0,
        "clip without outputs");
    EXPECT(LaunchClipFused(t.table, DType::kFloat, &clip, t.partials.data(),
                           &norm, nullptr) != 0,
           "fused clip without outputs");
  }
  std::printf(failures ? "%d FAILED\n" : "ALL OK\n", failures);
  return failures != 0;
}
