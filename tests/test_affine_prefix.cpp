// The path methods' affine prefix (Engine::begin_line): the nodes before the first one that bends
// are evaluated at a line's two ends and interpolated, and their backward pass runs once. These
// tests compare that route with running every point through the whole network (the option off):
// equal to float64 rounding on LeNet-, MLP- and ResNet-like networks with a normalize in front,
// for every rule, with the same per-point figures; complete; the same bits on one thread and two;
// and the prefix found is the right one.
#include "attribution/methods.hpp"
#include "nn/zoo.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

using namespace ax;
using namespace ax::attr;

namespace {

// Batch norms with statistics and affine parameters away from the identity, so that the
// interpolated values differ from the normalize's.
void perturb_batchnorms(nn::ModelSpec& spec, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.5, 1.5);
  for (auto& [name, t] : spec.tensors) {
    const bool var = name.find("running_var") != std::string::npos;
    const bool bn = name.find("bn") != std::string::npos;
    if (!bn) continue;
    for (double& v : t.values) v = var ? u(rng) : u(rng) - 1.0;
  }
}

// normalize, conv 1->4, batchnorm, relu, max-pool, conv 4->6, relu, linear, relu, linear: a LeNet
nn::ModelSpec lenet_like(std::uint64_t seed) {
  nn::SpecBuilder b("input", {1, 12, 12}, seed);
  std::string x = b.normalize("norm", "input", {0.3}, {0.7});
  x = b.batchnorm2d("bn1", b.conv2d("conv1", x, 1, 4, 3), 4);
  x = b.maxpool2d("pool1", b.relu("relu1", x), 2, 2);
  x = b.relu("relu2", b.conv2d("conv2", x, 4, 6, 3));
  x = b.relu("relu3", b.linear("fc1", b.flatten("flat", x), 6 * 3 * 3, 12));
  nn::ModelSpec spec = b.finish(b.linear("fc2", x, 12, 10));
  perturb_batchnorms(spec, seed + 1);
  return spec;
}

// normalize, two linear layers (both in the prefix), relu, linear, plus the input itself read
// past the prefix (a skip connection from the raw input), relu, linear
nn::ModelSpec mlp_like(std::uint64_t seed) {
  nn::SpecBuilder b("input", {6}, seed);
  std::string x = b.linear("fc0", b.normalize("norm", "input", {0.5}, {0.25}), 6, 6);
  x = b.relu("relu1", b.linear("fc1", x, 6, 6));
  x = b.add("skip", {b.linear("fc2", x, 6, 6), "input"});
  x = b.relu("relu2", x);
  return b.finish(b.linear("fc3", x, 6, 3));
}

// normalize, conv, batchnorm, relu, conv, batchnorm, plus a 1x1 convolution of the normalized
// input recorded after the relu (so both the normalize and the first batch norm are read past
// the prefix), relu, pooling, linear
nn::ModelSpec resnet_like(std::uint64_t seed) {
  nn::SpecBuilder b("input", {2, 6, 6}, seed);
  const std::string normalized = b.normalize("norm", "input", {0.4, 0.6}, {0.5, 0.8});
  const std::string stem = b.batchnorm2d("bn1", b.conv2d("conv1", normalized, 2, 4, 3, 1, 1), 4);
  std::string y = b.relu("relu1", stem);
  y = b.batchnorm2d("bn2", b.conv2d("conv2", y, 4, 4, 3, 1, 1), 4);
  const std::string projected = b.conv2d("project", normalized, 2, 4, 1);
  y = b.relu("relu2", b.add("add", {y, stem, projected}));
  y = b.flatten("flat", b.adaptive_avgpool2d("pool", y, 2));
  nn::ModelSpec spec = b.finish(b.linear("fc", y, 4 * 2 * 2, 5));
  perturb_batchnorms(spec, seed + 7);
  return spec;
}

template <class T>
Tensor<T> uniform_tensor(const Shape& shape, std::uint64_t seed, double lo = 0, double hi = 1) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  Tensor<T> t(shape);
  for (T& v : t) v = T(u(rng));
  return t;
}

template <class T>
Engine<T> make_engine(const nn::ModelSpec& spec, bool prefix, std::size_t threads = 0,
                      std::size_t budget = std::size_t(1) << 30) {
  EngineOptions o;
  o.affine_prefix = prefix;
  o.threads = threads;
  o.memory_budget = budget;
  return Engine<T>(spec, TargetSpec{}, o);
}

