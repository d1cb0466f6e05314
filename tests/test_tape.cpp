// The tape's four passes: what backward visits, replay, repeated backward, tangent, and the
// sensitivity example of the Integrated Gradients paper.
#include "autodiff/gradcheck.hpp"
#include "autodiff/ops.hpp"
#include "gradcheck_support.hpp"
#include "support.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

using namespace ax;
using ax::test::same_bits;
using ax::test::uniform;
using ax::test::Vars;

namespace {

// y = sum(relu(x W^T + b)) + sum(exp(b)): the second term does not depend on x.
template <class T>
struct SmallNet {
  Tape<T> tape;
  Var<T> x, w, b, out;
  SmallNet(const Tensor<T>& xv, const Tensor<T>& wv, const Tensor<T>& bv) {
    x = tape.input(xv, true, "x");
    w = tape.parameter(wv, false, "w");
    b = tape.parameter(bv, false, "b");
    out = sum(relu(linear(x, w, b))) + sum(exp(b));
  }
};

struct Data {
  Tensor<double> x, w, b;
  explicit Data(std::size_t batch, std::uint64_t seed = 3) {
    std::mt19937_64 rng(seed);
    x = uniform({batch, 5}, -1, 1, rng);
    w = uniform({4, 5}, -1, 1, rng);
    b = uniform({4}, -0.2, 0.2, rng);
  }
};

}  // namespace

TEST_CASE("backward visits only nodes that depend on a leaf asking for gradients") {
  const Data d(3);
  SmallNet<double> net(d.x, d.w, d.b);
  // ops: linear, relu, sum, exp, sum, add; exp(b) and its sum do not depend on x
  net.tape.backward(net.out);
  CHECK(net.tape.stats().backward_nodes == 4);
  CHECK_FALSE(net.tape.requires_grad(net.w));
  CHECK_FALSE(net.tape.requires_grad(net.b));
  CHECK(net.tape.node(net.w).grad.size() <= 1);  // never sized: the weights' gradient is not computed
  CHECK_THROWS_WITH_AS(net.tape.grad(net.w), doctest::Contains("does not require grad"), Error);
  CHECK(net.tape.grad(net.x).shape() == d.x.shape());

  // Asking for the weights' gradient too: now every op node is visited, and dy/dw is right.
  net.tape.set_requires_grad(net.w, true);
  net.tape.zero_grad();
  net.tape.backward(net.out);
  CHECK(net.tape.stats().backward_nodes == 4);  // exp(b) still needs no visit: b does not ask
  const Tensor<double>& gw = net.tape.grad(net.w);
  for (std::size_t o = 0; o < 4; ++o)
    for (std::size_t i = 0; i < 5; ++i) {
      double expected = 0;  // sum over rows r where unit o is active of x[r, i]
      for (std::size_t r = 0; r < 3; ++r) {
        double pre = d.b(o);
        for (std::size_t k = 0; k < 5; ++k) pre += d.x(r, k) * d.w(o, k);
        if (pre > 0) expected += d.x(r, i);
      }
      CHECK(gw(o, i) == doctest::Approx(expected).epsilon(1e-14));
    }
  net.tape.set_requires_grad(net.b, true);
  net.tape.backward(net.out);
  CHECK(net.tape.stats().backward_nodes == 6);
}

TEST_CASE("replaying with a new input gives the bits of a fresh recording") {
  const Data first(3, 3), second(3, 4);
  SmallNet<double> replayed(first.x, first.w, first.b);
  replayed.tape.set_value(replayed.x, second.x);
  replayed.tape.forward();
  SmallNet<double> fresh(second.x, first.w, first.b);
  CHECK(same_bits(replayed.tape.value(replayed.out), fresh.tape.value(fresh.out)));
  CHECK(replayed.tape.stats().forward_nodes == 6);

  // another batch size, then back
  for (std::size_t batch : {7, 1, 3}) {
    CAPTURE(batch);
    const Data other(batch, 10 + batch);
    replayed.tape.set_value(replayed.x, other.x);
    replayed.tape.forward();
    replayed.tape.zero_grad();
    replayed.tape.backward(replayed.out);
    SmallNet<double> again(other.x, first.w, first.b);
    again.tape.backward(again.out);
    CHECK(same_bits(replayed.tape.value(replayed.out), again.tape.value(again.out)));
    CHECK(same_bits(replayed.tape.grad(replayed.x), again.tape.grad(again.x)));
  }
}

