// The convolutional-network ops: conv2d, maxpool2d, avgpool2d, adaptive_avgpool2d, batchnorm2d,
// normalize. Each is gradchecked in float64 (backward, tangent, dot test) on configurations that
// reach its corners; forward values are compared with the scalar reference kernels and with
// values computed by PyTorch; the max-pool tie rule is pinned; the fast kernels are compared with
// the references on awkward sizes in float and double, and on 1 and 2 threads bit for bit; and
// invalid attributes are refused with messages naming the node and the values.
#include "autodiff/gradcheck.hpp"
#include "autodiff/kernels/conv.hpp"
#include "autodiff/kernels/pool.hpp"
#include "autodiff/ops.hpp"
#include "gradcheck_support.hpp"
#include "support.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

using namespace ax;
using ax::test::max_abs_diff;
using ax::test::same_bits;
using ax::test::uniform;

namespace {

using test::Vars;

void check(const GradcheckFunction& f, const std::vector<Tensor<double>>& inputs) { test::check_gradients(f, inputs); }

// Distinct values at least 1 / size apart, shuffled: no two elements of a max-pool window are
// within the finite-difference step of each other, so no window's maximum switches during a check.
Tensor<double> distinct(const Shape& shape, std::mt19937_64& rng) {
  Tensor<double> t(shape);
  std::vector<std::size_t> order(t.size());
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  for (std::size_t i = 0; i < t.size(); ++i) t.data()[i] = 2.0 * double(order[i]) / double(t.size()) - 1.0;
  return t;
}

// The inputs of the PyTorch golden values: v[i] = ((i a) mod m) / m * 2 - 1, row-major.
Tensor<double> pattern(const Shape& shape, std::size_t a, std::size_t m) {
  Tensor<double> t(shape);
  for (std::size_t i = 0; i < t.size(); ++i) t.data()[i] = double((i * a) % m) / double(m) * 2 - 1;
  return t;
}

struct ConvCase {
  Shape x, w;
  Pair2d stride = 1, padding = 0, dilation = 1;
  std::int64_t groups = 1;
};

const std::vector<ConvCase> conv_cases = {
    {{1, 1, 1, 1}, {1, 1, 1, 1}},                              // a single multiply
    {{2, 3, 5, 5}, {4, 3, 3, 3}, 1, 1},                        // batch 2, padding
    {{2, 2, 7, 7}, {3, 2, 3, 3}, 2},                           // stride 2 on an odd size
    {{1, 2, 7, 6}, {2, 2, 3, 3}, 1, 2, 2},                     // dilation 2
    {{2, 4, 5, 5}, {6, 2, 3, 3}, 1, 1, 1, 2},                  // groups 2, two channels per group
    {{2, 3, 7, 7}, {3, 1, 3, 3}, 2, 1, 1, 3},                  // depthwise, stride 2
    {{3, 2, 3, 7}, {2, 2, 2, 3}, {1, 2}, {1, 0}, {1, 2}},      // different steps along h and w
    {{1, 3, 1, 1}, {2, 3, 1, 1}},                              // 1 x 1 images
    {{1, 1, 3, 3}, {1, 1, 3, 3}},                              // the window is the whole image
    {{2, 2, 1, 3}, {2, 2, 3, 3}, 1, 1},                        // the window mostly in the padding
};

std::string describe(const ConvCase& c) {
  return "x " + to_string(c.x) + " w " + to_string(c.w) + " stride [" + std::to_string(c.stride.h) + ", " +
         std::to_string(c.stride.w) + "] padding [" + std::to_string(c.padding.h) + ", " +
         std::to_string(c.padding.w) + "] dilation [" + std::to_string(c.dilation.h) + ", " +
         std::to_string(c.dilation.w) + "] groups " + std::to_string(c.groups);
}

kernels::Conv2dShape conv_shape(const ConvCase& c) {
  kernels::Conv2dShape s;
  s.batch = c.x[0], s.in_channels = c.x[1], s.in_h = c.x[2], s.in_w = c.x[3];
  s.out_channels = c.w[0], s.kernel_h = c.w[2], s.kernel_w = c.w[3];
  s.stride_h = std::size_t(c.stride.h), s.stride_w = std::size_t(c.stride.w);
  s.pad_h = std::size_t(c.padding.h), s.pad_w = std::size_t(c.padding.w);
  s.dilation_h = std::size_t(c.dilation.h), s.dilation_w = std::size_t(c.dilation.w);
  s.groups = std::size_t(c.groups);
  s.chunk = s.batch;
  return s;
}

struct PoolCase {
  Shape x;
  Pair2d kernel, stride, padding = 0;
  bool ceil_mode = false;
};

const std::vector<PoolCase> pool_cases = {
    {{2, 2, 4, 4}, 2, 2},                       // the common 2 x 2
    {{1, 2, 7, 7}, 3, 2, 1},                    // ResNet's stem pool on an odd size
    {{2, 1, 7, 7}, 3, 2, 1, true},              // ceil_mode: a last window past the input
    {{1, 1, 5, 5}, 2, 2, 1, true},              // ceil_mode drops a window starting in the padding
    {{1, 3, 6, 5}, {3, 2}, {2, 1}, {1, 0}},     // different windows along h and w
    {{1, 1, 1, 1}, 1, 1},                       // 1 x 1
    {{1, 1, 3, 3}, 3, 1, 1},                    // stride 1, overlapping windows
    {{1, 1, 1, 1}, 2, 2, 0, true},              // a window larger than the input, kept by ceil_mode
    {{1, 2, 7, 3}, {3, 1}, {3, 2}, {1, 0}, true},
};

std::string describe(const PoolCase& c) {
  return "x " + to_string(c.x) + " kernel [" + std::to_string(c.kernel.h) + ", " + std::to_string(c.kernel.w) +
         "] stride [" + std::to_string(c.stride.h) + ", " + std::to_string(c.stride.w) + "] padding [" +
         std::to_string(c.padding.h) + ", " + std::to_string(c.padding.w) + "] ceil_mode " + std::to_string(c.ceil_mode);
}

// The kernels' view of a pool case, with its output size as PyTorch computes it.
kernels::Pool2dShape pool_shape(const PoolCase& c, bool count_include_pad = true) {
  kernels::Pool2dShape s;
  s.planes = c.x[0] * c.x[1];
  const auto axis = [&](std::size_t in, std::int64_t k, std::int64_t st, std::int64_t p) {
    kernels::PoolAxis a;
    a.in = in;
    a.out = std::size_t(kernels::pool_output_size(std::int64_t(in), k, st, p, c.ceil_mode));
    a.kernel = std::size_t(k), a.stride = std::size_t(st), a.pad = std::size_t(p);
    a.count_include_pad = count_include_pad;
    return a;
  };
  s.h = axis(c.x[2], c.kernel.h, c.stride.h, c.padding.h);
  s.w = axis(c.x[3], c.kernel.w, c.stride.w, c.padding.w);
  return s;
}

kernels::Pool2dShape adaptive_shape(const Shape& x, std::size_t oh, std::size_t ow) {
  kernels::Pool2dShape s;
  s.planes = x[0] * x[1];
  s.h.in = x[2], s.h.out = oh, s.h.adaptive = true;
  s.w.in = x[3], s.w.out = ow, s.w.adaptive = true;
  return s;
}

// Largest |a - b| relative to max(1, |b|).
template <class T>
double max_rel_diff(const Tensor<T>& a, const Tensor<T>& b) {
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    m = std::max(m, std::abs(double(a.data()[i]) - double(b.data()[i])) / std::max(1.0, std::abs(double(b.data()[i]))));
  return m;
}

}  // namespace

