// NumPy broadcasting for the binary elementwise ops (add, sub, mul, div): shapes are aligned at
// their last dimension, and along each dimension the sizes are equal or one of them is 1 (a
// missing leading dimension counts as 1); the output takes the larger size. Ops run their fast
// elementwise kernels when no input is broadcast and these loops otherwise. Backward adds each
// output element's share into the input element it read, so the gradient of a broadcast input is
// summed over the dimensions it was broadcast along.
#pragma once

#include "../tape.hpp"
#include "schema.hpp"

#include <algorithm>
#include <string>
#include <vector>

namespace ax::ops {

// The shape a and b broadcast to; false when they do not.
inline bool broadcast_shape(const Shape& a, const Shape& b, Shape& out) {
  const std::size_t rank = std::max(a.size(), b.size());
  out = Shape(rank, 1);
  for (std::size_t d = 0; d < rank; ++d) {
    const std::size_t da = d + a.size() >= rank ? a[d + a.size() - rank] : 1;
    const std::size_t db = d + b.size() >= rank ? b[d + b.size() - rank] : 1;
    if (da != db && da != 1 && db != 1) return false;
    out[d] = da == 1 ? db : da;
  }
  return true;
}

// The strides of an input of shape `in` in the index space of `out`: 0 along the dimensions it
// is broadcast along (and the leading ones it lacks).
inline std::vector<std::size_t> broadcast_strides(const Shape& in, const Shape& out) {
  std::vector<std::size_t> strides(out.size(), 0);
  std::size_t stride = 1;
  for (std::size_t k = 0; k < in.size(); ++k) {
    const std::size_t d_in = in.size() - 1 - k, d_out = out.size() - 1 - k;
    if (in[d_in] != 1) strides[d_out] = stride;
    stride *= in[d_in];
  }
  return strides;
}

// Calls f(i, ia, ib) for every element i of y in row-major order, ia and ib the elements of a and
// b it reads. One thread: the sums into a broadcast input's gradient keep one order.
template <class F>
void each_broadcast(const Shape& a, const Shape& b, const Shape& y, F f) {
  const std::size_t n = numel(y), rank = y.size();
  if (n == 0) return;
  const std::vector<std::size_t> sa = broadcast_strides(a, y), sb = broadcast_strides(b, y);
  std::vector<std::size_t> index(rank, 0);
  std::size_t ia = 0, ib = 0;
  // y's elements in order; ia and ib follow y's multi-index through a's and b's strides (an odometer)
  for (std::size_t i = 0; i < n; ++i) {
    f(i, ia, ib);
    for (std::size_t d = rank; d-- > 0;) {
      ia += sa[d], ib += sb[d];
      if (++index[d] < y[d]) break;
      ia -= sa[d] * y[d], ib -= sb[d] * y[d];
      index[d] = 0;
    }
  }
}

// The three passes of y = f(a, b) with partial derivatives da(a, b, y) and db(a, b, y), element by
// element over broadcast inputs.
template <class T, class F>
void broadcast_forward(OpContext<T>& c, F f) {
  const T* a = c.x(0).data();
  const T* b = c.x(1).data();
  T* y = c.y().data();
  each_broadcast(c.x(0).shape(), c.x(1).shape(), c.y().shape(), [&](std::size_t i, std::size_t ia, std::size_t ib) {
    y[i] = f(a[ia], b[ib]);
  });
}
template <class T, class DA, class DB>
void broadcast_backward(OpContext<T>& c, DA da, DB db) {
  const T* a = c.x(0).data();
  const T* b = c.x(1).data();
  const T* y = c.y().data();
  const T* gy = c.gy().data();
  T* ga = c.gx(0) ? c.gx(0)->data() : nullptr;
  T* gb = c.gx(1) ? c.gx(1)->data() : nullptr;
  each_broadcast(c.x(0).shape(), c.x(1).shape(), c.y().shape(), [&](std::size_t i, std::size_t ia, std::size_t ib) {
    if (ga) ga[ia] += da(a[ia], b[ib], y[i]) * gy[i];
    if (gb) gb[ib] += db(a[ia], b[ib], y[i]) * gy[i];
  });
}
template <class T, class DA, class DB>
void broadcast_tangent(OpContext<T>& c, DA da, DB db) {
  const T* a = c.x(0).data();
  const T* b = c.x(1).data();
  const T* y = c.y().data();
  const T* ta = c.tx(0) ? c.tx(0)->data() : nullptr;
  const T* tb = c.tx(1) ? c.tx(1)->data() : nullptr;
  T* ty = c.ty().data();
  each_broadcast(c.x(0).shape(), c.x(1).shape(), c.y().shape(), [&](std::size_t i, std::size_t ia, std::size_t ib) {
    ty[i] = (ta ? da(a[ia], b[ib], y[i]) * ta[ia] : T(0)) + (tb ? db(a[ia], b[ib], y[i]) * tb[ib] : T(0));
  });
}

// Whether an input is broadcast (its shape is not the output's): the ops' slow path.
template <class T>
bool broadcasts(const OpContext<T>& c) {
  return c.x(0).shape() != c.y().shape() || c.x(1).shape() != c.y().shape();
}

// The output shape of a binary elementwise op.
template <class T>
Shape broadcast_shapes(const OpContext<T>& c) {
  Shape y;
  if (!broadcast_shape(c.x(0).shape(), c.x(1).shape(), y))
    c.fail("input shapes " + to_string(c.x(0).shape()) + " and " + to_string(c.x(1).shape()) +
           " do not broadcast (NumPy rules: aligned at the last dimension, sizes equal or 1)");
  return y;
}

// A model file's binary ops take inputs of one rank: the batch dimension of one never meets
// another dimension of the other.
template <class T>
void require_equal_ranks(const GraphNode<T>& node) {
  for (std::size_t i = 1; i < node.inputs().size(); ++i)
    if (node.input_shape(i).size() != node.input_shape(0).size())
      node.fail("input shapes " + to_string(node.input_shape(0)) + " and " + to_string(node.input_shape(i)) +
                " differ in rank (in a model file the batch dimensions must stay aligned)");
}

}  // namespace ax::ops
