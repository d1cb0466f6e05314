#include "exact.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace ax::attr {
namespace {

// The node the target's scores are computed from before any softmax the target adds.
template <class T>
int logits_node(TargetFunction<T>& f) {
  const Tape<T>& tape = f.tape();
  int id = f.score_var().id;
  if (f.target().output != Output::logit) id = tape.node(id).inputs[0];
  return id;
}

// Whether an op stays affine along the path when the inputs marked in `varies` move with it.
bool affine_along_path(Linearity linearity, const std::vector<bool>& varies) {
  switch (linearity) {
    case Linearity::linear: return true;
    case Linearity::multilinear: return std::count(varies.begin(), varies.end(), true) <= 1;
    case Linearity::linear_in_first: return std::find(varies.begin() + 1, varies.end(), true) == varies.end();
    case Linearity::piecewise_linear:
    case Linearity::smooth: return false;
  }
  return false;
}

// Every op the target depends on must be piecewise linear in the input, as its descriptor says:
// returns the kink nodes (ops whose linearity is piecewise_linear) in tape order, or throws
// naming the first node that is not.
template <class T>
std::vector<int> kink_nodes(TargetFunction<T>& f) {
  const Tape<T>& tape = f.tape();
  const int top = logits_node(f);
  std::vector<char> needed(static_cast<std::size_t>(top) + 1, 0);
  needed[static_cast<std::size_t>(top)] = 1;
  std::vector<int> kinks;
  for (int id = top; id >= 0; --id) {
    const Node<T>& n = tape.node(id);
    if (!needed[static_cast<std::size_t>(id)] || n.kind != NodeKind::op || !n.requires_grad) continue;
    std::vector<bool> varies;  // which inputs move along the path
    for (int in : n.inputs) varies.push_back(tape.node(in).requires_grad);
    const bool kink = n.op->linearity == Linearity::piecewise_linear;
    if (!kink && !affine_along_path(n.op->linearity, varies))
      throw Error("exact IG needs a network that is piecewise linear up to the target, but " + tape.describe(id) +
                  " is not; use a quadrature rule (--rule gausslegendre)");
    if (kink) kinks.push_back(id);
    for (int in : n.inputs) needed[static_cast<std::size_t>(in)] = 1;
  }
  std::reverse(kinks.begin(), kinks.end());
  return kinks;
}

// The switches of kink node `id` between every pair of consecutive breakpoints: the node's input
// at every breakpoint, in groups of the engine's chunk size; an interval's two ends may fall in
// two groups, so the last row of each group is kept.
template <class T>
std::vector<double> node_switches(TargetFunction<T>& f, int id, const std::vector<double>& breaks, const Tensor<T>& x,
                                  const Tensor<T>& baseline) {
  Tape<T>& tape = f.tape();
  const Node<T>& node = tape.node(id);
  const Var<T> input{&tape, node.inputs[0]};
  const std::size_t size = x.size();
  const std::size_t group = std::max<std::size_t>(f.chunk(), 1);
  std::vector<double> roots, local;
  Tensor<T> points, previous;
  for (std::size_t begin = 0; begin < breaks.size(); begin += group) {
    const std::size_t n = std::min(group, breaks.size() - begin);
    Shape shape{n};
    for (std::size_t d : x.shape()) shape.push_back(d);
    points.resize(shape);
    for (std::size_t i = 0; i < n; ++i) {
      const T a = T(breaks[begin + i]);
      T* row = points.data() + i * size;
      for (std::size_t j = 0; j < size; ++j) row[j] = baseline.data()[j] + a * (x.data()[j] - baseline.data()[j]);
    }
    f.forward_points(points.data(), n, input);
    const Tensor<T>& z = tape.value(input);  // [n, the node's input per sample]
    const std::size_t width = z.size() / n;
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t k = begin + i;  // the interval [breaks[k - 1], breaks[k]]
      if (k == 0) continue;
      const T* z0 = i == 0 ? previous.data() : z.data() + (i - 1) * width;
      const T* z1 = z.data() + i * width;
      local.clear();
      node.op->switches(node.attrs, z.shape(), node.value.shape(), z0, z1, local);
      for (double s : local) roots.push_back(breaks[k - 1] + s * (breaks[k] - breaks[k - 1]));
    }
    previous.resize(Shape{width});
    std::copy(z.data() + (n - 1) * width, z.data() + n * width, previous.data());
  }
  return roots;
}

}  // namespace

template <class T>
std::vector<double> path_breakpoints(TargetFunction<T>& f, const Tensor<T>& x, const Tensor<T>& baseline,
                                     const ExactOptions& options) {
  const std::vector<int> kinks = kink_nodes(f);
  // switches closer than this to a breakpoint are rounding, not a new piece
  const double min_gap = 8 * std::numeric_limits<T>::epsilon();
  std::vector<double> breaks{0.0, 1.0};
  for (int id : kinks) {
    std::vector<double> roots = node_switches(f, id, breaks, x, baseline);
    roots.insert(roots.end(), breaks.begin(), breaks.end());
    std::sort(roots.begin(), roots.end());
    breaks.clear();
    for (double r : roots) {
      if (r < 0 || r > 1) continue;
      if (!breaks.empty() && r - breaks.back() <= min_gap) {
        if (r == 1.0) breaks.back() = 1.0;  // the ends stay exactly 0 and 1
        continue;
      }
      breaks.push_back(r);
    }
    if (breaks.size() - 1 > options.max_pieces)
      throw Error("exact IG: more than " + std::to_string(options.max_pieces) + " linear pieces along the path (at " +
                  f.tape().describe(id) + "); raise the cap (--max-pieces) or use a quadrature rule");
  }
  return breaks;
}

template <class T>
Quadrature exact_quadrature(TargetFunction<T>& f, const Tensor<T>& x, const Tensor<T>& baseline,
                            const ExactOptions& options, std::size_t& pieces) {
  const std::vector<double> breaks = path_breakpoints(f, x, baseline, options);
  pieces = breaks.size() - 1;
  Quadrature q;
  const bool smooth_on_top = f.target().output != Output::logit;
  const Quadrature inner = smooth_on_top ? quadrature(Rule::gausslegendre, std::max<std::size_t>(options.gl_per_piece, 1))
                                         : Quadrature{{0.5}, {1.0}};
  for (std::size_t p = 0; p < pieces; ++p) {
    const double lo = breaks[p], width = breaks[p + 1] - breaks[p];
    for (std::size_t k = 0; k < inner.alphas.size(); ++k) {
      q.alphas.push_back(lo + width * inner.alphas[k]);
      q.weights.push_back(width * inner.weights[k]);
    }
  }
  return q;
}

template std::vector<double> path_breakpoints(TargetFunction<float>&, const Tensor<float>&, const Tensor<float>&, const ExactOptions&);
template std::vector<double> path_breakpoints(TargetFunction<double>&, const Tensor<double>&, const Tensor<double>&, const ExactOptions&);
template Quadrature exact_quadrature(TargetFunction<float>&, const Tensor<float>&, const Tensor<float>&, const ExactOptions&, std::size_t&);
template Quadrature exact_quadrature(TargetFunction<double>&, const Tensor<double>&, const Tensor<double>&, const ExactOptions&, std::size_t&);

}  // namespace ax::attr
