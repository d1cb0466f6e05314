#include "graph.hpp"

#include <algorithm>
#include <cstdio>

namespace ax::nn {
namespace {

Shape to_shape(const std::vector<std::size_t>& dims) {
  Shape s;
  for (std::size_t d : dims) s.push_back(d);
  return s;
}

template <class T>
Tensor<T> to_tensor(const TensorData& data) {
  Tensor<T> t(to_shape(data.shape));
  std::transform(data.values.begin(), data.values.end(), t.begin(), [](double v) { return static_cast<T>(v); });
  return t;
}

// Records one node; `fail` throws with the node named.
template <class T>
class NodeRecorder {
 public:
  NodeRecorder(const ModelSpec& spec, const NodeSpec& node, Tape<T>& tape, const RecordOptions& options,
               std::vector<std::pair<std::string, Var<T>>>& parameters)
      : spec_(spec), node_(node), tape_(tape), options_(options), parameters_(parameters) {}

  [[noreturn]] void fail(const std::string& what) const {
    throw Error(options_.source + ": node '" + node_.name + "': " + what);
  }

  bool has(const std::string& param) const { return spec_.tensors.count(node_.name + "." + param) > 0; }

  // The parameter `<node>.<param>` as a leaf, after checking its shape against `expected`
  // (a 0 in `expected` accepts any size there).
  Var<T> parameter(const std::string& param, const Shape& expected) {
    const std::string name = node_.name + "." + param;
    const auto found = spec_.tensors.find(name);
    if (found == spec_.tensors.end()) fail("parameter '" + name + "' is missing");
    const Shape shape = to_shape(found->second.shape);
    bool fits = shape.size() == expected.size();
    for (std::size_t d = 0; fits && d < shape.size(); ++d) fits = expected[d] == 0 || expected[d] == shape[d];
    if (!fits) {
      std::string want = "[";
      for (std::size_t d = 0; d < expected.size(); ++d)
        want += (d ? ", " : "") + (expected[d] ? std::to_string(expected[d]) : std::string("*"));
      fail("parameter '" + name + "' has shape " + to_string(shape) + ", expected " + want + "]");
    }
    if (found->second.values.size() != numel(shape)) fail("parameter '" + name + "' is not floating point");
    const Var<T> v = tape_.parameter(to_tensor<T>(found->second), options_.parameters_require_grad, name);
    parameters_.emplace_back(name, v);
    return v;
  }

  // An axis as written (batch included, may be negative) resolved against a rank; the batch
  // dimension is refused.
  int axis(std::int64_t written, std::size_t rank, const char* what) const {
    const std::int64_t r = static_cast<std::int64_t>(rank);
    const std::int64_t resolved = written < 0 ? written + r : written;
    if (resolved < 0 || resolved >= r)
      fail(std::string(what) + " " + std::to_string(written) + " is out of range for rank " + std::to_string(rank));
    if (resolved == 0) fail(std::string(what) + " " + std::to_string(written) + " names the batch dimension");
    return static_cast<int>(resolved);
  }

  const NodeSpec& spec() const { return node_; }

