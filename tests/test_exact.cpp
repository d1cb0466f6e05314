// Exact IG on piecewise-linear networks: completeness to rounding, agreement with fine
// quadrature, every piece truly linear (checked with the tangent pass), and the refusals.
#include "attribution/methods.hpp"
#include "autodiff/ops/pool.hpp"
#include "nn/zoo.hpp"
#include "exact_lenet.hpp"
#include "support.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <omp.h>

using namespace ax;
using namespace ax::attr;

namespace {

TargetSpec target(int k, Output output = Output::logit) {
  TargetSpec t;
  t.class_index = k;
  t.output = output;
  return t;
}

IgOptions rule(Rule r, std::size_t steps = 50) {
  IgOptions o;
  o.rule = r;
  o.steps = steps;
  return o;
}

// A random MLP 8 -> 24 -> relu -> 24 -> leaky_relu -> 6 (an nn::SpecBuilder network)
nn::ModelSpec relu_mlp(std::uint64_t seed, const std::string& second = "leaky_relu") {
  nn::SpecBuilder b("x", {8}, seed);
  b.set_range(0, 1);
  std::string h = b.relu("r1", b.linear("fc1", "x", 8, 24));
  h = b.linear("fc2", h, 24, 24);
  nn::ModelSpec m = b.finish(b.linear("fc3", h, 24, 6));
  // insert the second activation between fc2 and fc3
  nn::NodeSpec act = nn::make_node("a2", second, {"fc2"});
  m.graph.nodes.insert(m.graph.nodes.end() - 1, act);
  m.graph.nodes.back().inputs = {"a2"};
  return m;
}

}  // namespace

TEST_CASE("exact IG of the sensitivity example is exactly 1, in two pieces") {
  nn::SpecBuilder b("x", {1}, 1);
  nn::ModelSpec m = b.finish(b.linear("outer", b.relu("relu", b.linear("inner", "x", 1, 1)), 1, 1));
  m.tensors["inner.weight"].values = {-1};
  m.tensors["inner.bias"].values = {1};
  m.tensors["outer.weight"].values = {-1};
  m.tensors["outer.bias"].values = {1};
  Engine<double> f(m, target(0));
  const Attribution<double> a = integrated_gradients(f, full<double>({1}, 2.0), zeros<double>({1}), rule(Rule::exact));
  CHECK(a.values(0) == 1.0);
  CHECK(a.pieces == 2);
  CHECK(a.delta == 0.0);
  CHECK(gradient(f, full<double>({1}, 2.0), zeros<double>({1})).values(0) == 0.0);
}

TEST_CASE("exact IG on random ReLU networks: completeness to rounding, the limit of quadrature") {
  for (std::uint64_t seed : {1, 2, 3}) {
    CAPTURE(seed);
    Engine<double> f(relu_mlp(seed), target(int(seed % 6)));
    std::mt19937_64 rng(seed);
    const Tensor<double> x = test::uniform({8}, 0, 1, rng), base = test::uniform({8}, 0, 1, rng);
    const Attribution<double> exact = integrated_gradients(f, x, base, rule(Rule::exact));
    CHECK(exact.pieces > 5);
    CHECK(exact.relative_delta < 1e-12);
    // Gauss-Legendre converges to it like 1/n on a piecewise-constant integrand
    const Attribution<double> fine = integrated_gradients(f, x, base, rule(Rule::gausslegendre, 4096));
    const Attribution<double> coarse = integrated_gradients(f, x, base, rule(Rule::gausslegendre, 16));
    const double fine_error = test::max_abs_diff(fine.values, exact.values);
    CHECK(fine_error < 1e-3 * xt::amax(xt::abs(exact.values))());
    CHECK(fine_error < test::max_abs_diff(coarse.values, exact.values));
  }
}

