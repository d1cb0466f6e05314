// Every op against finite differences in float64 (backward, tangent and the dot-product test
// that ties them), on several shapes including a batch > 1; forward values against closed forms;
// the kinks pinned.
#include "autodiff/gradcheck.hpp"
#include "autodiff/ops.hpp"
#include "gradcheck_support.hpp"
#include "support.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <xtensor/xmath.hpp>

using namespace ax;
using ax::test::away_from_zero;
using ax::test::uniform;

namespace {

using test::Vars;

void check(const GradcheckFunction& f, const std::vector<Tensor<double>>& inputs) { test::check_gradients(f, inputs); }

const std::vector<Shape> shapes = {{1, 1}, {1, 5}, {3, 4}, {2, 3, 5}, {2, 2, 2, 3}};

}  // namespace

TEST_CASE("gradcheck: unary elementwise ops") {
  std::mt19937_64 rng(11);
  for (const Shape& s : shapes) {
    CAPTURE(to_string(s));
    const Tensor<double> x = uniform(s, -2, 2, rng);
    const Tensor<double> kinked = away_from_zero(s, 0.05, 2, rng);  // relu-like ops: no kink within h
    const Tensor<double> positive = uniform(s, 0.2, 3, rng);
    check([](Tape<double>&, const Vars& v) { return exp(v[0]); }, {x});
    check([](Tape<double>&, const Vars& v) { return log(v[0]); }, {positive});
    check([](Tape<double>&, const Vars& v) { return sigmoid(v[0]); }, {x});
    check([](Tape<double>&, const Vars& v) { return tanh(v[0]); }, {x});
    check([](Tape<double>&, const Vars& v) { return relu(v[0]); }, {kinked});
    check([](Tape<double>&, const Vars& v) { return leaky_relu(v[0], 0.2); }, {kinked});
    check([](Tape<double>&, const Vars& v) { return hardtanh(v[0], -1.5, 0.0); }, {kinked});  // kinks at 0 and -1.5
    check([](Tape<double>&, const Vars& v) { return -v[0]; }, {x});
    check([](Tape<double>&, const Vars& v) { return 3.5 * v[0]; }, {x});
    check([](Tape<double>&, const Vars& v) { return v[0] + 2.0; }, {x});
    check([](Tape<double>&, const Vars& v) { return 1.0 - v[0]; }, {x});
    check([](Tape<double>&, const Vars& v) { return v[0] / 4.0; }, {x});
  }
}

TEST_CASE("gradcheck: binary elementwise ops") {
  std::mt19937_64 rng(12);
  for (const Shape& s : shapes) {
    CAPTURE(to_string(s));
    const Tensor<double> a = uniform(s, -2, 2, rng), b = uniform(s, -2, 2, rng);
    const Tensor<double> denominator = away_from_zero(s, 0.5, 2, rng);
    check([](Tape<double>&, const Vars& v) { return v[0] + v[1]; }, {a, b});
    check([](Tape<double>&, const Vars& v) { return v[0] - v[1]; }, {a, b});
    check([](Tape<double>&, const Vars& v) { return v[0] * v[1]; }, {a, b});
    check([](Tape<double>&, const Vars& v) { return v[0] / v[1]; }, {a, denominator});
    // one input used twice: the contributions of both uses add up
    check([](Tape<double>&, const Vars& v) { return v[0] * v[0]; }, {a});
    check([](Tape<double>&, const Vars& v) { return v[0] / v[0]; }, {denominator});
  }
}

TEST_CASE("gradcheck: matmul and linear") {
  std::mt19937_64 rng(13);
  struct Case { Shape x, w; };
  for (const Case& c : {Case{{1, 3}, {3, 2}}, Case{{4, 5}, {5, 3}}, Case{{2, 3, 4}, {4, 2}}, Case{{7, 1}, {1, 6}}}) {
    CAPTURE(to_string(c.x));
    const Tensor<double> x = uniform(c.x, -1, 1, rng), w = uniform(c.w, -1, 1, rng);
    check([](Tape<double>&, const Vars& v) { return matmul(v[0], v[1]); }, {x, w});
    // linear takes w as [O, I]: the transpose of matmul's [K, N]
    const Tensor<double> wt = uniform({c.w[1], c.w[0]}, -1, 1, rng), bias = uniform({c.w[1]}, -1, 1, rng);
    check([](Tape<double>&, const Vars& v) { return linear(v[0], v[1]); }, {x, wt});
    check([](Tape<double>&, const Vars& v) { return linear(v[0], v[1], v[2]); }, {x, wt, bias});
  }
}

TEST_CASE("gradcheck: sum and mean, whole and along each axis") {
  std::mt19937_64 rng(14);
  for (const Shape& s : {Shape{1, 4}, Shape{3, 4}, Shape{2, 3, 5}}) {
    CAPTURE(to_string(s));
    const Tensor<double> x = uniform(s, -2, 2, rng);
    check([](Tape<double>&, const Vars& v) { return sum(v[0]); }, {x});
    check([](Tape<double>&, const Vars& v) { return mean(v[0]); }, {x});
    for (int axis = -static_cast<int>(s.size()); axis < static_cast<int>(s.size()); ++axis)
      for (bool keep : {false, true}) {
        CAPTURE(axis);
        CAPTURE(keep);
        check([=](Tape<double>&, const Vars& v) { return sum(v[0], axis, keep); }, {x});
        check([=](Tape<double>&, const Vars& v) { return mean(v[0], axis, keep); }, {x});
      }
  }
}

