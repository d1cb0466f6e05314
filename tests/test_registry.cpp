// The op registry: each op's descriptor says truly how it bends. Every model-file op that maps a
// tensor to a tensor of its own is recorded from a one-node graph and evaluated densely along a
// straight line; its second differences must vanish where its linearity says it is affine (for a
// piecewise-linear op: inside every piece its `switches` finds) and must not where it says smooth.
#include "autodiff/ops/registry.hpp"
#include "nn/graph.hpp"
#include "nn/model_file.hpp"
#include "support.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <set>

using namespace ax;

namespace {

// An example of each single-input, parameter-free model-file op, its attributes away from the
// defaults where that shows more (a test below insists that every such op has one), and of
// layer_norm without its optional parameters.
std::vector<nn::NodeSpec> unary_examples() {
  std::vector<nn::NodeSpec> nodes;
  auto add = [&](const std::string& op) -> Attrs& {
    nodes.push_back(nn::make_node("y", op, {"x"}));
    return nodes.back().attrs;
  };
  add("relu");
  add("leaky_relu").negative_slope = 0.2;
  Attrs& clamp = add("hardtanh");
  clamp.min_val = -0.5, clamp.max_val = 1.25;
  add("hardsigmoid");  // kinks at -3 and 3: the lines below run through [-4, 4]
  add("hardswish");
  add("silu");
  add("gelu");
  add("gelu").approximate = "tanh";
  add("sigmoid");
  add("tanh");
  add("identity");
  add("flatten");
  add("reshape").dims = {5, -1};
  add("permute").dims = {0, 2, 3, 1};
  add("layer_norm").normalized_ndim = 2;  // its optional weight and bias left out
  Attrs& slice = add("slice");
  slice.axis = 2, slice.start = 1, slice.end = 4;
  Attrs& affine = add("affine");
  affine.scale = -1.5, affine.offset = 0.5;
  Attrs& max = add("maxpool2d");
  max.kernel = 3, max.stride = 2, max.padding = 1;
  Attrs& avg = add("avgpool2d");
  avg.kernel = 2, avg.stride = 1;
  add("adaptive_avgpool2d").output_size = Pair2d(2, 3);
  Attrs& norm = add("normalize");
  norm.mean = {0.5, -0.25};
  norm.stddev = {2.0, 0.5};
  add("softmax");
  add("log_softmax");
  return nodes;
}

nn::ModelSpec one_node_model(const nn::NodeSpec& node) {
  nn::ModelSpec m;
  m.graph.input = {"x", {2, 5, 6}, std::nullopt};
  m.graph.nodes = {node};
  m.graph.output = node.name;
  return m;
}

// max |f(a - h) - 2 f(a) + f(a + h)| over the outputs, relative to the outputs' size.
double second_difference(const double* left, const double* mid, const double* right, std::size_t n) {
  double d = 0, scale = 1e-300;
  for (std::size_t i = 0; i < n; ++i) {
    d = std::max(d, std::abs(left[i] - 2 * mid[i] + right[i]));
    scale = std::max(scale, std::abs(mid[i]));
  }
  return d / scale;
}

}  // namespace

TEST_CASE("registry: names are unique, the model file's ops are found, code-only ops are not") {
  std::set<std::string> names;
  for (const ops::OpInfo& op : ops::registry()) CHECK(names.insert(op.name).second);
  for (const char* name : {"conv2d", "linear", "relu", "maxpool2d", "flatten", "identity", "add", "concat", "reshape",
                           "permute", "layer_norm", "gelu", "div", "affine", "matmul", "slice", "constant"})
    CHECK(ops::find_file_op(name) != nullptr);
  for (const char* name : {"exp", "log", "sum", "mean"}) {
    CHECK(ops::find_op(name) != nullptr);
    CHECK(ops::find_file_op(name) == nullptr);
  }
  CHECK(ops::find_op("no_such_op") == nullptr);
  CHECK_THROWS_WITH_AS(nn::make_node("n", "exp", {"x"}), doctest::Contains("unknown op 'exp'"), Error);
}

TEST_CASE("registry: every single-input op of the model file has an example here") {
  std::set<std::string> covered;
  for (const nn::NodeSpec& n : unary_examples()) covered.insert(n.op);
  for (const ops::OpInfo& op : ops::registry()) {
    if (!op.file.in_file || op.file.max_inputs != 1 || !op.file.params.empty()) continue;
    INFO("op ", op.name);
    CHECK(covered.count(op.name) == 1);
  }
}

