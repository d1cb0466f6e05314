// The op tests' gradient check with its stated tolerances: central differences with h = 1e-6
// are accurate to about 1e-9 relative on the tests' O(1) functions; the dot test is exact up to
// rounding.
#pragma once

#include "autodiff/gradcheck.hpp"

#include <doctest/doctest.h>

namespace ax::test {

using Vars = std::vector<Var<double>>;

constexpr double fd_tolerance = 1e-6;
constexpr double dot_tolerance = 1e-11;

inline void check_gradients(const GradcheckFunction& f, const std::vector<Tensor<double>>& inputs) {
  const GradcheckReport r = gradcheck(f, inputs);
  INFO(r.summary());
  CHECK(r.checked > 0);
  CHECK(r.backward_error < fd_tolerance);
  CHECK(r.tangent_error < fd_tolerance);
  CHECK(r.dot_error < dot_tolerance);
}

}  // namespace ax::test
