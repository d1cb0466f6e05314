#include "exact.hpp"

#include "../autodiff/kernels/pool.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace ax::attr {
namespace {

bool is(const char* a, const char* b) { return std::strcmp(a, b) == 0; }

// The node the target's scores are computed from before any softmax the target adds.
template <class T>
int logits_node(TargetFunction<T>& f) {
  const Tape<T>& tape = f.tape();
  int id = f.score_var().id;
  if (f.target().output != Output::logit) id = tape.node(id).inputs[0];
  return id;
}

// Every op the target depends on must be piecewise linear in the input: returns the kink nodes
// (relu, leaky_relu, maxpool2d) in tape order, or throws naming the first node that is not.
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
    const char* op = n.op->name;
    const auto depends = [&](int i) { return tape.node(n.inputs[static_cast<std::size_t>(i)]).requires_grad; };
    const bool linear = is(op, "conv2d") || is(op, "linear") || is(op, "matmul") || is(op, "batchnorm2d") ||
                        is(op, "normalize") || is(op, "avgpool2d") || is(op, "adaptive_avgpool2d") || is(op, "add") ||
                        is(op, "sub") || is(op, "reshape") || is(op, "concat") || is(op, "affine") || is(op, "sum") ||
                        is(op, "mean") ||
                        // a product is linear in the path when only one factor depends on it
                        (is(op, "mul") && !(depends(0) && depends(1))) || (is(op, "div") && !depends(1));
    const bool kink = is(op, "relu") || is(op, "leaky_relu") || is(op, "maxpool2d");
    if (!linear && !kink)
      throw NotPiecewiseLinear("exact IG needs a network that is piecewise linear up to the target, but " + tape.describe(id) +
                  " is not; use a quadrature rule (--rule gausslegendre)");
    if (kink) kinks.push_back(id);
    for (int in : n.inputs) needed[static_cast<std::size_t>(in)] = 1;
  }
  std::reverse(kinks.begin(), kinks.end());
  return kinks;
}

// Where, strictly inside (0, 1), the affine function with end values z0, z1 changes sign.
template <class T>
void sign_change(T z0, T z1, std::vector<double>& roots) {
  if ((z0 < 0 && z1 > 0) || (z0 > 0 && z1 < 0)) roots.push_back(double(z0) / (double(z0) - double(z1)));
}

// The switches of a pool window's maximum strictly inside (0, 1): the upper envelope of the lines
// v0[m] + s (v1[m] - v0[m]), walked from s = 0. Ties at a switch go to the steeper line (it is
// the maximum just after); equal lines are one line.
void envelope_switches(const std::vector<double>& v0, const std::vector<double>& v1, std::vector<double>& roots) {
  const std::size_t k = v0.size();
  std::size_t current = 0;
  for (std::size_t m = 1; m < k; ++m) {
    const double slope_m = v1[m] - v0[m], slope_c = v1[current] - v0[current];
    if (v0[m] > v0[current] || (v0[m] == v0[current] && slope_m > slope_c)) current = m;
  }
  double s = 0;
  for (std::size_t guard = 0; guard < k; ++guard) {  // each line leads at most once
    const double slope_c = v1[current] - v0[current];
    double next = 1;
    std::size_t winner = current;
    for (std::size_t m = 0; m < k; ++m) {
      const double slope_m = v1[m] - v0[m];
      if (slope_m <= slope_c) continue;  // never overtakes the current maximum going forwards
      const double cross = (v0[current] - v0[m]) / (slope_m - slope_c);
      if (cross > s && (cross < next || (cross == next && slope_m > v1[winner] - v0[winner]))) {
        next = cross;
        winner = m;
      }
    }
    if (winner == current || next >= 1) return;
    roots.push_back(next);
    s = next;
    current = winner;
  }
}

// The windows of a max-pool node as its kernel computes them: for each output value, the
// positions of its window in the node's input (one sample).
template <class T>
std::vector<std::vector<std::size_t>> pool_windows(const Tape<T>& tape, int id) {
  const Node<T>& node = tape.node(id);
  const Window2d& w = node.attrs.window;
  const Shape& in = tape.node(node.inputs[0]).value.shape();
  const Shape& out = node.value.shape();
  kernels::PoolAxis ah, aw;
  ah.in = in[2], ah.out = out[2], ah.kernel = std::size_t(w.kernel.h), ah.stride = std::size_t(w.stride.h);
  ah.pad = std::size_t(w.padding.h);
  aw.in = in[3], aw.out = out[3], aw.kernel = std::size_t(w.kernel.w), aw.stride = std::size_t(w.stride.w);
  aw.pad = std::size_t(w.padding.w);
  std::vector<std::vector<std::size_t>> windows;
  // [channels, out h, out w] windows, each [span h, span w]
  for (std::size_t c = 0; c < in[1]; ++c)
    for (std::size_t oy = 0; oy < ah.out; ++oy)
      for (std::size_t ox = 0; ox < aw.out; ++ox) {
        const auto sy = ah.span(oy), sx = aw.span(ox);
        std::vector<std::size_t>& window = windows.emplace_back();
        for (std::size_t y = sy.begin; y < sy.end; ++y)
          for (std::size_t x = sx.begin; x < sx.end; ++x) window.push_back((c * in[2] + y) * in[3] + x);
      }
  return windows;
}

// The switches of kink node `id` between every pair of consecutive breakpoints: the node's input
// at every breakpoint, in groups of the engine's chunk size; an interval's two ends may fall in
// two groups, so the last row of each group is kept.
template <class T>
std::vector<double> node_switches(TargetFunction<T>& f, int id, const std::vector<double>& breaks, const Tensor<T>& x,
                                  const Tensor<T>& baseline) {
  Tape<T>& tape = f.tape();
  const Var<T> input{&tape, tape.node(id).inputs[0]};
  const bool pool = is(tape.node(id).op->name, "maxpool2d");
  const std::vector<std::vector<std::size_t>> windows = pool ? pool_windows(tape, id) : std::vector<std::vector<std::size_t>>{};
  const std::size_t size = x.size();
  const std::size_t group = std::max<std::size_t>(f.chunk(), 1);
  std::vector<double> roots, local, v0, v1;
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
      f.check_deadline();
      const std::size_t k = begin + i;  // the interval [breaks[k - 1], breaks[k]]
      if (k == 0) continue;
      const T* z0 = i == 0 ? previous.data() : z.data() + (i - 1) * width;
      const T* z1 = z.data() + i * width;
      local.clear();
      if (!pool) {
        for (std::size_t j = 0; j < width; ++j) sign_change(z0[j], z1[j], local);
      } else {
        for (const std::vector<std::size_t>& window : windows) {
          v0.clear();
          v1.clear();
          for (std::size_t at : window) {
            v0.push_back(double(z0[at]));
            v1.push_back(double(z1[at]));
          }
          envelope_switches(v0, v1, local);
        }
      }
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