TEST_CASE("gradcheck: reshape, flatten and concat") {
  std::mt19937_64 rng(15);
  const Tensor<double> x = uniform({2, 3, 4}, -1, 1, rng);
  check([](Tape<double>&, const Vars& v) { return reshape(v[0], {4, 3}); }, {x});
  check([](Tape<double>&, const Vars& v) { return reshape(v[0], {2, -1, 3}); }, {x});
  check([](Tape<double>&, const Vars& v) { return flatten(v[0]); }, {x});
  check([](Tape<double>&, const Vars& v) { return flatten(v[0], 2); }, {x});
  const Tensor<double> y = uniform({2, 5, 4}, -1, 1, rng), z = uniform({2, 1, 4}, -1, 1, rng);
  check([](Tape<double>&, const Vars& v) { return concat(std::vector<Var<double>>{v[0], v[1], v[2]}, 1); }, {x, y, z});
  check([](Tape<double>&, const Vars& v) { return concat(std::vector<Var<double>>{v[0], v[0]}, -1); }, {x});
  check([](Tape<double>&, const Vars& v) { return concat(std::vector<Var<double>>{v[0], v[1]}, 0); }, {x, x});
}

TEST_CASE("gradcheck: softmax and log_softmax along each axis") {
  std::mt19937_64 rng(16);
  for (const Shape& s : {Shape{1, 1}, Shape{1, 6}, Shape{4, 10}, Shape{2, 3, 5}}) {
    const Tensor<double> x = uniform(s, -3, 3, rng);
    for (int axis = 0; axis < static_cast<int>(s.size()); ++axis) {
      CAPTURE(to_string(s));
      CAPTURE(axis);
      check([=](Tape<double>&, const Vars& v) { return softmax(v[0], axis); }, {x});
      check([=](Tape<double>&, const Vars& v) { return log_softmax(v[0], axis); }, {x});
    }
  }
}

TEST_CASE("gradcheck: a small network, with the batch as its leading dimension") {
  std::mt19937_64 rng(17);
  const Tensor<double> x = uniform({5, 6}, -1, 1, rng);
  const Tensor<double> w1 = uniform({8, 6}, -1, 1, rng), b1 = uniform({8}, -0.1, 0.1, rng);
  const Tensor<double> w2 = uniform({3, 8}, -1, 1, rng);
  check(
      [](Tape<double>&, const Vars& v) {
        const Var<double> h = tanh(linear(v[0], v[1], v[2]));
        return mean(log_softmax(linear(h, v[3])) * sigmoid(linear(h, v[3])));
      },
      {x, w1, b1, w2});
}

TEST_CASE("forward values match closed forms") {
  std::mt19937_64 rng(18);
  Tape<double> tape;
  const Tensor<double> xv = uniform({3, 4}, -2, 2, rng);
  const Var<double> x = tape.input(xv);
  const auto value = [&](Var<double> v) { return tape.value(v); };

  CHECK(test::max_abs_diff(value(exp(x)), Tensor<double>(xt::exp(xv))) < 1e-15);
  CHECK(test::max_abs_diff(value(tanh(x)), Tensor<double>(xt::tanh(xv))) < 1e-15);
  CHECK(test::max_abs_diff(value(sigmoid(x)), Tensor<double>(1.0 / (1.0 + xt::exp(-xv)))) < 1e-15);
  CHECK(test::max_abs_diff(value(relu(x)), Tensor<double>(xt::maximum(xv, 0.0))) == 0);
  CHECK(test::max_abs_diff(value(1.0 - 2.0 * x), Tensor<double>(1.0 - 2.0 * xv)) == 0);

  // softmax rows sum to one; log_softmax is its log
  const Tensor<double> p = value(softmax(x));
  const Tensor<double> row_sums = xt::sum(p, {1});
  for (double s : row_sums) CHECK(s == doctest::Approx(1.0).epsilon(1e-15));
  CHECK(test::max_abs_diff(value(log_softmax(x)), Tensor<double>(xt::log(p))) < 1e-15);

  // sum and mean along an axis, keep_dim
  const Var<double> s1 = sum(x, 1, true);
  CHECK(tape.value(s1).shape() == Shape{3, 1});
  CHECK(test::max_abs_diff(value(s1), Tensor<double>(xt::sum(xv, {1}, xt::keep_dims))) < 1e-15);
  CHECK(tape.value(mean(x, 0)).shape() == Shape{4});
  CHECK(tape.value(sum(x)).shape() == Shape{});
  CHECK(tape.value(sum(x))() == doctest::Approx(xt::sum(xv)()).epsilon(1e-15));

  // matmul and linear against the index formula
  const Tensor<double> wv = uniform({4, 2}, -1, 1, rng);
  const Tensor<double> y = value(matmul(x, tape.parameter(wv)));
  for (std::size_t i = 0; i < 3; ++i)
    for (std::size_t j = 0; j < 2; ++j) {
      double expected = 0;
      for (std::size_t k = 0; k < 4; ++k) expected += xv(i, k) * wv(k, j);
      CHECK(y(i, j) == doctest::Approx(expected).epsilon(1e-14));
    }

  // concat places its inputs one after the other
  const Tensor<double> c = value(concat(std::vector<Var<double>>{x, 2.0 * x}, 1));
  CHECK(c.shape() == Shape{3, 8});
  CHECK(c(2, 1) == xv(2, 1));
  CHECK(c(2, 5) == 2.0 * xv(2, 1));
}