TEST_CASE("registry: each op bends as its descriptor says, along a line") {
  std::mt19937_64 rng(11);
  const std::size_t points = 801;  // a in [0, 1], spaced h
  const double h = 1.0 / double(points - 1);
  for (const nn::NodeSpec& node : unary_examples()) {
    const ops::OpInfo& op = *ops::find_file_op(node.op);
    INFO("op ", node.op);
    const nn::ModelSpec model = one_node_model(node);
    Tape<double> tape;
    nn::RecordOptions options;
    options.batch = points;
    const nn::Network<double> net(model, tape, options);

    const Shape sample{2, 5, 6};
    const Tensor<double> x0 = test::uniform(sample, -4, 4, rng), x1 = test::uniform(sample, -4, 4, rng);
    Tensor<double> path(Shape{points, 2, 5, 6});
    const std::size_t width = x0.size();
    // [points, sample]
    for (std::size_t p = 0; p < points; ++p)
      for (std::size_t j = 0; j < width; ++j)
        path.data()[p * width + j] = x0.data()[j] + double(p) * h * (x1.data()[j] - x0.data()[j]);
    tape.set_value(net.input(), path);
    tape.forward();
    const Tensor<double>& y = tape.value(net.output());
    const std::size_t out = y.size() / points;

    // The op's own switches between the line's ends, when it has kinks.
    std::vector<double> switches;
    const Node<double>& recorded = tape.node(net.output());
    if (op.linearity == Linearity::piecewise_linear) {
      REQUIRE(bool(recorded.op->switches));
      recorded.op->switches(recorded.attrs, Shape{1, 2, 5, 6}, Shape{1, y.shape()[1], y.shape()[2], y.shape()[3]},
                            x0.data(), x1.data(), switches);
      CHECK(!switches.empty());  // these lines cross kinks: the examples are built so
    }
    // A point p is inside a piece when no switch lies within [a - h, a + h].
    auto inside_a_piece = [&](std::size_t p) {
      const double a = double(p) * h;
      return std::none_of(switches.begin(), switches.end(), [&](double s) { return std::abs(s - a) <= 1.01 * h; });
    };
    double worst_inside = 0, worst_anywhere = 0;
    for (std::size_t p = 1; p + 1 < points; ++p) {
      const double d = second_difference(y.data() + (p - 1) * out, y.data() + p * out, y.data() + (p + 1) * out, out);
      worst_anywhere = std::max(worst_anywhere, d);
      if (inside_a_piece(p)) worst_inside = std::max(worst_inside, d);
    }
    switch (op.linearity) {
      case Linearity::linear:
      case Linearity::multilinear:
      case Linearity::linear_in_first:
        CHECK(worst_anywhere < 1e-12);
        break;
      case Linearity::piecewise_linear:
        CHECK(worst_inside < 1e-12);
        CHECK(worst_anywhere > 1e-6);  // the kinks are real
        break;
      case Linearity::smooth:
        CHECK(worst_anywhere > 1e-9);
        break;
    }
  }
}

TEST_CASE("registry: positively homogeneous ops scale with their input") {
  std::mt19937_64 rng(12);
  for (const nn::NodeSpec& node : unary_examples()) {
    const ops::OpInfo& op = *ops::find_file_op(node.op);
    INFO("op ", node.op);
    Tape<double> tape;
    const nn::Network<double> net(one_node_model(node), tape);
    const Tensor<double> x = test::uniform(Shape{1, 2, 5, 6}, -2, 2, rng);
    tape.set_value(net.input(), x);
    tape.forward();
    const Tensor<double> y = tape.value(net.output());
    Tensor<double> scaled = x;
    for (double& v : scaled) v *= 2.5;
    tape.set_value(net.input(), scaled);
    tape.forward();
    Tensor<double> y_scaled = y;
    for (double& v : y_scaled) v *= 2.5;
    const double error = test::max_abs_diff(tape.value(net.output()), y_scaled);
    if (op.positively_homogeneous) CHECK(error < 1e-12);
    else CHECK(error > 1e-6);
  }
}
