#include "exact.hpp"

#include "../autodiff/kernels/threads.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace ax::attr {
namespace {

// The node the target's scores are computed from before any softmax the target adds.
template <class T>
int logits_node(Engine<T>& f) {
  const Tape<T>& tape = f.tape();
  int id = f.score_var().id;
  if (f.target().output != Output::logit) id = tape.node(id).inputs[0];
  return id;
}

// Every op the target depends on must be piecewise linear in the input, as its descriptor says:
// returns the kink nodes (ops whose linearity is piecewise_linear) in tape order, or throws
// naming the first node that is not.
template <class T>
std::vector<int> kink_nodes(Engine<T>& f) {
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
    if (!kink && !affine_in(n.op->linearity, varies))
      throw NotPiecewiseLinear("exact IG needs a network that is piecewise linear up to the target, but " + tape.describe(id) +
                  " is not; use a quadrature rule (--rule gausslegendre)");
    if (kink) kinks.push_back(id);
    for (int in : n.inputs) needed[static_cast<std::size_t>(in)] = 1;
  }
  std::reverse(kinks.begin(), kinks.end());
  return kinks;
}

// What a kink node's switch computation needs besides its input's values: its op, whose
// descriptor's `switches` finds them (autodiff/ops), its attributes and one sample's shapes.
template <class T>
struct KinkGeometry {
  const OpFns<T>* op = nullptr;
  const Attrs* attrs = nullptr;
  Shape input, output;  // [1, one sample's dimensions]
};

template <class T>
KinkGeometry<T> kink_geometry(const Tape<T>& tape, int id) {
  const Node<T>& node = tape.node(id);
  KinkGeometry<T> g;
  g.op = node.op;
  g.attrs = &node.attrs;
  const Shape& in = tape.node(node.inputs[0]).value.shape();
  g.input.assign(in.begin(), in.end());
  g.output.assign(node.value.shape().begin(), node.value.shape().end());
  g.input[0] = g.output[0] = 1;
  return g;
}

// The switches, as fractions s in (0, 1) of an interval, of a kink node whose input is affine
// along the interval with values z0 and z1 (one sample each) at its ends.
template <class T>
void interval_switches(const KinkGeometry<T>& g, const T* z0, const T* z1, std::vector<double>& roots) {
  g.op->switches(*g.attrs, g.input, g.output, z0, z1, roots);
}

// ---- the reference search ----

// The switches of kink node `id` between every pair of consecutive breakpoints: the node's input
// at every breakpoint, in groups of the engine's chunk size; an interval's two ends may fall in
// two groups, so the last row of each group is kept.
template <class T>
std::vector<double> node_switches(Engine<T>& f, int id, const std::vector<double>& breaks, const Tensor<T>& x,
                                  const Tensor<T>& baseline) {
  Tape<T>& tape = f.tape();
  const Var<T> input{&tape, tape.node(id).inputs[0]};
  const KinkGeometry<T> geometry = kink_geometry(tape, id);
  const std::size_t size = x.size();
  const std::size_t group = std::max<std::size_t>(f.chunk(), 1);
  std::vector<double> roots, local;
  Tensor<T> points, previous;
  for (std::size_t begin = 0; begin < breaks.size(); begin += group) {
    const std::size_t n = std::min(group, breaks.size() - begin);
    Shape shape{n};
    for (std::size_t d : x.shape()) shape.push_back(d);
    points.resize(shape);
    line_points(baseline.data(), x.data(), size, breaks.data() + begin, n, points.data());
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
      interval_switches(geometry, z0, z1, local);
      for (double s : local) roots.push_back(breaks[k - 1] + s * (breaks[k] - breaks[k - 1]));
    }
    previous.resize(Shape{width});
    std::copy(z.data() + (n - 1) * width, z.data() + n * width, previous.data());
  }
  return roots;
}

[[noreturn]] void too_many_pieces(std::size_t cap, const std::string& node) {
  throw Error("exact IG: more than " + std::to_string(cap) + " linear pieces along the path (at " + node +
              "); raise the cap (--max-pieces) or use a quadrature rule");
}

// ---- the search ----

// d F / d z_c at logits z for F = prob or logprob of class k, minus that of class m when m >= 0.
void score_gradient(Output output, int k, int m, const std::vector<double>& z, std::vector<double>& p,
                    std::vector<double>& out) {
  const std::size_t classes = z.size();
  const double top = *std::max_element(z.begin(), z.end());
  p.resize(classes);
  double total = 0;
  for (std::size_t c = 0; c < classes; ++c) total += p[c] = std::exp(z[c] - top);
  for (double& v : p) v /= total;
  out.assign(classes, 0.0);
  for (int cls : {k, m}) {
    if (cls < 0) continue;
    const double sign = cls == k ? 1.0 : -1.0, pk = p[std::size_t(cls)];
    // prob: dp_k/dz_c = p_k (delta_kc - p_c); logprob: d log p_k / dz_c = delta_kc - p_c
    const double scale = output == Output::prob ? pk : 1.0;
    double others = 0;  // 1 - p_k as the sum of the other classes: no cancellation when p_k is near 1
    for (std::size_t c = 0; c < classes; ++c) {
      if (c == std::size_t(cls)) continue;
      out[c] -= sign * scale * p[c];
      others += p[c];
    }
    out[std::size_t(cls)] += sign * scale * others;
  }
}

