// Sum and mean: over the whole tensor (attrs.axis == -1, giving a scalar, shape []) or along one
// axis, which is dropped or kept with size 1 (attrs.keep_dim).
#pragma once

#include "common.hpp"

namespace ax::ops {

// What is reduced, as [outer, n, inner]: the whole tensor is [1, size, 1].
template <class T>
kernels::AxisSplit reduced_split(const OpContext<T>& c) {
  const Tensor<T>& x = c.x(0);
  if (c.attrs().axis < 0) return {1, x.size(), 1};
  return kernels::split_at(x.shape(), static_cast<std::size_t>(c.attrs().axis));
}

template <class T>
Shape reduced_shape(const OpContext<T>& c) {
  const Shape& x = c.x(0).shape();
  Shape y;
  for (std::size_t d = 0; d < x.size(); ++d) {
    const bool reduced = c.attrs().axis < 0 || d == static_cast<std::size_t>(c.attrs().axis);
    if (!reduced) y.push_back(x[d]);
    else if (c.attrs().keep_dim) y.push_back(1);
  }
  return y;
}

// y[o, i] = scale * sum_k x[o, k, i]
template <class T>
void reduce_forward(OpContext<T>& c, T scale) {
  const kernels::AxisSplit s = reduced_split(c);
  const T* x = c.x(0).data();
  T* y = c.y().data();
  // [outer, n, inner]: the inner loop runs over contiguous memory
  for (std::size_t o = 0; o < s.outer; ++o) {
    T* yo = y + o * s.inner;
    for (std::size_t i = 0; i < s.inner; ++i) yo[i] = T(0);
    for (std::size_t k = 0; k < s.n; ++k) {
      const T* xk = x + (o * s.n + k) * s.inner;
      for (std::size_t i = 0; i < s.inner; ++i) yo[i] += xk[i];
    }
    for (std::size_t i = 0; i < s.inner; ++i) yo[i] *= scale;
  }
}

// gx[o, k, i] += scale * gy[o, i]
template <class T>
void reduce_backward(OpContext<T>& c, T scale) {
  const kernels::AxisSplit s = reduced_split(c);
  const T* gy = c.gy().data();
  T* gx = c.gx(0)->data();
  // [outer, n, inner]
  for (std::size_t o = 0; o < s.outer; ++o)
    for (std::size_t k = 0; k < s.n; ++k) {
      T* gxk = gx + (o * s.n + k) * s.inner;
      for (std::size_t i = 0; i < s.inner; ++i) gxk[i] += scale * gy[o * s.inner + i];
    }
}

// The reduction is linear: its tangent is the same reduction of the input's tangent.
template <class T>
void reduce_tangent(OpContext<T>& c, T scale) {
  const kernels::AxisSplit s = reduced_split(c);
  const T* tx = c.tx(0)->data();
  T* ty = c.ty().data();
  // [outer, n, inner]
  for (std::size_t o = 0; o < s.outer; ++o) {
    T* tyo = ty + o * s.inner;
    for (std::size_t i = 0; i < s.inner; ++i) tyo[i] = T(0);
    for (std::size_t k = 0; k < s.n; ++k)
      for (std::size_t i = 0; i < s.inner; ++i) tyo[i] += tx[(o * s.n + k) * s.inner + i];
    for (std::size_t i = 0; i < s.inner; ++i) tyo[i] *= scale;
  }
}

// y = sum x
struct Sum : OpBase {
  static constexpr const char* name = "sum";
  static constexpr Linearity linearity = Linearity::linear;
  template <class T> static Shape shape(const OpContext<T>& c) { return reduced_shape(c); }
  template <class T> static void forward(OpContext<T>& c) { reduce_forward(c, T(1)); }
  template <class T> static void backward(OpContext<T>& c) { reduce_backward(c, T(1)); }
  template <class T> static void tangent(OpContext<T>& c) { reduce_tangent(c, T(1)); }
};

// y = sum x / n, n the number of elements reduced
struct Mean : OpBase {
  static constexpr const char* name = "mean";
  static constexpr Linearity linearity = Linearity::linear;
  template <class T> static Shape shape(const OpContext<T>& c) { return reduced_shape(c); }
  template <class T> static T inv_n(const OpContext<T>& c) { return T(1) / T(reduced_split(c).n); }
  template <class T> static void forward(OpContext<T>& c) { reduce_forward(c, inv_n(c)); }
  template <class T> static void backward(OpContext<T>& c) { reduce_backward(c, inv_n(c)); }
  template <class T> static void tangent(OpContext<T>& c) { reduce_tangent(c, inv_n(c)); }
};

using ReduceOps = OpList<Sum, Mean>;

template <class Op, class T>
Var<T> reduce(Var<T> x, std::int64_t resolved_axis, bool keep_dim) {
  Attrs attrs;
  attrs.axis = resolved_axis;
  attrs.keep_dim = keep_dim;
  return record<Op>({x}, attrs);
}

}  // namespace ax::ops

namespace ax {

// Whole-tensor reductions give a scalar (shape []); along an axis, it is dropped or kept as 1.
template <class T> Var<T> sum(Var<T> x) { return ops::reduce<ops::Sum>(x, -1, false); }
template <class T> Var<T> sum(Var<T> x, int axis, bool keep_dim = false) {
  return ops::reduce<ops::Sum>(x, ops::resolve_axis(x, axis, "sum"), keep_dim);
}
template <class T> Var<T> mean(Var<T> x) { return ops::reduce<ops::Mean>(x, -1, false); }
template <class T> Var<T> mean(Var<T> x, int axis, bool keep_dim = false) {
  return ops::reduce<ops::Mean>(x, ops::resolve_axis(x, axis, "mean"), keep_dim);
}

}  // namespace ax
