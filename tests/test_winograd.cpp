// Winograd F(4x4, 3x3) (autodiff/kernels/winograd.hpp) against the direct convolution computed in
// double: forward (with bias, written or accumulated) and backward-data, on shapes with odd
// sizes, cut edge tiles, 1 x 1 images, padding 0, 1 and 2, several samples and several blocks;
// against its own matrix reference; the same bits on 1 and 2 threads; and the dispatch: which
// convolutions take it (forward and backward-data), the default (on) and how to keep the direct
// path, the conv op through both, exact IG held to the direct path.
#include "autodiff/kernels/conv.hpp"
#include "autodiff/kernels/winograd.hpp"
#include "attribution/methods.hpp"
#include "autodiff/ops.hpp"
#include "nn/zoo.hpp"
#include "support.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <string>
#include <thread>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

using namespace ax;
using ax::test::same_bits;
using ax::test::uniform;

namespace {

// Measured on these shapes (values in [-1, 1], 16 to 64 channels): the Winograd result is
// within 1.7e-6 (relative L2) and 5.7e-6 (largest error over largest value) of the exact
// convolution, against about 1e-7 for the direct float path (bench_conv): the transforms'
// constants (4, 5, 8, 1/6, 1/24) amplify rounding. The bounds leave a factor of about 3 over those
// figures and sit far below what a wrong coefficient gives (1e-2 and more).
constexpr double kMaxRelL2 = 5e-6;
constexpr double kMaxRelMax = 2e-5;

struct Errors {
  double l2 = 0, max = 0;  // ||a - b|| / ||b|| and max |a - b| / max |b|
};
Errors errors(const Tensor<float>& a, const Tensor<double>& b) {
  double diff2 = 0, ref2 = 0, diff_max = 0, ref_max = 0;
  for (std::size_t i = 0; i < b.size(); ++i) {
    const double d = double(a.data()[i]) - b.data()[i];
    diff2 += d * d, ref2 += b.data()[i] * b.data()[i];
    diff_max = std::fmax(diff_max, std::fabs(d)), ref_max = std::fmax(ref_max, std::fabs(b.data()[i]));
  }
  return {std::sqrt(diff2 / ref2), diff_max / ref_max};
}
void check_close(const Tensor<float>& a, const Tensor<double>& b) {
  const Errors e = errors(a, b);
  CAPTURE(e.l2);
  CAPTURE(e.max);
  CHECK(e.l2 <= kMaxRelL2);
  CHECK(e.max <= kMaxRelMax);
}

Tensor<double> widen(const Tensor<float>& t) {
  Tensor<double> out(t.shape());
  for (std::size_t i = 0; i < t.size(); ++i) out.data()[i] = t.data()[i];
  return out;
}

kernels::Conv2dShape shape(std::size_t n, std::size_t c, std::size_t h, std::size_t w, std::size_t o, std::size_t pad) {
  kernels::Conv2dShape s;
  s.batch = n, s.in_channels = c, s.in_h = h, s.in_w = w, s.out_channels = o;
  s.kernel_h = s.kernel_w = 3, s.pad_h = s.pad_w = pad;
  s.winograd = true;  // whatever set_winograd says
  return s;
}

struct Data {
  Tensor<float> x, w, b, gy;
};
Data random_case(const kernels::Conv2dShape& s, std::mt19937_64& rng) {
  return {uniform<float>({s.batch, s.in_channels, s.in_h, s.in_w}, -1, 1, rng),
          uniform<float>({s.out_channels, s.in_channels, 3, 3}, -1, 1, rng),
          uniform<float>({s.out_channels}, -1, 1, rng),
          uniform<float>({s.batch, s.out_channels, s.out_h(), s.out_w()}, -1, 1, rng)};
}

// Forward (written and accumulated) and backward-data against the direct loops in double.
void compare_with_direct(const kernels::Conv2dShape& s, std::size_t block_bytes, std::mt19937_64& rng) {
  const Data d = random_case(s, rng);
  const Tensor<double> x = widen(d.x), w = widen(d.w), b = widen(d.b), gy = widen(d.gy);
  const Shape ys = d.gy.shape();

  Tensor<float> y(ys);
  Tensor<double> y_ref(ys);
  kernels::winograd_forward(s, d.x.data(), d.w.data(), d.b.data(), y.data(), false, block_bytes);
  kernels::conv2d_forward_reference(s, x.data(), w.data(), b.data(), y_ref.data());
  check_close(y, y_ref);

  Tensor<float> acc = uniform<float>(ys, -1, 1, rng);  // y += conv + bias
  Tensor<double> acc_ref = widen(acc);
  kernels::winograd_forward(s, d.x.data(), d.w.data(), d.b.data(), acc.data(), true, block_bytes);
  for (std::size_t i = 0; i < y_ref.size(); ++i) acc_ref.data()[i] += y_ref.data()[i];
  check_close(acc, acc_ref);

  Tensor<float> gx = uniform<float>(d.x.shape(), -1, 1, rng);  // gx += conv^T(gy, w)
  Tensor<double> gx_ref = widen(gx);
  kernels::winograd_backward_data(s, d.gy.data(), d.w.data(), gx.data(), true, block_bytes);
  kernels::conv2d_backward_data_reference(s, gy.data(), w.data(), gx_ref.data());
  check_close(gx, gx_ref);
}

}  // namespace

