// Exact IG for prob and logprob targets: inside each linear piece the logits are affine in
// alpha and dF/dx = J^T s(alpha) with the logits' Jacobian J constant, so the integral is
// exact when the seed s = dF/dz is integrated to rounding. Checked against references computed
// here without the library's quadrature: the logits' Jacobian row by row (logit targets) at
// each piece's midpoint times 2000-node Gauss-Legendre integrals of the softmax's derivative,
// and, with two classes, the sigmoid's closed-form integral (a log-sum-exp).
#include "attribution/methods.hpp"
#include "nn/zoo.hpp"
#include "support.hpp"

#include <doctest/doctest.h>

#include <cmath>

using namespace ax;
using namespace ax::attr;

namespace {

TargetSpec target(int k, Output output) {
  TargetSpec t;
  t.class_index = k;
  t.output = output;
  return t;
}

IgOptions exact_rule() {
  IgOptions o;
  o.rule = Rule::exact;
  return o;
}

// A random MLP 8 -> 24 -> relu -> 24 -> relu -> `classes`.
nn::ModelSpec mlp(std::uint64_t seed, std::size_t classes) {
  nn::SpecBuilder b("x", {8}, seed);
  b.set_range(0, 1);
  const std::string h = b.relu("r2", b.linear("fc2", b.relu("r1", b.linear("fc1", "x", 8, 24)), 24, 24));
  return b.finish(b.linear("fc3", h, 24, classes));
}

// A small CNN, a chain: conv -> relu -> max-pool -> conv -> relu -> linear, 4 classes.
nn::ModelSpec cnn(std::uint64_t seed) {
  nn::SpecBuilder b("x", {1, 8, 8}, seed);
  b.set_range(0, 1);
  const std::string c1 = b.maxpool2d("pool", b.relu("r1", b.conv2d("c1", "x", 1, 4, 3, 1, 1)), 2, 2, 0);
  const std::string c2 = b.relu("r2", b.conv2d("c2", c1, 4, 4, 3, 1, 1));
  return b.finish(b.linear("fc", b.flatten("flat", c2), 64, 4));
}

// A residual block (the add has two moving inputs: the reference search and gradients at nodes).
nn::ModelSpec residual(std::uint64_t seed) {
  nn::SpecBuilder b("x", {2, 8, 8}, seed);
  const std::string stem = b.relu("r0", b.conv2d("c0", "x", 2, 6, 3, 1, 1));
  const std::string branch = b.conv2d("c2", b.relu("r1", b.conv2d("c1", stem, 6, 6, 3, 1, 1)), 6, 6, 3, 1, 1);
  const std::string merged = b.relu("r2", b.add("sum", {stem, branch}));
  return b.finish(b.linear("fc", b.flatten("flat", b.maxpool2d("pool", merged, 2, 2, 0)), 96, 4));
}

// dF/dz_c at logits z for F = p_k (prob) or log p_k (logprob), written out again here.
std::vector<double> softmax_derivative(Output output, int k, const std::vector<double>& z) {
  double top = z[0], total = 0;
  for (double v : z) top = std::max(top, v);
  std::vector<double> p(z.size());
  for (std::size_t c = 0; c < z.size(); ++c) total += p[c] = std::exp(z[c] - top);
  std::vector<double> s(z.size());
  for (std::size_t c = 0; c < z.size(); ++c) {
    const double delta = int(c) == k ? 1.0 : 0.0;
    s[c] = output == Output::prob ? p[std::size_t(k)] / total * (delta - p[c] / total) : delta - p[c] / total;
  }
  return s;
}

// Points base + a (x - base), one row per alpha.
Tensor<double> path_points(const Tensor<double>& x, const Tensor<double>& base, const std::vector<double>& alphas) {
  Shape shape{alphas.size()};
  for (std::size_t d : x.shape()) shape.push_back(d);
  Tensor<double> points(shape);
  const std::size_t size = x.size();
  for (std::size_t i = 0; i < alphas.size(); ++i)
    for (std::size_t j = 0; j < size; ++j)
      points.data()[i * size + j] = base.data()[j] + alphas[i] * (x.data()[j] - base.data()[j]);
  return points;
}

// IG of F = prob or logprob of class k: for every piece, each logit's value at the piece's ends
// and gradient at its midpoint (an engine with that logit as target), and the integral of the
// softmax's derivative over the piece by 2000-node Gauss-Legendre.
Tensor<double> reference_ig(const nn::ModelSpec& spec, Output output, int k, std::size_t classes,
                            const Tensor<double>& x, const Tensor<double>& base) {
  Engine<double> logit_k(spec, target(k, Output::logit));
  const std::vector<double> breaks = path_breakpoints_reference(logit_k, x, base);
  const std::size_t pieces = breaks.size() - 1, size = x.size();
  std::vector<double> mids(pieces);
  for (std::size_t p = 0; p < pieces; ++p) mids[p] = 0.5 * (breaks[p] + breaks[p + 1]);
  std::vector<std::vector<double>> ends(classes);   // [class][breakpoint]: the logit
  std::vector<Tensor<double>> slopes(classes);      // [class]: [pieces, input] the logit's gradient
  for (std::size_t c = 0; c < classes; ++c) {
    Engine<double> logit(spec, target(int(c), Output::logit));
    logit.evaluate(path_points(x, base, breaks), ends[c], nullptr);
    std::vector<double> unused;
    logit.evaluate(path_points(x, base, mids), unused, &slopes[c]);
  }
  const Quadrature fine = quadrature(Rule::gausslegendre, 2000);
  std::vector<double> total(size, 0.0), z(classes);
  // [pieces, nodes, classes, input]
  for (std::size_t p = 0; p < pieces; ++p) {
    std::vector<double> seed(classes, 0.0);
    for (std::size_t q = 0; q < fine.alphas.size(); ++q) {
      for (std::size_t c = 0; c < classes; ++c) z[c] = ends[c][p] + fine.alphas[q] * (ends[c][p + 1] - ends[c][p]);
      const std::vector<double> s = softmax_derivative(output, k, z);
      for (std::size_t c = 0; c < classes; ++c) seed[c] += (breaks[p + 1] - breaks[p]) * fine.weights[q] * s[c];
    }
    for (std::size_t c = 0; c < classes; ++c)
      for (std::size_t j = 0; j < size; ++j) total[j] += seed[c] * slopes[c].data()[p * size + j];
  }
  Tensor<double> ig(x.shape());
  for (std::size_t j = 0; j < size; ++j) ig.data()[j] = (x.data()[j] - base.data()[j]) * total[j];
  return ig;
}

double relative_l2(const Tensor<double>& a, const Tensor<double>& b) {
  return std::sqrt(double(xt::sum(xt::square(a - b))()) / double(xt::sum(xt::square(b))()));
}

// Exact IG for prob and logprob of class k against reference_ig, and completeness.
void check_against_reference(const nn::ModelSpec& spec, int k, std::size_t classes, const Tensor<double>& x,
                             const Tensor<double>& base) {
  for (Output output : {Output::prob, Output::logprob}) {
    CAPTURE(output_name(output));
    Engine<double> f(spec, target(k, output));
    const Attribution<double> a = integrated_gradients(f, x, base, exact_rule());
    CHECK(a.pieces > 5);
    const double error = relative_l2(a.values, reference_ig(spec, output, k, classes, x, base));
    MESSAGE("relative L2 error " << error << ", completeness " << a.relative_delta << ", pieces " << a.pieces);
    CHECK(error < 1e-13);
    CHECK(a.relative_delta < 1e-13);
  }
}

// softplus(v) = log(1 + e^v) without overflow.
double softplus(double v) { return v > 0 ? v + std::log1p(std::exp(-v)) : std::log1p(std::exp(v)); }
double sigmoid(double v) { return v >= 0 ? 1 / (1 + std::exp(-v)) : std::exp(v) / (1 + std::exp(v)); }

// With two classes and d = z_1 - z_0, F = sigmoid(d) (prob of class 1) or log sigmoid(d)
// (logprob) and dF/dx = F'(d) grad d. Over a piece where d goes from d0 to d1 the integral of
// F'(d(a)) is the width times (F(d1) - F(d0)) / (d1 - d0): log sigmoid(d) = -softplus(-d), a
// log-sum-exp. Where d barely moves the quotient cancels; 64-node Gauss-Legendre of F' is exact
// to rounding there.
Tensor<double> two_class_closed_form(const nn::ModelSpec& spec, Output output, const Tensor<double>& x,
                                     const Tensor<double>& base) {
  TargetSpec difference = target(1, Output::logit);
  difference.minus_class = 0;
  Engine<double> d(spec, difference);
  const std::vector<double> breaks = path_breakpoints_reference(d, x, base);
  const std::size_t pieces = breaks.size() - 1, size = x.size();
  std::vector<double> mids(pieces), ends, unused;
  for (std::size_t p = 0; p < pieces; ++p) mids[p] = 0.5 * (breaks[p] + breaks[p + 1]);
  Tensor<double> slopes;
  d.evaluate(path_points(x, base, breaks), ends, nullptr);
  d.evaluate(path_points(x, base, mids), unused, &slopes);
  // sigmoid(v) - 1 for prob: the same differences, without cancellation where sigmoid(v) is near 1
  auto value = [&](double v) { return output == Output::prob ? -sigmoid(-v) : -softplus(-v); };
  auto derivative = [&](double v) { return output == Output::prob ? sigmoid(v) * sigmoid(-v) : sigmoid(-v); };
  const Quadrature rule = quadrature(Rule::gausslegendre, 64);
  std::vector<double> total(size, 0.0);
  // [pieces, input]
  for (std::size_t p = 0; p < pieces; ++p) {
    const double d0 = ends[p], d1 = ends[p + 1], width = breaks[p + 1] - breaks[p];
    double integral = 0;
    if (std::abs(d1 - d0) > 0.1) {
      integral = width * (value(d1) - value(d0)) / (d1 - d0);
    } else {
      for (std::size_t q = 0; q < rule.alphas.size(); ++q) integral += width * rule.weights[q] * derivative(d0 + rule.alphas[q] * (d1 - d0));
    }
    for (std::size_t j = 0; j < size; ++j) total[j] += integral * slopes.data()[p * size + j];
  }
  Tensor<double> ig(x.shape());
  for (std::size_t j = 0; j < size; ++j) ig.data()[j] = (x.data()[j] - base.data()[j]) * total[j];
  return ig;
}

}  // namespace

