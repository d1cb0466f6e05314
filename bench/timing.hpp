// What the benchmarks share: a clock, the median and fastest of several runs (the machine is
// shared and noisy: the median is the figure, the fastest what the code does undisturbed), and
// this machine's fused multiply-add peak, which kernels' GFLOP/s are a percent of.
#pragma once

#include "../autodiff/kernels/simd.hpp"

#include <algorithm>
#include <chrono>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace timing {

inline double seconds_now() {
  using clock = std::chrono::steady_clock;
  return std::chrono::duration<double>(clock::now().time_since_epoch()).count();
}

struct MedianBest {
  double median, best;
};

// Seconds of `runs` calls of f: their median and the fastest.
template <class F>
MedianBest time_runs(int runs, F f) {
  std::vector<double> times;
  for (int r = 0; r < runs; ++r) {
    const double t0 = seconds_now();
    f();
    times.push_back(seconds_now() - t0);
  }
  std::sort(times.begin(), times.end());
  return {times[times.size() / 2], times.front()};
}

inline void set_threads(int n) {
#ifdef _OPENMP
  omp_set_num_threads(n);
#else
  (void)n;
#endif
}

// GFLOP/s of `threads` threads each running independent fma chains on float batches of the
// kernels' width: {median, fastest}. acc = acc * m + d converges to d / (1 - m), so the values
// stay normal and finite.
inline MedianBest fma_peak_gflops(int threads, int runs) {
  using B = ax::kernels::Batch<float>;
  constexpr int chains = 12;  // > FMA latency x FMA ports, so the ports never wait
  constexpr long iterations = 20'000'000;
  volatile float sink = 0;
  set_threads(threads);
  const MedianBest t = time_runs(runs, [&] {
#pragma omp parallel
    {
      B acc[chains];
      for (int c = 0; c < chains; ++c) acc[c] = B(float(c));
      const B m(0.999f), d(0.001f);
      for (long i = 0; i < iterations; ++i)
        for (int c = 0; c < chains; ++c) acc[c] = ax::kernels::fused_multiply_add(acc[c], m, d);
      B total = acc[0];
      for (int c = 1; c < chains; ++c) total += acc[c];
      sink = sink + xsimd::hadd(total);
    }
  });
  const double flops = 2.0 * B::size * chains * double(iterations) * threads;
  return {flops / t.median * 1e-9, flops / t.best * 1e-9};
}

}  // namespace timing
