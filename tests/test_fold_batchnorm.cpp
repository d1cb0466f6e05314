// A batch norm that alone reads a convolution, folded into it when a network is recorded for
// inference (nn::RecordOptions::fold_batchnorm; EngineOptions::fold_batchnorm): the same values and
// gradients to rounding, one node instead of two, and folding only where it is exact to do so
// (not a convolution read elsewhere, not the node explained, not for training, not a scale
// that is not finite).
#include "attribution/methods.hpp"
#include "nn/graph.hpp"
#include "nn/zoo.hpp"
#include "support.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>

using namespace ax;

namespace {

// normalize, conv1 (bias) -> bn1, relu, conv2 (no bias) -> bn2 without weight and bias, plus
// conv3 read by bn3 and by the add (so not folded), relu, pool, linear. Batch norm statistics
// and affine parameters away from the identity, and one channel of bn1 with gamma 0.
nn::ModelSpec network(std::uint64_t seed) {
  nn::SpecBuilder b("input", {2, 7, 7}, seed);
  const std::string normalized = b.normalize("norm", "input", {0.4, 0.6}, {0.5, 0.8});
  std::string y = b.relu("relu1", b.batchnorm2d("bn1", b.conv2d("conv1", normalized, 2, 4, 3, 1, 1), 4));
  y = b.batchnorm2d("bn2", b.conv2d("conv2", y, 4, 4, 3, 1, 1, false), 4);
  const std::string conv3 = b.conv2d("conv3", normalized, 2, 4, 1);
  y = b.relu("relu2", b.add("add", {y, b.batchnorm2d("bn3", conv3, 4), conv3}));
  y = b.flatten("flat", b.adaptive_avgpool2d("pool", y, 2));
  nn::ModelSpec spec = b.finish(b.linear("fc", y, 4 * 2 * 2, 5));
  std::mt19937_64 rng(seed + 1);
  std::uniform_real_distribution<double> u(0.5, 1.5);
  for (auto& [name, t] : spec.tensors)
    if (name.rfind("bn", 0) == 0)
      for (double& v : t.values) v = name.find("running_var") != std::string::npos ? u(rng) : u(rng) - 1.0;
  spec.tensors["bn1.weight"].values[2] = 0.0;
  spec.tensors.erase("bn2.weight");
  spec.tensors.erase("bn2.bias");
  return spec;
}

template <class T>
Tensor<T> random_input(const Shape& shape, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  return test::uniform<T>(shape, 0, 1, rng);
}

// the largest difference over the largest value of b
double relative(const Tensor<double>& a, const Tensor<double>& b) {
  return test::max_abs_diff(a, b) / test::max_abs_diff(b, zeros<double>(b.shape()));
}

std::size_t batchnorm_nodes(const Tape<double>& tape) {
  std::size_t count = 0;
  for (std::size_t id = 0; id < tape.size(); ++id) {
    const Node<double>& n = tape.node(int(id));
    count += n.kind == NodeKind::op && std::string(n.op->name) == "batchnorm2d";
  }
  return count;
}

struct Recorded {
  Tape<double> tape;
  nn::Network<double> net;
  Recorded(const nn::ModelSpec& spec, bool fold, const std::string& keep = "")
      : net(spec, tape, options(fold, keep)) {}
  static nn::RecordOptions options(bool fold, const std::string& keep) {
    nn::RecordOptions o;
    o.batch = 3;
    o.fold_batchnorm = fold;
    if (!keep.empty()) o.keep.push_back(keep);
    return o;
  }
  // the output for x, and the input gradient of its sum
  std::pair<Tensor<double>, Tensor<double>> run(const Tensor<double>& x) {
    tape.set_value(net.input(), x);
    tape.forward();
    tape.zero_grad();
    tape.backward(net.output());
    return {tape.value(net.output()), tape.grad(net.input())};
  }
};

}  // namespace

