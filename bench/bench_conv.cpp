// Convolution speed on the shapes that matter: every distinct convolution of ResNet-18 at
// 224 x 224 (batch 1 and 10) and the two of the LeNet-sized Fashion-MNIST network (batch 50).
// Prints figures; never fails.
//
//   forward        y = conv(x, w): im2col + GEMM, in chunks of samples (kernels/conv.hpp)
//   gemm alone     the forward's GEMMs on a ready column matrix: the figure the lowering costs
//                  against (what an implicit GEMM could at best reach)
//   backward data  gx += conv^T(gy, w): GEMM + col2im, what an attribution runs
//   winograd       the same forward and backward-data by Winograd F(4x4, 3x3) (kernels/winograd.hpp),
//                  for the 3 x 3 stride-1 shapes it fits (the kernels themselves, whichever
//                  route conv2d's dispatch picks there); GFLOP/s "effective": counted as the
//                  direct convolution's flops, so they compare with the columns beside them
//   error          Winograd's and the direct path's float results against the direct path in
//                  double: relative L2 (||a - b|| / ||b||) and largest error over largest value
// GFLOP/s count 2 N O OH OW (C/G) KH KW flops for each pass; every figure is the median of
// several runs on 2 threads, in float, and the percent columns are of the 2-thread FMA peak
// measured first in the same run (timing.hpp).
#include "timing.hpp"
#include "../autodiff/kernels/conv.hpp"
#include "../autodiff/kernels/gemm.hpp"
#include "../autodiff/kernels/winograd.hpp"
#include "../attribution/methods.hpp"
#include "../nn/zoo.hpp"

#include <algorithm>
#include <cmath>
#include <chrono>
#include <cstdio>
#include <cstring>
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
  s.winograd = false;  // the direct/GEMM path; Winograd is timed beside it
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
    ax::kernels::conv2d_backward_data<float>(s, gy.data(), w.data(), gx.data(), true, workspace.data());
  });
  // gemm_only computes whole chunks: scale its flops to the chunks it ran
  const double gemm_flops = s.flops() * double(chunks * s.chunk) / double(batch);
  const double f = s.flops() * 1e-9 / forward, g = gemm_flops * 1e-9 / gemm_only, b = s.flops() * 1e-9 / backward;
  std::printf("  %-24s %5zu %5zu %8.1f %8.1f %4.0f%% %10.1f %8.1f %4.0f%% %9.1f\n", c.name, batch, s.chunk,
              double(workspace.size() * sizeof(float)) / (1 << 20), f, 100 * f / peak, g, b, 100 * b / peak,
              forward * 1e3);
}

// ||a - b|| / ||b|| and max |a - b| / max |b|
struct Errors {
  double l2, max;
};
Errors errors(const std::vector<float>& a, const std::vector<double>& b) {
  double d2 = 0, b2 = 0, dm = 0, bm = 0;
  for (std::size_t i = 0; i < b.size(); ++i) {
    const double d = double(a[i]) - b[i];
    d2 += d * d, b2 += b[i] * b[i], dm = std::max(dm, std::fabs(d)), bm = std::max(bm, std::fabs(b[i]));
  }
  return {std::sqrt(d2 / b2), dm / bm};
}