// ---- gradient checks ----

TEST_CASE("gradcheck: conv2d with and without bias, strides, padding, dilation, groups, depthwise") {
  std::mt19937_64 rng(21);
  for (const ConvCase& c : conv_cases) {
    INFO(describe(c));
    const Tensor<double> x = uniform(c.x, -1, 1, rng), w = uniform(c.w, -1, 1, rng);
    const Tensor<double> b = uniform({c.w[0]}, -1, 1, rng);
    check([&](Tape<double>&, const Vars& v) { return conv2d(v[0], v[1], c.stride, c.padding, c.dilation, c.groups); },
          {x, w});
    check([&](Tape<double>&, const Vars& v) { return conv2d(v[0], v[1], v[2], c.stride, c.padding, c.dilation, c.groups); },
          {x, w, b});
  }
}

TEST_CASE("conv2d tangent when only the bias moves") {
  std::mt19937_64 rng(22);
  const Tensor<double> x = uniform({2, 2, 4, 4}, -1, 1, rng), w = uniform({3, 2, 3, 3}, -1, 1, rng);
  const Tensor<double> b = uniform({3}, -1, 1, rng);
  Tape<double> tape;
  const Var<double> xv = tape.parameter(x), wv = tape.parameter(w), bv = tape.input(b);
  const Var<double> y = conv2d(xv, wv, bv, 1, 1);
  tape.set_direction(bv, from_values<double>({3}, {1.0, -2.0, 0.5}));
  tape.tangent();
  const Tensor<double>& ty = tape.tangent(y);
  CHECK(ty(1, 0, 2, 3) == 1.0);
  CHECK(ty(0, 1, 0, 0) == -2.0);
  CHECK(ty(1, 2, 3, 3) == 0.5);
}

TEST_CASE("gradcheck: maxpool2d (no ties within the step)") {
  std::mt19937_64 rng(23);
  for (const PoolCase& c : pool_cases) {
    INFO(describe(c));
    const Tensor<double> x = distinct(c.x, rng);
    check([&](Tape<double>&, const Vars& v) { return maxpool2d(v[0], c.kernel, c.stride, c.padding, c.ceil_mode); }, {x});
  }
  const Tensor<double> x = distinct({2, 3, 6, 6}, rng);
  check([](Tape<double>&, const Vars& v) { return maxpool2d(v[0], 2); }, {x});  // stride = kernel
}

TEST_CASE("gradcheck: avgpool2d, counting the padding or not") {
  std::mt19937_64 rng(24);
  for (const PoolCase& c : pool_cases)
    for (bool count_include_pad : {true, false}) {
      INFO(describe(c) << " count_include_pad " << count_include_pad);
      const Tensor<double> x = uniform(c.x, -1, 1, rng);
      check([&](Tape<double>&, const Vars& v) {
        return avgpool2d(v[0], c.kernel, c.stride, c.padding, c.ceil_mode, count_include_pad);
      }, {x});
    }
  const Tensor<double> x = uniform({2, 3, 6, 6}, -1, 1, rng);
  check([](Tape<double>&, const Vars& v) { return avgpool2d(v[0], 3); }, {x});
}

TEST_CASE("gradcheck: adaptive_avgpool2d, output sizes that do not divide the input, and larger ones") {
  std::mt19937_64 rng(25);
  struct Case { Shape x; Pair2d out; };
  for (const Case& c : {Case{{2, 2, 7, 7}, 3}, Case{{1, 3, 5, 5}, {2, 3}}, Case{{2, 1, 3, 3}, {5, 4}},
                        Case{{1, 2, 1, 1}, 2}, Case{{2, 2, 6, 6}, 1}, Case{{1, 1, 7, 5}, {3, 4}}, Case{{1, 1, 4, 4}, 4}}) {
    INFO("x " << to_string(c.x) << " output [" << c.out.h << ", " << c.out.w << "]");
    const Tensor<double> x = uniform(c.x, -1, 1, rng);
    check([&](Tape<double>&, const Vars& v) { return adaptive_avgpool2d(v[0], c.out); }, {x});
  }
}

TEST_CASE("gradcheck: batchnorm2d, every input asking (x, mean, var, weight, bias)") {
  std::mt19937_64 rng(26);
  for (const Shape& s : {Shape{2, 3, 4, 5}, Shape{1, 1, 1, 1}, Shape{3, 2, 1, 7}}) {
    INFO(to_string(s));
    const Shape c{s[1]};
    const Tensor<double> x = uniform(s, -2, 2, rng), mean = uniform(c, -1, 1, rng), var = uniform(c, 0.2, 2, rng);
    const Tensor<double> w = uniform(c, -2, 2, rng), b = uniform(c, -1, 1, rng);
    check([](Tape<double>&, const Vars& v) { return batchnorm2d(v[0], v[1], v[2], 1e-3); }, {x, mean, var});
    check([](Tape<double>&, const Vars& v) { return batchnorm2d(v[0], v[1], v[2], v[3], v[4]); }, {x, mean, var, w, b});
  }
}

TEST_CASE("gradcheck: normalize, per channel or one value for all, any rank from 2") {
  std::mt19937_64 rng(27);
  const Tensor<double> image = uniform({2, 3, 4, 4}, 0, 1, rng);
  check([](Tape<double>&, const Vars& v) { return normalize(v[0], {0.485, 0.456, 0.406}, {0.229, 0.224, 0.225}); },
        {image});
  check([](Tape<double>&, const Vars& v) { return normalize(v[0], {0.5}, {2.0}); }, {image});
  const Tensor<double> rows = uniform({3, 4}, -1, 1, rng);
  check([](Tape<double>&, const Vars& v) { return normalize(v[0], {1, 2, 3, 4}, {1, 0.5, 0.25, 4}); }, {rows});
}

