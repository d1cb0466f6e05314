// The checker itself must be able to fail: an op with a wrong derivative is caught.
#include "autodiff/gradcheck.hpp"
#include "autodiff/kernels/elementwise.hpp"
#include "autodiff/ops.hpp"
#include "support.hpp"

#include <doctest/doctest.h>

using namespace ax;

namespace {

// y = x^2 with a derivative that is off by a factor: 3x instead of 2x, in one pass or both.
template <bool WrongBackward, bool WrongTangent>
struct BadSquare {
  static Shape shape(const OpContext<double>& c) { return c.x(0).shape(); }
  static void forward(OpContext<double>& c) { kernels::map(c.x(0), c.y(), [](double x) { return x * x; }); }
  static void backward(OpContext<double>& c) {
    kernels::accumulate(c.x(0), c.gy(), *c.gx(0), [](double x, double g) { return (WrongBackward ? 3 : 2) * x * g; });
  }
  static void tangent(OpContext<double>& c) {
    kernels::map2(c.x(0), *c.tx(0), c.ty(), [](double x, double t) { return (WrongTangent ? 3 : 2) * x * t; });
  }
  static const OpFns<double>& fns() {
    static const OpFns<double> table{"bad_square", &shape, &forward, &backward, &tangent};
    return table;
  }
};

template <class Op>
GradcheckReport check_op() {
  std::mt19937_64 rng(1);
  const Tensor<double> x = test::uniform({3, 4}, 0.5, 2, rng);
  return gradcheck([](Tape<double>& t, const std::vector<Var<double>>& v) { return t.record(Op::fns(), {v[0].id}); }, {x});
}

}  // namespace

TEST_CASE("gradcheck passes a correct op and catches a wrong backward or tangent") {
  const GradcheckReport good = check_op<BadSquare<false, false>>();
  CHECK(good.backward_error < 1e-8);
  CHECK(good.tangent_error < 1e-8);
  CHECK(good.dot_error < 1e-12);

  const GradcheckReport bad_backward = check_op<BadSquare<true, false>>();
  CHECK(bad_backward.backward_error > 0.1);
  CHECK(bad_backward.tangent_error < 1e-8);
  CHECK(bad_backward.dot_error > 0.01);

  const GradcheckReport bad_tangent = check_op<BadSquare<false, true>>();
  CHECK(bad_tangent.backward_error < 1e-8);
  CHECK(bad_tangent.tangent_error > 0.1);
  CHECK(bad_tangent.dot_error > 0.01);
}