// Winograd beside the direct path on one 3 x 3 stride-1 shape: time and error, forward and
// backward-data.
void bench_winograd(const Conv& c, std::size_t batch, int runs) {
  Conv2dShape s = shape_of(c, batch, ax::kernels::kConvWorkspaceBytes);
  std::mt19937 rng(1);
  const std::vector<float> x = random_vector(batch * c.in_channels * c.size * c.size, rng);
  const std::vector<float> w = random_vector(c.out_channels * s.patch(), rng);
  const std::vector<float> gy = random_vector(batch * c.out_channels * s.out_pixels(), rng);
  std::vector<float> y(gy.size()), gx(x.size()), workspace(ax::kernels::conv2d_workspace(s));
  // s.winograd false: conv2d's other routes; true: the Winograd kernels themselves (conv2d's
  // dispatch gives some shapes Winograd fits to the indirect tiles instead: conv.cpp)
  const auto forward = [&] {
    if (s.winograd) return ax::kernels::winograd_forward(s, x.data(), w.data(), nullptr, y.data(), false);
    ax::kernels::conv2d_forward<float>(s, x.data(), w.data(), nullptr, y.data(), false, workspace.data());
  };
  const auto backward = [&] {
    if (s.winograd) return ax::kernels::winograd_backward_data(s, gy.data(), w.data(), gx.data(), true);
    ax::kernels::conv2d_backward_data<float>(s, gy.data(), w.data(), gx.data(), true, workspace.data());
  };
  // The fastest of `runs` rounds, each timing the four in turn (direct forward, Winograd forward,
  // direct backward, Winograd backward): a burst of load from another process hits all four alike,
  // and the fastest round is what the code does undisturbed.
  double direct_fwd = INFINITY, wino_fwd = INFINITY, direct_bwd = INFINITY, wino_bwd = INFINITY;
  const auto fastest = [&](bool winograd, const auto& f, double& best) {
    s.winograd = winograd;
    best = std::min(best, timing::time_runs(1, f).best);
  };
  forward(), backward();  // warm-up
  for (int round = 0; round < runs; ++round) {
    fastest(false, forward, direct_fwd), fastest(true, forward, wino_fwd);
    fastest(false, backward, direct_bwd), fastest(true, backward, wino_bwd);
  }
  s.winograd = true;
  const bool taken = ax::kernels::winograd_fits(s);

  // errors against the direct path in double: forward, and backward-data from gx = 0
  const std::vector<double> xd(x.begin(), x.end()), wd(w.begin(), w.end()), gyd(gy.begin(), gy.end());
  std::vector<double> yd(y.size()), gxd(x.size(), 0.0), workspace_d(workspace.size());
  s.winograd = false;
  ax::kernels::conv2d_forward<double>(s, xd.data(), wd.data(), nullptr, yd.data(), false, workspace_d.data());
  ax::kernels::conv2d_backward_data<double>(s, gyd.data(), wd.data(), gxd.data(), true, workspace_d.data());
  Errors e[2][2];  // [direct, winograd][forward, backward]
  for (bool winograd : {false, true}) {
    s.winograd = winograd;
    forward();
    std::fill(gx.begin(), gx.end(), 0.f);
    backward();
    e[winograd][0] = errors(y, yd), e[winograd][1] = errors(gx, gxd);
  }
  const double gf = s.flops() * 1e-9;
  if (!taken) {  // too few tiles: conv2d keeps the direct path
    std::printf("  %-24s %5zu %8.1f     (direct: %zu tiles)          %8.1f                         %7.1e %7.1e\n", c.name,
                batch, gf / direct_fwd, batch * ((s.out_h() + 3) / 4) * ((s.out_w() + 3) / 4), gf / direct_bwd, e[0][0].l2,
                e[0][1].l2);
    return;
  }
  std::printf("  %-24s %5zu %8.1f %8.1f %4.0f%% %5.2fx %8.1f %8.1f %4.0f%% %5.2fx   %7.1e %7.1e %7.1e %7.1e   %7.1e %7.1e\n",
              c.name, batch, gf / direct_fwd, gf / wino_fwd, 100 * gf / wino_fwd / peak, direct_fwd / wino_fwd,
              gf / direct_bwd, gf / wino_bwd, 100 * gf / wino_bwd / peak, direct_bwd / wino_bwd, e[1][0].l2,
              e[1][0].max, e[1][1].l2, e[1][1].max, e[0][0].l2, e[0][1].l2);
}

