// Uses the installed headers and library: d/dx sum(relu(x) * x) = 2x for x > 0, 0 otherwise.
#include <axiomatic/autodiff/ops.hpp>

#include <cstdio>

int main() {
  ax::Tape<double> tape;
  auto x = tape.input(ax::from_values<double>({1, 3}, {-1.0, 0.5, 2.0}));
  tape.backward(ax::sum(ax::relu(x) * x));
  const auto& g = tape.grad(x);
  const bool ok = g(0, 0) == 0.0 && g(0, 1) == 1.0 && g(0, 2) == 4.0;
  std::printf("consumer: gradient %g %g %g: %s\n", g(0, 0), g(0, 1), g(0, 2), ok ? "ok" : "WRONG");
  return ok ? 0 : 1;
}
