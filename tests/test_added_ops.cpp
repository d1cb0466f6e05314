// The ops added for the torchvision families (silu, hardswish, hardsigmoid, gelu, layer_norm,
// permute): gradchecked in float64 like every op (backward, tangent and the dot test), values
// and slopes at chosen points against PyTorch's (torch 1.13, float64), kinks pinned.
#include "attribution/methods.hpp"
#include "autodiff/ops.hpp"
#include "nn/model_file.hpp"
#include "nn/zoo.hpp"
#include "gradcheck_support.hpp"
#include "support.hpp"

#include <doctest/doctest.h>

#include <algorithm>

using namespace ax;
using ax::test::away_from_zero;
using ax::test::uniform;
using test::Vars;

namespace {

void check(const GradcheckFunction& f, const std::vector<Tensor<double>>& inputs) { test::check_gradients(f, inputs); }

const std::vector<Shape> shapes = {{1, 1}, {1, 5}, {3, 4}, {2, 3, 5}, {2, 2, 2, 3}};

// f's values and slopes (gradient and tangent, seeded with ones) at the points `x`.
struct ValuesAndSlopes {
  Tensor<double> value, grad, tangent;
};
ValuesAndSlopes evaluate(Var<double> (*f)(Var<double>), const std::vector<double>& x) {
  Tape<double> tape;
  const Shape s{1, x.size()};
  Tensor<double> values(s);
  std::copy(x.begin(), x.end(), values.begin());
  const Var<double> in = tape.input(values);
  const Var<double> y = f(in);
  tape.backward(y);
  tape.set_direction(in, full<double>(s, 1.0));
  tape.tangent();
  return {tape.value(y), tape.grad(in), tape.tangent(y)};
}

void check_close(const Tensor<double>& found, const std::vector<double>& expected) {
  REQUIRE(found.size() == expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    CAPTURE(i);
    CHECK(found.data()[i] == doctest::Approx(expected[i]).epsilon(1e-14));
  }
}

}  // namespace

TEST_CASE("gradcheck: silu, gelu (both forms), hardswish and hardsigmoid") {
  std::mt19937_64 rng(21);
  for (const Shape& s : shapes) {
    CAPTURE(to_string(s));
    const Tensor<double> x = uniform(s, -4, 4, rng);
    const Tensor<double> near_kink = away_from_zero(s, 0.05, 2, rng);  // shifted by 3 and -3 below
    check([](Tape<double>&, const Vars& v) { return silu(v[0]); }, {x});
    check([](Tape<double>&, const Vars& v) { return gelu(v[0]); }, {x});
    check([](Tape<double>&, const Vars& v) { return gelu(v[0], "tanh"); }, {x});
    check([](Tape<double>&, const Vars& v) { return hardswish(v[0] + 3.0); }, {near_kink});
    check([](Tape<double>&, const Vars& v) { return hardswish(v[0] - 3.0); }, {near_kink});
    check([](Tape<double>&, const Vars& v) { return hardsigmoid(v[0] + 3.0); }, {near_kink});
    check([](Tape<double>&, const Vars& v) { return hardsigmoid(v[0] - 3.0); }, {near_kink});
  }
}

TEST_CASE("silu and gelu agree with PyTorch's values and slopes") {
  const std::vector<double> x{-2.5, -0.5, 0.0, 1.0, 3.0};
  SUBCASE("silu") {
    const ValuesAndSlopes r = evaluate([](Var<double> v) { return silu(v); }, x);
    check_close(r.value, {-0.18964545005310887, -0.1887703343990727, 0.0, 0.7310585786300049, 2.8577223804672998});
    check_close(r.grad, {-0.09940111134152683, 0.2600388126973482, 0.5, 0.9276705118714869, 1.0881041060151693});
    check_close(r.tangent, {-0.09940111134152683, 0.2600388126973482, 0.5, 0.9276705118714869, 1.0881041060151693});
  }
  SUBCASE("gelu, erf") {
    const ValuesAndSlopes r = evaluate([](Var<double> v) { return gelu(v); }, x);
    check_close(r.value, {-0.015524163314440398, -0.15426876936299344, 0.0, 0.841344746068543, 2.99595030590511});
    check_close(r.grad, {-0.03761108590814519, 0.13250487534383712, 0.5, 1.0833154705876864, 1.011945647204184});
    check_close(r.tangent, {-0.03761108590814519, 0.13250487534383712, 0.5, 1.0833154705876864, 1.011945647204184});
  }
  SUBCASE("gelu, tanh") {
    const ValuesAndSlopes r = evaluate([](Var<double> v) { return gelu(v, "tanh"); }, x);
    check_close(r.value, {-0.015084266089998577, -0.15428599017485606, 0.0, 0.8411919906082768, 2.996362607918227});
    check_close(r.grad, {-0.03795157621266618, 0.13263009646535764, 0.5, 1.0829640838457826, 1.0115841666309695});
    check_close(r.tangent, {-0.03795157621266618, 0.13263009646535764, 0.5, 1.0829640838457826, 1.0115841666309695});
  }
  Tape<double> tape;
  const Var<double> v = tape.input(zeros<double>({1, 2}));
  CHECK_THROWS_WITH_AS(gelu(v, "erf"), doctest::Contains("approximate \"erf\" is not \"none\" or \"tanh\""), Error);
}