// The integral over u in [0, 1] of s(u) = dF/dz (z0 + u (z1 - z0)), the seed of one linear piece
// for a prob or logprob target, to rounding. s is analytic in u but not a polynomial, so on each
// part of the piece Gauss-Legendre rules of rising order (4, 8, ..., 64 nodes) are compared, each
// with the one before; the first pair that agrees to rounding, relative to the part's integral of
// |s|, ends the part with the higher order's value (whose error is far below the difference).
// A part where 32 and 64 nodes still differ (a softmax switching sharply inside it) is halved.
// Rounding here is that of s itself: logits of size |z| carry errors of eps |z|, so the agreement
// asked is 64 eps (1 + max |z|). More than `max_parts` parts in one piece is an Error, never an
// approximation. With `rule`, the nodes and weights (in [0, 1]) of the lower order of each
// accepted pair, for callers that evaluate the network's gradient at nodes: its error is the
// difference found, so at rounding as well.
class PieceIntegral {
 public:
  PieceIntegral(Output output, int k, int m, std::size_t max_parts)
      : output_(output), k_(k), m_(m), max_parts_(std::max<std::size_t>(max_parts, 1)) {
    for (std::size_t n = min_order; n <= max_order; n *= 2) rules_.push_back(quadrature(Rule::gausslegendre, n));
  }

  // The piece [a0, a1] of the path, with logits z0 and z1 at its ends; a0 and a1 name it in errors.
  void integrate(double a0, double a1, const double* z0, const double* z1, std::size_t classes,
                 std::vector<double>& seed, Quadrature* rule = nullptr) {
    a0_ = a0, a1_ = a1, z0_ = z0, z1_ = z1, classes_ = classes, rule_ = rule, parts_ = 0;
    double size = 0;
    for (std::size_t c = 0; c < classes; ++c) size = std::max({size, std::abs(z0[c]), std::abs(z1[c])});
    tolerance_ = 64 * std::numeric_limits<double>::epsilon() * (1 + size);
    seed.assign(classes, 0.0);
    if (rule) rule->alphas.clear(), rule->weights.clear();
    part(0, 1, seed);
    most_parts_ = std::max(most_parts_, parts_);
  }
  std::size_t evaluations() const { return evaluations_; }
  std::size_t most_parts() const { return most_parts_; }  // the most parts one piece took

  static constexpr std::size_t min_order = 4, max_order = 64;

 private:
  // Rule `r` on [u0, u1]: the integral of s into `sum`, of max_c |s_c| into the return value.
  double apply(const Quadrature& r, double u0, double u1, std::vector<double>& sum) {
    sum.assign(classes_, 0.0);
    double magnitude = 0;
    z_.resize(classes_);
    // [nodes, classes]
    for (std::size_t q = 0; q < r.alphas.size(); ++q) {
      const double u = u0 + (u1 - u0) * r.alphas[q], w = (u1 - u0) * r.weights[q];
      for (std::size_t c = 0; c < classes_; ++c) z_[c] = z0_[c] + u * (z1_[c] - z0_[c]);
      score_gradient(output_, k_, m_, z_, p_, g_);
      double largest = 0;
      for (std::size_t c = 0; c < classes_; ++c) sum[c] += w * g_[c], largest = std::max(largest, std::abs(g_[c]));
      magnitude += w * largest;
    }
    evaluations_ += r.alphas.size();
    return magnitude;
  }

  void part(double u0, double u1, std::vector<double>& seed) {
    if (++parts_ > max_parts_)
      throw Error("exact IG: the " + std::string(output_name(output_)) + " integral over the piece [" +
                  std::to_string(a0_) + ", " + std::to_string(a1_) + "] of the path did not reach rounding in " +
                  std::to_string(max_parts_) + " parts of " + std::to_string(max_order) +
                  " Gauss-Legendre nodes (the softmax switches too sharply there); use a quadrature rule");
    apply(rules_[0], u0, u1, lower_);
    for (std::size_t i = 1; i < rules_.size(); ++i) {
      const double magnitude = apply(rules_[i], u0, u1, higher_);
      double change = 0;
      for (std::size_t c = 0; c < classes_; ++c) change = std::max(change, std::abs(higher_[c] - lower_[c]));
      if (change <= tolerance_ * magnitude) {
        for (std::size_t c = 0; c < classes_; ++c) seed[c] += higher_[c];
        if (rule_) add_nodes(rules_[i - 1], u0, u1);
        return;
      }
      std::swap(lower_, higher_);
    }
    const double mid = 0.5 * (u0 + u1);
    part(u0, mid, seed);
    part(mid, u1, seed);
  }

  void add_nodes(const Quadrature& r, double u0, double u1) {
    for (std::size_t q = 0; q < r.alphas.size(); ++q) {
      rule_->alphas.push_back(u0 + (u1 - u0) * r.alphas[q]);
      rule_->weights.push_back((u1 - u0) * r.weights[q]);
    }
  }

  Output output_;
  int k_, m_;
  std::size_t max_parts_;
  std::vector<Quadrature> rules_;  // Gauss-Legendre on [0, 1], min_order to max_order nodes
  double a0_ = 0, a1_ = 1;
  const double *z0_ = nullptr, *z1_ = nullptr;
  Quadrature* rule_ = nullptr;
  double tolerance_ = 0;
  std::size_t classes_ = 0, parts_ = 0, most_parts_ = 0, evaluations_ = 0;
  std::vector<double> z_, p_, g_, lower_, higher_;
};

// The search's own passes over values (interpolating, keeping, summing gradients) on the
// engine's threads. Every value is computed by one thread, the same way whatever the split, so
// the results are the same bits on one thread or two. Blocks of about this many values, and the
// threads only from this many values in all (a region costs a few microseconds):
constexpr std::size_t kBlock = 2048, kThreaded = 32768;

// The size of `width`'s blocks: about kBlock values, as many blocks as a multiple of `split`
// (the threads share them evenly), a multiple of 16 values (whole SIMD registers).
std::size_t block_size(std::size_t width, std::size_t split) {
  const std::size_t blocks = std::max<std::size_t>(1, (width + kBlock - 1) / kBlock);
  const std::size_t even = (blocks + split - 1) / split * split;
  return std::max<std::size_t>(16, ((width + even - 1) / even + 15) / 16 * 16);
}

