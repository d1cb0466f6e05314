// DeepLIFT's rescale pass on the tape: summation to delta (the attributions (x - x') * multipliers
// add up to F(x) - F(x')) on random networks of linear ops and elementwise non-linearities, to
// rounding; max-pooling by Captum's rule, its summation error measured; the sensitivity example
// gets full credit; ops without a rule are refused.
#include "attribution/methods.hpp"
#include "autodiff/ops.hpp"
#include "nn/graph.hpp"
#include "nn/model_file.hpp"
#include "nn/zoo.hpp"
#include "support.hpp"

#include <doctest/doctest.h>

#include <cmath>

using namespace ax;

namespace {

struct Summation {
  double sum = 0, delta = 0;  // sum of the attributions; F(x) - F(x')
  Tensor<double> attributions;
  double relative_error() const { return std::abs(sum - delta) / std::max(std::abs(delta), 1e-300); }
};

// DeepLIFT of output value k of `model` at x against x', on a batch [x, x'].
Summation deeplift(const nn::ModelSpec& model, const Tensor<double>& x, const Tensor<double>& reference, std::size_t k) {
  Tape<double> tape;
  nn::RecordOptions options;
  options.batch = 2;
  const nn::Network<double> net(model, tape, options);
  Shape batch_shape{2};
  for (std::size_t d : x.shape()) batch_shape.push_back(d);
  Tensor<double> batch(batch_shape);
  std::copy(x.begin(), x.end(), batch.data());
  std::copy(reference.begin(), reference.end(), batch.data() + x.size());
  tape.set_value(net.input(), batch);
  tape.forward();
  const Tensor<double>& out = tape.value(net.output());
  const std::size_t per_sample = out.size() / 2;
  Tensor<double> seed = zeros<double>(out.shape());
  seed.data()[k] = 1;  // the input row's value k only
  tape.zero_grad();
  tape.rescale_backward(net.output(), seed);
  Summation s;
  s.attributions = Tensor<double>(x.shape());
  for (std::size_t i = 0; i < x.size(); ++i) {
    s.attributions.data()[i] = (x.data()[i] - reference.data()[i]) * tape.grad(net.input()).data()[i];
    s.sum += s.attributions.data()[i];
  }
  s.delta = out.data()[k] - out.data()[per_sample + k];
  return s;
}

// A random MLP 8 -> 16 -> act1 -> 16 -> act2 -> 5.
nn::ModelSpec mlp(std::uint64_t seed, const std::string& act1, const std::string& act2) {
  nn::SpecBuilder b("x", {8}, seed);
  const std::string h1 = b.linear("fc1", "x", 8, 16);
  nn::ModelSpec m = b.finish(b.linear("fc3", b.linear("fc2", h1, 16, 16), 16, 5));
  // activations after fc1 and fc2
  auto insert_after = [&](const std::string& after, const std::string& name, const std::string& op) {
    for (nn::NodeSpec& n : m.graph.nodes)
      for (std::string& in : n.inputs)
        if (in == after) in = name;
    const auto at = std::find_if(m.graph.nodes.begin(), m.graph.nodes.end(),
                                 [&](const nn::NodeSpec& n) { return n.name == after; });
    m.graph.nodes.insert(at + 1, nn::make_node(name, op, {after}));
  };
  insert_after("fc1", "a1", act1);
  insert_after("fc2", "a2", act2);
  if (act2 == "leaky_relu") m.graph.nodes[3].attrs.negative_slope = 0.1;
  return m;
}

}  // namespace

TEST_CASE("DeepLIFT: summation to delta on random networks of linear ops and every elementwise activation") {
  std::mt19937_64 rng(21);
  for (const auto& acts : std::vector<std::pair<std::string, std::string>>{
           {"relu", "relu"}, {"relu", "leaky_relu"}, {"tanh", "sigmoid"}, {"leaky_relu", "tanh"},
           {"hardtanh", "gelu"}, {"hardsigmoid", "silu"}, {"hardswish", "relu"}}) {
    for (std::uint64_t seed : {1, 2, 3}) {
      CAPTURE(acts.first);
      CAPTURE(acts.second);
      CAPTURE(seed);
      const nn::ModelSpec m = mlp(seed, acts.first, acts.second);
      const Tensor<double> x = test::uniform({8}, -2, 2, rng), reference = test::uniform({8}, -2, 2, rng);
      for (std::size_t k = 0; k < 5; ++k) {
        const Summation s = deeplift(m, x, reference, k);
        CHECK(s.relative_error() < 1e-12);
      }
    }
  }
}

