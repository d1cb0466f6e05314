// Hostile input: every case found by trying the library and the command as an attacker would
// gets one clear line naming the file, node or option, exit 2 for bad usage and 1 otherwise, and
// writes nothing. Shapes and counts are bounded before anything is allocated, work is bounded
// by a deadline, and nothing non-finite goes out quietly.
#include "attribution/explain.hpp"
#include "attribution/io.hpp"
#include "attribution/baseline.hpp"
#include "cli/options.hpp"
#include "nn/graph.hpp"
#include "nn/model_file.hpp"
#include "support.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>
#include <zlib.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>

#include <unistd.h>
#include <sstream>
#include <sys/wait.h>

using namespace ax;

namespace {

// Named per process: ctest runs two test cases of this file at once.
std::string temp(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("axiomatic_hardening_" + std::to_string(::getpid()) + "_" + name))
      .string();
}

using test::slurp;

struct Run {
  int status;
  std::string out, err;
  double seconds;
};

// The command under a 3 GB address-space limit: a case that tried to allocate what the issue
// saw (2 to 22 GB) fails instead of taking the machine. Under AddressSanitizer, whose shadow
// memory reserves terabytes of address space, no limit: ASan's own allocator refuses huge
// allocations there, and reports them.
#if defined(__SANITIZE_ADDRESS__)
const char* const address_space_limit = "";
#else
const char* const address_space_limit = "ulimit -v 3000000\n";
#endif

Run run(const std::string& args) {
  const std::string out = temp("stdout"), err = temp("stderr"), script = temp("command.sh");
  const auto start = std::chrono::steady_clock::now();
  std::ofstream(script) << address_space_limit << AXIOMATIC_CLI << " " << args << " >" << out << " 2>" << err << " </dev/null\n";
  const int raw = std::system(("sh " + script).c_str());
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return {WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, slurp(out), slurp(err), seconds};
}

std::size_t lines(const std::string& s) { return static_cast<std::size_t>(std::count(s.begin(), s.end(), '\n')); }

// A toy model file (the graph document with inline parameters) written to a temporary file.
std::string toy(const std::string& name, const nlohmann::json& doc) {
  const std::string path = temp(name + ".json");
  std::ofstream(path) << doc.dump();
  return path;
}

nlohmann::json filled(std::vector<std::size_t> shape, double value) {
  if (shape.empty()) return value;
  const std::size_t n = shape[0];
  shape.erase(shape.begin());
  nlohmann::json a = nlohmann::json::array();
  for (std::size_t i = 0; i < n; ++i) a.push_back(filled(shape, value));
  return a;
}

// input [1, side, side] -> conv2d (1 -> channels, 3x3, `padding`) -> relu -> flatten
nlohmann::json conv_toy(std::size_t side, std::size_t channels, std::uint64_t padding) {
  return {{"version", 1},
          {"inputs", {{{"name", "image"}, {"shape", {1, side, side}}, {"range", {0.0, 1.0}}}}},
          {"nodes",
           {{{"name", "conv1"}, {"op", "conv2d"}, {"inputs", {"image"}}, {"padding", padding}},
            {{"name", "relu1"}, {"op", "relu"}, {"inputs", {"conv1"}}},
            {{"name", "flat"}, {"op", "flatten"}, {"inputs", {"relu1"}}}}},
          {"outputs", {"flat"}},
          {"parameters", {{"conv1.weight", filled({channels, 1, 3, 3}, 0.1)}}}};
}

// x [n] -> linear (weights `w`, n -> classes) with labels
nlohmann::json linear_toy(std::size_t n, std::size_t classes, double w, std::vector<std::string> labels = {}) {
  nlohmann::json doc = {{"version", 1},
                        {"inputs", {{{"name", "x"}, {"shape", {n}}, {"range", {0.0, 1.0}}}}},
                        {"nodes", {{{"name", "fc"}, {"op", "linear"}, {"inputs", {"x"}}}}},
                        {"outputs", {"fc"}},
                        {"parameters", {{"fc.weight", filled({classes, n}, w)}}}};
  if (!labels.empty()) doc["labels"] = labels;
  return doc;
}

std::string npy(const std::string& name, const Tensor<double>& t) {
  const std::string path = temp(name + ".npy");
  attr::write_npy(path, t);
  return path;
}

// A PNG written chunk by chunk: IHDR, an optional PLTE, IDAT (rows with filter 0), IEND.
void chunk(std::string& png, const char* type, const std::string& data) {
  const std::uint32_t length = static_cast<std::uint32_t>(data.size());
  for (int s = 24; s >= 0; s -= 8) png += static_cast<char>((length >> s) & 0xff);
  const std::string body = type + data;
  png += body;
  const std::uint32_t crc = static_cast<std::uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(body.data()), static_cast<uInt>(body.size())));
  for (int s = 24; s >= 0; s -= 8) png += static_cast<char>((crc >> s) & 0xff);
}