// body(i, begin, end) for each row i < n and its values [begin, end) of [0, width), in blocks.
template <class Body>
void rows_in_blocks(std::size_t n, std::size_t width, const Body& body) {
  const std::size_t size = block_size(width, 1), blocks = (width + size - 1) / size;
  const long tasks = long(n * blocks);
  // [rows, blocks of values]
#pragma omp parallel for schedule(static) if (n * width >= kThreaded)
  for (long t = 0; t < tasks; ++t) {
    const std::size_t i = std::size_t(t) / blocks, b = std::size_t(t) % blocks;
    body(i, b * size, std::min(width, (b + 1) * size));
  }
}

// body(begin, end) for the blocks of [0, width), each of whose n rows are walked in order by
// one thread (sums that take the rows in order, as one thread does).
template <class Body>
void columns_in_blocks(std::size_t n, std::size_t width, const Body& body) {
  const std::size_t size = block_size(width, kernels::threads());
  const long blocks = long((width + size - 1) / size);
  // [blocks of values]
#pragma omp parallel for schedule(static) if (n * width >= kThreaded)
  for (long b = 0; b < blocks; ++b) body(std::size_t(b) * size, std::min(width, std::size_t(b + 1) * size));
}

// The streaming breakpoint search, and the gradient pass over the pieces (ExactPath).
//
// The backward passes follow the kept levels: below the j-th kink node the network is one
// affine map inside each piece of the first j - 1 kink nodes' breakpoints, so the gradients at
// a kept level's frontier, summed over the final pieces inside one such coarser piece, go
// through the nodes below once for that piece, not once per final piece. The final pieces run
// the nodes from the last kept level up; each kept level runs its segment once per piece of
// its own breakpoints; the first kept level's segment (the affine prefix) runs once.
template <class T>
class PathSearch {
 public:
  PathSearch(Engine<T>& f, const Tensor<T>& x, const Tensor<T>& baseline, const ExactOptions& options,
             bool gradients)
      : f_(f), tape_(f.tape()), x_(x), baseline_(baseline), options_(options), gradients_(gradients) {
    input_ = f.network().input().id;
    logits_ = logits_node(f);
    top_ = f.score_var().id;
    for (int kink : kink_nodes(f)) add_level(kink);
    for (std::size_t j = 0; j < levels_.size(); ++j)
      if (levels_[j].stored) kept_.push_back(j);
    plan_stages();
    stores_.assign(levels_.size(), nullptr);
    buffers_.resize(levels_.size());
    segment_seeds_.resize(kept_.size());
    // points a partial pass takes at once: at most kMaxBatch, so that a batch's values (a few MB
    // per node on LeNet-sized layers) are reused in place from one batch to the next instead of
    // being mapped afresh by the allocator (and page-faulted in) at every change of batch size
    batch_ = std::min(kMaxBatch, std::max<std::size_t>(1, f.chunk() / 2));
    std::size_t kept = 0;  // bytes per point of every level's kept values and gradient sums
    for (const Level& l : levels_)
      if (l.stored) kept += l.width * (sizeof(T) + (gradients ? sizeof(double) : 0));
    // (the gradient sums are a ring now, but windows keep the size a row per piece once needed:
    // both windows that share an end evaluate it, so another size would evaluate other points)
    window_ = std::max<std::size_t>(2, kept ? f.memory_budget() / 2 / kept : std::size_t(-1) / 2);
    // pieces a ring holds: a batch not yet complete, and the pieces one batch of sums reaches
    ring_ = 2 * batch_ + 2;
    if (gradients_) total_.assign(x.size(), 0.0);
  }

  void run() {
    search(0, {0.0, 1.0});
    path_.pieces = breaks_.size() - 1;
    if (!gradients_) return;
    path_.gradient = zeros<T>(x_.shape());
    for (std::size_t i = 0; i < total_.size(); ++i) path_.gradient.data()[i] = T(total_[i]);
  }
  std::vector<double>& breaks() { return breaks_; }
  ExactPath<T>& path() { return path_; }

 private:
  // A kink node, and what the nodes from it on read from before it.
  struct Level {
    int kink = -1, input = -1;           // the kink node and the node whose switches it has
    KinkGeometry<T> geometry;
    std::vector<int> frontier;           // nodes before the kink read by nodes from it on
    std::vector<std::size_t> offset;     // each frontier node's place in a kept row
    std::size_t width = 0;               // values per point of a kept row
    bool stored = false;                 // kept (not worth it when the frontier is kink nodes only)
  };
  // A kept level on a window: its frontier's values at the breakpoints of the levels before it,
  // and the gradients at its frontier summed over each piece between them. The sums arrive in
  // the order of the pieces, and a batch of complete pieces goes down its backward segment at
  // once (flush): only the pieces not yet sent down are held, in a ring of rows that stays in
  // cache, instead of a row for every piece of the window (tens of MB, zeroed, summed into and
  // read back from memory).
  struct Store {
    std::vector<double> alphas;
    Buffer<T> rows;                      // [alphas, level width] (written in full by keep)
    std::vector<double> grads;           // [ring rows, level width]: piece p's sums at row p % ring rows
    std::size_t sent = 0;                // pieces [0, sent) have gone down the backward segment
    std::size_t at = 1;                  // the piece of the last sum added, plus one (piece_of's k)
  };
  // One partial forward pass: the input, the frontier values interpolated, and the op nodes run.
  struct Stage {
    bool input = false;
    // shape_only: a frontier a backward segment is seeded at, which no node of the pass reads:
    // sized, not interpolated (an affine op's backward reads its output's shape, not its values)
    struct Kept { int node; std::size_t level, offset, width; bool shape_only = false; };
    std::vector<Kept> interpolated;
    std::vector<int> run;
  };

