// Reading and writing the model file of FORMAT.md. The checks run in the order the file is laid
// out: the container (length, header, tensor entries, tiling), the graph, then each node's
// parameters. Faults are raised as `Fault` without the file's name; the public functions add it.
#include "model_file.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>

namespace ax::nn {
namespace {

using json = nlohmann::json;

// Sizes of up to 2^40 elements must fit in std::size_t.
static_assert(sizeof(std::size_t) >= 8, "the model file reader needs a 64-bit size_t");

constexpr std::uint64_t kMaxHeaderBytes = std::uint64_t{100} << 20;  // 100 MiB
constexpr std::uint64_t kMaxElements = std::uint64_t{1} << 40;       // per tensor or input
constexpr std::int64_t kMaxAttributeInt = std::int64_t{1} << 40;     // |integer attribute|
// No model file comes near this depth; the bound keeps every recursion over JSON values shallow.
constexpr std::size_t kMaxJsonDepth = 64;
constexpr std::size_t kUnbounded = std::numeric_limits<std::size_t>::max();

struct Fault : std::runtime_error {
  using std::runtime_error::runtime_error;
};
[[noreturn]] void fault(const std::string& what) { throw Fault(what); }

// ---------------------------------------------------------------------------------------------
// Text for messages: every message is one line, whatever the file holds.

// Control characters shown as \xNN.
std::string one_line(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    if (c < 0x20 || c == 0x7f) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\x%02x", c);
      out += escaped;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

// A name in double quotes, escaped as JSON escapes it (invalid UTF-8 replaced, never thrown).
std::string in_quotes(const std::string& name) {
  return json(name).dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string shape_text(const std::vector<std::size_t>& shape) {
  std::string out = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

std::string pair_text(const Pair& pair) { return "[" + std::to_string(pair[0]) + ", " + std::to_string(pair[1]) + "]"; }

// A JSON value as a message shows it: scalars and short flat arrays written out, containers
// summarized (never dumped whole: they may be huge).
std::string describe(const json& value) {
  auto is_scalar = [](const json& v) { return !v.is_structured(); };
  if (value.is_number_float() && !std::isfinite(value.get<double>()))  // dump() would say null
    return std::isnan(value.get<double>()) ? "NaN" : value.get<double>() > 0 ? "Inf" : "-Inf";
  if (is_scalar(value)) return value.dump(-1, ' ', false, json::error_handler_t::replace);
  if (value.is_array() && value.size() <= 8 && std::all_of(value.begin(), value.end(), is_scalar)) {
    std::string out = "[";
    for (std::size_t i = 0; i < value.size(); ++i) out += (i ? ", " : "") + describe(value[i]);
    return out + "]";
  }
  if (value.is_array()) return "an array of " + std::to_string(value.size()) + " elements";
  return "an object";
}

// nlohmann's message without its "[json.exception....] " prefix.
std::string json_error_text(const std::exception& e) {
  std::string text = e.what();
  if (!text.empty() && text[0] == '[') {
    const std::size_t close = text.find("] ");
    if (close != std::string::npos) text.erase(0, close + 2);
  }
  return one_line(text);
}

// Runs `body`, turning its faults into ax::Error("<name>: <fault>").
template <class Body>
auto named(const std::string& name, Body&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const Fault& f) {
    throw Error(one_line(name) + ": " + f.what());
  } catch (const json::exception& e) {  // a check this file forgot; still one line, still named
    throw Error(one_line(name) + ": " + json_error_text(e));
  }
}

// ---------------------------------------------------------------------------------------------
// JSON input

// Where `text` stops being valid UTF-8 (no overlong forms, no surrogates, at most U+10FFFF);
// npos if it is valid throughout.
std::size_t invalid_utf8_at(const std::string& text) {
  static const std::uint32_t kMinCodePoint[] = {0, 0, 0x80, 0x800, 0x10000};  // by sequence length
  std::size_t i = 0;
  while (i < text.size()) {
    const unsigned char lead = static_cast<unsigned char>(text[i]);
    std::size_t length;
    std::uint32_t code_point;
    if (lead < 0x80) {
      ++i;
      continue;
    } else if ((lead & 0xE0) == 0xC0) {
      length = 2, code_point = lead & 0x1F;
    } else if ((lead & 0xF0) == 0xE0) {
      length = 3, code_point = lead & 0x0F;
    } else if ((lead & 0xF8) == 0xF0) {
      length = 4, code_point = lead & 0x07;
    } else {
      return i;
    }
    if (text.size() - i < length) return i;
    for (std::size_t k = 1; k < length; ++k) {
      const unsigned char next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xC0) != 0x80) return i;
      code_point = (code_point << 6) | (next & 0x3F);
    }
    if (code_point < kMinCodePoint[length] || code_point > 0x10FFFF || (code_point >= 0xD800 && code_point <= 0xDFFF))
      return i;
    i += length;
  }
  return std::string::npos;
}

void check_utf8(const std::string& text, const std::string& what) {
  const std::size_t at = invalid_utf8_at(text);
  if (at != std::string::npos) {
    char byte[8];
    std::snprintf(byte, sizeof byte, "0x%02x", static_cast<unsigned char>(text[at]));
    fault(what + " is not valid UTF-8 (byte " + byte + " at offset " + std::to_string(at) + ")");
  }
}

// Parses JSON, refusing two things nlohmann would accept: a key twice in one object (the last
// would silently win) and nesting deeper than kMaxJsonDepth.
json parse_json(const std::string& text, const std::string& what) {
  // nlohmann takes a NUL byte for the end of the input, so "{}\0anything" would pass; JSON text
  // never holds a raw NUL (not even inside strings).
  const std::size_t nul = text.find('\0');
  if (nul != std::string::npos) fault(what + " is not valid JSON (a NUL byte at offset " + std::to_string(nul) + ")");
  std::vector<std::set<std::string>> keys_of_open_containers;  // arrays' sets stay empty
  auto check = [&](int /*depth*/, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        if (keys_of_open_containers.size() >= kMaxJsonDepth)
          fault(what + " nests deeper than " + std::to_string(kMaxJsonDepth) + " levels");
        keys_of_open_containers.emplace_back();
        break;
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        keys_of_open_containers.pop_back();
        break;
      case json::parse_event_t::key: {
        const std::string& key = parsed.get_ref<const std::string&>();
        if (!keys_of_open_containers.back().insert(key).second)
          fault(what + " has the key " + in_quotes(key) + " twice in one object");
        break;
      }
      case json::parse_event_t::value:
        break;
    }
    return true;
  };
  try {
    return json::parse(text, check);
  } catch (const json::exception& e) {  // parse_error, or out_of_range for a number like 1e999
    fault(what + " is not valid JSON (" + json_error_text(e) + ")");
  }
}

// A non-negative JSON integer ("-0" included), or nothing.
std::optional<std::uint64_t> as_unsigned(const json& value) {
  if (value.is_number_unsigned()) return value.get<std::uint64_t>();
  if (value.is_number_integer() && value.get<std::int64_t>() >= 0) return value.get<std::uint64_t>();
  return std::nullopt;
}

const json* find_member(const json& object, const char* key) {
  const auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

const json& require_member(const json& object, const char* key, const std::string& owner) {
  const json* member = find_member(object, key);
  if (!member) fault(owner + " has no \"" + key + "\"");
  return *member;
}

// ---------------------------------------------------------------------------------------------
// dtypes and little-endian values

struct DtypeInfo {
  const char* name;
  std::size_t size;
};

// Every dtype safetensors defines (0.4 and 0.5); any other string is a fault.
constexpr DtypeInfo kDtypes[] = {
    {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2}, {"U16", 2}, {"F16", 2},
    {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4},     {"F64", 8},     {"I64", 8}, {"U64", 8},
};

const DtypeInfo* find_dtype(const std::string& name) {
  for (const DtypeInfo& d : kDtypes)
    if (name == d.name) return &d;
  return nullptr;
}

std::string dtype_list() {
  std::string out;
  for (const DtypeInfo& d : kDtypes) out += (out.empty() ? "" : ", ") + std::string(d.name);
  return out;
}

// The dtypes whose values are kept (widened to double) and that a node may use.
bool is_parameter_dtype(const std::string& dtype) {
  return dtype == "F16" || dtype == "BF16" || dtype == "F32" || dtype == "F64";
}

// Little-endian, from bytes with no alignment promised: assembled byte by byte.
template <class Unsigned>
Unsigned load_le(const unsigned char* bytes) {
  Unsigned value = 0;
  for (std::size_t i = 0; i < sizeof(Unsigned); ++i) value |= static_cast<Unsigned>(bytes[i]) << (8 * i);
  return value;
}

template <class Unsigned>
void store_le(std::string& out, Unsigned value) {
  for (std::size_t i = 0; i < sizeof(Unsigned); ++i) out += static_cast<char>((value >> (8 * i)) & 0xFF);
}

// IEEE binary16 -> double, exactly: every half is m * 2^e with |m| < 2^11.
double widen_f16(std::uint16_t bits) {
  const int exponent = (bits >> 10) & 0x1F;
  const int mantissa = bits & 0x3FF;
  const double sign = (bits & 0x8000) ? -1.0 : 1.0;
  if (exponent == 0x1F)
    return mantissa ? std::numeric_limits<double>::quiet_NaN() : sign * std::numeric_limits<double>::infinity();
  if (exponent == 0) return sign * std::ldexp(mantissa, -24);  // zero and subnormals
  return sign * std::ldexp(mantissa + 1024, exponent - 25);
}

// bfloat16 is the upper half of a binary32.
double widen_bf16(std::uint16_t bits) {
  const std::uint32_t wide = std::uint32_t{bits} << 16;
  float value;
  std::memcpy(&value, &wide, sizeof value);
  return value;
}

double load_value(const std::string& dtype, const unsigned char* bytes) {
  if (dtype == "F16") return widen_f16(load_le<std::uint16_t>(bytes));
  if (dtype == "BF16") return widen_bf16(load_le<std::uint16_t>(bytes));
  if (dtype == "F32") {
    const std::uint32_t bits = load_le<std::uint32_t>(bytes);
    float value;
    std::memcpy(&value, &bits, sizeof value);
    return value;
  }
  const std::uint64_t bits = load_le<std::uint64_t>(bytes);  // F64
  double value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

// ---------------------------------------------------------------------------------------------
// The container

// One tensor of the header, checked against itself and the buffer's size, not yet read.
struct Entry {
  std::string name;
  std::string dtype;
  std::vector<std::size_t> shape;
  std::uint64_t begin = 0, end = 0;
};

// A shape of non-negative integers with at most 2^40 elements; each dimension is bounded before
// it is multiplied, so no product can overflow.
std::vector<std::size_t> read_shape(const json& value, const std::string& owner) {
  if (!value.is_array()) fault(owner + ": shape must be a list of non-negative integers, found " + describe(value));
  std::vector<std::size_t> shape;
  for (const json& dim : value) {
    const auto size = as_unsigned(dim);
    if (!size) fault(owner + ": shape must be a list of non-negative integers, found " + describe(value));
    if (*size > kMaxElements) fault(owner + ": shape has a dimension of " + std::to_string(*size) + ", over 2^40");
    shape.push_back(*size);
  }
  if (std::find(shape.begin(), shape.end(), 0) != shape.end()) return shape;  // zero elements
  std::uint64_t count = 1;
  for (std::size_t size : shape) {
    if (count > kMaxElements / size) fault(owner + ": shape " + shape_text(shape) + " holds more than 2^40 elements");
    count *= size;
  }
  return shape;
}

std::uint64_t element_count(const std::vector<std::size_t>& shape) {
  std::uint64_t count = 1;
  for (std::size_t size : shape) count *= size;  // bounded by read_shape
  return count;
}

Entry read_entry(const std::string& name, const json& value, std::uint64_t buffer_size) {
  const std::string owner = "tensor " + in_quotes(name);
  if (!value.is_object())
    fault(owner + ": header entry is " + describe(value) + ", not {\"dtype\", \"shape\", \"data_offsets\"}");
  Entry entry;
  entry.name = name;

  const json& dtype = require_member(value, "dtype", owner);
  if (!dtype.is_string()) fault(owner + ": dtype must be a string, found " + describe(dtype));
  entry.dtype = dtype.get<std::string>();
  const DtypeInfo* info = find_dtype(entry.dtype);
  if (!info)
    fault(owner + ": undefined dtype " + in_quotes(entry.dtype) + " (safetensors defines " + dtype_list() + ")");

  entry.shape = read_shape(require_member(value, "shape", owner), owner);

  const json& offsets = require_member(value, "data_offsets", owner);
  std::optional<std::uint64_t> begin, end;
  if (offsets.is_array() && offsets.size() == 2) begin = as_unsigned(offsets[0]), end = as_unsigned(offsets[1]);
  if (!begin || !end)
    fault(owner + ": data_offsets must be [begin, end], two non-negative integers, found " + describe(offsets));
  entry.begin = *begin, entry.end = *end;
  const std::string range = "data_offsets [" + std::to_string(entry.begin) + ", " + std::to_string(entry.end) + "]";
  if (entry.begin > entry.end) fault(owner + ": " + range + " end before they begin");
  if (entry.end > buffer_size)
    fault(owner + ": " + range + " run past the end of the data buffer (" + std::to_string(buffer_size) + " bytes)");

  const std::uint64_t needed = element_count(entry.shape) * info->size;  // <= 2^43: no overflow
  if (entry.end - entry.begin != needed)
    fault(owner + ": " + range + " hold " + std::to_string(entry.end - entry.begin) + " bytes, but shape " +
          shape_text(entry.shape) + " of " + entry.dtype + " needs " + std::to_string(needed));
  return entry;
}

std::map<std::string, std::string> read_metadata(const json& value) {
  if (!value.is_object()) fault("__metadata__ must map strings to strings, found " + describe(value));
  std::map<std::string, std::string> metadata;
  for (const auto& [key, text] : value.items()) {
    if (!text.is_string())
      fault("__metadata__ must map strings to strings; key " + in_quotes(key) + " holds " + describe(text));
    metadata[key] = text.get<std::string>();
  }
  return metadata;
}

// The safetensors reference reader's rule: sorted by begin, the tensors cover the data buffer
// exactly, with no gap, no overlap and no trailing bytes.
void check_tiling(std::vector<Entry> entries, std::uint64_t buffer_size) {
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  auto bytes = [](const Entry& e) { return " (bytes " + std::to_string(e.begin) + ".." + std::to_string(e.end) + ")"; };
  std::uint64_t covered = 0;
  const Entry* previous = nullptr;
  for (const Entry& entry : entries) {
    if (entry.begin > covered && !previous)
      fault("data buffer has a gap: the first tensor " + in_quotes(entry.name) + bytes(entry) + " does not start at 0");
    if (entry.begin > covered)
      fault("data buffer has a gap of " + std::to_string(entry.begin - covered) + " bytes between tensor " +
            in_quotes(previous->name) + bytes(*previous) + " and tensor " + in_quotes(entry.name) + bytes(entry));
    if (entry.begin < covered)
      fault("tensor " + in_quotes(entry.name) + bytes(entry) + " overlaps tensor " + in_quotes(previous->name) +
            bytes(*previous));
    covered = entry.end;
    previous = &entry;
  }
  if (covered != buffer_size)
    fault("data buffer has " + std::to_string(buffer_size - covered) + " trailing bytes after the last tensor (" +
          std::to_string(buffer_size) + " bytes, tensors cover " + std::to_string(covered) + ")");
}

TensorData load_tensor(const Entry& entry, const unsigned char* buffer) {
  TensorData tensor;
  tensor.dtype = entry.dtype;
  tensor.shape = entry.shape;
  if (!is_parameter_dtype(entry.dtype)) return tensor;  // kept for its name, never used
  const std::size_t size = find_dtype(entry.dtype)->size;
  const std::size_t count = element_count(entry.shape);
  tensor.values.resize(count);
  for (std::size_t i = 0; i < count; ++i) tensor.values[i] = load_value(entry.dtype, buffer + entry.begin + i * size);
  return tensor;
}

struct Container {
  std::map<std::string, std::string> metadata;
  std::map<std::string, TensorData> tensors;
};

Container read_container(const std::string& bytes) {
  if (bytes.size() < 8)
    fault("file is " + std::to_string(bytes.size()) + " bytes, too short for the 8-byte header length");
  const auto* file = reinterpret_cast<const unsigned char*>(bytes.data());
  const std::uint64_t header_size = load_le<std::uint64_t>(file);
  if (header_size > kMaxHeaderBytes)
    fault("header length " + std::to_string(header_size) + " is over the limit of 100 MiB");
  if (header_size > bytes.size() - 8)
    fault("header length " + std::to_string(header_size) + " runs past the end of the file (" +
          std::to_string(bytes.size()) + " bytes)");

  const std::string header = bytes.substr(8, header_size);
  check_utf8(header, "header");
  // safetensors: the header starts with '{' and may be padded at the end with spaces.
  if (header.empty() || header[0] != '{') fault("header is not a JSON object (it must start with '{')");
  const json document = parse_json(header, "header");
  if (!document.is_object()) fault("header is not a JSON object");

  const std::uint64_t buffer_size = bytes.size() - 8 - header_size;
  Container container;
  std::vector<Entry> entries;
  for (const auto& [key, value] : document.items()) {
    if (key == "__metadata__")
      container.metadata = read_metadata(value);
    else
      entries.push_back(read_entry(key, value, buffer_size));
  }
  check_tiling(entries, buffer_size);
  const unsigned char* buffer = file + 8 + header_size;
  for (const Entry& entry : entries) container.tensors[entry.name] = load_tensor(entry, buffer);
  return container;
}

// ---------------------------------------------------------------------------------------------
// The graph

struct ParamSpec {
  const char* name;
  bool required;
};

struct OpSpec {
  const char* name;
  std::size_t min_inputs, max_inputs;
  std::vector<std::string> attributes;
  std::vector<ParamSpec> params;
};

// FORMAT.md's table of version-1 operations.
const std::vector<OpSpec>& op_table() {
  // clang-format off
  static const std::vector<OpSpec> table = {
      {"conv2d", 1, 1, {"stride", "padding", "dilation", "groups"}, {{"weight", true}, {"bias", false}}},
      {"linear", 1, 1, {}, {{"weight", true}, {"bias", false}}},
      {"batchnorm2d", 1, 1, {"eps"}, {{"running_mean", true}, {"running_var", true}, {"weight", false}, {"bias", false}}},
      {"normalize", 1, 1, {"mean", "std"}, {}},
      {"relu", 1, 1, {}, {}},
      {"sigmoid", 1, 1, {}, {}},
      {"tanh", 1, 1, {}, {}},
      {"identity", 1, 1, {}, {}},
      {"leaky_relu", 1, 1, {"negative_slope"}, {}},
      {"maxpool2d", 1, 1, {"kernel", "stride", "padding", "ceil_mode"}, {}},
      {"avgpool2d", 1, 1, {"kernel", "stride", "padding", "ceil_mode", "count_include_pad"}, {}},
      {"adaptive_avgpool2d", 1, 1, {"output_size"}, {}},
      {"flatten", 1, 1, {"start_dim"}, {}},
      {"add", 2, kUnbounded, {}, {}},
      {"sub", 2, 2, {}, {}},
      {"mul", 2, 2, {}, {}},
      {"concat", 2, kUnbounded, {"axis"}, {}},
      {"softmax", 1, 1, {"axis"}, {}},
      {"log_softmax", 1, 1, {"axis"}, {}},
  };
  // clang-format on
  return table;
}

const OpSpec* find_op(const std::string& name) {
  for (const OpSpec& op : op_table())
    if (name == op.name) return &op;
  return nullptr;
}

std::string joined(const std::vector<std::string>& words) {
  std::string out;
  for (const std::string& w : words) out += (out.empty() ? "" : ", ") + w;
  return out;
}

bool is_pool(const std::string& op) { return op == "maxpool2d" || op == "avgpool2d"; }

// Attribute readers. `where` is e.g. `node "conv1": attribute "stride"`.

std::int64_t read_integer(const json& value, const std::string& where) {
  if (!value.is_number_integer()) fault(where + " must be a JSON integer, found " + describe(value));
  const bool in_range = value.is_number_unsigned() ? value.get<std::uint64_t>() <= std::uint64_t(kMaxAttributeInt)
                                                   : value.get<std::int64_t>() >= -kMaxAttributeInt;  // negative here
  if (!in_range) fault(where + " is " + describe(value) + ", beyond 2^40 in magnitude");
  return value.get<std::int64_t>();
}

// A pair: one integer meaning both, or a list of two; each at least `minimum` (0 or 1).
Pair read_pair(const json& value, const std::string& where, std::int64_t minimum) {
  const std::string expected =
      std::string("a non-negative integer or a list of two") + (minimum > 0 ? ", at least 1" : "");
  Pair pair;
  if (value.is_number_integer()) {
    pair[0] = pair[1] = read_integer(value, where);
  } else if (value.is_array() && value.size() == 2 && value[0].is_number_integer() && value[1].is_number_integer()) {
    pair = {read_integer(value[0], where), read_integer(value[1], where)};
  } else {
    fault(where + " must be " + expected + ", found " + describe(value));
  }
  if (pair[0] < minimum || pair[1] < minimum) fault(where + " must be " + expected + ", found " + describe(value));
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

// Reads one attribute the op lists into the node. Returns whether it was a stride other than
// null (null means the default).
bool read_attribute(NodeSpec& node, const std::string& attribute, const json& value, const std::string& where) {
  if (attribute == "stride" && value.is_null()) return false;
  // PyTorch refuses a kernel, stride, dilation or output size of 0; padding may be 0.
  if (attribute == "kernel") {
    node.kernel = read_pair(value, where, 1);
  } else if (attribute == "stride") {
    node.stride = read_pair(value, where, 1);
  } else if (attribute == "padding") {
    node.padding = read_pair(value, where, 0);
  } else if (attribute == "dilation") {
    node.dilation = read_pair(value, where, 1);
  } else if (attribute == "output_size") {
    node.output_size = read_pair(value, where, 1);
  } else if (attribute == "groups") {
    node.groups = read_integer(value, where);
    if (node.groups < 1) fault(where + " must be at least 1, found " + describe(value));
  } else if (attribute == "eps") {
    node.eps = read_number(value, where);
    if (node.eps < 0) fault(where + " must not be negative, found " + describe(value));
  } else if (attribute == "negative_slope") {
    node.negative_slope = read_number(value, where);
  } else if (attribute == "mean") {
    node.mean = read_numbers(value, where);
  } else if (attribute == "std") {
    node.std = read_numbers(value, where);
    for (std::size_t i = 0; i < node.std.size(); ++i)
      if (node.std[i] <= 0)
        fault(where + " holds " + describe(json(node.std[i])) + " at index " + std::to_string(i) +
              "; std must be positive");
  } else if (attribute == "ceil_mode") {
    node.ceil_mode = read_bool(value, where);
  } else if (attribute == "count_include_pad") {
    node.count_include_pad = read_bool(value, where);
  } else if (attribute == "start_dim") {
    node.start_dim = read_axis(value, where);
  } else if (attribute == "axis") {
    node.axis = read_axis(value, where);
  }
  return attribute == "stride";
}

// What needs several attributes together: required ones, pool defaults and PyTorch's limits.
void finish_node(NodeSpec& node, const json& object, bool stride_given, const std::string& where) {
  if (is_pool(node.op)) {
    require_member(object, "kernel", where);
    if (!stride_given) node.stride = node.kernel;
    if (node.padding[0] > node.kernel[0] / 2 || node.padding[1] > node.kernel[1] / 2)
      fault(where + ": padding " + pair_text(node.padding) + " is more than half the kernel " + pair_text(node.kernel) +
            " (PyTorch requires padding <= kernel / 2)");
  }
  if (node.op == "normalize") {
    require_member(object, "mean", where);
    require_member(object, "std", where);
    if (node.mean.size() != node.std.size() && node.mean.size() != 1 && node.std.size() != 1)
      fault(where + ": mean has " + std::to_string(node.mean.size()) + " numbers and std " +
            std::to_string(node.std.size()) + "; they must agree unless one is a single number");
  }
}

// The names a node's inputs may refer to, and the others, to say why a name is refused.
struct Names {
  std::string graph_input;
  std::set<std::string> earlier;  // the nodes before the one being read
  std::set<std::string> all;      // every node's name, to tell a later node from an unknown name
};

std::string input_count_text(const OpSpec& op) {
  const std::string min = std::to_string(op.min_inputs);
  if (op.max_inputs == kUnbounded) return "at least " + min + " inputs";
  if (op.max_inputs == op.min_inputs) return "exactly " + min + (op.min_inputs == 1 ? " input" : " inputs");
  return min + " to " + std::to_string(op.max_inputs) + " inputs";
}

std::vector<std::string> read_node_inputs(const json& object, const OpSpec& op, const std::string& self,
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
    fault(where + ": " + op.name + " takes " + input_count_text(op) + ", found " + std::to_string(inputs.size()));
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
  const OpSpec* op = find_op(node.op);
  if (!op) fault(where + ": unknown op " + in_quotes(node.op));

  node.inputs = read_node_inputs(object, *op, node.name, names, where);
  if (node.op == "concat") node.axis = 1;
  if (node.op == "softmax" || node.op == "log_softmax") node.axis = -1;

  bool stride_given = false;
  for (const auto& [key, value] : object.items()) {
    if (key == "name" || key == "op" || key == "inputs") continue;
    if (std::find(op->attributes.begin(), op->attributes.end(), key) == op->attributes.end())
      fault(where + ": unknown attribute " + in_quotes(key) + " for op " + node.op + " (it takes " +
            (op->attributes.empty() ? std::string("none") : joined(op->attributes)) + ")");
    stride_given |= read_attribute(node, key, value, where + ": attribute " + in_quotes(key));
  }
  finish_node(node, object, stride_given, where);
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

// ---------------------------------------------------------------------------------------------
// Parameters: what can be checked without the input's shape.

void check_parameter_values(const std::string& name, const TensorData& tensor, const std::string& where) {
  if (!is_parameter_dtype(tensor.dtype))
    fault(where + ": parameter " + in_quotes(name) + " has dtype " + tensor.dtype +
          "; parameters must be F32 or F64 (F16 and BF16 are widened)");
  for (std::size_t i = 0; i < tensor.values.size(); ++i)
    if (!std::isfinite(tensor.values[i]))
      fault(where + ": parameter " + in_quotes(name) + " holds " + (std::isnan(tensor.values[i]) ? "NaN" : "Inf") +
            " at flat index " + std::to_string(i));
}

void expect_rank(const std::string& name, const TensorData& tensor, std::size_t rank, const std::string& layout,
                 const std::string& where) {
  if (tensor.shape.size() != rank)
    fault(where + ": parameter " + in_quotes(name) + " has shape " + shape_text(tensor.shape) + "; expected rank " +
          std::to_string(rank) + ", " + layout);
}

void expect_shape(const std::string& name, const TensorData& tensor, const std::vector<std::size_t>& shape,
                  const std::string& why, const std::string& where) {
  if (tensor.shape != shape)
    fault(where + ": parameter " + in_quotes(name) + " has shape " + shape_text(tensor.shape) + "; expected " +
          shape_text(shape) + " (" + why + ")");
}

void check_node_parameters(const NodeSpec& node, const std::map<std::string, TensorData>& tensors) {
  const std::string where = "node " + in_quotes(node.name);
  std::map<std::string, const TensorData*> params;  // by param name, e.g. "weight"
  for (const ParamSpec& param : find_op(node.op)->params) {
    const std::string name = node.name + "." + param.name;
    const auto it = tensors.find(name);
    if (it == tensors.end()) {
      if (param.required)
        fault(where + ": missing parameter " + in_quotes(name) + " (" + node.op + " needs " + param.name + ")");
      continue;
    }
    check_parameter_values(name, it->second, where);
    params[param.name] = &it->second;
  }
  auto name_of = [&](const std::string& param) { return node.name + "." + param; };

  if (node.op == "conv2d" || node.op == "linear") {
    const TensorData& weight = *params.at("weight");
    const bool conv = node.op == "conv2d";
    expect_rank(name_of("weight"), weight, conv ? 4 : 2, conv ? "[O, I/groups, KH, KW]" : "[O, I]", where);
    if (conv && std::find(weight.shape.begin(), weight.shape.end(), 0) != weight.shape.end())
      fault(where + ": parameter " + in_quotes(name_of("weight")) + " has shape " + shape_text(weight.shape) +
            "; a conv2d weight has no zero dimension");
    if (conv && weight.shape[0] % node.groups != 0)
      fault(where + ": groups " + std::to_string(node.groups) + " does not divide the " +
            std::to_string(weight.shape[0]) + " output channels of " + in_quotes(name_of("weight")) + " " +
            shape_text(weight.shape));
    if (params.count("bias"))
      expect_shape(name_of("bias"), *params.at("bias"), {weight.shape[0]}, "[O], O from the weight", where);
  }
  if (node.op == "batchnorm2d") {
    const TensorData& mean = *params.at("running_mean");
    expect_rank(name_of("running_mean"), mean, 1, "[C]", where);
    for (const char* param : {"running_var", "weight", "bias"})
      if (params.count(param))
        expect_shape(name_of(param), *params.at(param), mean.shape,
                     "the shape of " + in_quotes(name_of("running_mean")), where);
    const TensorData& var = *params.at("running_var");
    for (std::size_t i = 0; i < var.values.size(); ++i)
      if (var.values[i] < 0)
        fault(where + ": parameter " + in_quotes(name_of("running_var")) + " holds " + describe(json(var.values[i])) +
              " at flat index " + std::to_string(i) + "; a variance cannot be negative");
  }
}

void check_parameters(const GraphSpec& graph, const std::map<std::string, TensorData>& tensors) {
  for (const NodeSpec& node : graph.nodes) check_node_parameters(node, tensors);
}

// ---------------------------------------------------------------------------------------------
// Files

std::string read_file_bytes(const std::string& path) {
  std::error_code error;
  if (std::filesystem::is_directory(path, error)) fault("is a directory, not a file");
  std::ifstream in(path, std::ios::binary);
  if (!in) fault(std::string("cannot open the file (") + std::strerror(errno) + ")");
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size < 0) fault("cannot read the file");
  in.seekg(0, std::ios::beg);
  std::string bytes(static_cast<std::size_t>(size), '\0');
  in.read(bytes.data(), size);
  if (in.gcount() != size) fault("cannot read the file's " + std::to_string(size) + " bytes");
  return bytes;
}

ModelSpec model_from_bytes(const std::string& bytes) {
  Container container = read_container(bytes);
  const auto graph_text = container.metadata.find("axiomatic.graph");
  if (graph_text == container.metadata.end())
    fault("no graph: __metadata__ has no \"axiomatic.graph\" (not an axiomatic model file?)");
  const std::string what = "graph (__metadata__[\"axiomatic.graph\"])";
  ModelSpec model;
  model.graph = graph_from_json(parse_json(graph_text->second, what));
  model.tensors = std::move(container.tensors);
  check_parameters(model.graph, model.tensors);
  return model;
}

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

// ---------------------------------------------------------------------------------------------
// Writing

json attribute_to_json(const NodeSpec& node, const std::string& attribute) {
  auto pair = [](const Pair& p) { return json::array({p[0], p[1]}); };
  if (attribute == "kernel") return pair(node.kernel);
  if (attribute == "stride") return pair(node.stride);
  if (attribute == "padding") return pair(node.padding);
  if (attribute == "dilation") return pair(node.dilation);
  if (attribute == "output_size") return pair(node.output_size);
  if (attribute == "groups") return node.groups;
  if (attribute == "eps") return node.eps;
  if (attribute == "negative_slope") return node.negative_slope;
  if (attribute == "mean") return node.mean;
  if (attribute == "std") return node.std;
  if (attribute == "ceil_mode") return node.ceil_mode;
  if (attribute == "count_include_pad") return node.count_include_pad;
  if (attribute == "start_dim") return node.start_dim;
  return node.axis;  // "axis"
}

json node_to_json(const NodeSpec& node) {
  json object = {{"name", node.name}, {"op", node.op}, {"inputs", node.inputs}};
  const OpSpec* op = find_op(node.op);
  if (!op) fault("node " + in_quotes(node.name) + ": unknown op " + in_quotes(node.op));
  for (const std::string& attribute : op->attributes) object[attribute] = attribute_to_json(node, attribute);
  return object;
}

std::string tensor_bytes(const std::string& name, const TensorData& tensor, const std::string& dtype) {
  const std::uint64_t count = element_count(read_shape(json(tensor.shape), "tensor " + in_quotes(name)));
  if (tensor.values.size() != count)
    fault("tensor " + in_quotes(name) + " holds " + std::to_string(tensor.values.size()) + " values, but shape " +
          shape_text(tensor.shape) + " has " + std::to_string(count));
  std::string bytes;
  for (double value : tensor.values) {
    if (dtype == "F64") {
      std::uint64_t bits;
      std::memcpy(&bits, &value, sizeof bits);
      store_le(bytes, bits);
    } else {
      const float narrow = static_cast<float>(value);
      std::uint32_t bits;
      std::memcpy(&bits, &narrow, sizeof bits);
      store_le(bytes, bits);
    }
  }
  return bytes;
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

std::string serialize(const ModelSpec& model, const WriteOptions& options) {
  json header = json::object();
  header["__metadata__"] = {{"axiomatic.graph", graph_document(model.graph).dump()}};
  std::string data;
  for (const auto& [name, tensor] : model.tensors) {  // std::map: sorted by name
    if (name == "__metadata__") fault("a tensor may not be named \"__metadata__\" (the header's metadata key)");
    if (!find_dtype(tensor.dtype)) fault("tensor " + in_quotes(name) + ": undefined dtype " + in_quotes(tensor.dtype));
    if (!is_parameter_dtype(tensor.dtype)) continue;  // no values kept to write
    const std::string dtype = options.floats_as_f64 || tensor.dtype == "F64" ? "F64" : "F32";
    const std::size_t begin = data.size();
    data += tensor_bytes(name, tensor, dtype);
    header[name] = {{"dtype", dtype}, {"shape", tensor.shape}, {"data_offsets", {begin, data.size()}}};
  }
  std::string header_text = header.dump();
  header_text.append((8 - header_text.size() % 8) % 8, ' ');  // the data starts 8-aligned, as safetensors does
  std::string bytes;
  store_le(bytes, std::uint64_t{header_text.size()});
  return bytes + header_text + data;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

nlohmann::json graph_to_json(const GraphSpec& graph) {
  return named("graph", [&] { return graph_document(graph); });
}

GraphSpec parse_graph(const nlohmann::json& graph, const std::string& name) {
  return named(name, [&] { return graph_from_json(graph); });
}

ModelSpec parse_model(const std::string& bytes, const std::string& name) {
  return named(name, [&] { return model_from_bytes(bytes); });
}

ModelSpec read_model(const std::string& path) {
  return named(path, [&] { return model_from_bytes(read_file_bytes(path)); });
}

ModelSpec read_toy_json(const std::string& path) {
  return named(path, [&] { return toy_from_text(read_file_bytes(path)); });
}

std::string serialize_model(const ModelSpec& model, const WriteOptions& options) {
  const std::string bytes = named("model", [&] { return serialize(model, options); });
  parse_model(bytes, "model");  // never hand out what the reader refuses
  return bytes;
}

void write_model(const std::string& path, const ModelSpec& model, const WriteOptions& options) {
  const std::string bytes = named(path, [&] { return serialize(model, options); });
  parse_model(bytes, path);
  named(path, [&] {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    if (!out) fault(std::string("cannot open the file for writing (") + std::strerror(errno) + ")");
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.close();
    if (!out) fault("cannot write the file");
  });
}

ModelSpec load_model(const std::string& path) {
  const std::string suffix = ".json";
  const bool toy = path.size() >= suffix.size() && path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0;
  return toy ? read_toy_json(path) : read_model(path);
}

}  // namespace ax::nn
