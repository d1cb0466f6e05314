// What a model file holds, once read and checked: the graph (docs/format.md, section 2) and the
// tensors. Reading checks everything that can be checked without knowing the input's shape;
// shapes that do not compose are found when the graph is recorded onto a tape (nn/graph).
#pragma once

#include "../autodiff/tape.hpp"  // Attrs

#include <cstdint>
#include <map>
#include <memory>
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

// A tensor's bytes as the model file stores them (little-endian, of the tensor's dtype): a view
// into the file's bytes in memory, kept alive by `owner`. Read from disk, those bytes are a
// private mapping of the file: loading uses a tensor of the run's dtype there, in place, and reads
// the others once, converting them into the tape's buffers.
struct StoredBytes {
  std::shared_ptr<const void> owner;  // the mapping (or parse_model's copy of the bytes)
  const unsigned char* data = nullptr;
  std::size_t size = 0;
  bool mapped = false;  // pages of a mapped file: given back once read (read again from the file if needed)
};

// A tensor of the file. Floating-point tensors (F16, BF16, F32, F64) read from a file keep their
// bytes (`stored`); made in code, they carry `values` (double, row-major). Other dtypes carry
// no values and may not be used by a node. Read the values through the functions below, which
// serve both.
struct TensorData {
  std::string dtype;  // as in the file: "F32", "I64", ...
  std::vector<std::size_t> shape;
  std::vector<double> values;  // row-major; when set, they win over `stored` (empty for non-floating dtypes)
  StoredBytes stored{};        // a model file's bytes for this tensor; empty when made in code
};

// The number of elements the shape holds.
std::size_t element_count(const TensorData& tensor);
// Whether the tensor carries values (floating point, from the file or from code).
bool has_values(const TensorData& tensor);
// The values converted to T into out[0 .. element_count): a copy when the file's dtype is T's,
// one conversion otherwise; a mapped file's pages are given back as they are copied (in blocks of
// 8 MiB). Requires has_values.
template <class T>
void copy_values(const TensorData& tensor, T* out);
// The stored values themselves, to be used in place (no copy): a mapped file's tensor whose dtype
// is T's (F32 for float, F64 for double), T-aligned, on a little-endian host; nullptr otherwise.
// The mapping is private: writing these values copies the page written, the file stays as it is.
template <class T>
T* values_in_place(const TensorData& tensor);
// The values widened to double (exact), wherever they are kept.
std::vector<double> widened_values(const TensorData& tensor);
// The values to edit in code: the stored bytes are widened into `values` once and let go.
std::vector<double>& own_values(TensorData& tensor);
// Gives a mapped file's pages of this tensor back to the system once they have been read (they
// stay readable: the system reads them again from the file): loading then holds the file's
// bytes once, in the tape, not twice.
void release_pages(const TensorData& tensor);

struct ModelSpec {
  GraphSpec graph;
  std::map<std::string, TensorData> tensors;  // by name, e.g. "conv1.weight"
};

}  // namespace ax::nn
