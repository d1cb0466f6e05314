// Attribution methods against closed forms and completeness: linear, quadratic and ReLU networks,
// the sensitivity example, every quadrature rule, adaptive steps, expected gradients and the
// SmoothGrad family within their standard errors.
#include "attribution/methods.hpp"
#include "support.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <xtensor/xview.hpp>

using namespace ax;
using namespace ax::attr;
using nn::ModelSpec;
using nn::NodeSpec;
using nn::TensorData;

namespace {

// A ModelSpec written by hand: input "x" of the given shape, nodes appended with add().
struct Spec {
  ModelSpec m;
  explicit Spec(std::vector<std::size_t> shape, bool with_range = true) {
    m.graph.input = {"x", std::move(shape), std::nullopt};
    if (with_range) m.graph.input.range = std::pair{0.0, 1.0};
  }
  Spec& add(std::string name, std::string op, std::vector<std::string> inputs) {
    m.graph.nodes.push_back(nn::make_node(name, op, std::move(inputs)));
    m.graph.output = name;
    return *this;
  }
  Spec& tensor(const std::string& name, std::vector<std::size_t> shape, std::vector<double> values) {
    m.tensors[name] = TensorData{"F64", std::move(shape), std::move(values)};
    return *this;
  }
  Spec& random(const std::string& name, std::vector<std::size_t> shape, double scale, std::mt19937_64& rng) {
    std::size_t n = 1;
    for (std::size_t d : shape) n *= d;
    std::normal_distribution<double> normal(0.0, scale);
    std::vector<double> v(n);
    for (double& x : v) x = normal(rng);
    return tensor(name, std::move(shape), std::move(v));
  }
};

// F(x) = w x + b with 4 inputs and 3 outputs
ModelSpec linear_model() {
  Spec s({4});
  s.add("fc", "linear", {"x"});
  s.tensor("fc.weight", {3, 4}, {0.5, -1.0, 2.0, 0.25, 1.5, 0.75, -0.5, -2.0, 0.1, 0.2, 0.3, 0.4});
  s.tensor("fc.bias", {3}, {0.1, -0.2, 0.3});
  return s.m;
}

// F(x) = sum_i a_i x_i^2: mul(x, x), then a linear layer with one output
ModelSpec quadratic_model(const std::vector<double>& a) {
  Spec s({a.size()});
  s.add("square", "mul", {"x", "x"}).add("fc", "linear", {"square"});
  s.tensor("fc.weight", {1, a.size()}, a);
  return s.m;
}

// The sensitivity example: F(x) = 1 - relu(1 - x), input [1] in [0, 2]
ModelSpec sensitivity_model() {
  Spec s({1});
  s.m.graph.input.range = std::pair{0.0, 2.0};
  s.add("inner", "linear", {"x"}).add("relu", "relu", {"inner"}).add("outer", "linear", {"relu"});
  s.tensor("inner.weight", {1, 1}, {-1}).tensor("inner.bias", {1}, {1});
  s.tensor("outer.weight", {1, 1}, {-1}).tensor("outer.bias", {1}, {1});
  return s.m;
}

// A random MLP 6 -> 16 -> 16 -> 5 with the given activation
ModelSpec mlp(const std::string& activation, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  Spec s({6});
  s.add("fc1", "linear", {"x"}).add("act1", activation, {"fc1"});
  s.add("fc2", "linear", {"act1"}).add("act2", activation, {"fc2"}).add("fc3", "linear", {"act2"});
  s.random("fc1.weight", {16, 6}, 0.6, rng).random("fc1.bias", {16}, 0.3, rng);
  s.random("fc2.weight", {16, 16}, 0.4, rng).random("fc2.bias", {16}, 0.3, rng);
  s.random("fc3.weight", {5, 16}, 0.4, rng);
  return s.m;
}

template <class T = double>
Tensor<T> vec(std::initializer_list<T> v) {
  return from_values<T>({v.size()}, v);
}

TargetSpec target(int k) {
  TargetSpec t;
  t.class_index = k;
  return t;
}

IgOptions ig(Rule rule, std::size_t steps) {
  IgOptions o;
  o.rule = rule;
  o.steps = steps;
  return o;
}

const Rule quadrature_rules[] = {Rule::riemann_left, Rule::riemann_right, Rule::riemann_middle,
                                 Rule::riemann_trapezoid, Rule::gausslegendre};

}  // namespace

