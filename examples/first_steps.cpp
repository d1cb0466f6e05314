// First steps with axiomatic's tape: record an expression, read its value, get every
// derivative at once with backward (reverse mode), one directional derivative with tangent
// (forward mode), replay it with a new input, and meet the example that motivates
// Integrated Gradients.
//
//   build/examples/first_steps
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
  return 0;
}