TEST_CASE("Winograd forward and backward-data match the direct convolution on awkward shapes") {
  std::mt19937_64 rng(71);
  struct Case { std::size_t n, c, h, w, o, pad; };
  for (const Case& k : {Case{1, 16, 1, 1, 16, 1}, Case{3, 17, 13, 7, 19, 1}, Case{2, 16, 9, 11, 33, 0},
                        Case{1, 20, 5, 6, 16, 2}, Case{2, 32, 8, 8, 16, 1}, Case{1, 16, 3, 3, 16, 0},
                        Case{2, 64, 14, 14, 64, 1}, Case{1, 24, 2, 17, 40, 1},
                        Case{16, 16, 16, 16, 16, 1}}) {  // 256 tiles: rows of V and M padded apart
    const kernels::Conv2dShape s = shape(k.n, k.c, k.h, k.w, k.o, k.pad);
    INFO(k.n << " x " << k.c << " x " << k.h << " x " << k.w << " -> " << k.o << ", padding " << k.pad);
    compare_with_direct(s, kernels::kWinogradBlockBytes, rng);
    INFO("one tile row per block");
    compare_with_direct(s, 1, rng);
  }
}

TEST_CASE("Winograd's fast path matches its matrix reference") {
  std::mt19937_64 rng(72);
  for (const kernels::Conv2dShape& s : {shape(2, 17, 11, 9, 21, 1), shape(1, 16, 6, 13, 16, 0)}) {
    const Data d = random_case(s, rng);
    Tensor<float> fast(d.gy.shape()), ref(d.gy.shape());
    kernels::winograd_forward(s, d.x.data(), d.w.data(), d.b.data(), fast.data(), false);
    kernels::winograd_forward_reference(s, d.x.data(), d.w.data(), d.b.data(), ref.data());
    check_close(fast, widen(ref));
  }
}

TEST_CASE("Winograd gives the same bits on 1 and 2 threads, in one block or several") {
#ifdef _OPENMP
  std::mt19937_64 rng(73);
  const kernels::Conv2dShape s = shape(2, 48, 30, 29, 40, 1);  // past the threading threshold
  const Data d = random_case(s, rng);
  const int saved = omp_get_max_threads();
  for (std::size_t block_bytes : {kernels::kWinogradBlockBytes, std::size_t(300) << 10}) {
    CAPTURE(block_bytes);
    Tensor<float> y[2] = {Tensor<float>(d.gy.shape()), Tensor<float>(d.gy.shape())};
    Tensor<float> gx[2] = {uniform<float>(d.x.shape(), -1, 1, rng), {}};
    gx[1] = gx[0];
    for (int threads : {1, 2}) {
      omp_set_num_threads(threads);
      kernels::winograd_forward(s, d.x.data(), d.w.data(), d.b.data(), y[threads - 1].data(), false, block_bytes);
      kernels::winograd_backward_data(s, d.gy.data(), d.w.data(), gx[threads - 1].data(), true, block_bytes);
    }
    CHECK(same_bits(y[0], y[1]));
    CHECK(same_bits(gx[0], gx[1]));
  }
  omp_set_num_threads(saved);
#else
  MESSAGE("built without OpenMP: nothing to compare");
#endif
}

