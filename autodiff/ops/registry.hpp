// Every op, as its descriptor states it: the one place the rest of the code asks what an op is
// (the model file reads and writes attributes through it, the graph records nodes through it,
// exact IG and the axiom checks read how ops bend and scale). Adding an op to a family file's
// OpList adds it here.
#pragma once

#include "schema.hpp"

#include <string>
#include <vector>

namespace ax::ops {

struct OpInfo {
  const char* name;
  Linearity linearity;
  bool positively_homogeneous;  // one input, f(c x) = c f(x) for every c > 0
  bool scales_with_parameters;  // weight and bias times c give y times c (conv2d, linear)
  Distribution distribution;    // softmax: probabilities; log_softmax: their logs
  FileForm file;                // file.in_file: the op may appear in a model file
  void (*set_defaults)(Attrs&);
  void (*finish)(Attrs&, const AttributeNames&);
  void (*check_parameters)(const FileParameters&);
  Var<float> (*from_graph_float)(GraphNode<float>&);
  Var<double> (*from_graph_double)(GraphNode<double>&);

  // Records a file's node onto the tape of its inputs.
  template <class T>
  Var<T> from_graph(GraphNode<T>& node) const {
    if constexpr (std::is_same_v<T, float>) return from_graph_float(node);
    else return from_graph_double(node);
  }
};

// Every op, family by family, in a fixed order.
const std::vector<OpInfo>& registry();
// The op of that name, or null.
const OpInfo* find_op(const std::string& name);
// The op of that name if a model file may use it, or null.
const OpInfo* find_file_op(const std::string& name);
// The names of the model file's ops, comma-separated (for messages).
std::string file_op_names();

}  // namespace ax::ops
