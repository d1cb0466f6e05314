// Elementwise ops. Inputs of a binary op have one shape (no broadcasting).
// Each op: forward y = f(x); backward gx += f'(x) gy; tangent ty = f'(x) tx.
// `gx(i)` is null when input i takes no gradient, `tx(i)` null when its tangent is zero.
#pragma once

#include "../kernels/activation.hpp"
#include "common.hpp"

namespace ax::ops {

// y = a + b
struct Add {
  static constexpr const char* name = "add";
  template <class T> static Shape shape(const OpContext<T>& c) { return equal_shapes(c); }
  template <class T> static void forward(OpContext<T>& c) {
    kernels::map2(c.x(0), c.x(1), c.y(), [](T a, T b) { return a + b; });
  }
  template <class T> static void backward(OpContext<T>& c) {
    for (int i = 0; i < 2; ++i)
      if (Tensor<T>* g = c.gx(i)) kernels::axpy(T(1), c.gy(), *g);
  }
  template <class T> static void tangent(OpContext<T>& c) {
    kernels::scale_or_zero(c.tx(0), T(1), c.ty());
    if (const Tensor<T>* t = c.tx(1)) kernels::axpy(T(1), *t, c.ty());
  }
};

// y = a - b
struct Sub {
  static constexpr const char* name = "sub";
  template <class T> static Shape shape(const OpContext<T>& c) { return equal_shapes(c); }
  template <class T> static void forward(OpContext<T>& c) {
    kernels::map2(c.x(0), c.x(1), c.y(), [](T a, T b) { return a - b; });
  }
  template <class T> static void backward(OpContext<T>& c) {
    if (Tensor<T>* g = c.gx(0)) kernels::axpy(T(1), c.gy(), *g);
    if (Tensor<T>* g = c.gx(1)) kernels::axpy(T(-1), c.gy(), *g);
  }
  template <class T> static void tangent(OpContext<T>& c) {
    kernels::scale_or_zero(c.tx(0), T(1), c.ty());
    if (const Tensor<T>* t = c.tx(1)) kernels::axpy(T(-1), *t, c.ty());
  }
};

// y = a * b
struct Mul {
  static constexpr const char* name = "mul";
  template <class T> static Shape shape(const OpContext<T>& c) { return equal_shapes(c); }
  template <class T> static void forward(OpContext<T>& c) {
    kernels::map2(c.x(0), c.x(1), c.y(), [](T a, T b) { return a * b; });
  }
  template <class T> static void backward(OpContext<T>& c) {  // ga += gy b, gb += gy a
    auto times = [](T other, T gy) { return other * gy; };
    if (Tensor<T>* g = c.gx(0)) kernels::accumulate(c.x(1), c.gy(), *g, times);
    if (Tensor<T>* g = c.gx(1)) kernels::accumulate(c.x(0), c.gy(), *g, times);
  }
  template <class T> static void tangent(OpContext<T>& c) {  // ty = ta b + a tb
    c.ty().fill(T(0));
    auto times = [](T other, T t) { return other * t; };
    if (const Tensor<T>* t = c.tx(0)) kernels::accumulate(c.x(1), *t, c.ty(), times);
    if (const Tensor<T>* t = c.tx(1)) kernels::accumulate(c.x(0), *t, c.ty(), times);
  }
};

// y = a / b
struct Div {
  static constexpr const char* name = "div";
  template <class T> static Shape shape(const OpContext<T>& c) { return equal_shapes(c); }
  template <class T> static void forward(OpContext<T>& c) {
    kernels::map2(c.x(0), c.x(1), c.y(), [](T a, T b) { return a / b; });
  }
  template <class T> static void backward(OpContext<T>& c) {  // ga += gy / b, gb -= gy y / b
    if (Tensor<T>* g = c.gx(0)) kernels::accumulate(c.x(1), c.gy(), *g, [](T b, T gy) { return gy / b; });
    if (Tensor<T>* g = c.gx(1))
      kernels::accumulate3(c.gy(), c.y(), c.x(1), *g, [](T gy, T y, T b) { return -gy * y / b; });
  }
  template <class T> static void tangent(OpContext<T>& c) {  // ty = (ta - y tb) / b
    kernels::scale_or_zero(c.tx(0), T(1), c.ty());
    if (const Tensor<T>* t = c.tx(1)) kernels::accumulate(c.y(), *t, c.ty(), [](T y, T tb) { return -y * tb; });
    kernels::map2(c.ty(), c.x(1), c.ty(), [](T t, T b) { return t / b; });
  }
};

// y = a x + b with constants a, b: neg, scale and shift are this op.
struct Affine {
  static constexpr const char* name = "affine";
  template <class T> static Shape shape(const OpContext<T>& c) { return same_shape(c); }
  template <class T> static void forward(OpContext<T>& c) {
    const T a = T(c.attrs().a), b = T(c.attrs().b);
    kernels::map(c.x(0), c.y(), [a, b](T x) { return a * x + b; });
  }
  template <class T> static void backward(OpContext<T>& c) { kernels::axpy(T(c.attrs().a), c.gy(), *c.gx(0)); }
  template <class T> static void tangent(OpContext<T>& c) { kernels::scale_or_zero(c.tx(0), T(c.attrs().a), c.ty()); }
};

// A unary op whose derivative is a function of x and y = f(x). `Fn` states the value and the
// slope side by side; the three passes are then one line each.
template <class Fn>
struct Unary {
  static constexpr const char* name = Fn::name;
  template <class T> static Shape shape(const OpContext<T>& c) { return same_shape(c); }
  template <class T> static void forward(OpContext<T>& c) {
    kernels::map(c.x(0), c.y(), [](T x) { return Fn::value(x); });
  }
  template <class T> static void backward(OpContext<T>& c) {  // gx += f'(x) gy
    kernels::accumulate3(c.x(0), c.y(), c.gy(), *c.gx(0), [](T x, T y, T gy) { return Fn::slope(x, y) * gy; });
  }
  template <class T> static void tangent(OpContext<T>& c) {  // ty = f'(x) tx
    kernels::map3(c.x(0), c.y(), *c.tx(0), c.ty(), [](T x, T y, T tx) { return Fn::slope(x, y) * tx; });
  }
};

// y = e^x; y' = y
struct ExpFn {
  static constexpr const char* name = "exp";
  template <class T> static T value(T x) { return std::exp(x); }
  template <class T> static T slope(T, T y) { return y; }
};
using Exp = Unary<ExpFn>;

// y = ln x; y' = 1 / x
struct LogFn {
  static constexpr const char* name = "log";
  template <class T> static T value(T x) { return std::log(x); }
  template <class T> static T slope(T x, T) { return T(1) / x; }
};
using Log = Unary<LogFn>;

// y = 1 / (1 + e^-x), computed without overflow for large |x|; y' = y (1 - y)
struct SigmoidFn {
  static constexpr const char* name = "sigmoid";
  template <class T> static T value(T x) {
    if (x >= 0) return T(1) / (T(1) + std::exp(-x));
    const T e = std::exp(x);
    return e / (T(1) + e);
  }
  template <class T> static T slope(T, T y) { return y * (T(1) - y); }
};
using Sigmoid = Unary<SigmoidFn>;

// y = tanh x; y' = 1 - y^2
struct TanhFn {
  static constexpr const char* name = "tanh";
  template <class T> static T value(T x) { return std::tanh(x); }
  template <class T> static T slope(T, T y) { return T(1) - y * y; }
};
using Tanh = Unary<TanhFn>;

// y = max(x, 0); y' = 1 for x > 0, else 0: relu'(0) = 0, as in PyTorch. The hottest op of
// most networks after the convolutions, so it has SIMD kernels of its own.
struct Relu {
  static constexpr const char* name = "relu";
  template <class T> static Shape shape(const OpContext<T>& c) { return same_shape(c); }
  template <class T> static void forward(OpContext<T>& c) { kernels::relu_forward(c.x(0).data(), c.y().data(), c.y().size()); }
  template <class T> static void backward(OpContext<T>& c) {
    kernels::relu_backward(c.x(0).data(), c.gy().data(), c.gx(0)->data(), c.y().size());
  }
  template <class T> static void tangent(OpContext<T>& c) {
    kernels::relu_tangent(c.x(0).data(), c.tx(0)->data(), c.ty().data(), c.y().size());
  }
};

// y = x for x > 0, else s x (attribute a = s); y' = 1 for x > 0, else s: at 0 the slope is s,
// as in PyTorch.
struct LeakyRelu {
  static constexpr const char* name = "leaky_relu";
  template <class T> static Shape shape(const OpContext<T>& c) { return same_shape(c); }
  template <class T> static void forward(OpContext<T>& c) {
    const T s = T(c.attrs().a);
    kernels::map(c.x(0), c.y(), [s](T x) { return x > T(0) ? x : s * x; });
  }
  template <class T> static void backward(OpContext<T>& c) {
    const T s = T(c.attrs().a);
    kernels::accumulate(c.x(0), c.gy(), *c.gx(0), [s](T x, T gy) { return x > T(0) ? gy : s * gy; });
  }
  template <class T> static void tangent(OpContext<T>& c) {
    const T s = T(c.attrs().a);
    kernels::map2(c.x(0), *c.tx(0), c.ty(), [s](T x, T tx) { return x > T(0) ? tx : s * tx; });
  }
};

}  // namespace ax::ops