TEST_CASE("exact IG, prob and logprob on random MLPs: at rounding from 2000 nodes a piece") {
  for (std::uint64_t seed : {21, 22, 23}) {
    CAPTURE(seed);
    const nn::ModelSpec spec = mlp(seed, 6);
    std::mt19937_64 rng(seed);
    // a long path, so that the softmax curves inside the pieces
    const Tensor<double> x = test::uniform({8}, 0, 20, rng), base = test::uniform({8}, -5, 0, rng);
    check_against_reference(spec, int(seed % 6), 6, x, base);
  }
}

TEST_CASE("exact IG, prob and logprob on a small CNN and a residual network: at rounding from 2000 nodes a piece") {
  std::mt19937_64 rng(24);
  const Tensor<double> x = test::uniform({1, 8, 8}, 0, 60, rng), base = zeros<double>({1, 8, 8});
  check_against_reference(cnn(24), 2, 4, x, base);
  // the residual network's exact rule evaluates gradients at the adaptive rule's nodes
  Engine<double> branched(residual(25), target(1, Output::prob));
  REQUIRE_FALSE(exact_search_applies(branched));
  const Tensor<double> x2 = test::uniform({2, 8, 8}, 0, 60, rng), base2 = test::uniform({2, 8, 8}, -1, 0, rng);
  check_against_reference(residual(25), 1, 4, x2, base2);
}

