#include "tape.hpp"

#include "kernels/activation.hpp"

#include <algorithm>
#include <chrono>
#include <limits>

namespace ax {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

}  // namespace

bool fits_elements(const Shape& shape, std::size_t limit) {
  std::size_t product = 1;
  for (std::size_t d : shape) {
    const std::size_t factor = std::max<std::size_t>(d, 1);
    if (factor > limit / product) return false;
    product *= factor;
  }
  return true;
}

std::string to_string(const Shape& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

template <class T>
std::string Tape<T>::describe(int id) const {
  const Node<T>& n = node(id);
  std::string s = "node " + std::to_string(id) + " (";
  switch (n.kind) {
    case NodeKind::input: s += "input"; break;
    case NodeKind::parameter: s += "parameter"; break;
    case NodeKind::constant: s += "constant"; break;
    case NodeKind::op: s += n.op->name; break;
  }
  if (!n.label.empty() && n.kind != NodeKind::op) s += " '" + n.label + "'";
  return s + ")";
}

template <class T>
void OpContext<T>::fail(const std::string& message) const {
  throw Error(tape_.describe(id_) + ": " + message);
}

template <class T>
int Tape<T>::check(Var<T> v) const {
  if (v.tape != this || v.id < 0 || static_cast<std::size_t>(v.id) >= nodes_.size())
    throw Error("variable " + std::to_string(v.id) + " does not belong to this tape");
  return v.id;
}

template <class T>
Node<T>& Tape<T>::leaf(Var<T> v, const char* what, bool writable) {
  Node<T>& n = nodes_[static_cast<std::size_t>(check(v))];
  if (n.kind == NodeKind::op) throw Error(std::string(what) + ": " + describe(v.id) + " is not a leaf");
  if (writable && n.kind == NodeKind::constant) throw Error(std::string(what) + ": " + describe(v.id) + " is a constant");
  return n;
}

// ---- record ----

template <class T>
Var<T> Tape<T>::add_leaf(NodeKind kind, Tensor<T> value, bool asks_grad, std::string label) {
  Node<T> n;
  n.kind = kind;
  n.label = std::move(label);
  n.asks_grad = n.requires_grad = asks_grad;
  n.value = std::move(value);
  nodes_.push_back(std::move(n));
  return {this, static_cast<int>(nodes_.size() - 1)};
}

template <class T>
Var<T> Tape<T>::input(Tensor<T> value, bool asks_grad, std::string label) {
  return add_leaf(NodeKind::input, std::move(value), asks_grad, std::move(label));
}

template <class T>
Var<T> Tape<T>::parameter(Tensor<T> value, bool asks_grad, std::string label) {
  return add_leaf(NodeKind::parameter, std::move(value), asks_grad, std::move(label));
}

template <class T>
Var<T> Tape<T>::constant(Tensor<T> value, std::string label) {
  return add_leaf(NodeKind::constant, std::move(value), false, std::move(label));
}

template <class T>
Var<T> Tape<T>::record(const OpFns<T>& op, std::vector<int> inputs, Attrs attrs) {
  const int id = static_cast<int>(nodes_.size());
  for (int in : inputs)
    if (in < 0 || in >= id) throw Error(std::string(op.name) + ": input " + std::to_string(in) + " is not on this tape");
  Node<T> n;
  n.op = &op;
  n.inputs = std::move(inputs);
  n.attrs = std::move(attrs);
  nodes_.push_back(std::move(n));
  update_requires_grad(nodes_.back());
  try {
    evaluate(id);
  } catch (...) {
    nodes_.pop_back();  // a node whose shapes do not fit is not kept
    throw;
  }
  return {this, id};
}

// ---- forward ----

template <class T>
void Tape<T>::evaluate(int id) {
  OpContext<T> ctx(*this, id);
  Node<T>& n = nodes_[static_cast<std::size_t>(id)];
  const Shape shape = n.op->shape(ctx);
  if (!fits_elements(shape, element_limit_))
    throw Error(describe(id) + ": output shape " + to_string(shape) + " holds more than " + std::to_string(element_limit_) +
                " elements" + (element_limit_ < max_elements ? " (the memory budget's limit)" : " (the tape's limit, 2^32)"));
  n.value.resize(shape);  // no allocation when the shape is unchanged
  if (n.value.size() == 0) return;  // nothing to compute (a batch of 0 records shapes only), and no scratch space
  n.op->forward(ctx);
}

template <class T>
void Tape<T>::set_value(Var<T> v, const Tensor<T>& value) {
  Node<T>& n = leaf(v, "set_value", true);
  n.value.resize(value.shape());
  std::copy(value.data(), value.data() + value.size(), n.value.data());
}

template <class T>
Tensor<T>& Tape<T>::leaf_value(Var<T> v) {
  return leaf(v, "leaf_value", true).value;
}

template <class T>
void Tape<T>::forward() {
  if (!nodes_.empty()) forward(Var<T>{this, static_cast<int>(nodes_.size() - 1)});
}

template <class T>
void Tape<T>::forward(Var<T> last) {
  forward_range(0, static_cast<std::size_t>(check(last)) + 1);
}

template <class T>
void Tape<T>::forward_after(Var<T> node) {
  forward_range(static_cast<std::size_t>(check(node)) + 1, nodes_.size());
}

template <class T>
void Tape<T>::forward_nodes(const std::vector<int>& ids) {
  stats_.forward_nodes = 0;
  if (profiling_) stats_.forward_seconds.resize(nodes_.size());
  for (int id : ids) {
    if (node(id).kind != NodeKind::op) throw Error("forward_nodes: " + describe(id) + " is not an op node");
    const auto start = profiling_ ? Clock::now() : Clock::time_point{};
    evaluate(id);
    if (profiling_) stats_.forward_seconds[static_cast<std::size_t>(id)] += seconds_since(start);
    ++stats_.forward_nodes;
  }
}

template <class T>
void Tape<T>::forward_range(std::size_t begin, std::size_t end) {
  stats_.forward_nodes = 0;
  if (profiling_) stats_.forward_seconds.resize(nodes_.size());  // nodes recorded since
  for (std::size_t id = begin; id < end; ++id) {
    if (nodes_[id].kind != NodeKind::op) continue;
    const auto start = profiling_ ? Clock::now() : Clock::time_point{};
    evaluate(static_cast<int>(id));
    if (profiling_) stats_.forward_seconds[id] += seconds_since(start);
    ++stats_.forward_nodes;
  }
}

template <class T>
void Tape<T>::set_profiling(bool on) {
  profiling_ = on;
  stats_.forward_seconds.assign(on ? nodes_.size() : 0, 0.0);
  stats_.backward_seconds.assign(on ? nodes_.size() : 0, 0.0);
}

// ---- backward ----

template <class T>
void Tape<T>::zero_grad() {
  for (Node<T>& n : nodes_)
    if (n.kind != NodeKind::op && n.requires_grad) resize_zero(n.grad, n.value.shape());
}

template <class T>
void Tape<T>::backward(Var<T> out, const Tensor<T>& seed) {
  const std::pair<int, const Tensor<T>*> one{check(out), &seed};
  backward_from(&one, 1, 0, false);  // no vector: the steady state allocates nothing
}

template <class T>
void Tape<T>::backward(const std::vector<std::pair<int, const Tensor<T>*>>& seeds, int stop) {
  backward_from(seeds.data(), seeds.size(), stop, false);
}

template <class T>
void Tape<T>::rescale_backward(Var<T> out, const Tensor<T>& seed) {
  const std::pair<int, const Tensor<T>*> one{check(out), &seed};
  backward_from(&one, 1, 0, true);
}

// An op's step of the rescale pass: its rule, or its backward when it is affine in the inputs that
// vary (a parameter does not).
template <class T>
void Tape<T>::rescale_node(int id, OpContext<T>& ctx) {
  const Node<T>& n = nodes_[static_cast<std::size_t>(id)];
  if (n.op->rescale) return n.op->rescale(ctx);
  std::vector<bool> varies;
  for (int in : n.inputs) varies.push_back(nodes_[static_cast<std::size_t>(in)].requires_grad);
  if (!affine_in(n.op->linearity, varies))
    throw Error("DeepLIFT: " + describe(id) + " has no rescale rule (it is neither affine nor elementwise)");
  n.op->backward(ctx);
}

template <class T>
void Tape<T>::backward_from(const std::pair<int, const Tensor<T>*>* seeds, std::size_t count, int stop, bool rescale) {
  int top = -1;
  for (std::size_t s = 0; s < count; ++s) {
    const auto& [id, seed] = seeds[s];
    const Node<T>& o = node(id);
    if (seed->shape() != o.value.shape())
      throw Error("backward: seed shape " + to_string(seed->shape()) + " differs from " + describe(id) +
                  "'s shape " + to_string(o.value.shape()));
    if (!o.requires_grad) throw Error("backward: " + describe(id) + " depends on no leaf that requires grad");
    top = std::max(top, id);
  }

  // Leaves keep (accumulate) their gradients until zero_grad(); a leaf that has none yet, or
  // whose value changed shape, starts from zero.
  for (Node<T>& n : nodes_)
    if (n.kind != NodeKind::op && n.requires_grad && n.grad.shape() != n.value.shape())
      resize_zero(n.grad, n.value.shape());

  // An intermediate's gradient joins the pass unset: sized, not filled. Its first writer either
  // writes it whole (an op that declares writes_unset_gradients) or finds it zero-filled just
  // before it adds (any other op): no pass over memory that the next one overwrites.
  live_.assign(nodes_.size(), not_live);  // keeps capacity: no allocation after the first call
  auto make_live = [&](int id) {
    Node<T>& n = nodes_[static_cast<std::size_t>(id)];
    char& state = live_[static_cast<std::size_t>(id)];
    if (state != not_live) return;
    if (n.kind == NodeKind::op) {  // intermediates restart from nothing
      n.grad.resize(n.value.shape());
      if (poison_unset_) kernels::fill(n.grad.data(), n.grad.size(), std::numeric_limits<T>::quiet_NaN());
      state = unset;
    } else {
      state = holds_value;  // leaves keep what they hold
    }
  };
  auto zero_if_unset = [&](int id) {
    char& state = live_[static_cast<std::size_t>(id)];
    if (state != unset) return;
    Tensor<T>& g = nodes_[static_cast<std::size_t>(id)].grad;
    kernels::fill(g.data(), g.size(), T(0));
    state = holds_value;
  };
  for (std::size_t s = 0; s < count; ++s) {
    const auto& [id, seed] = seeds[s];
    make_live(id);
    zero_if_unset(id);
    Node<T>& o = nodes_[static_cast<std::size_t>(id)];
    for (std::size_t i = 0; i < seed->size(); ++i) o.grad.data()[i] += seed->data()[i];
  }

  stats_.backward_nodes = 0;
  if (profiling_) stats_.backward_seconds.resize(nodes_.size());
  for (int id = top; id >= std::max(stop, 0); --id) {
    Node<T>& n = nodes_[static_cast<std::size_t>(id)];
    if (!live_[static_cast<std::size_t>(id)] || n.kind != NodeKind::op) continue;
    zero_if_unset(id);  // no consumer wrote it (an empty consumer): its inputs receive zeros
    for (int in : n.inputs)
      if (nodes_[static_cast<std::size_t>(in)].requires_grad) make_live(in);
    if (n.value.size() == 0) continue;  // an empty output adds nothing to its inputs' gradients
    // What this op cannot write unset is filled now: all its inputs for a rescale rule or an op
    // that only adds, and an input it reads twice (x * x adds to one gradient twice).
    const bool writes_unset = !rescale && n.op->writes_unset_gradients;
    for (std::size_t i = 0; i < n.inputs.size(); ++i) {
      const int in = n.inputs[i];
      if (!writes_unset || std::count(n.inputs.begin(), n.inputs.end(), in) > 1) zero_if_unset(in);
    }
    OpContext<T> ctx(*this, id);
    const auto start = profiling_ ? Clock::now() : Clock::time_point{};
    if (rescale) rescale_node(id, ctx);
    else n.op->backward(ctx);
    if (profiling_) stats_.backward_seconds[static_cast<std::size_t>(id)] += seconds_since(start);
    ++stats_.backward_nodes;
    for (int in : n.inputs)
      if (live_[static_cast<std::size_t>(in)] == unset) live_[static_cast<std::size_t>(in)] = holds_value;
  }
  // Gradients the pass reached but did not write (below `stop`, or behind an empty output) are zero.
  for (std::size_t id = 0; id < nodes_.size(); ++id) zero_if_unset(static_cast<int>(id));
}

template <class T>
void Tape<T>::backward(Var<T> out) {
  ones_.resize(node(out).value.shape());  // kept on the tape: no allocation in the steady state
  ones_.fill(T(1));
  backward(out, ones_);
}

template <class T>
const Tensor<T>& Tape<T>::grad(Var<T> v) const {
  const Node<T>& n = node(v);
  if (!n.requires_grad) throw Error("grad: " + describe(v.id) + " does not require grad");
  if (n.grad.shape() != n.value.shape()) throw Error("grad: " + describe(v.id) + " has no gradient yet; run backward");
  return n.grad;
}

template <class T>
void Tape<T>::set_requires_grad(Var<T> v, bool asks) {
  Node<T>& n = leaf(v, "set_requires_grad");
  if (n.kind == NodeKind::constant && asks) throw Error("set_requires_grad: " + describe(v.id) + " is a constant");
  n.asks_grad = asks;
  update_requires_grad();
}

template <class T>
void Tape<T>::update_requires_grad() {
  for (Node<T>& n : nodes_) {
    if (n.kind != NodeKind::op) {
      n.requires_grad = n.asks_grad;
      continue;
    }
    update_requires_grad(n);
  }
}

// An op node requires a gradient when an input whose values it reads does.
template <class T>
void Tape<T>::update_requires_grad(Node<T>& n) {
  n.requires_grad = false;
  for (std::size_t i = 0; i < n.inputs.size(); ++i)
    n.requires_grad = n.requires_grad || (n.op->reads(i) && nodes_[static_cast<std::size_t>(n.inputs[i])].requires_grad);
}

// ---- tangent ----

template <class T>
void Tape<T>::set_direction(Var<T> v, const Tensor<T>& direction) {
  Node<T>& n = leaf(v, "set_direction");
  if (direction.shape() != n.value.shape())
    throw Error("set_direction: direction shape " + to_string(direction.shape()) + " differs from " +
                describe(v.id) + "'s shape " + to_string(n.value.shape()));
  n.tangent.resize(direction.shape());
  std::copy(direction.data(), direction.data() + direction.size(), n.tangent.data());
  n.has_direction = true;
}

template <class T>
void Tape<T>::clear_directions() {
  for (Node<T>& n : nodes_) n.has_direction = n.has_tangent = false;
}

template <class T>
void Tape<T>::tangent() {
  stats_.tangent_nodes = 0;
  for (std::size_t id = 0; id < nodes_.size(); ++id) {
    Node<T>& n = nodes_[id];
    if (n.kind != NodeKind::op) {
      n.has_tangent = n.has_direction && n.tangent.shape() == n.value.shape();
      continue;
    }
    n.has_tangent = false;
    for (int in : n.inputs) n.has_tangent = n.has_tangent || nodes_[static_cast<std::size_t>(in)].has_tangent;
    if (!n.has_tangent) continue;
    n.tangent.resize(n.value.shape());
    if (n.value.size() == 0) continue;
    OpContext<T> ctx(*this, static_cast<int>(id));
    n.op->tangent(ctx);
    ++stats_.tangent_nodes;
  }
}

template <class T>
const Tensor<T>& Tape<T>::tangent(Var<T> v) const {
  const Node<T>& n = node(v);
  if (!n.has_tangent) throw Error("tangent: " + describe(v.id) + " has no tangent; set a direction on a leaf it depends on and run tangent()");
  return n.tangent;
}

template class Tape<float>;
template class Tape<double>;
template class OpContext<float>;
template class OpContext<double>;

}  // namespace ax
