// Quadrature rules of the straight-line path: nodes, weights, exactness.
#include "attribution/path.hpp"
#include "autodiff/tensor.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <numeric>

using namespace ax;
using namespace ax::attr;

TEST_CASE("every rule's weights sum to 1 and its nodes lie in [0, 1], increasing") {
  for (Rule rule : {Rule::riemann_left, Rule::riemann_right, Rule::riemann_middle, Rule::riemann_trapezoid, Rule::gausslegendre})
    for (std::size_t n : {2, 3, 7, 50, 64, 200}) {
      CAPTURE(rule_name(rule));
      CAPTURE(n);
      const Quadrature q = quadrature(rule, n);
      CHECK(q.alphas.size() == n);
      CHECK(std::accumulate(q.weights.begin(), q.weights.end(), 0.0) == doctest::Approx(1.0).epsilon(1e-14));
      for (std::size_t k = 0; k < n; ++k) {
        CHECK(q.alphas[k] >= 0.0);
        CHECK(q.alphas[k] <= 1.0);
        if (k) CHECK(q.alphas[k] > q.alphas[k - 1]);
      }
    }
}

TEST_CASE("Riemann and trapezoid nodes and weights, as docs/design.md's table") {
  const Quadrature left = quadrature(Rule::riemann_left, 4), right = quadrature(Rule::riemann_right, 4);
  const Quadrature middle = quadrature(Rule::riemann_middle, 4), trapezoid = quadrature(Rule::riemann_trapezoid, 5);
  CHECK(left.alphas == std::vector<double>{0.0, 0.25, 0.5, 0.75});
  CHECK(right.alphas == std::vector<double>{0.25, 0.5, 0.75, 1.0});
  CHECK(middle.alphas == std::vector<double>{0.125, 0.375, 0.625, 0.875});
  CHECK(left.weights == std::vector<double>(4, 0.25));
  CHECK(trapezoid.alphas == std::vector<double>{0.0, 0.25, 0.5, 0.75, 1.0});
  CHECK(trapezoid.weights == std::vector<double>{0.125, 0.25, 0.25, 0.25, 0.125});
}

TEST_CASE("Gauss-Legendre: closed-form nodes for n = 3, exact for polynomials of degree 2n - 1") {
  const Quadrature q = quadrature(Rule::gausslegendre, 3);
  const double r = std::sqrt(0.6) / 2;
  CHECK(q.alphas[0] == doctest::Approx(0.5 - r).epsilon(1e-15));
  CHECK(q.alphas[1] == doctest::Approx(0.5).epsilon(1e-15));
  CHECK(q.alphas[2] == doctest::Approx(0.5 + r).epsilon(1e-15));
  CHECK(q.weights[0] == doctest::Approx(5.0 / 18).epsilon(1e-15));
  CHECK(q.weights[1] == doctest::Approx(8.0 / 18).epsilon(1e-15));
  for (std::size_t n : {1, 2, 5, 10, 50}) {
    const Quadrature g = quadrature(Rule::gausslegendre, n);
    for (std::size_t degree = 0; degree < 2 * n; ++degree) {
      double integral = 0;  // of a^degree over [0, 1]: 1 / (degree + 1)
      for (std::size_t k = 0; k < n; ++k) integral += g.weights[k] * std::pow(g.alphas[k], double(degree));
      CAPTURE(n);
      CAPTURE(degree);
      CHECK(integral == doctest::Approx(1.0 / double(degree + 1)).epsilon(1e-13));
    }
  }
}

TEST_CASE("rule names parse, and bad requests are refused") {
  for (Rule rule : {Rule::riemann_left, Rule::riemann_right, Rule::riemann_middle, Rule::riemann_trapezoid, Rule::gausslegendre, Rule::exact})
    CHECK(parse_rule(rule_name(rule)) == rule);
  CHECK_THROWS_WITH_AS(parse_rule("simpson"), doctest::Contains("unknown rule 'simpson'; expected riemann_left"), Error);
  CHECK_THROWS_AS(quadrature(Rule::riemann_trapezoid, 1), Error);
  CHECK_THROWS_AS(quadrature(Rule::gausslegendre, 0), Error);
  CHECK_THROWS_AS(quadrature(Rule::exact, 10), Error);
}