  std::size_t per_point(int id) const {
    const Tensor<T>& v = tape_.node(id).value;
    return v.shape()[0] ? v.size() / v.shape()[0] : 0;
  }
  bool is_kink(int id) const {
    return std::any_of(levels_.begin(), levels_.end(), [&](const Level& l) { return l.kink == id; });
  }

  void add_level(int kink) {
    Level l;
    l.kink = kink;
    l.input = tape_.node(kink).inputs[0];
    l.geometry = kink_geometry(tape_, kink);
    std::vector<char> read(static_cast<std::size_t>(kink), 0);
    for (int id = kink; id <= top_; ++id) {
      const Node<T>& n = tape_.node(id);
      if (n.kind != NodeKind::op) continue;
      for (int in : n.inputs)
        if (in < kink && tape_.node(in).requires_grad) read[static_cast<std::size_t>(in)] = 1;
    }
    bool kinks_only = true;
    for (int id = 0; id < kink; ++id) {
      if (!read[static_cast<std::size_t>(id)]) continue;
      l.frontier.push_back(id);
      l.offset.push_back(l.width);
      l.width += per_point(id);
      kinks_only = kinks_only && is_kink(id);
    }
    l.stored = !kinks_only;
    levels_.push_back(std::move(l));
  }

  // The pass that gives `targets` at new points, when the levels before `level` are kept:
  // their frontier nodes are interpolated (except kink nodes when `run_kinks`, whose state the
  // backward pass reads), and only the op nodes the targets need from them are run.
  Stage make_stage(std::size_t level, const std::vector<int>& targets, bool run_kinks) const {
    std::vector<long> source(tape_.size(), -1);  // node -> the level that keeps it
    std::vector<std::size_t> offset(tape_.size(), 0);
    for (std::size_t i = 0; i < level; ++i) {
      if (!levels_[i].stored) continue;
      for (std::size_t k = 0; k < levels_[i].frontier.size(); ++k) {
        const int v = levels_[i].frontier[k];
        if (run_kinks && is_kink(v)) continue;
        source[static_cast<std::size_t>(v)] = long(i);
        offset[static_cast<std::size_t>(v)] = levels_[i].offset[k];
      }
    }
    std::vector<char> needed(tape_.size(), 0);
    int last = 0;
    for (int t : targets) needed[static_cast<std::size_t>(t)] = 1, last = std::max(last, t);
    Stage stage;
    for (int id = last; id >= 0; --id) {
      const std::size_t u = static_cast<std::size_t>(id);
      const Node<T>& n = tape_.node(id);
      if (!needed[u]) continue;
      if (source[u] >= 0) {
        stage.interpolated.push_back({id, std::size_t(source[u]), offset[u], per_point(id), false});
      } else if (id == input_) {
        stage.input = true;
      } else if (n.kind == NodeKind::op) {
        stage.run.push_back(id);
        for (int in : n.inputs) needed[static_cast<std::size_t>(in)] = 1;
      }
    }
    std::reverse(stage.run.begin(), stage.run.end());
    return stage;
  }

  // The op nodes F depends on with ids in [begin, end]: what a backward segment runs.
  std::vector<int> segment(int begin, int end) const {
    std::vector<char> needed(static_cast<std::size_t>(top_) + 1, 0);
    needed[static_cast<std::size_t>(top_)] = 1;
    std::vector<int> ids;
    for (int id = top_; id >= 0; --id) {
      const Node<T>& n = tape_.node(id);
      if (!needed[static_cast<std::size_t>(id)] || n.kind != NodeKind::op || !n.requires_grad) continue;
      if (id >= begin && id <= end) ids.push_back(id);
      for (int in : n.inputs) needed[static_cast<std::size_t>(in)] = 1;
    }
    return ids;
  }

  // The kink node below which kept level j's segment stops (0: it reaches the input).
  int stop_below(std::size_t kept_index) const { return kept_index ? levels_[kept_[kept_index - 1]].kink : 0; }

  void plan_stages() {
    for (std::size_t j = 0; j < levels_.size(); ++j) {
      const Level& l = levels_[j];
      level_stages_.push_back(make_stage(j, l.stored ? l.frontier : std::vector<int>{l.input}, false));
    }
    logits_stage_ = make_stage(levels_.size(), {logits_}, false);
    // each backward segment needs the forward state of its nodes at its pieces' midpoints, and
    // the frontiers it is seeded at and gathered from in place (their shapes size the gradients)
    const auto with_frontier = [&](std::vector<int> ids, long kept_index) {
      if (kept_index >= 0) {
        const std::vector<int>& f = levels_[kept_[std::size_t(kept_index)]].frontier;
        ids.insert(ids.end(), f.begin(), f.end());
      }
      return ids;
    };
    const long last = long(kept_.size()) - 1;
    final_stage_ = make_stage(levels_.size(), with_frontier(segment(last >= 0 ? levels_[kept_.back()].kink : 0, top_), last), true);
    for (std::size_t i = 0; i < kept_.size(); ++i) {
      const std::size_t j = kept_[i];
      // the level's own frontier is kept too: its segment's backward pass needs no forward of it
      std::vector<int> targets = with_frontier(with_frontier(segment(stop_below(i), levels_[j].kink - 1), long(i)), long(i) - 1);
      segment_stages_.push_back(make_stage(j + 1, targets, true));
      mark_shape_only(segment_stages_.back(), j);
    }
    // the backward pass sizes the input's gradient from its value
    final_stage_.input = true;
    for (Stage& s : segment_stages_) s.input = true;
  }

  // The values stage interpolates from level j's own store that none of its op nodes reads.
  void mark_shape_only(Stage& stage, std::size_t j) const {
    for (typename Stage::Kept& k : stage.interpolated) {
      if (k.level != j) continue;
      k.shape_only = std::none_of(stage.run.begin(), stage.run.end(), [&](int id) {
        const std::vector<int>& in = tape_.node(id).inputs;
        return std::find(in.begin(), in.end(), k.node) != in.end();
      });
    }
  }

