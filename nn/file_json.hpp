// What the model-file readers share (nn/safetensors, nn/graph_schema, nn/toy_model,
// nn/model_file): faults, one-line messages that quote what a file holds safely, and a strict JSON
// parser. Internal to nn/.
#pragma once

#include "../autodiff/tensor.hpp"  // ax::Error

#include <nlohmann/json.hpp>

#include <cstdint>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace ax::nn::detail {

using json = nlohmann::json;

// Sizes of up to 2^40 elements must fit in std::size_t.
static_assert(sizeof(std::size_t) >= 8, "the model file reader needs a 64-bit size_t");

constexpr std::uint64_t kMaxHeaderBytes = std::uint64_t{100} << 20;  // 100 MiB
constexpr std::uint64_t kMaxElements = std::uint64_t{1} << 40;       // per tensor or input
constexpr std::int64_t kMaxAttributeInt = std::int64_t{1} << 40;     // |integer attribute|
// No model file comes near this depth; the bound keeps every recursion over JSON values shallow.
constexpr std::size_t kMaxJsonDepth = 64;

// A fault in a file, said without the file's name (named() adds it).
struct Fault : std::runtime_error {
  using std::runtime_error::runtime_error;
};
[[noreturn]] inline void fault(const std::string& what) { throw Fault(what); }

// Control characters shown as \xNN.
std::string one_line(const std::string& text);
// A name in double quotes, escaped as JSON escapes it (invalid UTF-8 replaced, never thrown).
std::string in_quotes(const std::string& name);
// "[2, 3]"
std::string shape_text(const std::vector<std::size_t>& shape);
// A JSON value as a message shows it: scalars and short flat arrays written out, containers
// summarized (never dumped whole: they may be huge).
std::string describe(const json& value);
// nlohmann's message without its "[json.exception....] " prefix.
std::string json_error_text(const std::exception& e);

// Faults unless `text` is valid UTF-8; `what` names the text.
void check_utf8(const std::string& text, const std::string& what);
// Parses JSON, refusing two things nlohmann would accept: a key twice in one object (the last
// would silently win) and nesting deeper than kMaxJsonDepth.
json parse_json(const std::string& text, const std::string& what);

// A non-negative JSON integer ("-0" included), or nothing.
std::optional<std::uint64_t> as_unsigned(const json& value);
const json* find_member(const json& object, const char* key);
const json& require_member(const json& object, const char* key, const std::string& owner);

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

}  // namespace ax::nn::detail
