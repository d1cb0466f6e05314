// How an op appears in a model file, as its descriptor states it: the attributes it takes (with
// where each lives in Attrs and what values are allowed), its parameters and its inputs; and what
// an op sees of a file's node when the graph is recorded. The model-file reader and the graph
// (nn/) do the reading, writing and recording through these lists, for every op alike; the tape
// itself never parses a file.
#pragma once

#include "../tape.hpp"

#include <limits>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <variant>
#include <vector>

namespace ax::ops {

// Where an attribute lives in Attrs; its type is the field's. A string's allowed values are the
// op's to check (in its finish); a list of integers (`dims`) is read as written.
using Dims = decltype(Attrs::dims);
using AttrField = std::variant<Pair2d Attrs::*, std::int64_t Attrs::*, double Attrs::*, bool Attrs::*,
                               std::vector<double> Attrs::*, std::string Attrs::*, Dims Attrs::*>;

// The values an attribute may take besides its type's (numbers are always finite).
enum class Allowed : std::uint8_t {
  any,
  positive,      // integers and pairs at least 1, numbers above 0 (for lists: every entry)
  non_negative,  // integers and pairs at least 0, numbers at least 0
  sample_axis,   // an axis counting the batch dimension, possibly negative, never 0 (the batch)
};

struct AttributeSpec {
  const char* name;  // as the model file spells it
  AttrField field;
  Allowed allowed = Allowed::any;
  bool required = false;
  bool nullable = false;  // JSON null means "the default" (the pools' stride)
};

struct ParamSpec {
  const char* name;  // the tensor is "<node>.<name>"
  bool required;
};

constexpr std::size_t kAnyCount = std::numeric_limits<std::size_t>::max();

// The model-file form of an op. Ops that only code records (affine, exp, matmul, ...) have none.
struct FileForm {
  bool in_file = false;
  std::size_t min_inputs = 1, max_inputs = 1;  // max_inputs may be kAnyCount
  std::vector<AttributeSpec> attributes;
  std::vector<ParamSpec> params;
};

// The model-file form of an op: its attributes, its parameters and how many inputs it takes.
inline FileForm file_op(std::vector<AttributeSpec> attributes = {}, std::vector<ParamSpec> params = {},
                        std::size_t min_inputs = 1, std::size_t max_inputs = 1) {
  return {true, min_inputs, max_inputs, std::move(attributes), std::move(params)};
}

// "exactly 1 input", "at least 2 inputs", "2 to 3 inputs"
inline std::string input_count_text(const FileForm& form) {
  const std::string min = std::to_string(form.min_inputs);
  if (form.max_inputs == kAnyCount) return "at least " + min + " inputs";
  if (form.max_inputs == form.min_inputs) return "exactly " + min + (form.min_inputs == 1 ? " input" : " inputs");
  return min + " to " + std::to_string(form.max_inputs) + " inputs";
}

// The attribute names a file's node gave (the others keep their defaults).
using AttributeNames = std::set<std::string>;

// A node's parameters as the file holds them, before any input shape is known: what an op's
// check_parameters sees. Values are widened to double when asked for (a large weight is
// never widened only to be checked).
struct FileParameters {
  struct Tensor {
    const std::vector<std::size_t>* shape;
    std::function<std::vector<double>()> values;
  };
  std::string node;                      // a parameter's tensor is "<node>.<param>"
  const Attrs* attrs = nullptr;           // the node's attributes, as read
  std::map<std::string, Tensor> present;  // by param name

  bool has(const std::string& param) const { return present.count(param) > 0; }
  const std::vector<std::size_t>& shape(const std::string& param) const { return *present.at(param).shape; }
  std::vector<double> values(const std::string& param) const { return present.at(param).values(); }
  // "\"conv1.weight\"", as messages name a tensor
  std::string quoted(const std::string& param) const { return "\"" + node + "." + param + "\""; }
};

// "[3, 1, 5, 5]"
inline std::string dims_string(const std::vector<std::size_t>& dims) {
  std::string out = "[";
  for (std::size_t i = 0; i < dims.size(); ++i) out += (i ? ", " : "") + std::to_string(dims[i]);
  return out + "]";
}

// conv2d's and linear's optional bias is [O], O from the weight's first dimension.
inline void check_bias_fits_weight(const FileParameters& p) {
  const std::vector<std::size_t> expected{p.shape("weight")[0]};
  if (p.has("bias") && p.shape("bias") != expected)
    throw Error("parameter " + p.quoted("bias") + " has shape " + dims_string(p.shape("bias")) + "; expected " +
                dims_string(expected) + " ([O], O from the weight)");
}

// What an op's from_graph sees of a file's node while the graph is recorded onto a tape
// (nn/graph implements it): the node's inputs, its attributes as read from the file, and its
// parameters as leaves, each checked against the shape the op expects.
template <class T>
class GraphNode {
 public:
  virtual ~GraphNode() = default;

  virtual const std::vector<Var<T>>& inputs() const = 0;
  Var<T> input(std::size_t i = 0) const { return inputs()[i]; }
  const Shape& input_shape(std::size_t i = 0) const { return input(i).tape->value(input(i)).shape(); }
  virtual const Attrs& attrs() const = 0;

  virtual bool has(const char* param) const = 0;
  // The tensor "<node>.<param>" as a parameter leaf; a 0 in `expected` accepts any size there.
  virtual Var<T> parameter(const char* param, const Shape& expected) = 0;
  // A constant leaf that stands in for an optional parameter the file leaves out.
  virtual Var<T> constant(const char* param, Tensor<T> value) = 0;

  // Throws Error("<model>: node '<name>': <what>").
  [[noreturn]] virtual void fail(const std::string& what) const = 0;

  // An axis as a file writes it (the batch counted, possibly negative) resolved against the rank
  // of input 0; the batch dimension is refused.
  int axis(std::int64_t written, const char* what) const {
    const std::int64_t rank = static_cast<std::int64_t>(input_shape().size());
    const std::int64_t resolved = written < 0 ? written + rank : written;
    if (resolved < 0 || resolved >= rank)
      fail(std::string(what) + " " + std::to_string(written) + " is out of range for rank " + std::to_string(rank));
    if (resolved == 0) fail(std::string(what) + " " + std::to_string(written) + " names the batch dimension");
    return static_cast<int>(resolved);
  }
  // Input 0 must have `rank` dimensions (batch included); `layout` says which, e.g. "[N, C, H, W]".
  void require_rank(std::size_t rank, const std::string& op, const char* layout) const {
    if (input_shape().size() != rank)
      fail(op + " needs an " + layout + " input, got shape " + to_string(input_shape()));
  }
};

}  // namespace ax::ops
