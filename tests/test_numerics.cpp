// Numerics at the edges: finite inputs near the type's limits, denormals and large logits never
// become NaN in softmax, log-softmax, sigmoid, exp, log, batch norm, normalize and the pools,
// forward or backward (an overflow may give an infinity, which the engine then names). In float
// and double.
#include "autodiff/ops.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

using namespace ax;

namespace {

template <class T>
std::vector<T> extremes() {
  using L = std::numeric_limits<T>;
  return {T(0),      L::denorm_min(), -L::denorm_min(), L::min(), -L::min(), T(1e-30), T(1),         T(-1),
          T(80),     T(-80),          T(700),           T(-700),  L::max(),  L::lowest(), L::max() / 2, L::lowest() / 2};
}

template <class T>
bool has_nan(const Tensor<T>& t) {
  for (std::size_t i = 0; i < t.size(); ++i)
    if (std::isnan(t.data()[i])) return true;
  return false;
}

// Records `op` on an input [1, C, H, W] made of `values` and runs backward with a seed of ones:
// neither the value nor the input's gradient may hold a NaN.
template <class T, class Op>
void check_no_nan(const std::string& name, const Shape& shape, const std::vector<T>& values, Op op) {
  CAPTURE(name);
  Tape<T> tape;
  Tensor<T> x(shape);
  for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = values[i % values.size()];
  const Var<T> in = tape.input(x);
  const Var<T> y = op(in);
  CHECK_FALSE(has_nan(tape.value(y)));
  tape.backward(y);
  CHECK_FALSE(has_nan(tape.grad(in)));
  tape.forward();  // the replay too
  CHECK_FALSE(has_nan(tape.value(y)));
}

// Values laid out so that 2x2 windows hold both +max and -max in different rows.
template <class T>
std::vector<T> opposing_rows() {
  using L = std::numeric_limits<T>;
  const T hi = L::max(), lo = L::lowest();
  return {hi, hi, hi, hi, lo, lo, lo, lo, hi, lo, hi, lo, lo, hi, lo, hi};
}

template <class T>
void edges() {
  using L = std::numeric_limits<T>;
  const std::vector<T> values = extremes<T>();
  const Shape rows{4, 16};
  check_no_nan<T>("softmax", rows, values, [](Var<T> x) { return softmax(x, 1); });
  check_no_nan<T>("log_softmax", rows, values, [](Var<T> x) { return log_softmax(x, 1); });
  check_no_nan<T>("softmax, strided", Shape{4, 16, 2}, values, [](Var<T> x) { return softmax(x, 1); });
  check_no_nan<T>("log_softmax, strided", Shape{4, 16, 2}, values, [](Var<T> x) { return log_softmax(x, 1); });
  check_no_nan<T>("sigmoid", rows, values, [](Var<T> x) { return sigmoid(x); });
  check_no_nan<T>("exp", rows, values, [](Var<T> x) { return exp(x); });
  std::vector<T> positive;
  for (T v : values)
    if (v > 0) positive.push_back(v);
  check_no_nan<T>("log", Shape{positive.size()}, positive, [](Var<T> x) { return log(x); });

  // per channel: weights 0, 1 and tiny; means 0, the lowest and the largest value
  const Shape image{2, 3, 4, 4};
  const auto channel = [](Tape<T>& tape, std::vector<T> v, const char* label) {
    Tensor<T> t(Shape{3});
    std::copy(v.begin(), v.end(), t.data());
    return tape.parameter(t, false, label);
  };
  check_no_nan<T>("batchnorm2d", image, values, [&](Var<T> x) {
    Tape<T>& tape = *x.tape;
    return batchnorm2d(x, channel(tape, {T(0), L::lowest(), L::max()}, "mean"), channel(tape, {T(1), T(0), L::max()}, "var"),
                       channel(tape, {T(0), T(1), T(1e-30)}, "weight"), channel(tape, {T(0), T(2), T(-1)}, "bias"), 1e-5);
  });
  check_no_nan<T>("batchnorm2d, opposing rows", image, opposing_rows<T>(), [&](Var<T> x) {
    Tape<T>& tape = *x.tape;
    return batchnorm2d(x, channel(tape, {L::lowest(), L::max(), T(0)}, "mean"), channel(tape, {T(1), T(1), T(1)}, "var"),
                       channel(tape, {T(0), T(0), T(0)}, "weight"), channel(tape, {T(1), T(2), T(3)}, "bias"), 1e-5);
  });
  // std below float's smallest denormal: 0 once rounded to float, and x == mean there
  const double tiny = std::is_same_v<T, float> ? 1e-50 : 1e-320;
  check_no_nan<T>("normalize", image, values, [&](Var<T> x) {
    return normalize(x, {0.0, double(L::max()), -1e300}, {tiny, 1.0, 1e300});
  });
  for (const std::vector<T>& v : {values, opposing_rows<T>()}) {
    check_no_nan<T>("maxpool2d", image, v, [](Var<T> x) { return maxpool2d(x, 2); });
    check_no_nan<T>("avgpool2d", image, v, [](Var<T> x) { return avgpool2d(x, 2); });
    check_no_nan<T>("avgpool2d, overlapping", image, v, [](Var<T> x) { return avgpool2d(x, 3, 1, 1); });
    check_no_nan<T>("adaptive_avgpool2d", image, v, [](Var<T> x) { return adaptive_avgpool2d(x, {3, 3}); });
    check_no_nan<T>("adaptive_avgpool2d, one value", image, v, [](Var<T> x) { return adaptive_avgpool2d(x, {1, 1}); });
  }
  // wide rows: the SIMD paths of the pools, not only their edges
  std::vector<T> wide;
  for (int r = 0; r < 64; ++r)
    for (int c = 0; c < 64; ++c) wide.push_back(r % 2 ? L::lowest() : L::max());
  check_no_nan<T>("avgpool2d, wide", Shape{1, 1, 64, 64}, wide, [](Var<T> x) { return avgpool2d(x, 2); });
  check_no_nan<T>("avgpool2d 4x4, wide", Shape{1, 1, 64, 64}, wide, [](Var<T> x) { return avgpool2d(x, 4, 1); });
}

}  // namespace