 private:
  const ModelSpec& spec_;
  const NodeSpec& node_;
  Tape<T>& tape_;
  const RecordOptions& options_;
  std::vector<std::pair<std::string, Var<T>>>& parameters_;
};

template <class T>
Var<T> record_node(NodeRecorder<T>& r, const std::vector<Var<T>>& in) {
  const NodeSpec& n = r.spec();
  const Shape x = in[0].tape->value(in[0]).shape();
  const std::string& op = n.op;
  if (op == "linear") {
    if (x.size() < 2) r.fail("linear needs an input with features, got shape " + to_string(x));
    const Var<T> w = r.parameter("weight", {0, x.back()});
    const std::size_t out = in[0].tape->value(w).shape()[0];
    return r.has("bias") ? linear(in[0], w, r.parameter("bias", {out})) : linear(in[0], w);
  }
  if (op == "conv2d") {
    if (x.size() != 4) r.fail("conv2d needs an [N, C, H, W] input, got shape " + to_string(x));
    if (n.groups < 1 || x[1] % static_cast<std::size_t>(n.groups) != 0)
      r.fail("groups " + std::to_string(n.groups) + " does not divide the input's " + std::to_string(x[1]) + " channels");
    const Var<T> w = r.parameter("weight", {0, x[1] / static_cast<std::size_t>(n.groups), 0, 0});
    const std::size_t out = in[0].tape->value(w).shape()[0];
    const Pair2d stride(n.stride[0], n.stride[1]), padding(n.padding[0], n.padding[1]);
    const Pair2d dilation(n.dilation[0], n.dilation[1]);
    return r.has("bias") ? conv2d(in[0], w, r.parameter("bias", {out}), stride, padding, dilation, n.groups)
                         : conv2d(in[0], w, stride, padding, dilation, n.groups);
  }
  if (op == "maxpool2d" || op == "avgpool2d") {
    if (x.size() != 4) r.fail(op + " needs an [N, C, H, W] input, got shape " + to_string(x));
    const Pair2d kernel(n.kernel[0], n.kernel[1]), stride(n.stride[0], n.stride[1]);
    const Pair2d padding(n.padding[0], n.padding[1]);
    return op == "maxpool2d" ? maxpool2d(in[0], kernel, stride, padding, n.ceil_mode)
                             : avgpool2d(in[0], kernel, stride, padding, n.ceil_mode, n.count_include_pad);
  }
  if (op == "adaptive_avgpool2d") {
    if (x.size() != 4) r.fail(op + " needs an [N, C, H, W] input, got shape " + to_string(x));
    return adaptive_avgpool2d(in[0], Pair2d(n.output_size[0], n.output_size[1]));
  }
  if (op == "batchnorm2d") {
    if (x.size() != 4) r.fail("batchnorm2d needs an [N, C, H, W] input, got shape " + to_string(x));
    const Shape c{x[1]};
    const Var<T> mean = r.parameter("running_mean", c), var = r.parameter("running_var", c);
    if (r.has("weight") || r.has("bias")) {
      const Var<T> w = r.has("weight") ? r.parameter("weight", c) : in[0].tape->constant(full<T>(c, T(1)), n.name + ".weight");
      const Var<T> b = r.has("bias") ? r.parameter("bias", c) : in[0].tape->constant(zeros<T>(c), n.name + ".bias");
      return batchnorm2d(in[0], mean, var, w, b, n.eps);
    }
    return batchnorm2d(in[0], mean, var, n.eps);
  }
  if (op == "normalize") {
    if (x.size() < 2) r.fail("normalize needs channels on dimension 1, got shape " + to_string(x));
    const auto fits = [&](const std::vector<double>& v) { return v.size() == 1 || v.size() == x[1]; };
    if (!fits(n.mean) || !fits(n.std))
      r.fail("mean and std need one number or " + std::to_string(x[1]) + " (one per channel), got " +
             std::to_string(n.mean.size()) + " and " + std::to_string(n.std.size()));
    return normalize(in[0], n.mean, n.std);
  }
  if (op == "relu") return relu(in[0]);
  if (op == "leaky_relu") return leaky_relu(in[0], n.negative_slope);
  if (op == "sigmoid") return sigmoid(in[0]);
  if (op == "tanh") return tanh(in[0]);
  if (op == "identity") return in[0];
  if (op == "flatten") return flatten(in[0], r.axis(n.start_dim, x.size(), "start_dim"));
  if (op == "softmax") return softmax(in[0], r.axis(n.axis, x.size(), "axis"));
  if (op == "log_softmax") return log_softmax(in[0], r.axis(n.axis, x.size(), "axis"));
  if (op == "concat") return concat(in, r.axis(n.axis, x.size(), "axis"));
  if (op == "add") {
    Var<T> sum_so_far = in[0] + in[1];
    for (std::size_t i = 2; i < in.size(); ++i) sum_so_far = sum_so_far + in[i];
    return sum_so_far;
  }
  if (op == "sub") return in[0] - in[1];
  if (op == "mul") return in[0] * in[1];
  r.fail("unknown op '" + op + "'");
}

}  // namespace

template <class T>
Network<T>::Network(const ModelSpec& spec, Tape<T>& tape, const RecordOptions& options) : tape_(&tape), source_(options.source) {
  const GraphSpec& g = spec.graph;
  Shape input_shape{options.batch};
  for (std::size_t d : g.input.shape) input_shape.push_back(d);
  input_ = tape.input(zeros<T>(input_shape), options.input_requires_grad, g.input.name);
  by_name_[g.input.name] = input_;

  for (const NodeSpec& n : g.nodes) {
    NodeRecorder<T> recorder(spec, n, tape, options, parameters_);
    std::vector<Var<T>> in;
    for (const std::string& name : n.inputs) {
      const auto found = by_name_.find(name);
      if (found == by_name_.end()) recorder.fail("input '" + name + "' names no earlier node");
      in.push_back(found->second);
    }
    if (in.empty()) recorder.fail("has no inputs");
    try {
      by_name_[n.name] = record_node(recorder, in);
    } catch (const Error& e) {
      const std::string what = e.what();
      if (what.rfind(options.source + ": ", 0) == 0) throw;
      recorder.fail(what);  // a tape error: say which graph node it came from
    }
  }
  const auto out = by_name_.find(g.output);
  if (out == by_name_.end()) throw Error(options.source + ": output '" + g.output + "' names no node");
  output_ = out->second;
  const Shape out_shape = tape.value(output_).shape();
  const std::size_t per_sample = numel(Shape(out_shape.begin() + 1, out_shape.end()));  // also for a batch of 0
  if (!g.labels.empty() && g.labels.size() != per_sample)
    throw Error(options.source + ": " + std::to_string(g.labels.size()) + " labels for an output of " +
                std::to_string(per_sample) + " values");
}

template <class T>
Var<T> Network<T>::node(const std::string& name) const {
  const auto found = by_name_.find(name);
  if (found == by_name_.end()) throw Error(source_ + ": no node '" + name + "'");
  return found->second;
}

template <class T>
std::vector<Var<T>> Network<T>::parameter_vars() const {
  std::vector<Var<T>> vars;
  for (const auto& p : parameters_) vars.push_back(p.second);
  return vars;
}

template <class T>
void Network<T>::store_parameters(ModelSpec& spec) const {
  for (const auto& [name, var] : parameters_) {
    const Tensor<T>& value = tape_->value(var);
    TensorData& data = spec.tensors[name];
    data.values.assign(value.begin(), value.end());
  }
}

namespace {
std::string number(double v) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", v);
  return text;
}
}  // namespace