TEST_CASE("softmax and log_softmax are stable for large inputs") {
  Tape<double> tape;
  const Var<double> x = tape.input(from_values<double>({1, 3}, {1000.0, 1001.0, -1000.0}));
  const Tensor<double> p = tape.value(softmax(x));
  const Tensor<double> lp = tape.value(log_softmax(x));
  CHECK(p(0, 1) == doctest::Approx(1.0 / (1.0 + std::exp(-1.0))));
  CHECK(p(0, 2) == 0.0);
  CHECK(lp(0, 2) == doctest::Approx(-2001.0 - std::log1p(std::exp(-1.0))));
  for (double v : lp) CHECK(std::isfinite(v));
}

TEST_CASE("kinks are pinned: relu'(0) = 0 and leaky_relu'(0) = slope") {
  for (double slope : {0.0, 0.25}) {
    Tape<double> tape;
    const Var<double> x = tape.input(from_values<double>({1, 3}, {-1.0, 0.0, 1.0}));
    const Var<double> y = slope == 0.0 ? relu(x) : leaky_relu(x, slope);
    tape.backward(y);
    const Tensor<double>& g = tape.grad(x);
    CHECK(g(0, 0) == slope);
    CHECK(g(0, 1) == slope);  // the kink takes the left slope: 0 for relu
    CHECK(g(0, 2) == 1.0);
    tape.set_direction(x, full<double>({1, 3}, 1.0));
    tape.tangent();
    CHECK(tape.tangent(y)(0, 1) == slope);
  }
}

TEST_CASE("kinks are pinned: hardtanh's slope is 0 at both ends, 1 between (ReLU6 as its common case)") {
  Tape<double> tape;
  const Var<double> x = tape.input(from_values<double>({1, 6}, {-1.0, 0.0, 0.5, 6.0, 7.0, 3.0}));
  const Var<double> y = relu6(x);
  CHECK(tape.value(y) == from_values<double>({1, 6}, {0.0, 0.0, 0.5, 6.0, 6.0, 3.0}));
  tape.backward(y);
  CHECK(tape.grad(x) == from_values<double>({1, 6}, {0.0, 0.0, 1.0, 0.0, 0.0, 1.0}));
  tape.set_direction(x, full<double>({1, 6}, 2.0));
  tape.tangent();
  CHECK(tape.tangent(y) == from_values<double>({1, 6}, {0.0, 0.0, 2.0, 0.0, 0.0, 2.0}));
  CHECK_THROWS_WITH_AS(hardtanh(x, 1.0, 1.0), doctest::Contains("min_val 1 must be below max_val 1"), Error);
}

TEST_CASE("mismatched shapes are refused with the op and the shapes named") {
  Tape<double> tape;
  const Var<double> a = tape.input(zeros<double>({2, 3}));
  const Var<double> b = tape.input(zeros<double>({3, 2}));
  const std::size_t before = tape.size();
  CHECK_THROWS_WITH_AS(
      a + b,
      "node 2 (add): input shapes [2, 3] and [3, 2] do not broadcast (NumPy rules: aligned at the last dimension, sizes equal or 1)",
      Error);
  CHECK(tape.size() == before);  // the failed node is not kept
  CHECK_THROWS_WITH_AS(matmul(a, a), doctest::Contains("cannot multiply shapes [2, 3] and [2, 3]"), Error);
  CHECK_THROWS_WITH_AS(linear(a, b), doctest::Contains("does not fit weight [3, 2]"), Error);
  CHECK_THROWS_WITH_AS(sum(a, 2), doctest::Contains("axis 2 is out of range"), Error);
  CHECK_THROWS_WITH_AS(reshape(a, {4}), doctest::Contains("element counts differ"), Error);
  CHECK_THROWS_WITH_AS(flatten(a, 0), doctest::Contains("batch"), Error);
  CHECK_THROWS_WITH_AS(concat(std::vector<Var<double>>{a, b}, 1), doctest::Contains("does not fit"), Error);
  Tape<double> other;
  const Var<double> c = other.input(zeros<double>({2, 3}));
  CHECK_THROWS_WITH_AS(a + c, doctest::Contains("not all on one tape"), Error);
}
