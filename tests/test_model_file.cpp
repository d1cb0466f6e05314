// The model file (docs/format.md): round trips, F16/BF16 widening, a file laid out byte by byte as
// Python's safetensors writes it, and one crafted file per fault the reader must refuse, each
// checked for the start of its message: "<name>: <what is wrong>", naming what it should.
#include "nn/model_file.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

using namespace ax;
using namespace ax::nn;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

// ---- bytes

void put_le(std::string& out, std::uint64_t value, std::size_t size) {
  for (std::size_t i = 0; i < size; ++i) out += static_cast<char>((value >> (8 * i)) & 0xFF);
}

std::string f32_bytes(std::initializer_list<float> values) {
  std::string out;
  for (float v : values) {
    std::uint32_t bits;
    std::memcpy(&bits, &v, 4);
    put_le(out, bits, 4);
  }
  return out;
}

std::string f64_bytes(std::initializer_list<double> values) {
  std::string out;
  for (double v : values) {
    std::uint64_t bits;
    std::memcpy(&bits, &v, 8);
    put_le(out, bits, 8);
  }
  return out;
}

std::string u16_bytes(std::initializer_list<std::uint16_t> values) {
  std::string out;
  for (std::uint16_t v : values) put_le(out, v, 2);
  return out;
}

// A file: the header's length (8 bytes, little-endian), the header, the data buffer.
std::string file_of(const std::string& header, const std::string& data = "") {
  std::string out;
  put_le(out, header.size(), 8);
  return out + header + data;
}

json entry(const std::string& dtype, const json& shape, std::uint64_t begin, std::uint64_t end) {
  return {{"dtype", dtype}, {"shape", shape}, {"data_offsets", json::array({begin, end})}};
}

// ---- graphs

json input_x(const json& shape = {1, 4, 4}) {
  return {{"name", "x"}, {"shape", shape}, {"range", json::array({0.0, 1.0})}};
}

json node(const std::string& name, const std::string& op, const std::vector<std::string>& inputs,
          const json& attributes = json::object()) {
  json n = {{"name", name}, {"op", op}, {"inputs", inputs}};
  for (const auto& [key, value] : attributes.items()) n[key] = value;
  return n;
}

// A graph whose output is its last node.
json graph_of(const json& nodes, const json& input = input_x()) {
  return {{"version", 1},
          {"inputs", json::array({input})},
          {"nodes", nodes},
          {"outputs", json::array({nodes.back()["name"]})}};
}

json relu_graph() { return graph_of(json::array({node("r", "relu", {"x"})})); }

// A model file made of a graph and tensors laid out one after another in the order given.
struct Craft {
  explicit Craft(json graph_document) : graph(std::move(graph_document)) {}
  json graph;
  json extra_metadata = json::object();
  struct Tensor {
    std::string name, dtype;
    json shape;
    std::string data;
  };
  std::vector<Tensor> tensors;

  Craft& tensor(const std::string& name, const std::string& dtype, const json& shape, const std::string& data) {
    tensors.push_back({name, dtype, shape, data});
    return *this;
  }
  json header() const {
    json metadata = extra_metadata;
    metadata["axiomatic.graph"] = graph.dump();
    json h = {{"__metadata__", metadata}};
    std::uint64_t offset = 0;
    for (const Tensor& t : tensors) {
      h[t.name] = entry(t.dtype, t.shape, offset, offset + t.data.size());
      offset += t.data.size();
    }
    return h;
  }
  std::string data() const {
    std::string out;
    for (const Tensor& t : tensors) out += t.data;
    return out;
  }
  std::string bytes() const { return file_of(header().dump(), data()); }
};

// A one-node linear model x[3] -> fc, weight [2, 3] and bias [2].
Craft linear_model() {
  Craft c{graph_of(json::array({node("fc", "linear", {"x"})}), input_x({3}))};
  c.tensor("fc.weight", "F32", {2, 3}, f32_bytes({1, 2, 3, 4, 5, 6}))
      .tensor("fc.bias", "F32", {2}, f32_bytes({0.5, -0.5}));
  return c;
}

// A file holding one tensor "t" and a graph that does not use it, for container faults.
std::string with_entries(const json& entries, const std::string& data) {
  json h = {{"__metadata__", {{"axiomatic.graph", relu_graph().dump()}}}};
  for (const auto& [name, e] : entries.items()) h[name] = e;
  return file_of(h.dump(), data);
}

ModelSpec parse(const std::string& bytes) { return parse_model(bytes, "m.st"); }

// The message starts, after the name, with `part`.
doctest::Contains fault(const std::string& part) { return doctest::Contains(("m.st: " + part).c_str()); }

#define CHECK_FAULT(bytes, part) CHECK_THROWS_WITH_AS(parse(bytes), fault(part), ax::Error)
#define CHECK_GRAPH_FAULT(graph, part) CHECK_FAULT(Craft{graph}.bytes(), part)

bool same_bits(const std::vector<double>& a, const std::vector<double>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0);
}

void check_same_nodes(const NodeSpec& a, const NodeSpec& b) {
  INFO("node ", a.name);
  CHECK(a.name == b.name);
  CHECK(a.op == b.op);
  CHECK(a.inputs == b.inputs);
  CHECK(a.attrs.kernel == b.attrs.kernel);
  CHECK(a.attrs.stride == b.attrs.stride);
  CHECK(a.attrs.padding == b.attrs.padding);
  CHECK(a.attrs.dilation == b.attrs.dilation);
  CHECK(a.attrs.output_size == b.attrs.output_size);
  CHECK(a.attrs.groups == b.attrs.groups);
  CHECK(a.attrs.ceil_mode == b.attrs.ceil_mode);
  CHECK(a.attrs.count_include_pad == b.attrs.count_include_pad);
  CHECK(same_bits({a.attrs.eps}, {b.attrs.eps}));
  CHECK(same_bits({a.attrs.negative_slope}, {b.attrs.negative_slope}));
  CHECK(same_bits({a.attrs.min_val, a.attrs.max_val}, {b.attrs.min_val, b.attrs.max_val}));
  CHECK(same_bits(a.attrs.mean, b.attrs.mean));
  CHECK(same_bits(a.attrs.stddev, b.attrs.stddev));
  CHECK(a.attrs.start_dim == b.attrs.start_dim);
  CHECK(a.attrs.axis == b.attrs.axis);
  CHECK(a.attrs.approximate == b.attrs.approximate);
  CHECK(a.attrs.normalized_ndim == b.attrs.normalized_ndim);
  CHECK(a.attrs.dims == b.attrs.dims);
}

void check_same_graph(const GraphSpec& a, const GraphSpec& b) {
  CHECK(a.input.name == b.input.name);
  CHECK(a.input.shape == b.input.shape);
  CHECK(a.input.range == b.input.range);
  CHECK(a.output == b.output);
  CHECK(a.labels == b.labels);
  REQUIRE(a.nodes.size() == b.nodes.size());
  for (std::size_t i = 0; i < a.nodes.size(); ++i) check_same_nodes(a.nodes[i], b.nodes[i]);
}

