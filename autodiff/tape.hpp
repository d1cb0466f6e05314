// The tape: a flat array of nodes recorded in forward order, and the four passes over it.
//
//   record    building an expression appends nodes and computes their values once;
//   forward   replays the tape with new input values (same structure, buffers reused);
//   backward  seeds an output's gradient and walks the array backwards; each op adds (+=) its
//             vector-Jacobian product into the gradients of the inputs that want one;
//   tangent   walks forwards with directions set on inputs and gives every node's
//             directional derivative (Jacobian-vector product).
//
// A node's input ids are always smaller than its own id, so array order is a topological order.
// A node "requires grad" when it is, or depends on, a leaf that asks for gradients; backward
// visits only those nodes, so parameters' gradients are never computed unless asked for.
#pragma once

#include "tensor.hpp"

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace ax {

template <class T>
class Tape;

// The cap on one node's value: at most 2^32 elements (16 GiB of float). A tape refuses a node
// whose shape exceeds it (or its own, lower, limit) before allocating anything.
constexpr std::size_t max_elements = std::size_t(1) << 32;

// Whether a tensor of `shape` holds at most `limit` elements, and so does every stride of it
// (a dimension of 0 counted as 1, so that an empty batch of huge samples is refused too). The
// product is checked for overflow as it is formed.
bool fits_elements(const Shape& shape, std::size_t limit = max_elements);

// A handle on one node of a tape.
template <class T>
struct Var {
  Tape<T>* tape = nullptr;
  int id = -1;
};

// A pair of sizes or steps over the two spatial dimensions of NCHW, [h, w]. One number means
// both, as in PyTorch (`stride = 2`). Signed, so that a negative value can be named in an error.
struct Pair2d {
  std::int64_t h = 0, w = 0;
  Pair2d() = default;
  Pair2d(std::int64_t both) : h(both), w(both) {}  // implicit on purpose: conv2d(x, w, 2)
  Pair2d(std::int64_t h_, std::int64_t w_) : h(h_), w(w_) {}
  bool operator==(const Pair2d& o) const { return h == o.h && w == o.w; }
  bool operator!=(const Pair2d& o) const { return !(*this == o); }
};

// Op attributes, one field per attribute name of the model file (nn/ reads and writes them
// through each op's list of attributes, ops/schema.hpp). Each op documents the fields it reads;
// the rest keep these defaults.
struct Attrs {
  // conv2d and the pools: the window over [H, W]
  Pair2d kernel{1, 1};              // maxpool2d, avgpool2d (conv2d's kernel is its weight's [KH, KW])
  Pair2d stride{1, 1};              // conv2d, pools
  Pair2d padding{0, 0};             // zeros for conv2d and avgpool2d, -inf for maxpool2d
  Pair2d dilation{1, 1};            // conv2d
  std::int64_t groups = 1;          // conv2d
  bool ceil_mode = false;           // pools: output size rounded up (a window starting in the padding is dropped)
  bool count_include_pad = true;    // avgpool2d: the average divides by the padding it covers too
  Pair2d output_size{1, 1};         // adaptive_avgpool2d

  double scale = 1, offset = 0;     // affine: y = scale x + offset
  double negative_slope = 0.01;     // leaky_relu
  double min_val = -1, max_val = 1; // hardtanh
  double eps = 1e-5;                // batchnorm2d, layer_norm
  std::int64_t normalized_ndim = 1; // layer_norm: how many trailing dimensions it normalizes over
  std::string approximate = "none"; // gelu: "none" (erf) or "tanh"
  std::vector<double> mean, stddev; // normalize: one per channel, or one for all channels

  // Axes count the batch dimension. On the tape they are resolved (non-negative); in a model
  // file they are as written (may be negative) and the graph resolves them when it records.
  std::int64_t axis = -1;           // concat, softmax, log_softmax; sum, mean: -1 = all
  bool keep_dim = false;            // sum, mean: keep the reduced axis with size 1
  std::int64_t start_dim = 1;       // flatten (a model-file op: recorded as a reshape)
  std::int64_t start = 0, end = 1;  // slice: the indices [start, end) kept along axis
  xt::svector<long, 6> dims;        // reshape: the per-sample shape (the batch is kept), one -1 allowed;
                                    // constant: the per-sample shape of its value;
                                    // permute: the order of all dimensions, dims[0] = 0 (the batch stays)
};

enum class NodeKind : std::uint8_t { input, parameter, constant, op };

// What an op's output holds along its axis: plain values, or a distribution (softmax gives
// probabilities, log_softmax their logs). The target and the report read it.
enum class Distribution : std::uint8_t { none, probabilities, log_probabilities };

// How an op's output moves when its inputs move along a straight line: what exact Integrated
// Gradients needs to know (attribution/exact).
enum class Linearity : std::uint8_t {
  linear,            // affine in all its inputs together (add, conv2d's input, reshape, avgpool2d, ...)
  multilinear,       // affine in any one input while the others stay fixed (mul, matmul, linear, conv2d)
  linear_in_first,   // affine in input 0 while the others stay fixed (div, batchnorm2d)
  piecewise_linear,  // affine between kinks, which the op's `switches` locates (relu, maxpool2d, ...)
  smooth,            // none of these (sigmoid, tanh, exp, softmax, ...)
};

template <class T>
class OpContext;

// Where, strictly inside (0, 1), a piecewise-linear op switches between its linear pieces while
// its input moves affinely from z0 (at 0) to z1 (at 1): appended to `roots`. z0 and z1 are one
// sample of the op's input; `input` and `output` are the node's shapes (batch first).
template <class T>
using SwitchesFn = void (*)(const Attrs& attrs, const Shape& input, const Shape& output, const T* z0, const T* z1,
                            std::vector<double>& roots);

// What an op is to the tape: its name, its functions and how it bends. Made from the op's struct
// (ops/common.hpp, op_fns).
template <class T>
struct OpFns {
  const char* name;
  Shape (*shape)(const OpContext<T>&);  // output shape from the inputs' shapes; throws Error
  void (*forward)(OpContext<T>&);       // y = f(x)
  void (*backward)(OpContext<T>&);      // gx += J^T gy, for each input that wants a gradient
                                        // (gx = J^T gy where OpContext::gx_unset says so)
  void (*tangent)(OpContext<T>&);       // ty = J tx, inputs without a tangent count as zero
  Linearity linearity = Linearity::smooth;
  SwitchesFn<T> switches = nullptr;     // piecewise_linear ops only
  // DeepLIFT's rescale rule (ops/rescale.hpp): gx += gy * multiplier, on a batch of inputs followed
  // by their references. Null for ops whose backward serves (the affine ones) and ops without a rule.
  void (*rescale)(OpContext<T>&) = nullptr;
  // The output reads only input 0's shape (its batch size), not its values (a learned constant):
  // it does not move when input 0 moves, so it requires a gradient only through the others.
  bool shape_only_first = false;
  // The backward writes (=) an input's gradient that holds no value yet (OpContext::gx_unset)
  // instead of adding to zeros: the tape then leaves it unfilled. False: the tape zero-fills it.
  bool writes_unset_gradients = false;

  // Whether the output depends on the values of input i.
  bool reads(std::size_t i) const { return !(shape_only_first && i == 0); }
};

// Whether an op stays affine when the inputs marked in `varies` move (along a path, or from a
// reference to an input) and the others stay.
inline bool affine_in(Linearity linearity, const std::vector<bool>& varies) {
  switch (linearity) {
    case Linearity::linear: return true;
    case Linearity::multilinear: return std::count(varies.begin(), varies.end(), true) <= 1;
    case Linearity::linear_in_first: return varies.empty() || std::find(varies.begin() + 1, varies.end(), true) == varies.end();
    case Linearity::piecewise_linear:
    case Linearity::smooth: return false;
  }
  return false;
}

template <class T>
struct Node {
  NodeKind kind = NodeKind::op;
  const OpFns<T>* op = nullptr;  // null for leaves
  std::vector<int> inputs;
  Attrs attrs;
  std::string label;             // for leaves and error messages; may be empty
  bool asks_grad = false;        // leaves: the user wants this leaf's gradient
  bool requires_grad = false;    // asks_grad, or depends on a leaf that does
  bool has_tangent = false;      // set by the tangent pass
  bool has_direction = false;    // leaves: a direction was set for the tangent pass
  Tensor<T> value, grad, tangent;
  Tensor<T> aux;                 // op-private buffer kept across passes
  std::vector<std::uint32_t> index;  // op-private integer buffer kept across passes (e.g. argmax)
};

// Counters of the last passes, for tests and benchmarks.
struct TapeStats {
  std::size_t forward_nodes = 0;   // op nodes evaluated by the last forward()
  std::size_t backward_nodes = 0;  // op nodes whose backward ran in the last backward()
  std::size_t tangent_nodes = 0;   // op nodes whose tangent ran in the last tangent()
  // With Tape::set_profiling(true): seconds each node took, by node id, added up over the passes
  // since profiling was turned on (leaves and skipped nodes stay 0).
  std::vector<double> forward_seconds, backward_seconds;
};

template <class T>
class Tape {
 public:
  // ---- record ----
  // A leaf whose value the forward pass may replace; `asks_grad` asks for its gradient.
  Var<T> input(Tensor<T> value, bool asks_grad = true, std::string label = "input");
  // A leaf that holds a weight: no gradient unless asked for.
  Var<T> parameter(Tensor<T> value, bool asks_grad = false, std::string label = "parameter");
  // A leaf that never changes and never takes a gradient.
  Var<T> constant(Tensor<T> value, std::string label = "constant");
  // Appends an op node and computes its value; throws Error (naming the op) if shapes do not fit.
  Var<T> record(const OpFns<T>& op, std::vector<int> inputs, Attrs attrs = {});

  // ---- forward (replay) ----
  // Replace an input's value (its shape may change, e.g. another batch size).
  void set_value(Var<T> leaf, const Tensor<T>& value);
  // Re-evaluate every op node in order. Allocates nothing when shapes are unchanged.
  void forward();
  // Re-evaluate the op nodes up to and including `last` only (e.g. to read one layer's input).
  void forward(Var<T> last);
  // Re-evaluate the op nodes after `node` only: with mutable_value, runs the rest of the network
  // from a value put in place of a hidden node's.
  void forward_after(Var<T> node);
  // Re-evaluate only the listed op nodes, in the order given (ascending ids), leaving every
  // other node's value as it is: a partial pass for callers that put some values in place
  // themselves (exact IG interpolates them along the path).
  void forward_nodes(const std::vector<int>& ids);
  // Any node's value, to overwrite before forward_after(node) (layer attribution). Its shape must
  // stay the same; the next forward() recomputes it.
  Tensor<T>& mutable_value(Var<T> v) { return nodes_[static_cast<std::size_t>(check(v))].value; }

  // ---- backward ----
  // Sets every leaf gradient to zero (intermediate gradients are reset by each backward).
  void zero_grad();
  // Adds seed^T J to the gradients of the leaves that require grad. `seed` has out's shape.
  void backward(Var<T> out, const Tensor<T>& seed);
  // Same with a seed of ones (for a scalar output: d out / d leaf).
  void backward(Var<T> out);
  // A partial pass: seeds for several nodes at once (node id, a tensor of its value's shape), and
  // only op nodes with ids >= stop run; a node below `stop` keeps the gradient added into it,
  // d out / d node with it held as an independent variable (grad() reads it). Exact IG sums
  // such gradients over the pieces of the path that share the network below `stop`.
  void backward(const std::vector<std::pair<int, const Tensor<T>*>>& seeds, int stop);
  // DeepLIFT (rescale rule): the batch holds B inputs followed by their B references, and the
  // values are those of a forward pass on it. Like backward, but every op that is not affine in
  // its varying inputs multiplies by its secant (y - y') / (x - x') instead of its derivative;
  // an op with no rescale rule (softmax, say) throws Error naming its node. Only the input rows
  // of `seed` should be non-zero.
  void rescale_backward(Var<T> out, const Tensor<T>& seed);

  // ---- tangent ----
  // Sets the direction of a leaf for the tangent pass (shape of its value).
  void set_direction(Var<T> leaf, const Tensor<T>& direction);
  void clear_directions();
  // Propagates the directions forwards: every node depending on one gets its tangent.
  void tangent();

  // ---- access ----
  const Tensor<T>& value(Var<T> v) const { return node(v).value; }
  // A leaf's value to change in place (e.g. an optimizer stepping a parameter); run forward()
  // afterwards. Throws for op nodes and constants.
  Tensor<T>& leaf_value(Var<T> leaf);
  const Tensor<T>& grad(Var<T> v) const;      // throws unless v requires grad
  const Tensor<T>& tangent(Var<T> v) const;   // throws unless v has a tangent
  bool requires_grad(Var<T> v) const { return node(v).requires_grad; }
  // Changes whether a leaf asks for its gradient, and updates every node's flag.
  void set_requires_grad(Var<T> leaf, bool asks);

  std::size_t size() const { return nodes_.size(); }
  const Node<T>& node(int id) const { return nodes_.at(static_cast<std::size_t>(id)); }
  const Node<T>& node(Var<T> v) const { return node(check(v)); }
  const TapeStats& stats() const { return stats_; }
  // Times every node's forward and backward into stats() (and resets those times). Off by
  // default: the clock costs about 20 ns a node.
  void set_profiling(bool on);
  // For tests: intermediate gradients join a backward pass filled with NaN instead of unset, so
  // that a backward which leaves part of a gradient unwritten (OpContext::gx_unset) shows.
  void set_poison_unset_gradients(bool on) { poison_unset_ = on; }
  // "node 7 (softmax)" or "node 0 (input 'x')": how errors name a node.
  std::string describe(int id) const;
  // The most elements an op node's value may hold (max_elements by default; lower it to keep a
  // tape within a memory budget). Checked whenever a node's value is sized, before allocating.
  void set_element_limit(std::size_t limit) { element_limit_ = std::min(limit, max_elements); }
  std::size_t element_limit() const { return element_limit_; }

 private:
  friend class OpContext<T>;
  int check(Var<T> v) const;
  Node<T>& leaf(Var<T> v, const char* what, bool writable = false);
  Var<T> add_leaf(NodeKind kind, Tensor<T> value, bool asks_grad, std::string label);
  void evaluate(int id);
  void forward_range(std::size_t begin, std::size_t end);
  void backward_from(const std::pair<int, const Tensor<T>*>* seeds, std::size_t count, int stop, bool rescale);
  void update_requires_grad();
  void update_requires_grad(Node<T>& n);
  void rescale_node(int id, OpContext<T>& ctx);

  std::vector<Node<T>> nodes_;
  // backward: whether a node's gradient is part of this pass, and whether it holds a value yet
  enum Live : char { not_live = 0, holds_value = 1, unset = 2 };
  std::vector<char> live_;
  Tensor<T> ones_;          // backward(out): the seed of ones
  Tensor<T> workspace_;     // OpContext::workspace()
  TapeStats stats_;
  bool profiling_ = false;
  bool poison_unset_ = false;
  std::size_t element_limit_ = max_elements;
};

// What an op sees of its node: input values, its own buffers, and the derivative buffers.
template <class T>
class OpContext {
 public:
  OpContext(Tape<T>& tape, int id)
      : tape_(tape), node_(tape.nodes_[static_cast<std::size_t>(id)]), id_(id) {}

  const Attrs& attrs() const { return node_.attrs; }
  int arity() const { return static_cast<int>(node_.inputs.size()); }
  const char* name() const { return node_.op->name; }

  const Tensor<T>& x(int i) const { return in(i).value; }
  Tensor<T>& y() { return node_.value; }
  const Tensor<T>& y() const { return node_.value; }
  const Tensor<T>& gy() const { return node_.grad; }
  // The gradient of input i to add into, or nullptr when input i takes no gradient.
  Tensor<T>* gx(int i) { Node<T>& n = in(i); return n.requires_grad ? &n.grad : nullptr; }
  // True when gx(i) holds no value yet (not even zeros) and this backward must write every element
  // of it (=) rather than add (+=). Only for ops that declare writes_unset_gradients; an input
  // that appears twice among the op's inputs is never unset.
  bool gx_unset(int i) const {
    return tape_.live_[static_cast<std::size_t>(node_.inputs[static_cast<std::size_t>(i)])] == Tape<T>::unset;
  }
  // The tangent of input i, or nullptr when it is zero.
  const Tensor<T>* tx(int i) const { const Node<T>& n = in(i); return n.has_tangent ? &n.tangent : nullptr; }
  Tensor<T>& ty() { return node_.tangent; }
  Tensor<T>& aux() { return node_.aux; }
  std::vector<std::uint32_t>& index() { return node_.index; }
  // Scratch space shared by all nodes of the tape: valid only during one call of one op
  // (e.g. im2col columns). Resize it as needed; it keeps its capacity.
  Tensor<T>& workspace() { return tape_.workspace_; }

  // Throws Error("<node description>: <message>").
  [[noreturn]] void fail(const std::string& message) const;

 private:
  Node<T>& in(int i) const { return tape_.nodes_[static_cast<std::size_t>(node_.inputs[static_cast<std::size_t>(i)])]; }
  Tape<T>& tape_;
  Node<T>& node_;
  int id_;
};

extern template class Tape<float>;
extern template class Tape<double>;

}  // namespace ax