std::string be32(std::uint32_t v) {
  std::string s;
  for (int shift = 24; shift >= 0; shift -= 8) s += static_cast<char>((v >> shift) & 0xff);
  return s;
}

std::string png_file(std::uint32_t width, std::uint32_t height, int colour_type, const std::string& palette,
                     const std::vector<std::uint8_t>& samples) {
  std::string png("\x89PNG\r\n\x1a\n", 8);
  chunk(png, "IHDR", be32(width) + be32(height) + std::string{8, static_cast<char>(colour_type), 0, 0, 0});
  if (!palette.empty()) chunk(png, "PLTE", palette);
  std::string raw;
  const std::size_t per_row = samples.size() / std::max<std::uint32_t>(height, 1);
  for (std::uint32_t y = 0; y < height && !samples.empty(); ++y) {
    raw += '\0';
    raw.append(reinterpret_cast<const char*>(samples.data()) + y * per_row, per_row);
  }
  uLongf size = compressBound(static_cast<uLong>(raw.size()));
  std::string packed(size, '\0');
  compress(reinterpret_cast<Bytef*>(&packed[0]), &size, reinterpret_cast<const Bytef*>(raw.data()), static_cast<uLong>(raw.size()));
  packed.resize(size);
  chunk(png, "IDAT", packed);
  chunk(png, "IEND", "");
  return png;
}

const std::string shipped = std::string(AXIOMATIC_SOURCE) + "/examples/models/fashion_mnist.safetensors";
const std::string sandal = std::string(AXIOMATIC_SOURCE) + "/examples/images/test0008_sandal.png";
const std::string relu_toy = std::string(AXIOMATIC_SOURCE) + "/examples/toys/relu_sensitivity.json";

}  // namespace

TEST_CASE("element counts: multiplied with overflow checks, strides of empty batches too") {
  CHECK(fits_elements(Shape{2, 3}, 6));
  CHECK_FALSE(fits_elements(Shape{2, 3}, 5));
  CHECK_FALSE(fits_elements(Shape{std::size_t(1) << 40, std::size_t(1) << 40}));  // 2^80: no wrap to 0
  CHECK_FALSE(fits_elements(Shape{0, std::size_t(1) << 33}));                      // empty, but its stride is not
  CHECK(fits_elements(Shape{0, 1000}, 1000));
  CHECK_FALSE(fits_elements(Shape{std::numeric_limits<std::size_t>::max(), 2, 0}));
}

TEST_CASE("the tape refuses a node over its element limit before allocating it, and keeps no node") {
  Tape<float> tape;
  tape.set_element_limit(30);
  const Var<float> x = tape.input(zeros<float>({1, 20}));
  const std::size_t size = tape.size();
  CHECK_THROWS_WITH_AS(concat(std::vector<Var<float>>{x, x}, 1), doctest::Contains("output shape [1, 40] holds more than 30 elements"), Error);
  CHECK(tape.size() == size);
  CHECK_NOTHROW(x + x);
}