// IG-50 (riemann_middle, zero baseline, class 3, batches of 10 points) on ResNet-18 at 224 x 224
// with random weights, once through Winograd and once on the direct path: time and the relative L2
// distance of the two attributions.
void ig_resnet18() {
  namespace attr = ax::attr;
  const ax::nn::ModelSpec spec = ax::nn::resnet18(7, 1000, 224);
  attr::TargetSpec target;
  target.class_index = 3;
  const std::size_t per_point = attr::Engine<float>(spec, target).bytes_per_point();
  attr::EngineOptions options;
  options.memory_budget = 10 * per_point;  // chunks of 10 path points, as bench_networks
  attr::Engine<float> f(spec, target, options);
  std::mt19937 rng(2);
  std::uniform_real_distribution<float> dist(0.f, 1.f);
  ax::Tensor<float> x(f.input_shape());
  for (float& v : x) v = dist(rng);
  const ax::Tensor<float> baseline = ax::zeros<float>(f.input_shape());
  attr::IgOptions o;
  o.rule = attr::Rule::riemann_middle;
  o.steps = 50;
  ax::Tensor<float> values[2];
  double seconds[2];
  for (bool winograd : {true, false}) {
    ax::kernels::set_winograd(winograd);
    seconds[winograd] = median_seconds(3, [&] { values[winograd] = attr::integrated_gradients(f, x, baseline, o).values; });
  }
  ax::kernels::set_winograd(false);
  std::vector<float> a(values[1].begin(), values[1].end());
  std::vector<double> b(values[0].begin(), values[0].end());
  const Errors e = errors(a, b);
  std::printf("\nIG-50 on ResNet-18 at 224 x 224 (riemann_middle, batches of 10, random weights), median of 3:\n"
              "  direct %.2f s, Winograd %.2f s (%.2fx); Winograd's attribution against the direct one: relative L2 %.1e, "
              "largest error over largest value %.1e\n",
              seconds[0], seconds[1], seconds[0] / seconds[1], e.l2, e.max);
}

}  // namespace

int main(int argc, char** argv) {
  // --winograd: only the Winograd table and the IG-50 comparison
  const bool winograd_only = argc > 1 && std::strcmp(argv[1], "--winograd") == 0;
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
  if (!winograd_only) {
    for (std::size_t batch : {1, 10})
      for (const Conv& c : resnet) bench(c, batch, 7);
    for (const Conv& c : lenet) bench(c, 50, 7);
    bench(depthwise, 10, 7);
  }

  std::printf("\nWinograd F(4x4, 3x3) beside the direct/GEMM path, float, 2 threads: effective GFLOP/s (the direct\n"
              "convolution's flops; fastest of 9 interleaved rounds), %% of peak, speedup; error against the direct path\n"
              "in double (relative L2, max)\n");
  std::printf("  %-24s %5s %8s %8s %5s %6s %8s %8s %5s %6s   %-15s %-15s   %-15s\n", "shape", "batch", "fwd dir", "fwd win",
              "%", "x", "bwd dir", "bwd win", "%", "x", "win fwd L2/max", "win bwd L2/max", "direct fwd/bwd L2");
  for (std::size_t batch : {1, 10})
    for (const Conv& c : resnet)
      if (c.kernel == 3 && c.stride == 1) bench_winograd(c, batch, 9);
  for (const Conv& c : lenet)
    if (c.in_channels >= ax::kernels::kWinogradMinChannels) bench_winograd(c, 50, 9);
  ig_resnet18();
  if (winograd_only) return 0;

  // How the workspace budget (samples lowered at once) changes the speed: small chunks keep the
  // columns in cache but give the GEMM fewer columns.
  std::printf("\nworkspace budget sweep, batch 10 (the library uses %zu MiB):\n", ax::kernels::kConvWorkspaceBytes >> 20);
  std::printf("  %-24s %5s %5s %8s %8s %5s %10s %8s %5s %9s\n", "shape", "batch", "chunk", "ws MiB", "forward", "%",
              "gemm alone", "bwd data", "%", "fwd ms");
  for (const Conv& c : {resnet[1], resnet[3], resnet[7]})
    for (std::size_t mib : {2, 8, 32, 128}) bench(c, 10, 7, mib << 20);
  return 0;
}
