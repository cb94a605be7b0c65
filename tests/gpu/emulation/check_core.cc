// Copyright 2026 The monolith_ops Authors.
// SPDX-License-Identifier: Apache-2.0
// Runs the CUDA core's kernels on the CPU, under the emulation in
// cuda_runtime.h here, and checks them against plain loops: the sum of
// squares (against a long double sum), its bitwise independence from the
// grid size and from the tensors' alignment, and every clip output bit for
// bit against the CPU kernel's rule (clip_core.h's DecideClip, the scale cast
// to the element type, multiplied in float for 16-bit types, NaN for a
// non-finite norm), out of place and in place, fused or not; and the norms
// of the V2 ops: per-tensor reductions (sums of squares against long double
// sums, maxima bit for bit, NaN and inf, empty tensors, tables of several
// dtypes writing by list position, bitwise independence from the grid size),
// the finished norms with and without inverse_scale, and the clip with
// unscaling, every output bit for bit against the rule written out here;
// lists at the by-value threshold (kMaxInlineTensors - 1 and
// kMaxInlineTensors tensors by value, one more from a device table), of each
// dtype and of mixed dtypes, in place and not, with the table's layout (no
// sizes, no outputs in place, nothing copied by value); and the sum, the
// clip and the per-tensor reductions on grids of hundreds of blocks,
// bitwise as on a grid of 3. Each table's host copy outlives its
// copy to the "device", which the emulation runs only when the stream gets
// to it.
//
// tests/test_cuda_emulation.py builds it: it copies the CUDA core, rewrites
// its kernel launches into EmulatedLaunch() calls and its __shared__ arrays
// into emulation::Shared (cuda_runtime.h here), saves the .cu file as
// clip_core_gpu_emulated.inc and compiles this file with g++ and the address
// and alignment sanitizers. Runs under the schedule EMULATION_SCHEDULE names
// (cuda_runtime.h); prints a digest of every result (the same under every
// schedule), then "ALL OK", and exits 0 when every check passes.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "clip_core_gpu_emulated.inc"

namespace {

using monolith_ops::NormType;
using monolith_ops::gpu::CopyTableToDevice;
using monolith_ops::gpu::DType;
using monolith_ops::gpu::kChunkElements;
using monolith_ops::gpu::kMaxInlineTensors;
using monolith_ops::gpu::LaunchClip;
using monolith_ops::gpu::LaunchClipFused;
using monolith_ops::gpu::LaunchClipUnscaled;
using monolith_ops::gpu::LaunchFinishNorms;
using monolith_ops::gpu::LaunchPerTensorReduce;
using monolith_ops::gpu::LaunchSumOfSquares;
using monolith_ops::gpu::NumChunks;
using monolith_ops::gpu::PackTable;
using monolith_ops::gpu::PerTensorWorkspace;
using monolith_ops::gpu::TableBytes;
using monolith_ops::gpu::TensorTable;

int failures = 0;

// A digest of every result the kernels give (FNV-1a over their bytes): the
// test requires it to be the same under every schedule.
uint64_t digest = 0xcbf29ce484222325ull;
void Mix(const void* data, size_t bytes) {
  const unsigned char* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < bytes; ++i)
    digest = (digest ^ p[i]) * 0x100000001b3ull;
}

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
// aligned start by i % 3 elements. Each tensor has an allocation of its own
// that ends where the tensor does, so that AddressSanitizer (in the build
// under test) reports a read or write past a tensor's end.
template <typename S>
struct List {
  DType dtype;
  std::vector<int64_t> sizes;
  std::vector<void*> blocks;
  std::vector<const void*> data;