TEST_CASE("info records a batch of 0: shapes of every op without running the network") {
  // every op of the format, shapes checked against a batch of 1
  const nlohmann::json doc = {
      {"version", 1},
      {"inputs", {{{"name", "image"}, {"shape", {2, 6, 6}}}}},
      {"nodes",
       {{{"name", "c"}, {"op", "conv2d"}, {"inputs", {"image"}}, {"padding", 1}},
        {{"name", "n"}, {"op", "normalize"}, {"inputs", {"image"}}, {"mean", {0.5}}, {"std", {0.25}}},
        {{"name", "a"}, {"op", "add"}, {"inputs", {"c", "n"}}},
        {{"name", "s"}, {"op", "sub"}, {"inputs", {"a", "n"}}},
        {{"name", "m"}, {"op", "mul"}, {"inputs", {"s", "c"}}},
        {{"name", "bn"}, {"op", "batchnorm2d"}, {"inputs", {"m"}}},
        {{"name", "lr"}, {"op", "leaky_relu"}, {"inputs", {"bn"}}},
        {{"name", "sg"}, {"op", "sigmoid"}, {"inputs", {"lr"}}},
        {{"name", "th"}, {"op", "tanh"}, {"inputs", {"sg"}}},
        {{"name", "id"}, {"op", "identity"}, {"inputs", {"th"}}},
        {{"name", "mp"}, {"op", "maxpool2d"}, {"inputs", {"id"}}, {"kernel", 2}},
        {{"name", "ap"}, {"op", "avgpool2d"}, {"inputs", {"mp"}}, {"kernel", 2}, {"stride", 1}},
        {{"name", "ad"}, {"op", "adaptive_avgpool2d"}, {"inputs", {"ap"}}, {"output_size", {3, 3}}},
        {{"name", "cat"}, {"op", "concat"}, {"inputs", {"mp", "ad"}}, {"axis", 1}},
        {{"name", "fl"}, {"op", "flatten"}, {"inputs", {"cat"}}},
        {{"name", "fc"}, {"op", "linear"}, {"inputs", {"fl"}}},
        {{"name", "r"}, {"op", "relu"}, {"inputs", {"fc"}}},
        {{"name", "ls"}, {"op", "log_softmax"}, {"inputs", {"r"}}},
        {{"name", "sm"}, {"op", "softmax"}, {"inputs", {"ls"}}}}},
      {"outputs", {"sm"}},
      {"parameters",
       {{"c.weight", filled({2, 2, 3, 3}, 0.1)},
        {"bn.running_mean", filled({2}, 0.0)},
        {"bn.running_var", filled({2}, 1.0)},
        {"fc.weight", filled({3, 36}, 0.01)}}}};
  const nn::ModelSpec spec = nn::load_model(toy("every_op", doc));
  Tape<float> empty, one;
  nn::RecordOptions zero_batch;
  zero_batch.batch = 0;
  const nn::Network<float> net0(spec, empty, zero_batch), net1(spec, one);
  for (const nn::NodeSpec& n : spec.graph.nodes) {
    CAPTURE(n.name);
    const Shape s0 = empty.value(net0.node(n.name)).shape(), s1 = one.value(net1.node(n.name)).shape();
    CHECK(s0[0] == 0);
    CHECK(Shape(s0.begin() + 1, s0.end()) == Shape(s1.begin() + 1, s1.end()));
  }
  const std::string summary = nn::describe(spec, "every_op");
  CHECK(summary.find("concat") != std::string::npos);
  CHECK(summary.find("[4, 3, 3]") != std::string::npos);
}

TEST_CASE("info on a layer of 1.2e9 values per sample: described without running it") {
  const std::string model = toy("padding3000", conv_toy(28, 32, 3000));
  const Run info = run("info --model " + model);
  CHECK(info.status == 0);
  CHECK(info.out.find("[32, 6026, 6026]") != std::string::npos);
  CHECK(info.seconds < 10);
  // explaining it is refused at that node, before its 4.6 GB are allocated
  const std::string x = npy("x28", zeros<double>({1, 28, 28}));
  const Run explain = run("explain --model " + model + " --input " + x);
  CHECK(explain.status == 1);
  CHECK(lines(explain.err) == 1);
  CHECK(explain.err.find("node 'conv1'") != std::string::npos);
  CHECK(explain.err.find("memory budget") != std::string::npos);
  // an input of 10^9 values: described, not allocated (a batch of 0)
  const std::string giant = toy("giant_info", {{"version", 1},
                                               {"inputs", {{{"name", "x"}, {"shape", {1000000000}}}}},
                                               {"nodes", {{{"name", "r"}, {"op", "relu"}, {"inputs", {"x"}}}}},
                                               {"outputs", {"r"}}});
  const Run big = run("info --model " + giant);
  CHECK(big.status == 0);
  CHECK(big.out.find("output r [1000000000]") != std::string::npos);
  CHECK(big.seconds < 10);
}

TEST_CASE("the engine: budgets, empty outputs, deadlines") {
  // the input alone over the budget, refused before the input leaf is made
  attr::EngineOptions small;
  small.memory_budget = 1000;
  small.source = "wide";
  const nn::ModelSpec wide = nn::load_model(toy("wide", linear_toy(300, 2, 0.1)));
  CHECK_THROWS_WITH_AS(attr::Engine<float>(wide, attr::TargetSpec{}, small),
                       doctest::Contains("wide: the input shape [300] does not fit the memory budget of 1000 bytes"), Error);
  // an output of 0 values: nothing to explain
  const nn::ModelSpec zero_out = nn::load_model(toy("zero_out", linear_toy(3, 1, 0.5)));
  nn::ModelSpec no_values = zero_out;
  no_values.tensors["fc.weight"] = nn::TensorData{"F64", {0, 3}, {}};
  CHECK_THROWS_WITH_AS(attr::Engine<double>(no_values, attr::TargetSpec{}),
                       doctest::Contains("node 'fc' has no values to explain"), Error);
  // a deadline already past: an error, never a partial answer, for quadratures and exact IG
  attr::EngineOptions past;
  past.deadline = std::chrono::steady_clock::now() - std::chrono::seconds(1);
  const nn::ModelSpec model = nn::read_model(shipped);
  attr::Engine<float> f(model, attr::TargetSpec{}, past);
  attr::TargetSpec target;
  target.class_index = 5;
  attr::Engine<float> g(model, target, past);
  const Tensor<float> x = attr::read_array<float>(sandal, f.input_shape()), base = zeros<float>(f.input_shape());
  attr::IgOptions exact;
  exact.rule = attr::Rule::exact;
  CHECK_THROWS_AS(attr::integrated_gradients(g, x, base, exact), attr::TimeLimitExceeded);
  CHECK_THROWS_WITH_AS(attr::integrated_gradients(f, x, base), doctest::Contains("the time limit ran out"), attr::TimeLimitExceeded);
}

