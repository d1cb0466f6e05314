#include "path.hpp"

#include "../autodiff/tensor.hpp"

#include <cmath>

namespace ax::attr {
namespace {

struct RuleName {
  Rule rule;
  const char* name;
};
constexpr RuleName rule_names[] = {{Rule::riemann_left, "riemann_left"},         {Rule::riemann_right, "riemann_right"},
                                   {Rule::riemann_middle, "riemann_middle"},     {Rule::riemann_trapezoid, "riemann_trapezoid"},
                                   {Rule::gausslegendre, "gausslegendre"},       {Rule::exact, "exact"}};

// Gauss-Legendre nodes and weights on [-1, 1] by Newton's method on the Legendre polynomial
// P_n, from the Chebyshev-like first guess cos(pi (i - 1/4) / (n + 1/2)); the recurrence
// (j+1) P_{j+1} = (2j+1) t P_j - j P_{j-1} gives P_n and P_n' at once. Converges to rounding.
void gauss_legendre(std::size_t n, std::vector<double>& nodes, std::vector<double>& weights) {
  const double pi = 3.14159265358979323846;
  nodes.assign(n, 0.0);
  weights.assign(n, 0.0);
  for (std::size_t i = 0; i < (n + 1) / 2; ++i) {
    double t = std::cos(pi * (static_cast<double>(i) + 0.75) / (static_cast<double>(n) + 0.5));
    double derivative = 0;
    for (int iteration = 0; iteration < 100; ++iteration) {
      double p_prev = 1.0, p = t;  // P_0 and P_1
      for (std::size_t j = 1; j < n; ++j) {
        const double p_next = ((2.0 * j + 1.0) * t * p - static_cast<double>(j) * p_prev) / (j + 1.0);
        p_prev = p;
        p = p_next;
      }
      derivative = static_cast<double>(n) * (t * p - p_prev) / (t * t - 1.0);
      const double step = p / derivative;
      t -= step;
      if (std::abs(step) < 1e-16) break;
    }
    const double w = 2.0 / ((1.0 - t * t) * derivative * derivative);
    // nodes come in symmetric pairs: -t and t
    nodes[i] = -t;
    nodes[n - 1 - i] = t;
    weights[i] = weights[n - 1 - i] = w;
  }
}

}  // namespace

const char* rule_name(Rule rule) {
  for (const RuleName& r : rule_names)
    if (r.rule == rule) return r.name;
  return "?";
}

Rule parse_rule(const std::string& name) {
  for (const RuleName& r : rule_names)
    if (name == r.name) return r.rule;
  throw Error("unknown rule '" + name +
              "'; expected riemann_left, riemann_right, riemann_middle, riemann_trapezoid, gausslegendre or exact");
}

Quadrature quadrature(Rule rule, std::size_t steps) {
  if (steps < 1) throw Error("quadrature: steps must be at least 1");
  if (rule == Rule::riemann_trapezoid && steps < 2) throw Error("quadrature: riemann_trapezoid needs at least 2 steps");
  if (rule == Rule::exact) throw Error("quadrature: 'exact' has no fixed nodes");
  Quadrature q;
  const double n = static_cast<double>(steps);
  if (rule == Rule::gausslegendre) {
    gauss_legendre(steps, q.alphas, q.weights);
    for (std::size_t k = 0; k < steps; ++k) {
      q.alphas[k] = (q.alphas[k] + 1.0) / 2.0;
      q.weights[k] /= 2.0;
    }
    return q;
  }
  for (std::size_t k = 0; k < steps; ++k) {
    const double i = static_cast<double>(k);
    switch (rule) {
      case Rule::riemann_left: q.alphas.push_back(i / n); break;
      case Rule::riemann_right: q.alphas.push_back((i + 1) / n); break;
      case Rule::riemann_middle: q.alphas.push_back((i + 0.5) / n); break;
      default: q.alphas.push_back(i / (n - 1)); break;  // trapezoid
    }
    const bool end = k == 0 || k + 1 == steps;
    q.weights.push_back(rule == Rule::riemann_trapezoid ? (end ? 0.5 : 1.0) / (n - 1) : 1.0 / n);
  }
  return q;
}

}  // namespace ax::attr