TEST_CASE("linear network: gradient, gradient x input and IG by every rule are the closed forms") {
  Engine<double> f(linear_model(), target(1));
  const Tensor<double> x = vec({0.2, 0.9, 0.4, 0.6}), base = vec({0.1, 0.0, 0.5, 0.3});
  const double w[] = {1.5, 0.75, -0.5, -2.0};
  const Attribution<double> g = gradient(f, x, base);
  const Attribution<double> gi = input_x_gradient(f, x, base);
  for (std::size_t i = 0; i < 4; ++i) {
    CHECK(g.values(i) == doctest::Approx(w[i]).epsilon(1e-15));
    CHECK(gi.values(i) == doctest::Approx(w[i] * x(i)).epsilon(1e-15));
  }
  CHECK(g.target == 1);
  CHECK(g.f_input == doctest::Approx(-0.2 + 1.5 * 0.2 + 0.75 * 0.9 - 0.5 * 0.4 - 2.0 * 0.6).epsilon(1e-15));
  for (Rule rule : quadrature_rules)
    for (std::size_t steps : {2, 7, 50}) {
      CAPTURE(rule_name(rule));
      const Attribution<double> a = integrated_gradients(f, x, base, ig(rule, steps));
      for (std::size_t i = 0; i < 4; ++i) CHECK(a.values(i) == doctest::Approx(w[i] * (x(i) - base(i))).epsilon(1e-14));
      CHECK(std::abs(a.delta) < 1e-14);
      CHECK(a.rule == rule_name(rule));
      CHECK(a.steps == steps);
    }
}

TEST_CASE("the sensitivity example: gradient 0 at x = 2, IG = 1 for the rules that avoid the kink") {
  Engine<double> f(sensitivity_model(), target(0));
  const Tensor<double> x = vec({2.0}), zero = vec({0.0});
  const Attribution<double> g = gradient(f, x, zero);
  CHECK(g.values(0) == 0.0);
  CHECK(g.f_input - g.f_baseline == 1.0);
  for (std::size_t n : {2, 4, 8, 50, 256}) {
    CAPTURE(n);
    // On the path x = 2a the kink sits at a = 1/2. With an even n, left, middle, trapezoid and
    // Gauss-Legendre put exactly half their weight below it; right puts a node on it, where
    // relu'(0) = 0, and loses that node's 1/n of weight, twice over for (x - x') = 2.
    for (Rule rule : {Rule::riemann_left, Rule::riemann_middle, Rule::riemann_trapezoid, Rule::gausslegendre})
      CHECK(integrated_gradients(f, x, zero, ig(rule, n)).values(0) == doctest::Approx(1.0).epsilon(1e-14));
    CHECK(integrated_gradients(f, x, zero, ig(Rule::riemann_right, n)).values(0) ==
          doctest::Approx(1.0 - 2.0 / double(n)).epsilon(1e-14));
  }
  // Every rule converges to 1 as the steps grow, odd step counts included.
  for (Rule rule : quadrature_rules) {
    CAPTURE(rule_name(rule));
    const double coarse = std::abs(integrated_gradients(f, x, zero, ig(rule, 9)).values(0) - 1.0);
    const double fine = std::abs(integrated_gradients(f, x, zero, ig(rule, 999)).values(0) - 1.0);
    CHECK(fine < 2e-3);
    CHECK(fine <= coarse);
  }
}