TEST_CASE("a deadline stops exact IG on the shipped model partway, as an error") {
  attr::EngineOptions soon;
  soon.deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(100);
  const nn::ModelSpec model = nn::read_model(shipped);
  attr::Engine<float> f(model, attr::TargetSpec{}, soon);
  const Tensor<float> x = attr::read_array<float>(sandal, f.input_shape()), base = zeros<float>(f.input_shape());
  attr::IgOptions exact;
  exact.rule = attr::Rule::exact;
  const auto start = std::chrono::steady_clock::now();
  CHECK_THROWS_AS(attr::integrated_gradients(f, x, base, exact), attr::TimeLimitExceeded);
  CHECK(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < 2.0);  // a full run: 2 to 13 s
}

TEST_CASE("non-finite values end with an error naming the node where they first appear") {
  // a weight of 1e300 does not fit float32 (converting it is undefined): refused as the model is
  // recorded, naming the parameter, not a NaN label or a null sum
  const nn::ModelSpec huge = nn::load_model(toy("huge_weight", linear_toy(2, 2, 1e300)));
  CHECK_THROWS_WITH_AS(attr::Engine<float>(huge, attr::TargetSpec{}),
                       doctest::Contains("node 'fc': parameter 'fc.weight': value out of float range (1e+300 at index 0)"), Error);
  nn::ModelSpec last_huge = nn::load_model(toy("last_huge", linear_toy(2, 2, 0.5)));
  last_huge.tensors["fc.weight"].values.back() = -3.5e38;
  CHECK_THROWS_WITH_AS(attr::Engine<float>(last_huge, attr::TargetSpec{}), doctest::Contains("(-3.5e+38 at index 3)"), Error);
  last_huge.tensors["fc.weight"].values.back() = -3.4e38;  // within float's range
  CHECK_NOTHROW(attr::Engine<float>(last_huge, attr::TargetSpec{}));
  // the same in a float64 .npy read as float32
  const std::string far = npy("far", from_values<double>({3}, {0.5, -1e300, 1.0}));
  CHECK_THROWS_WITH_AS(attr::read_npy<float>(far), doctest::Contains((far + ": value out of float range (-1e+300 at index 1)").c_str()), Error);
  CHECK(attr::read_npy<double>(far).data()[1] == -1e300);
  // Inf in the file converts as it is: named where it first appears, the parameter
  nn::ModelSpec inf_weight = last_huge;
  inf_weight.tensors["fc.weight"].values.back() = std::numeric_limits<double>::infinity();
  attr::Engine<float> f(inf_weight, attr::TargetSpec{});
  const Tensor<float> x = from_values<float>({2}, {0.5f, 0.25f});
  CHECK_THROWS_WITH_AS(f.resolve_class(x), doctest::Contains("parameter 'fc.weight'"), attr::NonFinite);
  // in float64 the same model is finite
  attr::Engine<double> d(huge, attr::TargetSpec{});
  CHECK(std::isfinite(attr::integrated_gradients(d, from_values<double>({2}, {0.5, 0.25}), zeros<double>({2})).sum));
  // normalize by a std of 1e-45 overflows float32 there: named as the normalize node
  nlohmann::json doc = linear_toy(2, 2, 0.5);
  doc["inputs"][0]["shape"] = {1, 1, 2};
  doc["nodes"] = {{{"name", "norm"}, {"op", "normalize"}, {"inputs", {"x"}}, {"mean", {0.0}}, {"std", {1e-45}}},
                  {{"name", "flat"}, {"op", "flatten"}, {"inputs", {"norm"}}},
                  {{"name", "fc"}, {"op", "linear"}, {"inputs", {"flat"}}}};
  const nn::ModelSpec tiny_std = nn::load_model(toy("tiny_std", doc));
  attr::TargetSpec first;
  first.class_index = 0;
  attr::Engine<float> n(tiny_std, first);
  const Tensor<float> image = from_values<float>({1, 1, 2}, {0.5f, 0.25f});
  CHECK_THROWS_WITH_AS(attr::integrated_gradients(n, image, zeros<float>({1, 1, 2})),
                       doctest::Contains("Inf first appears in the forward pass at node 'norm' (normalize)"), attr::NonFinite);
}