TEST_CASE("kinks are pinned: hardsigmoid's slope is 0 at -3 and 3; hardswish's is PyTorch's, -1/2 and 3/2") {
  const std::vector<double> x{-4.0, -3.0, 0.0, 3.0, 4.0};
  const ValuesAndSlopes hs = evaluate([](Var<double> v) { return hardsigmoid(v); }, x);
  CHECK(hs.value == from_values<double>({1, 5}, {0.0, 0.0, 0.5, 1.0, 1.0}));
  CHECK(hs.grad == from_values<double>({1, 5}, {0.0, 0.0, 1.0 / 6, 0.0, 0.0}));
  CHECK(hs.tangent == hs.grad);
  const ValuesAndSlopes sw = evaluate([](Var<double> v) { return hardswish(v); }, x);
  CHECK(sw.value == from_values<double>({1, 5}, {0.0, 0.0, 0.0, 3.0, 4.0}));
  CHECK(sw.grad == from_values<double>({1, 5}, {0.0, -0.5, 0.5, 1.5, 1.0}));
  CHECK(sw.tangent == sw.grad);
}

TEST_CASE("gradcheck: layer_norm over the last one, two and three dimensions, with and without weight and bias") {
  std::mt19937_64 rng(22);
  struct Case { Shape x; int normalized_ndim; };
  for (const Case& c : {Case{{1, 5}, 1}, Case{{3, 4}, 1}, Case{{2, 3, 5}, 1}, Case{{2, 3, 5}, 2}, Case{{2, 2, 3, 2}, 3}}) {
    CAPTURE(to_string(c.x));
    CAPTURE(c.normalized_ndim);
    const Tensor<double> x = uniform(c.x, -2, 2, rng);
    const Shape trailing(c.x.end() - c.normalized_ndim, c.x.end());
    const Tensor<double> w = uniform(trailing, -1.5, 1.5, rng), b = uniform(trailing, -1, 1, rng);
    const int nd = c.normalized_ndim;
    check([nd](Tape<double>&, const Vars& v) { return layer_norm(v[0], nd); }, {x});
    check([nd](Tape<double>&, const Vars& v) { return layer_norm(v[0], nd, 0.5); }, {x});
    check([](Tape<double>&, const Vars& v) { return layer_norm(v[0], v[1], v[2]); }, {x, w, b});
    check([](Tape<double>&, const Vars& v) { return layer_norm(v[0], v[1], v[2], 1e-3); }, {x, w, b});
  }
}

TEST_CASE("layer_norm: PyTorch's values; mismatched shapes refused") {
  // torch.nn.functional.layer_norm(x, [3], w, b, 1e-5) on x = [[1, 2, 4], [-1, 0, 0]]
  Tape<double> tape;
  const Var<double> x = tape.input(from_values<double>({2, 3}, {1.0, 2.0, 4.0, -1.0, 0.0, 0.0}));
  const Var<double> w = tape.input(from_values<double>({3}, {1.0, 2.0, -1.0}));
  const Var<double> b = tape.input(from_values<double>({3}, {0.0, 0.5, 0.25}));
  const Var<double> y = layer_norm(x, w, b);
  check_close(tape.value(y), {-1.069041531450298, -0.03452076572514917, -1.0863019143128718, -1.4141817436418196,
                              1.9141817436418198, -0.4570908718209099});
  CHECK_THROWS_WITH_AS(layer_norm(x, 2), doctest::Contains("normalized_ndim 2 must be at least 1 and below the rank"),
                       Error);
  const Var<double> w4 = tape.input(zeros<double>({4}));
  CHECK_THROWS_WITH_AS(layer_norm(x, w4, w4), doctest::Contains("weight has shape [4], expected [3]"), Error);
}

