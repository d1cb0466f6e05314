// Exact IG on the shipped model: every shipped image (examples/images/*.png) explained from a
// black image, float32, the predicted class's logit, 2 threads (--threads). For each image: the
// pieces, the path points evaluated, the completeness gap and the median time of the runs; then, in
// the same run, the time a point of a 1000-step Gauss-Legendre IG costs on the same image, and
// the ratio of a piece's cost to a point's; the CPU time of every thread beside (on a shared
// machine, with OMP_WAIT_POLICY=passive, the work itself), and the main thread's (there, about
// the wall time of an idle machine: the work no other thread shares, and the main thread's
// share of the rest). With --before, also the first implementation (the
// reference breakpoint search, then a full forward and backward pass at every piece's
// midpoint), its time, and how far its breakpoints and attributions are from today's.
// Prints figures; never fails.
//
// With --digest 1, each image's breakpoints and attributions are hashed (their bits), so that a
// change meant to keep the results can be checked against the code before it, image by image;
// with --gl 0, no Gauss-Legendre run (exact IG alone, for a sampling profiler).
//
//   bench_exact [--runs N] [--images N] [--before 0|1] [--digest 0|1] [--threads N] [--gl 0|1]
//   (defaults: 3, all ten, 1, 0, 2, 1; --help)
#include "../attribution/io.hpp"
#include "../attribution/methods.hpp"
#include "../autodiff/kernels/conv.hpp"
#include "../nn/model_file.hpp"
#include "timing.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <ctime>
#include <string>
#include <vector>

namespace {

using namespace ax;

// CPU seconds of the whole process (every thread): on a shared machine, with threads that wait
// passively (OMP_WAIT_POLICY=passive), the work done, which other processes' load does not inflate.
double cpu_seconds(clockid_t clock = CLOCK_PROCESS_CPUTIME_ID) {
  timespec t{};
  clock_gettime(clock, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

// CPU seconds of the calling thread: on a busy machine, about the wall time an idle one takes
// (the work no other thread shares, and the main thread's share of the rest).
double main_thread_seconds() { return cpu_seconds(CLOCK_THREAD_CPUTIME_ID); }

// The median; of an even count, the mean of the middle two (ten images: not the upper one).
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  if (v.empty()) return 0.0;
  const std::size_t half = v.size() / 2;
  return v.size() % 2 ? v[half] : 0.5 * (v[half - 1] + v[half]);
}

std::vector<std::string> shipped_images() {
  std::vector<std::string> paths;
  for (const auto& entry : std::filesystem::directory_iterator(std::string(AXIOMATIC_BENCH_DIR) + "/../examples/images"))
    if (entry.path().extension() == ".png") paths.push_back(entry.path().string());
  std::sort(paths.begin(), paths.end());
  return paths;
}

// Exact IG as first written: the reference search, then F and dF/dx at each piece's midpoint
// (full passes, in chunks), weighted by the piece's width. Returns the attributions.
Tensor<float> exact_before(attr::Engine<float>& f, const Tensor<float>& x, const Tensor<float>& base,
                           std::vector<double>& breaks) {
  breaks = attr::path_breakpoints_reference(f, x, base);
  const std::size_t size = x.size(), pieces = breaks.size() - 1;
  std::vector<double> total(size, 0.0), values;
  Tensor<float> points, grads;
  for (std::size_t begin = 0; begin < pieces; begin += f.chunk()) {
    const std::size_t n = std::min(f.chunk(), pieces - begin);
    Shape shape{n};
    for (std::size_t d : f.input_shape()) shape.push_back(d);
    points.resize(shape);
    for (std::size_t i = 0; i < n; ++i) {
      const float a = float(0.5 * (breaks[begin + i] + breaks[begin + i + 1]));
      for (std::size_t j = 0; j < size; ++j) points.data()[i * size + j] = base.data()[j] + a * (x.data()[j] - base.data()[j]);
    }
    f.evaluate(points, values, &grads);
    for (std::size_t i = 0; i < n; ++i) {
      const float w = float(breaks[begin + i + 1] - breaks[begin + i]);
      for (std::size_t j = 0; j < size; ++j) total[j] += double(w * grads.data()[i * size + j]);
    }
  }
  Tensor<float> a(x.shape());
  for (std::size_t j = 0; j < size; ++j) a.data()[j] = float((x.data()[j] - base.data()[j]) * total[j]);
  return a;
}

// FNV-1a over the bytes of n values: equal digests, equal bits (to a 2^-64 chance).
template <class V>
std::uint64_t digest(const V* v, std::size_t n) {
  std::uint64_t h = 1469598103934665603ull;
  const unsigned char* b = reinterpret_cast<const unsigned char*>(v);
  for (std::size_t i = 0; i < n * sizeof(V); ++i) h = (h ^ b[i]) * 1099511628211ull;
  return h;
}

double relative_l2(const Tensor<float>& a, const Tensor<float>& b) {
  double diff = 0, norm = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    diff += (double(a.data()[i]) - b.data()[i]) * (double(a.data()[i]) - b.data()[i]);
    norm += double(b.data()[i]) * b.data()[i];
  }
  return std::sqrt(diff / std::max(norm, 1e-300));
}

}  // namespace

