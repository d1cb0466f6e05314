// The toy format: one JSON file holding a graph document (nn/graph_schema) plus
// "parameters": {"<node>.<param>": nested arrays of numbers, or one number for a scalar}, each
// becoming an F64 tensor. Internal to nn/.
#pragma once

#include "model_spec.hpp"

#include <string>

namespace ax::nn::detail {

// Reads and checks a toy model's text. Faults without the file's name.
ModelSpec toy_from_text(const std::string& text);

}  // namespace ax::nn::detail
