// What a model file holds, once read and checked: the graph (FORMAT.md, "The graph") and the
// tensors. Reading checks everything that can be checked without knowing the input's shape;
// shapes that do not compose are found when the graph is recorded onto a tape (nn/graph).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace ax::nn {

using Pair = std::array<std::int64_t, 2>;  // [h, w]

// One node of the graph, attributes validated and defaults filled in. Which fields an op reads
// is FORMAT.md's table; the others keep their defaults.
struct NodeSpec {
  std::string name;
  std::string op;                   // one of FORMAT.md's version-1 ops
  std::vector<std::string> inputs;  // the graph input's name or earlier nodes' names

  Pair kernel{0, 0};                // maxpool2d, avgpool2d (required there)
  Pair stride{1, 1};                // conv2d (default 1); pools: default = kernel (also when null)
  Pair padding{0, 0};
  Pair dilation{1, 1};              // conv2d
  Pair output_size{1, 1};           // adaptive_avgpool2d
  std::int64_t groups = 1;          // conv2d
  bool ceil_mode = false;           // pools
  bool count_include_pad = true;    // avgpool2d
  double eps = 1e-5;                // batchnorm2d
  double negative_slope = 0.01;     // leaky_relu
  std::vector<double> mean, std;    // normalize: C numbers, or one for all channels
  std::int64_t start_dim = 1;       // flatten, as written (may be negative)
  std::int64_t axis = 0;            // concat (default 1), softmax / log_softmax (default -1), as written
};

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
