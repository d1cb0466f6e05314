// The straight-line path g(a) = x' + a (x - x') and the quadrature rules that integrate the
// gradient along it: nodes a_k in [0, 1] and weights w_k that sum to 1 (docs/design.md, "Paths and
// Integrated Gradients"). Integrated Gradients is (x - x') * sum_k w_k dF/dx(g(a_k)).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace ax::attr {

enum class Rule { riemann_left, riemann_right, riemann_middle, riemann_trapezoid, gausslegendre, exact };

// "riemann_left", ...; the names Captum uses.
const char* rule_name(Rule rule);
// Parses a rule name; throws Error naming the valid ones.
Rule parse_rule(const std::string& name);

// The most path points a rule may have (and the cap of IG's adaptive doubling). Gauss-Legendre
// nodes cost O(n) each, so O(n^2) in all: about a second at the cap.
constexpr std::size_t max_steps_cap = std::size_t(1) << 15;

struct Quadrature {
  std::vector<double> alphas;   // nodes a_k in [0, 1], increasing
  std::vector<double> weights;  // w_k, summing to 1
};

// The nodes and weights of a rule with `steps` points, computed in double:
//   riemann_left       a_k = k/n,          w_k = 1/n
//   riemann_right      a_k = (k+1)/n,      w_k = 1/n
//   riemann_middle     a_k = (k+1/2)/n,    w_k = 1/n
//   riemann_trapezoid  a_k = k/(n-1),      w_k = 1/(n-1), halved at both ends (n >= 2)
//   gausslegendre      Gauss-Legendre nodes t_k on [-1, 1] mapped to (t_k+1)/2, weights / 2
// (`exact` has no fixed nodes: it is not a quadrature rule; asking for it throws, and so does
// a step count of 0 or above max_steps_cap.)
Quadrature quadrature(Rule rule, std::size_t steps);

// Points of the straight line from `start` to `end` (`width` values each) at the n fractions
// `alphas`: out[i, j] = start[j] + alphas[i] (end[j] - start[j]). The engine's line and exact IG's
// search both form their points here, so a point rounds the same in each.
template <class T>
void line_points(const T* start, const T* end, std::size_t width, const double* alphas, std::size_t n, T* out) {
  // [points, values]
  for (std::size_t i = 0; i < n; ++i) {
    const T a = T(alphas[i]);
    T* row = out + i * width;
    for (std::size_t j = 0; j < width; ++j) row[j] = start[j] + a * (end[j] - start[j]);
  }
}

}  // namespace ax::attr