TEST_CASE("completeness on random smooth networks, and each rule's order of convergence") {
  // On a smooth network the completeness gap is exactly the quadrature error of the path
  // integral, so it shrinks like 1/n (left, right), 1/n^2 (middle, trapezoid), or faster than
  // any power (Gauss-Legendre).
  for (std::uint64_t seed : {1, 2, 3}) {
    Engine<double> f(mlp("tanh", seed), target(2));
    std::mt19937_64 rng(seed);
    const Tensor<double> x = test::uniform({6}, 0, 1, rng), base = zeros<double>({6});
    auto gap = [&](Rule rule, std::size_t n) { return integrated_gradients(f, x, base, ig(rule, n)).relative_delta; };
    CAPTURE(seed);
    for (Rule rule : {Rule::riemann_left, Rule::riemann_right}) CHECK(gap(rule, 64) / gap(rule, 128) == doctest::Approx(2.0).epsilon(0.1));
    CHECK(gap(Rule::riemann_middle, 64) / gap(Rule::riemann_middle, 128) == doctest::Approx(4.0).epsilon(0.1));
    CHECK(gap(Rule::riemann_trapezoid, 65) / gap(Rule::riemann_trapezoid, 129) == doctest::Approx(4.0).epsilon(0.1));
    CHECK(gap(Rule::gausslegendre, 10) / gap(Rule::gausslegendre, 20) > 1000);  // faster than any power of n
    CHECK(gap(Rule::gausslegendre, 50) < 1e-12);
  }
}

TEST_CASE("completeness on random ReLU networks for every rule, in float and double") {
  for (std::uint64_t seed : {4, 5}) {
    Engine<double> f(mlp("relu", seed), target(0));
    Engine<float> ff(mlp("relu", seed), target(0));
    std::mt19937_64 rng(seed);
    const Tensor<double> x = test::uniform({6}, 0, 1, rng), base = zeros<double>({6});
    const Tensor<float> xf = xt::cast<float>(x), basef = xt::cast<float>(base);
    for (Rule rule : quadrature_rules) {
      CAPTURE(rule_name(rule));
      const Attribution<double> a = integrated_gradients(f, x, base, ig(rule, 2000));
      CHECK(a.relative_delta < 5e-3);
      const Attribution<float> af = integrated_gradients(ff, xf, basef, ig(rule, 2000));
      CHECK(af.relative_delta < 5e-3);
      CHECK(af.sum == doctest::Approx(a.sum).epsilon(1e-4));
    }
  }
}

TEST_CASE("adaptive steps double until the tolerance, reusing the nodes the rule shares") {
  Engine<double> f(mlp("tanh", 7), target(1));
  std::mt19937_64 rng(7);
  const Tensor<double> x = test::uniform({6}, 0, 1, rng), base = zeros<double>({6});
  IgOptions o = ig(Rule::riemann_left, 8);
  o.tolerance = 1e-3;
  const std::size_t before = f.evaluations();
  const Attribution<double> a = integrated_gradients(f, x, base, o);
  CHECK(a.relative_delta <= 1e-3);
  CHECK(a.steps > 8);
  CHECK((a.steps & (a.steps - 1)) == 0);  // 8 doubled: a power of two
  // riemann_left's nodes k/n are all among k/2n: only the final count is ever evaluated, plus F
  // at x and x'
  CHECK(f.evaluations() - before == a.steps + 2);
  // a fixed run with the reached count gives the same attributions
  const Attribution<double> fixed = integrated_gradients(f, x, base, ig(Rule::riemann_left, a.steps));
  CHECK(test::max_abs_diff(a.values, fixed.values) < 1e-15);
  // a cap stops the doubling
  o.tolerance = 1e-12;
  o.max_steps = 64;
  CHECK(integrated_gradients(f, x, base, o).steps == 64);
}