TEST_CASE("many replays and backward passes with different seeds match fresh recordings") {
  std::mt19937_64 rng(5);
  const Tensor<double> w = uniform({6, 4}, -1, 1, rng), v = uniform({3, 6}, -1, 1, rng);
  auto build = [&](Tape<double>& tape, const Tensor<double>& xv) {
    const Var<double> x = tape.input(xv, true, "x");
    const Var<double> h = tanh(linear(x, tape.parameter(w)));
    return std::pair{x, softmax(linear(h, tape.parameter(v))) * 3.0};
  };
  Tape<double> tape;
  auto [x, y] = build(tape, uniform({2, 4}, -1, 1, rng));
  for (int round = 0; round < 20; ++round) {
    CAPTURE(round);
    const Tensor<double> xv = uniform({2, 4}, -1, 1, rng);
    const Tensor<double> seed = uniform({2, 3}, -1, 1, rng);
    tape.set_value(x, xv);
    tape.forward();
    tape.zero_grad();
    tape.backward(y, seed);
    Tape<double> fresh;
    auto [fx, fy] = build(fresh, xv);
    fresh.backward(fy, seed);
    CHECK(same_bits(tape.value(y), fresh.value(fy)));
    CHECK(same_bits(tape.grad(x), fresh.grad(fx)));
  }
}

TEST_CASE("leaf gradients accumulate across backward passes, intermediates do not") {
  const Data d(2);
  SmallNet<double> net(d.x, d.w, d.b);
  net.tape.backward(net.out);
  const Tensor<double> once = net.tape.grad(net.x);
  net.tape.backward(net.out);
  const Tensor<double> twice = net.tape.grad(net.x);
  CHECK(test::max_abs_diff(Tensor<double>(2.0 * once), twice) == 0);
  net.tape.zero_grad();
  net.tape.backward(net.out);
  CHECK(same_bits(net.tape.grad(net.x), once));
}

TEST_CASE("tangent: only nodes that depend on a direction get one, and it equals J v") {
  const Data d(3);
  SmallNet<double> net(d.x, d.w, d.b);
  std::mt19937_64 rng(8);
  const Tensor<double> v = uniform(d.x.shape(), -1, 1, rng);
  net.tape.set_direction(net.x, v);
  net.tape.tangent();
  CHECK(net.tape.stats().tangent_nodes == 4);
  CHECK_THROWS_WITH_AS(net.tape.tangent(net.w), doctest::Contains("has no tangent"), Error);
  // J v = <dF/dx, v> for a scalar output
  net.tape.backward(net.out);
  double expected = 0;
  for (std::size_t i = 0; i < v.size(); ++i) expected += net.tape.grad(net.x).data()[i] * v.data()[i];
  CHECK(net.tape.tangent(net.out)() == doctest::Approx(expected).epsilon(1e-14));
  net.tape.clear_directions();
  net.tape.tangent();
  CHECK(net.tape.stats().tangent_nodes == 0);
}

TEST_CASE("derivatives through a partly differentiated network equal the full ones") {
  // gx(i) == nullptr and tx(i) == nullptr paths of the binary ops against the all-inputs case
  std::mt19937_64 rng(9);
  const Tensor<double> a = uniform({3, 4}, 0.5, 1.5, rng), b = uniform({3, 4}, 0.5, 1.5, rng);
  const Tensor<double> w = uniform({4, 2}, -1, 1, rng);
  auto build = [](Tape<double>& t, Var<double> x, Var<double> y, Var<double> m) {
    const Var<double> p = matmul(x * y + x / y - y, m);                                        // [3, 2]
    const Var<double> q = concat(std::vector<Var<double>>{matmul(y, m), matmul(x, m)}, 1) * x;  // [3, 4]
    const Var<double> r = linear(x, t.constant(full<double>({4, 4}, 0.5)), t.constant(zeros<double>({4})));
    return sum(p) + sum(q) + sum(exp(y) * r);
  };
  Tape<double> all, some;
  const Var<double> ax_ = all.input(a), ay = all.input(b), am = all.input(w);
  const Var<double> sx = some.input(a), sy = some.parameter(b), sm = some.parameter(w);
  const Var<double> fa = build(all, ax_, ay, am), fs = build(some, sx, sy, sm);
  all.backward(fa);
  some.backward(fs);
  CHECK(test::max_abs_diff(all.grad(ax_), some.grad(sx)) < 1e-14);
  const Tensor<double> v = uniform({3, 4}, -1, 1, rng);
  all.set_direction(ax_, v);
  all.set_direction(ay, zeros<double>({3, 4}));
  all.set_direction(am, zeros<double>({4, 2}));
  some.set_direction(sx, v);
  all.tangent();
  some.tangent();
  CHECK(all.tangent(fa)() == doctest::Approx(some.tangent(fs)()).epsilon(1e-14));
}

