// The CLI's thread counts: never more than the CPUs this process may run on.
#pragma once

#include <cstdio>

#include "mobilellm/threadpool.h"

namespace mobilellm::cli {

// `requested` (0 = the library's default) clamped to AvailableCpus(), with one warning line on
// stderr when it was more: extra threads would only wait for one another (the pool then stops
// spinning, but every parallel region still wakes each thread, hundreds of times a token).
inline int UsableThreads(int requested) {
  const int cpus = AvailableCpus();
  if (requested <= cpus) return requested;
  std::fprintf(stderr,
               "mobilellm: warning: -t %d is more than the %d CPU%s this process may use; using "
               "%d threads\n",
               requested, cpus, cpus == 1 ? "" : "s", cpus);
  return cpus;
}

}  // namespace mobilellm::cli