// Every op, attributes away from their defaults where they have any.
GraphSpec every_op_graph() {
  GraphSpec g;
  g.input = {"image", {2, 8, 8}, std::make_pair(-1.0, 1.0)};
  auto add = [&](NodeSpec n) {
    g.nodes.push_back(std::move(n));
    return &g.nodes.back();
  };
  NodeSpec* n = add(make_node("norm", "normalize", {"image"}));
  n->attrs.mean = {0.5, 0.25};
  n->attrs.stddev = {0.5, 1.0 / 3.0};
  n = add(make_node("features.0.conv", "conv2d", {"norm"}));
  n->attrs.stride = {1, 2}, n->attrs.padding = {1, 0}, n->attrs.dilation = {2, 1}, n->attrs.groups = 2;
  n = add(make_node("bn", "batchnorm2d", {"features.0.conv"}));
  n->attrs.eps = 1e-3;
  n = add(make_node("lrelu", "leaky_relu", {"bn"}));
  n->attrs.negative_slope = 0.2;
  n = add(make_node("clamp", "hardtanh", {"lrelu"}));
  n->attrs.min_val = 0, n->attrs.max_val = 6;
  n = add(make_node("mp", "maxpool2d", {"clamp"}));
  n->attrs.kernel = {3, 3}, n->attrs.stride = {1, 2}, n->attrs.padding = {1, 1}, n->attrs.ceil_mode = true;
  n = add(make_node("ap", "avgpool2d", {"mp"}));
  n->attrs.kernel = {2, 1}, n->attrs.stride = {2, 1}, n->attrs.count_include_pad = false;
  n = add(make_node("aap", "adaptive_avgpool2d", {"ap"}));
  n->attrs.output_size = {2, 3};
  add(make_node("sig", "sigmoid", {"aap"}));
  add(make_node("th", "tanh", {"aap"}));
  add(make_node("id", "identity", {"aap"}));
  add(make_node("r", "relu", {"id"}));
  add(make_node("swish", "silu", {"r"}));
  add(make_node("hswish", "hardswish", {"swish"}));
  add(make_node("hsig", "hardsigmoid", {"hswish"}));
  n = add(make_node("gelu", "gelu", {"hsig"}));
  n->attrs.approximate = "tanh";
  n = add(make_node("ln", "layer_norm", {"gelu"}));
  n->attrs.normalized_ndim = 2, n->attrs.eps = 1e-3;
  n = add(make_node("perm", "permute", {"ln"}));
  n->attrs.dims = {0, 1, 3, 2};
  n = add(make_node("resh", "reshape", {"perm"}));
  n->attrs.dims = {2, -1, 3};
  add(make_node("sum", "add", {"sig", "th", "resh"}));
  add(make_node("diff", "sub", {"sum", "th"}));
  add(make_node("prod", "mul", {"diff", "sig"}));
  add(make_node("ratio", "div", {"prod", "sig"}));
  n = add(make_node("cat", "concat", {"ratio", "diff"}));
  n->attrs.axis = -3;
  n = add(make_node("flat", "flatten", {"cat"}));
  n->attrs.start_dim = -3;
  add(make_node("fc", "linear", {"flat"}));
  n = add(make_node("lsm", "log_softmax", {"fc"}));
  n->attrs.axis = 1;
  n = add(make_node("probs", "softmax", {"lsm"}));
  n->attrs.axis = -1;
  g.output = "probs";
  g.labels = {"cat", "dog", "\"quoted\" label"};
  return g;
}

TensorData tensor_of(const std::string& dtype, std::vector<std::size_t> shape, std::vector<double> values) {
  return {dtype, std::move(shape), std::move(values)};
}

ModelSpec every_op_model() {
  ModelSpec m;
  m.graph = every_op_graph();
  const double tiny = std::numeric_limits<double>::denorm_min();
  m.tensors["features.0.conv.weight"] = tensor_of("F32", {2, 1, 1, 1}, {-0.0, 0.1f});
  m.tensors["features.0.conv.bias"] = tensor_of("F64", {2}, {0.1, tiny});
  m.tensors["bn.running_mean"] = tensor_of("F32", {2}, {1.0f / 3.0f, -2.5});
  m.tensors["bn.running_var"] = tensor_of("F64", {2}, {1.0 / 3.0, 0.0});
  m.tensors["bn.weight"] = tensor_of("F64", {2}, {std::numeric_limits<double>::max(), 1});
  m.tensors["ln.weight"] = tensor_of("F64", {2, 3}, {0.5, -1, 2, 0.25, 1, 1});  // no ln.bias: 0
  m.tensors["fc.weight"] = tensor_of("F32", {3, 12}, std::vector<double>(36, 0.25));
  m.tensors["fc.bias"] = tensor_of("F64", {3}, {1e-300, -1e300, 0});
  m.tensors["empty"] = tensor_of("F32", {0, 3}, {});  // zero-size
  m.tensors["scalar"] = tensor_of("F64", {}, {-7.5});
  m.tensors["scalar32"] = tensor_of("F32", {}, {0.375});
  return m;
}

void check_same_tensors(const std::map<std::string, TensorData>& a, const std::map<std::string, TensorData>& b) {
  REQUIRE(a.size() == b.size());
  for (const auto& [name, t] : a) {
    INFO("tensor ", name);
    REQUIRE(b.count(name));
    CHECK(t.dtype == b.at(name).dtype);
    CHECK(t.shape == b.at(name).shape);
    CHECK(same_bits(widened_values(t), widened_values(b.at(name))));
  }
}

// A scratch directory, removed at the end of the test.
struct TempDir {
  fs::path path = fs::temp_directory_path() / ("axiomatic_model_file_" + std::to_string(::getpid()));
  TempDir() { fs::create_directories(path); }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
};

void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

fs::path toy(const std::string& file) {
  return fs::path(__FILE__).parent_path().parent_path() / "examples" / "toys" / file;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Round trips and formats

TEST_CASE("model file: write then read gives the same graph and the same bits of every tensor") {
  const ModelSpec model = every_op_model();
  const ModelSpec back = parse_model(serialize_model(model), "rt");
  check_same_graph(model.graph, back.graph);
  check_same_tensors(model.tensors, back.tensors);
  CHECK(widened_values(back.tensors.at("empty")).empty());
  CHECK(back.tensors.at("scalar").shape.empty());

  SUBCASE("every floating tensor as F64") {
    const ModelSpec wide = parse_model(serialize_model(model, WriteOptions{true}), "rt64");
    check_same_graph(model.graph, wide.graph);
    for (const auto& [name, t] : model.tensors) {
      INFO("tensor ", name);
      CHECK(wide.tensors.at(name).dtype == "F64");
      CHECK(same_bits(widened_values(wide.tensors.at(name)), widened_values(t)));
    }
  }
}

TEST_CASE("model file: the writer lays the tensors out sorted by name, tiling an 8-aligned buffer") {
  const std::string bytes = serialize_model(every_op_model());
  std::uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | static_cast<unsigned char>(bytes[i]);
  CHECK(header_size % 8 == 0);
  const json header = json::parse(bytes.substr(8, header_size));
  const json graph = json::parse(header["__metadata__"]["axiomatic.graph"].get<std::string>());
  CHECK(graph["version"] == 1);
  CHECK(graph["nodes"][1]["stride"] == json::array({1, 2}));
  std::uint64_t offset = 0;
  for (const auto& [name, e] : header.items()) {  // nlohmann's object is sorted by name
    if (name == "__metadata__") continue;
    INFO("tensor ", name);
    CHECK(e["data_offsets"][0] == offset);
    offset = e["data_offsets"][1].get<std::uint64_t>();
  }
  CHECK(8 + header_size + offset == bytes.size());
}

TEST_CASE("model file: F16 and BF16 widen exactly to double") {
  Craft c{relu_graph()};
  // binary16: 1, -2, 65504 (largest), 2^-24 (smallest subnormal), 1023 * 2^-24, 2^-14, 1/3 rounded, -0, +Inf
  c.tensor("h", "F16", {9}, u16_bytes({0x3C00, 0xC000, 0x7BFF, 0x0001, 0x03FF, 0x0400, 0x3555, 0x8000, 0x7C00}));
  // bfloat16: 1, 3.140625, largest finite, 2^-133 (smallest subnormal), -0
  c.tensor("b", "BF16", {5}, u16_bytes({0x3F80, 0x4049, 0x7F7F, 0x0001, 0x8000}));
  const ModelSpec m = parse(c.bytes());
  const std::vector<double> h = widened_values(m.tensors.at("h")), b = widened_values(m.tensors.at("b"));
  REQUIRE(h.size() == 9);
  CHECK(h[0] == 1.0);
  CHECK(h[1] == -2.0);
  CHECK(h[2] == 65504.0);
  CHECK(h[3] == std::ldexp(1.0, -24));
  CHECK(h[4] == 1023 * std::ldexp(1.0, -24));
  CHECK(h[5] == std::ldexp(1.0, -14));
  CHECK(h[6] == 0.333251953125);
  CHECK((h[7] == 0.0 && std::signbit(h[7])));
  CHECK(h[8] == std::numeric_limits<double>::infinity());  // unused: kept, not refused
  REQUIRE(b.size() == 5);
  CHECK(b[0] == 1.0);
  CHECK(b[1] == 3.140625);
  CHECK(b[2] == (2.0 - std::ldexp(1.0, -7)) * std::ldexp(1.0, 127));
  CHECK(b[3] == std::ldexp(1.0, -133));
  CHECK((b[4] == 0.0 && std::signbit(b[4])));
}

TEST_CASE("model file: used F16 and BF16 parameters are accepted, the writer writes them as F32") {
  Craft c{graph_of(json::array({node("fc", "linear", {"x"})}), input_x({2}))};
  c.tensor("fc.bias", "BF16", {1}, u16_bytes({0xBF80}));              // -1
  c.tensor("fc.weight", "F16", {1, 2}, u16_bytes({0x3800, 0x4200}));  // 0.5, 3
  const ModelSpec m = parse(c.bytes());
  CHECK(widened_values(m.tensors.at("fc.weight")) == std::vector<double>{0.5, 3.0});
  CHECK(widened_values(m.tensors.at("fc.bias")) == std::vector<double>{-1.0});
  const ModelSpec back = parse_model(serialize_model(m), "rt");
  CHECK(back.tensors.at("fc.weight").dtype == "F32");
  CHECK(back.tensors.at("fc.bias").dtype == "F32");
  CHECK(widened_values(back.tensors.at("fc.weight")) == std::vector<double>{0.5, 3.0});
}

TEST_CASE("model file: reads a file laid out as Python's safetensors writes it") {
  // safetensors.torch.save_file({"fc.weight": float32 [1, 2], "fc.bias": float64 [1]},
  // metadata={...}): compact JSON, __metadata__ first, then by dtype size (F64 first) and name,
  // the header padded with spaces to a multiple of 8.
  const std::string header =
      R"({"__metadata__":{"axiomatic.graph":"{\"version\":1,\"inputs\":[{\"name\":\"x\",\"shape\":[2],)"
      R"(\"range\":[0.0,1.0]}],\"nodes\":[{\"name\":\"fc\",\"op\":\"linear\",\"inputs\":[\"x\"]}],)"
      R"(\"outputs\":[\"fc\"]}","format":"pt"},)"
      R"("fc.bias":{"dtype":"F64","shape":[1],"data_offsets":[0,8]},)"
      R"("fc.weight":{"dtype":"F32","shape":[1,2],"data_offsets":[8,16]}})"
      " ";
  REQUIRE(header.size() == 344);
  std::string bytes("\x58\x01\x00\x00\x00\x00\x00\x00", 8);  // 344, little-endian
  bytes += header;
  bytes += std::string("\x00\x00\x00\x00\x00\x00\xE0\x3F", 8);  // F64 0.5
  bytes += std::string("\x00\x00\x80\x3F\x00\x00\x00\xC0", 8);  // F32 1, -2
  const ModelSpec m = parse(bytes);
  CHECK(m.graph.input.name == "x");
  CHECK(m.graph.input.shape == std::vector<std::size_t>{2});
  REQUIRE(m.graph.nodes.size() == 1);
  CHECK(m.graph.nodes[0].op == "linear");
  CHECK(widened_values(m.tensors.at("fc.bias")) == std::vector<double>{0.5});
  CHECK(widened_values(m.tensors.at("fc.weight")) == std::vector<double>{1.0, -2.0});
  CHECK(m.tensors.at("fc.weight").shape == std::vector<std::size_t>{1, 2});
}