// Exact IG on an MLP whose second activation is `model`'s, from inputs in [0, reach): the op's own
// switches add breakpoints (more pieces than with an identity there), and IG stays exact.
void check_kinks_found(const std::function<nn::ModelSpec(std::uint64_t)>& model, double reach) {
  for (std::uint64_t seed : {4, 5}) {
    CAPTURE(seed);
    Engine<double> f(model(seed), target(1));
    Engine<double> unclamped(relu_mlp(seed, "identity"), target(1));
    std::mt19937_64 rng(seed);
    const Tensor<double> x = test::uniform({8}, 0, reach, rng), base = zeros<double>({8});
    const Attribution<double> exact = integrated_gradients(f, x, base, rule(Rule::exact));
    const Attribution<double> relu_only = integrated_gradients(unclamped, x, base, rule(Rule::exact));
    CHECK(exact.pieces > relu_only.pieces);
    CHECK(exact.relative_delta < 1e-12);
    const Attribution<double> fine = integrated_gradients(f, x, base, rule(Rule::gausslegendre, 4096));
    CHECK(test::max_abs_diff(fine.values, exact.values) < 1e-3 * xt::amax(xt::abs(exact.values))());
  }
}

TEST_CASE("exact IG with hardtanh and hardsigmoid: both kinks of each found, completeness to rounding") {
  check_kinks_found(
      [](std::uint64_t seed) {
        nn::ModelSpec clamped = relu_mlp(seed, "hardtanh");
        clamped.graph.nodes[3].attrs.min_val = -0.25, clamped.graph.nodes[3].attrs.max_val = 0.25;
        return clamped;
      },
      4);
  check_kinks_found([](std::uint64_t seed) { return relu_mlp(seed, "hardsigmoid"); }, 30);  // reaching -3 and 3
}

TEST_CASE("every piece is linear: midpoint values and the tangent pass agree with the piece ends") {
  Engine<double> f(relu_mlp(4), target(2));
  std::mt19937_64 rng(4);
  const Tensor<double> x = test::uniform({8}, 0, 1, rng), base = zeros<double>({8});
  const std::vector<double> breaks = path_breakpoints(f, x, base);
  REQUIRE(breaks.size() > 3);
  Tape<double>& tape = f.tape();
  const Var<double> in = f.network().input();
  const Var<double> pre1 = f.network().node("fc1"), pre2 = f.network().node("fc2");
  const Tensor<double> direction = x - base;
  auto at = [&](double a) {
    Tensor<double> p = base + a * (x - base);
    f.forward_points(p.data(), 1);
    return std::pair{Tensor<double>(tape.value(pre1)), Tensor<double>(tape.value(pre2))};
  };
  for (std::size_t k = 1; k < breaks.size(); ++k) {
    const double a0 = breaks[k - 1], a1 = breaks[k], mid = (a0 + a1) / 2;
    const auto [z0, y0] = at(a0);
    const auto [z1, y1] = at(a1);
    const auto [zm, ym] = at(mid);
    tape.set_direction(in, Tensor<double>(xt::reshape_view(direction, {std::size_t(1), std::size_t(8)})));
    tape.tangent();
    for (std::size_t j = 0; j < 24; ++j) {
      CHECK(std::abs(zm(0, j) - (z0(0, j) + z1(0, j)) / 2) < 1e-12);
      CHECK(std::abs(ym(0, j) - (y0(0, j) + y1(0, j)) / 2) < 1e-12);
      if (a1 - a0 > 1e-6) CHECK(std::abs(tape.tangent(pre2)(0, j) - (y1(0, j) - y0(0, j)) / (a1 - a0)) < 1e-8);
    }
  }
}

TEST_CASE("exact IG through convolutions and max-pools: a LeNet from zero and constant baselines") {
  Engine<double> f(test::exact_lenet(5), target(3));
  std::mt19937_64 rng(5);
  const Tensor<double> x = test::uniform({1, 28, 28}, 0, 1, rng);
  for (double c : {0.0, 0.5}) {
    CAPTURE(c);
    // from a constant baseline every max-pool window is an exact tie at a = 0
    const Tensor<double> base = full<double>({1, 28, 28}, c);
    const Attribution<double> a = integrated_gradients(f, x, base, rule(Rule::exact));
    CHECK(a.pieces > 100);
    CHECK(a.relative_delta < 1e-10);
  }
}