int main(int argc, char** argv) {
  int runs = 3;
  std::size_t count = 100;
  bool before = true, digests = false, gauss_legendre = true;
  int threads = 2;
  const char* usage =
      "usage: bench_exact [--runs N] [--images N] [--before 0|1] [--digest 0|1] [--threads N]\n"
      "                   [--gl 0|1]\n"
      "  exact IG on the shipped model for each shipped image (the first N with --images), the median of\n"
      "  --runs runs (3); beside it, in the same run, a 1000-step Gauss-Legendre IG, whose time a point is\n"
      "  the unit of the last column (a piece's cost in points); with --before 1 (the default) also the\n"
      "  first implementation and float64 exact IG, which both float results are measured against; with\n"
      "  --digest 1, a hash of each image's breakpoints and of its attributions' bits (the same on any\n"
      "  --threads, 2 by default); --gl 0: no Gauss-Legendre run (exact IG alone, for a profiler)\n";
  for (int i = 1; i < argc; i += 2) {
    if (!std::strcmp(argv[i], "--help")) return std::printf("%s", usage), 0;
    if (i + 1 >= argc) return std::fprintf(stderr, "bench_exact: %s needs a value\n%s", argv[i], usage), 2;
    if (!std::strcmp(argv[i], "--runs")) runs = std::max(1, std::atoi(argv[i + 1]));
    else if (!std::strcmp(argv[i], "--images")) count = std::size_t(std::max(1, std::atoi(argv[i + 1])));
    else if (!std::strcmp(argv[i], "--before")) before = std::atoi(argv[i + 1]) != 0;
    else if (!std::strcmp(argv[i], "--digest")) digests = std::atoi(argv[i + 1]) != 0;
    else if (!std::strcmp(argv[i], "--gl")) gauss_legendre = std::atoi(argv[i + 1]) != 0;
    else if (!std::strcmp(argv[i], "--threads")) threads = std::max(1, std::atoi(argv[i + 1]));
    else return std::fprintf(stderr, "bench_exact: unknown argument %s\n%s", argv[i], usage), 2;
  }
  timing::set_threads(threads);
  const nn::ModelSpec spec = nn::read_model(std::string(AXIOMATIC_BENCH_DIR) + "/../examples/models/fashion_mnist.safetensors");
  std::vector<std::string> images = shipped_images();
  if (images.size() > count) images.resize(count);

  std::printf("exact IG on the shipped model, float32, %d threads, median of %d runs per image\n", threads, runs);
  std::printf("  %-28s %7s %8s %9s %9s %9s %9s %10s %10s %7s\n", "image", "pieces", "points", "gap", "exact s", "cpu s", "main s",
              "ms/piece", "ms/GL pt", "ratio");
  std::vector<double> exact_times, exact_cpu, exact_main, ratios, cpu_ratios, before_times, speedups;
  for (const std::string& path : images) {
    attr::Engine<float> f(spec, attr::TargetSpec{});
    const Tensor<float> x = attr::read_png(path);
    const Tensor<float> base = zeros<float>(f.input_shape());
    const Tensor<float> xs = Tensor<float>(xt::reshape_view(x, f.input_shape()));
    f.resolve_class(xs);
    attr::IgOptions exact;
    exact.rule = attr::Rule::exact;
    attr::Attribution<float> a;
    std::size_t points = 0;
    std::vector<double> cpu, main_cpu;
    const timing::MedianBest t = timing::time_runs(runs, [&] {
      const std::size_t before = f.evaluations();
      const double cpu0 = cpu_seconds(), main0 = main_thread_seconds();
      a = attr::integrated_gradients(f, xs, base, exact);
      cpu.push_back(cpu_seconds() - cpu0);
      main_cpu.push_back(main_thread_seconds() - main0);
      points = f.evaluations() - before;
    });
    attr::IgOptions gl;
    gl.rule = attr::Rule::gausslegendre;
    gl.steps = 1000;
    std::vector<double> gl_cpu;
    const timing::MedianBest g = timing::time_runs(gauss_legendre ? runs : 1, [&] {
      if (!gauss_legendre) return gl_cpu.push_back(0.0);
      const double cpu0 = cpu_seconds();
      attr::integrated_gradients(f, xs, base, gl);
      gl_cpu.push_back(cpu_seconds() - cpu0);
    });
    const double per_piece = t.median / double(a.pieces) * 1e3, per_point = g.median / 1000 * 1e3;
    exact_times.push_back(t.median);
    exact_cpu.push_back(median(cpu));
    exact_main.push_back(median(main_cpu));
    ratios.push_back(per_piece / per_point);
    cpu_ratios.push_back(median(cpu) / double(a.pieces) / (median(gl_cpu) / 1000));
    std::printf("  %-28s %7zu %8zu %9.1e %9.3f %9.3f %9.3f %10.3f", std::filesystem::path(path).filename().string().c_str(),
                a.pieces, points, a.relative_delta, t.median, median(cpu), median(main_cpu), per_piece);
    if (gauss_legendre) std::printf(" %10.3f %7.2f\n", per_point, per_piece / per_point);
    else std::printf(" %10s %7s\n", "-", "-");
    if (digests) {
      const kernels::DirectConvolutions direct;  // as integrated_gradients runs exact IG
      const std::vector<double> breaks = attr::path_breakpoints(f, xs, base);
      std::printf("  %-28s digests: breakpoints %016llx, attributions %016llx\n", "",
                  (unsigned long long)digest(breaks.data(), breaks.size()),
                  (unsigned long long)digest(a.values.data(), a.values.size()));
    }
    if (before) {
      // on the direct convolutions, as integrated_gradients runs exact IG (Winograd's rounding
      // would add breakpoints to both searches here)
      const kernels::DirectConvolutions direct;
      std::vector<double> old_breaks;
      Tensor<float> old_values;
      const timing::MedianBest b = timing::time_runs(1, [&] { old_values = exact_before(f, xs, base, old_breaks); });
      const std::vector<double> breaks = attr::path_breakpoints(f, xs, base);
      // breakpoints paired in order when within 1e-6 (float rounding); the rest are unpaired
      double moved = 0;
      std::size_t unpaired = 0;
      for (std::size_t i = 0, k = 0; i < breaks.size() || k < old_breaks.size();) {
        if (i < breaks.size() && k < old_breaks.size() && std::abs(breaks[i] - old_breaks[k]) <= 1e-6) {
          moved = std::max(moved, std::abs(breaks[i++] - old_breaks[k++]));
        } else {
          ++unpaired;
          if (k >= old_breaks.size() || (i < breaks.size() && breaks[i] < old_breaks[k])) ++i;
          else ++k;
        }
      }
      before_times.push_back(b.median);
      speedups.push_back(b.median / t.median);
      // float64 exact IG as the truth both float results are measured against
      attr::Engine<double> f64(spec, attr::TargetSpec{});
      const Tensor<double> x64 = xt::cast<double>(xs), base64 = zeros<double>(f64.input_shape());
      f64.resolve_class(x64);
      const Tensor<double> truth = attr::integrated_gradients(f64, x64, base64, exact).values;
      const Tensor<float> truth32 = xt::cast<float>(truth);
      std::printf("  %-28s before: %7zu pieces, %9.3f s (%.1fx); breakpoints: %zu unpaired, the others within %.0e;"
                  " from float64 (rel. L2): now %.1e, before %.1e\n",
                  "", old_breaks.size() - 1, b.median, b.median / t.median, unpaired, moved, relative_l2(a.values, truth32),
                  relative_l2(old_values, truth32));
    }
    std::fflush(stdout);
  }
  std::printf("median over the images: exact IG %.3f s an image (%.3f CPU s, %.3f s of the main thread)", median(exact_times),
              median(exact_cpu), median(exact_main));
  if (gauss_legendre)
    std::printf("; a piece costs %.2f points of 1000-step Gauss-Legendre (%.2f in CPU time)", median(ratios), median(cpu_ratios));
  std::printf("\n");
  if (before)
    std::printf("before (one run each): median %.3f s an image; median speed-up %.1fx\n", median(before_times), median(speedups));
}
