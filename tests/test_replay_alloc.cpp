// Replaying a recorded tape allocates nothing. This binary links alloc_counter.cpp, which
// replaces the global operator new to count heap allocations, so it runs on its own.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include "autodiff/ops.hpp"
#include "support.hpp"

#include "alloc_counter.hpp"

#include <functional>

using namespace ax;

namespace {

// A network that uses every op family: linear, elementwise, concat, reshape, reductions, softmax,
// and a convolutional branch (normalize, conv2d, batchnorm2d, the three pools) on the input seen
// as a 4 x 4 image, with one convolution weight asking for its gradient.
struct Net {
  Tape<float> tape;
  Var<float> x, out;
  explicit Net(const Tensor<float>& xv) {
    std::mt19937_64 rng(2);
    x = tape.input(xv, true, "x");
    const Var<float> w1 = tape.parameter(test::uniform<float>({32, 16}, -0.3, 0.3, rng));
    const Var<float> b1 = tape.parameter(test::uniform<float>({32}, -0.1, 0.1, rng));
    const Var<float> w2 = tape.parameter(test::uniform<float>({4, 8}, -0.3, 0.3, rng));
    const Var<float> h = relu(linear(x, w1, b1));                         // [B, 32]
    const Var<float> g = reshape(leaky_relu(h, 0.1) * sigmoid(h), {8, 4});  // [B, 8, 4]
    const Var<float> k = concat(std::vector<Var<float>>{g, tanh(g)}, 1);  // [B, 16, 4]
    const Var<float> m = mean(matmul(k, w2), 1);                          // [B, 8]
    const Var<float> dense = sum(log_softmax(flatten(exp(m / 2.0) - 1.0)) + softmax(m) / (exp(m) + 1.0));

    const Var<float> image = normalize(reshape(x, {1, 4, 4}), {0.5}, {2.0});  // [B, 1, 4, 4]
    const Var<float> wc = tape.parameter(test::uniform<float>({4, 1, 3, 3}, -0.5, 0.5, rng));
    const Var<float> bc = tape.parameter(test::uniform<float>({4}, -0.1, 0.1, rng));
    const Var<float> running_mean = tape.parameter(test::uniform<float>({4}, -0.1, 0.1, rng));
    const Var<float> running_var = tape.parameter(test::uniform<float>({4}, 0.5, 1.5, rng));
    const Var<float> gamma = tape.parameter(test::uniform<float>({4}, 0.5, 1.5, rng));
    const Var<float> beta = tape.parameter(test::uniform<float>({4}, -0.1, 0.1, rng));
    const Var<float> wg = tape.parameter(test::uniform<float>({4, 2, 3, 3}, -0.5, 0.5, rng), true);
    const Var<float> c1 = batchnorm2d(conv2d(image, wc, bc, 1, 1), running_mean, running_var, gamma, beta);
    const Var<float> c2 = conv2d(relu(c1), wg, 1, 2, 2, 2);                                   // [B, 4, 4, 4]
    const Var<float> p = avgpool2d(maxpool2d(c2, 2), 3, 1, 1, true, false);                   // [B, 4, 2, 2]
    out = dense + sum(adaptive_avgpool2d(p, {3, 1}));
  }
};

long count(const std::function<void()>& f) {
  const long before = test::heap_allocations();
  f();
  return test::heap_allocations() - before;
}

}  // namespace

TEST_CASE("replay, backward and tangent allocate nothing in the steady state") {
  std::mt19937_64 rng(1);
  const Tensor<float> x8 = test::uniform<float>({8, 16}, -1, 1, rng);
  const Tensor<float> other8 = test::uniform<float>({8, 16}, -1, 1, rng);
  const Tensor<float> x4 = test::uniform<float>({4, 16}, -1, 1, rng);
  const Tensor<float> direction8 = test::uniform<float>({8, 16}, -1, 1, rng);
  const Tensor<float> direction4 = test::uniform<float>({4, 16}, -1, 1, rng);
  Net net(x8);
  // The first backward and tangent size their buffers.
  net.tape.backward(net.out);
  net.tape.set_direction(net.x, direction8);
  net.tape.tangent();
  CHECK(test::heap_allocations() > 0);  // the counter works

  CHECK(count([&] {
          net.tape.set_value(net.x, other8);
          net.tape.forward();
        }) == 0);
  CHECK(count([&] {
          net.tape.zero_grad();
          net.tape.backward(net.out);
        }) == 0);
  CHECK(count([&] {
          net.tape.set_direction(net.x, direction8);
          net.tape.tangent();
        }) == 0);
  // A smaller batch after a larger one fits in the buffers already there.
  CHECK(count([&] {
          net.tape.set_value(net.x, x4);
          net.tape.forward();
          net.tape.zero_grad();
          net.tape.backward(net.out);
          net.tape.set_direction(net.x, direction4);
          net.tape.tangent();
        }) == 0);
  CHECK(net.tape.stats().forward_nodes > 15);
}