TEST_CASE("conv2d takes Winograd for float 3 x 3 stride-1 convolutions with enough channels, unless told not to") {
  CHECK(kernels::winograd_fits(shape(2, 16, 16, 16, 16, 1)));
  CHECK_FALSE(kernels::winograd_fits(shape(2, 15, 16, 16, 64, 1)));  // too few channels on either side
  CHECK_FALSE(kernels::winograd_fits(shape(2, 64, 16, 16, 15, 1)));
  CHECK_FALSE(kernels::winograd_fits(shape(1, 256, 14, 14, 256, 1)));  // 16 tiles: too few
  CHECK(kernels::winograd_fits(shape(2, 256, 14, 14, 256, 1)));
  kernels::Conv2dShape s = shape(2, 16, 16, 16, 16, 1);
  s.stride_w = 2;
  CHECK_FALSE(kernels::winograd_fits(s));
  s = shape(2, 16, 16, 16, 16, 1), s.dilation_h = 2;
  CHECK_FALSE(kernels::winograd_fits(s));
  s = shape(2, 16, 16, 16, 16, 1), s.groups = 2;
  CHECK_FALSE(kernels::winograd_fits(s));
  s = shape(2, 16, 16, 16, 16, 1), s.kernel_w = 5, s.pad_w = 2;
  CHECK_FALSE(kernels::winograd_fits(s));
  s = shape(2, 16, 16, 16, 16, 1), s.winograd = false;
  CHECK_FALSE(kernels::winograd_fits(s));

  // conv2d_forward and conv2d_backward_data dispatch to it; winograd = false keeps the GEMM.
  // 16 -> 48 channels on rows of 17 pixels: too many outputs on too long rows for the indirect
  // tiles, which take the forward of shapes they fit (below)
  std::mt19937_64 rng(74);
  s = shape(4, 16, 16, 17, 48, 1);
  const Data d = random_case(s, rng);
  std::vector<float> workspace(kernels::conv2d_workspace(s));
  Tensor<float> via_conv(d.gy.shape()), via_winograd(d.gy.shape()), direct(d.gy.shape()), direct_ref(d.gy.shape());
  kernels::conv2d_forward(s, d.x.data(), d.w.data(), d.b.data(), via_conv.data(), false, workspace.data());
  kernels::winograd_forward(s, d.x.data(), d.w.data(), d.b.data(), via_winograd.data(), false);
  CHECK(same_bits(via_conv, via_winograd));
  kernels::Conv2dShape kept = s;
  kept.winograd = false;
  kernels::conv2d_forward(kept, d.x.data(), d.w.data(), d.b.data(), direct.data(), false, workspace.data());
  kernels::conv2d_forward_reference(kept, d.x.data(), d.w.data(), d.b.data(), direct_ref.data());
  CHECK_FALSE(same_bits(direct, via_winograd));
  // the forward of 16 -> 24 channels on rows of 10 pixels fits Winograd, but the indirect tiles take it
  const kernels::Conv2dShape narrow = shape(4, 16, 9, 10, 24, 1);
  REQUIRE(kernels::winograd_fits(narrow));
  const Data n = random_case(narrow, rng);
  std::vector<float> n_workspace(kernels::conv2d_workspace(narrow));
  Tensor<float> n_conv(n.gy.shape()), n_winograd(n.gy.shape()), n_kept(n.gy.shape());
  kernels::conv2d_forward(narrow, n.x.data(), n.w.data(), n.b.data(), n_conv.data(), false, n_workspace.data());
  kernels::winograd_forward(narrow, n.x.data(), n.w.data(), n.b.data(), n_winograd.data(), false);
  kernels::Conv2dShape narrow_kept = narrow;
  narrow_kept.winograd = false;
  kernels::conv2d_forward(narrow_kept, n.x.data(), n.w.data(), n.b.data(), n_kept.data(), false, n_workspace.data());
  CHECK_FALSE(same_bits(n_conv, n_winograd));
  CHECK(same_bits(n_conv, n_kept));
  // backward-data: 16 -> 48 channels keeps the direct kernel (winograd_backward_fits), 24 -> 16 takes Winograd
  CHECK_FALSE(kernels::winograd_backward_fits(s));
  CHECK(kernels::winograd_backward_fits(shape(4, 32, 9, 10, 64, 1)));
  CHECK_FALSE(kernels::winograd_backward_fits(shape(1, 64, 8, 8, 64, 1)));  // 4 tiles: not even forward
  Tensor<float> gx_conv = zeros<float>(d.x.shape()), gx_direct = zeros<float>(d.x.shape());
  kernels::conv2d_backward_data(s, d.gy.data(), d.w.data(), gx_conv.data(), true, workspace.data());
  kernels::conv2d_backward_data(kept, d.gy.data(), d.w.data(), gx_direct.data(), true, workspace.data());
  CHECK(same_bits(gx_conv, gx_direct));
  const kernels::Conv2dShape t = shape(4, 24, 9, 10, 16, 1);
  REQUIRE(kernels::winograd_backward_fits(t));
  const Data e = random_case(t, rng);
  std::vector<float> t_workspace(kernels::conv2d_workspace(t));
  Tensor<float> gt_conv = zeros<float>(e.x.shape()), gt_winograd = zeros<float>(e.x.shape());
  kernels::conv2d_backward_data(t, e.gy.data(), e.w.data(), gt_conv.data(), true, t_workspace.data());
  kernels::winograd_backward_data(t, e.gy.data(), e.w.data(), gt_winograd.data(), true);
  CHECK(same_bits(gt_conv, gt_winograd));

  // 128 -> 32 channels on rows of 8 fits the indirect tiles, but the forward takes Winograd (deep
  // windows on rows of 8 and more); on rows of 3 the forward keeps the indirect tiles, and
  // backward-data, which winograd_backward_fits would give Winograd, keeps the GEMM (tiles
  // mostly padding)
  for (const kernels::Conv2dShape& u : {shape(8, 128, 8, 8, 32, 1), shape(32, 128, 3, 3, 32, 1)}) {
    const bool long_rows = u.out_w() >= 8;
    CAPTURE(u.out_w());
    REQUIRE(kernels::winograd_backward_fits(u));
    const Data g = random_case(u, rng);
    kernels::Conv2dShape u_kept = u;
    u_kept.winograd = false;
    std::vector<float> u_workspace(kernels::conv2d_workspace(u));
    Tensor<float> y_conv(g.gy.shape()), y_winograd(g.gy.shape()), y_kept(g.gy.shape());
    kernels::conv2d_forward(u, g.x.data(), g.w.data(), g.b.data(), y_conv.data(), false, u_workspace.data());
    kernels::winograd_forward(u, g.x.data(), g.w.data(), g.b.data(), y_winograd.data(), false);
    kernels::conv2d_forward(u_kept, g.x.data(), g.w.data(), g.b.data(), y_kept.data(), false, u_workspace.data());
    CHECK_FALSE(same_bits(y_winograd, y_kept));
    CHECK(same_bits(y_conv, long_rows ? y_winograd : y_kept));
    Tensor<float> gx_conv = zeros<float>(g.x.shape()), gx_winograd = zeros<float>(g.x.shape());
    Tensor<float> gx_kept = zeros<float>(g.x.shape());
    kernels::conv2d_backward_data(u, g.gy.data(), g.w.data(), gx_conv.data(), true, u_workspace.data());
    kernels::winograd_backward_data(u, g.gy.data(), g.w.data(), gx_winograd.data(), true);
    kernels::conv2d_backward_data(u_kept, g.gy.data(), g.w.data(), gx_kept.data(), true, u_workspace.data());
    CHECK(same_bits(gx_conv, long_rows ? gx_winograd : gx_kept));
    CHECK_FALSE(same_bits(gx_winograd, gx_kept));
  }
}