TEST_CASE("path diagnostics: F along the path and the cumulative sum of attributions") {
  Engine<double> f(mlp("tanh", 8), target(3));
  std::mt19937_64 rng(8);
  const Tensor<double> x = test::uniform({6}, 0, 1, rng), base = test::uniform({6}, 0, 1, rng);
  IgOptions o = ig(Rule::riemann_trapezoid, 33);
  o.diagnostics = true;
  const Attribution<double> a = integrated_gradients(f, x, base, o);
  REQUIRE(a.path_alpha.size() == 33);
  CHECK(a.path_alpha.front() == 0.0);
  CHECK(a.path_f.front() == doctest::Approx(a.f_baseline).epsilon(1e-14));
  CHECK(a.path_f.back() == doctest::Approx(a.f_input).epsilon(1e-14));
  CHECK(a.path_cumulative.back() == doctest::Approx(a.sum).epsilon(1e-12));
}

TEST_CASE("IG over several baselines is the mean of IG over each") {
  Engine<double> f(mlp("tanh", 9), target(0));
  std::mt19937_64 rng(9);
  const Tensor<double> x = test::uniform({6}, 0, 1, rng), bases = test::uniform({3, 6}, 0, 1, rng);
  const Attribution<double> all = integrated_gradients_multi(f, x, bases, ig(Rule::gausslegendre, 30));
  Tensor<double> mean = zeros<double>({6});
  for (std::size_t b = 0; b < 3; ++b) {
    const Tensor<double> one = xt::view(bases, b);
    mean += integrated_gradients(f, x, one, ig(Rule::gausslegendre, 30)).values / 3.0;
  }
  CHECK(test::max_abs_diff(all.values, mean) < 1e-15);
  CHECK(all.relative_delta < 1e-10);
}

TEST_CASE("expected gradients: linear and quadratic closed forms within the standard error") {
  std::mt19937_64 rng(10);
  const Tensor<double> data = test::uniform({200, 4}, 0, 1, rng), x = vec({0.9, 0.1, 0.5, 0.7});
  {
    // linear: each sample's contributions sum to F(x) - F(x'_j) exactly: completeness is exact
    Engine<double> f(linear_model(), target(0));
    const Attribution<double> a = expected_gradients(f, x, data, 500, 42);
    CHECK(std::abs(a.delta) < 1e-13);
    CHECK(a.standard_error > 0);
    CHECK(a.seed == 42);
  }
  {
    // quadratic: E_a[(x - b) 2 c (b + a (x - b))] = c (x^2 - b^2), so E[sum] = F(x) - E F(b)
    const std::vector<double> c = {1.0, -2.0, 0.5, 3.0};
    Engine<double> f(quadratic_model(c), target(0));
    const Attribution<double> a = expected_gradients(f, x, data, 2000, 7);
    double expected = 0;
    for (std::size_t i = 0; i < 4; ++i) {
      double mean_square = 0;
      for (std::size_t j = 0; j < 200; ++j) mean_square += data(j, i) * data(j, i) / 200;
      expected += c[i] * (x(i) * x(i) - mean_square);
    }
    CHECK(std::abs(a.sum - expected) < 4 * a.standard_error);
    // same seed, same bits; another seed, another draw
    CHECK(test::same_bits(expected_gradients(f, x, data, 2000, 7).values, a.values));
    CHECK_FALSE(test::same_bits(expected_gradients(f, x, data, 2000, 8).values, a.values));
  }
}