TEST_CASE("baselines: a batch too large, a blur too wide or a constant beyond float is refused before allocating") {
  attr::Random random(1);
  const Tensor<float> x = zeros<float>({1, 28, 28});
  const attr::Range range = std::pair{0.0, 1.0};
  CHECK_THROWS_WITH_AS(attr::make_baselines(attr::parse_baseline("uniform"), x, range, std::size_t(1) << 62, random),
                       doctest::Contains("more than 2^32 values"), Error);
  CHECK_THROWS_WITH_AS(attr::parse_baseline("blur:1e300"), doctest::Contains("at most 1000 pixels"), Error);
  CHECK_THROWS_AS(attr::gaussian_blur(x, 1e300), Error);
  CHECK(attr::gaussian_blur(x, 1000).shape() == x.shape());
  // a constant beyond float's range, on a model with no input range to refuse it first
  CHECK_THROWS_WITH_AS(attr::make_baseline(attr::parse_baseline("constant:1e300"), x, attr::Range{}),
                       doctest::Contains("out of float range"), Error);
  CHECK(attr::make_baseline(attr::parse_baseline("constant:1e300"), zeros<double>({1, 28, 28}), attr::Range{})(0, 0, 0) == 1e300);
  CHECK(attr::make_baseline(attr::parse_baseline("constant:-3e38"), x, attr::Range{})(0, 0, 0) == -3e38f);
}

TEST_CASE("PNG: the header's size is checked before decoding; a paletted gray image is gray") {
  // 20000 x 20000 gray: 400 MB decoded; refused from its header (the data is not even there)
  const std::string big = temp("big.png");
  std::ofstream(big, std::ios::binary) << png_file(20000, 20000, 0, "", {});
  CHECK_THROWS_WITH_AS(attr::read_array<float>(big, Shape{1, 28, 28}),
                       doctest::Contains("has shape [1, 20000, 20000], the model expects [1, 28, 28]"), Error);
  CHECK_THROWS_WITH_AS(attr::read_png(big), doctest::Contains("more than 2^26"), Error);
  // paletted: entries (v, v, v) read as one channel with the entries' values
  std::string gray_palette, colour_palette;
  for (int v : {0, 51, 255}) gray_palette += std::string(3, static_cast<char>(v));
  colour_palette = gray_palette;
  colour_palette[4] = 10;  // entry 1 is (51, 10, 51)
  const std::vector<std::uint8_t> indices = {0, 1, 2, 1, 2, 0};
  const std::string gray = temp("palette_gray.png"), colour = temp("palette_colour.png");
  std::ofstream(gray, std::ios::binary) << png_file(3, 2, 3, gray_palette, indices);
  std::ofstream(colour, std::ios::binary) << png_file(3, 2, 3, colour_palette, indices);
  const Tensor<float> g = attr::read_png(gray);
  REQUIRE(g.shape() == Shape{1, 2, 3});
  CHECK(g(0, 0, 1) == 51.0f / 255.0f);
  CHECK(g(0, 1, 0) == 51.0f / 255.0f);
  CHECK(g(0, 1, 1) == 1.0f);
  CHECK(attr::read_png(colour).shape() == Shape{3, 2, 3});
}

TEST_CASE("writes are checked, and several files are written all or none") {
  CHECK_THROWS_WITH_AS(attr::write_npy("/dev/full", zeros<float>({100})), doctest::Contains("/dev/full: cannot write"), Error);
  const std::string first = temp("first.bin");
  std::filesystem::remove(first);
  CHECK_THROWS_AS(attr::write_files({{first, "abc"}, {"/dev/full", std::string(100000, 'x')}}), Error);
  CHECK_FALSE(std::filesystem::exists(first));
}