  // Puts the stage's inputs in place at the n points `alphas` and runs it.
  void load(const Stage& stage, const double* alphas, std::size_t n) {
    const std::size_t size = x_.size();
    if (stage.input) {
      Shape shape{n};
      for (std::size_t d : x_.shape()) shape.push_back(d);
      Tensor<T>& in = tape_.leaf_value(Var<T>{&tape_, input_});
      in.resize(shape);
      line_points(baseline_.data(), x_.data(), size, alphas, n, in.data());
    }
    for (const typename Stage::Kept& k : stage.interpolated) {
      Tensor<T>& v = tape_.mutable_value(Var<T>{&tape_, k.node});
      Shape shape = v.shape();
      shape[0] = n;
      v.resize(shape);
      if (k.shape_only) continue;
      interpolate(*stores_[k.level], levels_[k.level].width, k.offset, k.width, alphas, n, v.data());
    }
    f_.check_deadline();  // every partial forward pass of the search, as the engine's own passes
    tape_.forward_nodes(stage.run);
    f_.count_evaluations(n);
  }

  // The piece of `at` (increasing) holding a, searched from `k` on: at[k - 1] <= a <= at[k].
  static std::size_t piece_of(const std::vector<double>& at, double a, std::size_t k) {
    k = std::max<std::size_t>(k, 1);
    while (k + 1 < at.size() && at[k] < a) ++k;
    return k;
  }

  // Values kept at the store's points, at the n points `alphas` (increasing, inside the
  // store's span): each lies between two kept points, where the values are affine.
  void interpolate(const Store& s, std::size_t row_width, std::size_t offset, std::size_t width, const double* alphas,
                   std::size_t n, T* out) {
    const std::vector<double>& at = s.alphas;
    std::size_t k = std::size_t(std::lower_bound(at.begin(), at.end(), alphas[0]) - at.begin());
    k = std::min(k, at.size() - 1);
    pieces_.resize(n);
    for (std::size_t i = 0; i < n; ++i) pieces_[i] = k = piece_of(at, alphas[i], k);
    // [points, blocks of values]
    rows_in_blocks(n, width, [&](std::size_t i, std::size_t begin, std::size_t end) {
      const double a = alphas[i];
      const std::size_t p = pieces_[i];
      const T* r0 = s.rows.data() + (p - 1) * row_width + offset;
      const T* r1 = s.rows.data() + p * row_width + offset;
      T* o = out + i * width;
      if (a == at[p - 1] || a == at[p]) {
        const T* r = a == at[p] ? r1 : r0;
        std::copy(r + begin, r + end, o + begin);
        return;
      }
      const T t = T((a - at[p - 1]) / (at[p] - at[p - 1]));
      for (std::size_t j = begin; j < end; ++j) o[j] = r0[j] + t * (r1[j] - r0[j]);
    });
  }

  // Level j on the window `points` (breakpoints of the levels before it): its switches, then
  // the next level on the refined window, in windows of at most window_ points; then, for a
  // kept level, its backward segment once per piece of the window.
  void search(std::size_t j, const std::vector<double>& points) {
    if (j == levels_.size()) return finish(points);
    const Level& level = levels_[j];
    const Stage& stage = level_stages_[j];
    // one store per level, reused from window to window: its buffers (tens of MB on LeNet-sized
    // layers) are then mapped and page-faulted in once, not once per window
    Store& store = buffers_[j];
    if (level.stored) {
      store.alphas = points;
      store.rows.resize(points.size() * level.width);
    }
    const std::size_t width = per_point(level.input);
    std::vector<T> previous(width);
    std::vector<double> refined{points.front()};
    std::size_t added = 0;
    for (std::size_t begin = 0; begin < points.size(); begin += batch_) {
      const std::size_t n = std::min(batch_, points.size() - begin);
      load(stage, points.data() + begin, n);
      const T* z = tape_.value(Var<T>{&tape_, level.input}).data();  // [n, width]
      batch_switches(level.geometry, previous.data(), z, width, n, begin == 0);
      for (std::size_t i = begin == 0 ? 1 : 0; i < n; ++i) {
        const std::size_t k = begin + i;  // the interval [points[k - 1], points[k]]
        added += merge_interval(points[k - 1], points[k], locals_[i], refined);
        if (known_pieces_ + added > options_.max_pieces) too_many_pieces(options_.max_pieces, tape_.describe(level.kink));
      }
      std::copy(z + (n - 1) * width, z + n * width, previous.begin());
      if (level.stored) keep(level, begin, n, store);
    }
    known_pieces_ += added;
    if (level.stored) {
      if (gradients_) store.grads.assign(ring_ * level.width, 0.0);
      store.sent = 0;
      store.at = 1;
      stores_[j] = &store;
    }
    // the refined window in windows of at most window_ points, sharing their ends
    for (std::size_t begin = 0; begin + 1 < refined.size(); begin += window_ - 1) {
      const std::size_t end = std::min(refined.size(), begin + window_);
      search(j + 1, std::vector<double>(refined.begin() + long(begin), refined.begin() + long(end)));
    }
    if (level.stored && gradients_) send_down(j, points.size() - 1);
    stores_[j] = nullptr;
  }

  // The switches inside the intervals that end at the batch's n points z (the first batch's
  // first point ends none; the interval ending at its first point starts at `previous`), each
  // interval's into its own list locals_[i]: in parallel, and merged in order afterwards, so the
  // breakpoints are the same whatever the thread count.
  void batch_switches(const KinkGeometry<T>& g, const T* previous, const T* z, std::size_t width, std::size_t n,
                      bool first) {
    if (locals_.size() < n) locals_.resize(n);
    // [intervals] x [the node's input per sample]
#pragma omp parallel for schedule(dynamic, 1) if (n > 1)
    for (long i = first ? 1 : 0; i < long(n); ++i) {
      std::vector<double>& local = locals_[std::size_t(i)];
      local.clear();
      interval_switches(g, i == 0 ? previous : z + (i - 1) * width, z + std::size_t(i) * width, local);
    }
  }