TEST_CASE("gradcheck: a small convolutional network, batch 3") {
  std::mt19937_64 rng(28);
  const Tensor<double> x = uniform({3, 2, 9, 9}, 0, 1, rng);
  const Tensor<double> w1 = uniform({4, 2, 3, 3}, -0.5, 0.5, rng), b1 = uniform({4}, -0.1, 0.1, rng);
  const Tensor<double> mean = uniform({4}, -0.2, 0.2, rng), var = uniform({4}, 0.5, 1.5, rng);
  const Tensor<double> w2 = uniform({4, 2, 3, 3}, -0.5, 0.5, rng), fc = uniform({3, 16}, -0.5, 0.5, rng);
  check(
      [](Tape<double>&, const Vars& v) {
        const Var<double> h = normalize(v[0], {0.5, 0.4}, {0.25, 0.3});
        const Var<double> a = batchnorm2d(conv2d(h, v[1], v[2], 2, 1), v[3], v[4]);         // [3, 4, 5, 5]
        const Var<double> p = avgpool2d(sigmoid(a), 3, 2, 1, true, false);                  // [3, 4, 3, 3]
        const Var<double> q = adaptive_avgpool2d(tanh(conv2d(p, v[5], 1, 1, 1, 2)), 2);      // [3, 4, 2, 2]
        return log_softmax(linear(flatten(q), v[6]));
      },
      {x, w1, b1, mean, var, w2, fc});
}

// ---- forward values ----

TEST_CASE("conv2d values equal the direct-loop reference") {
  std::mt19937_64 rng(31);
  for (const ConvCase& c : conv_cases) {
    INFO(describe(c));
    Tape<double> tape;
    const Tensor<double> xv = uniform(c.x, -1, 1, rng), wv = uniform(c.w, -1, 1, rng), bv = uniform({c.w[0]}, -1, 1, rng);
    const Var<double> y = conv2d(tape.input(xv), tape.parameter(wv), tape.parameter(bv), c.stride, c.padding,
                                 c.dilation, c.groups);
    const kernels::Conv2dShape s = conv_shape(c);
    Tensor<double> expected(Shape{s.batch, s.out_channels, s.out_h(), s.out_w()});
    kernels::conv2d_forward_reference(s, xv.data(), wv.data(), bv.data(), expected.data());
    CHECK(tape.value(y).shape() == expected.shape());
    CHECK(max_rel_diff(tape.value(y), expected) < 1e-14);
  }
}

TEST_CASE("pool values equal the references") {
  std::mt19937_64 rng(32);
  for (const PoolCase& c : pool_cases)
    for (bool count_include_pad : {true, false}) {
      INFO(describe(c) << " count_include_pad " << count_include_pad);
      Tape<double> tape;
      const Tensor<double> xv = uniform(c.x, -1, 1, rng);
      const Var<double> x = tape.input(xv);
      const kernels::Pool2dShape s = pool_shape(c, count_include_pad);
      Tensor<double> expected(Shape{c.x[0], c.x[1], s.h.out, s.w.out});
      kernels::maxpool2d_forward_reference(s, xv.data(), expected.data());
      const Tensor<double> max = tape.value(maxpool2d(x, c.kernel, c.stride, c.padding, c.ceil_mode));
      CHECK(max.shape() == expected.shape());
      CHECK(max_abs_diff(max, expected) == 0);
      kernels::avgpool2d_forward_reference(s, xv.data(), expected.data());
      const Tensor<double> avg = tape.value(avgpool2d(x, c.kernel, c.stride, c.padding, c.ceil_mode, count_include_pad));
      CHECK(max_rel_diff(avg, expected) < 1e-15);
    }
}

// Golden values: produced once by PyTorch 1.13 (CPU, float64) from the same pattern() inputs,
// with torch.nn.functional and the loss sum(y * pattern(y.shape, 29, 31)), whose gradient is gx.
// Each entry is {flat index, value}; the sums cover every element.
struct Golden {
  std::vector<std::pair<std::size_t, double>> y, gx;
  double sum_y, sum_gx;
};

void check_golden(const std::function<Var<double>(Var<double>)>& f, const Tensor<double>& xv, const Shape& y_shape,
                  const Golden& g) {
  Tape<double> tape;
  const Var<double> x = tape.input(xv);
  const Var<double> y = f(x);
  const Tensor<double>& yv = tape.value(y);
  REQUIRE(yv.shape() == y_shape);
  tape.backward(y, pattern(y_shape, 29, 31));
  const Tensor<double>& gx = tape.grad(x);
  for (const auto& [i, v] : g.y) CHECK(yv.data()[i] == doctest::Approx(v).epsilon(1e-13));
  for (const auto& [i, v] : g.gx) CHECK(gx.data()[i] == doctest::Approx(v).epsilon(1e-13));
  CHECK(std::accumulate(yv.begin(), yv.end(), 0.0) == doctest::Approx(g.sum_y).epsilon(1e-13));
  CHECK(std::accumulate(gx.begin(), gx.end(), 0.0) == doctest::Approx(g.sum_gx).epsilon(1e-13));
}