TEST_CASE("the command line: numbers parsed strictly, within stated ranges") {
  using namespace ax::cli;
  CHECK(parse_count("18446744073709551615", "--seed", 0, std::numeric_limits<std::uint64_t>::max()) ==
        std::numeric_limits<std::uint64_t>::max());
  for (const char* bad : {"18446744073709551616", "-1", "+3", " 3", "3 ", "1e3", "0x10", "", "3.0"})
    CHECK_THROWS_WITH_AS(parse_count(bad, "--seed", 0, std::numeric_limits<std::uint64_t>::max()),
                         doctest::Contains("--seed: '"), UsageError);
  CHECK_THROWS_WITH_AS(parse_count("0", "--steps", 1, 10), doctest::Contains("is not a whole number from 1 to 10"), UsageError);
  CHECK(parse_real("1e-3", "--tolerance", 0, 1) == 1e-3);
  for (const char* bad : {"nan", "inf", "-inf", "1e400", "-1", "0.5x", "", " 1"})
    CHECK_THROWS_WITH_AS(parse_real(bad, "--tolerance", 0, 1e300), doctest::Contains("is not a finite number"), UsageError);
  CHECK(parse_bytes("512M", "--memory") == std::size_t(512) << 20);
  CHECK(parse_bytes("1024G", "--memory") == std::size_t(1) << 40);
  for (const char* bad : {"-1", "0", "17179869184G", "1025G", "1T", "G", "18446744073709551616"})
    CHECK_THROWS_WITH_AS(parse_bytes(bad, "--memory"), doctest::Contains("--memory: '"), UsageError);
  // parse_options: a request, no work
  const std::string model = relu_toy;
  const std::vector<const char*> argv = {"axiomatic", "explain", "--model", model.c_str(), "--input", model.c_str(),
                                         "--steps", "7", "--timeout", "2.5", "--seed", "3"};
  const Request r = parse_options(static_cast<int>(argv.size()), argv.data());
  CHECK(r.command == Command::explain);
  CHECK(r.explain.steps == 7);
  CHECK(r.explain.timeout == 2.5);
  CHECK(r.explain.seed == 3);
  // --winograd: on by default, off by default for report (beside exact IG, always direct)
  const auto winograd = [&](std::vector<const char*> args) {
    std::vector<const char*> full = {"axiomatic"};
    full.insert(full.end(), args.begin(), args.end());
    return parse_options(static_cast<int>(full.size()), full.data()).winograd;
  };
  const char* m = model.c_str();
  CHECK(winograd({"explain", "--model", m, "--input", m}));
  CHECK_FALSE(winograd({"explain", "--model", m, "--input", m, "--winograd", "off"}));
  CHECK_FALSE(winograd({"report", "--model", m, "--images", m, "--out", "unused"}));
  CHECK(winograd({"report", "--model", m, "--images", m, "--out", "unused", "--winograd"}));
  CHECK(winograd({"report", "--model", m, "--images", m, "--out", "unused", "--winograd", "on"}));
  CHECK_FALSE(winograd({"report", "--model", m, "--images", m, "--out", "unused", "--winograd", "off"}));
}

