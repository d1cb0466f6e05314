// Quadrature rules of the straight-line path: nodes, weights, exactness.
#include "attribution/path.hpp"
#include "autodiff/tensor.hpp"

#include <doctest/doctest.h>

#include <chrono>
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

namespace {

// The nodes and weights on [0, 1] as the first version computed them: Newton from
// cos(pi (i + 3/4) / (n + 1/2)) until a step below 1e-16 (or 100 steps); kept as the reference.
Quadrature reference_gauss_legendre(std::size_t n) {
  const double pi = 3.14159265358979323846;
  Quadrature q;
  q.alphas.assign(n, 0.0);
  q.weights.assign(n, 0.0);
  for (std::size_t i = 0; i < (n + 1) / 2; ++i) {
    double t = std::cos(pi * (double(i) + 0.75) / (double(n) + 0.5)), derivative = 0;
    for (int iteration = 0; iteration < 100; ++iteration) {
      double p_prev = 1.0, p = t;
      for (std::size_t j = 1; j < n; ++j) {
        const double p_next = ((2.0 * double(j) + 1.0) * t * p - double(j) * p_prev) / (double(j) + 1.0);
        p_prev = p;
        p = p_next;
      }
      derivative = double(n) * (t * p - p_prev) / (t * t - 1.0);
      const double step = p / derivative;
      t -= step;
      if (std::abs(step) < 1e-16) break;
    }
    const double w = 2.0 / ((1.0 - t * t) * derivative * derivative);
    q.alphas[i] = (1.0 - t) / 2;
    q.alphas[n - 1 - i] = (1.0 + t) / 2;
    q.weights[i] = q.weights[n - 1 - i] = w / 2;
  }
  return q;
}

}  // namespace

TEST_CASE("Gauss-Legendre: the same nodes and weights as the first version for small n") {
  for (std::size_t n = 1; n <= 40; ++n) {
    CAPTURE(n);
    const Quadrature q = quadrature(Rule::gausslegendre, n), r = reference_gauss_legendre(n);
    for (std::size_t k = 0; k < n; ++k) {
      CHECK(std::abs(q.alphas[k] - r.alphas[k]) <= 4e-16);
      CHECK(std::abs(q.weights[k] - r.weights[k]) <= 1e-12 * r.weights[k]);
    }
  }
}

TEST_CASE("Gauss-Legendre for large n: symmetric, positive, exact on polynomials, at the step cap in seconds") {
  for (std::size_t n : {1000, 4097, 20000, static_cast<int>(max_steps_cap)}) {
    CAPTURE(n);
    const auto start = std::chrono::steady_clock::now();
    const Quadrature q = quadrature(Rule::gausslegendre, n);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (n == max_steps_cap) MESSAGE("Gauss-Legendre nodes at the cap, n = " << n << ": " << seconds << " s");
    double sum = 0;
    for (std::size_t k = 0; k < n; ++k) {
      sum += q.weights[k];
      REQUIRE(q.weights[k] > 0);
      REQUIRE(q.alphas[k] > 0);
      REQUIRE(q.alphas[k] < 1);
      if (k) REQUIRE(q.alphas[k] > q.alphas[k - 1]);
      REQUIRE(std::abs(q.alphas[k] + q.alphas[n - 1 - k] - 1.0) <= 1e-15);
      REQUIRE(q.weights[k] == q.weights[n - 1 - k]);
    }
    CHECK(sum == doctest::Approx(1.0).epsilon(1e-12));
    // exact for a^d with d < 2n: a few degrees, low and high
    for (std::size_t degree : {1, 7, 64, 301}) {
      double integral = 0;
      for (std::size_t k = 0; k < n; ++k) integral += q.weights[k] * std::pow(q.alphas[k], double(degree));
      CAPTURE(degree);
      CHECK(integral == doctest::Approx(1.0 / double(degree + 1)).epsilon(1e-11));
    }
    // and converges on a smooth non-polynomial: the integral of cos(40 a) over [0, 1]
    double integral = 0;
    for (std::size_t k = 0; k < n; ++k) integral += q.weights[k] * std::cos(40 * q.alphas[k]);
    CHECK(integral == doctest::Approx(std::sin(40.0) / 40).epsilon(1e-11));
    // the weights follow the asymptotic density: w_k ~ pi sqrt(a (1 - a)) / n near the middle
    const std::size_t mid = n / 2;
    const double a = q.alphas[mid];
    CHECK(q.weights[mid] == doctest::Approx(3.14159265358979323846 * std::sqrt(a * (1 - a)) / double(n)).epsilon(1e-3));
  }
}

TEST_CASE("rule names parse, and bad requests are refused") {
  for (Rule rule : {Rule::riemann_left, Rule::riemann_right, Rule::riemann_middle, Rule::riemann_trapezoid, Rule::gausslegendre, Rule::exact})
    CHECK(parse_rule(rule_name(rule)) == rule);
  CHECK_THROWS_WITH_AS(parse_rule("simpson"), doctest::Contains("unknown rule 'simpson'; expected riemann_left"), Error);
  CHECK_THROWS_AS(quadrature(Rule::riemann_trapezoid, 1), Error);
  CHECK_THROWS_AS(quadrature(Rule::gausslegendre, 0), Error);
  CHECK_THROWS_AS(quadrature(Rule::exact, 10), Error);
  for (Rule rule : {Rule::riemann_left, Rule::gausslegendre})
    CHECK_THROWS_WITH_AS(quadrature(rule, max_steps_cap + 1), doctest::Contains("more than the cap of 32768"), Error);
}