TEST_CASE("values and gradients match PyTorch") {
  SUBCASE("conv2d, groups 2, stride (2, 1), padding (1, 2), dilation (2, 1), bias") {
    check_golden(
        [](Var<double> x) {
          const Var<double> w = x.tape->parameter(pattern({6, 2, 3, 2}, 17, 23));
          const Var<double> b = x.tape->parameter(pattern({6}, 5, 7));
          return conv2d(x, w, b, {2, 1}, {1, 2}, {2, 1}, 2);
        },
        pattern({2, 4, 5, 6}, 37, 101), {2, 6, 2, 9},
        {{{0, -1.0}, {37, -0.4588278703646763}, {100, 0.5363138798351885}, {215, 0.1428571428571428}},
         {{0, 0.0}, {61, 0.0}, {130, 1.1949509116409538}, {239, 0.0}},
         -21.780210319168567, 19.265077138849932});
  }
  SUBCASE("conv2d depthwise, stride 2, padding 1") {
    check_golden(
        [](Var<double> x) { return conv2d(x, x.tape->parameter(pattern({3, 1, 3, 3}, 17, 23)), 2, 1, 1, 3); },
        pattern({1, 3, 7, 7}, 37, 149), {1, 3, 4, 4},
        {{{0, -0.6168660636124892}, {17, 0.17974905164867222}, {30, 0.10037934053107686}, {47, 0.34199007878611026}},
         {{0, -0.9130434782608696}, {50, 0.311360448807854}, {100, -0.3548387096774194}, {146, -0.4474053295932679}},
         16.74992704989787, 1.413744740532959});
  }
  SUBCASE("maxpool2d 3 / 2, padding 1, ceil_mode, 7 x 7") {
    check_golden([](Var<double> x) { return maxpool2d(x, 3, 2, 1, true); }, pattern({1, 2, 7, 7}, 37, 101),
                 {1, 2, 4, 4},
                 {{{0, 0.8613861386138615}, {5, 0.8613861386138615}, {15, 0.306930693069307}, {31, 0.9405940594059405}},
                  {{0, 0.0}, {16, 0.0}, {48, 0.0}, {97, 0.0}},
                  25.069306930693067, -2.000000000000001});
  }
  SUBCASE("maxpool2d 2 / 2, padding 1, ceil_mode on 5 x 5: the window starting in the padding is dropped") {
    check_golden([](Var<double> x) { return maxpool2d(x, 2, 2, 1, true); }, pattern({1, 1, 5, 5}, 37, 101),
                 {1, 1, 3, 3},
                 {{{0, -1.0}, {4, 0.1287128712871286}, {8, 0.9207920792079207}},
                  {{0, -1.0}, {12, 0.0}, {24, 0.0}},
                  2.683168316831683, 2.354838709677419});
  }
  SUBCASE("maxpool2d kernel 2 on a 1 x 1 input with ceil_mode: one output") {
    Tape<double> tape;
    CHECK(tape.value(maxpool2d(tape.input(pattern({1, 1, 1, 1}, 37, 101)), 2, 2, 0, true)).shape() == Shape{1, 1, 1, 1});
  }
  SUBCASE("avgpool2d 3 / 2, padding 1, ceil_mode on 6 x 6, counting the padding") {
    check_golden([](Var<double> x) { return avgpool2d(x, 3, 2, 1, true, true); }, pattern({1, 2, 6, 6}, 37, 101),
                 {1, 2, 4, 4},
                 {{{0, -0.1936193619361936}, {3, -0.04620462046204621}, {15, 0.16089108910891087}, {31, -0.24504950495049505}},
                  {{0, -0.1111111111111111}, {5, 0.18458781362007165}, {35, -0.47043010752688175}, {71, -0.5152329749103943}},
                  -0.9708470847084711, 0.13261648745519672});
  }
  SUBCASE("avgpool2d 3 / 2, padding 1, ceil_mode on 6 x 6, not counting the padding") {
    check_golden([](Var<double> x) { return avgpool2d(x, 3, 2, 1, true, false); }, pattern({1, 2, 6, 6}, 37, 101),
                 {1, 2, 4, 4},
                 {{{0, -0.43564356435643564}, {3, -0.13861386138613863}, {15, 0.6435643564356435}, {31, -0.9801980198019802}},
                  {{0, -0.25}, {5, 0.4301075268817204}, {35, -1.3763440860215055}, {71, -1.4910394265232976}},
                  -2.471947194719472, -2.0});
  }
  SUBCASE("avgpool2d kernel (2, 3), stride (1, 2), padding (1, 1), not counting the padding, 5 x 7") {
    check_golden([](Var<double> x) { return avgpool2d(x, {2, 3}, {1, 2}, {1, 1}, false, false); },
                 pattern({2, 1, 5, 7}, 37, 101), {2, 1, 6, 4},
                 {{{0, -0.6336633663366337}, {7, 0.09405940594059406}, {23, -0.45544554455445546}, {47, 0.18811881188118817}},
                  {{0, -0.3790322580645161}, {20, -0.33870967741935487}, {41, -0.49193548387096775}, {69, 0.3306451612903226}},
                  -1.0264026402640263, -1.548387096774194});
  }
  SUBCASE("adaptive_avgpool2d 7 x 5 -> 3 x 4") {
    check_golden([](Var<double> x) { return adaptive_avgpool2d(x, {3, 4}); }, pattern({1, 2, 7, 5}, 37, 101),
                 {1, 2, 3, 4},
                 {{{0, -0.30363036303630364}, {5, -0.2442244224422442}, {13, -0.2607260726072607}, {23, -0.14191419141914194}},
                  {{0, -0.16666666666666666}, {17, 0.09677419354838708}, {52, 0.24731182795698925}, {69, 0.005376344086021501}},
                  -0.6798679867986802, 2.387096774193548});
  }
  SUBCASE("adaptive_avgpool2d 3 x 3 -> 5 x 4 (larger than the input)") {
    check_golden([](Var<double> x) { return adaptive_avgpool2d(x, {5, 4}); }, pattern({1, 1, 3, 3}, 37, 101),
                 {1, 1, 5, 4},
                 {{{0, -1.0}, {7, 0.5643564356435643}, {12, -0.7029702970297029}, {19, 0.8613861386138615}},
                  {{0, -0.23387096774193555}, {4, -0.45161290322580644}, {8, 0.21774193548387089}},
                  -1.3861386138613865, 1.4838709677419353});
  }
  SUBCASE("batchnorm2d, eps 1e-3, with weight and bias") {
    check_golden(
        [](Var<double> x) {
          Tape<double>& t = *x.tape;
          Tensor<double> var = pattern({3}, 3, 7);
          for (double& v : var) v += 1.5;
          return batchnorm2d(x, t.parameter(pattern({3}, 5, 7)), t.parameter(var), t.parameter(pattern({3}, 2, 5)),
                             t.parameter(pattern({3}, 4, 11)), 1e-3);
        },
        pattern({2, 3, 2, 2}, 37, 101), {2, 3, 2, 2},
        {{{0, -0.9999999999999998}, {5, -0.3130217886691957}, {13, -3.154172533234287}, {23, 0.4522647083741859}},
         {{0, 1.4128014666017077}, {9, -0.06501965899544121}, {23, 0.013003931799088233}},
         -14.621476149489936, 1.7524018328677495});
  }
}

TEST_CASE("batchnorm2d and normalize values follow their formulas") {
  std::mt19937_64 rng(33);
  Tape<double> tape;
  const Tensor<double> xv = uniform({2, 3, 2, 2}, -2, 2, rng);
  const Tensor<double> m = uniform({3}, -1, 1, rng), v = uniform({3}, 0.5, 2, rng);
  const Tensor<double> w = uniform({3}, -1, 1, rng), b = uniform({3}, -1, 1, rng);
  const Var<double> x = tape.input(xv);
  const Tensor<double> plain = tape.value(batchnorm2d(x, tape.parameter(m), tape.parameter(v), 1e-5));
  const Tensor<double> full = tape.value(
      batchnorm2d(x, tape.parameter(m), tape.parameter(v), tape.parameter(w), tape.parameter(b), 0.1));
  const Tensor<double> normal = tape.value(normalize(x, {0.1, 0.2, 0.3}, {2, 4, 8}));
  const double means[] = {0.1, 0.2, 0.3}, stds[] = {2, 4, 8};
  for (std::size_t n = 0; n < 2; ++n)
    for (std::size_t c = 0; c < 3; ++c)
      for (std::size_t i = 0; i < 2; ++i)
        for (std::size_t j = 0; j < 2; ++j) {
          const double xs = xv(n, c, i, j);
          CHECK(plain(n, c, i, j) == doctest::Approx((xs - m(c)) / std::sqrt(v(c) + 1e-5)).epsilon(1e-15));
          CHECK(full(n, c, i, j) == doctest::Approx((xs - m(c)) / std::sqrt(v(c) + 0.1) * w(c) + b(c)).epsilon(1e-15));
          CHECK(normal(n, c, i, j) == (xs - means[c]) / stds[c]);
        }
}

// ---- the max-pool kink: ties send the gradient and the tangent to the first maximum ----