TEST_CASE("model file: defaults are filled in and attributes read as written") {
  const json nodes = json::array({
      node("c", "conv2d", {"x"}, {{"stride", nullptr}, {"padding", 1}}),
      node("p", "maxpool2d", {"c"}, {{"kernel", 3}}),
      node("q", "avgpool2d", {"p"}, {{"kernel", json::array({2, 1})}, {"stride", nullptr}}),
      node("cat", "concat", {"q", "q"}),
      node("sm", "softmax", {"cat"}),
      node("l", "log_softmax", {"sm"}, {{"axis", -2}}),
  });
  Craft c{graph_of(nodes)};
  c.tensor("c.weight", "F32", {1, 1, 1, 1}, f32_bytes({1}));
  const ModelSpec m = parse(c.bytes());
  const auto& n = m.graph.nodes;
  CHECK(n[0].attrs.stride == Pair2d(1, 1));   // null: conv2d's default
  CHECK(n[0].attrs.padding == Pair2d(1, 1));  // one integer: both
  CHECK(n[0].attrs.dilation == Pair2d(1, 1));
  CHECK(n[0].attrs.groups == 1);
  CHECK(n[1].attrs.kernel == Pair2d(3, 3));
  CHECK(n[1].attrs.stride == Pair2d(3, 3));  // absent: the kernel
  CHECK(n[2].attrs.stride == Pair2d(2, 1));  // null: the kernel
  CHECK(n[2].attrs.count_include_pad);
  CHECK(n[3].attrs.axis == 1);
  CHECK(n[4].attrs.axis == -1);
  CHECK(n[5].attrs.axis == -2);
  CHECK(m.graph.input.range == std::make_pair(0.0, 1.0));
}

TEST_CASE("model file: tensors no node uses are kept and ignored, whatever their dtype") {
  Craft c = linear_model();
  c.tensor("bn.num_batches_tracked", "I64", json::array(), std::string(8, '\0'));
  c.tensor("mask", "BOOL", {3}, std::string(3, '\1'));
  c.tensor("q", "F8_E4M3", {2}, std::string(2, '\0'));
  c.tensor("fc.other", "F32", {1}, f32_bytes({std::nanf("")}));  // not a linear param: unused
  const ModelSpec m = parse(c.bytes());
  CHECK(m.tensors.at("bn.num_batches_tracked").dtype == "I64");
  CHECK(widened_values(m.tensors.at("bn.num_batches_tracked")).empty());
  CHECK(m.tensors.at("mask").shape == std::vector<std::size_t>{3});
  CHECK(std::isnan(widened_values(m.tensors.at("fc.other")).at(0)));
  // The writer leaves out what has no values; the rest round-trips.
  const ModelSpec back = parse_model(serialize_model(m), "rt");
  CHECK(back.tensors.count("bn.num_batches_tracked") == 0);
  CHECK(back.tensors.count("fc.weight") == 1);
}

TEST_CASE("model file: tiling allows zero-size tensors and scalars anywhere, in any header order") {
  const json entries = {{"z0", entry("F32", {0}, 0, 0)},
                        {"a", entry("F32", json::array(), 0, 4)},
                        {"z1", entry("F64", {2, 0}, 4, 4)},
                        {"b", entry("U8", {2}, 4, 6)},
                        {"z2", entry("I64", {0}, 6, 6)}};
  const ModelSpec m = parse(with_entries(entries, f32_bytes({2.5}) + "\x01\x02"));
  CHECK(widened_values(m.tensors.at("a")) == std::vector<double>{2.5});
  CHECK(m.tensors.at("z1").shape == std::vector<std::size_t>{2, 0});
  CHECK(m.tensors.size() == 5);
}

TEST_CASE("model file: node names may contain dots, as PyTorch module paths do") {
  Craft c{graph_of(json::array({node("layer1.0.fc", "linear", {"x"})}), input_x({2}))};
  c.tensor("layer1.0.fc.weight", "F64", {1, 2}, f64_bytes({1, 2}));
  const ModelSpec m = parse(c.bytes());
  CHECK(m.graph.nodes[0].name == "layer1.0.fc");
  CHECK(m.graph.output == "layer1.0.fc");
}

// ---------------------------------------------------------------------------------------------
// Toy JSON

TEST_CASE("model file: the relu sensitivity toy is F(x) = 1 - relu(1 - x) on [0, 2]") {
  const ModelSpec m = read_toy_json(toy("relu_sensitivity.json").string());
  CHECK(m.graph.input.shape == std::vector<std::size_t>{1});
  CHECK(m.graph.input.range == std::make_pair(0.0, 2.0));
  REQUIRE(m.graph.nodes.size() == 3);
  CHECK(m.graph.nodes[1].op == "relu");
  const auto& first = m.graph.nodes[0].name;
  const auto& last = m.graph.nodes[2].name;
  CHECK(m.tensors.at(first + ".weight").shape == std::vector<std::size_t>{1, 1});
  auto value = [&](const std::string& name) { return widened_values(m.tensors.at(name)).at(0); };
  auto F = [&](double x) {
    const double hidden = std::max(0.0, value(first + ".weight") * x + value(first + ".bias"));
    return value(last + ".weight") * hidden + value(last + ".bias");
  };
  CHECK(F(0) == 0.0);
  CHECK(F(0.5) == 0.5);
  CHECK(F(2) == 1.0);  // F(2) - F(0) = 1, while dF/dx(2) = 0
  CHECK(F(1.5) == 1.0);
}

TEST_CASE("model file: the tiny CNN toy reads nested arrays of rank 4 row-major") {
  const ModelSpec m = read_toy_json(toy("tiny_cnn.json").string());
  const TensorData& w = m.tensors.at("conv.weight");
  CHECK(w.dtype == "F64");
  CHECK(w.shape == std::vector<std::size_t>{2, 1, 3, 3});
  CHECK(w.values.at(1) == -0.2);
  CHECK(w.values.at(9) == -0.4);
  CHECK(m.tensors.at("fc.weight").shape == std::vector<std::size_t>{3, 8});
  CHECK(m.graph.nodes.at(3).attrs.stride == Pair2d(2, 2));
}

