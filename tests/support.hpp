// Helpers shared by the tests: seeded random tensors, comparisons, and reading a file whole.
#pragma once

#include "autodiff/tensor.hpp"

#include <cmath>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>

namespace ax::test {

// A file's bytes ("" when it cannot be read): what a command wrote.
inline std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Uniform values in [lo, hi], from a generator seeded by the caller.
template <class T = double>
Tensor<T> uniform(const Shape& shape, double lo, double hi, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> dist(lo, hi);
  Tensor<T> t(shape);
  for (T& v : t) v = static_cast<T>(dist(rng));
  return t;
}

// Uniform in [-hi, -lo] or [lo, hi] with a random sign: values kept away from a kink at 0.
inline Tensor<double> away_from_zero(const Shape& shape, double lo, double hi, std::mt19937_64& rng) {
  Tensor<double> t = uniform(shape, lo, hi, rng);
  std::bernoulli_distribution sign(0.5);
  for (double& v : t)
    if (sign(rng)) v = -v;
  return t;
}

template <class T>
double max_abs_diff(const Tensor<T>& a, const Tensor<T>& b) {
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::fmax(m, std::abs(double(a.data()[i]) - double(b.data()[i])));
  return m;
}

template <class T>
bool same_bits(const Tensor<T>& a, const Tensor<T>& b) {
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

}  // namespace ax::test
