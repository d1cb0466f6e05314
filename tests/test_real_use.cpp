// Real use: a model file loaded by reading its bytes once, many inputs explained in one run with
// one engine, --threads, and float32 convolutions that keep the order of near-ties.
#include "attribution/explain.hpp"
#include "attribution/io.hpp"
#include "attribution/methods.hpp"
#include "autodiff/kernels/conv.hpp"
#include "autodiff/kernels/threads.hpp"
#include "nn/graph.hpp"
#include "nn/model_file.hpp"
#include "nn/zoo.hpp"
#include "support.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <sstream>
#include <sys/wait.h>
#include <unistd.h>

using namespace ax;

namespace {

std::string temp(const std::string& name) {
  // per process: ctest -j2 runs two of these tests at once
  return (std::filesystem::temp_directory_path() / ("axiomatic_real_" + std::to_string(::getpid()) + "_" + name)).string();
}

using test::slurp;

struct Run {
  int status;
  std::string out, err;
};

Run run(const std::string& args) {
  const std::string out = temp("stdout"), err = temp("stderr");
  const int raw = std::system((std::string(AXIOMATIC_CLI) + " " + args + " >" + out + " 2>" + err + " </dev/null").c_str());
  return {WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, slurp(out), slurp(err)};
}

std::vector<nlohmann::json> json_lines(const std::string& text) {
  std::vector<nlohmann::json> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

// A narrow LeNet-28 (4 and 8 channels) written as a model file: small enough to run fast, with
// convolutions, max-pools and linear layers whose kernels open parallel regions.
std::string lenet_file(const nn::WriteOptions& options = {}) {
  const std::string path = temp(options.floats_as_f64 ? "lenet64.safetensors" : "lenet.safetensors");
  nn::write_model(path, nn::lenet28(3, 4), options);
  return path;
}

// Three LeNet inputs [1, 28, 28] of different ranges, so that the network predicts different
// classes for them (the test checks it).
std::vector<Tensor<float>> lenet_inputs() {
  std::mt19937_64 rng(11);
  std::vector<Tensor<float>> xs;
  for (const double lo : {0.0, -1.0, 2.0}) xs.push_back(test::uniform<float>({1, 28, 28}, lo, lo + 1, rng));
  return xs;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Loading

TEST_CASE("loading: a model file's tensors are views of its bytes, read once into the tape") {
  const std::string f32 = lenet_file(), f64 = lenet_file(nn::WriteOptions{true});
  const nn::ModelSpec code = nn::lenet28(3, 4);
  const nn::ModelSpec m32 = nn::read_model(f32), m64 = nn::read_model(f64);
  for (const auto& [name, t] : code.tensors) {
    CAPTURE(name);
    const nn::TensorData& a = m32.tensors.at(name);
    const nn::TensorData& b = m64.tensors.at(name);
    CHECK(a.values.empty());  // nothing widened to double on reading
    CHECK(a.stored.data != nullptr);
    CHECK(a.stored.size == nn::element_count(a) * 4);
    CHECK(b.stored.size == nn::element_count(b) * 8);
    CHECK(nn::has_values(a));
    CHECK(nn::widened_values(a) == t.values);  // the zoo's values are floats: F32 holds them exactly
    CHECK(nn::widened_values(b) == t.values);
    std::vector<float> as_float(nn::element_count(a));
    nn::copy_values(b, as_float.data());  // F64 -> float: one conversion
    for (std::size_t i = 0; i < as_float.size(); ++i) CHECK(as_float[i] == static_cast<float>(t.values[i]));
  }
  // the tape holds the file's values, in the run's precision
  Tape<float> tape;
  const nn::Network<float> net(m32, tape);
  for (const auto& [name, var] : net.parameters()) {
    const Tensor<float>& v = tape.value(var);
    const std::vector<double>& expected = code.tensors.at(name).values;
    REQUIRE(v.size() == expected.size());
    for (std::size_t i = 0; i < v.size(); ++i) CHECK(double(v.data()[i]) == expected[i]);
  }
  // the same from bytes in memory (parse_model, the fuzz target's entry point)
  const nn::ModelSpec in_memory = nn::parse_model(slurp(f32), "lenet");
  CHECK(nn::widened_values(in_memory.tensors.at("conv1.weight")) == code.tensors.at("conv1.weight").values);
  std::remove(f32.c_str());
  std::remove(f64.c_str());
}

TEST_CASE("loading: parameters in the run's dtype are the file's mapped bytes, used in place") {
  const std::string f32 = lenet_file(), f64 = lenet_file(nn::WriteOptions{true});
  const nn::ModelSpec code = nn::lenet28(3, 4);
  const Tensor<float> x = lenet_inputs()[0];
  Tensor<float> batch(Shape{1, 1, 28, 28});
  std::copy(x.begin(), x.end(), batch.begin());
  // the output of a network whose parameters are copies (recorded from the spec made in code)
  Tape<float> copied_tape;
  const nn::Network<float> copied(code, copied_tape);
  copied_tape.set_value(copied.input(), batch);
  copied_tape.forward();
  const Tensor<float> expected = copied_tape.value(copied.output());

  Tape<float> tape;
  std::unique_ptr<nn::Network<float>> net;
  {
    const nn::ModelSpec m32 = nn::read_model(f32);
    net = std::make_unique<nn::Network<float>>(m32, tape);
    for (const auto& [name, var] : net->parameters()) {
      CAPTURE(name);
      const nn::TensorData& stored = m32.tensors.at(name);
      const bool aligned = reinterpret_cast<std::uintptr_t>(stored.stored.data) % alignof(float) == 0;
      CHECK(aligned);
      // F32 in a float run: the tape's storage is the file's bytes, not a copy
      CHECK(static_cast<const void*>(tape.value(var).data()) == static_cast<const void*>(stored.stored.data));
    }
    // a double run converts (F32 -> double), and a trained network copies: neither uses the mapping
    Tape<double> tape64;
    const nn::Network<double> net64(m32, tape64);
    Tape<float> trained_tape;
    nn::RecordOptions trained;
    trained.parameters_require_grad = true;
    const nn::Network<float> net_trained(m32, trained_tape, trained);
    for (std::size_t k = 0; k < net64.parameters().size(); ++k) {
      const void* file = m32.tensors.at(net64.parameters()[k].first).stored.data;
      CHECK(static_cast<const void*>(tape64.value(net64.parameters()[k].second).data()) != file);
      CHECK(static_cast<const void*>(trained_tape.value(net_trained.parameters()[k].second).data()) != file);
    }
    // float64 parameters in a float64 run are used in place too
    const nn::ModelSpec m64 = nn::read_model(f64);
    Tape<double> tape_f64;
    const nn::Network<double> net_f64(m64, tape_f64);
    for (const auto& [name, var] : net_f64.parameters())
      CHECK(static_cast<const void*>(tape_f64.value(var).data()) == static_cast<const void*>(m64.tensors.at(name).stored.data));
  }
  // the spec is gone, the mapping is not: the tape keeps it, and computes what the copies compute
  tape.set_value(net->input(), batch);
  tape.forward();
  CHECK(test::same_bits(tape.value(net->output()), expected));
  // writing another model over the file replaces it (a new file renamed over the old): the
  // mapped bytes in use stay the old file's, read without a fault
  nn::write_model(f32, nn::lenet28(4, 2));
  CHECK(nn::read_model(f32).tensors.at("conv1.weight").shape[0] == 2);
  tape.forward();
  CHECK(test::same_bits(tape.value(net->output()), expected));
  nn::write_model(f32, code);
  // a write to a parameter used in place stays in this process: the file is unchanged
  const auto& [name, weight] = net->parameters().front();
  tape.leaf_value(weight).data()[0] += 1.0f;
  CHECK(nn::widened_values(nn::read_model(f32).tensors.at(name)) == code.tensors.at(name).values);
  net.reset();
  std::remove(f32.c_str());
  std::remove(f64.c_str());
}

TEST_CASE("loading: values set in code win over the file's bytes, own_values widens them to edit") {
  const std::string path = lenet_file();
  nn::ModelSpec m = nn::read_model(path);
  nn::TensorData& bias = m.tensors.at("fc2.bias");
  const std::vector<double> before = nn::widened_values(bias);
  std::vector<double>& edit = nn::own_values(bias);
  CHECK(bias.stored.data == nullptr);
  REQUIRE(edit == before);
  edit[0] = 42;
  CHECK(nn::widened_values(bias)[0] == 42);
  Tape<double> tape;
  const nn::Network<double> net(m, tape);
  CHECK(tape.value(net.node("fc2")).shape() == Shape{1, 10});
  bool seen = false;
  for (const auto& [name, var] : net.parameters())
    if (name == "fc2.bias") seen = tape.value(var)(0) == 42.0;
  CHECK(seen);
  // describe reads shapes only, and says the same of the file as of the spec in code
  CHECK(nn::describe(m, "m") == nn::describe(nn::read_model(path), "m"));
  std::remove(path.c_str());
}

// ---------------------------------------------------------------------------------------------
// Many inputs

TEST_CASE("explain: many inputs in one run equal one run per input, bit for bit") {
  const std::string model = lenet_file();
  const std::vector<Tensor<float>> xs = lenet_inputs();
  std::vector<std::string> files;
  Tensor<float> batch(Shape{3, 1, 28, 28});
  for (std::size_t i = 0; i < xs.size(); ++i) {
    files.push_back(temp("x" + std::to_string(i) + ".npy"));
    attr::write_npy(files.back(), xs[i]);
    std::copy(xs[i].begin(), xs[i].end(), batch.data() + i * xs[i].size());
  }
  const std::string batch_file = temp("batch.npy");
  attr::write_npy(batch_file, batch);
  const std::string folder = temp("folder");
  std::filesystem::create_directory(folder);
  for (std::size_t i = 0; i < files.size(); ++i)
    std::filesystem::copy_file(files[i], folder + "/" + std::to_string(i) + ".npy");

  for (const char* method : {"ig --steps 16", "ig --rule exact", "smoothgrad --samples 4 --seed 5", "gradient"}) {
    CAPTURE(method);
    const std::string common = "explain --model " + model + " --method " + method + " --json";
    std::vector<Tensor<float>> single;
    std::vector<nlohmann::json> reports;
    for (const std::string& f : files) {
      const std::string out = temp("single.npy");
      const Run r = run(common + " --input " + f + " --out " + out);
      REQUIRE(r.status == 0);
      reports.push_back(nlohmann::json::parse(r.out));
      single.push_back(attr::read_npy<float>(out));
    }
    // each input its own predicted class: an engine reused without retargeting would keep the first
    CHECK(reports[0]["target"] != reports[1]["target"]);
    for (const std::string& inputs : {files[0] + " " + files[1] + " " + files[2], batch_file, folder}) {
      CAPTURE(inputs);
      const std::string out = temp("many.npy");
      const Run r = run(common + " --input " + inputs + " --out " + out);
      REQUIRE(r.status == 0);
      const std::vector<nlohmann::json> lines = json_lines(r.out);
      REQUIRE(lines.size() == 3);
      const Tensor<float> stacked = attr::read_npy<float>(out);
      REQUIRE(stacked.shape() == Shape{3, 1, 28, 28});
      for (std::size_t i = 0; i < 3; ++i) {
        CHECK(std::memcmp(stacked.data() + i * single[i].size(), single[i].data(), single[i].size() * sizeof(float)) == 0);
        for (const char* key : {"target", "f_input", "f_baseline", "sum", "delta", "evaluations"})
          CHECK(lines[i][key] == reports[i][key]);
        CHECK(lines[i].contains("input"));
      }
      CHECK(lines[1]["input"].get<std::string>().find(inputs == batch_file ? "[1]" : "1") != std::string::npos);
    }
  }
  // the library: one request, three inputs, one report each
  attr::ExplainRequest request;
  request.model = model;
  request.inputs = {batch_file};
  request.steps = 8;
  const std::vector<nlohmann::json> reports = attr::explain_inputs(request);
  REQUIRE(reports.size() == 3);
  CHECK(reports[2]["input"] == batch_file + "[2]");
  for (const std::string& f : files) std::remove(f.c_str());
  std::remove(batch_file.c_str());
  std::filesystem::remove_all(folder);
  std::remove(model.c_str());
}

TEST_CASE("explain: every input is read and checked before any work, a failure writes nothing") {
  const std::string model = lenet_file();
  const std::string good = temp("good.npy"), bad = temp("bad.npy"), nan = temp("nan.npy"), out = temp("never.npy");
  attr::write_npy(good, lenet_inputs()[0]);
  attr::write_npy(bad, Tensor<float>(zeros<float>({2, 28, 28})));
  Tensor<float> with_nan = zeros<float>({2, 1, 28, 28});
  with_nan(1, 0, 3, 4) = std::nanf("");
  attr::write_npy(nan, with_nan);
  std::remove(out.c_str());
  const Run shape = run("explain --model " + model + " --input " + good + " " + bad + " --out " + out);
  CHECK(shape.status == 1);
  CHECK(shape.err == "axiomatic: " + bad + ": has shape [2, 28, 28], the model expects [1, 28, 28] (one input) or [N, 1, 28, 28] (a batch of N)\n");
  const Run value = run("explain --model " + model + " --input " + good + " " + nan + " --out " + out);
  CHECK(value.status == 1);
  CHECK(value.err == "axiomatic: " + nan + "[1]: NaN at index 88\n");
  CHECK_FALSE(std::filesystem::exists(out));
  const std::string empty = temp("empty_folder");
  std::filesystem::create_directory(empty);
  const Run none = run("explain --model " + model + " --input " + empty);
  CHECK(none.status == 1);
  CHECK(none.err == "axiomatic: " + empty + ": the folder holds no .png or .npy file\n");
  const Run csv = run("explain --model " + model + " --input " + good + " " + good + " --path-csv " + temp("p.csv"));
  CHECK(csv.status == 2);
  for (const std::string& f : {good, bad, nan, model}) std::remove(f.c_str());
  std::filesystem::remove_all(empty);
}

// ---------------------------------------------------------------------------------------------
// Threads

TEST_CASE("--threads 1 and 2 give the same bits through the command") {
  const std::string model = lenet_file(), input = temp("t.npy");
  Tensor<float> batch(Shape{2, 1, 28, 28});
  const std::vector<Tensor<float>> xs = lenet_inputs();
  std::copy(xs[0].begin(), xs[0].end(), batch.data());
  std::copy(xs[1].begin(), xs[1].end(), batch.data() + xs[0].size());
  attr::write_npy(input, batch);
  for (const char* method : {"ig --steps 50", "ig --rule exact", "ig --steps 20 --precision f64"}) {
    CAPTURE(method);
    std::string bytes[2];
    for (int threads : {1, 2}) {
      const std::string out = temp("threads.npy");
      const Run r = run("explain --model " + model + " --input " + input + " --method " + method + " --threads " +
                        std::to_string(threads) + " --out " + out);
      REQUIRE(r.status == 0);
      bytes[threads - 1] = slurp(out);
    }
    CHECK(bytes[0].size() > 2 * 28 * 28 * 4);
    CHECK(bytes[0] == bytes[1]);
  }
  // the library's option: an engine sets its constructing thread's count, and 0 leaves it
  {
    // --winograd on|off: a LeNet whose 32->64 convolution Winograd takes at 50 points, forward
    // and backward (by default, as with --winograd and --winograd on); its rounding differs from
    // the direct path's (--winograd off), so the bits differ, by float rounding only
    const std::string wide = temp("lenet32.safetensors"), direct_out = temp("direct.npy"), winograd_out = temp("winograd.npy");
    nn::write_model(wide, nn::lenet28(3, 32));
    const std::string command = "explain --model " + wide + " --input " + input + " --method ig --steps 50 --out ";
    REQUIRE(run(command + direct_out + " --winograd off").status == 0);
    REQUIRE(run(command + winograd_out).status == 0);
    for (const char* on : {" --winograd", " --winograd on"}) {
      const std::string again = temp("again.npy");
      REQUIRE(run(command + again + on).status == 0);
      CHECK(slurp(again) == slurp(winograd_out));
      std::remove(again.c_str());
    }
    CHECK(run(command + direct_out + " --winograd maybe").status == 2);
    const Tensor<float> direct = attr::read_npy<float>(direct_out), fast = attr::read_npy<float>(winograd_out);
    REQUIRE(direct.size() == fast.size());
    double diff = 0, norm = 0;
    for (std::size_t i = 0; i < direct.size(); ++i) {
      diff += std::pow(double(fast.data()[i]) - direct.data()[i], 2);
      norm += std::pow(double(direct.data()[i]), 2);
    }
    CHECK(diff > 0);
    CHECK(std::sqrt(diff / norm) < 1e-4);
    for (const std::string& f : {wide, direct_out, winograd_out}) std::remove(f.c_str());
  }
  const std::size_t before = kernels::threads();
  const nn::ModelSpec spec = nn::read_model(model);
  for (std::size_t n : {1, 2}) {
    attr::EngineOptions options;
    options.threads = n;
    const attr::Engine<float> engine(spec, {}, options);
    CHECK(kernels::threads() == n);
    const attr::Engine<float> unchanged(spec, {}, {});
    CHECK(kernels::threads() == n);
  }
  kernels::set_threads(before);
  for (const char* bad : {"0", "1025", "-1", "2x"}) {
    const Run r = run("explain --model " + model + " --input " + input + " --threads " + bad);
    CHECK(r.status == 2);
  }
  std::remove(input.c_str());
  std::remove(model.c_str());
}

// ---------------------------------------------------------------------------------------------
// float32 near-ties

namespace {

// conv 1x1 over two channels, bias 1, then a 2x2 max-pool: pixel p's value is
// 1 + x[0, p] + x[1, p]. Pixels 0 and 1 hold (0.4u, 1.0u) and (0.6u, 0.6u), u = 2^-23 (the
// spacing of floats above 1): exactly, pixel 0 is larger (1 + 1.4u against 1 + 1.2u). With the
// bias added first, float32 rounds 1 + 0.4u down to 1 and 1 + 0.6u up to 1 + u, and pixel 1
// comes out larger (1 + u against 1 + 2u): the max-pool passes the gradient to the wrong
// pixel. The products summed first and rounded once into the bias give 1 + u for both: a tie,
// which goes to the first maximum, float64's choice.
nn::ModelSpec near_tie_model() {
  nn::SpecBuilder b("x", {2, 2, 2}, 1);
  const std::string conv = b.conv2d("conv", "x", 2, 1, 1);
  nn::ModelSpec m = b.finish(b.flatten("flat", b.maxpool2d("pool", conv, 2, 2)));
  m.tensors["conv.weight"].values = {1.0, 1.0};
  m.tensors["conv.bias"].values = {1.0};
  return m;
}

template <class T>
Tensor<T> near_tie_input() {
  const double u = std::ldexp(1.0, -23);
  // [channel][pixel]: pixels 2 and 3 lie well below
  return from_values<T>({2, 2, 2}, {T(0.4 * u), T(0.6 * u), T(-20 * u), T(-20 * u),  //
                                    T(1.0 * u), T(0.6 * u), T(0), T(0)});
}

}  // namespace

TEST_CASE("float32 convolution adds the bias after the products: a near-tie goes float64's way") {
  const nn::ModelSpec m = near_tie_model();
  attr::Engine<double> f64(m, {});
  attr::Engine<float> f32(m, {});
  const Tensor<double> x64 = near_tie_input<double>();
  const Tensor<float> x32 = near_tie_input<float>();
  const attr::Attribution<double> g64 = attr::gradient(f64, x64, zeros<double>(x64.shape()), false);
  const attr::Attribution<float> g32 = attr::gradient(f32, x32, zeros<float>(x32.shape()), false);
  // float64 sends the gradient to pixel 0 of both channels; float32 must too
  CHECK(g64.values(0, 0, 0) == 1.0);
  CHECK(g64.values(0, 0, 1) == 0.0);
  CHECK(g32.values(0, 0, 0) == 1.0f);
  CHECK(g32.values(1, 0, 0) == 1.0f);
  CHECK(g32.values(0, 0, 1) == 0.0f);

  // the kernels themselves: the direct loop (one output channel) and the GEMM (sixteen), and
  // the scalar reference, all give pixel 0 at least pixel 1
  for (std::size_t outputs : {1, 16}) {
    CAPTURE(outputs);
    kernels::Conv2dShape s;
    s.in_channels = 2, s.in_h = 2, s.in_w = 2, s.out_channels = outputs;
    std::vector<float> w(outputs * 2, 1.0f), bias(outputs, 1.0f), y(outputs * 4), ref(outputs * 4);
    std::vector<float> work(kernels::conv2d_workspace(s) + 64);
    kernels::conv2d_forward(s, x32.data(), w.data(), bias.data(), y.data(), false, work.data());
    kernels::conv2d_forward_reference(s, x32.data(), w.data(), bias.data(), ref.data());
    for (std::size_t o = 0; o < outputs; ++o) {
      CHECK(y[o * 4] >= y[o * 4 + 1]);
      CHECK(ref[o * 4] >= ref[o * 4 + 1]);
    }
  }
}

TEST_CASE("float32 batchnorm2d subtracts the running mean before scaling: no cancellation when the mean dwarfs the spread") {
  // Statistics measured on data: inputs sit near their channel's running mean (1000 and -300
  // here, spread 1). Folded into x * s + (b - mean * s), as PyTorch's CPU kernel computes it,
  // float32 rounds both terms at the mean's scale and keeps about 4 significant digits of the
  // output; (x - mean) is exact there, so (x - mean) * s + b is within a few ulps of float64.
  std::mt19937_64 rng(5);
  Tensor<float> x(Shape{1, 2, 8, 8});
  const float mean[2] = {1000.0f, -300.0f}, var[2] = {0.25f, 4.0f}, weight[2] = {1.5f, 0.5f}, bias[2] = {0.1f, -0.2f};
  for (std::size_t c = 0; c < 2; ++c) {
    const Tensor<float> plane = test::uniform<float>({64}, mean[c] - 1.0, mean[c] + 1.0, rng);
    std::copy(plane.begin(), plane.end(), x.data() + c * 64);
  }
  Tape<float> tape;
  const auto param = [&](const float* v) { return tape.constant(from_values<float>({2}, {v[0], v[1]})); };
  Attrs attrs;
  attrs.eps = 1e-5;
  const Var<float> y = ops::record<ops::BatchNorm2d>({tape.input(x, false), param(mean), param(var), param(weight), param(bias)}, attrs);
  double largest = 0, error = 0;
  for (std::size_t c = 0; c < 2; ++c)
    for (std::size_t i = 0; i < 64; ++i) {
      const double d = double(x.data()[c * 64 + i]) - double(mean[c]);
      const double expected = d / std::sqrt(double(var[c]) + double(float(1e-5))) * double(weight[c]) + double(bias[c]);
      largest = std::max(largest, std::abs(expected));
      error = std::max(error, std::abs(double(tape.value(y).data()[c * 64 + i]) - expected));
    }
  CHECK(error <= 8 * double(std::numeric_limits<float>::epsilon()) * largest);
}