TEST_CASE("model file: toy JSON faults") {
  TempDir dir;
  auto toy_fault = [&](const json& document) {
    const fs::path path = dir.path / "toy.json";
    write_bytes(path, document.dump());
    try {
      read_toy_json(path.string());
    } catch (const ax::Error& e) {
      return std::string(e.what()).substr(path.string().size());
    }
    return std::string("no error");
  };
  json doc = graph_of(json::array({node("fc", "linear", {"x"})}), input_x({2}));
  doc["parameters"] = {{"fc.weight", {{1, 2}, {3}}}};
  CHECK(toy_fault(doc).rfind(R"(: parameter "fc.weight": ragged nested arrays)", 0) == 0);
  doc["parameters"] = {{"fc.weight", {{1, "a"}}}};
  CHECK(toy_fault(doc).rfind(R"(: parameter "fc.weight": expected a number at depth 2, found "a")", 0) == 0);
  doc["parameters"] = {{"fc.bias", {1}}};
  CHECK(toy_fault(doc).rfind(R"(: node "fc": missing parameter "fc.weight")", 0) == 0);
  doc["parameters"] = json::array();
  CHECK(toy_fault(doc).rfind(": parameters must be an object", 0) == 0);
  doc.erase("parameters");
  doc["version"] = 2;
  CHECK(toy_fault(doc).rfind(": unsupported graph version 2; this reader reads version 1", 0) == 0);
}

// ---------------------------------------------------------------------------------------------
// Files on disk

TEST_CASE("model file: write_model and read_model through a real file, missing and truncated files") {
  TempDir dir;
  const std::string path = (dir.path / "model.safetensors").string();
  const ModelSpec model = every_op_model();
  write_model(path, model);
  const ModelSpec back = read_model(path);
  check_same_graph(model.graph, back.graph);
  check_same_tensors(model.tensors, back.tensors);

  std::ifstream in(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string truncated = (dir.path / "truncated.safetensors").string();
  write_bytes(truncated, bytes.substr(0, bytes.size() - 3));
  CHECK_THROWS_WITH_AS(read_model(truncated), doctest::Contains((truncated + ": tensor ").c_str()), ax::Error);
  CHECK_THROWS_WITH_AS(read_model(truncated), doctest::Contains("run past the end of the data buffer"), ax::Error);
  write_bytes(truncated, bytes.substr(0, 100));
  CHECK_THROWS_WITH_AS(read_model(truncated), doctest::Contains((truncated + ": header length ").c_str()), ax::Error);
  write_bytes(truncated, "");
  CHECK_THROWS_WITH_AS(read_model(truncated), doctest::Contains((truncated + ": file is 0 bytes").c_str()), ax::Error);

  const std::string missing = (dir.path / "no_such.safetensors").string();
  CHECK_THROWS_WITH_AS(read_model(missing),
                       doctest::Contains((missing + ": cannot open the file (No such file").c_str()), ax::Error);
  CHECK_THROWS_WITH_AS(read_model(dir.path.string()), doctest::Contains("is a directory"), ax::Error);
  CHECK_THROWS_WITH_AS(read_toy_json(missing), doctest::Contains((missing + ": cannot open").c_str()), ax::Error);
  const std::string unwritable = (dir.path / "no_dir" / "m.safetensors").string();
  CHECK_THROWS_WITH_AS(write_model(unwritable, model),
                       doctest::Contains((unwritable + ": cannot open the file for writing").c_str()), ax::Error);
}

TEST_CASE("model file: the writer refuses what the reader would refuse") {
  ModelSpec m = every_op_model();
  m.tensors["fc.bias"].values.push_back(1);
  CHECK_THROWS_WITH_AS(serialize_model(m),
                       doctest::Contains(R"(model: tensor "fc.bias" holds 4 values, but shape [3] has 3)"), ax::Error);
  m = every_op_model();
  m.tensors.erase("fc.weight");
  CHECK_THROWS_WITH_AS(serialize_model(m), doctest::Contains(R"(model: node "fc": missing parameter "fc.weight")"),
                       ax::Error);
  m = every_op_model();
  m.tensors["fc.weight"].values[3] = 1e300;  // Inf once written as F32
  CHECK_THROWS_WITH_AS(serialize_model(m),
                       doctest::Contains(R"(model: node "fc": parameter "fc.weight" holds Inf at flat index 3)"),
                       ax::Error);
  CHECK_NOTHROW(serialize_model(m, WriteOptions{true}));  // exact as F64
  m = every_op_model();
  m.tensors["t"] = tensor_of("F33", {}, {1});
  CHECK_THROWS_WITH_AS(serialize_model(m), doctest::Contains(R"(model: tensor "t": undefined dtype "F33")"), ax::Error);
  m = every_op_model();
  m.graph.nodes[3].op = "swish";
  CHECK_THROWS_WITH_AS(serialize_model(m), doctest::Contains(R"(model: node "lrelu": unknown op "swish")"), ax::Error);
  CHECK_THROWS_WITH_AS(graph_to_json(m.graph), doctest::Contains(R"(graph: node "lrelu": unknown op "swish")"), ax::Error);
}

// ---------------------------------------------------------------------------------------------
// Container faults (docs/format.md, "What a reader must refuse")

TEST_CASE("model file fault: header length past the end of the file, over 100 MiB, or the file too short") {
  CHECK_FAULT(std::string("\x02\x00\x00", 3), "file is 3 bytes, too short for the 8-byte header length");
  std::string over;
  put_le(over, (std::uint64_t{100} << 20) + 1, 8);
  CHECK_FAULT(over + "{}", "header length 104857601 is over the limit of 100 MiB");
  std::string huge;
  put_le(huge, ~std::uint64_t{0}, 8);  // would wrap 8 + N
  CHECK_FAULT(huge + "{}", "header length 18446744073709551615 is over the limit of 100 MiB");
  std::string past;
  put_le(past, 100, 8);
  CHECK_FAULT(past + "{}", "header length 100 runs past the end of the file (10 bytes)");
  std::string at_limit;
  put_le(at_limit, std::uint64_t{100} << 20, 8);
  CHECK_FAULT(at_limit + "{}", "header length 104857600 runs past the end of the file");
}

TEST_CASE("model file fault: a header that is not valid UTF-8 JSON or not an object") {
  CHECK_FAULT(file_of("{\"a\xff\":1}"), "header is not valid UTF-8 (byte 0xff at offset 3)");
  CHECK_FAULT(file_of("{\"\xc0\xaf\":1}"), "header is not valid UTF-8 (byte 0xc0 at offset 2)");      // overlong '/'
  CHECK_FAULT(file_of("{\"\xed\xa0\x80\":1}"), "header is not valid UTF-8 (byte 0xed at offset 2)");  // a surrogate
  CHECK_FAULT(file_of("{\"a\":"), "header is not valid JSON (");
  CHECK_FAULT(file_of("{} x"), "header is not valid JSON (");
  CHECK_FAULT(file_of(std::string("{}\0x", 4)), "header is not valid JSON (a NUL byte at offset 2)");
  CHECK_FAULT(file_of("[1, 2]"), "header is not a JSON object (it must start with '{')");
  CHECK_FAULT(file_of(" {}"), "header is not a JSON object (it must start with '{')");
  CHECK_FAULT(file_of(""), "header is not a JSON object");
  CHECK_FAULT(file_of(R"({"t":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},"t":{}})"),
              R"(header has the key "t" twice in one object)");
  CHECK_FAULT(file_of("{\"a\":" + std::string(100, '[') + std::string(100, ']') + "}"),
              "header nests deeper than 64 levels");
}

TEST_CASE("model file fault: malformed tensor entries, undefined dtypes, bad shapes") {
  auto one = [](const json& e, const std::string& data = "") { return with_entries({{"t", e}}, data); };
  CHECK_FAULT(one(3), R"(tensor "t": header entry is 3, not {"dtype", "shape", "data_offsets"})");
  CHECK_FAULT(one({{"shape", {1}}, {"data_offsets", {0, 1}}}, "x"), R"(tensor "t" has no "dtype")");
  CHECK_FAULT(one({{"dtype", "U8"}, {"data_offsets", {0, 1}}}, "x"), R"(tensor "t" has no "shape")");
  CHECK_FAULT(one({{"dtype", "U8"}, {"shape", {1}}}, "x"), R"(tensor "t" has no "data_offsets")");
  CHECK_FAULT(one(entry("F128", {1}, 0, 16), std::string(16, '\0')),
              R"(tensor "t": undefined dtype "F128" (safetensors defines BOOL, U8, I8, F8_E5M2, F8_E4M3, I16)");
  CHECK_FAULT(one(entry("f32", {1}, 0, 4), std::string(4, '\0')), R"(tensor "t": undefined dtype "f32")");
  CHECK_FAULT(one({{"dtype", 4}, {"shape", {1}}, {"data_offsets", {0, 4}}}, std::string(4, '\0')),
              R"(tensor "t": dtype must be a string, found 4)");
  CHECK_FAULT(one(entry("U8", {-1, 2}, 0, 0)),
              R"(tensor "t": shape must be a list of non-negative integers, found [-1, 2])");
  CHECK_FAULT(one(entry("U8", {2.0}, 0, 2), "ab"),
              R"(tensor "t": shape must be a list of non-negative integers, found [2.0])");
  CHECK_FAULT(one(entry("U8", "2", 0, 2), "ab"),
              R"(tensor "t": shape must be a list of non-negative integers, found "2")");
  CHECK_FAULT(one(entry("U8", {(std::uint64_t{1} << 40) + 1}, 0, 0)),
              R"(tensor "t": shape has a dimension of 1099511627777, over 2^40)");
  // 2^32 * 2^32 * 2^32 wraps to 0 in 64 bits: the count is bounded before each product.
  const std::uint64_t big = std::uint64_t{1} << 32;
  CHECK_FAULT(one(entry("U8", {big, big, big}, 0, 0)),
              R"(tensor "t": shape [4294967296, 4294967296, 4294967296] holds more than 2^40 elements)");
  CHECK_FAULT(one(entry("U8", {1 << 20, 1 << 20, 2}, 0, 0)),
              R"(tensor "t": shape [1048576, 1048576, 2] holds more than 2^40 elements)");
  CHECK_NOTHROW(parse(one(entry("U8", {big, big, 0}, 0, 0))));  // zero elements
}

TEST_CASE("model file fault: offsets outside the buffer, overlapping, leaving a gap or disagreeing with the shape") {
  auto one = [](const json& e, const std::string& data) { return with_entries({{"t", e}}, data); };
  CHECK_FAULT(one({{"dtype", "U8"}, {"shape", {1}}, {"data_offsets", {0}}}, "x"),
              R"(tensor "t": data_offsets must be [begin, end], two non-negative integers, found [0])");
  CHECK_FAULT(one({{"dtype", "U8"}, {"shape", {1}}, {"data_offsets", {-1, 0}}}, "x"),
              R"(tensor "t": data_offsets must be [begin, end], two non-negative integers, found [-1, 0])");
  CHECK_FAULT(one(entry("U8", {0}, 8, 4), std::string(8, 'x')),
              R"(tensor "t": data_offsets [8, 4] end before they begin)");
  CHECK_FAULT(one(entry("F32", {4}, 0, 16), std::string(8, 'x')),
              R"(tensor "t": data_offsets [0, 16] run past the end of the data buffer (8 bytes))");
  CHECK_FAULT(one(entry("F32", {3}, 0, 8), std::string(8, 'x')),
              R"(tensor "t": data_offsets [0, 8] hold 8 bytes, but shape [3] of F32 needs 12)");
  CHECK_FAULT(with_entries({{"a", entry("U8", {8}, 0, 8)}, {"b", entry("U8", {8}, 4, 12)}}, std::string(12, 'x')),
              R"(tensor "b" (bytes 4..12) overlaps tensor "a" (bytes 0..8))");
  CHECK_FAULT(with_entries({{"a", entry("U8", {8}, 0, 8)}, {"b", entry("U8", {0}, 4, 4)}}, std::string(8, 'x')),
              R"(tensor "b" (bytes 4..4) overlaps tensor "a" (bytes 0..8))");
  CHECK_FAULT(with_entries({{"a", entry("U8", {4}, 0, 4)}, {"b", entry("U8", {4}, 8, 12)}}, std::string(12, 'x')),
              R"(data buffer has a gap of 4 bytes between tensor "a" (bytes 0..4) and tensor "b" (bytes 8..12))");
  CHECK_FAULT(with_entries({{"a", entry("U8", {4}, 4, 8)}}, std::string(8, 'x')),
              R"(data buffer has a gap: the first tensor "a" (bytes 4..8) does not start at 0)");
  CHECK_FAULT(with_entries({{"a", entry("U8", {4}, 0, 4)}}, std::string(6, 'x')),
              "data buffer has 2 trailing bytes after the last tensor (6 bytes, tensors cover 4)");
  CHECK_FAULT(with_entries(json::object(), "x"), "data buffer has 1 trailing bytes after the last tensor");
}

TEST_CASE("model file fault: a missing or malformed graph") {
  CHECK_FAULT(file_of("{}"), R"(no graph: __metadata__ has no "axiomatic.graph")");
  CHECK_FAULT(file_of(R"({"__metadata__":{"format":"pt"}})"), R"(no graph: __metadata__ has no "axiomatic.graph")");
  CHECK_FAULT(file_of(R"({"__metadata__":{"axiomatic.graph":{"version":1}}})"),
              R"(__metadata__ must map strings to strings; key "axiomatic.graph" holds an object)");
  CHECK_FAULT(file_of(R"({"__metadata__":{"axiomatic.graph":"{}","n":3}})"),
              R"(__metadata__ must map strings to strings; key "n" holds 3)");
  CHECK_FAULT(file_of(R"({"__metadata__":["a"]})"), R"(__metadata__ must map strings to strings, found ["a"])");
  CHECK_FAULT(file_of(R"({"__metadata__":{"axiomatic.graph":"{\"version\": 1,"}})"),
              R"(graph (__metadata__["axiomatic.graph"]) is not valid JSON ()");
  CHECK_FAULT(file_of(R"({"__metadata__":{"axiomatic.graph":"[1]"}})"), "graph must be a JSON object, found [1]");
  CHECK_FAULT(file_of(R"({"__metadata__":{"axiomatic.graph":"{}\u0000junk"}})"),
              R"(graph (__metadata__["axiomatic.graph"]) is not valid JSON (a NUL byte at offset 2))");
  CHECK_FAULT(file_of(R"({"__metadata__":{"axiomatic.graph":"{\"a\":1,\"a\":2}"}})"),
              R"(graph (__metadata__["axiomatic.graph"]) has the key "a" twice in one object)");
}

