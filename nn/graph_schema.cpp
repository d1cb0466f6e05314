#include "graph_schema.hpp"

#include "../autodiff/ops/registry.hpp"
#include "safetensors.hpp"

#include <algorithm>
#include <cmath>
#include <set>
#include <type_traits>
#include <variant>

namespace ax::nn::detail {
namespace {

// Attribute readers. `where` is e.g. `node "conv1": attribute "stride"`.

std::int64_t read_integer(const json& value, const std::string& where) {
  if (!value.is_number_integer()) fault(where + " must be a JSON integer, found " + describe(value));
  const bool in_range = value.is_number_unsigned() ? value.get<std::uint64_t>() <= std::uint64_t(kMaxAttributeInt)
                                                   : value.get<std::int64_t>() >= -kMaxAttributeInt;  // negative here
  if (!in_range) fault(where + " is " + describe(value) + ", beyond 2^40 in magnitude");
  return value.get<std::int64_t>();
}

// A pair: one integer meaning both, or a list of two; each at least `minimum` (0 or 1).
Pair2d read_pair(const json& value, const std::string& where, std::int64_t minimum) {
  const std::string expected =
      std::string("a non-negative integer or a list of two") + (minimum > 0 ? ", at least 1" : "");
  Pair2d pair;
  if (value.is_number_integer()) {
    pair = Pair2d(read_integer(value, where));
  } else if (value.is_array() && value.size() == 2 && value[0].is_number_integer() && value[1].is_number_integer()) {
    pair = Pair2d(read_integer(value[0], where), read_integer(value[1], where));
  } else {
    fault(where + " must be " + expected + ", found " + describe(value));
  }
  if (pair.h < minimum || pair.w < minimum) fault(where + " must be " + expected + ", found " + describe(value));
  return pair;
}

double read_number(const json& value, const std::string& where) {
  if (!value.is_number()) fault(where + " must be a number, found " + describe(value));
  const double number = value.get<double>();
  if (!std::isfinite(number)) fault(where + " must be finite, found " + describe(value));
  return number;
}

// One number for all channels, or a non-empty list of them.
std::vector<double> read_numbers(const json& value, const std::string& where) {
  if (value.is_number()) return {read_number(value, where)};
  if (!value.is_array() || value.empty())
    fault(where + " must be a number or a non-empty list of numbers, found " + describe(value));
  std::vector<double> numbers;
  for (const json& v : value) numbers.push_back(read_number(v, where));
  return numbers;
}

bool read_bool(const json& value, const std::string& where) {
  if (!value.is_boolean()) fault(where + " must be true or false, found " + describe(value));
  return value.get<bool>();
}

// Axes count the batch dimension, so 0 would act across samples; negative axes are kept as
// written (the graph builder resolves them against the rank, and refuses -rank).
std::int64_t read_axis(const json& value, const std::string& where) {
  const std::int64_t axis = read_integer(value, where);
  if (axis == 0) fault(where + " is 0, the batch dimension; it must name a dimension of a sample");
  return axis;
}

// ---------------------------------------------------------------------------------------------
// Attributes, read and written through each op's list (ops::FileForm)

// Reads `value` into the Attrs field of one attribute, in that field's type.
struct AttributeReader {
  const json& value;
  const ops::AttributeSpec& spec;
  const std::string where;

  const ops::Allowed allowed = spec.allowed;