TEST_CASE("gradcheck: permute, and its values") {
  std::mt19937_64 rng(23);
  const Tensor<double> x3 = uniform({2, 3, 4}, -1, 1, rng), x4 = uniform({2, 2, 3, 4}, -1, 1, rng);
  check([](Tape<double>&, const Vars& v) { return permute(v[0], {0, 2, 1}); }, {x3});
  check([](Tape<double>&, const Vars& v) { return permute(v[0], {0, 1, 2}); }, {x3});
  check([](Tape<double>&, const Vars& v) { return permute(v[0], {0, 2, 3, 1}); }, {x4});
  check([](Tape<double>&, const Vars& v) { return permute(v[0], {0, 3, 1, 2}); }, {x4});

  Tape<double> tape;
  const Var<double> x = tape.input(from_values<double>({1, 2, 3}, {0, 1, 2, 3, 4, 5}));
  CHECK(tape.value(permute(x, {0, 2, 1})) == from_values<double>({1, 3, 2}, {0, 3, 1, 4, 2, 5}));
  CHECK_THROWS_WITH_AS(permute(x, {1, 0, 2}), doctest::Contains("must start with 0 (the batch stays first)"), Error);
  CHECK_THROWS_WITH_AS(permute(x, {0, 2, 2}), doctest::Contains("dims [0, 2, 2] is not a permutation of 0..2"), Error);
  CHECK_THROWS_WITH_AS(permute(x, {0, 1}), doctest::Contains("dims [0, 1] does not fit the rank of [1, 2, 3]"), Error);
}

TEST_CASE("gradcheck: add, sub, mul and div broadcast (NumPy rules), the gradients summed over broadcast dimensions") {
  std::mt19937_64 rng(24);
  struct Case { Shape a, b; };
  for (const Case& c : {Case{{2, 3, 4}, {2, 1, 4}}, Case{{2, 3, 1, 1}, {2, 3, 2, 2}}, Case{{3, 4}, {4}},
                        Case{{1, 1}, {2, 3}}, Case{{2, 1, 3}, {1, 4, 1}}, Case{{2, 3}, {}}}) {
    CAPTURE(to_string(c.a));
    CAPTURE(to_string(c.b));
    const Tensor<double> a = uniform(c.a, -2, 2, rng), b = uniform(c.b, -2, 2, rng);
    const Tensor<double> denominator = away_from_zero(c.b, 0.5, 2, rng);
    check([](Tape<double>&, const Vars& v) { return v[0] + v[1]; }, {a, b});
    check([](Tape<double>&, const Vars& v) { return v[1] + v[0]; }, {a, b});
    check([](Tape<double>&, const Vars& v) { return v[0] - v[1]; }, {a, b});
    check([](Tape<double>&, const Vars& v) { return v[1] - v[0]; }, {a, b});
    check([](Tape<double>&, const Vars& v) { return v[0] * v[1]; }, {a, b});
    check([](Tape<double>&, const Vars& v) { return v[0] / v[1]; }, {a, denominator});
  }
}

TEST_CASE("broadcasting: values and the summed gradient by hand; shapes that do not broadcast refused") {
  Tape<double> tape;
  const Var<double> x = tape.input(from_values<double>({1, 2, 3}, {1, 2, 3, 4, 5, 6}));
  const Var<double> s = tape.input(from_values<double>({1, 2, 1}, {10, -1}));  // one scale per row, as squeeze-excitation
  const Var<double> y = x * s;
  CHECK(tape.value(y) == from_values<double>({1, 2, 3}, {10, 20, 30, -4, -5, -6}));
  tape.backward(y);
  CHECK(tape.grad(s) == from_values<double>({1, 2, 1}, {6, 15}));  // the row sums of x
  CHECK(tape.grad(x) == from_values<double>({1, 2, 3}, {10, 10, 10, -1, -1, -1}));
  const Var<double> bad = tape.input(zeros<double>({1, 3, 3}));
  CHECK_THROWS_WITH_AS(x + bad, doctest::Contains("input shapes [1, 2, 3] and [1, 3, 3] do not broadcast"), Error);
}

// The ops added for attention and learned constants (ViT, ConvNeXt, ShuffleNet, Inception's
// transform_input): slice, constant, batched matmul, affine in a model file.