TEST_CASE("the sensitivity example: F(x) = 1 - relu(1 - x) gives the input no gradient at x = 2") {
  // Sundararajan et al. (2017), section 2.1: F(2) - F(0) = 1, yet dF/dx(2) = 0, so a gradient
  // attribution gives the only feature no credit. Integrated Gradients fixes this.
  for (double at : {2.0, 0.5, 0.0}) {
    Tape<double> tape;
    const Var<double> x = tape.input(full<double>({1, 1}, at));
    const Var<double> f = 1.0 - relu(1.0 - x);
    tape.backward(f);
    CAPTURE(at);
    if (at == 2.0) {
      CHECK(tape.value(f)(0, 0) == 1.0);
      CHECK(tape.grad(x)(0, 0) == 0.0);
    } else if (at == 0.5) {
      CHECK(tape.value(f)(0, 0) == 0.5);
      CHECK(tape.grad(x)(0, 0) == 1.0);
    } else {
      CHECK(tape.value(f)(0, 0) == 0.0);  // F(0) = 0: the difference F(2) - F(0) is 1
    }
  }
  // The same in float: the tape is a template on the scalar.
  Tape<float> tape;
  const Var<float> x = tape.input(full<float>({1, 1}, 2.0f));
  const Var<float> f = 1.0 - relu(1.0 - x);
  tape.backward(f);
  CHECK(tape.value(f)(0, 0) == 1.0f);
  CHECK(tape.grad(x)(0, 0) == 0.0f);
}

TEST_CASE("a float tape agrees with a double tape to float precision") {
  const Data d(4);
  SmallNet<double> dn(d.x, d.w, d.b);
  SmallNet<float> fn(Tensor<float>(xt::cast<float>(d.x)), Tensor<float>(xt::cast<float>(d.w)),
                     Tensor<float>(xt::cast<float>(d.b)));
  dn.tape.backward(dn.out);
  fn.tape.backward(fn.out);
  CHECK(fn.tape.value(fn.out)() == doctest::Approx(dn.tape.value(dn.out)()).epsilon(1e-5));
  for (std::size_t i = 0; i < d.x.size(); ++i)
    CHECK(fn.tape.grad(fn.x).data()[i] == doctest::Approx(dn.tape.grad(dn.x).data()[i]).epsilon(1e-5));
}

TEST_CASE("misuse is reported, not undefined") {
  Tape<double> tape, other;
  const Var<double> x = tape.input(zeros<double>({2, 2}));
  const Var<double> y = relu(x);
  const Var<double> c = tape.constant(zeros<double>({2, 2}), "c");
  CHECK_THROWS_WITH_AS(tape.value(Var<double>{&other, 0}), doctest::Contains("does not belong to this tape"), Error);
  CHECK_THROWS_WITH_AS(tape.backward(y, zeros<double>({3})), doctest::Contains("seed shape [3] differs"), Error);
  CHECK_THROWS_WITH_AS(tape.set_value(y, zeros<double>({2, 2})), "set_value: node 1 (relu) is not a leaf", Error);
  CHECK_THROWS_WITH_AS(tape.set_value(c, zeros<double>({2, 2})), "set_value: node 2 (constant 'c') is a constant", Error);
  CHECK_THROWS_WITH_AS(tape.set_direction(x, zeros<double>({2})), doctest::Contains("direction shape [2] differs"), Error);
  CHECK_THROWS_WITH_AS(tape.backward(relu(c)), doctest::Contains("depends on no leaf that requires grad"), Error);
  CHECK_THROWS_WITH_AS(tape.grad(y), doctest::Contains("has no gradient yet"), Error);
}

