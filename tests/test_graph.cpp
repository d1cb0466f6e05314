// Networks: a graph recorded onto a tape, its parameters checked against its inputs' shapes.
#include "nn/graph.hpp"
#include "support.hpp"

#include <doctest/doctest.h>

using namespace ax;
using namespace ax::nn;

namespace {

TensorData tensor(std::vector<std::size_t> shape, std::mt19937_64& rng) {
  TensorData t{"F32", shape, {}};
  std::size_t n = 1;
  for (std::size_t d : shape) n *= d;
  std::uniform_real_distribution<double> u(-1, 1);
  for (std::size_t i = 0; i < n; ++i) t.values.push_back(u(rng));
  return t;
}

NodeSpec node(std::string name, std::string op, std::vector<std::string> inputs) {
  return make_node(name, op, std::move(inputs));
}

// x [4] -> fc1 [3] -> relu -> fc2 [2], and a skip: concat(fc2, fc1) -> log_softmax
ModelSpec mlp() {
  std::mt19937_64 rng(4);
  ModelSpec m;
  m.graph.input = {"x", {4}, std::pair{0.0, 1.0}};
  m.graph.nodes = {node("fc1", "linear", {"x"}), node("act", "relu", {"fc1"}), node("fc2", "linear", {"act"}),
                   node("both", "concat", {"fc2", "fc1"}), node("out", "log_softmax", {"both"})};
  m.graph.output = "out";
  m.graph.labels = {"a", "b", "c", "d", "e"};
  m.tensors["fc1.weight"] = tensor({3, 4}, rng);
  m.tensors["fc1.bias"] = tensor({3}, rng);
  m.tensors["fc2.weight"] = tensor({2, 3}, rng);
  m.tensors["unused.thing"] = TensorData{"I64", {2}, {}};
  return m;
}

RecordOptions source(const std::string& name) {
  RecordOptions o;
  o.source = name;
  return o;
}

}  // namespace

TEST_CASE("a graph recorded onto a tape computes what its ops say") {
  const ModelSpec m = mlp();
  Tape<double> tape;
  const Network<double> net(m, tape, [] { RecordOptions o; o.batch = 2; return o; }());
  CHECK(tape.value(net.input()).shape() == Shape{2, 4});
  CHECK(tape.value(net.output()).shape() == Shape{2, 5});
  CHECK(net.parameters().size() == 3);
  CHECK(net.parameters()[0].first == "fc1.weight");
  CHECK_FALSE(tape.requires_grad(net.parameters()[0].second));

  std::mt19937_64 rng(1);
  const Tensor<double> x = test::uniform({2, 4}, 0, 1, rng);
  tape.set_value(net.input(), x);
  tape.forward();
  // by hand for sample 1
  const auto& w1 = m.tensors.at("fc1.weight").values;
  const auto& b1 = m.tensors.at("fc1.bias").values;
  const auto& w2 = m.tensors.at("fc2.weight").values;
  double h[3], z[5];
  for (int o = 0; o < 3; ++o) {
    h[o] = b1[o];
    for (int i = 0; i < 4; ++i) h[o] += w1[o * 4 + i] * x(1, i);
    z[2 + o] = h[o];
  }
  for (int o = 0; o < 2; ++o) {
    z[o] = 0;
    for (int i = 0; i < 3; ++i) z[o] += w2[o * 3 + i] * std::max(h[i], 0.0);
  }
  double total = 0;
  for (double v : z) total += std::exp(v);
  for (int k = 0; k < 5; ++k) CHECK(tape.value(net.output())(1, k) == doctest::Approx(z[k] - std::log(total)).epsilon(1e-14));
  CHECK(tape.value(net.node("act")).shape() == Shape{2, 3});
  CHECK_THROWS_WITH_AS(net.node("nope"), doctest::Contains("no node 'nope'"), Error);
}

TEST_CASE("recording refuses parameters and shapes that do not fit, naming file and node") {
  std::mt19937_64 rng(5);
  Tape<float> tape;
  {
    ModelSpec m = mlp();
    m.tensors["fc2.weight"] = tensor({2, 5}, rng);
    CHECK_THROWS_WITH_AS(Network<float>(m, tape, source("m.safetensors")),
                         "m.safetensors: node 'fc2': parameter 'fc2.weight' has shape [2, 5], expected [*, 3]", Error);
  }
  {
    ModelSpec m = mlp();
    m.tensors["fc1.bias"] = tensor({4}, rng);
    CHECK_THROWS_WITH_AS(Network<float>(m, tape, source("m")), "m: node 'fc1': parameter 'fc1.bias' has shape [4], expected [3]",
                         Error);
  }
  {
    ModelSpec m = mlp();
    m.tensors.erase("fc2.weight");
    CHECK_THROWS_WITH_AS(Network<float>(m, tape, source("m")), "m: node 'fc2': parameter 'fc2.weight' is missing", Error);
  }
  {
    ModelSpec m = mlp();
    m.graph.nodes[3] = node("both", "add", {"fc2", "fc1"});  // [B, 2] + [B, 3]
    CHECK_THROWS_WITH_AS(Network<float>(m, tape, source("m")),
                         doctest::Contains("m: node 'both': node "), Error);  // the tape's message follows
    CHECK_THROWS_WITH_AS(Network<float>(m, tape, source("m")), doctest::Contains("[1, 2] and [1, 3] differ"), Error);
  }
  {
    ModelSpec m = mlp();
    m.graph.nodes[4].attrs.axis = -2;
    CHECK_THROWS_WITH_AS(Network<float>(m, tape, source("m")), "m: node 'out': axis -2 names the batch dimension", Error);
  }
  {
    ModelSpec m = mlp();
    m.graph.labels.pop_back();
    CHECK_THROWS_WITH_AS(Network<float>(m, tape, source("m")), "m: 4 labels for an output of 5 values", Error);
  }
}

TEST_CASE("store_parameters writes trained values back into the spec") {
  ModelSpec m = mlp();
  Tape<float> tape;
  const Network<float> net(m, tape, [] { RecordOptions o; o.parameters_require_grad = true; return o; }());
  CHECK(tape.requires_grad(net.parameters()[1].second));
  tape.leaf_value(net.parameters()[1].second)(0) = 42.0f;
  net.store_parameters(m);
  CHECK(m.tensors.at("fc1.bias").values[0] == 42.0);
}
