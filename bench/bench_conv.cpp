// Convolution speed on the shapes that matter: every distinct convolution of ResNet-18 at
// 224 x 224 (batch 1 and 10) and the two of the LeNet-sized Fashion-MNIST network (batch 50).
// Prints figures; never fails.
//
//   forward        y = conv(x, w): im2col + GEMM, in chunks of samples (kernels/conv.hpp)
//   gemm alone     the forward's GEMMs on a ready column matrix: the figure the lowering costs
//                  against (what an implicit GEMM could at best reach)
//   backward data  gx += conv^T(gy, w): GEMM + col2im, what an attribution runs
// GFLOP/s count 2 N O OH OW (C/G) KH KW flops for each pass; every figure is the median of
// several runs on 2 threads, in float, and the percent columns are of the 2-thread FMA peak
// measured first in the same run (timing.hpp).
#include "timing.hpp"
#include "../autodiff/kernels/conv.hpp"
#include "../autodiff/kernels/gemm.hpp"

#include <algorithm>
#include <cmath>
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

using ax::kernels::Conv2dShape;

// The median of several runs after one warm-up run (pages the buffers in, starts the threads).
template <class F>
double median_seconds(int runs, F f) {
  f();
  return timing::time_runs(runs, f).median;
}

std::vector<float> random_vector(std::size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

struct Conv {
  const char* name;
  std::size_t in_channels, size, out_channels, kernel, stride, pad, groups = 1;
};

Conv2dShape shape_of(const Conv& c, std::size_t batch, std::size_t budget_bytes) {
  Conv2dShape s;
  s.batch = batch, s.in_channels = c.in_channels, s.in_h = s.in_w = c.size;
  s.out_channels = c.out_channels, s.kernel_h = s.kernel_w = c.kernel;
  s.stride_h = s.stride_w = c.stride, s.pad_h = s.pad_w = c.pad, s.groups = c.groups;
  s.chunk = ax::kernels::conv2d_chunk(s, sizeof(float), budget_bytes);
  return s;
}

double peak = 0;  // the fastest 2-thread FMA peak of this run, GFLOP/s

void bench(const Conv& c, std::size_t batch, int runs, std::size_t budget_bytes = ax::kernels::kConvWorkspaceBytes) {
  const Conv2dShape s = shape_of(c, batch, budget_bytes);

  std::mt19937 rng(1);
  const std::vector<float> x = random_vector(batch * c.in_channels * c.size * c.size, rng);
  const std::vector<float> w = random_vector(c.out_channels * s.patch(), rng);
  const std::vector<float> gy = random_vector(batch * c.out_channels * s.out_pixels(), rng);
  std::vector<float> y(gy.size()), gx(x.size()), workspace(ax::kernels::conv2d_workspace(s));

  const double forward = median_seconds(runs, [&] {
    ax::kernels::conv2d_forward<float>(s, x.data(), w.data(), nullptr, y.data(), false, workspace.data());
  });
  // The same GEMMs on columns already lowered (the chunk's column matrix, reused); one group only.
  const std::size_t width = s.chunk * s.out_pixels(), chunks = (batch + s.chunk - 1) / s.chunk;
  const double gemm_only = c.groups != 1 ? NAN : median_seconds(runs, [&] {
    for (std::size_t i = 0; i < chunks; ++i)
      ax::kernels::gemm<float>(false, false, s.out_channels, width, s.patch(), 1.f, w.data(), s.patch(),
                               workspace.data(), width, 0.f, y.data(), width);
  });
  const double backward = median_seconds(runs, [&] {
    ax::kernels::conv2d_backward_data<float>(s, gy.data(), w.data(), gx.data(), workspace.data());
  });
  // gemm_only computes whole chunks: scale its flops to the chunks it ran
  const double gemm_flops = s.flops() * double(chunks * s.chunk) / double(batch);
  const double f = s.flops() * 1e-9 / forward, g = gemm_flops * 1e-9 / gemm_only, b = s.flops() * 1e-9 / backward;
  std::printf("  %-24s %5zu %5zu %8.1f %8.1f %4.0f%% %10.1f %8.1f %4.0f%% %9.1f\n", c.name, batch, s.chunk,
              double(workspace.size() * sizeof(float)) / (1 << 20), f, 100 * f / peak, g, b, 100 * b / peak,
              forward * 1e3);
}

}  // namespace

int main() {
  const Conv resnet[] = {
      {"conv1 7x7/2 3->64 @224", 3, 224, 64, 7, 2, 3},
      {"3x3 64->64 @56", 64, 56, 64, 3, 1, 1},
      {"3x3/2 64->128 @56", 64, 56, 128, 3, 2, 1},
      {"3x3 128->128 @28", 128, 28, 128, 3, 1, 1},
      {"3x3/2 128->256 @28", 128, 28, 256, 3, 2, 1},
      {"3x3 256->256 @14", 256, 14, 256, 3, 1, 1},
      {"3x3/2 256->512 @14", 256, 14, 512, 3, 2, 1},
      {"3x3 512->512 @7", 512, 7, 512, 3, 1, 1},
      {"1x1/2 64->128 @56", 64, 56, 128, 1, 2, 0},
      {"1x1/2 128->256 @28", 128, 28, 256, 1, 2, 0},
      {"1x1/2 256->512 @14", 256, 14, 512, 1, 2, 0},
  };
  const Conv lenet[] = {
      {"LeNet 3x3 1->16 @28", 1, 28, 16, 3, 1, 0},
      {"LeNet 3x3 16->32 @13", 16, 13, 32, 3, 1, 0},
      {"Fashion 3x3 1->32 @28", 1, 28, 32, 3, 1, 1},   // the shipped model's two convolutions
      {"Fashion 3x3 32->64 @14", 32, 14, 64, 3, 1, 1},
  };
  const Conv depthwise = {"depthwise 3x3 64 @56", 64, 56, 64, 3, 1, 1, 64};
  peak = timing::fma_peak_gflops(2, 5).best;
  std::printf("FMA peak, float, 2 threads: %.1f GFLOP/s (%zu-lane fused multiply-adds; fastest of 5 runs)\n\n", peak,
              ax::kernels::Batch<float>::size);
  timing::set_threads(2);
  std::printf("conv2d, float, 2 threads, GFLOP/s and %% of that peak (median of 7 runs; input size after @)\n");
  std::printf("  %-24s %5s %5s %8s %8s %5s %10s %8s %5s %9s\n", "shape", "batch", "chunk", "ws MiB", "forward", "%",
              "gemm alone", "bwd data", "%", "fwd ms");
  for (std::size_t batch : {1, 10})
    for (const Conv& c : resnet) bench(c, batch, 7);
  for (const Conv& c : lenet) bench(c, 50, 7);
  bench(depthwise, 10, 7);

  // How the workspace budget (samples lowered at once) changes the speed: small chunks keep the
  // columns in cache but give the GEMM fewer columns.
  std::printf("\nworkspace budget sweep, batch 10 (the library uses %zu MiB):\n", ax::kernels::kConvWorkspaceBytes >> 20);
  std::printf("  %-24s %5s %5s %8s %8s %5s %10s %8s %5s %9s\n", "shape", "batch", "chunk", "ws MiB", "forward", "%",
              "gemm alone", "bwd data", "%", "fwd ms");
  for (const Conv& c : {resnet[1], resnet[3], resnet[7]})
    for (std::size_t mib : {2, 8, 32, 128}) bench(c, 10, 7, mib << 20);
  return 0;
}
