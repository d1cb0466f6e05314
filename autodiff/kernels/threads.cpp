#include "threads.hpp"

#include <omp.h>

#include <cstdlib>

namespace ax::kernels {

void set_threads(std::size_t n) {
  if (n) omp_set_num_threads(static_cast<int>(n));
}

std::size_t threads() { return static_cast<std::size_t>(omp_get_max_threads()); }

bool choose_passive_waiting() {
  if (std::getenv("OMP_WAIT_POLICY") || std::getenv("GOMP_SPINCOUNT")) return false;
  return setenv("OMP_WAIT_POLICY", "passive", 1) == 0;
}

}  // namespace ax::kernels
