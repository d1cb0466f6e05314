// SIMD activation kernels against their scalar references, on sizes that are not multiples of
// the vector width, and bitwise equal on one thread or two.
#include "autodiff/kernels/activation.hpp"
#include "support.hpp"

#include <doctest/doctest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

using namespace ax;

namespace {

template <class T>
std::vector<T> random_values(std::size_t n, std::uint64_t seed, double scale = 3.0) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-scale, scale);
  std::vector<T> v(n);
  for (T& x : v) x = T(u(rng));
  if (n > 2) v[1] = T(0);  // the kink itself
  return v;
}

template <class T>
void check_relu(std::size_t n) {
  const std::vector<T> x = random_values<T>(n, n), g = random_values<T>(n, n + 1);
  std::vector<T> fast(n), slow(n), gf(g), gs(g);
  kernels::relu_forward(x.data(), fast.data(), n);
  kernels::relu_forward_reference(x.data(), slow.data(), n);
  CHECK(fast == slow);
  kernels::relu_backward(x.data(), g.data(), gf.data(), n);
  kernels::relu_backward_reference(x.data(), g.data(), gs.data(), n);
  CHECK(gf == gs);
  kernels::relu_tangent(x.data(), g.data(), fast.data(), n);
  kernels::relu_tangent_reference(x.data(), g.data(), slow.data(), n);
  CHECK(fast == slow);
}

template <class T>
void check_softmax(std::size_t rows, std::size_t n) {
  const std::vector<T> x = random_values<T>(rows * n, rows * 31 + n, 20.0);
  std::vector<T> fast(rows * n), slow(rows * n);
  // xsimd's exp is within a few ulps of std::exp
  const double tolerance = 16 * std::numeric_limits<T>::epsilon();
  kernels::softmax(x.data(), fast.data(), rows, n, 1);
  kernels::softmax_reference(x.data(), slow.data(), rows, n, 1);
  for (std::size_t i = 0; i < x.size(); ++i) CHECK(std::abs(double(fast[i]) - double(slow[i])) <= tolerance * std::max(1e-30, double(slow[i])) + 1e-300);
  kernels::log_softmax(x.data(), fast.data(), rows, n, 1);
  kernels::log_softmax_reference(x.data(), slow.data(), rows, n, 1);
  for (std::size_t i = 0; i < x.size(); ++i) CHECK(std::abs(double(fast[i]) - double(slow[i])) <= tolerance * (1 + std::abs(double(slow[i]))));
}

}  // namespace

TEST_CASE("SIMD relu equals its reference bit for bit, on awkward sizes") {
  for (std::size_t n : {1, 3, 7, 8, 9, 15, 16, 17, 33, 1000, (1 << 17) + 5}) {
    CAPTURE(n);
    check_relu<float>(n);
    check_relu<double>(n);
  }
}

TEST_CASE("SIMD softmax and log_softmax rows match the reference within a few ulps") {
  for (std::size_t rows : {1, 3, 50})
    for (std::size_t n : {1, 3, 7, 10, 17, 33, 1000}) {
      CAPTURE(rows);
      CAPTURE(n);
      check_softmax<float>(rows, n);
      check_softmax<double>(rows, n);
    }
}

TEST_CASE("fill writes every element, on sizes around the vector width and the thread blocks") {
  for (std::size_t n : {1, 7, 9, 33, (1 << 17) + 5}) {
    std::vector<float> v(n + 1, 1.f);
    kernels::fill(v.data(), n, 0.f);
    CHECK(std::count(v.begin(), v.end() - 1, 0.f) == long(n));
    CHECK(v.back() == 1.f);  // and nothing past n
  }
}

TEST_CASE("activation kernels give the same bits on one thread or two") {
  const std::size_t n = (1 << 19) + 3;
  const std::vector<float> x = random_values<float>(n, 5), g = random_values<float>(n, 6);
  std::vector<float> one(n), two(n), p1(n), p2(n);
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  kernels::relu_forward(x.data(), one.data(), n);
  kernels::softmax(x.data(), p1.data(), 512, 1024, 1);
  omp_set_num_threads(2);
  kernels::relu_forward(x.data(), two.data(), n);
  kernels::softmax(x.data(), p2.data(), 512, 1024, 1);
  omp_set_num_threads(threads);
  CHECK(one == two);
  CHECK(p1 == p2);
}