TEST_CASE("exact IG for probability and log-probability targets: Gauss-Legendre inside each piece") {
  for (Output output : {Output::prob, Output::logprob}) {
    Engine<double> f(relu_mlp(6), target(1, output));
    std::mt19937_64 rng(6);
    const Tensor<double> x = test::uniform({8}, 0, 1, rng), base = zeros<double>({8});
    const Attribution<double> a = integrated_gradients(f, x, base, rule(Rule::exact));
    CHECK(a.relative_delta < 1e-10);
    CHECK(a.steps == a.pieces);
  }
}

TEST_CASE("exact IG refuses smooth networks and too many pieces") {
  Engine<double> smooth(relu_mlp(7, "tanh"), target(0));
  const Tensor<double> x = full<double>({8}, 0.5), base = zeros<double>({8});
  CHECK_THROWS_WITH_AS(integrated_gradients(smooth, x, base, rule(Rule::exact)),
                       doctest::Contains("(tanh) is not; use a quadrature rule"), Error);
  Engine<double> f(relu_mlp(8), target(0));
  IgOptions capped = rule(Rule::exact);
  capped.exact.max_pieces = 2;
  CHECK_THROWS_WITH_AS(integrated_gradients(f, x, base, capped), doctest::Contains("more than 2 linear pieces"), Error);
}

TEST_CASE("exact IG in float: completeness to float rounding") {
  Engine<float> f(nn::lenet28(9), target(7));
  std::mt19937_64 rng(9);
  const Tensor<float> x = test::uniform<float>({1, 28, 28}, 0, 1, rng), base = zeros<float>({1, 28, 28});
  const Attribution<float> a = integrated_gradients(f, x, base, rule(Rule::exact));
  CHECK(a.relative_delta < 1e-3);
}

TEST_CASE("same seed, same bits, on one thread or two: IG, exact IG and SmoothGrad on a LeNet") {
  Engine<float> f(nn::lenet28(10), target(4));
  std::mt19937_64 rng(10);
  const Tensor<float> x = test::uniform<float>({1, 28, 28}, 0, 1, rng), base = zeros<float>({1, 28, 28});
  auto run_all = [&] {
    std::vector<Tensor<float>> out;
    out.push_back(integrated_gradients(f, x, base, rule(Rule::gausslegendre, 64)).values);
    out.push_back(integrated_gradients(f, x, base, rule(Rule::exact)).values);
    out.push_back(smoothgrad(f, x, base, SmoothKind::smoothgrad, 0.1, false, 20, 99).values);
    return out;
  };
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const std::vector<Tensor<float>> one = run_all();
  omp_set_num_threads(2);
  const std::vector<Tensor<float>> two = run_all();
  omp_set_num_threads(threads);
  for (std::size_t i = 0; i < one.size(); ++i) {
    CAPTURE(i);
    CHECK(test::same_bits(one[i], two[i]));
  }
}

