#include "path.hpp"

#include "../autodiff/tensor.hpp"

#include <algorithm>
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

// Gauss-Legendre nodes and weights on [-1, 1]: each root of P_n by Newton's method on the
// three-term recurrence P_{j+1} = a_j t P_j - b_j P_{j-1}, a_j = (2j+1)/(j+1), b_j = j/(j+1),
// which gives P_n and P_n' = n (t P_n - P_{n-1}) / (t^2 - 1) in O(n) for one point. The first
// guess is Tricomi's asymptotic formula, close enough that two or three steps reach rounding; a
// node stops at a step below 1e-15 (at most 8 steps), and the derivative at the root gives its
// weight 2 / ((1 - t^2) P_n'(t)^2). O(n) per node, O(n^2) in all; the nodes come in symmetric
// pairs, and `lanes` of them run through the recurrence side by side (independent chains the
// CPU overlaps; each node's arithmetic is its own, so the result does not depend on the grouping).
void gauss_legendre(std::size_t n, std::vector<double>& nodes, std::vector<double>& weights) {
  const double pi = 3.14159265358979323846;
  const double nd = static_cast<double>(n);
  std::vector<double> a(n), b(n);
  for (std::size_t j = 1; j < n; ++j) {
    a[j] = (2.0 * double(j) + 1.0) / (double(j) + 1.0);
    b[j] = double(j) / (double(j) + 1.0);
  }
  nodes.assign(n, 0.0);
  weights.assign(n, 0.0);
  constexpr std::size_t lanes = 8;
  const std::size_t half = (n + 1) / 2;
  for (std::size_t first = 0; first < half; first += lanes) {
    const std::size_t count = std::min(lanes, half - first);
    double t[lanes], p[lanes], p_prev[lanes], derivative[lanes];
    bool done[lanes];
    for (std::size_t l = 0; l < lanes; ++l) {
      const double i = double(first + std::min(l, count - 1));  // spare lanes repeat the last node
      t[l] = (1.0 - (nd - 1.0) / (8.0 * nd * nd * nd)) * std::cos(pi * (4.0 * i + 3.0) / (4.0 * nd + 2.0));
      done[l] = l >= count;
    }
    // P_n(t) and P_n'(t) at every lane's t: [lanes] chains of n steps
    const auto evaluate = [&] {
      for (std::size_t l = 0; l < lanes; ++l) {
        p_prev[l] = 1.0;
        p[l] = t[l];
      }
      for (std::size_t j = 1; j < n; ++j)
        for (std::size_t l = 0; l < lanes; ++l) {
          const double next = a[j] * t[l] * p[l] - b[j] * p_prev[l];
          p_prev[l] = p[l];
          p[l] = next;
        }
      for (std::size_t l = 0; l < lanes; ++l) derivative[l] = nd * (t[l] * p[l] - p_prev[l]) / (t[l] * t[l] - 1.0);
    };
    for (int iteration = 0; iteration < 8 && !std::all_of(done, done + lanes, [](bool d) { return d; }); ++iteration) {
      evaluate();
      for (std::size_t l = 0; l < lanes; ++l) {
        if (done[l]) continue;
        const double step = p[l] / derivative[l];
        t[l] -= step;
        done[l] = std::abs(step) <= 1e-15;  // within a few units in the last place of t
      }
    }
    if (n % 2 == 1 && first + count == half) t[count - 1] = 0.0;  // the middle root of an odd P_n is 0 exactly
    evaluate();
    for (std::size_t l = 0; l < count; ++l) {
      const std::size_t i = first + l;
      // nodes come in symmetric pairs: -t and t
      nodes[i] = -t[l];
      nodes[n - 1 - i] = t[l];
      weights[i] = weights[n - 1 - i] = 2.0 / ((1.0 - t[l] * t[l]) * derivative[l] * derivative[l]);
    }
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
  if (steps > max_steps_cap)
    throw Error("quadrature: " + std::to_string(steps) + " steps is more than the cap of " + std::to_string(max_steps_cap));
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