TEST_CASE("Winograd is on by default; set_winograd(false) and DirectConvolutions keep the direct path") {
  // set_winograd is the default of every shape made afterwards: on unless set off
  CHECK(kernels::winograd_enabled());
  CHECK(kernels::Conv2dShape{}.winograd);
  kernels::set_winograd(false);
  CHECK_FALSE(kernels::Conv2dShape{}.winograd);
  kernels::set_winograd(true);
  CHECK(kernels::Conv2dShape{}.winograd);
  // a DirectConvolutions turns it off on its own thread only, nested scopes included
  {
    kernels::DirectConvolutions direct;
    CHECK_FALSE(kernels::Conv2dShape{}.winograd);
    {
      kernels::DirectConvolutions nested;
      CHECK_FALSE(kernels::winograd_enabled());
    }
    CHECK_FALSE(kernels::winograd_enabled());
    bool other_thread = false;
    std::thread([&] { other_thread = kernels::winograd_enabled(); }).join();
    CHECK(other_thread);
  }
  CHECK(kernels::Conv2dShape{}.winograd);
}

TEST_CASE("the conv op in float through Winograd stays within its error of the direct path, value and gradient") {
  std::mt19937_64 rng(75);
  // 48 channels on rows of 16 pixels: Winograd's forward (fewer outputs or shorter rows take the
  // indirect tiles) and backward-data
  const Tensor<float> xv = uniform<float>({4, 48, 16, 16}, -1, 1, rng), wv = uniform<float>({48, 48, 3, 3}, -1, 1, rng);
  const Tensor<float> bv = uniform<float>({48}, -1, 1, rng);
  const auto run = [&](bool winograd) {
    kernels::set_winograd(winograd);
    Tape<float> tape;
    const Var<float> x = tape.input(xv);
    const Var<float> y = conv2d(relu(conv2d(x, tape.parameter(wv), tape.parameter(bv), 1, 1)), tape.parameter(wv), 1, 1);
    tape.backward(sum(y));
    std::pair<Tensor<float>, Tensor<float>> out{tape.value(y), tape.grad(x)};
    kernels::set_winograd(true);  // the default
    return out;
  };
  const auto [y_w, g_w] = run(true);
  const auto [y_d, g_d] = run(false);
  CHECK_FALSE(same_bits(y_w, y_d));  // the op did take Winograd
  check_close(y_w, widen(y_d));
  check_close(g_w, widen(g_d));
}