TEST_CASE("SmoothGrad, SmoothGrad squared and VarGrad on a quadratic network") {
  // F = sum c_i x_i^2: g = 2 c (x + eps), so E[g] = 2 c x, E[g^2] = 4 c^2 (x^2 + s^2), Var g = 4 c^2 s^2
  const std::vector<double> c = {1.0, -2.0, 0.5, 3.0};
  Engine<double> f(quadratic_model(c), target(0));
  const Tensor<double> x = vec({0.9, 0.1, 0.5, 0.7}), zero = zeros<double>({4});
  const double s = 0.2;
  const Attribution<double> sg = smoothgrad(f, x, zero, SmoothKind::smoothgrad, s, false, 4000, 3);
  double expected = 0;
  for (std::size_t i = 0; i < 4; ++i) expected += 2 * c[i] * x(i);
  CHECK(std::abs(sg.sum - expected) < 4 * sg.standard_error);
  const Attribution<double> sq = smoothgrad(f, x, zero, SmoothKind::smoothgrad_sq, s, false, 4000, 3);
  double expected_sq = 0;
  for (std::size_t i = 0; i < 4; ++i) expected_sq += 4 * c[i] * c[i] * (x(i) * x(i) + s * s);
  CHECK(std::abs(sq.sum - expected_sq) < 4 * sq.standard_error);
  const Attribution<double> var = smoothgrad(f, x, zero, SmoothKind::vargrad, s, false, 4000, 3);
  for (std::size_t i = 0; i < 4; ++i) CHECK(var.values(i) / (4 * c[i] * c[i] * s * s) == doctest::Approx(1.0).epsilon(0.1));
  // sigma relative to the input range [0, 1] is the same sigma here; it needs a range
  CHECK(test::same_bits(smoothgrad(f, x, zero, SmoothKind::smoothgrad, s, true, 100, 5).values,
                        smoothgrad(f, x, zero, SmoothKind::smoothgrad, s, false, 100, 5).values));
  nn::ModelSpec no_range = quadratic_model(c);
  no_range.graph.input.range.reset();
  Engine<double> g(no_range, target(0));
  CHECK_THROWS_WITH_AS(smoothgrad(g, x, zero, SmoothKind::smoothgrad, s, true, 100, 5),
                       doctest::Contains("needs the model's input range"), Error);
}

TEST_CASE("the memory budget sets the chunk size and does not change the bits") {
  std::mt19937_64 rng(11);
  const Tensor<float> x = test::uniform<float>({6}, 0, 1, rng), base = zeros<float>({6});
  EngineOptions small, large;
  Engine<float> f2(mlp("relu", 11), target(1), large);
  small.memory_budget = f2.bytes_per_point();  // one point at a time
  Engine<float> f1(mlp("relu", 11), target(1), small);
  CHECK(f1.chunk() == 1);
  CHECK(f2.chunk() > 1000);
  CHECK(f2.bytes_per_point() > 0);
  const Attribution<float> a = integrated_gradients(f1, x, base, ig(Rule::gausslegendre, 64));
  const Attribution<float> b = integrated_gradients(f2, x, base, ig(Rule::gausslegendre, 64));
  CHECK(test::same_bits(a.values, b.values));
}

TEST_CASE("targets: predicted class, probabilities, log-probabilities and differences") {
  Engine<double> logits(linear_model(), TargetSpec{});
  const Tensor<double> x = vec({0.2, 0.9, 0.4, 0.6}), base = zeros<double>({4});
  const std::vector<double> z = logits.scores(x);
  const int predicted = static_cast<int>(std::max_element(z.begin(), z.end()) - z.begin());
  CHECK(gradient(logits, x, base).target == predicted);

  TargetSpec prob = target(2);
  prob.output = Output::prob;
  Engine<double> p(linear_model(), prob);
  double total = 0;
  for (double v : z) total += std::exp(v);
  const Attribution<double> a = integrated_gradients(p, x, base, ig(Rule::gausslegendre, 40));
  CHECK(a.f_input == doctest::Approx(std::exp(z[2]) / total).epsilon(1e-14));
  CHECK(a.relative_delta < 1e-10);

  TargetSpec difference = target(0);
  difference.minus_class = 2;
  Engine<double> d(linear_model(), difference);
  const Attribution<double> g = gradient(d, x, base);
  CHECK(g.values(1) == doctest::Approx(-1.0 - 0.2).epsilon(1e-14));  // w[0][1] - w[2][1]
  CHECK(g.f_input == doctest::Approx(z[0] - z[2]).epsilon(1e-14));
}