// ---------------------------------------------------------------------------------------------
// Graph faults

TEST_CASE("model file fault: graph version") {
  json g = relu_graph();
  g.erase("version");
  CHECK_GRAPH_FAULT(g, R"(graph has no "version"; this reader reads version 1)");
  g["version"] = 2;
  CHECK_GRAPH_FAULT(g, "unsupported graph version 2; this reader reads version 1");
  g["version"] = "1";
  CHECK_GRAPH_FAULT(g, R"(unsupported graph version "1"; this reader reads version 1)");
  g["version"] = 1.0;
  CHECK_GRAPH_FAULT(g, "unsupported graph version 1.0; this reader reads version 1");
  g["version"] = 2;
  g["novel_key"] = true;  // a later version's keys: the version is what is wrong
  CHECK_GRAPH_FAULT(g, "unsupported graph version 2");
}

TEST_CASE("model file fault: graph keys, inputs, outputs and labels") {
  json g = relu_graph();
  g["label"] = json::array({"a"});
  CHECK_GRAPH_FAULT(g, R"(graph: unknown key "label")");

  g = relu_graph();
  g["inputs"].push_back(input_x());
  CHECK_GRAPH_FAULT(g, "graph must have exactly one input (version 1), found an array of 2 elements");
  g["inputs"] = json::array();
  CHECK_GRAPH_FAULT(g, "graph must have exactly one input (version 1), found []");
  g.erase("inputs");
  CHECK_GRAPH_FAULT(g, R"(graph has no "inputs")");

  g = relu_graph();
  g["inputs"][0]["range"] = {1.0, 1.0};
  CHECK_GRAPH_FAULT(g, R"(input "x": range [1.0, 1.0] must have lo < hi)");
  g["inputs"][0]["range"] = {0, 1, 2};
  CHECK_GRAPH_FAULT(g, R"(input "x": range must be [lo, hi], found [0, 1, 2])");
  g["inputs"][0]["range"] = {0, "1"};
  CHECK_GRAPH_FAULT(g, R"(input "x": range must be a number, found "1")");
  std::string overflowing = relu_graph().dump();
  overflowing.replace(overflowing.find("1.0]"), 3, "1e999");
  CHECK_FAULT(file_of(json{{"__metadata__", {{"axiomatic.graph", overflowing}}}}.dump()),
              R"(graph (__metadata__["axiomatic.graph"]) is not valid JSON (number overflow parsing '1e999'))");
  g["inputs"][0]["range"] = {0, std::numeric_limits<double>::infinity()};  // only from a json built in memory
  CHECK_THROWS_WITH_AS(parse_graph(g, "g"), doctest::Contains(R"(g: input "x": range must be finite, found Inf)"),
                       ax::Error);
  g["inputs"][0].erase("range");
  CHECK_NOTHROW(parse(Craft{g}.bytes()));  // the range is optional
  g["inputs"][0]["shape"] = {1, 0, 4};
  CHECK_GRAPH_FAULT(g, R"(input "x": shape must list at least one dimension, each at least 1, found [1, 0, 4])");
  g["inputs"][0]["shape"] = {4};
  g["inputs"][0]["dtype"] = "F32";
  CHECK_GRAPH_FAULT(g, R"(input "x": unknown key "dtype")");
  g["inputs"][0] = {{"name", ""}, {"shape", {4}}};
  CHECK_GRAPH_FAULT(g, R"(graph input: name must be a non-empty string, found "")");

  g = relu_graph();
  g["outputs"] = {"r", "r"};
  CHECK_GRAPH_FAULT(g, R"(graph must have exactly one output (version 1), found ["r", "r"])");
  g["outputs"] = {"zz"};
  CHECK_GRAPH_FAULT(g, R"(graph output "zz" names no node)");
  g["outputs"] = {"x"};
  CHECK_GRAPH_FAULT(g, R"(graph output "x" names no node)");

  g = relu_graph();
  g["labels"] = {"a", 3};
  CHECK_GRAPH_FAULT(g, "graph: labels must be a list of strings, found 3 at index 1");
  g["labels"] = {"a", "b"};  // its count against the output is the graph builder's check
  CHECK(parse(Craft{g}.bytes()).graph.labels == std::vector<std::string>{"a", "b"});
}

