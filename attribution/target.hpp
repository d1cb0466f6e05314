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

#include <chrono>
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
  // Bytes for the tape's batch-dependent buffers: sets the chunk of path points evaluated at
  // once, and bounds every node's value for one point (a larger one is refused before it is
  // allocated).
  std::size_t memory_budget = std::size_t(1) << 30;
  std::string source = "model";                      // names the model in messages
  // Work past this instant stops with an Error (TimeLimitExceeded): checked before every chunk
  // of points and wherever check_deadline() is called. Never a partial answer.
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  // Threads of the kernels' parallel regions, set for the constructing thread when the engine
  // is made (kernels::set_threads); 0 leaves the count as it is (OpenMP's default: the cores
  // available to the process). The results are the same bits whatever the count.
  std::size_t threads = 0;
  // The path methods' affine prefix (Engine::begin_line): false runs every point of a line
  // through the whole network, as for scattered points (tests compare the two routes).
  bool affine_prefix = true;
  // A batch norm that alone reads a convolution is folded into it (nn::RecordOptions::
  // fold_batchnorm): one node instead of two, results equal to rounding. Off by default: in
  // float the rounding it changes can carry a ReLU unit at its kink to the other side, and on
  // ResNet-18's IG-50 it saved memory (a third of the bytes a point) but no time.
  bool fold_batchnorm = false;
  std::vector<std::string> keep_nodes;  // hidden nodes that must keep their own values (a --layer)
};

// The deadline of EngineOptions ran out.
struct TimeLimitExceeded : Error {
  using Error::Error;
};

// A value that should be finite is NaN or infinite; the message names the node where it first
// appeared.
struct NonFinite : Error {
  using Error::Error;
};

// The batched evaluation engine every method runs on: the model recorded once on a tape, with
// the target F (TargetSpec) on top; F and its gradients at many points at a time.
template <class T>
class Engine {
 public:
  Engine(const nn::ModelSpec& spec, const TargetSpec& target, const EngineOptions& options = {});

  // The per-sample input shape, e.g. [1, 28, 28], and its range if the model file gives one.
  const Shape& input_shape() const { return input_shape_; }
  const nn::GraphSpec& graph() const { return graph_; }
  // Number of scores per sample (classes) and the class being explained (-1 until resolved).
  std::size_t classes() const { return classes_; }
  int class_index() const { return target_.class_index; }
  const TargetSpec& target() const { return target_; }
  // Sets the class to the network's prediction at x when none was given; returns it.
  int resolve_class(const Tensor<T>& x);
  // Explains another class from now on (-1: the prediction at the next input resolve_class
  // sees). One engine explains many inputs this way, its tape recorded once: with -1 before
  // each input, each gets its own predicted class, as a fresh engine would give it.
  void retarget(int class_index);
  // The scores (logits, probabilities or log-probabilities) at one input x [input shape].
  std::vector<double> scores(const Tensor<T>& x);

  // F at each of the P points [P, input shape] and, when grads is not null, dF/dx [P, input
  // shape]. Points are evaluated `chunk()` at a time on the same tape.
  void evaluate(const Tensor<T>& points, std::vector<double>& f, Tensor<T>* grads);
  // DeepLIFT (rescale rule): F at x and at the reference, and the multipliers [input shape] whose
  // product with (x - reference) sums to their difference: one forward pass of the batch
  // [x, reference] and one rescale pass (Tape::rescale_backward). Throws Error naming a node on
  // the way to the target that has no rescale rule (softmax: explain logits).
  void rescale_multipliers(const Tensor<T>& x, const Tensor<T>& reference, Tensor<T>& multipliers, double& f_x,
                           double& f_reference);
  // For a hidden node h: F at each point and dF/dh [P, h's per-sample shape]. With `replacement`
  // [P, h's shape], h's value is replaced by it while the rest of the network sees the points:
  // layer IG's path through h. With `direction` (the input's shape) and `tangents`, also dh/da
  // along the direction at each point: the tangent pass (conductance).
  void evaluate_node(const Tensor<T>& points, Var<T> h, std::vector<double>& f, Tensor<T>& grads,
                     const Tensor<T>* replacement = nullptr, const Tensor<T>* direction = nullptr,
                     Tensor<T>* tangents = nullptr);
  // ---- points on one straight line: the path methods' affine prefix ----
  // The op nodes before the first one that moves with the input but not affinely (a relu, a
  // max-pool; each op's descriptor says its Linearity) are affine along any straight line
  // x(a) = x' + a (x - x'): their values at the line's points are z(0) + a (z(1) - z(0)), so a
  // line evaluates them at its two ends only, and runs the rest of the network from the prefix's
  // frontier (the nodes below it read past it). The backward pass through the prefix is one
  // linear map at every point, so it runs once, on a sum over points of frontier gradients.
  // Without a prefix (the first node bends, the whole network is affine, or the option is off)
  // a line's points run whole and its frontier is the input.
  bool has_affine_prefix() const { return prefix_stop_ >= 0; }
  // The first node past the prefix (-1: none) and the frontier, by tape id, ascending.
  int prefix_stop() const { return prefix_stop_; }
  const std::vector<int>& frontier() const { return frontier_; }
  // Starts the line from x' = baseline to x: the frontier's values at its two ends.
  void begin_line(const Tensor<T>& x, const Tensor<T>& baseline);
  // Values per point at the frontier (the nodes' per-sample values one after another), and
  // their values at a = 0 and a = 1.
  std::size_t line_width() const { return line_start_.size(); }
  const std::vector<T>& line_start() const { return line_start_; }
  const std::vector<T>& line_end() const { return line_end_; }
  // F at the n points x(alphas[i]) into f, and dF/dz at the frontier [n, line_width()], row by
  // row at the pointer returned (valid until the engine runs again); at most chunk() points.
  const T* evaluate_line(const double* alphas, std::size_t n, std::vector<double>& f);
  // The input gradient [input shape] whose frontier gradient is `frontier_sum` [line_width()]:
  // one backward pass through the prefix (a copy without one).
  void line_gradient(const T* frontier_sum, Tensor<T>& out);