TEST_CASE("gradcheck: slice along each sample axis, constant (its value's gradient), batched matmul") {
  std::mt19937_64 rng(25);
  const Tensor<double> x3 = uniform({2, 5, 4}, -1, 1, rng), x4 = uniform({2, 3, 4, 5}, -1, 1, rng);
  check([](Tape<double>&, const Vars& v) { return slice_along(v[0], 1, 1, 4); }, {x3});
  check([](Tape<double>&, const Vars& v) { return slice_along(v[0], -1, 0, 1); }, {x3});
  check([](Tape<double>&, const Vars& v) { return slice_along(v[0], 2, 2, 4); }, {x4});
  check([](Tape<double>&, const Vars& v) { return slice_along(v[0], 3, 0, 5); }, {x4});
  const Tensor<double> value = uniform({4, 1}, -1, 1, rng), x = uniform({3, 4, 5}, -1, 1, rng);
  // the constant broadcast against x, as a layer scale; its input gives only the batch size
  check([](Tape<double>&, const Vars& v) { return learned_constant(v[0], v[1]) * v[0]; }, {x, value});
  const Tensor<double> a3 = uniform({2, 3, 4}, -1, 1, rng), b3 = uniform({2, 4, 2}, -1, 1, rng);
  const Tensor<double> a4 = uniform({2, 3, 2, 4}, -1, 1, rng), b4 = uniform({2, 3, 4, 3}, -1, 1, rng);
  check([](Tape<double>&, const Vars& v) { return matmul(v[0], v[1]); }, {a3, b3});
  check([](Tape<double>&, const Vars& v) { return matmul(v[0], v[1]); }, {a4, b4});
  check([](Tape<double>&, const Vars& v) { return matmul(v[0], v[0]); }, {uniform({2, 3, 3}, -1, 1, rng)});
}

TEST_CASE("slice, constant and batched matmul: values by hand, bad shapes refused") {
  Tape<double> tape;
  const Var<double> x = tape.input(from_values<double>({2, 3, 2}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}));
  CHECK(tape.value(slice_along(x, 1, 1, 3)) == from_values<double>({2, 2, 2}, {2, 3, 4, 5, 8, 9, 10, 11}));
  CHECK(tape.value(slice_along(x, 2, 1, 2)) == from_values<double>({2, 3, 1}, {1, 3, 5, 7, 9, 11}));
  CHECK_THROWS_WITH_AS(slice_along(x, 1, 2, 4), doctest::Contains("[start, end) = [2, 4) does not fit the 3 entries"), Error);
  CHECK_THROWS_WITH_AS(slice_along(x, 1, 2, 2), doctest::Contains("[start, end) = [2, 2)"), Error);

  const Var<double> value = tape.input(from_values<double>({2}, {-1, 0.5}));
  CHECK(tape.value(learned_constant(x, value)) == from_values<double>({2, 2}, {-1, 0.5, -1, 0.5}));

  // [1, 2, 2, 3] x [1, 2, 3, 1]: two products of [2, 3] by [3, 1]
  const Var<double> a = tape.input(from_values<double>({1, 2, 2, 3}, {1, 2, 3, 4, 5, 6, 1, 0, 0, 0, 1, 0}));
  const Var<double> b = tape.input(from_values<double>({1, 2, 3, 1}, {1, 1, 1, 7, 8, 9}));
  CHECK(tape.value(matmul(a, b)) == from_values<double>({1, 2, 2, 1}, {6, 15, 7, 8}));
  const Var<double> c = tape.input(zeros<double>({2, 2, 3, 1}));
  CHECK_THROWS_WITH_AS(matmul(a, c), doctest::Contains("cannot multiply shapes [1, 2, 2, 3] and [2, 2, 3, 1]"), Error);
}

