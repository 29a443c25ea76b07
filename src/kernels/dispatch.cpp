// Picks the kernel table once: the best one the CPU supports, or the one MOBILELLM_ISA forces; and
// within a table, the variant that serves each matmul and attention call: the one place where
// variants are chosen. Also MergeAttention, which every table shares (it runs once per head,
// after the parallel part).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "mobilellm/kernels.h"

namespace mobilellm {

extern const KernelTable kRefKernels;
#if defined(MOBILELLM_HAVE_AVX2)
extern const KernelTable kAvx2Kernels;
extern const KernelTable kAvx512VnniKernels;
#endif
#if defined(MOBILELLM_HAVE_AVXVNNI)
extern const KernelTable kAvxVnniKernels;
#endif
#if defined(MOBILELLM_HAVE_AMX)
extern const KernelTable kAmxKernels;
#endif
#if defined(MOBILELLM_HAVE_NEON)
extern const KernelTable kNeonKernels;
extern const KernelTable kNeonDotprodKernels;
extern const KernelTable kNeonI8mmKernels;
#endif

const std::vector<const KernelTable*>& AllKernelTables() {
  static const std::vector<const KernelTable*> tables = {
    &kRefKernels,
#if defined(MOBILELLM_HAVE_AVX2)
    &kAvx2Kernels,
#endif
#if defined(MOBILELLM_HAVE_AVXVNNI)
    &kAvxVnniKernels,
#endif
#if defined(MOBILELLM_HAVE_AVX2)
    &kAvx512VnniKernels,
#endif
#if defined(MOBILELLM_HAVE_AMX)
    &kAmxKernels,
#endif
#if defined(MOBILELLM_HAVE_NEON)
    &kNeonKernels,
    &kNeonDotprodKernels,
    &kNeonI8mmKernels,
#endif
  };
  return tables;
}

const MatmulKernel& PickMatmul(const KernelTable& k, const MatmulInput& in, const WeightView& w,
                               int rows) {
  for (const MatmulKernel& m : k.matmuls)
    if (m.Serves(in, w, rows)) return m;
  // Unreachable: every table ends with the reference kernels, which serve every call
  // (kernels_test: EveryCallIsServed).
  std::fprintf(stderr, "mobilellm: kernel table %s has no matmul for %s\n", k.name,
               format::DTypeName(uint32_t(w.dtype)));
  std::abort();
}

void Matmul(const KernelTable& k, const MatmulInput& in, const WeightView& w, int r0, int r1,
            float* y, int y_stride) {
  while (r0 < r1) {
    const MatmulKernel& m = PickMatmul(k, in, w, r1 - r0);
    const int r = r0 + (r1 - r0) / m.row_multiple * m.row_multiple;
    m.fn(in, w, r0, r, y, y_stride);
    r0 = r;
  }
}

const AttendKernel& PickAttend(const KernelTable& k, DType kv, int hd, int n_keys) {
  for (const AttendKernel& a : k.attends)
    if (a.Serves(kv, hd, n_keys)) return a;
  std::fprintf(stderr, "mobilellm: kernel table %s has no attention for head size %d\n", k.name,
               hd);
  std::abort();
}

void MergeAttention(const float* outs, const float* lses, int parts, int n_q, int hd, float* out) {
  for (int h = 0; h < n_q; ++h) {
    float max = lses[h];
    for (int i = 1; i < parts; ++i) max = std::max(max, lses[i * n_q + h]);
    float total = 0.0f;
    float* o = out + h * hd;
    for (int j = 0; j < hd; ++j) o[j] = 0.0f;
    for (int i = 0; i < parts; ++i) {
      const float w = std::exp(lses[i * n_q + h] - max);
      total += w;
      const float* oi = outs + (i * n_q + h) * hd;
      for (int j = 0; j < hd; ++j) o[j] += w * oi[j];
    }
    const float inv = 1.0f / total;
    for (int j = 0; j < hd; ++j) o[j] *= inv;
  }
}

const KernelTable& SelectKernels(std::string* error) {
  const CpuFeatures& cpu = CpuFeatures::Get();
  const KernelTable* best = AllKernelTables().front();
  for (const KernelTable* t : AllKernelTables())
    if (t->supported(cpu)) best = t;  // tables are listed slowest first
  const char* forced = std::getenv("MOBILELLM_ISA");
  if (forced == nullptr || *forced == '\0') return *best;
  std::string known;
  for (const KernelTable* t : AllKernelTables()) {
    if (forced == std::string(t->name)) {
      if (t->supported(cpu)) return *t;
      if (error)
        *error = std::string("MOBILELLM_ISA=") + forced + ": this CPU lacks " + t->features;
      return *best;
    }
    known += std::string(known.empty() ? "" : ", ") + t->name;
  }
  if (error)
    *error = std::string("MOBILELLM_ISA=") + forced + ": unknown kernel table (have " + known + ")";
  return *best;
}

}  // namespace mobilellm