// The two routes' results agree to `tolerance` relative to the largest attribution, and so do F
// at the ends, the gap and the per-point figures of the path diagnostics.
template <class T>
void check_same(const Attribution<T>& a, const Attribution<T>& b, double tolerance) {
  REQUIRE(a.values.shape() == b.values.shape());
  double scale = 0, worst = 0;
  for (std::size_t i = 0; i < a.values.size(); ++i) {
    scale = std::max(scale, std::abs(double(b.values.data()[i])));
    worst = std::max(worst, std::abs(double(a.values.data()[i]) - double(b.values.data()[i])));
  }
  CHECK(scale > 0);
  CHECK(worst <= tolerance * scale);
  CHECK(a.f_input == b.f_input);
  CHECK(a.f_baseline == b.f_baseline);
  CHECK(std::abs(a.sum - b.sum) <= tolerance * (1 + std::abs(b.sum)));
  CHECK(a.steps == b.steps);
  REQUIRE(a.path_f.size() == b.path_f.size());
  REQUIRE(a.path_cumulative.size() == b.path_cumulative.size());
  for (std::size_t k = 0; k < a.path_f.size(); ++k) {
    CHECK(std::abs(a.path_f[k] - b.path_f[k]) <= tolerance * (1 + std::abs(b.path_f[k])));
    CHECK(std::abs(a.path_cumulative[k] - b.path_cumulative[k]) <= tolerance * (1 + std::abs(b.path_cumulative[k])));
  }
}

struct Net {
  const char* name;
  nn::ModelSpec (*make)(std::uint64_t);
};
const Net nets[] = {{"lenet", lenet_like}, {"mlp", mlp_like}, {"resnet", resnet_like}};

// The frontier's nodes by their graph names ("norm", "bn1"), the input as "input".
template <class T>
std::vector<std::string> frontier_names(Engine<T>& f) {
  std::vector<std::string> names;
  for (int id : f.frontier()) {
    const std::string text = f.node_name(id);  // node 'bn1' (batchnorm2d)
    const std::size_t open = text.find('\''), close = text.find('\'', open + 1);
    names.push_back(text.substr(open + 1, close - open - 1));
  }
  return names;
}

}  // namespace

TEST_CASE("affine prefix: the prefix is the nodes before the first that bends, its frontier what is read past it") {
  {
    Engine<double> f = make_engine<double>(lenet_like(1), true);
    REQUIRE(f.has_affine_prefix());
    CHECK(f.node_name(f.prefix_stop()) == "node 'relu1' (relu)");
    CHECK(frontier_names(f) == std::vector<std::string>{"bn1"});  // normalize, conv1 and bn1 inside
  }
  {
    Engine<double> f = make_engine<double>(mlp_like(2), true);
    REQUIRE(f.has_affine_prefix());
    CHECK(f.node_name(f.prefix_stop()) == "node 'relu1' (relu)");
    CHECK(frontier_names(f) == std::vector<std::string>{"input", "fc1"});
  }
  {
    Engine<double> f = make_engine<double>(resnet_like(3), true);
    REQUIRE(f.has_affine_prefix());
    CHECK(f.node_name(f.prefix_stop()) == "node 'relu1' (relu)");
    CHECK(frontier_names(f) == std::vector<std::string>{"norm", "bn1"});
  }
  // the option off, a network whose first node bends, and one affine all the way: no prefix
  CHECK_FALSE(make_engine<double>(lenet_like(1), false).has_affine_prefix());
  {
    nn::SpecBuilder b("input", {4}, 5);
    nn::ModelSpec spec = b.finish(b.linear("fc", b.relu("relu", "input"), 4, 3));
    Engine<double> f = make_engine<double>(spec, true);
    CHECK_FALSE(f.has_affine_prefix());
    CHECK(f.frontier().empty());
  }
  {
    nn::SpecBuilder b("input", {4}, 6);
    nn::ModelSpec spec = b.finish(b.linear("fc2", b.linear("fc1", "input", 4, 5), 5, 3));
    CHECK_FALSE(make_engine<double>(spec, true).has_affine_prefix());
  }
}

TEST_CASE("affine prefix: IG by the prefix equals IG by whole passes to float64 rounding, for every rule") {
  for (const Net& net : nets) {
    for (std::uint64_t seed : {11u, 12u}) {
      const nn::ModelSpec spec = net.make(seed);
      Engine<double> prefix = make_engine<double>(spec, true);
      Engine<double> whole = make_engine<double>(spec, false);
      REQUIRE(prefix.has_affine_prefix());
      const Tensor<double> x = uniform_tensor<double>(prefix.input_shape(), seed + 100);
      const Tensor<double> baseline = uniform_tensor<double>(prefix.input_shape(), seed + 200, 0, 0.3);
      for (Rule rule : {Rule::riemann_left, Rule::riemann_right, Rule::riemann_middle, Rule::riemann_trapezoid,
                        Rule::gausslegendre, Rule::exact}) {
        CAPTURE(net.name);
        CAPTURE(seed);
        CAPTURE(rule_name(rule));
        IgOptions o;
        o.rule = rule;
        o.steps = 24;
        o.diagnostics = true;
        const std::size_t before = prefix.evaluations();
        const Attribution<double> a = integrated_gradients(prefix, x, baseline, o);
        const Attribution<double> b = integrated_gradients(whole, x, baseline, o);
        check_same(a, b, 1e-12);
        if (rule != Rule::exact || std::string(net.name) != "lenet")  // exact IG on LeNet: its own search
          CHECK(prefix.evaluations() - before >= a.steps);
      }
    }
  }
}

