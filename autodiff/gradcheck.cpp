#include "gradcheck.hpp"

#include "ops/elementwise.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>

namespace ax {
namespace {

double dot(const Tensor<double>& a, const Tensor<double>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a.data()[i] * b.data()[i];
  return s;
}

double relative(double analytic, double numeric) {
  return std::abs(analytic - numeric) / std::max(1.0, std::abs(numeric));
}

Tensor<double> random_like(const Shape& shape, std::mt19937_64& rng) {
  std::normal_distribution<double> normal(0.0, 1.0);
  Tensor<double> t(shape);
  for (double& v : t) v = normal(rng);
  return t;
}

}  // namespace

std::string GradcheckReport::summary() const {
  char line[160];
  std::snprintf(line, sizeof line, "backward %.2e, tangent %.2e, dot %.2e over %zu elements", backward_error,
                tangent_error, dot_error, checked);
  return line;
}

GradcheckReport gradcheck(const GradcheckFunction& f, const std::vector<Tensor<double>>& inputs,
                          const GradcheckOptions& options) {
  // Each input reaches f through a node that passes it on (x * 1), so that the ops under test meet
  // their inputs' gradients unset, as inside a network; poisoned with NaN, an element that a
  // backward leaves unwritten shows.
  Tape<double> tape;
  tape.set_poison_unset_gradients(true);
  std::vector<Var<double>> leaves, vars;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    leaves.push_back(tape.input(inputs[i], true, "x" + std::to_string(i)));
    vars.push_back(scale(leaves.back(), 1.0));
  }
  const Var<double> out = f(tape, vars);

  std::mt19937_64 rng(options.seed);
  const Tensor<double> u = random_like(tape.value(out).shape(), rng);
  std::vector<Tensor<double>> v;
  for (const Tensor<double>& x : inputs) v.push_back(random_like(x.shape(), rng));

  // Analytic J^T u and J v.
  tape.zero_grad();
  tape.backward(out, u);
  std::vector<Tensor<double>> jtu;
  for (const Var<double>& x : leaves) jtu.push_back(tape.grad(x));
  for (std::size_t i = 0; i < vars.size(); ++i) tape.set_direction(leaves[i], v[i]);
  tape.tangent();
  const Tensor<double> jv = tape.tangent(out);

  const double h = options.step;
  auto weighted_output = [&] {
    tape.forward();
    return dot(u, tape.value(out));
  };

  GradcheckReport report;
  // backward: d<u, f>/dx_ij by central differences, one element at a time
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    Tensor<double> x = inputs[i];
    for (std::size_t j = 0; j < x.size(); ++j) {
      const double saved = x.data()[j];
      x.data()[j] = saved + h;
      tape.set_value(leaves[i], x);
      const double up = weighted_output();
      x.data()[j] = saved - h;
      tape.set_value(leaves[i], x);
      const double down = weighted_output();
      x.data()[j] = saved;
      tape.set_value(leaves[i], x);
      report.backward_error = std::max(report.backward_error, relative(jtu[i].data()[j], (up - down) / (2 * h)));
      ++report.checked;
    }
  }

  // tangent: (f(x + h v) - f(x - h v)) / 2h
  auto shifted_output = [&](double t) {
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      Tensor<double> x = inputs[i];
      for (std::size_t j = 0; j < x.size(); ++j) x.data()[j] += t * v[i].data()[j];
      tape.set_value(leaves[i], x);
    }
    tape.forward();
    return Tensor<double>(tape.value(out));
  };
  const Tensor<double> up = shifted_output(h);
  const Tensor<double> down = shifted_output(-h);
  for (std::size_t k = 0; k < jv.size(); ++k)
    report.tangent_error = std::max(report.tangent_error, relative(jv.data()[k], (up.data()[k] - down.data()[k]) / (2 * h)));

  double vjtu = 0;
  for (std::size_t i = 0; i < inputs.size(); ++i) vjtu += dot(v[i], jtu[i]);
  const double jvu = dot(jv, u);
  report.dot_error = relative(vjtu, jvu);
  return report;
}

}  // namespace ax