  void operator()(Pair2d Attrs::*field, Attrs& attrs) const {
    // PyTorch refuses a kernel, stride, dilation or output size of 0; padding may be 0.
    attrs.*field = read_pair(value, where, allowed == ops::Allowed::positive ? 1 : 0);
  }
  void operator()(std::int64_t Attrs::*field, Attrs& attrs) const {
    if (allowed == ops::Allowed::sample_axis) {
      attrs.*field = read_axis(value, where);
      return;
    }
    const std::int64_t v = read_integer(value, where);
    if (allowed == ops::Allowed::positive && v < 1) fault(where + " must be at least 1, found " + describe(value));
    if (allowed == ops::Allowed::non_negative && v < 0) fault(where + " must not be negative, found " + describe(value));
    attrs.*field = v;
  }
  void operator()(double Attrs::*field, Attrs& attrs) const {
    const double v = read_number(value, where);
    if (allowed == ops::Allowed::positive && !(v > 0)) fault(where + " must be positive, found " + describe(value));
    if (allowed == ops::Allowed::non_negative && v < 0) fault(where + " must not be negative, found " + describe(value));
    attrs.*field = v;
  }
  void operator()(bool Attrs::*field, Attrs& attrs) const { attrs.*field = read_bool(value, where); }
  void operator()(std::vector<double> Attrs::*field, Attrs& attrs) const {
    std::vector<double> numbers = read_numbers(value, where);
    for (std::size_t i = 0; i < numbers.size(); ++i)
      if ((allowed == ops::Allowed::positive && !(numbers[i] > 0)) ||
          (allowed == ops::Allowed::non_negative && numbers[i] < 0))
        fault(where + " holds " + describe(json(numbers[i])) + " at index " + std::to_string(i) + "; " + spec.name +
              " must be " + (allowed == ops::Allowed::positive ? "positive" : "non-negative"));
    attrs.*field = std::move(numbers);
  }
  // Which strings an op allows is the op's own check (its finish).
  void operator()(std::string Attrs::*field, Attrs& attrs) const {
    if (!value.is_string()) fault(where + " must be a string, found " + describe(value));
    attrs.*field = value.get<std::string>();
  }
  // A list of integers (a shape, a permutation); its meaning is the op's to check.
  void operator()(ops::Dims Attrs::*field, Attrs& attrs) const {
    if (!value.is_array()) fault(where + " must be a list of integers, found " + describe(value));
    ops::Dims dims;
    for (const json& v : value) dims.push_back(static_cast<long>(read_integer(v, where)));
    attrs.*field = std::move(dims);
  }
};

json attribute_to_json(const ops::AttributeSpec& spec, const Attrs& attrs) {
  return std::visit(
      [&](auto field) -> json {
        const auto& v = attrs.*field;
        using Field = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<Field, Pair2d>) return json::array({v.h, v.w});
        else if constexpr (std::is_same_v<Field, ops::Dims>) return std::vector<long>(v.begin(), v.end());
        else return v;
      },
      spec.field);
}

std::string attribute_names(const ops::FileForm& form) {
  std::string names;
  for (const ops::AttributeSpec& a : form.attributes) names += (names.empty() ? "" : ", ") + std::string(a.name);
  return names.empty() ? "none" : names;
}

// The attributes a node's object holds besides name, op and inputs, each one its op lists, read
// into `node.attrs` over the op's defaults; then the op's checks across attributes.
void read_attributes(const json& object, const ops::OpInfo& op, NodeSpec& node, const std::string& where) {
  op.set_defaults(node.attrs);
  ops::AttributeNames given;
  for (const auto& [key, value] : object.items()) {
    if (key == "name" || key == "op" || key == "inputs") continue;
    const std::string& attribute = key;  // C++17 lambdas cannot capture a structured binding
    const auto spec = std::find_if(op.file.attributes.begin(), op.file.attributes.end(),
                                   [&](const ops::AttributeSpec& a) { return attribute == a.name; });
    if (spec == op.file.attributes.end())
      fault(where + ": unknown attribute " + in_quotes(key) + " for op " + node.op + " (it takes " +
            attribute_names(op.file) + ")");
    if (spec->nullable && value.is_null()) continue;  // the default
    const AttributeReader read{value, *spec, where + ": attribute " + in_quotes(key)};
    std::visit([&](auto field) { read(field, node.attrs); }, spec->field);
    given.insert(key);
  }
  for (const ops::AttributeSpec& a : op.file.attributes)
    if (a.required) require_member(object, a.name, where);
  try {
    op.finish(node.attrs, given);
  } catch (const Error& e) {
    fault(where + ": " + one_line(e.what()));
  }
}

// The names a node's inputs may refer to, and the others, to say why a name is refused.
struct Names {
  std::string graph_input;
  std::set<std::string> earlier;  // the nodes before the one being read
  std::set<std::string> all;      // every node's name, to tell a later node from an unknown name
};

std::vector<std::string> read_node_inputs(const json& object, const ops::FileForm& op, const std::string& op_name, const std::string& self,
                                          const Names& names, const std::string& where) {
  const json& list = require_member(object, "inputs", where);
  if (!list.is_array()) fault(where + ": inputs must be a list of names, found " + describe(list));
  std::vector<std::string> inputs;
  for (const json& input : list) {
    if (!input.is_string()) fault(where + ": inputs must be a list of names, found " + describe(input) + " in it");
    const std::string name = input.get<std::string>();
    if (name == self) fault(where + ": input " + in_quotes(name) + " names the node itself");
    if (name != names.graph_input && !names.earlier.count(name)) {
      if (names.all.count(name))
        fault(where + ": input " + in_quotes(name) + " names a later node (nodes must come in topological order)");
      fault(where + ": input " + in_quotes(name) + " names no earlier node and is not the graph input " +
            in_quotes(names.graph_input));
    }
    inputs.push_back(name);
  }
  if (inputs.size() < op.min_inputs || inputs.size() > op.max_inputs)
    fault(where + ": " + op_name + " takes " + ops::input_count_text(op) + ", found " + std::to_string(inputs.size()));
  return inputs;
}

std::string read_name(const json& object, const std::string& owner) {
  const json& name = require_member(object, "name", owner);
  if (!name.is_string() || name.get_ref<const std::string&>().empty())
    fault(owner + ": name must be a non-empty string, found " + describe(name));
  return name.get<std::string>();
}

NodeSpec read_node(const json& object, std::size_t index, const Names& names) {
  const std::string position = "node " + std::to_string(index);
  if (!object.is_object()) fault(position + " must be an object, found " + describe(object));
  NodeSpec node;
  node.name = read_name(object, position);
  const std::string where = "node " + in_quotes(node.name);
  if (node.name == names.graph_input) fault(where + ": the name is the graph input's; node names must differ from it");
  if (names.earlier.count(node.name)) fault(where + ": the name is used twice; node names must be unique");

  const json& op_name = require_member(object, "op", where);
  if (!op_name.is_string()) fault(where + ": op must be a string, found " + describe(op_name));
  node.op = op_name.get<std::string>();
  const ops::OpInfo* op = ops::find_file_op(node.op);
  if (!op) fault(where + ": unknown op " + in_quotes(node.op));

  node.inputs = read_node_inputs(object, op->file, node.op, node.name, names, where);
  read_attributes(object, *op, node, where);
  return node;
}

// Graph-level keys other than these are refused: a misspelt "label" must not vanish silently.
void check_graph_keys(const json& document) {
  static const std::set<std::string> known = {"version", "inputs", "nodes", "outputs", "labels"};
  for (const auto& [key, value] : document.items())
    if (!known.count(key))
      fault("graph: unknown key " + in_quotes(key) + " (it has version, inputs, nodes, outputs, labels)");
}

void check_version(const json& document) {
  const json* version = find_member(document, "version");
  if (!version) fault("graph has no \"version\"; this reader reads version 1");
  if (as_unsigned(*version) != std::optional<std::uint64_t>(1))
    fault("unsupported graph version " + describe(*version) + "; this reader reads version 1");
}

// The single input: a name, a shape of positive sizes (without the batch), an optional range.
InputSpec read_input(const json& document) {
  const json& inputs = require_member(document, "inputs", "graph");
  if (!inputs.is_array() || inputs.size() != 1)
    fault("graph must have exactly one input (version 1), found " + describe(inputs));
  const json& object = inputs[0];
  if (!object.is_object()) fault("graph input must be an object, found " + describe(object));
  InputSpec input;
  input.name = read_name(object, "graph input");
  const std::string where = "input " + in_quotes(input.name);
  for (const auto& [key, value] : object.items())
    if (key != "name" && key != "shape" && key != "range")
      fault(where + ": unknown key " + in_quotes(key) + " (it has name, shape, range)");

  input.shape = read_shape(require_member(object, "shape", where), where);
  if (input.shape.empty() || std::find(input.shape.begin(), input.shape.end(), 0) != input.shape.end())
    fault(where + ": shape must list at least one dimension, each at least 1, found " + shape_text(input.shape));

  if (const json* range = find_member(object, "range")) {
    if (!range->is_array() || range->size() != 2) fault(where + ": range must be [lo, hi], found " + describe(*range));
    const double lo = read_number((*range)[0], where + ": range"), hi = read_number((*range)[1], where + ": range");
    if (!(lo < hi)) fault(where + ": range " + describe(*range) + " must have lo < hi");
    input.range = std::make_pair(lo, hi);
  }
  return input;
}

std::vector<NodeSpec> read_nodes(const json& document, const std::string& graph_input) {
  const json& nodes = require_member(document, "nodes", "graph");
  if (!nodes.is_array()) fault("graph: nodes must be a list, found " + describe(nodes));
  Names names;
  names.graph_input = graph_input;
  for (const json& node : nodes)
    if (node.is_object() && node.contains("name") && node["name"].is_string())
      names.all.insert(node["name"].get<std::string>());

  std::vector<NodeSpec> specs;
  for (const json& node : nodes) {
    specs.push_back(read_node(node, specs.size(), names));
    names.earlier.insert(specs.back().name);
  }
  return specs;
}

std::string read_output(const json& document, const GraphSpec& graph) {
  const json& outputs = require_member(document, "outputs", "graph");
  if (!outputs.is_array() || outputs.size() != 1)
    fault("graph must have exactly one output (version 1), found " + describe(outputs));
  if (!outputs[0].is_string()) fault("graph output must be a node's name, found " + describe(outputs[0]));
  const std::string output = outputs[0].get<std::string>();
  const bool is_node =
      std::any_of(graph.nodes.begin(), graph.nodes.end(), [&](const NodeSpec& n) { return n.name == output; });
  if (!is_node) fault("graph output " + in_quotes(output) + " names no node");
  return output;
}

std::vector<std::string> read_labels(const json& document) {
  const json* labels = find_member(document, "labels");
  if (!labels) return {};
  if (!labels->is_array()) fault("graph: labels must be a list of strings, found " + describe(*labels));
  std::vector<std::string> out;
  for (const json& label : *labels) {
    if (!label.is_string())
      fault("graph: labels must be a list of strings, found " + describe(label) + " at index " +
            std::to_string(out.size()));
    out.push_back(label.get<std::string>());
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Writing

json node_to_json(const NodeSpec& node) {
  json object = {{"name", node.name}, {"op", node.op}, {"inputs", node.inputs}};
  const ops::OpInfo* op = ops::find_file_op(node.op);
  if (!op) fault("node " + in_quotes(node.name) + ": unknown op " + in_quotes(node.op));
  for (const ops::AttributeSpec& a : op->file.attributes) object[a.name] = attribute_to_json(a, node.attrs);
  return object;
}

}  // namespace

GraphSpec graph_from_json(const json& document) {
  if (!document.is_object()) fault("graph must be a JSON object, found " + describe(document));
  check_version(document);  // first: a later version's other keys mean nothing here
  check_graph_keys(document);
  GraphSpec graph;
  graph.input = read_input(document);
  graph.nodes = read_nodes(document, graph.input.name);
  graph.output = read_output(document, graph);
  graph.labels = read_labels(document);
  return graph;
}

json graph_document(const GraphSpec& graph) {
  json input = {{"name", graph.input.name}, {"shape", graph.input.shape}};
  if (graph.input.range) input["range"] = json::array({graph.input.range->first, graph.input.range->second});
  json nodes = json::array();
  for (const NodeSpec& node : graph.nodes) nodes.push_back(node_to_json(node));
  json document = {
      {"version", 1}, {"inputs", json::array({input})}, {"nodes", nodes}, {"outputs", json::array({graph.output})}};
  if (!graph.labels.empty()) document["labels"] = graph.labels;
  return document;
}

// ---------------------------------------------------------------------------------------------
// Parameters: what can be checked without the input's shape.

namespace {

void check_parameter_values(const std::string& name, const TensorData& tensor, const std::string& where) {
  if (!is_parameter_dtype(tensor.dtype))
    fault(where + ": parameter " + in_quotes(name) + " has dtype " + tensor.dtype +
          "; parameters must be F32 or F64 (F16 and BF16 are widened)");
  const std::optional<std::size_t> bad = first_non_finite(tensor);
  if (bad) {
    const double value = widened_values(tensor)[*bad];
    fault(where + ": parameter " + in_quotes(name) + " holds " + (std::isnan(value) ? "NaN" : "Inf") +
          " at flat index " + std::to_string(*bad));
  }
}

// The tensors of a node's parameters: present where the op needs them, floating point and
// finite; then the op's own checks (shapes, values) before any input shape is known.
void check_node_parameters(const NodeSpec& node, const std::map<std::string, TensorData>& tensors) {
  const std::string where = "node " + in_quotes(node.name);
  const ops::OpInfo* op = ops::find_file_op(node.op);
  if (!op) fault(where + ": unknown op " + in_quotes(node.op));
  ops::FileParameters params;
  params.node = node.name;
  params.attrs = &node.attrs;
  for (const ops::ParamSpec& param : op->file.params) {
    const std::string name = node.name + "." + param.name;
    const auto it = tensors.find(name);
    if (it == tensors.end()) {
      if (param.required)
        fault(where + ": missing parameter " + in_quotes(name) + " (" + node.op + " needs " + param.name + ")");
      continue;
    }
    check_parameter_values(name, it->second, where);
    const TensorData* tensor = &it->second;
    params.present[param.name] = {&tensor->shape, [tensor] { return widened_values(*tensor); }};
  }
  try {
    op->check_parameters(params);
  } catch (const Error& e) {
    fault(where + ": " + one_line(e.what()));
  }
}

}  // namespace

void check_parameters(const GraphSpec& graph, const std::map<std::string, TensorData>& tensors) {
  for (const NodeSpec& node : graph.nodes) check_node_parameters(node, tensors);
}

}  // namespace ax::nn::detail
