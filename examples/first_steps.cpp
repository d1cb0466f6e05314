// First steps with axiomatic's tape: record an expression, read its value, get every
// derivative at once with backward (reverse mode), one directional derivative with tangent
// (forward mode), replay it with a new input, meet the example that motivates Integrated
// Gradients, compute IG by hand on the tape, and then exactly with the library.
//
//   build/examples/first_steps
#include "attribution/exact.hpp"
#include "attribution/methods.hpp"
#include "autodiff/ops.hpp"

#include <cmath>
#include <cstdio>

using namespace ax;

// A 1 x 1 tensor: a batch of one sample with one feature.
static Tensor<double> scalar(double v) { return full<double>({1, 1}, v); }

int main() {
  // 1. Record f(a, b, c) = tanh(a * b + c) * a. Every op appends a node and computes its value.
  Tape<double> tape;
  Var<double> a = tape.input(scalar(0.5), true, "a");
  Var<double> b = tape.input(scalar(-1.5), true, "b");
  Var<double> c = tape.input(scalar(0.25), true, "c");
  Var<double> f = tanh(a * b + c) * a;
  std::printf("f(a=0.5, b=-1.5, c=0.25) = %.6f   (%zu nodes on the tape)\n", tape.value(f)(0, 0), tape.size());

  // 2. Backward: one pass from f down gives df/da, df/db and df/dc together.
  tape.backward(f);
  const double da = tape.grad(a)(0, 0), db = tape.grad(b)(0, 0), dc = tape.grad(c)(0, 0);
  std::printf("backward: df/da = %.6f, df/db = %.6f, df/dc = %.6f\n", da, db, dc);

  // By hand: with u = a b + c, df/da = tanh(u) + a b (1 - tanh(u)^2), df/db = a^2 (1 - tanh(u)^2).
  const double u = 0.5 * -1.5 + 0.25, s = 1 - std::tanh(u) * std::tanh(u);
  std::printf("by hand:  df/da = %.6f, df/db = %.6f, df/dc = %.6f\n", std::tanh(u) + 0.5 * -1.5 * s, 0.25 * s, 0.5 * s);

  // 3. Tangent: push the direction (1, 1, 0) forwards; f's tangent is df/da + df/db.
  tape.set_direction(a, scalar(1));
  tape.set_direction(b, scalar(1));
  tape.tangent();
  std::printf("tangent along (1, 1, 0): %.6f   (df/da + df/db = %.6f)\n", tape.tangent(f)(0, 0), da + db);

  // 4. Finite differences agree: (f(a + h) - f(a - h)) / 2h.
  const double h = 1e-6;
  tape.set_value(a, scalar(0.5 + h));
  tape.forward();
  const double up = tape.value(f)(0, 0);
  tape.set_value(a, scalar(0.5 - h));
  tape.forward();
  const double down = tape.value(f)(0, 0);
  std::printf("central difference df/da = %.6f\n", (up - down) / (2 * h));

  // 5. The sensitivity example (Sundararajan et al., 2017): F(x) = 1 - relu(1 - x).
  //    F(0) = 0 and F(2) = 1, yet the gradient at x = 2 is 0: a gradient gives the one feature
  //    that changed the output no credit at all. Integrated Gradients gives it exactly 1.
  Tape<double> t;
  Var<double> x = t.input(scalar(2.0), true, "x");
  Var<double> F = 1.0 - relu(1.0 - x);
  t.backward(F);
  std::printf("\nF(x) = 1 - relu(1 - x):  F(2) = %.1f, dF/dx(2) = %.1f", t.value(F)(0, 0), t.grad(x)(0, 0));
  t.set_value(x, scalar(0.0));
  t.forward();
  std::printf(", F(0) = %.1f\n", t.value(F)(0, 0));

  // 6. IG by hand: IG = (x - x') * the mean of dF/dx along the straight path from x' = 0 to x = 2.
  //    The leading dimension is the batch, so all n path points are one replay and one backward.
  for (std::size_t n : {7, 999}) {
    Tensor<double> path = zeros<double>({n, 1});
    for (std::size_t k = 0; k < n; ++k) path(k, 0) = 0.0 + (double(k) + 0.5) / double(n) * (2.0 - 0.0);  // midpoints
    t.set_value(x, path);
    t.forward();
    t.zero_grad();
    t.backward(F);  // a seed of ones: each point's own dF/dx
    double mean_gradient = 0;
    for (std::size_t k = 0; k < n; ++k) mean_gradient += t.grad(x)(k, 0) / double(n);
    std::printf("IG by a Riemann sum of %4zu points: %.6f\n", n, (2.0 - 0.0) * mean_gradient);
  }
  // The integrand is a step (1 below x = 1, 0 above), so every quadrature is off unless its
  // points happen to split the step evenly. Exact IG finds the step instead.

  // 7. Exact IG with the library: the same F as a model (two linear layers around a relu). The
  //    path has two linear pieces, split where the relu switches; one gradient per piece.
  nn::ModelSpec model;
  model.graph.input = {"x", {1}, std::nullopt};
  model.graph.nodes = {nn::make_node("one_minus_x", "linear", {"x"}), nn::make_node("relu", "relu", {"one_minus_x"}),
                       nn::make_node("F", "linear", {"relu"})};
  model.graph.output = "F";
  for (const char* layer : {"one_minus_x", "F"}) {
    model.tensors[std::string(layer) + ".weight"] = nn::TensorData{"F64", {1, 1}, {-1.0}};
    model.tensors[std::string(layer) + ".bias"] = nn::TensorData{"F64", {1}, {1.0}};
  }
  attr::Engine<double> target(model, attr::TargetSpec{});
  const Tensor<double> input = full<double>({1}, 2.0), baseline = zeros<double>({1});
  target.resolve_class(input);
  const std::vector<double> breaks = attr::path_breakpoints(target, input, baseline);
  std::printf("exact IG's breakpoints along the path:");
  for (double b : breaks) std::printf(" %g", b);
  attr::IgOptions exact;
  exact.rule = attr::Rule::exact;
  const attr::Attribution<double> ig = attr::integrated_gradients(target, input, baseline, exact);
  std::printf("\nexact IG: %.6f in %zu pieces, completeness gap %.1e\n", ig.values(0), ig.pieces, ig.delta);
  return std::abs(ig.values(0) - 1.0) < 1e-12 && ig.pieces == 2 ? 0 : 1;  // ctest runs this example
}
