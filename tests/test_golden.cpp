// The golden files of tests/golden/ (written by tools/make_golden.py from PyTorch, float64): small
// PyTorch models exported with F64 parameters, an input, and PyTorch's logits, input gradient and
// Integrated Gradients (riemann_middle and gausslegendre, 16 steps, zero baseline). The library
// and the command must agree with them without PyTorch installed.
//
// Tolerances (the largest absolute difference over the largest absolute expected value):
//   float64: 1e-13 for every quantity (measured: 1.5e-16 to 6.5e-16; the two sides only round
//            differently: summation orders, and Gauss-Legendre nodes from different algorithms)
//   float32: 1e-5 for the logits and the gradient (measured: 1.6e-8 to 3.2e-7; the parameters
//            and every sum rounded to float32)
#include "attribution/io.hpp"
#include "attribution/methods.hpp"
#include "nn/model_file.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <sys/wait.h>

using namespace ax;

namespace {

const std::string golden = std::string(AXIOMATIC_SOURCE) + "/tests/golden/";
constexpr double f64_tolerance = 1e-13;
constexpr double f32_tolerance = 1e-5;

nlohmann::json manifest() {
  std::ifstream in(golden + "manifest.json");
  REQUIRE(in);
  return nlohmann::json::parse(in);
}

std::string file(const std::string& model, const std::string& what) { return golden + model + "." + what + ".npy"; }

// max |found - expected| / max |expected|
template <class T>
double relative_error(const Tensor<T>& found, const Tensor<double>& expected) {
  REQUIRE(found.shape() == expected.shape());
  double error = 0, scale = 0;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    error = std::max(error, std::abs(double(found.data()[i]) - expected.data()[i]));
    scale = std::max(scale, std::abs(expected.data()[i]));
  }
  REQUIRE(scale > 0);
  return error / scale;
}

Tensor<double> from_scores(const std::vector<double>& scores) {
  Tensor<double> t(Shape{scores.size()});
  std::copy(scores.begin(), scores.end(), t.data());
  return t;
}

template <class T>
Tensor<T> cast(const Tensor<double>& x) {
  Tensor<T> t(x.shape());
  for (std::size_t i = 0; i < x.size(); ++i) t.data()[i] = static_cast<T>(x.data()[i]);
  return t;
}

}  // namespace

TEST_CASE("golden files: logits, input gradient and IG agree with PyTorch's in float64") {
  const nlohmann::json models = manifest().at("models");
  REQUIRE(models.size() == 3);
  for (const nlohmann::json& m : models) {
    const std::string name = m.at("name");
    CAPTURE(name);
    const nn::ModelSpec spec = nn::load_model(golden + name + ".safetensors");
    CHECK(spec.graph.labels == m.at("labels").get<std::vector<std::string>>());
    attr::TargetSpec target;
    target.class_index = m.at("target");
    attr::Engine<double> f(spec, target);
    const Tensor<double> x = attr::read_npy<double>(file(name, "input"));
    const Tensor<double> zero = zeros<double>(x.shape());

    const double logits = relative_error(from_scores(f.scores(x)), attr::read_npy<double>(file(name, "logits")));
    const attr::Attribution<double> gradient = attr::gradient(f, x, zero);
    const double grad = relative_error(gradient.values, attr::read_npy<double>(file(name, "gradient")));
    CHECK(logits <= f64_tolerance);
    CHECK(grad <= f64_tolerance);
    for (const std::string rule : {"riemann_middle", "gausslegendre"}) {
      CAPTURE(rule);
      attr::IgOptions options;
      options.rule = attr::parse_rule(rule);
      options.steps = m.at("steps");
      const attr::Attribution<double> ig = attr::integrated_gradients(f, x, zero, options);
      const double error = relative_error(ig.values, attr::read_npy<double>(file(name, "ig_" + rule)));
      MESSAGE(name << " " << rule << ": relative error " << error << " (logits " << logits << ", gradient " << grad << ")");
      CHECK(error <= f64_tolerance);
    }
  }
}

TEST_CASE("golden files: float32 logits and input gradient within 1e-5 of PyTorch's float64") {
  const nlohmann::json models = manifest().at("models");
  for (const nlohmann::json& m : models) {
    const std::string name = m.at("name");
    CAPTURE(name);
    attr::TargetSpec target;
    target.class_index = m.at("target");
    attr::Engine<float> f(nn::load_model(golden + name + ".safetensors"), target);
    const Tensor<float> x = cast<float>(attr::read_npy<double>(file(name, "input")));
    CHECK(relative_error(from_scores(f.scores(x)), attr::read_npy<double>(file(name, "logits"))) <= f32_tolerance);
    const attr::Attribution<float> gradient = attr::gradient(f, x, zeros<float>(x.shape()));
    CHECK(relative_error(gradient.values, attr::read_npy<double>(file(name, "gradient"))) <= f32_tolerance);
  }
}

TEST_CASE("golden files: the command's IG (--precision f64) agrees with PyTorch's") {
  const std::string out =
      (std::filesystem::temp_directory_path() / ("axiomatic_golden_" + std::to_string(::getpid()) + ".npy")).string();
  const nlohmann::json models = manifest().at("models");
  for (const nlohmann::json& m : models) {
    const std::string name = m.at("name");
    CAPTURE(name);
    const std::string command = std::string(AXIOMATIC_CLI) + " explain --model " + golden + name + ".safetensors --input " +
                                file(name, "input") + " --method ig --rule gausslegendre --steps 16 --baseline zero --target " +
                                std::to_string(m.at("target").get<int>()) + " --precision f64 --out " + out + " >/dev/null";
    REQUIRE(std::system(command.c_str()) == 0);
    CHECK(relative_error(attr::read_npy<double>(out), attr::read_npy<double>(file(name, "ig_gausslegendre"))) <= f64_tolerance);
  }
  std::filesystem::remove(out);
}