namespace {

// The breakpoints of the search and of the reference search, one for one.
template <class T>
void check_same_breakpoints(Engine<T>& f, const Tensor<T>& x, const Tensor<T>& base, double tolerance) {
  const std::vector<double> fast = path_breakpoints(f, x, base), slow = path_breakpoints_reference(f, x, base);
  REQUIRE(fast.size() == slow.size());
  double moved = 0;
  for (std::size_t i = 0; i < fast.size(); ++i) moved = std::max(moved, std::abs(fast[i] - slow[i]));
  CHECK(moved < tolerance);
  CHECK(fast.front() == 0.0);
  CHECK(fast.back() == 1.0);
}

// IG as the reference computes it: the reference's breakpoints, then F and dF/dx at `per_piece`
// Gauss-Legendre nodes of each piece (the midpoint for one), full passes.
Tensor<double> reference_ig(Engine<double>& f, const Tensor<double>& x, const Tensor<double>& base,
                            std::size_t per_piece) {
  const std::vector<double> breaks = path_breakpoints_reference(f, x, base);
  const Quadrature inner = per_piece == 1 ? Quadrature{{0.5}, {1.0}} : quadrature(Rule::gausslegendre, per_piece);
  const std::size_t size = x.size();
  Shape shape{inner.alphas.size() * (breaks.size() - 1)};
  for (std::size_t d : x.shape()) shape.push_back(d);
  Tensor<double> points(shape), grads;
  std::vector<double> weights, values;
  for (std::size_t p = 0; p + 1 < breaks.size(); ++p)
    for (std::size_t k = 0; k < inner.alphas.size(); ++k) {
      const double a = breaks[p] + (breaks[p + 1] - breaks[p]) * inner.alphas[k];
      for (std::size_t j = 0; j < size; ++j) points.data()[weights.size() * size + j] = base.data()[j] + a * (x.data()[j] - base.data()[j]);
      weights.push_back((breaks[p + 1] - breaks[p]) * inner.weights[k]);
    }
  f.evaluate(points, values, &grads);
  Tensor<double> ig = zeros<double>(x.shape());
  for (std::size_t k = 0; k < weights.size(); ++k)
    for (std::size_t j = 0; j < size; ++j) ig.data()[j] += weights[k] * grads.data()[k * size + j] * (x.data()[j] - base.data()[j]);
  return ig;
}

double relative_l2(const Tensor<double>& a, const Tensor<double>& b) {
  return std::sqrt(double(xt::sum(xt::square(a - b))()) / double(xt::sum(xt::square(b))()));
}

}  // namespace

TEST_CASE("the breakpoint search finds the reference's breakpoints on random MLPs and LeNets") {
  for (std::uint64_t seed : {11, 12}) {
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    Engine<double> mlp(relu_mlp(seed), target(int(seed % 6)));
    const Tensor<double> x8 = test::uniform({8}, 0, 1, rng), base8 = test::uniform({8}, 0, 1, rng);
    check_same_breakpoints(mlp, x8, base8, 1e-12);
    Engine<double> lenet(nn::lenet28(seed), target(int(seed % 10)));
    const Tensor<double> x = test::uniform({1, 28, 28}, 0, 1, rng);
    check_same_breakpoints(lenet, x, zeros<double>({1, 28, 28}), 1e-12);
    check_same_breakpoints(lenet, x, test::uniform({1, 28, 28}, 0, 1, rng), 1e-12);
  }
}

TEST_CASE("exact IG agrees with the reference's one gradient per piece on a LeNet") {
  std::mt19937_64 rng(16);
  Engine<double> lenet(nn::lenet28(16), target(2));
  const Tensor<double> x = test::uniform({1, 28, 28}, 0, 1, rng), base = zeros<double>({1, 28, 28});
  const Attribution<double> a = integrated_gradients(lenet, x, base, rule(Rule::exact));
  CHECK(relative_l2(a.values, reference_ig(lenet, x, base, 1)) < 1e-12);
  CHECK(a.relative_delta < 1e-12);
}

TEST_CASE("prob and logprob: each piece's integral is exact, where 4 Gauss-Legendre nodes a piece are not") {
  for (Output output : {Output::prob, Output::logprob}) {
    CAPTURE(output_name(output));
    Engine<double> f(relu_mlp(18), target(1, output));
    std::mt19937_64 rng(18);
    // a long path, so that the softmax curves inside the pieces
    const Tensor<double> x = test::uniform({8}, 0, 40, rng), base = zeros<double>({8});
    const Attribution<double> a = integrated_gradients(f, x, base, rule(Rule::exact));
    // Gauss-Legendre with 40 nodes a piece converges to rounding on these analytic pieces
    const Tensor<double> fine = reference_ig(f, x, base, 40), coarse = reference_ig(f, x, base, 4);
    CHECK(relative_l2(a.values, fine) < 1e-13);
    CHECK(relative_l2(coarse, fine) > 1e-10);
    CHECK(a.relative_delta < 1e-13);
  }
}

