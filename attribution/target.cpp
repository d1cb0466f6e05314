#include "target.hpp"

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

nn::RecordOptions record_options(const EngineOptions& options) {
  nn::RecordOptions o;
  o.batch = 1;
  o.input_requires_grad = true;
  o.parameters_require_grad = false;
  o.source = options.source;
  return o;
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
TargetFunction<T>::TargetFunction(const nn::ModelSpec& spec, const TargetSpec& target, const EngineOptions& options)
    : graph_(spec.graph), target_(target), options_(options), network_(spec, tape_, record_options(options)) {
  const std::string node_name = target.node.empty() ? spec.graph.output : target.node;
  Var<T> z = network_.node(node_name);
  const Shape& z_shape = tape_.value(z).shape();
  if (z_shape.size() == 1) z = reshape(z, {1});          // one value per sample
  else if (z_shape.size() > 2) z = flatten(z, 1);        // the target indexes the flat vector
  if (target.output != Output::logit) {
    for (const nn::NodeSpec& n : spec.graph.nodes)
      if (const ops::OpInfo* op = ops::find_file_op(n.op); n.name == node_name && op && op->outputs_distribution)
        throw Error(options.source + ": --output " + output_name(target.output) + " is refused: node '" + node_name +
                    "' is already a " + n.op);
    z = target.output == Output::prob ? softmax(z, 1) : log_softmax(z, 1);
  }
  scores_ = z;
  classes_ = tape_.value(scores_).shape()[1];
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
  chunk_ = std::max<std::size_t>(1, options.memory_budget / bytes_per_point_);
}

template <class T>
void TargetFunction<T>::seed_rows(std::size_t n) {
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
void TargetFunction<T>::forward_points(const T* points, std::size_t n, Var<T> last) {
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
std::vector<double> TargetFunction<T>::scores(const Tensor<T>& x) {
  if (x.size() != numel(input_shape_))
    throw Error(options_.source + ": input has shape " + to_string(x.shape()) + ", the model expects " +
                to_string(input_shape_));
  forward_points(x.data(), 1);
  const Tensor<T>& z = tape_.value(scores_);
  return std::vector<double>(z.begin(), z.end());
}

template <class T>
int TargetFunction<T>::resolve_class(const Tensor<T>& x) {
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
void TargetFunction<T>::evaluate(const Tensor<T>& points, std::vector<double>& f, Tensor<T>* grads) {
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
  const std::size_t k = static_cast<std::size_t>(target_.class_index);
  for (std::size_t begin = 0; begin < count; begin += chunk_) {
    const std::size_t n = std::min(chunk_, count - begin);
    forward_points(points.data() + begin * per_point, n);
    const Tensor<T>& z = tape_.value(scores_);
    for (std::size_t i = 0; i < n; ++i)
      f[begin + i] = double(z(i, k)) - (target_.minus_class >= 0 ? double(z(i, static_cast<std::size_t>(target_.minus_class))) : 0.0);
    if (!grads) continue;
    seed_rows(n);
    tape_.zero_grad();
    tape_.backward(scores_, seed_);
    const Tensor<T>& g = tape_.grad(network_.input());
    std::copy(g.begin(), g.end(), grads->data() + begin * per_point);
  }
}

template <class T>
void TargetFunction<T>::evaluate_node(const Tensor<T>& points, Var<T> h, std::vector<double>& f, Tensor<T>& grads,
                                      const Tensor<T>* replacement, const Tensor<T>* direction, Tensor<T>* tangents) {
  if (target_.class_index < 0) throw Error("evaluate_node: the target class is not resolved");
  if (!tape_.requires_grad(h)) throw Error(tape_.describe(h.id) + " does not depend on the input");
  const std::size_t per_point = numel(input_shape_), count = points.shape()[0];
  const std::size_t k = static_cast<std::size_t>(target_.class_index);
  f.resize(count);
  Shape h_shape{count};
  Tensor<T> rows;
  for (std::size_t begin = 0; begin < count; begin += chunk_) {
    const std::size_t n = std::min(chunk_, count - begin);
    if (replacement) {
      forward_points(points.data() + begin * per_point, n, h);
      Tensor<T>& value = tape_.mutable_value(h);
      std::copy(replacement->data() + begin * (value.size() / n), replacement->data() + (begin + n) * (value.size() / n),
                value.data());
      tape_.forward_after(h);
    } else {
      forward_points(points.data() + begin * per_point, n);
    }
    const std::size_t per_h = tape_.value(h).size() / n;
    if (begin == 0) {
      const Shape& s = tape_.value(h).shape();
      h_shape.assign(s.begin(), s.end());
      h_shape[0] = count;
      grads.resize(h_shape);
      if (tangents) tangents->resize(h_shape);
    }
    const Tensor<T>& z = tape_.value(scores_);
    for (std::size_t i = 0; i < n; ++i)
      f[begin + i] = double(z(i, k)) - (target_.minus_class >= 0 ? double(z(i, static_cast<std::size_t>(target_.minus_class))) : 0.0);
    seed_rows(n);
    tape_.zero_grad();
    tape_.backward(scores_, seed_);
    const Tensor<T>& g = tape_.grad(h);
    std::copy(g.begin(), g.end(), grads.data() + begin * per_h);
    if (tangents && direction) {
      Shape in_shape{n};
      for (std::size_t d : input_shape_) in_shape.push_back(d);
      rows.resize(in_shape);
      for (std::size_t i = 0; i < n; ++i) std::copy(direction->begin(), direction->end(), rows.data() + i * per_point);
      tape_.set_direction(network_.input(), rows);
      tape_.tangent();
      const Tensor<T>& t = tape_.tangent(h);
      std::copy(t.begin(), t.end(), tangents->data() + begin * per_h);
    }
  }
}

template class TargetFunction<float>;
template class TargetFunction<double>;

}  // namespace ax::attr