  std::size_t chunk() const { return chunk_; }
  std::size_t memory_budget() const { return options_.memory_budget; }
  // Estimated bytes per point of the tape's buffers (values, gradients, tangents).
  std::size_t bytes_per_point() const { return bytes_per_point_; }
  std::size_t evaluations() const { return evaluations_; }  // points evaluated so far
  // Counts points a caller evaluated on the tape itself (exact IG's partial passes).
  void count_evaluations(std::size_t n) { evaluations_ += n; }

  // Loads n points [n, input shape] into the input and runs the forward pass up to `last` (the
  // whole tape when last.id < 0). For callers that read node values themselves (exact IG).
  // Checks the deadline first.
  void forward_points(const T* points, std::size_t n, Var<T> last = {});
  // Throws TimeLimitExceeded once the options' deadline has passed; a clock read, so cheap
  // enough for any loop over points or pieces.
  void check_deadline() const;
  // The graph's name of a tape node ("conv1"), or the tape's description of a node the target
  // added; for messages.
  std::string node_name(int id) const;

  Tape<T>& tape() { return tape_; }
  nn::Network<T>& network() { return network_; }
  Var<T> score_var() const { return scores_; }

 private:
  void seed_rows(std::size_t n);
  void find_affine_prefix();
  // F of row i of the last forward pass: z_k, less z_j for a difference.
  double f_of_row(std::size_t i) const;
  // evaluate_node's steps for a chunk of n points starting at `begin`: the forward pass (with h's
  // value replaced when `replacement` is given), and the tangent of h along `direction`.
  void forward_chunk(const Tensor<T>& points, std::size_t begin, std::size_t n, Var<T> h, const Tensor<T>* replacement);
  const Tensor<T>& node_tangent(std::size_t n, Var<T> h, const Tensor<T>& direction);
  // After a chunk of n points: throws NonFinite naming the first node whose value (or, in the
  // backward pass, whose gradient) is NaN or infinite, when an F value or a gradient is.
  void check_chunk(std::size_t n, const std::vector<double>& f, std::size_t begin, const T* grads, std::size_t count);
  [[noreturn]] void locate_non_finite(const std::string& what) const;

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
  Tensor<T> seed_;
  Tensor<T> directions_;  // the tangent pass's direction at every point of a chunk
  std::vector<std::string> names_;  // by tape id: the graph's node names
  // the affine prefix (find_affine_prefix), and the line begun last (begin_line)
  int prefix_stop_ = -1;
  std::vector<int> frontier_;
  std::vector<int> past_prefix_;  // the op nodes a line's points run, ascending
  bool line_whole_ = true;        // this line's points run whole (no prefix, or its ends not finite)
  Tensor<T> line_x_;
  std::vector<T> line_start_, line_end_;
  std::vector<Tensor<T>> frontier_seeds_;
  Tensor<T> line_points_, line_grads_;
};

extern template class Engine<float>;
extern template class Engine<double>;

}  // namespace ax::attr