TEST_CASE("model file fault: node names, order and inputs") {
  CHECK_GRAPH_FAULT(graph_of(json::array({node("r", "relu", {"x"}), node("r", "relu", {"x"})})),
                    R"(node "r": the name is used twice; node names must be unique)");
  CHECK_GRAPH_FAULT(graph_of(json::array({node("x", "relu", {"x"})})),
                    R"(node "x": the name is the graph input's; node names must differ from it)");
  CHECK_GRAPH_FAULT(graph_of(json::array({node("r", "relu", {"zz"})})),
                    R"(node "r": input "zz" names no earlier node and is not the graph input "x")");
  CHECK_GRAPH_FAULT(graph_of(json::array({node("a", "relu", {"b"}), node("b", "relu", {"x"})})),
                    R"(node "a": input "b" names a later node (nodes must come in topological order))");
  CHECK_GRAPH_FAULT(graph_of(json::array({node("a", "relu", {"a"})})), R"(node "a": input "a" names the node itself)");
  CHECK_GRAPH_FAULT(graph_of(json::array({json{{"op", "relu"}, {"inputs", {"x"}}}, node("r", "relu", {"x"})})),
                    R"(node 0 has no "name")");
  CHECK_GRAPH_FAULT(graph_of(json::array({json{{"name", "r"}, {"inputs", {"x"}}}})), R"(node "r" has no "op")");
  CHECK_GRAPH_FAULT(graph_of(json::array({json{{"name", "r"}, {"op", "relu"}}})), R"(node "r" has no "inputs")");
  CHECK_GRAPH_FAULT(graph_of(json::array({node("r", "relu", {}), node("s", "relu", {"x"})})),
                    R"(node "r": relu takes exactly 1 input, found 0)");
  CHECK_GRAPH_FAULT(graph_of(json::array({node("r", "relu", {"x", "x"})})),
                    R"(node "r": relu takes exactly 1 input, found 2)");
  CHECK_GRAPH_FAULT(graph_of(json::array({node("a", "add", {"x"})})),
                    R"(node "a": add takes at least 2 inputs, found 1)");
  CHECK_GRAPH_FAULT(graph_of(json::array({node("s", "sub", {"x", "x", "x"})})),
                    R"(node "s": sub takes exactly 2 inputs, found 3)");
  CHECK_GRAPH_FAULT(graph_of(json::array({node("m", "mul", {"x"})})),
                    R"(node "m": mul takes exactly 2 inputs, found 1)");
  CHECK_GRAPH_FAULT(graph_of(json::array({node("c", "concat", {"x"})})),
                    R"(node "c": concat takes at least 2 inputs, found 1)");
  CHECK_NOTHROW(parse(Craft{graph_of(json::array({node("a", "add", {"x", "x", "x"})}))}.bytes()));
}

TEST_CASE("model file fault: unknown op or attribute, naming it and its node") {
  CHECK_GRAPH_FAULT(graph_of(json::array({node("c", "conv3d", {"x"})})), R"(node "c": unknown op "conv3d")");
  CHECK_GRAPH_FAULT(
      graph_of(json::array({node("c", "conv2d", {"x"}, {{"strides", 2}})})),
      R"(node "c": unknown attribute "strides" for op conv2d (it takes stride, padding, dilation, groups))");
  CHECK_GRAPH_FAULT(graph_of(json::array({node("r", "relu", {"x"}, {{"inplace", true}})})),
                    R"(node "r": unknown attribute "inplace" for op relu (it takes none))");
  CHECK_GRAPH_FAULT(graph_of(json::array({node("p", "maxpool2d", {"x"}, {{"kernel", 2}, {"dilation", 1}})})),
                    R"(node "p": unknown attribute "dilation" for op maxpool2d)");
  CHECK_GRAPH_FAULT(
      graph_of(json::array({node("p", "maxpool2d", {"x"}, {{"kernel", 2}, {"count_include_pad", true}})})),
      R"(node "p": unknown attribute "count_include_pad" for op maxpool2d)");
}

TEST_CASE("model file fault: attribute types") {
  auto pool = [](const json& attributes) { return graph_of(json::array({node("p", "avgpool2d", {"x"}, attributes)})); };
  CHECK_GRAPH_FAULT(
      pool({{"kernel", "3"}}),
      R"(node "p": attribute "kernel" must be a non-negative integer or a list of two, at least 1, found "3")");
  CHECK_GRAPH_FAULT(pool({{"kernel", {1, 2, 3}}}),
                    R"(node "p": attribute "kernel" must be a non-negative integer or a list of two)");
  CHECK_GRAPH_FAULT(pool({{"kernel", 2.0}}),
                    R"(node "p": attribute "kernel" must be a non-negative integer or a list of two)");
  CHECK_GRAPH_FAULT(pool({{"kernel", 2}, {"padding", {-1, 1}}}),
                    R"(node "p": attribute "padding" must be a non-negative integer or a list of two, found [-1, 1])");
  CHECK_GRAPH_FAULT(pool({{"kernel", 2}, {"padding", nullptr}}),
                    R"(node "p": attribute "padding" must be a non-negative integer or a list of two, found null)");
  CHECK_GRAPH_FAULT(pool({{"kernel", {std::uint64_t{1} << 62, 1}}}),
                    R"(node "p": attribute "kernel" is 4611686018427387904, beyond 2^40)");
  CHECK_GRAPH_FAULT(pool({{"kernel", 2}, {"ceil_mode", 1}}),
                    R"(node "p": attribute "ceil_mode" must be true or false, found 1)");
  CHECK_GRAPH_FAULT(pool({{"kernel", 2}, {"count_include_pad", "false"}}),
                    R"(node "p": attribute "count_include_pad" must be true or false, found "false")");
  auto conv = [](const json& attributes) { return graph_of(json::array({node("c", "conv2d", {"x"}, attributes)})); };
  CHECK_GRAPH_FAULT(conv({{"groups", 2.0}}), R"(node "c": attribute "groups" must be a JSON integer, found 2.0)");
  CHECK_GRAPH_FAULT(conv({{"groups", true}}), R"(node "c": attribute "groups" must be a JSON integer, found true)");
  CHECK_GRAPH_FAULT(graph_of(json::array({node("l", "leaky_relu", {"x"}, {{"negative_slope", "0.1"}})})),
                    R"(node "l": attribute "negative_slope" must be a number, found "0.1")");
  CHECK_GRAPH_FAULT(graph_of(json::array({node("n", "normalize", {"x"}, {{"mean", json::array()}, {"std", 1}})})),
                    R"(node "n": attribute "mean" must be a number or a non-empty list of numbers, found [])");
  CHECK_GRAPH_FAULT(graph_of(json::array({node("f", "flatten", {"x"}, {{"start_dim", 1.5}})})),
                    R"(node "f": attribute "start_dim" must be a JSON integer, found 1.5)");
  CHECK_GRAPH_FAULT(graph_of(json::array({node("g", "gelu", {"x"}, {{"approximate", 1}})})),
                    R"(node "g": attribute "approximate" must be a string, found 1)");
  CHECK_GRAPH_FAULT(graph_of(json::array({node("p", "permute", {"x"}, {{"dims", 0}})})),
                    R"(node "p": attribute "dims" must be a list of integers, found 0)");
  CHECK_GRAPH_FAULT(graph_of(json::array({node("p", "permute", {"x"}, {{"dims", {0, 1.0}}})})),
                    R"(node "p": attribute "dims" must be a JSON integer, found 1.0)");
  CHECK_GRAPH_FAULT(graph_of(json::array({node("r", "reshape", {"x"}, {{"shape", "3"}})})),
                    R"(node "r": attribute "shape" must be a list of integers, found "3")");
}