  // Appends the switches inside (a0, a1) (fractions `local` of it), then a1, to `refined`. A
  // switch within rounding of a breakpoint or of the previous switch is not a new piece.
  std::size_t merge_interval(double a0, double a1, std::vector<double>& local, std::vector<double>& refined) const {
    const double min_gap = 8 * std::numeric_limits<T>::epsilon();
    std::sort(local.begin(), local.end());
    std::size_t added = 0;
    for (double s : local) {
      const double r = a0 + s * (a1 - a0);
      if (r - refined.back() <= min_gap || a1 - r <= min_gap) continue;
      refined.push_back(r);
      ++added;
    }
    refined.push_back(a1);
    return added;
  }

  // The level's frontier values at rows [begin, begin + n) of the window, from the tape.
  void keep(const Level& level, std::size_t begin, std::size_t n, Store& store) const {
    for (std::size_t k = 0; k < level.frontier.size(); ++k) {
      const T* v = tape_.node(level.frontier[k]).value.data();
      const std::size_t w = per_point(level.frontier[k]);
      T* rows = store.rows.data() + begin * level.width + level.offset[k];
      // [n, w] into [n, level width]
      rows_in_blocks(n, w, [&](std::size_t i, std::size_t from, std::size_t to) {
        std::copy(v + i * w + from, v + i * w + to, rows + i * level.width + from);
      });
    }
  }

  // After a partial backward pass at n points `alphas` (increasing from call to call): the
  // gradients at the frontier of the kept level below (kept_[i]), added to the sums of the
  // pieces holding the points; with `dots`, each point's gradient along the path (the
  // frontier's slope in its piece). Below the first kept level, the input's gradient is added
  // to the total. Then the level's whole batches of complete pieces go down (send_down).
  void gather(long i, const double* alphas, std::size_t n, std::vector<double>* dots) {
    if (i < 0) {
      const T* g = tape_.grad(Var<T>{&tape_, input_}).data();
      const std::size_t size = x_.size();
      // [n, input values]
      for (std::size_t r = 0; r < n; ++r) {
        for (std::size_t c = 0; c < size; ++c) total_[c] += double(g[r * size + c]);
        if (!dots) continue;
        double dot = 0;
        for (std::size_t c = 0; c < size; ++c) dot += double(g[r * size + c]) * (double(x_.data()[c]) - double(baseline_.data()[c]));
        dots->push_back(dot);
      }
      return;
    }
    const std::size_t j = kept_[std::size_t(i)];
    const Level& level = levels_[j];
    Store& s = *stores_[j];
    std::size_t k = s.at;
    gathered_.resize(n);  // the piece of each point
    for (std::size_t r = 0; r < n; ++r) {
      gathered_[r] = k = piece_of(s.alphas, alphas[r], k);
      // every piece holds a point of the level above, so a batch reaches at most n new pieces
      if (k - 1 >= s.sent + ring_) throw Error("exact IG: internal error: a piece's gradient sums overran the ring");
    }
    for (std::size_t f = 0; f < level.frontier.size(); ++f) {
      const std::size_t w = per_point(level.frontier[f]), at = level.offset[f];
      const T* g = tape_.grad(Var<T>{&tape_, level.frontier[f]}).data();
      // [blocks of values] x [n, the block]: each sum takes the points in order
      columns_in_blocks(n, w, [&](std::size_t begin, std::size_t end) {
        for (std::size_t r = 0; r < n; ++r) {
          double* sum = s.grads.data() + (gathered_[r] - 1) % ring_ * level.width + at;
          const T* gr = g + r * w;
          for (std::size_t c = begin; c < end; ++c) sum[c] += double(gr[c]);  // SIMD
        }
      });
    }
    // the dot, a chain of dependent adds, only where it is asked: [n, frontier nodes, their values]
    for (std::size_t r = 0; dots && r < n; ++r) {
      const std::size_t p = gathered_[r];
      double dot = 0;
      for (std::size_t f = 0; f < level.frontier.size(); ++f) {
        const std::size_t w = per_point(level.frontier[f]), at = level.offset[f];
        const T* g = tape_.grad(Var<T>{&tape_, level.frontier[f]}).data() + r * w;
        const T* r0 = s.rows.data() + (p - 1) * level.width + at;
        const T* r1 = s.rows.data() + p * level.width + at;
        for (std::size_t c = 0; c < w; ++c) dot += double(g[c]) * (double(r1[c]) - double(r0[c]));
      }
      dots->push_back(dot / (s.alphas[p] - s.alphas[p - 1]));
    }
    s.at = k;
    // pieces before k - 1 receive no more sums
    send_down(j, (k - 1) / batch_ * batch_);
  }

  // Kept level j's backward segment for its pieces [sent, end) of the window, in batches of
  // batch_ pieces counted from the window's first (the same batches whether the sums came at
  // once or piece by piece): the gradient sums at its frontier through the nodes down to the
  // kept level below (or the input). A sent piece's ring row is zeroed for the piece that
  // takes it next.
  void send_down(std::size_t j, std::size_t end) {
    Store& s = *stores_[j];
    while (s.sent < end) {
      const std::size_t n = std::min(batch_, end - s.sent);
      send_batch(j, s.sent, n);
      s.sent += n;
    }
  }

