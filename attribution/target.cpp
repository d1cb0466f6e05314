#include "target.hpp"
#include "path.hpp"

#include "../autodiff/kernels/threads.hpp"
#include "../autodiff/ops/registry.hpp"

#include <algorithm>
#include <cmath>

namespace ax::attr {
namespace {

// How large a batch-dependent buffer set one point costs: each op node's value and gradient,
// plus as much again for tangents and kernel scratch space.
template <class T>
std::size_t estimate_bytes_per_point(const Tape<T>& tape) {
  std::size_t elements = 0;
  for (std::size_t id = 0; id < tape.size(); ++id) {
    const Node<T>& n = tape.node(static_cast<int>(id));
    if (n.kind == NodeKind::op || n.kind == NodeKind::input) elements += 3 * n.value.size();
  }
  return std::max<std::size_t>(elements * sizeof(T), 1);
}

// Before anything is recorded: one sample of the input must fit in the memory budget, and the
// tape refuses any node whose value for one point does not (before allocating it).
template <class T>
Tape<T>& bounded(Tape<T>& tape, const nn::ModelSpec& spec, const EngineOptions& options) {
  const std::size_t limit = std::max<std::size_t>(options.memory_budget / sizeof(T), 1);
  Shape input{1};
  for (std::size_t d : spec.graph.input.shape) input.push_back(d);
  if (!fits_elements(input, limit))
    throw Error(options.source + ": the input shape " + to_string(Shape(input.begin() + 1, input.end())) +
                " does not fit the memory budget of " + std::to_string(options.memory_budget) + " bytes");
  tape.set_element_limit(limit);
  return tape;
}

// Whether n values are all finite: v - v is 0 for a finite v and NaN otherwise, summed in 16
// independent lanes so that the loop vectorizes (one test per value would not).
template <class T>
bool all_finite(const T* v, std::size_t n) {
  constexpr std::size_t lanes = 16;
  T sum[lanes] = {};
  std::size_t i = 0;
  // [blocks of 16 values]
  for (; i + lanes <= n; i += lanes)
    for (std::size_t l = 0; l < lanes; ++l) sum[l] += v[i + l] - v[i + l];
  for (; i < n; ++i) sum[0] += v[i] - v[i];
  for (std::size_t l = 0; l < lanes; ++l)
    if (sum[l] != T(0)) return false;
  return true;
}

template <class T>
bool all_finite(const Tensor<T>& t) {
  return all_finite(t.data(), t.size());
}

// Also sets the kernels' thread count, before the network is first run on the tape.
nn::RecordOptions record_options(const EngineOptions& options, const TargetSpec& target) {
  kernels::set_threads(options.threads);
  nn::RecordOptions o;
  o.batch = 1;
  o.input_requires_grad = true;
  o.parameters_require_grad = false;
  o.source = options.source;
  o.fold_batchnorm = options.fold_batchnorm;
  o.keep = options.keep_nodes;  // the node explained, a layer attributed, keep their own values
  if (!target.node.empty()) o.keep.push_back(target.node);
  return o;
}

// [n] + a per-sample shape
Shape batch_of(std::size_t n, const Shape& per_sample) {
  Shape shape{n};
  for (std::size_t d : per_sample) shape.push_back(d);
  return shape;
}

}  // namespace

const char* output_name(Output output) {
  switch (output) {
    case Output::logit: return "logit";
    case Output::prob: return "prob";
    case Output::logprob: return "logprob";
  }
  return "?";
}

Output parse_output(const std::string& name) {
  for (Output o : {Output::logit, Output::prob, Output::logprob})
    if (name == output_name(o)) return o;
  throw Error("unknown output '" + name + "'; expected logit, prob or logprob");
}

template <class T>
Engine<T>::Engine(const nn::ModelSpec& spec, const TargetSpec& target, const EngineOptions& options)
    : graph_(spec.graph),
      target_(target),
      options_(options),
      network_(spec, bounded(tape_, spec, options), record_options(options, target)) {
  const std::string node_name = target.node.empty() ? spec.graph.output : target.node;
  Var<T> z = network_.node(node_name);
  const Shape& z_shape = tape_.value(z).shape();
  if (z_shape.size() == 1) z = reshape(z, {1});          // one value per sample
  else if (z_shape.size() > 2) z = flatten(z, 1);        // the target indexes the flat vector
  if (target.output != Output::logit) {
    for (const nn::NodeSpec& n : spec.graph.nodes)
      if (const ops::OpInfo* op = ops::find_file_op(n.op); n.name == node_name && op && op->distribution != Distribution::none)
        throw Error(options.source + ": --output " + output_name(target.output) + " is refused: node '" + node_name +
                    "' is already a " + n.op);
    z = target.output == Output::prob ? softmax(z, 1) : log_softmax(z, 1);
  }
  scores_ = z;
  classes_ = tape_.value(scores_).shape()[1];
  if (classes_ == 0) throw Error(options.source + ": node '" + node_name + "' has no values to explain (0 per sample)");
  const auto check_class = [&](int k, const char* what) {
    if (k >= static_cast<int>(classes_) || k < -1)
      throw Error(options.source + ": " + what + " " + std::to_string(k) + " is out of range: node '" + node_name +
                  "' has " + std::to_string(classes_) + " values per sample");
  };
  check_class(target.class_index, "target");
  check_class(target.minus_class, "second target");
  if (target.minus_class >= 0 && target.minus_class == target.class_index)
    throw Error(options.source + ": the two targets of a difference are both " + std::to_string(target.class_index));

  const Shape& in = tape_.value(network_.input()).shape();
  input_shape_.assign(in.begin() + 1, in.end());
  seed_rows(1);
  tape_.backward(scores_, seed_);  // sizes the gradients, so the estimate counts them
  bytes_per_point_ = estimate_bytes_per_point(tape_);
  if (bytes_per_point_ > options.memory_budget)
    throw Error(options.source + ": one point needs about " + std::to_string(bytes_per_point_) +
                " bytes of tape buffers, more than the memory budget of " + std::to_string(options.memory_budget) + " bytes");
  chunk_ = std::max<std::size_t>(1, options.memory_budget / bytes_per_point_);
  names_.assign(tape_.size(), std::string());
  const auto name = [&](const std::string& graph_name) {
    if (!network_.folded_into(graph_name).empty()) return;  // part of its batch norm's node
    const int id = network_.node(graph_name).id;
    if (names_[static_cast<std::size_t>(id)].empty()) names_[static_cast<std::size_t>(id)] = graph_name;
  };
  name(spec.graph.input.name);
  for (const nn::NodeSpec& n : spec.graph.nodes) name(n.name);
  if (options.affine_prefix) find_affine_prefix();
}

template <class T>
void Engine<T>::find_affine_prefix() {
  // the nodes F reads, and among them the first op that moves with the input but not affinely
  std::vector<char> needed(static_cast<std::size_t>(scores_.id) + 1, 0);
  needed[static_cast<std::size_t>(scores_.id)] = 1;
  for (int id = scores_.id; id >= 0; --id)
    if (needed[static_cast<std::size_t>(id)])
      for (int in : tape_.node(id).inputs) needed[static_cast<std::size_t>(in)] = 1;
  int stop = -1;
  for (int id = 0; id <= scores_.id && stop < 0; ++id) {
    const Node<T>& n = tape_.node(id);
    if (!needed[static_cast<std::size_t>(id)] || n.kind != NodeKind::op || !n.requires_grad) continue;
    std::vector<bool> varies;
    for (int in : n.inputs) varies.push_back(tape_.node(in).requires_grad);
    if (!affine_in(n.op->linearity, varies)) stop = id;
  }
  if (stop < 0) return;  // affine up to F: nothing past the prefix to run
  // a line's points run the ops from `stop` on, and those below it that do not move (they may
  // read a batch size); the moving nodes below `stop` that these read are the frontier
  std::vector<char> frontier(static_cast<std::size_t>(stop), 0);
  for (int id = 0; id <= scores_.id; ++id) {
    const Node<T>& n = tape_.node(id);
    if (!needed[static_cast<std::size_t>(id)] || n.kind != NodeKind::op || (id < stop && n.requires_grad)) continue;
    past_prefix_.push_back(id);
    for (int in : n.inputs)
      if (in < stop && tape_.node(in).requires_grad) frontier[static_cast<std::size_t>(in)] = 1;
  }
  for (int id = 0; id < stop; ++id)
    if (frontier[static_cast<std::size_t>(id)]) frontier_.push_back(id);
  const bool prefix_read = std::any_of(frontier_.begin(), frontier_.end(),
                                       [&](int id) { return tape_.node(id).kind == NodeKind::op; });
  if (!prefix_read) {  // only the input itself is read past the prefix: no prefix to skip
    frontier_.clear();
    past_prefix_.clear();
    return;
  }
  prefix_stop_ = stop;
  frontier_seeds_.resize(frontier_.size());
}

template <class T>
void Engine<T>::begin_line(const Tensor<T>& x, const Tensor<T>& baseline) {
  line_x_ = x;
  line_whole_ = true;
  line_start_.assign(baseline.begin(), baseline.end());
  line_end_.assign(x.begin(), x.end());
  if (prefix_stop_ < 0) return;
  // the prefix at the two ends [x', x], once
  check_deadline();
  Tensor<T>& input = tape_.leaf_value(network_.input());
  input.resize(batch_of(2, input_shape_));
  std::copy(x.begin(), x.end(), std::copy(baseline.begin(), baseline.end(), input.data()));
  tape_.forward(Var<T>{&tape_, prefix_stop_ - 1});
  line_start_.clear();
  line_end_.clear();
  for (int id : frontier_) {
    const Tensor<T>& v = tape_.value(Var<T>{&tape_, id});
    const std::size_t per = v.size() / 2;
    line_start_.insert(line_start_.end(), v.data(), v.data() + per);
    line_end_.insert(line_end_.end(), v.data() + per, v.data() + 2 * per);
  }
  // a NaN or Inf at an end, or a difference z(1) - z(0) that overflows, runs the points whole,
  // so that the usual check names the node or the interpolation cannot overflow
  line_whole_ = false;
  for (std::size_t i = 0; i < line_start_.size() && !line_whole_; ++i)
    line_whole_ = !std::isfinite(line_end_[i] - line_start_[i]);
  if (line_whole_) {
    line_start_.assign(baseline.begin(), baseline.end());
    line_end_.assign(x.begin(), x.end());
  }
}

template <class T>
const T* Engine<T>::evaluate_line(const double* alphas, std::size_t n, std::vector<double>& f) {
  if (target_.class_index < 0) throw Error("evaluate_line: the target class is not resolved");
  if (n > chunk_) throw Error("evaluate_line: " + std::to_string(n) + " points, more than the chunk of " + std::to_string(chunk_));
  const std::size_t width = line_width();
  if (line_whole_) {
    line_points_.resize(batch_of(n, input_shape_));
    line_points(line_start_.data(), line_end_.data(), width, alphas, n, line_points_.data());
    evaluate(line_points_, f, &line_grads_);
    return line_grads_.data();
  }
  check_deadline();
  // the frontier's values at the points, interpolated: [frontier nodes, points, values]
  std::size_t offset = 0;
  for (int id : frontier_) {
    const Var<T> v{&tape_, id};
    Tensor<T>& value = tape_.node(id).kind == NodeKind::op ? tape_.mutable_value(v) : tape_.leaf_value(v);
    const std::size_t per = value.size() / value.shape()[0];
    Shape shape = value.shape();
    shape[0] = n;
    value.resize(shape);
    line_points(line_start_.data() + offset, line_end_.data() + offset, per, alphas, n, value.data());
    offset += per;
  }
  tape_.forward_nodes(past_prefix_);
  evaluations_ += n;
  f.resize(n);
  for (std::size_t i = 0; i < n; ++i) f[i] = f_of_row(i);
  seed_rows(n);
  tape_.zero_grad();
  tape_.backward({{scores_.id, &seed_}}, prefix_stop_);
  const T* grads = tape_.grad(Var<T>{&tape_, frontier_[0]}).data();
  if (frontier_.size() > 1) {  // [frontier nodes, points, values] into [points, frontier values]
    line_grads_.resize(Shape{n, width});
    offset = 0;
    for (int id : frontier_) {
      const Tensor<T>& g = tape_.grad(Var<T>{&tape_, id});
      const std::size_t per = g.size() / n;
      for (std::size_t i = 0; i < n; ++i)
        std::copy(g.data() + i * per, g.data() + (i + 1) * per, line_grads_.data() + i * width + offset);
      offset += per;
    }
    grads = line_grads_.data();
  }
  check_chunk(n, f, 0, grads, n * width);
  return grads;
}

template <class T>
void Engine<T>::line_gradient(const T* frontier_sum, Tensor<T>& out) {
  out.resize(input_shape_);
  if (line_whole_) {
    std::copy(frontier_sum, frontier_sum + out.size(), out.data());
    return;
  }
  // the prefix at one point (its backward reads no values that move) and its backward once,
  // seeded at each frontier node with its part of the sum
  Tensor<T>& input = tape_.leaf_value(network_.input());
  input.resize(batch_of(1, input_shape_));
  std::copy(line_x_.begin(), line_x_.end(), input.data());
  tape_.forward(Var<T>{&tape_, prefix_stop_ - 1});
  std::vector<std::pair<int, const Tensor<T>*>> seeds;
  std::size_t offset = 0;
  const T* direct = nullptr;  // the input's own part, when the frontier holds the input
  for (std::size_t k = 0; k < frontier_.size(); ++k) {
    const int id = frontier_[k];
    const Tensor<T>& value = tape_.value(Var<T>{&tape_, id});
    if (tape_.node(id).kind != NodeKind::op) {
      direct = frontier_sum + offset;
    } else {
      frontier_seeds_[k].resize(value.shape());
      std::copy(frontier_sum + offset, frontier_sum + offset + value.size(), frontier_seeds_[k].data());
      seeds.push_back({id, &frontier_seeds_[k]});
    }
    offset += value.size();
  }
  tape_.zero_grad();
  tape_.backward(seeds, 0);
  const Tensor<T>& g = tape_.grad(network_.input());
  std::copy(g.begin(), g.end(), out.data());
  if (direct)
    for (std::size_t i = 0; i < out.size(); ++i) out.data()[i] += direct[i];
}

template <class T>
void Engine<T>::check_deadline() const {
  if (std::chrono::steady_clock::now() > options_.deadline)
    throw TimeLimitExceeded(options_.source + ": the time limit ran out before the answer was complete");
}

template <class T>
std::string Engine<T>::node_name(int id) const {
  const std::size_t at = static_cast<std::size_t>(id);
  if (at >= names_.size() || names_[at].empty()) return tape_.describe(id);
  const Node<T>& n = tape_.node(id);
  return "node '" + names_[at] + "' (" + (n.kind == NodeKind::op ? n.op->name : "input") + ")";
}

template <class T>
void Engine<T>::locate_non_finite(const std::string& what) const {
  const auto kind = [](const Tensor<T>& t) {
    for (std::size_t i = 0; i < t.size(); ++i)
      if (std::isnan(t.data()[i])) return "NaN";
    return "Inf";
  };
  // forward: the first node, in tape order, whose value is not finite (parameters included)
  for (std::size_t id = 0; id < tape_.size(); ++id) {
    const Tensor<T>& v = tape_.node(static_cast<int>(id)).value;
    if (!all_finite(v))
      throw NonFinite(options_.source + ": " + what + " is not finite: " + kind(v) + " first appears in the forward pass at " +
                      node_name(static_cast<int>(id)));
  }
  // backward: the first node, from the target down, whose gradient is not finite
  for (int id = scores_.id; id >= 0; --id) {
    const Node<T>& n = tape_.node(id);
    if (n.requires_grad && n.grad.shape() == n.value.shape() && !all_finite(n.grad))
      throw NonFinite(options_.source + ": " + what + " is not finite: " + kind(n.grad) +
                      " first appears in the backward pass, in the gradient of " + node_name(id));
  }
  throw NonFinite(options_.source + ": " + what + " is not finite");
}

template <class T>
void Engine<T>::check_chunk(std::size_t n, const std::vector<double>& f, std::size_t begin, const T* grads,
                                    std::size_t count) {
  for (std::size_t i = 0; i < n; ++i)
    if (!std::isfinite(f[begin + i])) locate_non_finite("F");
  if (grads && !all_finite(grads, count)) locate_non_finite("the gradient");
}

template <class T>
void Engine<T>::seed_rows(std::size_t n) {
  // d F / d scores: +1 at the class, -1 at the subtracted one; before the class is resolved
  // (k = -1) the seed is zero, which only the size estimate sees.
  seed_.resize(Shape{n, classes_});
  seed_.fill(T(0));
  for (std::size_t i = 0; i < n; ++i) {
    if (target_.class_index >= 0) seed_(i, static_cast<std::size_t>(target_.class_index)) = T(1);
    if (target_.minus_class >= 0) seed_(i, static_cast<std::size_t>(target_.minus_class)) = T(-1);
  }
}

template <class T>
void Engine<T>::forward_points(const T* points, std::size_t n, Var<T> last) {
  check_deadline();
  Shape shape{n};
  for (std::size_t d : input_shape_) shape.push_back(d);
  Tensor<T>& input = tape_.leaf_value(network_.input());
  input.resize(shape);  // keeps capacity: no allocation once the largest chunk has been seen
  std::copy(points, points + input.size(), input.data());
  if (last.id < 0) tape_.forward();
  else tape_.forward(last);
  evaluations_ += n;
}

template <class T>
std::vector<double> Engine<T>::scores(const Tensor<T>& x) {
  if (x.size() != numel(input_shape_))
    throw Error(options_.source + ": input has shape " + to_string(x.shape()) + ", the model expects " +
                to_string(input_shape_));
  forward_points(x.data(), 1);
  const Tensor<T>& z = tape_.value(scores_);
  if (!all_finite(z)) locate_non_finite("a score");
  return std::vector<double>(z.begin(), z.end());
}

template <class T>
void Engine<T>::retarget(int class_index) {
  if (class_index >= 0 && static_cast<std::size_t>(class_index) >= classes_)
    throw Error(options_.source + ": target " + std::to_string(class_index) + " is out of range (" +
                std::to_string(classes_) + " values)");
  if (class_index >= 0 && class_index == target_.minus_class)
    throw Error(options_.source + ": the two targets of a difference are both " + std::to_string(class_index));
  target_.class_index = class_index;
}

template <class T>
int Engine<T>::resolve_class(const Tensor<T>& x) {
  if (target_.class_index < 0) {
    const std::vector<double> z = scores(x);
    target_.class_index = static_cast<int>(std::max_element(z.begin(), z.end()) - z.begin());
    if (target_.class_index == target_.minus_class)
      throw Error(options_.source + ": the predicted class " + std::to_string(target_.class_index) +
                  " is also the subtracted one");
  }
  return target_.class_index;
}

template <class T>
void Engine<T>::evaluate(const Tensor<T>& points, std::vector<double>& f, Tensor<T>* grads) {
  if (target_.class_index < 0) throw Error("evaluate: the target class is not resolved");
  const std::size_t per_point = numel(input_shape_);
  bool fits = points.dimension() == input_shape_.size() + 1;
  for (std::size_t d = 0; fits && d < input_shape_.size(); ++d) fits = points.shape()[d + 1] == input_shape_[d];
  if (!fits)
    throw Error(options_.source + ": points have shape " + to_string(points.shape()) + ", expected [P] + " +
                to_string(input_shape_));
  const std::size_t count = points.shape()[0];
  f.resize(count);
  if (grads) grads->resize(points.shape());
  for (std::size_t begin = 0; begin < count; begin += chunk_) {
    const std::size_t n = std::min(chunk_, count - begin);
    forward_points(points.data() + begin * per_point, n);
    for (std::size_t i = 0; i < n; ++i) f[begin + i] = f_of_row(i);
    if (!grads) {
      check_chunk(n, f, begin, nullptr, 0);
      continue;
    }
    seed_rows(n);
    tape_.zero_grad();
    tape_.backward(scores_, seed_);
    const Tensor<T>& g = tape_.grad(network_.input());
    check_chunk(n, f, begin, g.data(), g.size());
    std::copy(g.begin(), g.end(), grads->data() + begin * per_point);
  }
}

template <class T>
double Engine<T>::f_of_row(std::size_t i) const {
  const Tensor<T>& z = tape_.value(scores_);
  const double minus = target_.minus_class >= 0 ? double(z(i, static_cast<std::size_t>(target_.minus_class))) : 0.0;
  return double(z(i, static_cast<std::size_t>(target_.class_index))) - minus;
}

template <class T>
void Engine<T>::forward_chunk(const Tensor<T>& points, std::size_t begin, std::size_t n, Var<T> h,
                              const Tensor<T>* replacement) {
  const std::size_t per_point = numel(input_shape_);
  if (!replacement) return forward_points(points.data() + begin * per_point, n);
  forward_points(points.data() + begin * per_point, n, h);  // up to h, then h's value replaced
  Tensor<T>& value = tape_.mutable_value(h);
  const std::size_t per_h = value.size() / n;
  std::copy(replacement->data() + begin * per_h, replacement->data() + (begin + n) * per_h, value.data());
  tape_.forward_after(h);
}

template <class T>
const Tensor<T>& Engine<T>::node_tangent(std::size_t n, Var<T> h, const Tensor<T>& direction) {
  Shape in_shape{n};
  for (std::size_t d : input_shape_) in_shape.push_back(d);
  directions_.resize(in_shape);
  // [n points] each the direction
  for (std::size_t i = 0; i < n; ++i) std::copy(direction.begin(), direction.end(), directions_.data() + i * direction.size());
  tape_.set_direction(network_.input(), directions_);
  tape_.tangent();
  const Tensor<T>& t = tape_.tangent(h);
  if (!all_finite(t)) throw NonFinite(options_.source + ": the tangent of " + node_name(h.id) + " is not finite");
  return t;
}

template <class T>
void Engine<T>::evaluate_node(const Tensor<T>& points, Var<T> h, std::vector<double>& f, Tensor<T>& grads,
                              const Tensor<T>* replacement, const Tensor<T>* direction, Tensor<T>* tangents) {
  if (target_.class_index < 0) throw Error("evaluate_node: the target class is not resolved");
  if (!tape_.requires_grad(h)) throw Error(tape_.describe(h.id) + " does not depend on the input");
  const std::size_t count = points.shape()[0];
  f.resize(count);
  for (std::size_t begin = 0; begin < count; begin += chunk_) {
    const std::size_t n = std::min(chunk_, count - begin);
    forward_chunk(points, begin, n, h, replacement);
    const std::size_t per_h = tape_.value(h).size() / n;
    if (begin == 0) {  // the outputs take h's per-point shape
      Shape h_shape = tape_.value(h).shape();
      h_shape[0] = count;
      grads.resize(h_shape);
      if (tangents) tangents->resize(h_shape);
    }
    for (std::size_t i = 0; i < n; ++i) f[begin + i] = f_of_row(i);
    seed_rows(n);
    tape_.zero_grad();
    tape_.backward(scores_, seed_);
    const Tensor<T>& g = tape_.grad(h);
    check_chunk(n, f, begin, g.data(), g.size());
    std::copy(g.begin(), g.end(), grads.data() + begin * per_h);
    if (tangents && direction) {
      const Tensor<T>& t = node_tangent(n, h, *direction);
      std::copy(t.begin(), t.end(), tangents->data() + begin * per_h);
    }
  }
}

template <class T>
void Engine<T>::rescale_multipliers(const Tensor<T>& x, const Tensor<T>& reference, Tensor<T>& multipliers,
                                            double& f_x, double& f_reference) {
  if (target_.class_index < 0) throw Error("rescale_multipliers: the target class is not resolved");
  const std::size_t per_point = numel(input_shape_);
  Tensor<T> pair(Shape{2, per_point});  // row 0 the input, row 1 its reference
  std::copy(x.begin(), x.end(), pair.data());
  std::copy(reference.begin(), reference.end(), pair.data() + per_point);
  forward_points(pair.data(), 2);
  f_x = f_of_row(0);
  f_reference = f_of_row(1);
  seed_rows(2);
  for (std::size_t c = 0; c < classes_; ++c) seed_(1, c) = T(0);  // the reference row takes no seed
  tape_.zero_grad();
  tape_.rescale_backward(scores_, seed_);
  const Tensor<T>& g = tape_.grad(network_.input());
  multipliers.resize(x.shape());
  std::copy(g.data(), g.data() + per_point, multipliers.data());
}

template class Engine<float>;
template class Engine<double>;

}  // namespace ax::attr
