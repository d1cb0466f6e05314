// GEMM speed against this machine's fused multiply-add peak. Prints figures; never fails.
//
//   peak:  an FMA loop on several independent accumulator chains, on every thread (timing.hpp);
//          each fma counts 2 flops per lane
//   gemm:  C = A B for square float and double matrices, on 1 and 2 threads, as GFLOP/s
//          (2 M N K flops) and as a percent of the peak
//   resnet-18: the shapes ResNet-18 at 224 x 224 calls in an IG-50 with batches of 10 points
//          (found by logging every call): the Winograd stages' GEMMs, M = out channels,
//          N = 4 x 4 tiles of a chunk, K = in channels, 36 of them per convolution, each on one
//          thread; and the 7 x 7 and 14 x 14 stages' lowered 3 x 3 convolutions of one image,
//          N = 49 or 196 pixels, K = 9 in channels. N modulo the panel width (32 floats on
//          AVX-512) is what the edge tiles compute
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
// GFLOP/s of C[M, N] = A[M, K] B[K, N]: {median run, fastest run}.
template <class T>
MedianBest gemm_gflops(std::size_t M, std::size_t N, std::size_t K, int threads, int runs, bool reference = false) {
  std::mt19937 rng(1);
  std::uniform_real_distribution<T> dist(T(-1), T(1));
  std::vector<T> A(M * K), B(K * N), C(M * N);
  for (T& x : A) x = dist(rng);
  for (T& x : B) x = dist(rng);
  set_threads(threads);
  auto run = [&] {
    if (reference)
      ax::kernels::gemm_reference<T>(false, false, M, N, K, T(1), A.data(), K, B.data(), N, T(0), C.data(), N);
    else
      ax::kernels::gemm<T>(false, false, M, N, K, T(1), A.data(), K, B.data(), N, T(0), C.data(), N);
  };
  run();  // warm up: page in the matrices, grow the packing buffers, start the threads
  const MedianBest t = time_runs(runs, run);
  const double flops = 2.0 * double(M) * N * K;
  return {flops / t.median * 1e-9, flops / t.best * 1e-9};
}

template <class T>
MedianBest gemm_gflops(std::size_t n, int threads, int runs, bool reference = false) {
  return gemm_gflops<T>(n, n, n, threads, runs, reference);
}

struct Shape {
  std::size_t M, N, K;
  const char* what;
};

// ResNet-18's GEMMs whose N is not a multiple of the panel width, and one that is (N = 448).
const Shape kResnetShapes[] = {
    {512, 40, 512, "winograd 7x7, 512 ch"},    {256, 48, 256, "winograd 7x7, 256 ch"},
    {128, 42, 128, "winograd 14x14, 128 ch"},  {256, 112, 256, "winograd 14x14, 256 ch"},
    {64, 168, 64, "winograd 28x28, 64 ch"},    {64, 448, 64, "winograd 56x56, 64 ch"},
    {512, 49, 4608, "lowered 7x7, 512 ch"},    {256, 196, 2304, "lowered 14x14, 256 ch"},
};

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

  const std::size_t panel = ax::kernels::gemm_panel_width<float>();
  std::printf("\nresnet-18's shapes, float GFLOP/s (median of %d runs) and %% of the peak; panel width %zu:\n", runs,
              panel);
  std::printf("  %5s %5s %5s %7s %-24s %10s %7s %10s %7s\n", "M", "N", "K", "N%panel", "", "1 thread", "% peak",
              "2 threads", "% peak");
  for (const Shape& s : kResnetShapes) {
    const double one = gemm_gflops<float>(s.M, s.N, s.K, 1, runs).median;
    const double two = gemm_gflops<float>(s.M, s.N, s.K, 2, runs).median;
    std::printf("  %5zu %5zu %5zu %7zu %-24s %10.1f %6.0f%% %10.1f %6.0f%%\n", s.M, s.N, s.K, s.N % panel, s.what, one,
                100 * one / peak1.best, two, 100 * two / peak2.best);
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