  List(DType d, const std::vector<int64_t>& n, bool shift)
      : dtype(d), sizes(n) {
    for (size_t i = 0; i < n.size(); ++i) {
      const size_t lead = shift ? i % 3 : 0;
      void* block = nullptr;
      if (posix_memalign(&block, 64, (lead + n[i]) * sizeof(S)) != 0 ||
          block == nullptr) {
        std::printf("out of memory\n");
        std::exit(1);
      }
      std::memset(block, 0, (lead + n[i]) * sizeof(S));
      blocks.push_back(block);
      data.push_back(static_cast<S*>(block) + lead);
    }
  }
  ~List() {
    for (void* block : blocks) std::free(block);
  }
  List(const List&) = delete;
  List& operator=(const List&) = delete;
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
  // Tensor i's reduction: its sum of squares in long double (kL2), or its
  // largest absolute value, NaN if it holds a NaN (kInf).
  long double ReferenceReduce(size_t i, NormType type) {
    long double r = 0;
    for (int64_t j = 0; j < sizes[i]; ++j) {
      const long double v = ToDouble(at(i)[j], dtype);
      if (type == NormType::kL2) {
        r += v * v;
      } else if (std::isnan(v) || std::isnan(r)) {
        r = NAN;
      } else {
        r = std::max(r, std::fabs(v));
      }
    }
    return r;
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

// A packed table: "device" memory is host memory under the emulation. A
// list of at most kMaxInlineTensors is held in the TensorTable (by value:
// nothing to copy); a longer one is copied from `host` to `device`.
struct Table {
  std::vector<int64_t> host, device;
  TensorTable table;
  std::vector<double> partials;

  Table(DType d, const std::vector<const void*>& in,
        const std::vector<void*>* out, const std::vector<int64_t>& sizes,
        const std::vector<int64_t>* positions = nullptr) {
    const int64_t count = sizes.size();
    const size_t bytes =
        TableBytes(count, out != nullptr, positions != nullptr);
    host.resize(bytes / 8 + 1);
    device.resize(bytes / 8 + 1);
    table = PackTable(d, in.data(), out != nullptr ? out->data() : nullptr,
                      sizes.data(),
                      positions != nullptr ? positions->data() : nullptr, count,
                      host.data(), device.data());
    const bool by_value = count <= kMaxInlineTensors;
    EXPECT(by_value == (bytes == 0) &&
               by_value == (table.device_words == nullptr) &&
               by_value == (table.device_bytes == 0),
           "%lld tensors: by value %d, %zu bytes, %lld copied",
           (long long)count, (int)by_value, bytes,
           (long long)table.device_bytes);
    // Sizes are never stored; outputs only where some output is not its
    // input (in place, the inputs' array serves); positions only where given.
    const bool outputs_stored = table.outputs_at > count + 1;
    const int64_t arrays =
        2 + (outputs_stored ? 1 : 0) + (table.positions_at != 0 ? 1 : 0);
    EXPECT(table.device_bytes == 0 ||
               table.device_bytes == (arrays * count + 1) * 8,
           "%lld tensors: %lld bytes copied", (long long)count,
           (long long)table.device_bytes);
    EXPECT(static_cast<size_t>(table.device_bytes) <= bytes,
           "device_bytes %lld > TableBytes %zu", (long long)table.device_bytes,
           bytes);
    EXPECT(
        outputs_stored == (out != nullptr && count > 0 && !table.all_in_place),
        "outputs stored in place (or not stored out of place)");
    EXPECT((table.outputs_at == count + 1) ==
               (out != nullptr && count > 0 && table.all_in_place),
           "in place, the outputs are not the inputs' array");
    EXPECT(CopyTableToDevice(host.data(), device.data(), table.device_bytes,
                             nullptr) == 0,
           "copy");
    EXPECT(table.num_chunks == NumChunks(d, sizes.data(), sizes.size()),
           "NumChunks %lld != %lld",
           (long long)NumChunks(d, sizes.data(), sizes.size()),
           (long long)table.num_chunks);
    partials.assign(table.num_chunks + 1, -1.0);
  }
  // The host table must outlive its copy, which the emulated stream runs
  // at the next launch or synchronization.
  ~Table() { cudaStreamSynchronize(nullptr); }
  Table(const Table&) = delete;
  Table& operator=(const Table&) = delete;
};

template <typename Tn, typename S>
Tn Sum(List<S>& list, DType tnorm, int multiprocessors) {
  emulation::multiprocessors = multiprocessors;
  Table t(list.dtype, list.data, nullptr, list.sizes);
  Tn out = -1;
  EXPECT(
      LaunchSumOfSquares(t.table, tnorm, t.partials.data(), &out, nullptr) == 0,
      "LaunchSumOfSquares");
  Mix(&out, sizeof out);
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

// A clip's inputs, a copy of `list`, and where it writes: fresh outputs
// filled with 7 (an element left unwritten shows), or the inputs themselves.
template <typename S>
struct ClipTargets {
  List<S> work, out;
  List<S>& target;
  std::vector<void*> outputs;

  ClipTargets(List<S>& list, bool in_place)
      : work(list.dtype, list.sizes, true),
        out(list.dtype, list.sizes, false),
        target(in_place ? work : out) {
    work.CopyFrom(list);
    for (size_t i = 0; i < list.sizes.size(); ++i) {
      for (int64_t j = 0; j < list.sizes[i]; ++j)
        out.at(i)[j] = FromFloat<S>(7.0f, list.dtype);
      outputs.push_back(target.at(i));
    }
  }
};

// Runs one clip into fresh outputs (or in place) and checks every element.
template <typename S, typename Tn>
void CheckClip(List<S>& list, DType tnorm, Tn norm, Tn clip_norm, bool fused,
               bool in_place, const char* what) {
  ClipTargets<S> targets(list, in_place);
  List<S>& target = targets.target;
  Table t(list.dtype, targets.work.data, &targets.outputs, list.sizes);
  EXPECT(t.table.outputs_at != 0 || list.sizes.empty(), "%s: outputs", what);
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
  for (size_t i = 0; i < list.sizes.size(); ++i)
    Mix(target.at(i), list.sizes[i] * sizeof(S));
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

// ------------------------------------------------------------- V2 norms

const char* TypeName(NormType type) {
  return type == NormType::kL2 ? "l2" : "inf";
}

bool SameDouble(double a, double b) {
  return (std::isnan(a) && std::isnan(b)) || std::memcmp(&a, &b, 8) == 0;
}

// Reduces one table per tensor into per_tensor (by list position when
// `positions` is given), on an emulated device of `multiprocessors`.
template <typename S>
int ReduceTable(List<S>& list, const std::vector<int64_t>* positions,
                NormType type, std::vector<double>* per_tensor,
                int multiprocessors) {
  emulation::multiprocessors = multiprocessors;
  Table t(list.dtype, list.data, nullptr, list.sizes, positions);
  std::vector<double> workspace(PerTensorWorkspace(t.table) + 1, -7.0);
  const int status = LaunchPerTensorReduce(t.table, type, workspace.data(),
                                           per_tensor->data(), nullptr);
  Mix(per_tensor->data(), per_tensor->size() * sizeof(double));
  return status;
}

// Entry i's reduction, per_tensor[i], against the long double reference:
// sums within 1e-12, maxima (exact) bit for bit, NaN for NaN.
template <typename S>
void ExpectReduction(List<S>& list, size_t i, NormType type, double got,
                     const char* what) {
  const long double want = list.ReferenceReduce(i, type);
  const double w = static_cast<double>(want);
  bool ok;
  if (std::isnan(w) || std::isinf(w) || type == NormType::kInf || w == 0) {
    ok = SameDouble(got, w);
  } else {
    ok = std::fabs(got - w) <= 1e-12 * w;
  }
  EXPECT(ok, "%s, %s: tensor %zu (%lld elements) reduces to %.17g, want %.17g",
         what, TypeName(type), i, (long long)list.sizes[i], got, w);
}

// Per-tensor reductions of one table, on grids of 1, 3 and 7 blocks: each
// entry right, nothing written past the list, bitwise the same on each grid.
template <typename S>
void CheckPerTensor(List<S>& list, const char* what) {
  for (NormType type : {NormType::kL2, NormType::kInf}) {
    std::vector<double> first;
    for (int multiprocessors : {1, 3, 7}) {
      std::vector<double> got(list.sizes.size() + 1, -1.0);
      EXPECT(ReduceTable(list, nullptr, type, &got, multiprocessors) == 0,
             "%s: LaunchPerTensorReduce", what);
      for (size_t i = 0; i < list.sizes.size(); ++i) {
        ExpectReduction(list, i, type, got[i], what);
      }
      EXPECT(got.back() == -1.0, "%s: written past the list", what);
      if (first.empty()) {
        first = got;
      } else {
        EXPECT(std::memcmp(first.data(), got.data(), 8 * got.size()) == 0,
               "%s, %s: reductions differ with the grid size", what,
               TypeName(type));
      }
    }
  }
}

// The norm of a reduction, written out: sqrt(Tn(r * inv * inv)) for kL2,
// Tn(r * inv) for kInf, the products in double; NaN for a bad inv.
template <typename Tn>
Tn ReferenceNorm(NormType type, double r, Tn inv) {
  if (!(std::isfinite(inv) && inv > 0)) return static_cast<Tn>(NAN);
  const double i = static_cast<double>(inv);
  if (type == NormType::kInf) return static_cast<Tn>(r * i);
  return std::sqrt(static_cast<Tn>(r * i * i));
}

template <typename Tn>
bool SameNorm(Tn a, Tn b) {
  return (std::isnan(a) && std::isnan(b)) || std::memcmp(&a, &b, sizeof a) == 0;
}

// The combination of reductions r that LaunchFinishNorms() documents,
// written out: tiles of 1,024 in list order, each tile by a pairwise tree
// (entry k with entry k + 512, then k + 256, ..., entries past the list 0),
// as a sum (kL2) or a NaN-propagating maximum (kInf).
double ReferenceCombine(NormType type, const std::vector<double>& r) {
  auto combine = [type](double a, double b) {
    if (type == NormType::kL2) return a + b;
    if (std::isnan(a) || std::isnan(b)) return static_cast<double>(NAN);
    return std::max(a, b);
  };
  double combined = 0;
  for (size_t base = 0; base < r.size(); base += 1024) {
    double tile[1024];
    for (size_t k = 0; k < 1024; ++k) {
      tile[k] = base + k < r.size() ? r[base + k] : 0.0;
    }
    for (size_t stride = 512; stride > 0; stride /= 2) {
      for (size_t k = 0; k < stride; ++k) {
        tile[k] = combine(tile[k], tile[k + stride]);
      }
    }
    combined = combine(combined, tile[0]);
  }
  return combined;
}

// LaunchFinishNorms() on given reductions, with inverse_scale absent, good
// and bad: every norm bit for bit against the reference, the list combined
// as ReferenceCombine() does.
template <typename Tn>
void CheckFinish(DType tnorm, NormType type, const std::vector<double>& r,
                 const char* what) {
  const int64_t n = static_cast<int64_t>(r.size());
  const double combined = ReferenceCombine(type, r);
  const double inverse_scales[] = {-99,        1.0,         0.25,
                                   3.0,        1.0 / 65536, 1e-30,
                                   0.0,        -1.0,        (double)INFINITY,
                                   (double)NAN};
  for (double s : inverse_scales) {
    const bool given = s != -99;
    const Tn inv = static_cast<Tn>(given ? s : 1.0);
    std::vector<Tn> norms(n + 1, Tn(-5));
    Tn global = Tn(-5);
    EXPECT(LaunchFinishNorms(type, tnorm, r.data(), n, given ? &inv : nullptr,
                             &global, n > 0 ? norms.data() : nullptr,
                             nullptr) == 0,
           "%s: LaunchFinishNorms", what);
    Mix(&global, sizeof global);
    Mix(norms.data(), norms.size() * sizeof(Tn));
    const Tn want = ReferenceNorm<Tn>(type, combined, inv);
    EXPECT(SameNorm(global, want),
           "%s, %s, inverse_scale %g: global norm %.9g, want %.9g", what,
           TypeName(type), s, (double)global, (double)want);
    for (int64_t i = 0; i < n; ++i) {
      const Tn w = ReferenceNorm<Tn>(type, r[i], inv);
      EXPECT(SameNorm(norms[i], w),
             "%s, %s, inverse_scale %g: norm %lld %.9g, want %.9g", what,
             TypeName(type), s, (long long)i, (double)norms[i], (double)w);
    }
    EXPECT(norms[n] == Tn(-5), "%s: written past the norms", what);
  }
}

// The output of MonolithClipByGlobalNormV2's clip for element x, written out
// from the op's documentation: NaN for bad inputs or a non-finite norm; with
// inverse_scale 1 the clip of MonolithClipByGlobalNorm (Expected()); else
// x * (inverse_scale * clip factor), the scale in Tn, multiplied in the
// element's compute type and rounded.
template <typename S, typename Tn>
S ExpectedUnscaled(S x, DType d, Tn norm, Tn clip_norm, Tn inv) {
  if (!(std::isfinite(inv) && inv > 0) ||
      !(std::isfinite(clip_norm) && clip_norm > 0) || !std::isfinite(norm) ||
      norm < 0) {
    return QuietNaN<S>(d);
  }
  if (inv == Tn(1)) return Expected(x, d, norm, clip_norm);
  Tn factor = Tn(1);
  if (norm > clip_norm) {
    const Tn inv_norm = Tn(1) / norm;
    const Tn inv_clip = Tn(1) / clip_norm;
    factor = clip_norm * (inv_norm < inv_clip ? inv_norm : inv_clip);
  }
  const Tn scale = inv * factor;
  if (d == DType::kDouble) {
    return static_cast<S>(ToDouble(x, d) * static_cast<double>(scale));
  }
  return FromFloat<S>(
      static_cast<float>(ToDouble(x, d)) * static_cast<float>(scale), d);
}

// One LaunchClipUnscaled() into fresh outputs (or in place), every element
// checked; `inv` < -50 passes no inverse_scale (1).
template <typename S, typename Tn>
void CheckClipUnscaled(List<S>& list, DType tnorm, Tn norm, Tn clip_norm,
                       double inv_value, bool in_place, const char* what,
                       const std::vector<int64_t>* positions = nullptr) {
  const bool given = inv_value > -50;
  const Tn inv = static_cast<Tn>(given ? inv_value : 1.0);
  ClipTargets<S> targets(list, in_place);
  List<S>& target = targets.target;
  Table t(list.dtype, targets.work.data, &targets.outputs, list.sizes,
          positions);
  EXPECT(LaunchClipUnscaled(t.table, tnorm, &norm, &clip_norm,
                            given ? &inv : nullptr, nullptr) == 0,
         "%s: LaunchClipUnscaled", what);
  for (size_t i = 0; i < list.sizes.size(); ++i)
    Mix(target.at(i), list.sizes[i] * sizeof(S));
  int64_t wrong = 0;
  for (size_t i = 0; i < list.sizes.size(); ++i) {
    for (int64_t j = 0; j < list.sizes[i]; ++j) {
      const S want =
          ExpectedUnscaled(list.at(i)[j], list.dtype, norm, clip_norm, inv);
      const S got = target.at(i)[j];
      if (std::memcmp(&want, &got, sizeof(S)) != 0 && wrong++ < 3) {
        std::printf("  %s: tensor %zu [%lld] = %.9g, want %.9g\n", what, i,
                    (long long)j, ToDouble(got, list.dtype),
                    ToDouble(want, list.dtype));
      }
    }
  }
  EXPECT(wrong == 0,
         "%s (norm %.9g, clip_norm %.9g, inverse_scale %g, in place %d): %lld "
         "wrong elements",
         what, (double)norm, (double)clip_norm, inv_value, (int)in_place,
         (long long)wrong);
}

template <typename S>
void CheckNormsV2(DType d, const char* name, std::mt19937_64& rng) {
  std::vector<std::vector<int64_t>> cases = {
      {0},
      {3, 0, 5},
      {kChunkElements - 1, 2, kChunkElements + 3},
      {7, 0, 40000, 1, 0, 9, 33000, 0},
      {3 * kChunkElements, 0, 0, 0, 1},
  };
  std::vector<int64_t> many;
  std::uniform_int_distribution<int> small(0, 40);
  for (int i = 0; i < 3000; ++i) many.push_back(i % 17 == 0 ? 0 : small(rng));
  cases.push_back(many);
  for (const auto& sizes : cases) {
    List<S> list(d, sizes, true);
    list.Fill(rng, 3.0);
    CheckPerTensor(list, name);
    std::vector<double> r(sizes.size());
    for (NormType type : {NormType::kL2, NormType::kInf}) {
      EXPECT(ReduceTable(list, nullptr, type, &r, 3) == 0, "reduce");
      CheckFinish<float>(DType::kFloat, type, r, name);
      CheckFinish<double>(DType::kDouble, type, r, name);
    }
    const double norm = std::sqrt(static_cast<double>(list.ReferenceSum()));
    for (bool in_place : {false, true}) {
      for (double inv : {-99.0, 1.0, 0.5, 1.0 / 65536, 1e-3}) {
        const double unscaled = norm * (inv > 0 ? inv : 1.0);
        for (double clip : {unscaled * 0.5 + 1e-9, unscaled * 2 + 1.0}) {
          CheckClipUnscaled<S, float>(list, DType::kFloat,
                                      static_cast<float>(unscaled),
                                      static_cast<float>(clip), inv, in_place,
                                      "unscaled clip, float norm");
          CheckClipUnscaled<S, double>(list, DType::kDouble, unscaled, clip,
                                       inv, in_place,
                                       "unscaled clip, double norm");
        }
      }
      for (double inv : {0.0, -1.0, (double)INFINITY, (double)NAN}) {
        CheckClipUnscaled<S, double>(list, DType::kDouble, 1.0, 2.0, inv,
                                     in_place, "bad inverse_scale");
      }
      for (double bad_norm : {(double)INFINITY, (double)NAN, -1.0}) {
        CheckClipUnscaled<S, float>(list, DType::kFloat,
                                    static_cast<float>(bad_norm), 1.0f, 0.5,
                                    in_place, "bad norm");
      }
      for (double bad_clip : {0.0, (double)NAN, (double)INFINITY}) {
        CheckClipUnscaled<S, double>(list, DType::kDouble, 1.0, bad_clip, 0.5,
                                     in_place, "bad clip_norm");
      }
    }
  }
  // One tensor of several chunks: no search for a tensor (and so no
  // barrier in it) separates one chunk's reduction from the next.
  List<S> one(d, {5 * kChunkElements + 3}, true);
  one.Fill(rng, 2.0);
  CheckPerTensor(one, name);
  // Inf and NaN elements: the tensors holding them reduce to inf or NaN
  // (NaN wins over inf), the others are unaffected.
  List<S> special(d, {5, 20000, 3, 0, 9000, kChunkElements + 1}, true);
  special.Fill(rng, 1.0);
  special.at(1)[12345] = FromFloat<S>(INFINITY, d);
  special.at(2)[1] = FromFloat<S>(-INFINITY, d);
  special.at(4)[100] = QuietNaN<S>(d);
  special.at(4)[200] = FromFloat<S>(INFINITY, d);
  special.at(5)[kChunkElements] = QuietNaN<S>(d);
  CheckPerTensor(special, name);
  std::printf("%s: V2 norms checked\n", name);
}

// A list of four dtypes, its entries at shuffled list positions: one table
// per dtype writes into one array of reductions by position.
void CheckMixedPositions(std::mt19937_64& rng) {
  List<float> a(DType::kFloat, {5, 0, 9000, 3}, true);
  List<unsigned short> b(DType::kHalf, {70001, 1, 0}, true);
  List<double> c(DType::kDouble, {kChunkElements + 3, 2}, true);
  List<unsigned short> e(DType::kBFloat16, {17, 33000}, true);
  a.Fill(rng, 2.0);
  b.Fill(rng, 2.0);
  c.Fill(rng, 2.0);
  e.Fill(rng, 2.0);
  std::vector<int64_t> order(11);
  for (int i = 0; i < 11; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<int64_t> pa(order.begin(), order.begin() + 4);
  std::vector<int64_t> pb(order.begin() + 4, order.begin() + 7);
  std::vector<int64_t> pc(order.begin() + 7, order.begin() + 9);
  std::vector<int64_t> pe(order.begin() + 9, order.end());
  for (NormType type : {NormType::kL2, NormType::kInf}) {
    std::vector<double> r(12, -1.0);
    EXPECT(ReduceTable(a, &pa, type, &r, 2) == 0, "mixed: float");
    EXPECT(ReduceTable(b, &pb, type, &r, 2) == 0, "mixed: half");
    EXPECT(ReduceTable(c, &pc, type, &r, 2) == 0, "mixed: double");
    EXPECT(ReduceTable(e, &pe, type, &r, 2) == 0, "mixed: bfloat16");
    for (size_t i = 0; i < pa.size(); ++i)
      ExpectReduction(a, i, type, r[pa[i]], "mixed float");
    for (size_t i = 0; i < pb.size(); ++i)
      ExpectReduction(b, i, type, r[pb[i]], "mixed half");
    for (size_t i = 0; i < pc.size(); ++i)
      ExpectReduction(c, i, type, r[pc[i]], "mixed double");
    for (size_t i = 0; i < pe.size(); ++i)
      ExpectReduction(e, i, type, r[pe[i]], "mixed bfloat16");
    EXPECT(r[11] == -1.0, "mixed: written past the list");
    r.pop_back();
    CheckFinish<double>(DType::kDouble, type, r, "mixed");
    CheckFinish<float>(DType::kFloat, type, r, "mixed");
  }
  std::printf("mixed dtypes and positions: checked\n");
}

void CheckV2Edges() {
  // An empty table writes nothing; an empty list's norm is 0.
  List<float> none(DType::kFloat, {}, false);
  std::vector<double> r(1, -1.0);
  EXPECT(ReduceTable(none, nullptr, NormType::kL2, &r, 3) == 0, "empty");
  EXPECT(r[0] == -1.0, "empty table wrote a reduction");
  for (NormType type : {NormType::kL2, NormType::kInf}) {
    float global = -1, inv = 0.5f;
    EXPECT(LaunchFinishNorms(type, DType::kFloat, nullptr, 0, &inv, &global,
                             nullptr, nullptr) == 0 &&
               global == 0.0f,
           "empty list's norm %g", (double)global);
  }
  // Norm dtypes other than float and double, and clips without outputs.
  float global = 0, clip = 1, norm = 1;
  double one = 1;
  EXPECT(LaunchFinishNorms(NormType::kL2, DType::kHalf, &one, 1, nullptr,
                           &global, &norm, nullptr) != 0,
         "finish with a half norm");
  EXPECT(LaunchFinishNorms(NormType::kL2, DType::kFloat, &one, 1, nullptr,
                           &global, nullptr, nullptr) != 0,
         "finish without tensor_norms");
  List<float> list(DType::kFloat, {10}, false);
  Table t(DType::kFloat, list.data, nullptr, list.sizes);
  EXPECT(LaunchClipUnscaled(t.table, DType::kFloat, &norm, &clip, nullptr,
                            nullptr) != 0,
         "unscaled clip without outputs");
  EXPECT(LaunchClipUnscaled(t.table, DType::kHalf, &norm, &clip, nullptr,
                            nullptr) != 0,
         "unscaled clip with a half norm");
}

// Lists at the by-value threshold: kMaxInlineTensors - 1 and
// kMaxInlineTensors tensors go to the kernels by value, one more in a device
// table. Small tensors, empty ones and one of two chunks (so the walk
// searches across tensors), misaligned; the sum (bitwise the same on grids
// of 1 and 3), the clip, fused or not, in place or not, the unscaled clip
// and the per-tensor reductions, every output against its rule. And across
// the two paths: the first kMaxInlineTensors tensors of the longer list
// (device table) reduce bitwise as the list of just them (by value).
template <typename S>
void CheckThreshold(DType d, const char* name, std::mt19937_64& rng) {
  std::uniform_int_distribution<int> small(0, 40);
  std::vector<int64_t> sizes;
  for (int64_t i = 0; i <= kMaxInlineTensors; ++i)
    sizes.push_back(i % 11 == 0 ? 0 : small(rng));
  sizes[kMaxInlineTensors / 2] = kChunkElements + 3;
  List<S> full(d, sizes, true);
  full.Fill(rng, 2.0);
  std::vector<std::vector<double>> reductions;
  for (int64_t count :
       {kMaxInlineTensors - 1, kMaxInlineTensors, kMaxInlineTensors + 1}) {
    const std::vector<int64_t> head(sizes.begin(), sizes.begin() + count);
    List<S> list(d, head, true);
    list.CopyFrom(full);
    {
      Table t(d, list.data, nullptr, list.sizes);
      EXPECT((t.table.device_words == nullptr) == (count <= kMaxInlineTensors),
             "%s, %lld tensors: by value %d", name, (long long)count,
             (int)(t.table.device_words == nullptr));
    }
    const double ref = static_cast<double>(list.ReferenceSum());
    const double a = Sum<double>(list, DType::kDouble, 3);
    const double b = Sum<double>(list, DType::kDouble, 1);
    EXPECT(std::fabs(a - ref) <= 1e-12 * ref && std::memcmp(&a, &b, 8) == 0,
           "%s, %lld tensors: sum %.17g (grid 1: %.17g), reference %.17g", name,
           (long long)count, a, b, ref);
    const double norm = std::sqrt(ref);
    for (bool in_place : {false, true}) {
      CheckClip<S, double>(list, DType::kDouble, norm, norm * 0.5, false,
                           in_place, "threshold: clip");
      CheckClip<S, float>(list, DType::kFloat, 0.0f,
                          static_cast<float>(norm * 0.5), true, in_place,
                          "threshold: fused");
      CheckClip<S, float>(list, DType::kFloat, static_cast<float>(norm),
                          static_cast<float>(norm * 2 + 1), false, in_place,
                          "threshold: pass-through");
      CheckClipUnscaled<S, float>(list, DType::kFloat,
                                  static_cast<float>(norm * 0.5),
                                  static_cast<float>(norm * 0.1), 0.5, in_place,
                                  "threshold: unscaled clip");
    }
    CheckPerTensor(list, name);
    std::vector<double> r(count);
    EXPECT(ReduceTable(list, nullptr, NormType::kL2, &r, 3) == 0, "reduce");
    reductions.push_back(r);
  }
  EXPECT(std::memcmp(reductions[1].data(), reductions[2].data(),
                     8 * kMaxInlineTensors) == 0,
         "%s: the same tensors reduce differently by value and from a device "
         "table",
         name);
  std::printf("%s: by-value threshold checked\n", name);
}

// Mixed dtypes at the threshold, as the V2 ops pack them: one table per
// dtype, each with outputs and list positions (the largest by-value layout,
// four words a tensor), float tables of kMaxInlineTensors - 1 ..
// kMaxInlineTensors + 1 tensors and bfloat16 ones of the other side, a
// double one of 2, their entries at shuffled positions.
void CheckMixedThreshold(std::mt19937_64& rng) {
  std::uniform_int_distribution<int> small(0, 40);
  for (int64_t nf :
       {kMaxInlineTensors - 1, kMaxInlineTensors, kMaxInlineTensors + 1}) {
    const int64_t nb = 2 * kMaxInlineTensors - nf;
    std::vector<int64_t> sf, sb;
    for (int64_t i = 0; i < nf; ++i) sf.push_back(i % 9 == 0 ? 0 : small(rng));
    for (int64_t i = 0; i < nb; ++i) sb.push_back(i % 7 == 0 ? 0 : small(rng));
    sf[1] = kChunkElements + 5;
    List<float> f(DType::kFloat, sf, true);
    List<unsigned short> b(DType::kBFloat16, sb, true);
    List<double> e(DType::kDouble, {kChunkElements + 3, 2}, true);
    f.Fill(rng, 2.0);
    b.Fill(rng, 2.0);
    e.Fill(rng, 2.0);
    const int64_t total = nf + nb + 2;
    std::vector<int64_t> order(total);
    for (int64_t i = 0; i < total; ++i) order[i] = i;
    std::shuffle(order.begin(), order.end(), rng);
    const std::vector<int64_t> pf(order.begin(), order.begin() + nf);
    const std::vector<int64_t> pb(order.begin() + nf, order.begin() + nf + nb);
    const std::vector<int64_t> pe(order.begin() + nf + nb, order.end());
    for (NormType type : {NormType::kL2, NormType::kInf}) {
      std::vector<double> r(total + 1, -1.0);
      EXPECT(ReduceTable(f, &pf, type, &r, 3) == 0, "mixed: float");
      EXPECT(ReduceTable(b, &pb, type, &r, 2) == 0, "mixed: bfloat16");
      EXPECT(ReduceTable(e, &pe, type, &r, 1) == 0, "mixed: double");
      for (int64_t i = 0; i < nf; ++i)
        ExpectReduction(f, i, type, r[pf[i]], "mixed threshold float");
      for (int64_t i = 0; i < nb; ++i)
        ExpectReduction(b, i, type, r[pb[i]], "mixed threshold bfloat16");
      for (int64_t i = 0; i < 2; ++i)
        ExpectReduction(e, i, type, r[pe[i]], "mixed threshold double");
      EXPECT(r[total] == -1.0, "mixed threshold: written past the list");
      r.pop_back();
      CheckFinish<double>(DType::kDouble, type, r, "mixed threshold");
    }
    const double norm = std::sqrt(static_cast<double>(
        f.ReferenceSum() + b.ReferenceSum() + e.ReferenceSum()));
    for (bool in_place : {false, true}) {
      CheckClipUnscaled<float, double>(f, DType::kDouble, norm, norm * 0.25,
                                       0.5, in_place, "mixed threshold float",
                                       &pf);
      CheckClipUnscaled<unsigned short, double>(
          b, DType::kDouble, norm, norm * 0.25, 0.5, in_place,
          "mixed threshold bfloat16", &pb);
      CheckClipUnscaled<double, float>(e, DType::kFloat,
                                       static_cast<float>(norm),
                                       static_cast<float>(norm * 0.25), 1.0,
                                       in_place, "mixed threshold double", &pe);
    }
  }
  std::printf("mixed dtypes at the by-value threshold: checked\n");
}

// Grids like a real GPU's: hundreds of blocks (a device of 264
// multiprocessors), resident_blocks of them at once and interleaved, on a
// list of a few hundred chunks: the sum, the fused clip and the per-tensor
// reductions as on a grid of 3, bitwise.
void CheckLargeGrid(std::mt19937_64& rng) {
  std::vector<int64_t> sizes = {1 << 20, 3, 0, 700001, 17, 5, 400000};
  std::uniform_int_distribution<int> small(0, 40);
  for (int i = 0; i < 2500; ++i) sizes.push_back(i % 13 == 0 ? 0 : small(rng));
  List<float> list(DType::kFloat, sizes, true);
  list.Fill(rng, 1.0);
  const int64_t chunks =
      NumChunks(DType::kFloat, list.sizes.data(), list.sizes.size());
  EXPECT(chunks >= 264, "the large grid's list has only %lld chunks",
         (long long)chunks);
  const double ref = static_cast<double>(list.ReferenceSum());
  const double small_grid = Sum<double>(list, DType::kDouble, 3);
  const double large_grid = Sum<double>(list, DType::kDouble, 264);
  EXPECT(std::fabs(large_grid - ref) <= 1e-12 * ref,
         "large grid: sum %.17g, reference %.17g", large_grid, ref);
  EXPECT(std::memcmp(&small_grid, &large_grid, 8) == 0,
         "large grid: sum %.17g, on 3 blocks %.17g", large_grid, small_grid);
  const float norm = static_cast<float>(std::sqrt(ref));
  CheckClip<float, float>(list, DType::kFloat, 0.0f, norm * 0.5f, true, true,
                          "large grid, fused in place");
  CheckClip<float, float>(list, DType::kFloat, norm, norm * 0.5f, false, false,
                          "large grid, clip");
  for (NormType type : {NormType::kL2, NormType::kInf}) {
    std::vector<double> a(sizes.size()), b(sizes.size());
    EXPECT(ReduceTable(list, nullptr, type, &a, 3) == 0, "reduce");
    EXPECT(ReduceTable(list, nullptr, type, &b, 264) == 0, "reduce");
    for (size_t i = 0; i < sizes.size(); ++i) {
      ExpectReduction(list, i, type, b[i], "large grid");
    }
    EXPECT(std::memcmp(a.data(), b.data(), 8 * a.size()) == 0,
           "large grid, %s: reductions differ from a grid of 3",
           TypeName(type));
  }
  std::printf("large grids: checked\n");
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
  CheckNormsV2<float>(DType::kFloat, "float", rng);
  CheckNormsV2<double>(DType::kDouble, "double", rng);
  CheckNormsV2<unsigned short>(DType::kHalf, "half", rng);
  CheckNormsV2<unsigned short>(DType::kBFloat16, "bfloat16", rng);
  CheckMixedPositions(rng);
  CheckThreshold<float>(DType::kFloat, "float", rng);
  CheckThreshold<double>(DType::kDouble, "double", rng);
  CheckThreshold<unsigned short>(DType::kHalf, "half", rng);
  CheckThreshold<unsigned short>(DType::kBFloat16, "bfloat16", rng);
  CheckMixedThreshold(rng);
  CheckV2Edges();
  CheckLargeGrid(rng);
  std::printf("schedule %s, results digest %016llx\n",
              emulation::TheSchedule().name.c_str(),
              static_cast<unsigned long long>(digest));
  std::printf(failures ? "%d FAILED\n" : "ALL OK\n", failures);
  return failures != 0;
}
