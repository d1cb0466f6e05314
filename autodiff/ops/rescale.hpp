// DeepLIFT's rescale rule (Shrikumar et al., 2017), the `rescale` pass of the ops that are not
// linear. The tape's rescale_backward runs on a batch of B inputs followed by their B references
// (rows [0, B) and [B, 2B)) and, where an op's backward would multiply by the derivative f'(x),
// multiplies by the secant (f(x) - f(x')) / (x - x') instead. Where |x - x'| is at most
// rescale_epsilon the secant is ill-conditioned and the derivative at x stands in (the
// contribution is then at most epsilon times the slope: Captum's choice too). Reference rows get
// no gradient.
#pragma once

#include "common.hpp"

#include <cmath>

namespace ax::ops {

template <class T>
constexpr T rescale_epsilon() {
  return std::is_same_v<T, float> ? T(1e-6) : T(1e-10);
}

// The rows of a rescale pass: B inputs, then their B references.
template <class T>
std::size_t rescale_half(const OpContext<T>& c, const Tensor<T>& t) {
  const std::size_t batch = c.x(0).shape().empty() ? 0 : c.x(0).shape()[0];
  if (batch % 2 != 0)
    c.fail("the rescale pass needs a batch of inputs followed by as many references, found a batch of " +
           std::to_string(batch));
  return t.size() / 2;
}

// An elementwise op: gx += gy (y - y') / (x - x') on the input rows, `slope(x, y)` where x ~ x'.
template <class T, class Slope>
void rescale_elementwise(OpContext<T>& c, Slope slope) {
  const std::size_t half = rescale_half(c, c.y());
  const T* x = c.x(0).data();
  const T* y = c.y().data();
  const T* gy = c.gy().data();
  T* gx = c.gx(0)->data();
  const T eps = rescale_epsilon<T>();
  // [B inputs' values]; reference i is at half + i
  for (std::size_t i = 0; i < half; ++i) {
    const T dx = x[i] - x[half + i];
    const T multiplier = std::abs(dx) > eps ? (y[i] - y[half + i]) / dx : slope(x[i], y[i]);
    gx[i] += gy[i] * multiplier;
  }
}

}  // namespace ax::ops