TEST_CASE("model file fault: an axis that names the batch dimension, negative axes kept as written") {
  CHECK_GRAPH_FAULT(graph_of(json::array({node("c", "concat", {"x", "x"}, {{"axis", 0}})})),
                    R"(node "c": attribute "axis" is 0, the batch dimension)");
  CHECK_GRAPH_FAULT(graph_of(json::array({node("s", "softmax", {"x"}, {{"axis", 0}})})),
                    R"(node "s": attribute "axis" is 0, the batch dimension)");
  CHECK_GRAPH_FAULT(graph_of(json::array({node("f", "flatten", {"x"}, {{"start_dim", 0}})})),
                    R"(node "f": attribute "start_dim" is 0, the batch dimension)");
  const ModelSpec m = parse(Craft{graph_of(json::array({node("c", "concat", {"x", "x"}, {{"axis", -3}}),
                                                        node("f", "flatten", {"c"}, {{"start_dim", -4}})}))}
                                .bytes());
  CHECK(m.graph.nodes[0].attrs.axis == -3);
  CHECK(m.graph.nodes[1].attrs.start_dim == -4);  // -rank is the graph builder's to refuse
}

TEST_CASE("model file fault: PyTorch's own constraints") {
  auto one = [](const std::string& op, const json& attributes) {
    return graph_of(json::array({node("n", op, {"x"}, attributes)}));
  };
  CHECK_GRAPH_FAULT(one("hardtanh", {{"min_val", 6}, {"max_val", 0}}),
                    R"(node "n": min_val 6 must be below max_val 0)");
  CHECK_GRAPH_FAULT(one("hardtanh", {{"max_val", -1}}), R"(node "n": min_val -1 must be below max_val -1)");
  CHECK_GRAPH_FAULT(one("gelu", {{"approximate", "erf"}}), R"(node "n": approximate "erf" is not "none" or "tanh")");
  CHECK_GRAPH_FAULT(one("layer_norm", {{"normalized_ndim", 0}}),
                    R"(node "n": attribute "normalized_ndim" must be at least 1, found 0)");
  CHECK_GRAPH_FAULT(one("layer_norm", {{"eps", -1}}), R"(node "n": attribute "eps" must not be negative, found -1)");
  CHECK_GRAPH_FAULT(one("permute", json::object()), R"(node "n" has no "dims")");
  CHECK_GRAPH_FAULT(one("permute", {{"dims", {1, 0, 2}}}),
                    R"(node "n": dims [1, 0, 2] must start with 0 (the batch stays first))");
  CHECK_GRAPH_FAULT(one("permute", {{"dims", {0, 1, 1}}}), R"(node "n": dims [0, 1, 1] is not a permutation of 0..2)");
  CHECK_GRAPH_FAULT(one("permute", {{"dims", {0, 3, 1}}}), R"(node "n": dims [0, 3, 1] is not a permutation of 0..2)");
  CHECK_GRAPH_FAULT(one("permute", {{"dims", {0, 1, 2, 3, 4, 5, 6}}}),
                    R"(node "n": dims [0, 1, 2, 3, 4, 5, 6] has more than 6 entries)");
  CHECK_GRAPH_FAULT(one("reshape", json::object()), R"(node "n" has no "shape")");
  CHECK_GRAPH_FAULT(one("reshape", {{"shape", {-1, 2, -1}}}), R"(node "n": shape [-1, 2, -1] has more than one -1)");
  CHECK_GRAPH_FAULT(one("reshape", {{"shape", {0, 4}}}),
                    R"(node "n": shape [0, 4] holds 0; entries are at least 1, or -1)");
  CHECK_GRAPH_FAULT(one("reshape", {{"shape", {1, 1, 1, 1, 1, 1}}}),
                    R"(node "n": shape has 6 entries; at most 5 (a sample's))");
  CHECK_NOTHROW(parse(Craft{one("reshape", {{"shape", json::array()}})}.bytes()));  // one value per sample
  CHECK_GRAPH_FAULT(
      one("maxpool2d", {{"kernel", 3}, {"padding", 2}}),
      R"(node "n": padding [2, 2] is more than half the kernel [3, 3] (PyTorch requires padding <= kernel / 2))");
  CHECK_GRAPH_FAULT(one("avgpool2d", {{"kernel", {4, 2}}, {"padding", {2, 2}}}),
                    R"(node "n": padding [2, 2] is more than half the kernel [4, 2])");
  CHECK_NOTHROW(parse(Craft{one("avgpool2d", {{"kernel", {4, 2}}, {"padding", {2, 1}}})}.bytes()));
  CHECK_GRAPH_FAULT(one("maxpool2d", json::object()), R"(node "n" has no "kernel")");
  CHECK_GRAPH_FAULT(
      one("maxpool2d", {{"kernel", 0}}),
      R"(node "n": attribute "kernel" must be a non-negative integer or a list of two, at least 1, found 0)");
  CHECK_GRAPH_FAULT(
      one("avgpool2d", {{"kernel", 2}, {"stride", {0, 1}}}),
      R"(node "n": attribute "stride" must be a non-negative integer or a list of two, at least 1, found [0, 1])");
  CHECK_GRAPH_FAULT(one("conv2d", {{"stride", 0}}), R"(node "n": attribute "stride" must be)");
  CHECK_GRAPH_FAULT(one("conv2d", {{"dilation", {1, 0}}}), R"(node "n": attribute "dilation" must be)");
  CHECK_GRAPH_FAULT(one("conv2d", {{"groups", 0}}), R"(node "n": attribute "groups" must be at least 1, found 0)");
  CHECK_GRAPH_FAULT(one("adaptive_avgpool2d", {{"output_size", {0, 1}}}),
                    R"(node "n": attribute "output_size" must be)");
  CHECK_GRAPH_FAULT(one("batchnorm2d", {{"eps", -1e-5}}),
                    R"(node "n": attribute "eps" must not be negative, found -1e-05)");
  CHECK_GRAPH_FAULT(one("normalize", {{"mean", 0.5}, {"std", {0.5, 0.0}}}),
                    R"(node "n": attribute "std" holds 0.0 at index 1; std must be positive)");
  CHECK_GRAPH_FAULT(one("normalize", {{"mean", 0.5}, {"std", -2}}),
                    R"(node "n": attribute "std" holds -2.0 at index 0; std must be positive)");
  CHECK_GRAPH_FAULT(one("normalize", {{"mean", {1, 2}}, {"std", {1, 2, 3}}}),
                    R"(node "n": mean has 2 numbers and std 3; they must agree unless one is a single number)");
  CHECK_GRAPH_FAULT(one("normalize", {{"std", 1}}), R"(node "n" has no "mean")");
  CHECK_GRAPH_FAULT(one("normalize", {{"mean", 1}}), R"(node "n" has no "std")");
  const ModelSpec m = parse(Craft{one("normalize", {{"mean", {1, 2, 3}}, {"std", 0.5}})}.bytes());
  CHECK(m.graph.nodes[0].attrs.stddev == std::vector<double>{0.5});
  CHECK(m.graph.nodes[0].attrs.mean == std::vector<double>{1, 2, 3});
}

// ---------------------------------------------------------------------------------------------
// Parameter faults

