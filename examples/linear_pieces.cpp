// The linear pieces of a path: a tiny ReLU network built in code, the straight path from a
// baseline to an input, and every piece exact IG finds along it. Inside a piece every relu keeps
// its state, so F is affine there and its gradient is one constant vector; IG is the sum over
// pieces of (x - x') . gradient * width, with no discretization error.
//
//   build/examples/linear_pieces
#include "attribution/exact.hpp"
#include "attribution/methods.hpp"

#include <cmath>
#include <cstdio>

using namespace ax;

// F(x) = fc2(relu(fc1(x))): 2 inputs, 3 hidden units, 1 output; weights chosen so the path
// crosses a few kinks.
static nn::ModelSpec tiny_network() {
  nn::ModelSpec m;
  m.graph.input = {"x", {2}, std::nullopt};
  m.graph.nodes = {nn::make_node("fc1", "linear", {"x"}), nn::make_node("relu", "relu", {"fc1"}),
                   nn::make_node("fc2", "linear", {"relu"})};
  m.graph.output = "fc2";
  m.tensors["fc1.weight"] = nn::TensorData{"F64", {3, 2}, {1.0, -1.0, -2.0, 1.0, 0.5, 0.5}};
  m.tensors["fc1.bias"] = nn::TensorData{"F64", {3}, {-0.5, 1.0, -0.75}};
  m.tensors["fc2.weight"] = nn::TensorData{"F64", {1, 3}, {1.0, 2.0, -1.5}};
  return m;
}

int main() {
  attr::Engine<double> f(tiny_network(), attr::TargetSpec{});
  const Tensor<double> x = from_values<double>({2}, {2.0, 0.5}), baseline = zeros<double>({2});
  f.resolve_class(x);

  // The breakpoints 0 = b_0 < ... < b_P = 1, then F at each and the gradient inside each piece
  // (at its midpoint: any point of the piece gives the same gradient).
  const std::vector<double> breaks = attr::path_breakpoints(f, x, baseline);
  const std::size_t pieces = breaks.size() - 1;
  Tensor<double> ends = zeros<double>({breaks.size(), 2}), middles = zeros<double>({pieces, 2});
  for (std::size_t k = 0; k < breaks.size(); ++k)
    for (std::size_t i = 0; i < 2; ++i) ends(k, i) = baseline(i) + breaks[k] * (x(i) - baseline(i));
  for (std::size_t k = 0; k < pieces; ++k)
    for (std::size_t i = 0; i < 2; ++i) middles(k, i) = (ends(k, i) + ends(k + 1, i)) / 2;
  std::vector<double> f_ends, f_middles;
  Tensor<double> gradients;
  f.evaluate(ends, f_ends, nullptr);
  f.evaluate(middles, f_middles, &gradients);

  std::printf("path from x' = (0, 0) to x = (2, 0.5): %zu linear pieces\n\n", pieces);
  std::printf("  piece  alpha from..to        F from..to            dF/dx in the piece    IG so far\n");
  double ig[2] = {0, 0};
  for (std::size_t k = 0; k < pieces; ++k) {
    const double width = breaks[k + 1] - breaks[k];
    for (std::size_t i = 0; i < 2; ++i) ig[i] += (x(i) - baseline(i)) * gradients(k, i) * width;
    std::printf("  %5zu  %.4f..%.4f     %+.4f..%+.4f     (%+.3f, %+.3f)     (%+.4f, %+.4f)\n", k, breaks[k],
                breaks[k + 1], f_ends[k], f_ends[k + 1], gradients(k, 0), gradients(k, 1), ig[0], ig[1]);
  }
  std::printf("\nsum of the attributions %.12f\nF(x) - F(x')            %.12f\n", ig[0] + ig[1],
              f_ends.back() - f_ends.front());

  // The library's exact rule computes the same sum.
  attr::IgOptions exact;
  exact.rule = attr::Rule::exact;
  const attr::Attribution<double> a = attr::integrated_gradients(f, x, baseline, exact);
  std::printf("library's exact IG      (%.12f, %.12f), %zu pieces, gap %.1e\n", a.values(0), a.values(1), a.pieces,
              a.delta);
  // Exit status 1 if the hand sum and the library disagree, or completeness fails (ctest runs this).
  const bool agree = std::abs(a.values(0) - ig[0]) < 1e-12 && std::abs(a.values(1) - ig[1]) < 1e-12;
  return agree && std::abs(ig[0] + ig[1] - (f_ends.back() - f_ends.front())) < 1e-12 ? 0 : 1;
}
