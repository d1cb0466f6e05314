// Elementwise and axis kernels: plain loops over contiguous row-major buffers.
//
// The loops are written so that GCC vectorizes them at -O3 (no aliasing between outputs and
// inputs is assumed: each output is a different tensor from the inputs it reads), and long ones
// run in fixed blocks shared among threads. The op passes the per-element formula as a lambda,
// so the formula sits in the op, next to its derivative, and the loop sits here once.
#pragma once

#include "../tensor.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>

namespace ax::kernels {

// Calls body(begin, end) over [0, n) in fixed blocks, shared among threads when n is large
// enough to pay for waking them. Each element is one thread's, so the thread count never
// changes a result.
template <class Body>
void in_blocks(std::size_t n, Body body) {
  constexpr std::size_t block = std::size_t(1) << 14, threaded = std::size_t(1) << 17;
  const std::ptrdiff_t blocks = std::ptrdiff_t((n + block - 1) / block);
#pragma omp parallel for schedule(static) if (n >= threaded)
  for (std::ptrdiff_t b = 0; b < blocks; ++b) body(std::size_t(b) * block, std::min(n, std::size_t(b + 1) * block));
}

// y[i] = f(x[i])
template <class T, class F>
void map(const Tensor<T>& x, Tensor<T>& y, F f) {
  const T* xp = x.data();
  T* yp = y.data();
  const std::size_t n = y.size();
  in_blocks(n, [&](std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; ++i) yp[i] = f(xp[i]);
  });
}

// y[i] = f(a[i], b[i])
template <class T, class F>
void map2(const Tensor<T>& a, const Tensor<T>& b, Tensor<T>& y, F f) {
  const T* ap = a.data();
  const T* bp = b.data();
  T* yp = y.data();
  const std::size_t n = y.size();
  in_blocks(n, [&](std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; ++i) yp[i] = f(ap[i], bp[i]);
  });
}

// y[i] = f(a[i], b[i], c[i])
template <class T, class F>
void map3(const Tensor<T>& a, const Tensor<T>& b, const Tensor<T>& c, Tensor<T>& y, F f) {
  const T* ap = a.data();
  const T* bp = b.data();
  const T* cp = c.data();
  T* yp = y.data();
  const std::size_t n = y.size();
  in_blocks(n, [&](std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; ++i) yp[i] = f(ap[i], bp[i], cp[i]);
  });
}

// g[i] += f(a[i], b[i]): how a backward pass accumulates into an input's gradient.
template <class T, class F>
void accumulate(const Tensor<T>& a, const Tensor<T>& b, Tensor<T>& g, F f) {
  const T* ap = a.data();
  const T* bp = b.data();
  T* gp = g.data();
  const std::size_t n = g.size();
  in_blocks(n, [&](std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; ++i) gp[i] += f(ap[i], bp[i]);
  });
}

// g[i] += f(a[i], b[i], c[i])
template <class T, class F>
void accumulate3(const Tensor<T>& a, const Tensor<T>& b, const Tensor<T>& c, Tensor<T>& g, F f) {
  const T* ap = a.data();
  const T* bp = b.data();
  const T* cp = c.data();
  T* gp = g.data();
  const std::size_t n = g.size();
  in_blocks(n, [&](std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; ++i) gp[i] += f(ap[i], bp[i], cp[i]);
  });
}

// g[i] += s * x[i]
template <class T>
void axpy(T s, const Tensor<T>& x, Tensor<T>& g) {
  const T* xp = x.data();
  T* gp = g.data();
  const std::size_t n = g.size();
  in_blocks(n, [&](std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; ++i) gp[i] += s * xp[i];
  });
}

// y = s * x, or y = 0 when x is absent (a tangent that is zero).
template <class T>
void scale_or_zero(const Tensor<T>* x, T s, Tensor<T>& y) {
  if (x)
    map(*x, y, [s](T v) { return s * v; });
  else
    y.fill(T(0));
}

// A row-major shape seen as [outer, n, inner] around one axis: what axis kernels loop over.
struct AxisSplit {
  std::size_t outer = 1, n = 1, inner = 1;
};

inline AxisSplit split_at(const Shape& shape, std::size_t axis) {
  AxisSplit s;
  for (std::size_t d = 0; d < shape.size(); ++d) {
    if (d < axis) s.outer *= shape[d];
    else if (d == axis) s.n = shape[d];
    else s.inner *= shape[d];
  }
  return s;
}

}  // namespace ax::kernels