TEST_CASE("exact IG keeps the direct convolutions, Winograd on or off") {
  // A LeNet at 20 x 20 whose second convolution, 16 -> 48 channels on rows of 16 pixels, comes
  // before the pooling: its forward takes Winograd at 2 points and more, as exact IG's search
  // batches (up to 64 points) would (LeNet-28's 16 -> 32 on rows of 11 takes the indirect
  // tiles); its rounding would add breakpoints
  const nn::ModelSpec spec = [] {
    nn::SpecBuilder b("input", {1, 20, 20}, 5);
    b.set_range(0.0, 1.0);
    std::string h = b.relu("relu1", b.conv2d("conv1", "input", 1, 16, 3));
    h = b.maxpool2d("pool", b.relu("relu2", b.conv2d("conv2", h, 16, 48, 3)), 4, 4);
    return b.finish(b.linear("fc", b.flatten("flat", h), 48 * 4 * 4, 10));
  }();
  std::mt19937_64 rng(76);
  const Tensor<float> x = uniform<float>({1, 20, 20}, 0, 1, rng), base = zeros<float>({1, 20, 20});
  attr::IgOptions options;
  options.rule = attr::Rule::exact;
  const auto run = [&](bool winograd) {
    kernels::set_winograd(winograd);
    attr::Engine<float> f(spec, attr::TargetSpec{});
    f.resolve_class(x);
    const attr::Attribution<float> a = attr::integrated_gradients(f, x, base, options);
    kernels::set_winograd(true);
    return a;
  };
  const attr::Attribution<float> on = run(true), off = run(false);
  CHECK(on.pieces == off.pieces);
  CHECK(same_bits(on.values, off.values));
  // while IG by a quadrature rule does take Winograd: F at its 16 points, other bits
  options.rule = attr::Rule::gausslegendre, options.steps = 16, options.diagnostics = true;
  attr::Engine<float> f(spec, attr::TargetSpec{});
  f.resolve_class(x);
  const std::vector<double> fast = attr::integrated_gradients(f, x, base, options).path_f;
  kernels::set_winograd(false);
  const std::vector<double> direct = attr::integrated_gradients(f, x, base, options).path_f;
  kernels::set_winograd(true);
  REQUIRE(fast.size() == 16);
  CHECK(fast != direct);
}