TEST_CASE("maxpool2d ties: the first maximum in row-major order takes the gradient and the tangent") {
  Tape<double> tape;
  // PyTorch 1.13 gives the gradient [0, 1, 0, 0] for this window (the golden values' run).
  const Var<double> x = tape.input(from_values<double>({1, 1, 2, 2}, {1.0, 3.0, 3.0, 2.0}));
  const Var<double> y = maxpool2d(x, 2);
  tape.backward(y);
  CHECK(tape.grad(x) == from_values<double>({1, 1, 2, 2}, {0.0, 1.0, 0.0, 0.0}));
  tape.set_direction(x, from_values<double>({1, 1, 2, 2}, {10.0, 20.0, 30.0, 40.0}));
  tape.tangent();
  CHECK(tape.tangent(y)(0, 0, 0, 0) == 20.0);

  // A constant image (every window a tie, as from a constant IG baseline), with -inf padding:
  // each window's first element inside the image wins.
  Tape<double> flat;
  const Var<double> c = flat.input(full<double>({1, 1, 4, 4}, -0.5));
  const Var<double> p = maxpool2d(c, 3, 2, 1);  // windows start at rows and columns -1, 1
  CHECK(flat.value(p) == full<double>({1, 1, 2, 2}, -0.5));  // the padding never wins
  flat.backward(p);
  Tensor<double> expected = zeros<double>({1, 1, 4, 4});
  expected(0, 0, 0, 0) = expected(0, 0, 0, 1) = expected(0, 0, 1, 0) = expected(0, 0, 1, 1) = 1.0;
  CHECK(flat.grad(c) == expected);
}

TEST_CASE("maxpool2d lets NaN through, as PyTorch does") {
  Tape<double> tape;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const Var<double> y = maxpool2d(tape.input(from_values<double>({1, 1, 2, 2}, {1.0, nan, 3.0, 2.0})), 2);
  CHECK(std::isnan(tape.value(y)(0, 0, 0, 0)));
}

// ---- fast kernels against the references ----

template <class T>
void compare_conv_kernels(const kernels::Conv2dShape& base, std::mt19937_64& rng) {
  kernels::Conv2dShape s = base;
  const Shape xs{s.batch, s.in_channels, s.in_h, s.in_w}, ws{s.out_channels, s.group_in(), s.kernel_h, s.kernel_w};
  const Shape ys{s.batch, s.out_channels, s.out_h(), s.out_w()};
  const Tensor<T> x = uniform<T>(xs, -1, 1, rng), w = uniform<T>(ws, -1, 1, rng), b = uniform<T>({s.out_channels}, -1, 1, rng);
  const Tensor<T> gy = uniform<T>(ys, -1, 1, rng);
  const double eps = std::numeric_limits<T>::epsilon();
  // Both results are within terms * eps of the exact sum of terms products of values in [-1, 1].
  const auto bound = [&](std::size_t terms) { return 2.0 * double(terms + 1) * eps; };

  for (std::size_t chunk : {s.batch, std::size_t(1), std::size_t(2)}) {
    s.chunk = std::min(chunk, s.batch);
    CAPTURE(s.chunk);
    Buffer<T> workspace(kernels::conv2d_workspace(s));
    Tensor<T> fast(ys), ref(ys);
    kernels::conv2d_forward(s, x.data(), w.data(), b.data(), fast.data(), false, workspace.data());
    kernels::conv2d_forward_reference(s, x.data(), w.data(), b.data(), ref.data());
    CHECK(max_abs_diff(fast, ref) <= bound(s.patch()));

    Tensor<T> gx_fast = uniform<T>(xs, -1, 1, rng);  // both add onto the same starting values
    Tensor<T> gx_ref = gx_fast;
    kernels::conv2d_backward_data(s, gy.data(), w.data(), gx_fast.data(), true, workspace.data());
    kernels::conv2d_backward_data_reference(s, gy.data(), w.data(), gx_ref.data());
    CHECK(max_abs_diff(gx_fast, gx_ref) <= bound(s.group_out() * s.kernel_h * s.kernel_w));

    Tensor<T> gw_fast = uniform<T>(ws, -1, 1, rng);
    Tensor<T> gw_ref = gw_fast;
    kernels::conv2d_backward_weights(s, x.data(), gy.data(), gw_fast.data(), workspace.data());
    kernels::conv2d_backward_weights_reference(s, x.data(), gy.data(), gw_ref.data());
    CHECK(max_abs_diff(gw_fast, gw_ref) <= bound(s.batch * s.out_pixels()));
  }
}