TEST_CASE("exact IG within a small memory budget: the same result, in more windows and chunks") {
  const nn::ModelSpec spec = nn::lenet28(19);
  std::mt19937_64 rng(19);
  const Tensor<double> x = test::uniform({1, 28, 28}, 0, 1, rng), base = zeros<double>({1, 28, 28});
  Engine<double> roomy(spec, target(4));
  EngineOptions tight_engine;
  tight_engine.memory_budget = 8 * roomy.bytes_per_point();
  Engine<double> tight(spec, target(4), tight_engine);
  const ExactPath<double> wide = exact_path(roomy, x, base), narrow = exact_path(tight, x, base);
  CHECK(narrow.windows > 4 * wide.windows);
  CHECK(tight.chunk() == 8);
  CHECK(narrow.pieces == wide.pieces);
  CHECK(relative_l2(narrow.gradient, wide.gradient) < 1e-13);
  CHECK(path_breakpoints(tight, x, base) == path_breakpoints(roomy, x, base));
}

TEST_CASE("the piece cap is checked as pieces are found, before the search ends") {
  Engine<double> f(nn::lenet28(20), target(0));
  std::mt19937_64 rng(20);
  const Tensor<double> x = test::uniform({1, 28, 28}, 0, 1, rng), base = zeros<double>({1, 28, 28});
  const std::size_t pieces = path_breakpoints(f, x, base).size() - 1;
  ExactOptions capped;
  capped.max_pieces = pieces / 4;
  const std::size_t before = f.evaluations();
  CHECK_THROWS_WITH_AS(path_breakpoints(f, x, base, capped), doctest::Contains("linear pieces along the path"), Error);
  CHECK(f.evaluations() - before < pieces);  // stopped long before a full search
  capped.max_pieces = pieces;
  CHECK(path_breakpoints(f, x, base, capped).size() == pieces + 1);
}

TEST_CASE("exact IG on a network with skip connections: the reference search, completeness to rounding") {
  // A residual block: the add node has two inputs that move along the path, so the streaming
  // search does not apply, and the reference search with one gradient per piece stays exact.
  nn::SpecBuilder b("x", {2, 8, 8}, 41);
  const std::string stem = b.relu("r0", b.conv2d("c0", "x", 2, 6, 3, 1, 1));
  const std::string branch = b.conv2d("c2", b.relu("r1", b.conv2d("c1", stem, 6, 6, 3, 1, 1)), 6, 6, 3, 1, 1);
  const std::string merged = b.relu("r2", b.add("sum", {stem, branch}));
  const nn::ModelSpec residual = b.finish(b.linear("fc", b.flatten("flat", b.maxpool2d("pool", merged, 2, 2, 0)), 96, 4));
  Engine<double> f(residual, target(2));
  CHECK_FALSE(exact_search_applies(f));
  Engine<double> chain(nn::lenet28(3, 4), target(2));
  CHECK(exact_search_applies(chain));
  std::mt19937_64 rng(31);
  const Tensor<double> x = test::uniform({2, 8, 8}, 0, 1, rng), base = test::uniform({2, 8, 8}, 0, 1, rng);
  const Attribution<double> exact = integrated_gradients(f, x, base, rule(Rule::exact));
  CHECK(exact.pieces > 10);
  CHECK(exact.relative_delta < 1e-10);
  const Attribution<double> fine = integrated_gradients(f, x, base, rule(Rule::gausslegendre, 4096));
  CHECK(test::max_abs_diff(fine.values, exact.values) < 1e-3 * xt::amax(xt::abs(exact.values))());
}