TEST_CASE("exact IG with two classes: the sigmoid's integral in closed form, a log-sum-exp") {
  for (std::uint64_t seed : {26, 27}) {
    CAPTURE(seed);
    const nn::ModelSpec spec = mlp(seed, 2);
    std::mt19937_64 rng(seed);
    const Tensor<double> x = test::uniform({8}, 0, 20, rng), base = zeros<double>({8});
    for (Output output : {Output::prob, Output::logprob}) {
      CAPTURE(output_name(output));
      Engine<double> f(spec, target(1, output));
      const Attribution<double> a = integrated_gradients(f, x, base, exact_rule());
      const double error = relative_l2(a.values, two_class_closed_form(spec, output, x, base));
      MESSAGE("relative L2 error " << error << ", completeness " << a.relative_delta << ", pieces " << a.pieces);
      CHECK(error < 1e-13);
      CHECK(a.relative_delta < 1e-13);
    }
  }
}

TEST_CASE("a softmax switching sharply inside one piece: the piece is split, within the stated cap") {
  // one linear layer: a single piece, along which the logit difference moves by hundreds
  nn::SpecBuilder b("x", {8}, 28);
  nn::ModelSpec spec = b.finish(b.linear("fc", "x", 8, 2));
  for (double& w : spec.tensors["fc.weight"].values) w *= 40;
  std::mt19937_64 rng(28);
  const Tensor<double> x = test::uniform({8}, -2, 2, rng), base = -x;
  for (Output output : {Output::prob, Output::logprob}) {
    CAPTURE(output_name(output));
    Engine<double> f(spec, target(1, output));
    const ExactPath<double> path = exact_path(f, x, base);
    CHECK(path.pieces == 1);
    CHECK(path.most_parts > 1);
    const Attribution<double> a = integrated_gradients(f, x, base, exact_rule());
    const double error = relative_l2(a.values, two_class_closed_form(spec, output, x, base));
    MESSAGE("relative L2 error " << error << ", parts " << path.most_parts << ", softmax evaluations " << path.seed_nodes);
    CHECK(error < 1e-13);
    CHECK(a.relative_delta < 1e-13);
    IgOptions capped = exact_rule();
    capped.exact.max_parts_per_piece = 1;
    CHECK_THROWS_WITH_AS(integrated_gradients(f, x, base, capped),
                         doctest::Contains("integral over the piece [0.000000, 1.000000] of the path did not reach rounding in 1 parts"),
                         Error);
  }
}

