// Scheduler: the matmul regions (scheduler.h).
#include "scheduler.h"

namespace mobilellm {

bool AnyQuantized(std::initializer_list<MatmulJob> jobs) {
  for (const MatmulJob& j : jobs)
    if (format::IsQuantized(uint32_t(j.w->dtype))) return true;
  return false;
}

Scheduler::Scheduler(const KernelTable& k, int n_threads, int group, int head_dim)
    : k_(k),
      pool_(n_threads),
      group_(group),
      head_dim_(head_dim),
      att_parts_(size_t(MaxAttnParts(n_threads)) * group * head_dim),
      lse_parts_(size_t(MaxAttnParts(n_threads)) * group) {}

void Scheduler::Matmuls(int n_tokens, std::initializer_list<MatmulJob> jobs, const Int8Rows& int8,
                        bool int8_ready, bool silu_gate) {
  const MatmulJob& first = *jobs.begin();
  const int cols = int(first.w->cols());
  MatmulInput in{first.x, nullptr, nullptr, n_tokens, cols};
  if (AnyQuantized(jobs)) {
    if (!int8_ready)
      PerToken(n_tokens, [&](int t) { int8.Quantize(k_, first.x + size_t(t) * cols, t, cols); });
    in.q = int8.q, in.d = int8.d;
  }
  // Units of work: chunks of 16-row multiples of each job (with silu_gate, of the (gate, up) pair:
  // the same rows of both, then their product), handed out as threads come free (ForEach).
  // Decode gives each thread one contiguous share of a job, as a static split would: shorter
  // streams lose more to prefetcher ramp-up than dynamic balancing wins back (measured: 8 units a
  // thread decoded 10-20% slower). Prefill is compute-bound: two units a thread even out the load.
  const int n_jobs = silu_gate ? 1 : int(jobs.size());
  const int per_thread = n_tokens == 1 ? 1 : 2;
  int chunk[4], first_unit[5] = {0};
  for (int j = 0; j < n_jobs; ++j) {
    const int rows = int(jobs.begin()[j].w->rows());
    const int units = std::max(1, std::min(per_thread * pool_.size(), rows / 16));
    chunk[j] = ((rows + units - 1) / units + 15) / 16 * 16;
    first_unit[j + 1] = first_unit[j] + (rows + chunk[j] - 1) / chunk[j];
  }
  pool_.ForEach(first_unit[n_jobs], [&](int unit, int) {
    int j = 0;
    while (unit >= first_unit[j + 1]) ++j;
    const int r0 = (unit - first_unit[j]) * chunk[j];
    const int r1 = std::min(int(jobs.begin()[j].w->rows()), r0 + chunk[j]);
    for (int part = 0; part < (silu_gate ? 2 : 1); ++part) {
      const MatmulJob& job = jobs.begin()[j + part];
      const WeightView w{job.w->data, job.w->dtype, int(job.w->rows()), int(job.w->cols()),
                         job.w->layout};
      Matmul(k_, in, w, r0, r1, job.y, job.y_stride);
    }
    if (silu_gate) {
      const MatmulJob &gate = jobs.begin()[0], &up = jobs.begin()[1];
      for (int t = 0; t < n_tokens; ++t)
        k_.silu_mul(gate.y + size_t(t) * gate.y_stride + r0, up.y + size_t(t) * up.y_stride + r0,
                    r1 - r0);
    }
  });
}

}  // namespace mobilellm