namespace {

// 2 x 2 windows of stride 2 over `in`, values from a few levels so that ties at either end are
// common, and a NaN now and then: MaxPool2d::switches against every window walked (the values as
// doubles, the full test, the envelope). Returns the windows that switched.
std::size_t check_quick_window_test(const Shape& in, const Shape& out, int trials) {
  std::mt19937_64 rng(5);
  std::uniform_int_distribution<int> level(0, 3);
  Attrs attrs = ops::pool_attrs(2, 2, 0, false, true);
  std::size_t windows_with_switches = 0;
  for (int trial = 0; trial < trials; ++trial) {
    std::vector<float> z0(numel(in)), z1(numel(in));
    for (float& v : z0) v = float(level(rng));
    for (float& v : z1) v = float(level(rng));
    if (trial % 10 == 0) z1[std::size_t(trial) % z1.size()] = std::nanf("");
    std::vector<double> quick, walked, v0, v1;
    ops::MaxPool2d::switches(attrs, in, out, z0.data(), z1.data(), quick);
    for (std::size_t ch = 0; ch < in[1]; ++ch)
      for (std::size_t oy = 0; oy < out[2]; ++oy)
        for (std::size_t ox = 0; ox < out[3]; ++ox) {
          v0.clear(), v1.clear();
          for (std::size_t y = 2 * oy; y < 2 * oy + 2; ++y)
            for (std::size_t x = 2 * ox; x < 2 * ox + 2; ++x) {
              v0.push_back(double(z0[(ch * in[2] + y) * in[3] + x]));
              v1.push_back(double(z1[(ch * in[2] + y) * in[3] + x]));
            }
          const std::size_t before = walked.size();
          if (!ops::MaxPool2d::same_leader(v0.data(), v1.data(), 4)) ops::envelope_switches(v0.data(), v1.data(), 4, walked);
          windows_with_switches += walked.size() > before;
        }
    CHECK(quick == walked);
  }
  return windows_with_switches;
}

}  // namespace

TEST_CASE("max-pool's quick window test drops no switch: the same switches as walking every window") {
  // 7 x 9 planes: a last row and column in no window
  CHECK(check_quick_window_test({1, 3, 7, 9}, {1, 3, 3, 4}, 200) > 100);
  // rows of 7 windows (the shipped model's second pool), over many blocks of the quick test, and
  // planes of odd width whose windows' corners straddle the blocks' ends
  CHECK(check_quick_window_test({1, 64, 14, 14}, {1, 64, 7, 7}, 20) > 100);
  CHECK(check_quick_window_test({1, 40, 13, 15}, {1, 40, 6, 7}, 20) > 100);
}

TEST_CASE("relu's crossings, tested a block at a time, are those of every unit walked in order") {
  // long inputs where few units cross (whole blocks pass the quick test): the only crossing of a
  // block at its first or last unit, or a few at random; some units exactly at 0 at one end (no
  // crossing strictly inside), and NaNs (never a crossing)
  std::mt19937_64 rng(9);
  std::uniform_real_distribution<float> value(-1, 1);
  std::uniform_int_distribution<int> pick(0, 199);
  const std::vector<std::size_t> lone{0, 63, 191, 256, 999};  // blocks of 64: crossing alone at an end
  for (std::size_t n : {1u, 63u, 64u, 65u, 1000u}) {
    std::vector<float> z0(n), z1(n);
    for (std::size_t i = 0; i < n; ++i) {
      z0[i] = value(rng);
      const int kind = pick(rng);
      const bool crosses = kind == 0 || std::find(lone.begin(), lone.end(), i) != lone.end();
      z1[i] = crosses ? -z0[i] : kind == 1 ? 0.0f : kind == 2 ? std::nanf("") : z0[i] * 2;
    }
    // z1 = -z0 crosses 0.25 only where |z0| > 0.25: the lone ones cross it too
    for (std::size_t i : lone)
      if (i < n) z0[i] = z0[i] < 0 ? z0[i] - 0.5f : z0[i] + 0.5f, z1[i] = -z0[i];
    for (double level : {0.0, 0.25}) {
      std::vector<double> blocked, walked;
      ops::level_crossings(z0.data(), z1.data(), n, level, blocked);
      for (std::size_t i = 0; i < n; ++i) {
        const double d0 = double(z0[i]) - level, d1 = double(z1[i]) - level;
        if ((d0 < 0 && d1 > 0) || (d0 > 0 && d1 < 0)) walked.push_back(d0 / (d0 - d1));
      }
      CHECK(blocked == walked);
      if (n == 1000) CHECK(walked.size() >= lone.size());
    }
  }
}