TEST_CASE("a probability near 1 along the whole path: one part a piece, at rounding") {
  // d = z_1 - z_0 = the inputs' mean, from 20 to 40: p_1 = 1 - 2e-9 to 1 - 4e-18. Were 1 - p_1
  // computed as a difference it would carry rounding far above its size, the rules would never
  // agree, and every piece would be split to the cap.
  nn::SpecBuilder b("x", {8}, 29);
  nn::ModelSpec spec = b.finish(b.linear("fc", "x", 8, 2));
  std::vector<double>& weight = spec.tensors["fc.weight"].values;  // [2, 8]
  std::fill(weight.begin(), weight.begin() + 8, 0.0);
  std::fill(weight.begin() + 8, weight.end(), 1.0 / 8);
  std::fill(spec.tensors["fc.bias"].values.begin(), spec.tensors["fc.bias"].values.end(), 0.0);
  const Tensor<double> x = full<double>({8}, 40.0), base = full<double>({8}, 20.0);
  for (Output output : {Output::prob, Output::logprob}) {
    CAPTURE(output_name(output));
    Engine<double> f(spec, target(1, output));
    const ExactPath<double> path = exact_path(f, x, base);
    CHECK(path.most_parts == 1);
    const Attribution<double> a = integrated_gradients(f, x, base, exact_rule());
    const double error = relative_l2(a.values, two_class_closed_form(spec, output, x, base));
    MESSAGE("relative L2 error " << error << ", softmax evaluations " << path.seed_nodes);
    CHECK(error < 1e-13);
  }
}
