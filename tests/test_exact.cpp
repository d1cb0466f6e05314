// Exact IG on piecewise-linear networks: completeness to rounding, agreement with fine
// quadrature, every piece truly linear (checked with the tangent pass), and the refusals.
#include "attribution/methods.hpp"
#include "nn/zoo.hpp"
#include "exact_lenet.hpp"
#include "support.hpp"

#include <doctest/doctest.h>

#include <cmath>
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
  TargetFunction<double> f(m, target(0));
  const Attribution<double> a = integrated_gradients(f, full<double>({1}, 2.0), zeros<double>({1}), rule(Rule::exact));
  CHECK(a.values(0) == 1.0);
  CHECK(a.pieces == 2);
  CHECK(a.delta == 0.0);
  CHECK(gradient(f, full<double>({1}, 2.0), zeros<double>({1})).values(0) == 0.0);
}

TEST_CASE("exact IG on random ReLU networks: completeness to rounding, the limit of quadrature") {
  for (std::uint64_t seed : {1, 2, 3}) {
    CAPTURE(seed);
    TargetFunction<double> f(relu_mlp(seed), target(int(seed % 6)));
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

TEST_CASE("every piece is linear: midpoint values and the tangent pass agree with the piece ends") {
  TargetFunction<double> f(relu_mlp(4), target(2));
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
  TargetFunction<double> f(test::exact_lenet(5), target(3));
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
    TargetFunction<double> f(relu_mlp(6), target(1, output));
    std::mt19937_64 rng(6);
    const Tensor<double> x = test::uniform({8}, 0, 1, rng), base = zeros<double>({8});
    const Attribution<double> a = integrated_gradients(f, x, base, rule(Rule::exact));
    CHECK(a.relative_delta < 1e-10);
    CHECK(a.steps == 4 * a.pieces);
  }
}

TEST_CASE("exact IG refuses smooth networks and too many pieces") {
  TargetFunction<double> smooth(relu_mlp(7, "tanh"), target(0));
  const Tensor<double> x = full<double>({8}, 0.5), base = zeros<double>({8});
  CHECK_THROWS_WITH_AS(integrated_gradients(smooth, x, base, rule(Rule::exact)),
                       doctest::Contains("(tanh) is not; use a quadrature rule"), Error);
  TargetFunction<double> f(relu_mlp(8), target(0));
  IgOptions capped = rule(Rule::exact);
  capped.exact.max_pieces = 2;
  CHECK_THROWS_WITH_AS(integrated_gradients(f, x, base, capped), doctest::Contains("more than 2 linear pieces"), Error);
}

TEST_CASE("exact IG in float: completeness to float rounding") {
  TargetFunction<float> f(nn::lenet28(9), target(7));
  std::mt19937_64 rng(9);
  const Tensor<float> x = test::uniform<float>({1, 28, 28}, 0, 1, rng), base = zeros<float>({1, 28, 28});
  const Attribution<float> a = integrated_gradients(f, x, base, rule(Rule::exact));
  CHECK(a.relative_delta < 1e-3);
}

TEST_CASE("same seed, same bits, on one thread or two: IG, exact IG and SmoothGrad on a LeNet") {
  TargetFunction<float> f(nn::lenet28(10), target(4));
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