TEST_CASE("finite inputs at the edges never give NaN: float") { edges<float>(); }

TEST_CASE("finite inputs at the edges never give NaN: double") { edges<double>(); }

TEST_CASE("the edges keep their values: softmax of huge logits, sigmoid's tails, a pool of opposing rows") {
  using L = std::numeric_limits<float>;
  Tape<float> tape;
  const Var<float> z = tape.input(from_values<float>({1, 3}, {L::max(), L::lowest(), 0.0f}));
  const Tensor<float>& p = tape.value(softmax(z, 1));
  CHECK(p(0, 0) == 1.0f);
  CHECK(p(0, 1) == 0.0f);
  const Tensor<float>& lp = tape.value(log_softmax(z, 1));
  CHECK(lp(0, 0) == 0.0f);
  CHECK(std::isinf(lp(0, 1)));  // -max - max is below the float range: -inf, not NaN
  const Tensor<float>& s = tape.value(sigmoid(z));
  CHECK(s(0, 0) == 1.0f);
  CHECK(s(0, 1) == 0.0f);
  CHECK(s(0, 2) == 0.5f);
  // the average of max, max, lowest, lowest is 0 (exactly, in a wider sum)
  const Var<float> rows = tape.input(from_values<float>({1, 1, 2, 2}, {L::max(), L::max(), L::lowest(), L::lowest()}));
  CHECK(tape.value(avgpool2d(rows, 2))(0, 0, 0, 0) == 0.0f);
  // batch norm with weight 0 gives its bias, whatever x - mean is
  const Var<float> x = tape.input(from_values<float>({1, 1, 1, 2}, {L::max(), 1.0f}));
  const auto one = [&](float v) { return tape.parameter(from_values<float>({1}, {v})); };
  const Tensor<float>& bn = tape.value(batchnorm2d(x, one(L::lowest()), one(1.0f), one(0.0f), one(3.0f), 1e-5));
  CHECK(bn(0, 0, 0, 0) == 3.0f);
  CHECK(bn(0, 0, 0, 1) == 3.0f);
}