TEST_CASE("DeepLIFT: the sensitivity example 1 - relu(1 - x) gives x its full credit, where the gradient gives none") {
  const nn::ModelSpec m = nn::load_model(std::string(AXIOMATIC_SOURCE) + "/examples/toys/relu_sensitivity.json");
  const Summation s = deeplift(m, full<double>({1}, 2.0), zeros<double>({1}), 0);
  CHECK(s.delta == 1.0);
  CHECK(s.attributions(0) == doctest::Approx(1.0).epsilon(1e-15));
}

TEST_CASE("DeepLIFT: max-pooling sums to delta on LeNets, also where a window's maximum did not move") {
  // From a black image many windows keep their maximum's value (a black background) while the
  // reference's maximum lies elsewhere: Captum's rule alone loses those changes (2% of delta on
  // the shipped model's ankle boot); spreading them over the window keeps the sum.
  std::mt19937_64 rng(22);
  for (std::uint64_t seed : {3, 4}) {
    CAPTURE(seed);
    const nn::ModelSpec m = nn::lenet28(seed);
    const Tensor<double> x = test::uniform({1, 28, 28}, 0, 1, rng), black = zeros<double>({1, 28, 28});
    for (std::size_t k : {0, 7}) CHECK(deeplift(m, x, black, k).relative_error() < 1e-12);
  }
  const nn::ModelSpec shipped = nn::read_model(std::string(AXIOMATIC_SOURCE) + "/examples/models/fashion_mnist.safetensors");
  Tensor<double> boot = zeros<double>({1, 28, 28});
  for (std::size_t r = 8; r < 20; ++r)
    for (std::size_t q = 4; q < 24; ++q) boot(0, r, q) = double((r * 7 + q * 13) % 17) / 16.0;
  for (std::size_t k : {0, 9}) CHECK(deeplift(shipped, boot, zeros<double>({1, 28, 28}), k).relative_error() < 1e-12);
}

TEST_CASE("DeepLIFT: ops without a rescale rule are refused, and so is a batch without references") {
  Tape<double> tape;
  const Var<double> x = tape.input(from_values<double>({2, 3}, {1, 2, 3, 0, 0, 0}));
  const Var<double> y = softmax(x);
  CHECK_THROWS_WITH_AS(tape.rescale_backward(y, full<double>({2, 3}, 1.0)),
                       doctest::Contains("(softmax) has no rescale rule"), Error);
  Tape<double> odd;
  const Var<double> z = relu(odd.input(from_values<double>({3, 1}, {1, 2, 3})));
  CHECK_THROWS_WITH_AS(odd.rescale_backward(z, full<double>({3, 1}, 1.0)), doctest::Contains("a batch of 3"), Error);
}

TEST_CASE("DeepLIFT as a method: completeness reported, full credit on the sensitivity example, logits only") {
  const nn::ModelSpec toy = nn::load_model(std::string(AXIOMATIC_SOURCE) + "/examples/toys/relu_sensitivity.json");
  attr::Engine<double> f(toy, attr::TargetSpec{});
  const attr::Attribution<double> a = attr::deeplift(f, full<double>({1}, 2.0), zeros<double>({1}));
  CHECK(a.values(0) == doctest::Approx(1.0).epsilon(1e-15));
  CHECK(std::abs(a.delta) < 1e-15);
  CHECK(a.method == "deeplift");

  attr::Engine<float> lenet(nn::lenet28(5), attr::TargetSpec{});
  std::mt19937_64 rng(23);
  const Tensor<float> x = test::uniform<float>({1, 28, 28}, 0, 1, rng);
  const attr::Attribution<float> d = attr::deeplift(lenet, x, zeros<float>({1, 28, 28}));
  CHECK(d.relative_delta < 1e-4);  // float rounding

  attr::TargetSpec prob;
  prob.output = attr::Output::prob;
  attr::Engine<double> probabilities(nn::lenet28(5), prob);
  CHECK_THROWS_WITH_AS(attr::deeplift(probabilities, Tensor<double>(x), zeros<double>({1, 28, 28})),
                       doctest::Contains("(softmax) has no rescale rule"), Error);
}