std::string printable(const std::string& text) {
  static const char hex[] = "0123456789abcdef";
  std::string out;
  for (char c : text) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c == '\r') out += "\\r";
    else if (u < 0x20 || u == 0x7f) out += std::string("\\x") + hex[u >> 4] + hex[u & 15];
    else out += c;
  }
  return out;
}

std::string describe(const ModelSpec& spec, const std::string& source) {
  // A batch of 0: every node's shape is worked out and checked against the tape's cap, while
  // nothing is computed and nothing is allocated beyond the parameters. `info` never runs the
  // network, so a model with a huge layer is described, not run.
  Shape input{0};
  for (std::size_t d : spec.graph.input.shape) input.push_back(d);
  if (!fits_elements(input))
    throw Error(source + ": the input shape " + to_string(Shape(input.begin() + 1, input.end())) +
                " holds more than 2^32 elements");
  Tape<float> tape;
  RecordOptions options;
  options.source = source;
  options.batch = 0;
  const Network<float> net(spec, tape, options);
  const GraphSpec& g = spec.graph;
  auto per_sample = [&](Var<float> v) {
    const Shape& s = tape.value(v).shape();
    return to_string(Shape(s.begin() + 1, s.end()));
  };
  std::string out = "model " + printable(source) + "\n";
  out += "input  " + printable(g.input.name) + " " + per_sample(net.input());
  if (g.input.range)
    out += " in [" + number(g.input.range->first) + ", " + number(g.input.range->second) + "]";
  out += "\nnodes\n";
  std::size_t width = 4;
  for (const NodeSpec& n : g.nodes) width = std::max(width, printable(n.name).size());
  for (const NodeSpec& n : g.nodes) {
    const std::string name = printable(n.name);
    std::string line = "  " + name + std::string(width - name.size() + 2, ' ') + printable(n.op);
    line += std::string(line.size() < width + 24 ? width + 24 - line.size() : 1, ' ') + per_sample(net.node(n.name));
    out += line + "\n";
  }
  std::size_t parameters = 0;
  for (const auto& [name, var] : net.parameters()) parameters += tape.value(var).size();
  out += "parameters " + std::to_string(parameters) + " in " + std::to_string(net.parameters().size()) + " tensors\n";
  out += "output " + printable(g.output) + " " + per_sample(net.output()) + "\n";
  if (!g.labels.empty()) {
    out += "labels";
    for (std::size_t k = 0; k < g.labels.size(); ++k) out += (k ? ", " : " ") + std::to_string(k) + " " + printable(g.labels[k]);
    out += "\n";
  }
  return out;
}

template class Network<float>;
template class Network<double>;

}  // namespace ax::nn
