#include "graph.hpp"

#include "../autodiff/ops/registry.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>

#include <sys/mman.h>

namespace ax::nn {
namespace {

Shape to_shape(const std::vector<std::size_t>& dims) {
  Shape s;
  for (std::size_t d : dims) s.push_back(d);
  return s;
}

// The tensor's values read once into the tape's buffer (a copy when the file's dtype is T's); a
// mapped file's pages are given back as soon as they are read. With `read` false (describe), the
// buffer is left unwritten: its pages are never touched.
// Asks for 2 MiB pages under a large buffer about to be written (Linux's transparent huge pages,
// where enabled): filling a 400 MB weight then takes a few hundred page faults, not 100,000,
// which made loading cost several times reading the file.
void prefer_huge_pages(void* data, std::size_t bytes) {
#ifdef MADV_HUGEPAGE
  constexpr std::uintptr_t huge = std::uintptr_t(2) << 20;
  if (bytes < 2 * huge) return;
  const auto begin = reinterpret_cast<std::uintptr_t>(data);
  const std::uintptr_t first = (begin + huge - 1) / huge * huge, last = (begin + bytes) / huge * huge;
  if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
#else
  (void)data, (void)bytes;
#endif
}

// With `in_place` (parameters nobody trains), a mapped file's tensor of T's dtype is not copied:
// the tensor's storage is the file's mapped bytes, the mapping kept alive by the tensor.
template <class T>
Tensor<T> to_tensor(const TensorData& data, bool read, bool in_place) {
  if (read && in_place)
    if (T* stored = values_in_place<T>(data)) return lent_tensor<T>(to_shape(data.shape), stored, data.stored.owner);
  Tensor<T> t(to_shape(data.shape));
  if (!read) return t;
  prefer_huge_pages(t.data(), t.size() * sizeof(T));
  copy_values(data, t.data());
  release_pages(data);
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

// A float run of a parameter kept as doubles (values set in code, or a file's F64 bytes, widened
// here for the check only) refuses a value beyond float's range: what is wrong, or "".
template <class T>
std::string range_fault(const TensorData& data, const std::string& name) {
  if (!std::is_same_v<T, float> || (data.values.empty() && data.dtype != "F64")) return "";
  const std::vector<double> widened = data.values.empty() ? widened_values(data) : std::vector<double>{};
  const std::vector<double>& values = data.values.empty() ? widened : data.values;
  const std::size_t bad = first_out_of_range<T>(values);
  if (bad == values.size()) return "";
  char value[32];
  std::snprintf(value, sizeof value, "%g", values[bad]);
  return "parameter '" + name + "': value out of float range (" + value + " at index " + std::to_string(bad) + ")";
}

// ---- a batch norm folded into the convolution it reads (RecordOptions::fold_batchnorm) ----

// A conv2d's weight and bias with the batch norm after it applied, in double.
struct FoldedConv {
  const NodeSpec* batchnorm = nullptr;
  Shape weight_shape;
  std::vector<double> weight, bias;
};

// The tensor `name` widened to double; empty when it is missing, not floating point, or not
// `count` values.
std::vector<double> values_of(const ModelSpec& spec, const std::string& name, std::size_t count) {
  const auto found = spec.tensors.find(name);
  if (found == spec.tensors.end() || !has_values(found->second) || element_count(found->second) != count) return {};
  return widened_values(found->second);
}

// An optional per-channel tensor: its values, `fallback` repeated when the file leaves it out,
// empty when it is there but unusable.
std::vector<double> optional_values(const ModelSpec& spec, const std::string& name, std::size_t count, double fallback) {
  if (!spec.tensors.count(name)) return std::vector<double>(count, fallback);
  return values_of(spec, name, count);
}

// conv2d `conv` with batchnorm2d `bn` folded in: w[o] s[o] and (b[o] - mean[o]) s[o] + beta[o],
// s = gamma[o] / sqrt(var[o] + eps); a channel whose s is 0 keeps beta, as batchnorm2d does. False
// when anything is missing, misshapen, or not finite in T once folded: the two nodes are then
// recorded as they are, and report their own faults.
template <class T>
bool fold_batchnorm(const ModelSpec& spec, const NodeSpec& conv, const NodeSpec& bn, FoldedConv& out) {
  const auto w = spec.tensors.find(conv.name + ".weight");
  if (w == spec.tensors.end() || !has_values(w->second) || w->second.shape.size() != 4) return false;
  const std::size_t O = w->second.shape[0], total = element_count(w->second);
  if (O == 0 || total == 0 || !(bn.attrs.eps >= 0)) return false;
  const std::vector<double> mean = values_of(spec, bn.name + ".running_mean", O);
  const std::vector<double> var = values_of(spec, bn.name + ".running_var", O);
  const std::vector<double> gamma = optional_values(spec, bn.name + ".weight", O, 1.0);
  const std::vector<double> beta = optional_values(spec, bn.name + ".bias", O, 0.0);
  const std::vector<double> conv_bias = optional_values(spec, conv.name + ".bias", O, 0.0);
  if (mean.empty() || var.empty() || gamma.empty() || beta.empty() || conv_bias.empty()) return false;
  const auto fits = [](double v) { return std::isfinite(static_cast<T>(v)); };
  out.batchnorm = &bn;
  out.weight_shape = to_shape(w->second.shape);
  out.weight = widened_values(w->second);
  out.bias.resize(O);
  const std::size_t per_channel = total / O;
  // [O] channels, each scaling its [C/G, KH, KW] weights
  for (std::size_t o = 0; o < O; ++o) {
    const double s = gamma[o] / std::sqrt(var[o] + bn.attrs.eps);
    if (!std::isfinite(s)) return false;
    for (std::size_t i = 0; i < per_channel; ++i) {
      double& v = out.weight[o * per_channel + i];
      v *= s;
      if (!fits(v)) return false;
    }
    out.bias[o] = s == 0 ? beta[o] : (conv_bias[o] - mean[o]) * s + beta[o];
    if (!fits(out.bias[o])) return false;
  }
  return true;
}

// The conv2d nodes to fold, by name: each read by one batchnorm2d alone (not the output, not
// `keep`), with what folding gives.
template <class T>
std::map<std::string, FoldedConv> convolutions_to_fold(const ModelSpec& spec, const RecordOptions& options) {
  std::map<std::string, FoldedConv> folds;
  if (!options.fold_batchnorm || !options.read_parameters || options.parameters_require_grad) return folds;
  const GraphSpec& g = spec.graph;
  std::map<std::string, std::size_t> readers;
  std::map<std::string, const NodeSpec*> by_name;
  for (const NodeSpec& n : g.nodes) {
    by_name.emplace(n.name, &n);
    for (const std::string& in : n.inputs) ++readers[in];
  }
  for (const NodeSpec& bn : g.nodes) {
    if (bn.op != "batchnorm2d" || bn.inputs.size() != 1) continue;
    const auto conv = by_name.find(bn.inputs[0]);
    if (conv == by_name.end() || conv->second->op != "conv2d" || readers[conv->first] != 1 ||
        conv->first == g.output || conv->second->inputs.size() != 1 ||
        std::find(options.keep.begin(), options.keep.end(), conv->first) != options.keep.end())
      continue;
    FoldedConv folded;
    if (fold_batchnorm<T>(spec, *conv->second, bn, folded)) folds.emplace(conv->first, std::move(folded));
  }
  return folds;
}

template <class T>
Tensor<T> to_tensor(const Shape& shape, const std::vector<double>& values) {
  Tensor<T> t(shape);
  std::transform(values.begin(), values.end(), t.data(), [](double v) { return static_cast<T>(v); });
  return t;
}

// A file's node as its op's from_graph sees it while it records the node; `fail` throws with the
// node named. With `folded`, a conv2d's weight and bias are the folded constants.
template <class T>
class NodeRecorder final : public ops::GraphNode<T> {
 public:
  NodeRecorder(const ModelSpec& spec, const NodeSpec& node, Tape<T>& tape, const RecordOptions& options,
               std::vector<std::pair<std::string, Var<T>>>& parameters, const FoldedConv* folded = nullptr)
      : spec_(spec), node_(node), tape_(tape), options_(options), parameters_(parameters), folded_(folded) {}

  [[noreturn]] void fail(const std::string& what) const override {
    throw Error(options_.source + ": node '" + node_.name + "': " + what);
  }

  std::vector<Var<T>>& mutable_inputs() { return inputs_; }
  const std::vector<Var<T>>& inputs() const override { return inputs_; }
  const Attrs& attrs() const override { return node_.attrs; }

  bool has(const char* param) const override {
    if (folded_ && std::string(param) == "bias") return true;
    return spec_.tensors.count(node_.name + "." + param) > 0;
  }

  // The parameter `<node>.<param>` as a leaf, after checking its shape against `expected`
  // (a 0 in `expected` accepts any size there).
  Var<T> parameter(const char* param, const Shape& expected) override {
    const std::string name = node_.name + "." + param;
    if (folded_ && (std::string(param) == "weight" || std::string(param) == "bias")) {
      const bool weight = std::string(param) == "weight";
      const Shape shape = weight ? folded_->weight_shape : Shape{folded_->bias.size()};
      check_shape(name, shape, expected);
      return tape_.constant(to_tensor<T>(shape, weight ? folded_->weight : folded_->bias),
                            name + " (with " + folded_->batchnorm->name + ")");
    }
    const auto found = spec_.tensors.find(name);
    if (found == spec_.tensors.end()) fail("parameter '" + name + "' is missing");
    check_shape(name, to_shape(found->second.shape), expected);
    if (!has_values(found->second)) fail("parameter '" + name + "' is not floating point");
    if (options_.read_parameters) {
      const std::string fault = range_fault<T>(found->second, name);
      if (!fault.empty()) fail(fault);
    }
    const Var<T> v = tape_.parameter(to_tensor<T>(found->second, options_.read_parameters,
                                                  !options_.parameters_require_grad),
                                     options_.parameters_require_grad, name);
    parameters_.emplace_back(name, v);
    return v;
  }

  Var<T> constant(const char* param, Tensor<T> value) override {
    return tape_.constant(std::move(value), node_.name + "." + param);
  }

 private:
  void check_shape(const std::string& name, const Shape& shape, const Shape& expected) const {
    bool fits = shape.size() == expected.size();
    for (std::size_t d = 0; fits && d < shape.size(); ++d) fits = expected[d] == 0 || expected[d] == shape[d];
    if (!fits) {
      std::string want = "[";
      for (std::size_t d = 0; d < expected.size(); ++d)
        want += (d ? ", " : "") + (expected[d] ? std::to_string(expected[d]) : std::string("*"));
      fail("parameter '" + name + "' has shape " + to_string(shape) + ", expected " + want + "]");
    }
  }

  const ModelSpec& spec_;
  const NodeSpec& node_;
  Tape<T>& tape_;
  const RecordOptions& options_;
  std::vector<std::pair<std::string, Var<T>>>& parameters_;
  const FoldedConv* folded_;
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

  const std::map<std::string, FoldedConv> folds = convolutions_to_fold<T>(spec, options);
  std::map<std::string, std::pair<const NodeSpec*, const FoldedConv*>> folded_by_batchnorm;
  for (const NodeSpec& n : g.nodes)
    if (const auto f = folds.find(n.name); f != folds.end()) folded_by_batchnorm[f->second.batchnorm->name] = {&n, &f->second};

  for (const NodeSpec& node : g.nodes) {
    if (folds.count(node.name)) continue;  // recorded with the batch norm that reads it
    // A batch norm with its convolution folded in is that convolution, recorded under its name.
    const auto fold = folded_by_batchnorm.find(node.name);
    const NodeSpec& n = fold == folded_by_batchnorm.end() ? node : *fold->second.first;
    NodeRecorder<T> recorder(spec, n, tape, options, parameters_,
                             fold == folded_by_batchnorm.end() ? nullptr : fold->second.second);
    for (const std::string& name : n.inputs) {
      const auto found = by_name_.find(name);
      if (found == by_name_.end()) recorder.fail("input '" + name + "' names no earlier node");
      recorder.mutable_inputs().push_back(found->second);
    }
    if (n.inputs.empty()) recorder.fail("has no inputs");
    try {
      by_name_[node.name] = record_node(n, recorder);
      if (&n != &node) folded_[n.name] = node.name;
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
  if (found != by_name_.end()) return found->second;
  const std::string batchnorm = folded_into(name);
  if (!batchnorm.empty())
    throw Error(source_ + ": node '" + name + "' is folded into the batch norm '" + batchnorm +
                "' that reads it; its own output is not formed (record it with fold_batchnorm off, or name it in keep)");
  throw Error(source_ + ": no node '" + name + "'");
}

template <class T>
std::string Network<T>::folded_into(const std::string& name) const {
  const auto found = folded_.find(name);
  return found == folded_.end() ? std::string() : found->second;
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
    data.stored = {};  // the tape's values replace the file's
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
  options.read_parameters = false;  // shapes only
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
  if (!g.labels.empty()) {  // the first few and a count: ImageNet's thousand would fill the screen
    const std::size_t shown = std::min<std::size_t>(g.labels.size(), 5);
    out += "labels " + std::to_string(g.labels.size()) + ":";
    for (std::size_t k = 0; k < shown; ++k) out += (k ? ", " : " ") + std::to_string(k) + " " + printable(g.labels[k]);
    if (shown < g.labels.size()) out += ", ... (" + std::to_string(g.labels.size() - shown) + " more)";
    out += "\n";
  }
  return out;
}

template class Network<float>;
template class Network<double>;

}  // namespace ax::nn