template <class T>
void compare_conv_kernels_on_awkward_sizes() {
  std::mt19937_64 rng(41);
  const std::size_t sizes[] = {1, 3, 7, 33};
  for (std::size_t channels : sizes)
    for (std::size_t image : sizes)
      for (std::size_t stride : {1, 2}) {
        kernels::Conv2dShape s;
        s.batch = 3, s.in_channels = channels, s.in_h = image, s.in_w = image == 33 ? 7 : image;
        s.out_channels = channels == 33 ? 7 : 33 / channels;
        s.kernel_h = s.kernel_w = 3, s.pad_h = s.pad_w = 1, s.stride_h = s.stride_w = stride;
        INFO("channels " << channels << " -> " << s.out_channels << ", image " << s.in_h << " x " << s.in_w
                         << ", stride " << stride);
        compare_conv_kernels<T>(s, rng);
      }
  // groups, depthwise, dilation, 1 x 1 kernels, and a 7 x 7 stem
  kernels::Conv2dShape s;
  s.batch = 2, s.in_channels = 6, s.in_h = 9, s.in_w = 7, s.out_channels = 9, s.kernel_h = 3, s.kernel_w = 2;
  s.groups = 3, s.pad_h = 1, s.dilation_h = 2, s.stride_w = 2;
  compare_conv_kernels<T>(s, rng);
  s.in_channels = s.out_channels = s.groups = 7;
  compare_conv_kernels<T>(s, rng);
  s = kernels::Conv2dShape{};
  s.batch = 2, s.in_channels = 33, s.in_h = s.in_w = 7, s.out_channels = 17, s.stride_h = s.stride_w = 2;
  compare_conv_kernels<T>(s, rng);
  s = kernels::Conv2dShape{};
  s.batch = 1, s.in_channels = 3, s.in_h = s.in_w = 33, s.out_channels = 16, s.kernel_h = s.kernel_w = 7;
  s.stride_h = s.stride_w = 2, s.pad_h = s.pad_w = 3;
  compare_conv_kernels<T>(s, rng);
  // 1 x 1 convolutions with stride 1 and no padding read each plane as one row of pixels: planes
  // smaller than one packed panel and larger than one, grouped (20 input channels a group: the
  // backward-data as a forward convolution of gy), and through the direct loop (few output
  // channels per group)
  for (std::size_t image : {2, 5, 13}) {
    s = kernels::Conv2dShape{};
    s.batch = 3, s.in_channels = 40, s.in_h = image, s.in_w = image + 1, s.out_channels = 18, s.groups = 2;
    INFO("1 x 1, image " << s.in_h << " x " << s.in_w);
    compare_conv_kernels<T>(s, rng);
    s.out_channels = 4;
    compare_conv_kernels<T>(s, rng);
  }
  // the direct loops (few channels per group): depthwise with a dilation, wide enough for whole
  // vector tiles and a cut one; grouped with a stride along h only (direct forward, lowered
  // backward-data), an asymmetric window and padding
  s = kernels::Conv2dShape{};
  s.batch = 2, s.in_channels = s.out_channels = s.groups = 5, s.in_h = 19, s.in_w = 37;
  s.kernel_h = s.kernel_w = 3, s.pad_h = s.pad_w = 1, s.dilation_w = 2;
  compare_conv_kernels<T>(s, rng);
  s = kernels::Conv2dShape{};
  s.batch = 2, s.in_channels = 6, s.out_channels = 12, s.groups = 3, s.in_h = 9, s.in_w = 40;
  s.kernel_h = 3, s.kernel_w = 5, s.stride_h = 2, s.pad_h = 2;
  compare_conv_kernels<T>(s, rng);
  // the indirect GEMM (a tile of pixels x output channels, window values read straight from the
  // padded input): 3 x 3 windows at least 64 deep on planes of 2 x 2 to 9 x 6, so that pixel
  // tiles cross samples, with more output channels than one sliver and a ragged last one; grouped,
  // strided and dilated; unpadded; and 1 x 1 windows with 128 or more input channels a group
  for (std::size_t image : {2, 5, 9}) {
    s = kernels::Conv2dShape{};
    s.batch = 3, s.in_channels = 40, s.in_h = image, s.in_w = image == 9 ? 6 : image, s.out_channels = 37;
    s.kernel_h = s.kernel_w = 3, s.pad_h = s.pad_w = 1;
    INFO("indirect 3 x 3, image " << s.in_h << " x " << s.in_w);
    compare_conv_kernels<T>(s, rng);
  }
  s = kernels::Conv2dShape{};
  s.batch = 2, s.in_channels = 48, s.in_h = 11, s.in_w = 10, s.out_channels = 20, s.groups = 2;
  s.kernel_h = s.kernel_w = 3, s.stride_h = 2, s.stride_w = 1, s.pad_h = s.pad_w = 2, s.dilation_h = s.dilation_w = 2;
  compare_conv_kernels<T>(s, rng);
  s.pad_h = s.pad_w = 0;
  compare_conv_kernels<T>(s, rng);
  s = kernels::Conv2dShape{};
  s.batch = 3, s.in_channels = 260, s.in_h = s.in_w = 3, s.out_channels = 70;
  compare_conv_kernels<T>(s, rng);
  s.groups = 2, s.out_channels = 20;
  compare_conv_kernels<T>(s, rng);
  // more columns than one GEMM slab (2048) and than one thread's share: packed panels that
  // start in the middle of an image row
  s = kernels::Conv2dShape{};
  s.batch = 3, s.in_channels = 8, s.in_h = 30, s.in_w = 29, s.out_channels = 12, s.kernel_h = s.kernel_w = 3;
  s.pad_h = s.pad_w = 1;
  compare_conv_kernels<T>(s, rng);
}

TEST_CASE("conv2d kernels match the direct loops on awkward sizes, in chunks of samples (float)") {
  compare_conv_kernels_on_awkward_sizes<float>();
}
TEST_CASE("conv2d kernels match the direct loops on awkward sizes, in chunks of samples (double)") {
  compare_conv_kernels_on_awkward_sizes<double>();
}

// Max-pool's fast forward and backward against the references, bit for bit; the fast forward's
// output and positions are left in `fast` and `argmax`.
template <class T>
void check_maxpool_bits(const kernels::Pool2dShape& s, const Tensor<T>& x, const Tensor<T>& gy, Tensor<T>& fast,
                        std::vector<std::uint32_t>& argmax) {
  const std::size_t in = s.planes * s.in_plane(), out = s.planes * s.out_plane();
  Tensor<T> ref(Shape{out});
  fast.resize(Shape{out});
  argmax.assign(out, 0);
  kernels::maxpool2d_forward(s, x.data(), fast.data(), argmax.data());
  kernels::maxpool2d_forward_reference(s, x.data(), ref.data());
  CHECK(same_bits(fast, ref));
  Tensor<T> g_fast = zeros<T>({in}), g_ref = zeros<T>({in});
  kernels::maxpool2d_backward(s, argmax.data(), gy.data(), g_fast.data());
  kernels::maxpool2d_backward_reference(s, x.data(), gy.data(), g_ref.data());
  CHECK(same_bits(g_fast, g_ref));
}

template <class T>
void compare_pool_kernels(const kernels::Pool2dShape& s, std::mt19937_64& rng) {
  const std::size_t in = s.planes * s.in_plane(), out = s.planes * s.out_plane();
  const Tensor<T> x = uniform<T>({in}, -1, 1, rng), gy = uniform<T>({out}, -1, 1, rng);
  Tensor<T> fast, ref(Shape{out});
  std::vector<std::uint32_t> argmax;
  check_maxpool_bits(s, x, gy, fast, argmax);
  kernels::maxpool2d_forward_reference(s, x.data(), ref.data());
  Tensor<T> g_fast = zeros<T>({in}), g_ref = zeros<T>({in});
  kernels::maxpool2d_tangent(s, argmax.data(), x.data(), fast.data());  // the tangent along x is y
  CHECK(same_bits(fast, ref));

  kernels::avgpool2d_forward(s, x.data(), fast.data());
  kernels::avgpool2d_forward_reference(s, x.data(), ref.data());
  CHECK(max_rel_diff(fast, ref) <= 4 * std::numeric_limits<T>::epsilon());
  g_fast.fill(T(0)), g_ref.fill(T(0));
  kernels::avgpool2d_backward(s, gy.data(), g_fast.data());
  kernels::avgpool2d_backward_reference(s, gy.data(), g_ref.data());
  CHECK(max_rel_diff(g_fast, g_ref) <= 4 * std::numeric_limits<T>::epsilon());
}

template <class T>
void compare_pool_kernels_on_awkward_sizes() {
  std::mt19937_64 rng(42);
  for (std::size_t image : {1, 3, 7, 33})
    for (const PoolCase& c : {PoolCase{{2, 3, 0, 0}, 2, 2, 0, true}, PoolCase{{2, 3, 0, 0}, 3, 2, 1, true},
                              PoolCase{{1, 7, 0, 0}, 3, 1, 1}, PoolCase{{1, 2, 0, 0}, {1, 3}, {1, 2}, {0, 1}}})
      for (bool count_include_pad : {true, false}) {
        PoolCase sized = c;
        sized.x[2] = image, sized.x[3] = image == 1 ? 3 : image;
        if (kernels::pool_output_size(std::int64_t(sized.x[2]), c.kernel.h, c.stride.h, c.padding.h, c.ceil_mode) < 1 ||
            kernels::pool_output_size(std::int64_t(sized.x[3]), c.kernel.w, c.stride.w, c.padding.w, c.ceil_mode) < 1)
          continue;
        INFO(describe(sized) << " count_include_pad " << count_include_pad);
        compare_pool_kernels<T>(pool_shape(sized, count_include_pad), rng);
      }
  for (std::size_t out : {1, 2, 3, 5, 7, 33}) {
    INFO("adaptive 7 x 33 -> " << out);
    compare_pool_kernels<T>(adaptive_shape({2, 3, 7, 33}, out, out), rng);
  }
}

