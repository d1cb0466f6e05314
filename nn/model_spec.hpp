// What a model file holds, once read and checked: the graph (FORMAT.md, "The graph") and the
// tensors. Reading checks everything that can be checked without knowing the input's shape;
// shapes that do not compose are found when the graph is recorded onto a tape (nn/graph).
#pragma once

#include "../autodiff/tape.hpp"  // Attrs

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace ax::nn {

// One node of the graph, attributes validated and defaults filled in. Which attributes an op
// takes is its descriptor's (autodiff/ops, FileForm); the others keep their defaults.
struct NodeSpec {
  std::string name;
  std::string op;                   // a model-file op's name (ops::find_file_op)
  std::vector<std::string> inputs;  // the graph input's name or earlier nodes' names
  Attrs attrs;                      // as the file writes them: axes may be negative
};

// A node of op `op` with that op's default attributes. Throws Error for an op the model file does
// not have.
NodeSpec make_node(const std::string& name, const std::string& op, std::vector<std::string> inputs);

struct InputSpec {
  std::string name;
  std::vector<std::size_t> shape;                    // without the batch dimension
  std::optional<std::pair<double, double>> range;    // [lo, hi], lo < hi
};

struct GraphSpec {
  InputSpec input;
  std::vector<NodeSpec> nodes;  // topological order
  std::string output;           // the output node's name
  std::vector<std::string> labels;  // may be empty
};

// A tensor of the file. Floating-point tensors (F16, BF16, F32, F64) carry their values widened
// to double (exact); other dtypes carry none and may not be used by a node.
struct TensorData {
  std::string dtype;  // as in the file: "F32", "I64", ...
  std::vector<std::size_t> shape;
  std::vector<double> values;  // row-major; empty for non-floating dtypes
};

struct ModelSpec {
  GraphSpec graph;
  std::map<std::string, TensorData> tensors;  // by name, e.g. "conv1.weight"
};

}  // namespace ax::nn
