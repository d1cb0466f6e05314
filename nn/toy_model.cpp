#include "toy_model.hpp"

#include "graph_schema.hpp"
#include "safetensors.hpp"

namespace ax::nn::detail {
namespace {

// Nested arrays of numbers (a number alone: a scalar) as an F64 tensor, row-major.
void flatten_nested(const json& value, const std::vector<std::size_t>& shape, std::size_t level,
                    std::vector<double>& values, const std::string& owner) {
  if (level == shape.size()) {
    if (!value.is_number())
      fault(owner + ": expected a number at depth " + std::to_string(level) + ", found " + describe(value));
    values.push_back(value.get<double>());
    return;
  }
  if (!value.is_array() || value.size() != shape[level])
    fault(owner + ": ragged nested arrays: expected a list of " + std::to_string(shape[level]) + " at depth " +
          std::to_string(level) + ", found " + describe(value));
  for (const json& item : value) flatten_nested(item, shape, level + 1, values, owner);
}

TensorData toy_tensor(const std::string& name, const json& value) {
  const std::string owner = "parameter " + in_quotes(name);
  TensorData tensor;
  tensor.dtype = "F64";
  for (const json* level = &value; level->is_array(); level = &(*level)[0]) {  // depth bounded by parse_json
    tensor.shape.push_back(level->size());
    if (level->empty()) break;
  }
  flatten_nested(value, tensor.shape, 0, tensor.values, owner);
  return tensor;
}

}  // namespace

ModelSpec toy_from_text(const std::string& text) {
  check_utf8(text, "toy model");
  json document = parse_json(text, "toy model");
  if (!document.is_object()) fault("toy model must be a JSON object, found " + describe(document));
  ModelSpec model;
  if (const json* parameters = find_member(document, "parameters")) {
    if (!parameters->is_object())
      fault("parameters must be an object of nested arrays, found " + describe(*parameters));
    for (const auto& [name, value] : parameters->items()) model.tensors[name] = toy_tensor(name, value);
    document.erase("parameters");
  }
  model.graph = graph_from_json(document);
  check_parameters(model.graph, model.tensors);
  return model;
}

}  // namespace ax::nn::detail
