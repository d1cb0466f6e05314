#include "graph.hpp"

#include "../autodiff/ops/registry.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

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

// The index of the first finite value beyond T's largest, or values.size(): converting it would
// be undefined behaviour (not Inf). Inf and NaN convert as they are and are caught later, by node.
template <class T>
std::size_t first_out_of_range(const std::vector<double>& values) {
  const double largest = static_cast<double>(std::numeric_limits<T>::max());
  for (std::size_t i = 0; i < values.size(); ++i)
    if (std::isfinite(values[i]) && std::fabs(values[i]) > largest) return i;
  return values.size();
}

// A file's node as its op's from_graph sees it while it records the node; `fail` throws with the
// node named.
template <class T>
class NodeRecorder final : public ops::GraphNode<T> {
 public:
  NodeRecorder(const ModelSpec& spec, const NodeSpec& node, Tape<T>& tape, const RecordOptions& options,
               std::vector<std::pair<std::string, Var<T>>>& parameters)
      : spec_(spec), node_(node), tape_(tape), options_(options), parameters_(parameters) {}

  [[noreturn]] void fail(const std::string& what) const override {
    throw Error(options_.source + ": node '" + node_.name + "': " + what);
  }

  std::vector<Var<T>>& mutable_inputs() { return inputs_; }
  const std::vector<Var<T>>& inputs() const override { return inputs_; }
  const Attrs& attrs() const override { return node_.attrs; }

  bool has(const char* param) const override { return spec_.tensors.count(node_.name + "." + param) > 0; }

  // The parameter `<node>.<param>` as a leaf, after checking its shape against `expected`
  // (a 0 in `expected` accepts any size there).
  Var<T> parameter(const char* param, const Shape& expected) override {
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
    const std::vector<double>& values = found->second.values;
    const std::size_t bad = first_out_of_range<T>(values);
    if (bad < values.size()) {
      char value[32];
      std::snprintf(value, sizeof value, "%g", values[bad]);
      fail("parameter '" + name + "': value out of float range (" + value + " at index " + std::to_string(bad) + ")");
    }
    const Var<T> v = tape_.parameter(to_tensor<T>(found->second), options_.parameters_require_grad, name);
    parameters_.emplace_back(name, v);
    return v;
  }

  Var<T> constant(const char* param, Tensor<T> value) override {
    return tape_.constant(std::move(value), node_.name + "." + param);
  }

 private:
  const ModelSpec& spec_;
  const NodeSpec& node_;
  Tape<T>& tape_;
  const RecordOptions& options_;
  std::vector<std::pair<std::string, Var<T>>>& parameters_;
  std::vector<Var<T>> inputs_;
};

// Records one node through its op's descriptor.
template <class T>
Var<T> record_node(const NodeSpec& node, NodeRecorder<T>& recorder) {
  const ops::OpInfo* op = ops::find_file_op(node.op);
  if (!op) recorder.fail("unknown op '" + node.op + "'");
  const std::size_t count = node.inputs.size();
  if (count < op->file.min_inputs || count > op->file.max_inputs)
    recorder.fail(node.op + " takes " + ops::input_count_text(op->file) + ", found " + std::to_string(count));
  return op->from_graph(recorder);
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
    for (const std::string& name : n.inputs) {
      const auto found = by_name_.find(name);
      if (found == by_name_.end()) recorder.fail("input '" + name + "' names no earlier node");
      recorder.mutable_inputs().push_back(found->second);
    }
    if (n.inputs.empty()) recorder.fail("has no inputs");
    try {
      by_name_[n.name] = record_node(n, recorder);
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