TEST_CASE("pool kernels match the references on awkward sizes (float)") { compare_pool_kernels_on_awkward_sizes<float>(); }
TEST_CASE("pool kernels match the references on awkward sizes (double)") { compare_pool_kernels_on_awkward_sizes<double>(); }

// The 3 x 3 stride-2 max-pool kernel (SIMD across and down, pool.cpp) against the reference, bit
// for bit in values and in where backward sends the gradient: planes of 1 to 33 along each axis
// (windows clipped by padding or by ceil_mode at either end, rows shorter and longer than a
// vector), random values, values drawn from three (ties everywhere), and NaNs and infinities.
template <class T>
void compare_maxpool_3x3_stride_2() {
  std::mt19937_64 rng(43);
  const T inf = std::numeric_limits<T>::infinity(), nan = std::numeric_limits<T>::quiet_NaN();
  for (std::size_t h : {1, 2, 3, 5, 8, 15, 33})
    for (std::size_t w : {1, 2, 3, 4, 7, 9, 16, 17, 31, 33})
      for (std::int64_t pad : {0, 1})
        for (bool ceil_mode : {false, true}) {
          const PoolCase c{{2, 3, h, w}, 3, 2, pad, ceil_mode};
          if (kernels::pool_output_size(std::int64_t(h), 3, 2, pad, ceil_mode) < 1 ||
              kernels::pool_output_size(std::int64_t(w), 3, 2, pad, ceil_mode) < 1)
            continue;
          const kernels::Pool2dShape s = pool_shape(c);
          const std::size_t in = s.planes * s.in_plane(), out = s.planes * s.out_plane();
          std::uniform_int_distribution<int> pick(0, 9);
          for (int values = 0; values < 3; ++values) {
            Tensor<T> x = uniform<T>({in}, -1, 1, rng);
            for (T& v : x) {
              const int r = pick(rng);
              if (values == 1) v = T(r % 3 - 1);                          // ties
              if (values == 2) v = r == 0 ? nan : r == 1 ? -inf : r == 2 ? inf : v;  // NaN and infinities
            }
            INFO(describe(c) << ", values " << values);
            const Tensor<T> gy = uniform<T>({out}, -1, 1, rng);
            Tensor<T> fast;
            std::vector<std::uint32_t> argmax;
            check_maxpool_bits(s, x, gy, fast, argmax);
          }
        }
  // all of a window -inf: the reference keeps its first position inside the input
  const kernels::Pool2dShape s = pool_shape(PoolCase{{1, 1, 5, 5}, 3, 2, 1, true});
  const Tensor<T> x = full<T>({25}, -inf), gy = full<T>({s.out_plane()}, T(1));
  std::vector<std::uint32_t> argmax(s.out_plane());
  Tensor<T> y(Shape{s.out_plane()});
  kernels::maxpool2d_forward(s, x.data(), y.data(), argmax.data());
  Tensor<T> g_fast = zeros<T>({25}), g_ref = zeros<T>({25});
  kernels::maxpool2d_backward(s, argmax.data(), gy.data(), g_fast.data());
  kernels::maxpool2d_backward_reference(s, x.data(), gy.data(), g_ref.data());
  CHECK(same_bits(g_fast, g_ref));
  CHECK(argmax[0] == 0);
}

TEST_CASE("maxpool 3x3 stride 2 matches the reference: padding, ceil_mode, ties, NaN (float)") {
  compare_maxpool_3x3_stride_2<float>();
}
TEST_CASE("maxpool 3x3 stride 2 matches the reference: padding, ceil_mode, ties, NaN (double)") {
  compare_maxpool_3x3_stride_2<double>();
}

// ---- threads ----

TEST_CASE("conv and pool ops give the same bits on 1 and 2 threads: values, gradients, tangents") {
#ifdef _OPENMP
  // Sizes past every kernel's threading threshold; the first convolution lowers 2 samples, then 1.
  std::mt19937_64 rng(51);
  const Tensor<float> xv = uniform<float>({3, 8, 96, 96}, -1, 1, rng), direction = uniform<float>(xv.shape(), -1, 1, rng);
  const Tensor<float> wv = uniform<float>({16, 8, 3, 3}, -0.3, 0.3, rng), bv = uniform<float>({16}, -0.1, 0.1, rng);
  const Tensor<float> dv = uniform<float>({16, 1, 3, 3}, -0.3, 0.3, rng);
  const Tensor<float> pv = uniform<float>({24, 16, 1, 1}, -0.3, 0.3, rng);
  struct Result {
    Tensor<float> y, gx, gw, gb, gd, gp, ty;
  };
  const auto run = [&](int threads) {
    omp_set_num_threads(threads);
    Tape<float> tape;
    const Var<float> x = tape.input(xv);
    const Var<float> w = tape.parameter(wv, true), b = tape.parameter(bv, true), d = tape.parameter(dv, true);
    const Var<float> p = tape.parameter(pv, true);
    const Var<float> h = maxpool2d(relu(conv2d(x, w, b, 1, 1)), 3, 2, 1, true);      // [3, 16, 49, 49]
    const Var<float> g = avgpool2d(conv2d(h, d, 1, 2, 2, 16), 3, 1, 1, true, false);  // depthwise
    const Var<float> y = adaptive_avgpool2d(conv2d(g, p), {3, 5});                     // and a 1 x 1
    tape.backward(y, full<float>(tape.value(y).shape(), 1.0f));
    // (the first convolution takes the indirect GEMM: 72 deep, 16 output channels)
    tape.set_direction(x, direction);
    tape.tangent();
    return Result{tape.value(y), tape.grad(x), tape.grad(w), tape.grad(b), tape.grad(d), tape.grad(p), tape.tangent(y)};
  };
  const int saved = omp_get_max_threads();
  const Result one = run(1), two = run(2);
  omp_set_num_threads(saved);
  CHECK(same_bits(one.y, two.y));
  CHECK(same_bits(one.gx, two.gx));
  CHECK(same_bits(one.gw, two.gw));
  CHECK(same_bits(one.gb, two.gb));
  CHECK(same_bits(one.gd, two.gd));
  CHECK(same_bits(one.gp, two.gp));
  CHECK(same_bits(one.ty, two.ty));
#else
  MESSAGE("built without OpenMP: nothing to compare");
#endif
}