TEST_CASE("model file fault: a missing parameter, or one that is not floating point") {
  Craft c{graph_of(json::array({node("fc", "linear", {"x"})}), input_x({3}))};
  CHECK_FAULT(c.bytes(), R"(node "fc": missing parameter "fc.weight" (linear needs weight))");
  c.tensor("fc.weight", "I64", {2, 3}, std::string(48, '\0'));
  CHECK_FAULT(
      c.bytes(),
      R"(node "fc": parameter "fc.weight" has dtype I64; parameters must be F32 or F64 (F16 and BF16 are widened))");
  c.tensors[0] = {"fc.weight", "F8_E4M3", {2, 3}, std::string(6, '\0')};
  CHECK_FAULT(c.bytes(), R"(node "fc": parameter "fc.weight" has dtype F8_E4M3)");
  c.tensors[0] = {"fc.weight", "F32", {2, 3}, f32_bytes({1, 2, 3, 4, 5, 6})};
  c.tensor("fc.bias", "BOOL", {2}, std::string("\1\0", 2));
  CHECK_FAULT(c.bytes(), R"(node "fc": parameter "fc.bias" has dtype BOOL)");

  Craft bn{graph_of(json::array({node("bn", "batchnorm2d", {"x"})}))};
  bn.tensor("bn.running_mean", "F32", {1}, f32_bytes({0}));
  CHECK_FAULT(bn.bytes(), R"(node "bn": missing parameter "bn.running_var" (batchnorm2d needs running_var))");
  bn.tensor("bn.running_var", "F32", {1}, f32_bytes({1}));
  CHECK_NOTHROW(parse(bn.bytes()));  // weight and bias optional
  Craft conv{graph_of(json::array({node("c", "conv2d", {"x"})}))};
  conv.tensor("c.bias", "F32", {1}, f32_bytes({0}));
  CHECK_FAULT(conv.bytes(), R"(node "c": missing parameter "c.weight" (conv2d needs weight))");
}

TEST_CASE("model file fault: NaN or Inf in a parameter, naming the tensor") {
  Craft c = linear_model();
  c.tensors[0].data = f32_bytes({1, std::nanf(""), 3, 4, 5, 6});
  CHECK_FAULT(c.bytes(), R"(node "fc": parameter "fc.weight" holds NaN at flat index 1)");
  c = linear_model();
  c.tensors[1] = {"fc.bias", "F64", {2}, f64_bytes({0, -std::numeric_limits<double>::infinity()})};
  CHECK_FAULT(c.bytes(), R"(node "fc": parameter "fc.bias" holds Inf at flat index 1)");
  c = linear_model();
  c.tensors[1] = {"fc.bias", "F16", {2}, u16_bytes({0x3C00, 0x7C00})};
  CHECK_FAULT(c.bytes(), R"(node "fc": parameter "fc.bias" holds Inf at flat index 1)");
  c.tensors[1] = {"fc.bias", "BF16", {2}, u16_bytes({0x7FC0, 0x3F80})};
  CHECK_FAULT(c.bytes(), R"(node "fc": parameter "fc.bias" holds NaN at flat index 0)");
}

TEST_CASE("model file fault: parameter shapes that need no input shape") {
  Craft conv{graph_of(json::array({node("c", "conv2d", {"x"}, {{"groups", 2}})}))};
  conv.tensor("c.weight", "F32", {2, 9}, std::string(72, '\0'));
  CHECK_FAULT(conv.bytes(),
              R"(node "c": parameter "c.weight" has shape [2, 9]; expected rank 4, [O, I/groups, KH, KW])");
  conv.tensors[0] = {"c.weight", "F32", {3, 1, 3, 3}, std::string(108, '\0')};
  CHECK_FAULT(conv.bytes(), R"(node "c": groups 2 does not divide the 3 output channels of "c.weight" [3, 1, 3, 3])");
  conv.tensors[0] = {"c.weight", "F32", {2, 1, 0, 3}, ""};
  CHECK_FAULT(conv.bytes(),
              R"(node "c": parameter "c.weight" has shape [2, 1, 0, 3]; a conv2d weight has no zero dimension)");
  conv.tensors[0] = {"c.weight", "F32", {2, 1, 3, 3}, std::string(72, '\0')};
  conv.tensor("c.bias", "F32", {3}, std::string(12, '\0'));
  CHECK_FAULT(conv.bytes(), R"(node "c": parameter "c.bias" has shape [3]; expected [2] ([O], O from the weight))");
  conv.tensors[1] = {"c.bias", "F32", {2}, std::string(8, '\0')};
  CHECK_NOTHROW(parse(conv.bytes()));

  Craft fc = linear_model();
  fc.tensors[0] = {"fc.weight", "F32", {6}, f32_bytes({1, 2, 3, 4, 5, 6})};
  CHECK_FAULT(fc.bytes(), R"(node "fc": parameter "fc.weight" has shape [6]; expected rank 2, [O, I])");
  fc = linear_model();
  fc.tensors[1] = {"fc.bias", "F32", {1, 2}, f32_bytes({1, 2})};
  CHECK_FAULT(fc.bytes(), R"(node "fc": parameter "fc.bias" has shape [1, 2]; expected [2] ([O], O from the weight))");

  Craft bn{graph_of(json::array({node("bn", "batchnorm2d", {"x"})}))};
  bn.tensor("bn.running_mean", "F32", {2}, f32_bytes({0, 0}))
      .tensor("bn.running_var", "F32", {3}, f32_bytes({1, 1, 1}));
  CHECK_FAULT(bn.bytes(),
              R"(node "bn": parameter "bn.running_var" has shape [3]; expected [2] (the shape of "bn.running_mean"))");
  bn.tensors[1] = {"bn.running_var", "F32", {2}, f32_bytes({1, 1})};
  bn.tensor("bn.weight", "F32", {1, 2}, f32_bytes({1, 1}));
  CHECK_FAULT(bn.bytes(), R"(node "bn": parameter "bn.weight" has shape [1, 2]; expected [2])");
  bn.tensors[2] = {"bn.bias", "F32", {2}, f32_bytes({1, 1})};
  CHECK_NOTHROW(parse(bn.bytes()));
  bn.tensors[0] = {"bn.running_mean", "F32", {1, 2}, f32_bytes({0, 0})};
  CHECK_FAULT(bn.bytes(), R"(node "bn": parameter "bn.running_mean" has shape [1, 2]; expected rank 1, [C])");
  bn.tensors[0] = {"bn.running_mean", "F32", {2}, f32_bytes({0, 0})};
  bn.tensors[1] = {"bn.running_var", "F32", {2}, f32_bytes({1, -0.5})};
  CHECK_FAULT(bn.bytes(),
              R"(node "bn": parameter "bn.running_var" holds -0.5 at flat index 1; a variance cannot be negative)");

  Craft ln{graph_of(json::array({node("ln", "layer_norm", {"x"}, {{"normalized_ndim", 2}})}))};
  ln.tensor("ln.weight", "F32", {6}, std::string(24, '\0'));
  CHECK_FAULT(ln.bytes(), R"(node "ln": parameter "ln.weight" has shape [6]; expected rank 2 (normalized_ndim))");
  ln.tensors[0] = {"ln.weight", "F32", {2, 3}, std::string(24, '\0')};
  ln.tensor("ln.bias", "F32", {3, 2}, std::string(24, '\0'));
  CHECK_FAULT(ln.bytes(), R"(node "ln": parameter "ln.bias" has shape [3, 2]; expected [2, 3] (the shape of "ln.weight"))");
  ln.tensors[1] = {"ln.bias", "F32", {2, 3}, std::string(24, '\0')};
  CHECK_NOTHROW(parse(ln.bytes()));
}

TEST_CASE("model file fault: messages stay on one line and name the file") {
  const std::string bytes = with_entries({{"a\nb", entry("F99", {0}, 0, 0)}}, "");
  CHECK_THROWS_WITH_AS(parse_model(bytes, "dir/m.st"),
                       doctest::Contains(R"(dir/m.st: tensor "a\nb": undefined dtype "F99")"), ax::Error);
  try {
    parse_model(bytes, "line\nbreak");
    FAIL("no error");
  } catch (const ax::Error& e) {
    CHECK(std::string(e.what()).find('\n') == std::string::npos);
    CHECK(std::string(e.what()).rfind("line\\x0abreak: ", 0) == 0);
  }
  CHECK_THROWS_WITH_AS(parse_graph(json::array(), "g.json"), doctest::Contains("g.json: graph must be a JSON object"),
                       ax::Error);
  CHECK(parse_graph(relu_graph(), "g.json").nodes.at(0).op == "relu");
}