  // One batch of send_down: the n pieces from `begin` of the window.
  void send_batch(std::size_t j, std::size_t begin, std::size_t n) {
    const long i = long(std::find(kept_.begin(), kept_.end(), j) - kept_.begin());
    const Level& level = levels_[j];
    Store& s = *stores_[j];
    double mids[kMaxBatch];
    for (std::size_t r = 0; r < n; ++r) mids[r] = 0.5 * (s.alphas[begin + r] + s.alphas[begin + r + 1]);
    load(segment_stages_[std::size_t(i)], mids, n);
    std::vector<Tensor<T>>& seeds = segment_seeds_[std::size_t(i)];
    seeds.resize(level.frontier.size());
    seeded_.clear();
    for (std::size_t f = 0; f < level.frontier.size(); ++f) {
      const int id = level.frontier[f];
      Shape shape = tape_.node(id).value.shape();
      shape[0] = n;
      seeds[f].resize(shape);
      const std::size_t w = per_point(id);
      T* seed = seeds[f].data();
      // [n, w] from the sums [ring rows, level width], which are zeroed on the way (the frontier
      // nodes' values make up the whole row)
      rows_in_blocks(n, w, [&](std::size_t r, std::size_t from, std::size_t to) {
        double* sum = s.grads.data() + (begin + r) % ring_ * level.width + level.offset[f];
        for (std::size_t c = from; c < to; ++c) seed[r * w + c] = T(sum[c]), sum[c] = 0.0;
      });
      seeded_.push_back({id, &seeds[f]});
    }
    tape_.zero_grad();
    f_.check_deadline();
    tape_.backward(seeded_, stop_below(std::size_t(i)));
    gather(i - 1, mids, n, nullptr);  // may send the level below's complete pieces down in turn
  }

  // A window of final breakpoints: appended, and with gradients, each piece's backward pass
  // from the logits down to the last kept level.
  void finish(const std::vector<double>& points) {
    ++path_.windows;
    breaks_.insert(breaks_.end(), points.begin() + (breaks_.empty() ? 0 : 1), points.end());
    if (!gradients_) return;
    const std::size_t pieces = points.size() - 1, classes = f_.classes();
    std::vector<double> seeds(pieces * classes, 0.0);  // [pieces, classes]: the integral of dF/dz
    const int k = f_.class_index(), m = f_.target().minus_class;
    if (f_.target().output == Output::logit) {
      for (std::size_t p = 0; p < pieces; ++p) {
        const double width = points[p + 1] - points[p];
        seeds[p * classes + std::size_t(k)] = width;
        if (m >= 0) seeds[p * classes + std::size_t(m)] = -width;
      }
    } else {
      logit_seeds(points, seeds);
    }
    std::vector<double> mids(pieces);
    for (std::size_t p = 0; p < pieces; ++p) mids[p] = 0.5 * (points[p] + points[p + 1]);
    Tensor<T> seed;
    for (std::size_t begin = 0; begin < pieces; begin += batch_) {
      const std::size_t n = std::min(batch_, pieces - begin);
      load(final_stage_, mids.data() + begin, n);
      const Tensor<T>& score = tape_.value(Var<T>{&tape_, top_});
      for (std::size_t r = 0; r < n; ++r) {
        path_.alphas.push_back(mids[begin + r]);
        path_.f.push_back(double(score(r, std::size_t(k))) - (m >= 0 ? double(score(r, std::size_t(m))) : 0.0));
      }
      seed.resize(Shape{n, classes});
      for (std::size_t r = 0; r < n * classes; ++r) seed.data()[r] = T(seeds[begin * classes + r]);
      tape_.zero_grad();
      f_.check_deadline();
      tape_.backward({{logits_, &seed}}, kept_.empty() ? 0 : levels_[kept_.back()].kink);
      gather(long(kept_.size()) - 1, mids.data() + begin, n, &path_.weighted_dot);
    }
  }

  // prob, logprob: the logits at the window's breakpoints (affine inside each piece), and each
  // piece's integral of dF/dz along them.
  void logit_seeds(const std::vector<double>& points, std::vector<double>& seeds) {
    const std::size_t classes = f_.classes(), pieces = points.size() - 1;
    std::vector<double> z(points.size() * classes), piece_seed;
    for (std::size_t begin = 0; begin < points.size(); begin += batch_) {
      const std::size_t n = std::min(batch_, points.size() - begin);
      load(logits_stage_, points.data() + begin, n);
      const T* v = tape_.value(Var<T>{&tape_, logits_}).data();
      for (std::size_t r = 0; r < n * classes; ++r) z[begin * classes + r] = double(v[r]);
    }
    PieceIntegral integral(f_.target().output, f_.class_index(), f_.target().minus_class, options_.max_parts_per_piece);
    for (std::size_t p = 0; p < pieces; ++p) {
      if (p % 64 == 0) f_.check_deadline();
      integral.integrate(points[p], points[p + 1], z.data() + p * classes, z.data() + (p + 1) * classes, classes, piece_seed);
      const double width = points[p + 1] - points[p];
      for (std::size_t c = 0; c < classes; ++c) seeds[p * classes + c] = width * piece_seed[c];
    }
    path_.seed_nodes += integral.evaluations();
    path_.most_parts = std::max(path_.most_parts, integral.most_parts());
  }

  Engine<T>& f_;
  Tape<T>& tape_;
  const Tensor<T>& x_;
  const Tensor<T>& baseline_;
  ExactOptions options_;
  bool gradients_;
  int input_ = -1, logits_ = -1, top_ = -1;
  std::vector<Level> levels_;
  std::vector<std::size_t> kept_;     // the stored levels, in order
  std::vector<Stage> level_stages_, segment_stages_;
  Stage logits_stage_, final_stage_;
  std::vector<Store*> stores_;        // the kept values of the levels on the current window
  std::vector<Store> buffers_;        // their storage, one per level
  std::vector<std::vector<Tensor<T>>> segment_seeds_;  // per kept level: a batch's seeds at its frontier
  std::vector<std::pair<int, const Tensor<T>*>> seeded_;
  std::vector<std::size_t> pieces_, gathered_;  // interpolate's and gather's piece of each point
  static constexpr std::size_t kMaxBatch = 64;
  std::size_t batch_ = 1, window_ = 2, ring_ = 4;
  std::size_t known_pieces_ = 1;      // pieces found so far: never more than in the end
  std::vector<double> breaks_, total_;
  std::vector<std::vector<double>> locals_;  // one batch's switches, one list per interval
  ExactPath<T> path_;
};

}  // namespace