// ---- what backward skips, and the workspace bound ----

TEST_CASE("conv2d computes the weight gradient only when the weight asks for it") {
  std::mt19937_64 rng(61);
  Tape<double> tape;
  const Var<double> x = tape.input(uniform({2, 3, 6, 6}, -1, 1, rng));
  const Var<double> w = tape.parameter(uniform({4, 3, 3, 3}, -1, 1, rng));
  const Var<double> b = tape.parameter(uniform({4}, -1, 1, rng));
  tape.backward(sum(conv2d(x, w, b, 1, 1)));
  CHECK(tape.node(w).grad.size() <= 1);  // never sized: backward-weights did not run
  CHECK(tape.node(b).grad.size() <= 1);
  CHECK(tape.grad(x).shape() == Shape{2, 3, 6, 6});
}

TEST_CASE("the im2col workspace stays small for ResNet-18 at 224 x 224, batch 50") {
  struct Conv { std::size_t c, h, o, k, stride, pad; };
  // every distinct convolution of ResNet-18: input channels, input size, output channels, kernel
  for (const Conv& r : {Conv{3, 224, 64, 7, 2, 3}, Conv{64, 56, 64, 3, 1, 1}, Conv{64, 56, 128, 3, 2, 1},
                        Conv{128, 28, 128, 3, 1, 1}, Conv{128, 28, 256, 3, 2, 1}, Conv{256, 14, 256, 3, 1, 1},
                        Conv{256, 14, 512, 3, 2, 1}, Conv{512, 7, 512, 3, 1, 1}, Conv{64, 56, 128, 1, 2, 0},
                        Conv{128, 28, 256, 1, 2, 0}, Conv{256, 14, 512, 1, 2, 0}}) {
    kernels::Conv2dShape s;
    s.batch = 50, s.in_channels = r.c, s.in_h = s.in_w = r.h, s.out_channels = r.o, s.kernel_h = s.kernel_w = r.k;
    s.stride_h = s.stride_w = r.stride, s.pad_h = s.pad_w = r.pad;
    for (std::size_t bytes : {sizeof(float), sizeof(double)}) {
      s.chunk = 1;
      const std::size_t one_sample = kernels::conv2d_workspace(s) * bytes;
      s.chunk = kernels::conv2d_chunk(s, bytes);
      INFO("conv " << r.c << " -> " << r.o << " at " << r.h << ", " << bytes << "-byte elements: chunk " << s.chunk);
      CHECK(s.chunk >= 1);
      // within the budget, or one sample when that alone is more (the 7 x 7 stem: 10 or 20 MiB)
      CHECK(kernels::conv2d_workspace(s) * bytes <= std::max(kernels::kConvWorkspaceBytes, one_sample));
      CHECK(kernels::conv2d_workspace(s) * bytes <= std::size_t(32) << 20);
    }
  }
}

// ---- invalid attributes ----

TEST_CASE("invalid attributes are refused, naming the node and the values") {
  Tape<double> tape;
  const Var<double> x = tape.input(zeros<double>({1, 4, 5, 5}));    // node 0
  const Var<double> w = tape.parameter(zeros<double>({6, 4, 3, 3}));  // node 1
  const Var<double> w2 = tape.parameter(zeros<double>({6, 2, 3, 3}));
  const Var<double> tiny = tape.input(zeros<double>({1, 1, 2, 2}));
  CHECK_THROWS_WITH_AS(conv2d(x, w, Pair2d(0, 1)), "node 4 (conv2d): stride [0, 1] must be positive", Error);
  CHECK_THROWS_WITH_AS(conv2d(x, w, 1, -1), doctest::Contains("padding [-1, -1] must not be negative"), Error);
  CHECK_THROWS_WITH_AS(conv2d(x, w, 1, 0, 0), doctest::Contains("dilation [0, 0] must be positive"), Error);
  CHECK_THROWS_WITH_AS(conv2d(x, w2, 1, 0, 1, 3),
                       doctest::Contains("groups 3 must divide the input channels (4) and the output channels (6)"), Error);
  CHECK_THROWS_WITH_AS(conv2d(x, w, 1, 0, 1, 2),
                       doctest::Contains("weight [6, 4, 3, 3] does not fit input [1, 4, 5, 5] with groups 2"), Error);
  CHECK_THROWS_WITH_AS(conv2d(x, w, 1, 0, 3),
                       doctest::Contains("window [7, 7] (kernel [3, 3], dilation [3, 3]) is larger than the padded input [5, 5]"),
                       Error);
  CHECK_THROWS_WITH_AS(conv2d(x, w, tape.parameter(zeros<double>({4}))), doctest::Contains("bias has shape [4], expected [6]"),
                       Error);
  CHECK_THROWS_WITH_AS(conv2d(tape.input(zeros<double>({4, 5, 5})), w), doctest::Contains("expected an input [N, C, H, W]"),
                       Error);

  CHECK_THROWS_WITH_AS(maxpool2d(x, 0), doctest::Contains("(maxpool2d): kernel [0, 0] must be positive"), Error);
  CHECK_THROWS_WITH_AS(avgpool2d(x, 2, {1, 0}), doctest::Contains("(avgpool2d): stride [1, 0] must be positive"), Error);
  CHECK_THROWS_WITH_AS(maxpool2d(x, 3, 1, 2), doctest::Contains("padding [2, 2] is more than half the kernel [3, 3]"), Error);
  CHECK_THROWS_WITH_AS(avgpool2d(x, {2, 4}, 1, {1, 3}), doctest::Contains("padding [1, 3] is more than half the kernel [2, 4]"),
                       Error);
  CHECK_THROWS_WITH_AS(maxpool2d(tiny, 3),
                       doctest::Contains("output size [0, 0] is too small: input [2, 2], kernel [3, 3], stride [3, 3], padding [0, 0]"),
                       Error);
  CHECK_THROWS_WITH_AS(adaptive_avgpool2d(x, {0, 2}), doctest::Contains("(adaptive_avgpool2d): output size [0, 2] must be positive"),
                       Error);

  const Var<double> c4 = tape.parameter(full<double>({4}, 1.0));
  CHECK_THROWS_WITH_AS(batchnorm2d(x, c4, c4, -1e-5), doctest::Contains("(batchnorm2d): eps -1e-05 must not be negative"), Error);
  CHECK_THROWS_WITH_AS(batchnorm2d(x, c4, tape.parameter(zeros<double>({3}))),
                       doctest::Contains("running_var has shape [3], expected [4]"), Error);
  CHECK_THROWS_WITH_AS(normalize(x, {0.5}, {1, 0, 1, 1}), doctest::Contains("(normalize): std[1] = 0 must be positive"), Error);
  CHECK_THROWS_WITH_AS(normalize(x, {0.1, 0.2}, {1}),
                       doctest::Contains("mean has 2 values for 4 channels (give one per channel, or one for all)"), Error);
}