TEST_CASE("bad requests are refused with a clear message") {
  Engine<double> f(linear_model(), target(0));
  Tensor<double> x = vec({0.2, 0.9, 0.4, 0.6});
  const Tensor<double> base = zeros<double>({4});
  x(3) = std::nan("");
  CHECK_THROWS_WITH_AS(gradient(f, x, base), "the input: NaN at index 3", Error);
  CHECK_THROWS_WITH_AS(gradient(f, vec({1.0, 2.0}), base), doctest::Contains("the input has shape [2], the model expects [4]"), Error);
  CHECK_THROWS_WITH_AS(Engine<double>(linear_model(), target(3)), doctest::Contains("target 3 is out of range"), Error);
  Spec soft({4});
  soft.add("fc", "linear", {"x"}).add("p", "softmax", {"fc"});
  soft.tensor("fc.weight", {2, 4}, std::vector<double>(8, 0.5));
  TargetSpec prob = target(0);
  prob.output = Output::logprob;
  CHECK_THROWS_WITH_AS(Engine<double>(soft.m, prob), doctest::Contains("node 'p' is already a softmax"), Error);
  CHECK_THROWS_WITH_AS(parse_output("odds"), doctest::Contains("expected logit, prob or logprob"), Error);
}

TEST_CASE("layer IG: closed form before a linear output, and complete through a hidden layer") {
  std::mt19937_64 rng(12);
  const Tensor<double> x = test::uniform({6}, 0, 1, rng), base = test::uniform({6}, 0, 1, rng);
  const nn::ModelSpec m = mlp("tanh", 12);
  Engine<double> f(m, target(2));
  // F is affine in act2 (fc3 follows): layer IG there is (h(x) - h(x')) * w[2] exactly
  const Attribution<double> last = layer_integrated_gradients(f, x, base, "act2", ig(Rule::riemann_left, 3));
  Tape<double> tape;
  nn::Network<double> net(m, tape);
  auto h_at = [&](const Tensor<double>& p) {
    tape.set_value(net.input(), Tensor<double>(xt::reshape_view(p, {std::size_t(1), std::size_t(6)})));
    tape.forward();
    return Tensor<double>(tape.value(net.node("act2")));
  };
  const Tensor<double> hx = h_at(x), hb = h_at(base);
  const std::vector<double>& w = m.tensors.at("fc3.weight").values;
  REQUIRE(last.values.shape() == Shape{16});
  for (std::size_t j = 0; j < 16; ++j) CHECK(last.values(j) == doctest::Approx((hx(0, j) - hb(0, j)) * w[2 * 16 + j]).epsilon(1e-13));
  // through act1, where every path passes: complete, and F with h = h(x') is F(x')
  const Attribution<double> hidden = layer_integrated_gradients(f, x, base, "act1", ig(Rule::gausslegendre, 50));
  CHECK(hidden.relative_delta < 1e-10);
  CHECK(hidden.f_baseline == doctest::Approx(integrated_gradients(f, x, base).f_baseline).epsilon(1e-14));
  CHECK_THROWS_WITH_AS(layer_integrated_gradients(f, x, base, "act1", ig(Rule::exact, 1)), doctest::Contains("no exact rule"), Error);
  CHECK_THROWS_WITH_AS(layer_integrated_gradients(f, x, base, "nothing"), doctest::Contains("no node 'nothing'"), Error);
}

TEST_CASE("conductance sums to IG at the same nodes, and is exact with the exact rule") {
  std::mt19937_64 rng(13);
  const Tensor<double> x = test::uniform({6}, 0, 1, rng), base = zeros<double>({6});
  {
    Engine<double> f(mlp("tanh", 13), target(1));
    for (Rule rule : {Rule::riemann_middle, Rule::gausslegendre}) {
      const Attribution<double> c = conductance(f, x, base, "act1", ig(rule, 20));
      const Attribution<double> i = integrated_gradients(f, x, base, ig(rule, 20));
      CHECK(c.values.shape() == Shape{16});
      // sum over neurons of dF/dh dh/da is dF/da: the same sum as IG's at every node
      CHECK(c.sum == doctest::Approx(i.sum).epsilon(1e-12));
    }
  }
  Engine<double> relu(mlp("relu", 14), target(0));
  const Attribution<double> exact = conductance(relu, x, base, "fc2", ig(Rule::exact, 1));
  CHECK(exact.pieces > 1);
  CHECK(exact.relative_delta < 1e-12);
}
