// The axiom checks pass where the axioms hold and fail where a method breaks them.
#include "attribution/axioms.hpp"
#include "nn/zoo.hpp"
#include "exact_lenet.hpp"
#include "support.hpp"

#include <doctest/doctest.h>

using namespace ax;
using namespace ax::attr;

namespace {

const AxiomCheck& find(const std::vector<AxiomCheck>& checks, const std::string& axiom) {
  for (const AxiomCheck& c : checks)
    if (c.axiom == axiom) return c;
  throw Error("no check " + axiom);
}

CheckRequest request(Rule rule, std::size_t steps = 50) {
  CheckRequest r;
  r.ig.rule = rule;
  r.ig.steps = steps;
  return r;
}

}  // namespace

TEST_CASE("every axiom holds for exact IG on a LeNet, in float64") {
  const nn::ModelSpec model = test::exact_lenet(3);
  std::mt19937_64 rng(3);
  const Tensor<double> x = test::uniform({1, 28, 28}, 0, 1, rng), base = zeros<double>({1, 28, 28});
  const std::vector<AxiomCheck> checks = check_axioms(model, x, base, request(Rule::exact));
  REQUIRE(checks.size() == 6);
  for (const AxiomCheck& c : checks) {
    CAPTURE(c.axiom);
    CAPTURE(c.detail);
    CHECK(c.applicable);
    CHECK(c.passed);
    CHECK(c.error <= 1e-9);
  }
  CHECK(find(checks, "dummy").error == 0.0);
}

TEST_CASE("quadrature IG on a ReLU network fails completeness at a tight tolerance, and passes a loose one") {
  const nn::ModelSpec model = nn::lenet28(4);
  std::mt19937_64 rng(4);
  const Tensor<double> x = test::uniform({1, 28, 28}, 0, 1, rng), base = zeros<double>({1, 28, 28});
  CheckRequest tight = request(Rule::riemann_right, 16);
  tight.tolerance = 1e-9;
  const AxiomCheck completeness = find(check_axioms(model, x, base, tight), "completeness");
  CHECK_FALSE(completeness.passed);
  CHECK(completeness.error > 1e-6);
  CheckRequest loose = tight;
  loose.tolerance = 1.0;
  CHECK(find(check_axioms(model, x, base, loose), "completeness").passed);
}

TEST_CASE("model variants: the rescaled twin computes the same function, the mask and the average do what they say") {
  const nn::ModelSpec model = nn::lenet28(5);
  nn::ModelSpec twin;
  REQUIRE(rescale_hidden(model, 2.0, twin));
  CHECK(twin.tensors.at("conv1.weight").values[0] == 2 * model.tensors.at("conv1.weight").values[0]);
  CHECK(twin.tensors.at("conv2.weight").values[0] == model.tensors.at("conv2.weight").values[0] / 2);
  std::mt19937_64 rng(5);
  const Tensor<double> x = test::uniform({1, 28, 28}, 0, 1, rng);
  TargetSpec t;
  t.class_index = 0;
  Engine<double> f(model, t), g(twin, t);
  const std::vector<double> a = f.scores(x), b = g.scores(x);
  for (std::size_t k = 0; k < a.size(); ++k) CHECK(a[k] == doctest::Approx(b[k]).epsilon(1e-13));

  // a model with no pair to rescale: a single linear layer
  nn::SpecBuilder single("x", {4}, 1);
  nn::ModelSpec one = single.finish(single.linear("fc", "x", 4, 2));
  CHECK_FALSE(rescale_hidden(one, 2.0, twin));
  // append_linear combines outputs: w = [1, -1] gives z_0 - z_1
  Engine<double> diff(append_linear(one, {1.0, -1.0}), t), plain(one, t);
  const Tensor<double> v = from_values<double>({4}, {0.1, 0.2, 0.3, 0.4});
  const std::vector<double> z = plain.scores(v);
  CHECK(diff.scores(v)[0] == doctest::Approx(z[0] - z[1]).epsilon(1e-14));
  // prepend_linear with a mask zeroes column 2 for the network
  std::vector<double> mask(16, 0.0);
  for (std::size_t j : {0, 1, 3}) mask[j * 4 + j] = 1;
  Engine<double> masked(prepend_linear(one, mask), t);
  const Tensor<double> w = from_values<double>({4}, {0.1, 0.2, 99.0, 0.4});
  const Tensor<double> w0 = from_values<double>({4}, {0.1, 0.2, 0.0, 0.4});
  CHECK(masked.scores(w)[0] == plain.scores(w0)[0]);
}

TEST_CASE("a given equivalent model that is not equivalent fails implementation invariance") {
  const nn::ModelSpec model = test::exact_lenet(6), other = test::exact_lenet(7);
  std::mt19937_64 rng(6);
  const Tensor<double> x = test::uniform({1, 28, 28}, 0, 1, rng), base = zeros<double>({1, 28, 28});
  CheckRequest r = request(Rule::exact);
  r.equivalent = &other;
  r.target.class_index = 2;
  const AxiomCheck c = find(check_axioms(model, x, base, r), "implementation invariance");
  CHECK_FALSE(c.passed);
  CHECK(c.detail.find("the given equivalent model") != std::string::npos);
}
