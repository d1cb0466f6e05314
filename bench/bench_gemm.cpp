// GEMM speed against this machine's fused multiply-add peak. Prints figures; never fails.
//
//   peak:  an FMA loop on several independent accumulator chains, on every thread (timing.hpp);
//          each fma counts 2 flops per lane
//   gemm:  C = A B for square float and double matrices, on 1 and 2 threads, as GFLOP/s
//          (2 M N K flops) and as a percent of the peak
// Every figure is the median of several runs (the machine is shared and noisy); the fastest run
// is printed beside it, as what the kernel does when nothing else competes for the cores.
#include "../autodiff/kernels/gemm.hpp"

#include "../autodiff/kernels/simd.hpp"
#include "timing.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

using timing::fma_peak_gflops;
using timing::MedianBest;
using timing::set_threads;
using timing::seconds_now;
using timing::time_runs;

// GFLOP/s of C = A B for n x n matrices: {median run, fastest run}.
template <class T>
MedianBest gemm_gflops(std::size_t n, int threads, int runs, bool reference = false) {
  std::mt19937 rng(1);
  std::uniform_real_distribution<T> dist(T(-1), T(1));
  std::vector<T> A(n * n), B(n * n), C(n * n);
  for (T& x : A) x = dist(rng);
  for (T& x : B) x = dist(rng);
  set_threads(threads);
  auto run = [&] {
    if (reference)
      ax::kernels::gemm_reference<T>(false, false, n, n, n, T(1), A.data(), n, B.data(), n, T(0), C.data(), n);
    else
      ax::kernels::gemm<T>(false, false, n, n, n, T(1), A.data(), n, B.data(), n, T(0), C.data(), n);
  };
  run();  // warm up: page in the matrices, grow the packing buffers, start the threads
  const MedianBest t = time_runs(runs, run);
  const double flops = 2.0 * double(n) * n * n;
  return {flops / t.median * 1e-9, flops / t.best * 1e-9};
}

}  // namespace

int main() {
  const int runs = 31;
  const MedianBest peak1 = fma_peak_gflops(1, 7);
  const MedianBest peak2 = fma_peak_gflops(2, 7);
  std::printf("FMA peak (float, %d-lane fma, 12 chains), 7 runs: median and fastest\n",
              int(ax::kernels::Batch<float>::size));
  std::printf("  1 thread   %7.1f %7.1f GFLOP/s\n", peak1.median, peak1.best);
  std::printf("  2 threads  %7.1f %7.1f GFLOP/s\n", peak2.median, peak2.best);
  std::printf("  (percentages below are of the fastest: another process on a core lowers the median)\n\n");

  std::printf("gemm, C = A B (square, no transposes), %d runs: median and fastest\n", runs);
  std::printf("  %-7s %5s %8s %10s %10s %10s %10s\n", "type", "n", "threads", "GFLOP/s", "% peak", "fastest", "% peak");
  for (int threads : {1, 2}) {
    for (bool is_double : {false, true}) {
      // double has half the lanes, so half the float peak
      const double peak = (threads == 1 ? peak1 : peak2).best / (is_double ? 2 : 1);
      const MedianBest g = is_double ? gemm_gflops<double>(512, threads, runs) : gemm_gflops<float>(512, threads, runs);
      std::printf("  %-7s %5d %8d %10.1f %9.0f%% %10.1f %9.0f%%\n", is_double ? "double" : "float", 512,
                  threads, g.median, 100 * g.median / peak, g.best, 100 * g.best / peak);
    }
  }

  std::printf("\nsmall problems, float GFLOP/s (median); gemm uses one thread below 128^3:\n");
  std::printf("  %5s %10s %10s\n", "n", "1 thread", "2 threads");
  for (std::size_t n : {32, 64, 96, 128, 192, 256})
    std::printf("  %5zu %10.1f %10.1f\n", n, gemm_gflops<float>(n, 1, runs).median, gemm_gflops<float>(n, 2, runs).median);

  std::printf("\nreference triple loop, 256^3, 1 thread, median of 3 runs:\n");
  std::printf("  float  %6.2f GFLOP/s\n", gemm_gflops<float>(256, 1, 3, true).median);
  std::printf("  double %6.2f GFLOP/s\n", gemm_gflops<double>(256, 1, 3, true).median);
  return 0;
}
