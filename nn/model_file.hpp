// The model file (docs/format.md): a safetensors file whose __metadata__["axiomatic.graph"] holds the
// graph as a JSON string. Reading checks everything docs/format.md lists that can be checked without
// the input's shape; shapes that do not compose are found later, when the graph is recorded.
//
// Every fault is an ax::Error with one line "<path or name>: <what is wrong>", naming the node,
// attribute, tensor, expected and found as applicable. Nothing aborts, nothing is read out of
// bounds: every length, offset and count in a file is checked before it is used.
#pragma once

#include "../autodiff/tensor.hpp"  // ax::Error
#include "model_spec.hpp"

#include <nlohmann/json_fwd.hpp>

#include <string>

namespace ax::nn {

// Reads and checks a model file. Throws ax::Error("<path>: <fault>").
ModelSpec read_model(const std::string& path);

// The same from the file's bytes in memory; `name` stands in for the path in messages.
ModelSpec parse_model(const std::string& bytes, const std::string& name);

struct WriteOptions {
  // false: F32 and F64 tensors keep their dtype, F16 and BF16 are written as F32 (exact).
  // true: every floating-point tensor is written as F64 (exact).
  bool floats_as_f64 = false;
};

// Writes a model file: the graph in __metadata__["axiomatic.graph"], the tensors sorted by name
// and tiling the data buffer, the header padded with spaces to a multiple of 8 bytes (as the
// safetensors library does). Tensors of non-floating dtypes carry no values (TensorData) and are
// left out; no node may use them anyway. The bytes are checked with the reader before they are
// returned or written, so a model the reader would refuse is never written: throws ax::Error.
std::string serialize_model(const ModelSpec& model, const WriteOptions& options = {});
void write_model(const std::string& path, const ModelSpec& model, const WriteOptions& options = {});

// A toy model as one JSON file: the graph document plus
// "parameters": {"<node>.<param>": nested arrays of numbers (or one number for a scalar)}.
// Parameters become F64 tensors and are checked as a model file's are.
ModelSpec read_toy_json(const std::string& path);

// A model by its file name: a toy model when it ends in .json, a model file otherwise.
ModelSpec load_model(const std::string& path);

// The graph document alone: parses and validates it (docs/format.md, section 2), fills in defaults.
// Throws ax::Error("<name>: <fault>").
GraphSpec parse_graph(const nlohmann::json& graph, const std::string& name);

// The graph document for a GraphSpec, every attribute of each node's op written out. Checks
// nothing but the ops' names: throws ax::Error("graph: ...") for an unknown op.
nlohmann::json graph_to_json(const GraphSpec& graph);

}  // namespace ax::nn