namespace {

// x [8] -> fc1 (8 -> 24) -> relu -> slice [2, 20) -> affine -> + constant [18] -> relu -> fc2 (18 -> 2 * 3)
// -> reshape [2, 3] -> matmul with a constant [3, 2] -> flatten: every new op on exact IG's path.
nn::ModelSpec new_ops_network(std::uint64_t seed) {
  nn::SpecBuilder b("x", {8}, seed);
  b.set_range(0, 1);
  nn::ModelSpec m = b.finish(b.relu("r1", b.linear("fc1", "x", 8, 24)));
  std::mt19937_64 rng(seed);
  auto values = [&](std::size_t n) {
    std::vector<double> v(n);
    for (double& e : v) e = std::uniform_real_distribution<double>(-1, 1)(rng);
    return v;
  };
  auto add = [&](nn::NodeSpec n) -> nn::NodeSpec& {
    m.graph.nodes.push_back(std::move(n));
    return m.graph.nodes.back();
  };
  nn::NodeSpec& s = add(nn::make_node("s", "slice", {"r1"}));
  s.attrs.axis = 1, s.attrs.start = 2, s.attrs.end = 20;
  nn::NodeSpec& aff = add(nn::make_node("aff", "affine", {"s"}));
  aff.attrs.scale = -0.5, aff.attrs.offset = 0.25;
  add(nn::make_node("bias", "constant", {"x"})).attrs.dims = {18};
  m.tensors["bias.value"] = {"F64", {18}, values(18)};
  add(nn::make_node("sum", "add", {"aff", "bias"}));
  add(nn::make_node("r2", "relu", {"sum"}));
  add(nn::make_node("fc2", "linear", {"r2"}));
  m.tensors["fc2.weight"] = {"F64", {6, 18}, values(6 * 18)};
  add(nn::make_node("rows", "reshape", {"fc2"})).attrs.dims = {1, 2, 3};
  add(nn::make_node("w", "constant", {"x"})).attrs.dims = {1, 3, 2};
  m.tensors["w.value"] = {"F64", {1, 3, 2}, values(6)};
  add(nn::make_node("prod", "matmul", {"rows", "w"}));
  add(nn::make_node("out", "flatten", {"prod"}));
  m.graph.output = "out";
  return m;
}

}  // namespace

TEST_CASE("slice, affine, constant and matmul in a model file: written and read back; exact IG through them") {
  const nn::ModelSpec written = new_ops_network(26);
  const nn::ModelSpec m = nn::parse_model(nn::serialize_model(written), "new_ops.st");
  REQUIRE(m.graph.nodes.size() == written.graph.nodes.size());
  const nn::NodeSpec& s = m.graph.nodes[2];
  CHECK((s.op == "slice" && s.attrs.axis == 1 && s.attrs.start == 2 && s.attrs.end == 20));
  CHECK((m.graph.nodes[3].attrs.scale == -0.5 && m.graph.nodes[3].attrs.offset == 0.25));
  attr::TargetSpec target;
  target.class_index = 3;
  attr::Engine<double> f(m, target);
  attr::IgOptions exact;
  exact.rule = attr::Rule::exact;
  attr::IgOptions fine;
  fine.rule = attr::Rule::gausslegendre;
  fine.steps = 4096;
  std::mt19937_64 rng(27);
  const Tensor<double> x = uniform({8}, 0, 3, rng), base = zeros<double>({8});
  const attr::Attribution<double> a = attr::integrated_gradients(f, x, base, exact);
  CHECK(a.pieces > 2);
  CHECK(a.relative_delta < 1e-12);
  const attr::Attribution<double> q = attr::integrated_gradients(f, x, base, fine);
  CHECK(test::max_abs_diff(q.values, a.values) < 1e-3 * xt::amax(xt::abs(a.values))());
}

TEST_CASE("slice, constant and matmul in a model file: bad attributes and shapes refused, naming the node") {
  auto refused = [](nn::ModelSpec m, const std::string& words) {
    CHECK_THROWS_WITH_AS(attr::Engine<double>(nn::parse_model(nn::serialize_model(m), "m.st"), attr::TargetSpec{}),
                         doctest::Contains(words.c_str()), Error);
  };
  nn::ModelSpec m = new_ops_network(28);
  m.graph.nodes[2].attrs.end = 25;  // 24 features
  refused(m, "[start, end) = [2, 25) does not fit the 24 entries");
  m = new_ops_network(28);
  m.tensors["bias.value"].shape = {3, 6};
  refused(m, "\"bias.value\" has shape [3, 6]; expected [18] (the node's shape)");
  m = new_ops_network(28);
  m.graph.nodes[4].attrs.dims = {18, 0};
  m.tensors["bias.value"].shape = {18, 0};
  m.tensors["bias.value"].values.clear();
  refused(m, "shape [18, 0] holds 0; entries are at least 1");
  m = new_ops_network(28);
  m.graph.nodes[m.graph.nodes.size() - 2].inputs = {"fc2", "w"};  // ranks 2 and 4
  refused(m, "matmul multiplies batches of matrices");
}
