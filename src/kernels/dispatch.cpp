// Picks the kernel table once: the best one the CPU supports, or the one MOBILELLM_ISA forces.
// Also MergeAttention, which every table shares (it runs once per head, after the parallel part).
#include <algorithm>
#include <cmath>
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
      *error = std::string("MOBILELLM_ISA=") + forced + ": this CPU lacks " + t->requires;
      return *best;
    }
    known += std::string(known.empty() ? "" : ", ") + t->name;
  }
  if (error)
    *error = std::string("MOBILELLM_ISA=") + forced + ": unknown kernel table (have " + known + ")";
  return *best;
}

}  // namespace mobilellm