TEST_CASE("every case of the hostile table: one line, exit 2 for usage and 1 otherwise, nothing written") {
  const std::string x = npy("x1", from_values<double>({1}, {1.5}));
  const std::string image = npy("image28", zeros<double>({1, 28, 28}));
  const std::string out = temp("out.npy"), csv = temp("path.csv");
  const std::string huge_pool = toy("huge_pool", {{"version", 1},
                                                  {"inputs", {{{"name", "x"}, {"shape", {1, 4, 4}}}}},
                                                  {"nodes",
                                                   {{{"name", "pool"},
                                                     {"op", "adaptive_avgpool2d"},
                                                     {"inputs", {"x"}},
                                                     {"output_size", {std::uint64_t(1) << 40, std::uint64_t(1) << 40}}}}},
                                                  {"outputs", {"pool"}}});
  nlohmann::json giant_input = {{"version", 1},
                                {"inputs", {{{"name", "x"}, {"shape", {1000000000}}}}},
                                {"nodes", {{{"name", "r"}, {"op", "relu"}, {"inputs", {"x"}}}}},
                                {"outputs", {"r"}}};
  const std::string giant = toy("giant_input", giant_input);
  const std::string other_shape = toy("other_shape", linear_toy(2, 1, 1.0));
  const std::string explain = "explain --model " + relu_toy + " --input " + x;
  // a 20000 x 20000 PNG of 30 bytes: refused from its header, never decoded
  const std::string big_png = temp("big_cli.png");
  std::ofstream(big_png, std::ios::binary) << png_file(20000, 20000, 0, "", {});
  // normalize by a std of 1e-45: Inf in float32 at that node
  nlohmann::json tiny_std = linear_toy(2, 2, 0.5);
  tiny_std["inputs"][0]["shape"] = {1, 1, 2};
  tiny_std["nodes"] = {{{"name", "norm"}, {"op", "normalize"}, {"inputs", {"x"}}, {"mean", {0.0}}, {"std", {1e-45}}},
                       {{"name", "flat"}, {"op", "flatten"}, {"inputs", {"norm"}}},
                       {{"name", "fc"}, {"op", "linear"}, {"inputs", {"flat"}}}};
  const std::string image12 = npy("image12", from_values<double>({1, 1, 2}, {0.5, 0.25}));
  // an output node of 0 values (a linear layer of 0 outputs), as a model file
  nn::ModelSpec no_values = nn::load_model(toy("no_values_source", linear_toy(1, 1, 0.5)));
  no_values.tensors["fc.weight"] = nn::TensorData{"F32", {0, 1}, {}};
  const std::string empty_output = temp("empty_output.safetensors");
  nn::write_model(empty_output, no_values);
  struct Case {
    std::string args;
    int status;
    std::string says;
  };
  for (const Case& c : {
           Case{"info --model " + huge_pool, 1, "node 'pool'"},
           Case{explain + " --baseline uniform --samples 4611686018427387904", 2, "--samples: '4611686018427387904'"},
           Case{explain + " --baseline blur:1e300", 2, "blur's sigma must be at most 1000"},
           Case{"info --model " + toy("pad32", conv_toy(28, 1, std::uint64_t(1) << 32)), 1, "node 'conv1'"},
           Case{"info --model " + toy("pad40", conv_toy(28, 1, std::uint64_t(1) << 40)), 1, "node 'conv1'"},
           Case{"explain --model " + toy("pad40", conv_toy(28, 1, std::uint64_t(1) << 40)) + " --input " + image, 1,
                "node 'conv1'"},
           Case{"explain --model " + giant + " --input " + x, 1, "the input shape [1000000000] does not fit the memory budget"},
           Case{explain + " --rule gausslegendre --steps 40000", 2, "--steps: '40000' is not a whole number from 1 to 32768"},
           Case{explain + " --steps 16777216", 2, "--steps"},
           Case{explain + " --baseline uniform --samples -1", 2, "--samples: '-1'"},
           Case{explain + " --seed -1", 2, "--seed: '-1'"},
           Case{explain + " --memory -1", 2, "--memory: '-1'"},
           Case{explain + " --memory 17179869184G", 2, "--memory: '17179869184G'"},
           Case{explain + " --tolerance nan", 2, "--tolerance: 'nan'"},
           Case{"explain --model " + toy("huge_weight", linear_toy(1, 2, 1e300)) + " --input " + x, 1,
                "parameter 'fc.weight': value out of float range"},
           Case{explain + " --path-csv /dev/full", 1, "/dev/full: cannot write"},
           Case{explain + " --method gradient --path-csv " + csv + " --out " + out, 2, "--path-csv applies to --method ig"},
           Case{explain + " --layer relu --rule exact", 2, "no exact rule"},
           Case{explain + " --layer relu --method gradient", 2, "--layer applies to --method ig"},
           Case{explain + " --method conductance", 2, "needs --layer"},
           Case{explain + " --path-csv /nonexistent/folder/p.csv", 2, "--path-csv: the folder '/nonexistent/folder' does not exist"},
           Case{explain + " --rule exact --timeout 0", 2, "--timeout: '0'"},
           Case{"check --model " + relu_toy + " --input " + x + " --equivalent " + other_shape, 1,
                other_shape + ": input shape [2] differs"},
           Case{"check --model " + relu_toy + " --input " + x + " --rule riemann_right --steps 4", 1,
                "check: completeness (error"},
           Case{"check --model " + relu_toy + " --input " + x + " --baseline uniform", 2, "is random"},
           Case{"info --model " + relu_toy + " --timeout nan", 2, "--timeout: 'nan'"},
           Case{"explain --model " + relu_toy + " --input " + big_png, 1, big_png + ": has shape [1, 20000, 20000]"},
           Case{"explain --model " + toy("tiny_std_cli", tiny_std) + " --input " + image12 + " --target 0", 1,
                "first appears in the forward pass at node 'norm' (normalize)"},
           Case{"explain --model " + empty_output + " --input " + x, 1, "node 'fc' has no values to explain"},
           Case{"explain --model " + relu_toy + " --input " + npy("x_far", from_values<double>({1}, {1e300})), 1,
                "value out of float range (1e+300 at index 0)"},
       }) {
    CAPTURE(c.args);
    std::filesystem::remove(out);
    std::filesystem::remove(csv);
    // explain is given --out as well: it must not be written
    const bool explain_case = c.args.rfind("explain", 0) == 0 && c.args.find("--out") == std::string::npos;
    const Run plain = run(explain_case ? c.args + " --out " + out : c.args);
    CHECK(plain.status == c.status);
    CHECK(lines(plain.err) == 1);
    CHECK(plain.err.find(c.says) != std::string::npos);
    CHECK(plain.seconds < 20);
    CHECK_FALSE(std::filesystem::exists(out));
    CHECK_FALSE(std::filesystem::exists(csv));
  }
}