template <class T>
std::vector<double> path_breakpoints_reference(Engine<T>& f, const Tensor<T>& x, const Tensor<T>& baseline,
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
    if (breaks.size() - 1 > options.max_pieces) too_many_pieces(options.max_pieces, f.tape().describe(id));
  }
  return breaks;
}

template <class T>
bool exact_search_applies(Engine<T>& f) {
  const Tape<T>& tape = f.tape();
  for (std::size_t id = 0; id < tape.size(); ++id) {
    const Node<T>& n = tape.node(static_cast<int>(id));
    if (n.kind != NodeKind::op) continue;
    const auto moving = std::count_if(n.inputs.begin(), n.inputs.end(), [&](int in) { return tape.node(in).requires_grad; });
    if (moving > 1) return false;
  }
  return true;
}

template <class T>
std::vector<double> path_breakpoints(Engine<T>& f, const Tensor<T>& x, const Tensor<T>& baseline,
                                     const ExactOptions& options) {
  if (!exact_search_applies(f)) return path_breakpoints_reference(f, x, baseline, options);
  PathSearch<T> search(f, x, baseline, options, false);
  search.run();
  return std::move(search.breaks());
}

template <class T>
ExactPath<T> exact_path(Engine<T>& f, const Tensor<T>& x, const Tensor<T>& baseline, const ExactOptions& options) {
  if (f.class_index() < 0) throw Error("exact IG: the target class is not resolved");
  PathSearch<T> search(f, x, baseline, options, true);
  search.run();
  return std::move(search.path());
}

// The logits at each of `alphas` along the path, by forward passes in chunks: [alphas, classes].
template <class T>
std::vector<double> logits_along(Engine<T>& f, const std::vector<double>& alphas, const Tensor<T>& x,
                                 const Tensor<T>& baseline) {
  Tape<T>& tape = f.tape();
  const Var<T> logits{&tape, logits_node(f)};
  const std::size_t size = x.size(), classes = f.classes(), group = std::max<std::size_t>(f.chunk(), 1);
  std::vector<double> z(alphas.size() * classes);
  std::vector<T> points;
  for (std::size_t begin = 0; begin < alphas.size(); begin += group) {
    const std::size_t n = std::min(group, alphas.size() - begin);
    points.resize(n * size);
    line_points(baseline.data(), x.data(), size, alphas.data() + begin, n, points.data());
    f.forward_points(points.data(), n, logits);
    const T* v = tape.value(logits).data();
    for (std::size_t r = 0; r < n * classes; ++r) z[begin * classes + r] = double(v[r]);
  }
  return z;
}

template <class T>
Quadrature exact_quadrature(Engine<T>& f, const Tensor<T>& x, const Tensor<T>& baseline,
                            const ExactOptions& options, std::size_t& pieces) {
  const std::vector<double> breaks = path_breakpoints(f, x, baseline, options);
  pieces = breaks.size() - 1;
  Quadrature q;
  if (f.target().output == Output::logit) {
    // dF/dx is constant inside a piece: its midpoint, weighted by its width
    for (std::size_t p = 0; p < pieces; ++p) {
      q.alphas.push_back(0.5 * (breaks[p] + breaks[p + 1]));
      q.weights.push_back(breaks[p + 1] - breaks[p]);
    }
    return q;
  }
  // prob, logprob: inside a piece dF/dx = J^T s(a) with J constant, so nodes that integrate the
  // seed s to rounding (PieceIntegral) integrate dF/dx, and a layer's gradient, to rounding too
  if (f.class_index() < 0) throw Error("exact IG: the target class is not resolved");
  const std::vector<double> z = logits_along(f, breaks, x, baseline);
  const std::size_t classes = f.classes();
  PieceIntegral integral(f.target().output, f.class_index(), f.target().minus_class, options.max_parts_per_piece);
  std::vector<double> seed;
  Quadrature inner;
  for (std::size_t p = 0; p < pieces; ++p) {
    if (p % 64 == 0) f.check_deadline();
    integral.integrate(breaks[p], breaks[p + 1], z.data() + p * classes, z.data() + (p + 1) * classes, classes, seed, &inner);
    const double lo = breaks[p], width = breaks[p + 1] - breaks[p];
    for (std::size_t k = 0; k < inner.alphas.size(); ++k) {
      q.alphas.push_back(lo + width * inner.alphas[k]);
      q.weights.push_back(width * inner.weights[k]);
    }
  }
  return q;
}

#define AX_EXACT(T)                                                                                                    \
  template bool exact_search_applies(Engine<T>&);                                                             \
  template std::vector<double> path_breakpoints(Engine<T>&, const Tensor<T>&, const Tensor<T>&,                \
                                                const ExactOptions&);                                                  \
  template std::vector<double> path_breakpoints_reference(Engine<T>&, const Tensor<T>&, const Tensor<T>&,      \
                                                          const ExactOptions&);                                        \
  template ExactPath<T> exact_path(Engine<T>&, const Tensor<T>&, const Tensor<T>&, const ExactOptions&);       \
  template Quadrature exact_quadrature(Engine<T>&, const Tensor<T>&, const Tensor<T>&, const ExactOptions&,    \
                                       std::size_t&);
AX_EXACT(float)
AX_EXACT(double)
#undef AX_EXACT

}  // namespace ax::attr
