// softmax and log_softmax along attrs.axis, numerically stable: the row's maximum is
// subtracted before exponentiating, so no exp overflows.
#pragma once

#include "../kernels/activation.hpp"
#include "common.hpp"

#include <algorithm>
#include <cmath>

namespace ax::ops {

// What softmax and log_softmax share: an axis (default -1, the last) and their place in a file.
struct DistributionOp : OpBase {
  static FileForm file_form() { return file_op({{"axis", &Attrs::axis, Allowed::sample_axis}}); }
  static void set_defaults(Attrs& a) { a.axis = -1; }
};

// Calls f(pointer offset of the row's first element, stride) for each row along the axis:
// a row is the n elements x[o, 0..n-1, i] of [outer, n, inner].
template <class T, class F>
void for_each_row(const OpContext<T>& c, F f) {
  const kernels::AxisSplit s = kernels::split_at(c.x(0).shape(), static_cast<std::size_t>(c.attrs().axis));
  // [outer, inner] rows of n elements, `inner` apart
  for (std::size_t o = 0; o < s.outer; ++o)
    for (std::size_t i = 0; i < s.inner; ++i) f(o * s.n * s.inner + i, s.n, s.inner);
}

// y = exp(x - max) / sum exp(x - max)
// backward: gx += y (gy - <gy, y>); tangent: ty = y (tx - <tx, y>)   (row by row)
struct Softmax : DistributionOp {
  static constexpr const char* name = "softmax";
  static constexpr Distribution distribution = Distribution::probabilities;
  template <class T> static Var<T> from_graph(GraphNode<T>& node) {
    Attrs attrs;
    attrs.axis = node.axis(node.attrs().axis, "axis");
    return record<Softmax>({node.input()}, attrs);
  }
  template <class T> static Shape shape(const OpContext<T>& c) { return same_shape(c); }
  template <class T> static void forward(OpContext<T>& c) {
    const kernels::AxisSplit s = kernels::split_at(c.x(0).shape(), static_cast<std::size_t>(c.attrs().axis));
    kernels::softmax(c.x(0).data(), c.y().data(), s.outer, s.n, s.inner);
  }
  template <class T> static void backward(OpContext<T>& c) {
    const T* y = c.y().data();
    const T* gy = c.gy().data();
    T* gx = c.gx(0)->data();
    for_each_row(c, [&](std::size_t at, std::size_t n, std::size_t step) {
      T dot = 0;
      for (std::size_t k = 0; k < n; ++k) dot += gy[at + k * step] * y[at + k * step];
      for (std::size_t k = 0; k < n; ++k) gx[at + k * step] += y[at + k * step] * (gy[at + k * step] - dot);
    });
  }
  template <class T> static void tangent(OpContext<T>& c) {
    const T* y = c.y().data();
    const T* tx = c.tx(0)->data();
    T* ty = c.ty().data();
    for_each_row(c, [&](std::size_t at, std::size_t n, std::size_t step) {
      T dot = 0;
      for (std::size_t k = 0; k < n; ++k) dot += tx[at + k * step] * y[at + k * step];
      for (std::size_t k = 0; k < n; ++k) ty[at + k * step] = y[at + k * step] * (tx[at + k * step] - dot);
    });
  }
};

// y = x - max - log sum exp(x - max); softmax p = exp(y)
// backward: gx += gy - p sum(gy); tangent: ty = tx - <p, tx>   (row by row)
struct LogSoftmax : DistributionOp {
  static constexpr const char* name = "log_softmax";
  static constexpr Distribution distribution = Distribution::log_probabilities;
  template <class T> static Var<T> from_graph(GraphNode<T>& node) {
    Attrs attrs;
    attrs.axis = node.axis(node.attrs().axis, "axis");
    return record<LogSoftmax>({node.input()}, attrs);
  }
  template <class T> static Shape shape(const OpContext<T>& c) { return same_shape(c); }
  template <class T> static void forward(OpContext<T>& c) {
    const kernels::AxisSplit s = kernels::split_at(c.x(0).shape(), static_cast<std::size_t>(c.attrs().axis));
    kernels::log_softmax(c.x(0).data(), c.y().data(), s.outer, s.n, s.inner);
  }
  template <class T> static void backward(OpContext<T>& c) {
    const T* y = c.y().data();
    const T* gy = c.gy().data();
    T* gx = c.gx(0)->data();
    for_each_row(c, [&](std::size_t at, std::size_t n, std::size_t step) {
      T total = 0;
      for (std::size_t k = 0; k < n; ++k) total += gy[at + k * step];
      for (std::size_t k = 0; k < n; ++k) gx[at + k * step] += gy[at + k * step] - std::exp(y[at + k * step]) * total;
    });
  }
  template <class T> static void tangent(OpContext<T>& c) {
    const T* y = c.y().data();
    const T* tx = c.tx(0)->data();
    T* ty = c.ty().data();
    for_each_row(c, [&](std::size_t at, std::size_t n, std::size_t step) {
      T dot = 0;
      for (std::size_t k = 0; k < n; ++k) dot += std::exp(y[at + k * step]) * tx[at + k * step];
      for (std::size_t k = 0; k < n; ++k) ty[at + k * step] = tx[at + k * step] - dot;
    });
  }
};

using SoftmaxOps = OpList<Softmax, LogSoftmax>;

}  // namespace ax::ops

namespace ax {

template <class T> Var<T> softmax(Var<T> x, int axis = -1) {
  Attrs attrs;
  attrs.axis = ops::resolve_axis(x, axis, "softmax");
  return ops::record<ops::Softmax>({x}, attrs);
}
template <class T> Var<T> log_softmax(Var<T> x, int axis = -1) {
  Attrs attrs;
  attrs.axis = ops::resolve_axis(x, axis, "log_softmax");
  return ops::record<ops::LogSoftmax>({x}, attrs);
}

}  // namespace ax