TEST_CASE("labels belong to the output node; names and labels are printed escaped") {
  const Run hidden = run("explain --model " + shipped + " --input " + sandal + " --node conv1 --target 3 --method gradient --json");
  REQUIRE(hidden.status == 0);
  CHECK_FALSE(nlohmann::json::parse(hidden.out).contains("label"));
  const Run output = run("explain --model " + shipped + " --input " + sandal + " --target 3 --method gradient --json");
  REQUIRE(output.status == 0);
  CHECK(nlohmann::json::parse(output.out)["label"] == "Dress");
  attr::Attribution<float> first;
  first.target = 0;
  const nn::GraphSpec graph{{}, {}, "out", {"a"}};
  CHECK(attr::report(first, graph)["label"] == "a");
  CHECK(attr::report(first, graph, "out")["label"] == "a");
  CHECK_FALSE(attr::report(first, graph, "hidden").contains("label"));

  nlohmann::json doc = linear_toy(1, 2, 1.0, {"cat\n\x1b[31mred", "dog\tdog"});
  doc["nodes"][0]["name"] = "f\nc";
  doc["outputs"] = {"f\nc"};
  doc["parameters"] = {{"f\nc.weight", filled({2, 1}, 1.0)}};
  const std::string model = toy("control_chars", doc);
  const std::string x = npy("x_label", from_values<double>({1}, {0.5}));
  const Run info = run("info --model " + model);
  REQUIRE(info.status == 0);
  CHECK(info.out.find("f\\nc") != std::string::npos);
  CHECK(info.out.find("cat\\n\\x1b[31mred") != std::string::npos);
  CHECK(info.out.find('\x1b') == std::string::npos);
  const Run summary = run("explain --model " + model + " --input " + x + " --method gradient");
  REQUIRE(summary.status == 0);
  CHECK(summary.out.find("(cat\\n\\x1b[31mred)") != std::string::npos);
  const Run error = run("explain --model " + model + " --input " + x + " --node 'f\nc' --target 7");
  CHECK(error.status == 1);
  CHECK(lines(error.err) == 1);
  CHECK(error.err.find("f\\nc") != std::string::npos);
}

TEST_CASE("report: every image checked first, pictures never overwritten, softmax outputs not softmaxed again") {
  const std::string out = temp("report_bad");
  std::filesystem::remove_all(out);
  const std::string wrong = npy("wrong_size", zeros<double>({1, 27, 27}));
  const Run bad = run("report --model " + shipped + " --images " + sandal + " " + wrong + " --out " + out);
  CHECK(bad.status == 1);
  CHECK(lines(bad.err) == 1);
  CHECK(bad.err.find(wrong + ": has shape [1, 27, 27]") != std::string::npos);
  CHECK(bad.seconds < 5);  // the good image was not explained first
  CHECK_FALSE(std::filesystem::exists(out));

  // two images named alike in two folders, on the toy CNN that ends in softmax
  const std::string model = std::string(AXIOMATIC_SOURCE) + "/examples/toys/tiny_cnn.json";
  std::filesystem::create_directories(temp("a"));
  std::filesystem::create_directories(temp("b"));
  Tensor<double> one = zeros<double>({1, 4, 4}), two = zeros<double>({1, 4, 4});
  for (std::size_t i = 0; i < 16; ++i) {
    one.data()[i] = double(i) / 16;
    two.data()[i] = double(15 - i) / 16;
  }
  attr::write_npy(temp("a") + "/img.npy", one);
  attr::write_npy(temp("b") + "/img.npy", two);
  const std::string good = temp("report_good");
  std::filesystem::remove_all(good);
  const Run r = run("report --model " + model + " --images " + temp("a") + "/img.npy " + temp("b") + "/img.npy --out " + good);
  REQUIRE(r.status == 0);
  for (const char* file : {"img_overlay.png", "img_2_overlay.png", "img_heatmap.png", "img_2_heatmap.png"})
    CHECK(std::filesystem::exists(good + "/" + file));
  const nlohmann::json report = nlohmann::json::parse(slurp(good + "/report.json"));
  CHECK(report["note"].get<std::string>().find("no softmax is applied again") != std::string::npos);
  CHECK(r.out.find("no softmax is applied again") != std::string::npos);
  // p is the model's own output for the predicted class; IG explains the logit before it, exactly
  const nn::ModelSpec spec = nn::load_model(model);
  attr::Engine<float> probs(spec, attr::TargetSpec{});
  for (std::size_t i = 0; i < 2; ++i) {
    const nlohmann::json& j = report["images"][i];
    const std::vector<double> p = probs.scores(attr::read_npy<float>(j["image"].get<std::string>()));
    CHECK(j["probability"].get<double>() == doctest::Approx(p[j["predicted"].get<std::size_t>()]).epsilon(1e-6));
    CHECK(j["rule"] == "exact");
    CHECK(j["explained_node"] == "fc");
  }
  CHECK(report["images"][1]["name"] == "img_2");
}