TEST_CASE("a folded batch norm gives the network's values and input gradient to float64 rounding") {
  const nn::ModelSpec spec = network(5);
  Recorded plain(spec, false), folded(spec, true);
  CHECK(batchnorm_nodes(plain.tape) == 3);
  CHECK(batchnorm_nodes(folded.tape) == 1);  // bn3's convolution is read by the add too
  CHECK(folded.net.folded_into("conv1") == "bn1");
  CHECK(folded.net.folded_into("conv2") == "bn2");
  CHECK(folded.net.folded_into("conv3").empty());
  CHECK(plain.net.folded_into("conv1").empty());
  const Tensor<double> x = random_input<double>({3, 2, 7, 7}, 11);
  const auto [y_plain, g_plain] = plain.run(x);
  const auto [y_folded, g_folded] = folded.run(x);
  CHECK(relative(y_folded, y_plain) < 1e-14);
  CHECK(relative(g_folded, g_plain) < 1e-14);
  for (const char* name : {"bn1", "bn2", "relu2"})
    CHECK(relative(folded.tape.value(folded.net.node(name)), plain.tape.value(plain.net.node(name))) < 1e-14);
  // the folded convolution's own output is not formed, and asking for it says so
  CHECK_THROWS_WITH_AS(folded.net.node("conv1"), doctest::Contains("'conv1' is folded into the batch norm 'bn1'"),
                       Error);
  // its weights are constants: the parameters list only what is recorded as a parameter
  for (const auto& [name, var] : folded.net.parameters()) {
    CAPTURE(name);
    CHECK(name.rfind("conv1.", 0) != 0);
    CHECK(name.rfind("bn1.", 0) != 0);
  }
}

TEST_CASE("a batch norm is not folded where the convolution must keep its own output or scale") {
  nn::ModelSpec spec = network(6);
  {
    Recorded kept(spec, true, "conv1");  // the node explained
    CHECK(kept.net.folded_into("conv1").empty());
    CHECK(kept.net.folded_into("conv2") == "bn2");
    CHECK_NOTHROW(kept.net.node("conv1"));
  }
  {
    Tape<double> tape;  // training: the parameters themselves must be on the tape
    nn::RecordOptions o = Recorded::options(true, "");
    o.parameters_require_grad = true;
    const nn::Network<double> net(spec, tape, o);
    CHECK(net.folded_into("conv1").empty());
    CHECK(batchnorm_nodes(tape) == 3);
  }
  {
    spec.tensors["bn2.running_var"].values[1] = -spec.graph.nodes[0].attrs.eps - 1.0;  // sqrt of a negative
    Recorded odd(spec, true);
    CHECK(odd.net.folded_into("conv1") == "bn1");
    CHECK(odd.net.folded_into("conv2").empty());
  }
}

TEST_CASE("IG with batch norms folded equals IG without, to rounding in float64 and float32") {
  const nn::ModelSpec spec = network(7);
  auto ig = [&](bool fold, auto zero) {
    using T = decltype(zero);
    attr::EngineOptions o;
    o.fold_batchnorm = fold;
    attr::TargetSpec target;
    target.class_index = 2;
    attr::Engine<T> f(spec, target, o);
    const Tensor<T> x = random_input<T>({2, 7, 7}, 21);
    const Tensor<T> baseline = zeros<T>({2, 7, 7});
    attr::IgOptions ig_options;
    ig_options.steps = 16;
    const Tensor<T> values = attr::integrated_gradients(f, x, baseline, ig_options).values;
    Tensor<double> wide(values.shape());
    std::copy(values.begin(), values.end(), wide.data());
    return wide;
  };
  CHECK(relative(ig(true, 0.0), ig(false, 0.0)) < 1e-13);
  CHECK(relative(ig(true, 0.0f), ig(false, 0.0f)) < 1e-5);
}

TEST_CASE("a layer attributed keeps its convolution unfolded, and a folded one is refused by name") {
  const nn::ModelSpec spec = network(8);
  const Tensor<double> x = random_input<double>({2, 7, 7}, 31);
  const Tensor<double> baseline = zeros<double>({2, 7, 7});
  attr::TargetSpec target;
  target.class_index = 1;
  attr::EngineOptions fold;
  fold.fold_batchnorm = true;
  {
    attr::Engine<double> folded(spec, target, fold);
    CHECK_THROWS_WITH_AS(attr::layer_integrated_gradients(folded, x, baseline, "conv2"),
                         doctest::Contains("'conv2' is folded into the batch norm 'bn2'"), Error);
  }
  attr::EngineOptions keep = fold, plain;
  keep.keep_nodes = {"conv2"};
  attr::Engine<double> kept(spec, target, keep), unfolded(spec, target, plain);
  const Tensor<double> a = attr::layer_integrated_gradients(kept, x, baseline, "conv2").values;
  const Tensor<double> b = attr::layer_integrated_gradients(unfolded, x, baseline, "conv2").values;
  CHECK(relative(a, b) < 1e-13);
}