namespace {

// A small network over every op whose backward writes an unset gradient (conv2d, batchnorm2d,
// relu, add plain and broadcast, concat, reshape, linear) beside ops that only add (max-pool,
// mul with one input twice), with nodes read by two consumers and a weight that is itself computed.
Var<double> every_writer(Tape<double>& t, const Vars& v) {
  const Var<double> x = v[0], w = v[1], scale = v[2];
  const Var<double> w2 = w * 0.5;  // a weight computed on the tape: its gradient starts unset
  const Var<double> conv = conv2d(x, w2, t.constant(full<double>({4}, 0.1)), 1, 1);  // [2, 4, 5, 5]
  const Var<double> bn = batchnorm2d(conv, t.constant(full<double>({4}, 0.2)), t.constant(full<double>({4}, 1.5)));
  const Var<double> r = relu(bn);
  const Var<double> both = r + conv;                  // conv read by batchnorm2d and add
  const Var<double> scaled = both + scale;            // scale [4, 1, 1] broadcast
  const Var<double> joined = concat(Vars{scaled, r * r}, 1);  // [2, 8, 5, 5]; r read three times
  const Var<double> pooled = maxpool2d(joined, 2);    // [2, 8, 2, 2]
  const Var<double> flat = flatten(pooled);           // [2, 32]
  const Var<double> out = linear(flat, t.constant(full<double>({3, 32}, 0.05)));
  return sum(out * out);
}

}  // namespace

TEST_CASE("gradients that join a backward pass unset are written whole by their first writer") {
  std::mt19937_64 rng(17);
  const std::vector<Tensor<double>> inputs = {uniform({2, 3, 5, 5}, -1, 1, rng), uniform({4, 3, 3, 3}, -1, 1, rng),
                                              uniform({4, 1, 1}, -1, 1, rng)};
  test::check_gradients(every_writer, inputs);  // gradcheck poisons unset gradients with NaN

  // Poisoned or not, every gradient on the tape has the same bits, intermediates included.
  Tape<double> tapes[2];
  std::vector<Var<double>> leaves[2];
  Var<double> outs[2];
  for (int poisoned = 0; poisoned < 2; ++poisoned) {
    Tape<double>& t = tapes[poisoned];
    t.set_poison_unset_gradients(poisoned == 1);
    for (const Tensor<double>& value : inputs) leaves[poisoned].push_back(t.input(value, true));
    Vars passed;  // through a node, so that every op meets its inputs' gradients unset
    for (const Var<double>& leaf : leaves[poisoned]) passed.push_back(leaf * 1.0);
    outs[poisoned] = every_writer(t, passed);
    t.backward(outs[poisoned]);
    t.backward(outs[poisoned]);  // twice: the second pass's unset buffers hold the first's values
  }
  for (std::size_t id = 0; id < tapes[0].size(); ++id) {
    const Node<double>& clean = tapes[0].node(int(id));
    if (!clean.requires_grad) continue;
    CAPTURE(tapes[0].describe(int(id)));
    const Tensor<double>& poisoned = tapes[1].node(int(id)).grad;
    CHECK(std::all_of(poisoned.begin(), poisoned.end(), [](double g) { return std::isfinite(g); }));
    CHECK(same_bits(clean.grad, poisoned));
  }
}

TEST_CASE("a backward that stops at a node hands the frontier a gradient written whole") {
  // exact IG's segments read the gradient at a frontier below `stop`: relu writes it unset
  Tape<double> t;
  t.set_poison_unset_gradients(true);
  const Tensor<double> a_value = from_values<double>({1, 4}, {-1.0, 0.5, 0.0, 2.0});
  const Var<double> a = t.input(a_value, true);
  const Var<double> z = a * 2.0;
  const Var<double> y = relu(z);
  const Var<double> out = sum(y * y);
  const Tensor<double> one = full<double>(t.value(out).shape(), 1.0);
  t.backward({{out.id, &one}}, y.id);
  CHECK(same_bits(t.grad(z), from_values<double>({1, 4}, {0.0, 2.0, 0.0, 8.0})));  // 2 y where z > 0
}
