// The graph document of a model file (__metadata__["axiomatic.graph"]) and its tie to the tensors:
// the version, the single input, the nodes in topological order (each op's inputs, attributes and
// parameters as its descriptor lists them, ops/registry.hpp), the output and the labels. Internal
// to nn/.
#pragma once

#include "file_json.hpp"
#include "model_spec.hpp"

#include <map>
#include <string>

namespace ax::nn::detail {

// Reads and checks a graph document, filling in each op's defaults. Faults without a file name.
GraphSpec graph_from_json(const json& document);
// The graph document, every attribute of each node's op written out.
json graph_document(const GraphSpec& graph);
// Every parameter a node needs is present, floating point, finite, and passes its op's checks.
void check_parameters(const GraphSpec& graph, const std::map<std::string, TensorData>& tensors);

}  // namespace ax::nn::detail