TEST_CASE("affine prefix: the adaptive doubling (its cache of frontier gradients) and several baselines") {
  const nn::ModelSpec spec = resnet_like(21);
  Engine<double> prefix = make_engine<double>(spec, true);
  Engine<double> whole = make_engine<double>(spec, false);
  const Tensor<double> x = uniform_tensor<double>(prefix.input_shape(), 22);
  IgOptions o;
  o.rule = Rule::riemann_trapezoid;
  o.steps = 4;
  o.tolerance = 1e-6;
  o.max_steps = 256;
  o.diagnostics = true;
  const Tensor<double> zero = zeros<double>(prefix.input_shape());
  const Attribution<double> a = integrated_gradients(prefix, x, zero, o);
  const Attribution<double> b = integrated_gradients(whole, x, zero, o);
  CHECK(a.steps > 4);
  check_same(a, b, 1e-12);

  Shape many{3};
  for (std::size_t d : prefix.input_shape()) many.push_back(d);
  const Tensor<double> baselines = uniform_tensor<double>(many, 23, 0, 0.5);
  IgOptions g;
  check_same(integrated_gradients_multi(prefix, x, baselines, g), integrated_gradients_multi(whole, x, baselines, g), 1e-12);
}

TEST_CASE("affine prefix: complete to rounding with the exact rule on a network with branches") {
  // the reference search gives the pieces; IG on them by the prefix route sums to F(x) - F(x')
  const nn::ModelSpec spec = resnet_like(31);
  Engine<double> f = make_engine<double>(spec, true);
  REQUIRE(f.has_affine_prefix());
  const Tensor<double> x = uniform_tensor<double>(f.input_shape(), 32);
  IgOptions o;
  o.rule = Rule::exact;
  const Attribution<double> a = integrated_gradients(f, x, zeros<double>(f.input_shape()), o);
  CHECK(a.pieces > 1);
  CHECK(std::abs(a.f_input - a.f_baseline) > 1e-3);
  CHECK(a.relative_delta < 1e-10);
}

TEST_CASE("affine prefix: float IG by the prefix is within float rounding of whole passes") {
  for (const Net& net : nets) {
    CAPTURE(net.name);
    const nn::ModelSpec spec = net.make(41);
    Engine<float> prefix = make_engine<float>(spec, true);
    Engine<float> whole = make_engine<float>(spec, false);
    const Tensor<float> x = uniform_tensor<float>(prefix.input_shape(), 42);
    IgOptions o;
    o.steps = 50;
    const Attribution<float> a = integrated_gradients(prefix, x, zeros<float>(prefix.input_shape()), o);
    const Attribution<float> b = integrated_gradients(whole, x, zeros<float>(prefix.input_shape()), o);
    check_same(a, b, 1e-5);
  }
}

TEST_CASE("affine prefix: the same bits on one thread and two, in chunks or in one batch") {
  const nn::ModelSpec spec = nn::lenet28(51, 8);
  const Tensor<float> x = uniform_tensor<float>(Shape{1, 28, 28}, 52);
  const Tensor<float> zero = zeros<float>(x.shape());
  IgOptions o;
  o.steps = 50;
  o.diagnostics = true;
  Engine<float> one = make_engine<float>(spec, true, 1);
  const Attribution<float> a = integrated_gradients(one, x, zero, o);
  Engine<float> two = make_engine<float>(spec, true, 2);
  const Attribution<float> b = integrated_gradients(two, x, zero, o);
  // a budget for 7 points at a time: 8 chunks, the last one short
  Engine<float> chunked = make_engine<float>(spec, true, 2, 7 * two.bytes_per_point());
  REQUIRE(chunked.chunk() == 7);
  const Attribution<float> c = integrated_gradients(chunked, x, zero, o);
  REQUIRE(one.has_affine_prefix());
  for (const Attribution<float>* other : {&b, &c}) {
    CHECK(std::memcmp(a.values.data(), other->values.data(), a.values.size() * sizeof(float)) == 0);
    CHECK(a.path_f == other->path_f);
    CHECK(a.path_cumulative == other->path_cumulative);
  }
}

TEST_CASE("affine prefix: an infinity in the prefix is reported as by whole passes, naming its node") {
  // x / 0.1 overflows float at x = 3e38 but not at the zero baseline: the line runs whole
  nn::SpecBuilder b("input", {6}, 61);
  nn::ModelSpec spec = b.finish(b.linear("fc1", b.relu("relu1", b.normalize("norm", "input", {0.0}, {0.1})), 6, 3));
  Engine<float> prefix = make_engine<float>(spec, true);
  Engine<float> whole = make_engine<float>(spec, false);
  REQUIRE(prefix.has_affine_prefix());
  Tensor<float> input(prefix.input_shape());
  input.fill(3e38f);
  const Tensor<float> zero = zeros<float>(prefix.input_shape());
  prefix.retarget(0);
  whole.retarget(0);
  std::string prefix_error, whole_error;
  try {
    integrated_gradients(prefix, input, zero);
  } catch (const NonFinite& e) {
    prefix_error = e.what();
  }
  try {
    integrated_gradients(whole, input, zero);
  } catch (const NonFinite& e) {
    whole_error = e.what();
  }
  CHECK(whole_error.find("node 'norm'") != std::string::npos);
  CHECK(prefix_error == whole_error);
}
