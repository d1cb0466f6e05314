// The target: the scalar F being explained, and the engine every method runs on: F and dF/dx
// at a batch of points, evaluated on one recorded tape in chunks whose size comes from a
// memory budget.
//
//   logit      F = z_k, the k-th value of the output (or of a named node), flattened per sample
//   prob       F = softmax(z)_k
//   logprob    F = log_softmax(z)_k
//   difference F = z_k - z_j (of logits, probabilities or log-probabilities alike)
// With no class given, k is the class the network predicts for the input being explained.
#pragma once

#include "../nn/graph.hpp"

#include <string>
#include <vector>

namespace ax::attr {

enum class Output { logit, prob, logprob };
const char* output_name(Output output);
Output parse_output(const std::string& name);  // "logit", "prob", "logprob"

struct TargetSpec {
  std::string node;              // empty: the graph's output
  Output output = Output::logit;
  int class_index = -1;          // -1: the predicted class at the input
  int minus_class = -1;          // >= 0: explain z_k - z_minus_class
};

struct EngineOptions {
  std::size_t memory_budget = std::size_t(1) << 30;  // bytes for the tape's batch-dependent buffers
  std::string source = "model";                      // names the model in messages
};

template <class T>
class TargetFunction {
 public:
  TargetFunction(const nn::ModelSpec& spec, const TargetSpec& target, const EngineOptions& options = {});

  // The per-sample input shape, e.g. [1, 28, 28], and its range if the model file gives one.
  const Shape& input_shape() const { return input_shape_; }
  const nn::GraphSpec& graph() const { return graph_; }
  // Number of scores per sample (classes) and the class being explained (-1 until resolved).
  std::size_t classes() const { return classes_; }
  int class_index() const { return target_.class_index; }
  const TargetSpec& target() const { return target_; }
  // Sets the class to the network's prediction at x when none was given; returns it.
  int resolve_class(const Tensor<T>& x);
  // The scores (logits, probabilities or log-probabilities) at one input x [input shape].
  std::vector<double> scores(const Tensor<T>& x);

  // F at each of the P points [P, input shape] and, when grads is not null, dF/dx [P, input
  // shape]. Points are evaluated `chunk()` at a time on the same tape.
  void evaluate(const Tensor<T>& points, std::vector<double>& f, Tensor<T>* grads);
  // For a hidden node h: F at each point and dF/dh [P, h's per-sample shape]. With `replacement`
  // [P, h's shape], h's value is replaced by it while the rest of the network sees the points:
  // layer IG's path through h. With `direction` (the input's shape) and `tangents`, also dh/da
  // along the direction at each point: the tangent pass (conductance).
  void evaluate_node(const Tensor<T>& points, Var<T> h, std::vector<double>& f, Tensor<T>& grads,
                     const Tensor<T>* replacement = nullptr, const Tensor<T>* direction = nullptr,
                     Tensor<T>* tangents = nullptr);
  std::size_t chunk() const { return chunk_; }
  std::size_t memory_budget() const { return options_.memory_budget; }
  // Estimated bytes per point of the tape's buffers (values, gradients, tangents).
  std::size_t bytes_per_point() const { return bytes_per_point_; }
  std::size_t evaluations() const { return evaluations_; }  // points evaluated so far
  // Counts points a caller evaluated on the tape itself (exact IG's partial passes).
  void count_evaluations(std::size_t n) { evaluations_ += n; }

  // Loads n points [n, input shape] into the input and runs the forward pass up to `last` (the
  // whole tape when last.id < 0). For callers that read node values themselves (exact IG).
  void forward_points(const T* points, std::size_t n, Var<T> last = {});

  Tape<T>& tape() { return tape_; }
  nn::Network<T>& network() { return network_; }
  Var<T> score_var() const { return scores_; }

 private:
  void seed_rows(std::size_t n);

  nn::GraphSpec graph_;
  TargetSpec target_;
  EngineOptions options_;
  Tape<T> tape_;
  nn::Network<T> network_;
  Var<T> scores_;       // [B, classes]
  Shape input_shape_;   // per sample
  std::size_t classes_ = 0;
  std::size_t chunk_ = 1;
  std::size_t bytes_per_point_ = 0;
  std::size_t evaluations_ = 0;
  Tensor<T> batch_, seed_;
};

extern template class TargetFunction<float>;
extern template class TargetFunction<double>;

}  // namespace ax::attr
