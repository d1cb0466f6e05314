// Elementwise ops. The inputs of a binary op broadcast under NumPy's rules (ops/broadcast.hpp);
// with equal shapes they run the fast kernels.
// Each op: forward y = f(x); backward gx += f'(x) gy; tangent ty = f'(x) tx.
// `gx(i)` is null when input i takes no gradient, `tx(i)` null when its tangent is zero.
#pragma once

#include "../kernels/activation.hpp"
#include "broadcast.hpp"
#include "common.hpp"
#include "kinks.hpp"
#include "rescale.hpp"

#include <cmath>
#include <string>

namespace ax::ops {


// y = a + b. In a model file, add takes two or more inputs and sums them left to right.
struct Add : OpBase {
  static constexpr const char* name = "add";
  static constexpr Linearity linearity = Linearity::linear;
  static constexpr bool writes_unset_gradients = true;
  static FileForm file_form() { return file_op({}, {}, 2, kAnyCount); }
  template <class T> static Var<T> from_graph(GraphNode<T>& node) {
    require_equal_ranks(node);
    Var<T> sum_so_far = record<Add>({node.input(0), node.input(1)});
    for (std::size_t i = 2; i < node.inputs().size(); ++i) sum_so_far = record<Add>({sum_so_far, node.input(i)});
    return sum_so_far;
  }
  template <class T> static Shape shape(const OpContext<T>& c) { return broadcast_shapes(c); }
  template <class T> static void forward(OpContext<T>& c) {
    if (broadcasts(c)) return broadcast_forward(c, [](T a, T b) { return a + b; });
    kernels::map2(c.x(0), c.x(1), c.y(), [](T a, T b) { return a + b; });
  }
  template <class T> static void backward(OpContext<T>& c) {
    if (broadcasts(c)) {
      for (int i = 0; i < 2; ++i) gx_to_add(c, i);
      return broadcast_backward(c, one<T>, one<T>);
    }
    for (int i = 0; i < 2; ++i) pass_gradient(c, i);
  }
  template <class T> static void tangent(OpContext<T>& c) {
    if (broadcasts(c)) return broadcast_tangent(c, one<T>, one<T>);
    kernels::scale_or_zero(c.tx(0), T(1), c.ty());
    if (const Tensor<T>* t = c.tx(1)) kernels::axpy(T(1), *t, c.ty());
  }
  template <class T> static T one(T, T, T) { return T(1); }
};

// y = a - b
struct Sub : OpBase {
  static constexpr const char* name = "sub";
  static constexpr Linearity linearity = Linearity::linear;
  static FileForm file_form() { return file_op({}, {}, 2, 2); }
  template <class T> static Var<T> from_graph(GraphNode<T>& node) {
    require_equal_ranks(node);
    return record<Sub>(node.inputs());
  }
  template <class T> static Shape shape(const OpContext<T>& c) { return broadcast_shapes(c); }
  template <class T> static void forward(OpContext<T>& c) {
    if (broadcasts(c)) return broadcast_forward(c, [](T a, T b) { return a - b; });
    kernels::map2(c.x(0), c.x(1), c.y(), [](T a, T b) { return a - b; });
  }
  template <class T> static void backward(OpContext<T>& c) {
    if (broadcasts(c)) return broadcast_backward(c, [](T, T, T) { return T(1); }, [](T, T, T) { return T(-1); });
    if (Tensor<T>* g = c.gx(0)) kernels::axpy(T(1), c.gy(), *g);
    if (Tensor<T>* g = c.gx(1)) kernels::axpy(T(-1), c.gy(), *g);
  }
  template <class T> static void tangent(OpContext<T>& c) {
    if (broadcasts(c)) return broadcast_tangent(c, [](T, T, T) { return T(1); }, [](T, T, T) { return T(-1); });
    kernels::scale_or_zero(c.tx(0), T(1), c.ty());
    if (const Tensor<T>* t = c.tx(1)) kernels::axpy(T(-1), *t, c.ty());
  }
};

// y = a * b
struct Mul : OpBase {
  static constexpr const char* name = "mul";
  static constexpr Linearity linearity = Linearity::multilinear;
  static FileForm file_form() { return file_op({}, {}, 2, 2); }
  template <class T> static Var<T> from_graph(GraphNode<T>& node) {
    require_equal_ranks(node);
    return record<Mul>(node.inputs());
  }
  template <class T> static Shape shape(const OpContext<T>& c) { return broadcast_shapes(c); }
  template <class T> static void forward(OpContext<T>& c) {
    if (broadcasts(c)) return broadcast_forward(c, [](T a, T b) { return a * b; });
    kernels::map2(c.x(0), c.x(1), c.y(), [](T a, T b) { return a * b; });
  }
  template <class T> static void backward(OpContext<T>& c) {  // ga += gy b, gb += gy a
    if (broadcasts(c)) return broadcast_backward(c, [](T, T b, T) { return b; }, [](T a, T, T) { return a; });
    auto times = [](T other, T gy) { return other * gy; };
    if (Tensor<T>* g = c.gx(0)) kernels::accumulate(c.x(1), c.gy(), *g, times);
    if (Tensor<T>* g = c.gx(1)) kernels::accumulate(c.x(0), c.gy(), *g, times);
  }
  template <class T> static void tangent(OpContext<T>& c) {  // ty = ta b + a tb
    if (broadcasts(c)) return broadcast_tangent(c, [](T, T b, T) { return b; }, [](T a, T, T) { return a; });
    c.ty().fill(T(0));
    auto times = [](T other, T t) { return other * t; };
    if (const Tensor<T>* t = c.tx(0)) kernels::accumulate(c.x(1), *t, c.ty(), times);
    if (const Tensor<T>* t = c.tx(1)) kernels::accumulate(c.x(0), *t, c.ty(), times);
  }
};

// y = a / b
struct Div : OpBase {
  static constexpr const char* name = "div";
  static constexpr Linearity linearity = Linearity::linear_in_first;
  static FileForm file_form() { return file_op({}, {}, 2, 2); }
  template <class T> static Var<T> from_graph(GraphNode<T>& node) {
    require_equal_ranks(node);
    return record<Div>(node.inputs());
  }
  template <class T> static Shape shape(const OpContext<T>& c) { return broadcast_shapes(c); }
  template <class T> static void forward(OpContext<T>& c) {
    if (broadcasts(c)) return broadcast_forward(c, [](T a, T b) { return a / b; });
    kernels::map2(c.x(0), c.x(1), c.y(), [](T a, T b) { return a / b; });
  }
  template <class T> static void backward(OpContext<T>& c) {  // ga += gy / b, gb -= gy y / b
    if (broadcasts(c)) return broadcast_backward(c, [](T, T b, T) { return T(1) / b; }, [](T, T b, T y) { return -y / b; });
    if (Tensor<T>* g = c.gx(0)) kernels::accumulate(c.x(1), c.gy(), *g, [](T b, T gy) { return gy / b; });
    if (Tensor<T>* g = c.gx(1))
      kernels::accumulate3(c.gy(), c.y(), c.x(1), *g, [](T gy, T y, T b) { return -gy * y / b; });
  }
  template <class T> static void tangent(OpContext<T>& c) {  // ty = (ta - y tb) / b
    if (broadcasts(c)) return broadcast_tangent(c, [](T, T b, T) { return T(1) / b; }, [](T, T b, T y) { return -y / b; });
    kernels::scale_or_zero(c.tx(0), T(1), c.ty());
    if (const Tensor<T>* t = c.tx(1)) kernels::accumulate(c.y(), *t, c.ty(), [](T y, T tb) { return -y * tb; });
    kernels::map2(c.ty(), c.x(1), c.ty(), [](T t, T b) { return t / b; });
  }
};

// y = scale x + offset with constants (attrs.scale, attrs.offset): neg, scale and shift are this op;
// in a model file, a tensor times or plus a number (x * 0.5 + 0.1, q / sqrt(d)).
struct Affine : OpBase {
  static constexpr const char* name = "affine";
  static constexpr Linearity linearity = Linearity::linear;
  static FileForm file_form() { return file_op({{"scale", &Attrs::scale}, {"offset", &Attrs::offset}}); }
  template <class T> static Var<T> from_graph(GraphNode<T>& node) { return record<Affine>({node.input()}, node.attrs()); }
  template <class T> static Shape shape(const OpContext<T>& c) { return same_shape(c); }
  template <class T> static void forward(OpContext<T>& c) {
    const T a = T(c.attrs().scale), b = T(c.attrs().offset);
    kernels::map(c.x(0), c.y(), [a, b](T x) { return a * x + b; });
  }
  template <class T> static void backward(OpContext<T>& c) { kernels::axpy(T(c.attrs().scale), c.gy(), *c.gx(0)); }
  template <class T> static void tangent(OpContext<T>& c) {
    kernels::scale_or_zero(c.tx(0), T(c.attrs().scale), c.ty());
  }
};

// A smooth unary op whose derivative is a function of x and y = f(x). `Fn` states the value and
// the slope side by side (and whether the model file has the op); the three passes are then one
// line each.
template <class Fn>
struct Unary : OpBase {
  static constexpr const char* name = Fn::name;
  static FileForm file_form() { return Fn::in_file ? file_op() : FileForm{}; }
  template <class T> static Var<T> from_graph(GraphNode<T>& node) { return record<Unary>({node.input()}); }
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
  template <class T> static void rescale(OpContext<T>& c) {  // gx += gy (y - y') / (x - x')
    rescale_elementwise(c, [](T x, T y) { return Fn::slope(x, y); });
  }
};

// y = e^x; y' = y
struct ExpFn {
  static constexpr const char* name = "exp";
  static constexpr bool in_file = false;
  template <class T> static T value(T x) { return std::exp(x); }
  template <class T> static T slope(T, T y) { return y; }
};
using Exp = Unary<ExpFn>;

// y = ln x; y' = 1 / x
struct LogFn {
  static constexpr const char* name = "log";
  static constexpr bool in_file = false;
  template <class T> static T value(T x) { return std::log(x); }
  template <class T> static T slope(T x, T) { return T(1) / x; }
};
using Log = Unary<LogFn>;

// y = 1 / (1 + e^-x), computed without overflow for large |x|; y' = y (1 - y)
struct SigmoidFn {
  static constexpr const char* name = "sigmoid";
  static constexpr bool in_file = true;
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
  static constexpr bool in_file = true;
  template <class T> static T value(T x) { return std::tanh(x); }
  template <class T> static T slope(T, T y) { return T(1) - y * y; }
};
using Tanh = Unary<TanhFn>;

// y = max(x, 0); y' = 1 for x > 0, else 0: relu'(0) = 0, as in PyTorch. The hottest op of
// most networks after the convolutions, so it has SIMD kernels of its own.
struct Relu : OpBase {
  static constexpr const char* name = "relu";
  static constexpr Linearity linearity = Linearity::piecewise_linear;  // one kink, at 0
  static constexpr bool positively_homogeneous = true;
  static constexpr bool writes_unset_gradients = true;
  static FileForm file_form() { return file_op(); }
  template <class T> static Var<T> from_graph(GraphNode<T>& node) { return record<Relu>({node.input()}); }
  template <class T> static Shape shape(const OpContext<T>& c) { return same_shape(c); }
  template <class T> static void forward(OpContext<T>& c) { kernels::relu_forward(c.x(0).data(), c.y().data(), c.y().size()); }
  template <class T> static void backward(OpContext<T>& c) {
    if (c.gx_unset(0))  // gx = gy where x > 0: the tangent's map
      return kernels::relu_tangent(c.x(0).data(), c.gy().data(), c.gx(0)->data(), c.y().size());
    kernels::relu_backward(c.x(0).data(), c.gy().data(), c.gx(0)->data(), c.y().size());
  }
  template <class T> static void tangent(OpContext<T>& c) {
    kernels::relu_tangent(c.x(0).data(), c.tx(0)->data(), c.ty().data(), c.y().size());
  }
  template <class T>
  static void switches(const Attrs&, const Shape& in, const Shape&, const T* z0, const T* z1, std::vector<double>& roots) {
    level_crossings(z0, z1, numel(in) / in[0], 0.0, roots);
  }
  template <class T> static void rescale(OpContext<T>& c) {
    rescale_elementwise(c, [](T x, T) { return x > T(0) ? T(1) : T(0); });
  }
};

// y = x for x > 0, else s x (s = attrs.negative_slope); y' = 1 for x > 0, else s: at 0 the
// slope is s, as in PyTorch.
struct LeakyRelu : OpBase {
  static constexpr const char* name = "leaky_relu";
  static constexpr Linearity linearity = Linearity::piecewise_linear;  // one kink, at 0
  static constexpr bool positively_homogeneous = true;
  static FileForm file_form() { return file_op({{"negative_slope", &Attrs::negative_slope}}); }
  template <class T> static Var<T> from_graph(GraphNode<T>& node) {
    return record<LeakyRelu>({node.input()}, node.attrs());
  }
  template <class T> static Shape shape(const OpContext<T>& c) { return same_shape(c); }
  template <class T> static void forward(OpContext<T>& c) {
    const T s = T(c.attrs().negative_slope);
    kernels::map(c.x(0), c.y(), [s](T x) { return x > T(0) ? x : s * x; });
  }
  template <class T> static void backward(OpContext<T>& c) {
    const T s = T(c.attrs().negative_slope);
    kernels::accumulate(c.x(0), c.gy(), *c.gx(0), [s](T x, T gy) { return x > T(0) ? gy : s * gy; });
  }
  template <class T> static void tangent(OpContext<T>& c) {
    const T s = T(c.attrs().negative_slope);
    kernels::map2(c.x(0), *c.tx(0), c.ty(), [s](T x, T tx) { return x > T(0) ? tx : s * tx; });
  }
  template <class T>
  static void switches(const Attrs&, const Shape& in, const Shape&, const T* z0, const T* z1, std::vector<double>& roots) {
    level_crossings(z0, z1, numel(in) / in[0], 0.0, roots);
  }
  template <class T> static void rescale(OpContext<T>& c) {
    const T s = T(c.attrs().negative_slope);
    rescale_elementwise(c, [s](T x, T) { return x > T(0) ? T(1) : s; });
  }
};

// y = min(max(x, min_val), max_val), as torch.nn.Hardtanh (ReLU6 is min_val 0, max_val 6).
// y' = 1 strictly between the two, else 0: at both kinks the slope is 0, as in PyTorch.
struct Hardtanh : OpBase {
  static constexpr const char* name = "hardtanh";
  static constexpr Linearity linearity = Linearity::piecewise_linear;  // two kinks, at min_val and max_val
  static FileForm file_form() { return file_op({{"min_val", &Attrs::min_val}, {"max_val", &Attrs::max_val}}); }
  static void finish(Attrs& a, const AttributeNames&) { check_bounds(a); }
  template <class T> static Var<T> from_graph(GraphNode<T>& node) {
    return record<Hardtanh>({node.input()}, node.attrs());
  }

  template <class T> static Shape shape(const OpContext<T>& c) { return same_shape_checked(c, check_bounds); }
  template <class T> static void forward(OpContext<T>& c) {
    const T lo = T(c.attrs().min_val), hi = T(c.attrs().max_val);
    kernels::map(c.x(0), c.y(), [lo, hi](T x) { return x < lo ? lo : x > hi ? hi : x; });
  }
  template <class T> static void backward(OpContext<T>& c) {
    const T lo = T(c.attrs().min_val), hi = T(c.attrs().max_val);
    kernels::accumulate(c.x(0), c.gy(), *c.gx(0), [lo, hi](T x, T gy) { return lo < x && x < hi ? gy : T(0); });
  }
  template <class T> static void tangent(OpContext<T>& c) {
    const T lo = T(c.attrs().min_val), hi = T(c.attrs().max_val);
    kernels::map2(c.x(0), *c.tx(0), c.ty(), [lo, hi](T x, T tx) { return lo < x && x < hi ? tx : T(0); });
  }
  template <class T>
  static void switches(const Attrs& a, const Shape& in, const Shape&, const T* z0, const T* z1, std::vector<double>& roots) {
    level_crossings(z0, z1, numel(in) / in[0], a.min_val, roots);
    level_crossings(z0, z1, numel(in) / in[0], a.max_val, roots);
  }
  template <class T> static void rescale(OpContext<T>& c) {
    const T lo = T(c.attrs().min_val), hi = T(c.attrs().max_val);
    rescale_elementwise(c, [lo, hi](T x, T) { return lo < x && x < hi ? T(1) : T(0); });
  }

  // PyTorch's own constraint.
  static void check_bounds(const Attrs& a) {
    if (!(a.min_val < a.max_val))
      throw Error("min_val " + number_string(a.min_val) + " must be below max_val " + number_string(a.max_val));
  }
};

// y = x sigmoid(x), as torch.nn.SiLU; y' = s (1 + x (1 - s)) with s = sigmoid(x)
struct SiluFn {
  static constexpr const char* name = "silu";
  static constexpr bool in_file = true;
  template <class T> static T value(T x) { return x * SigmoidFn::value(x); }
  template <class T> static T slope(T x, T) {
    const T s = SigmoidFn::value(x);
    return s * (T(1) + x * (T(1) - s));
  }
};
using Silu = Unary<SiluFn>;

// y = x min(max(x + 3, 0), 6) / 6, as torch.nn.Hardswish: 0 below -3, x above 3, x (x + 3) / 6
// between. Quadratic between its kinks, so smooth for exact IG. y' is PyTorch's: 0 for x < -3,
// (2x + 3) / 6 for -3 <= x <= 3 (both ends included), 1 above.
struct HardswishFn {
  static constexpr const char* name = "hardswish";
  static constexpr bool in_file = true;
  template <class T> static T value(T x) { return x < T(-3) ? T(0) : x > T(3) ? x : x * (x + T(3)) / T(6); }
  template <class T> static T slope(T x, T) { return x < T(-3) ? T(0) : x <= T(3) ? (T(2) * x + T(3)) / T(6) : T(1); }
};
using Hardswish = Unary<HardswishFn>;

// y = min(max(x + 3, 0), 6) / 6, as torch.nn.Hardsigmoid. y' = 1/6 strictly between -3 and 3,
// else 0: at both kinks the slope is 0, as in PyTorch.
struct Hardsigmoid : OpBase {
  static constexpr const char* name = "hardsigmoid";
  static constexpr Linearity linearity = Linearity::piecewise_linear;  // two kinks, at -3 and 3
  static FileForm file_form() { return file_op(); }
  template <class T> static Var<T> from_graph(GraphNode<T>& node) { return record<Hardsigmoid>({node.input()}); }
  template <class T> static Shape shape(const OpContext<T>& c) { return same_shape(c); }
  template <class T> static void forward(OpContext<T>& c) {
    kernels::map(c.x(0), c.y(), [](T x) { return x <= T(-3) ? T(0) : x >= T(3) ? T(1) : x / T(6) + T(0.5); });
  }
  template <class T> static void backward(OpContext<T>& c) {
    kernels::accumulate(c.x(0), c.gy(), *c.gx(0), [](T x, T gy) { return inside(x) ? gy / T(6) : T(0); });
  }
  template <class T> static void tangent(OpContext<T>& c) {
    kernels::map2(c.x(0), *c.tx(0), c.ty(), [](T x, T tx) { return inside(x) ? tx / T(6) : T(0); });
  }
  template <class T>
  static void switches(const Attrs&, const Shape& in, const Shape&, const T* z0, const T* z1, std::vector<double>& roots) {
    level_crossings(z0, z1, numel(in) / in[0], -3.0, roots);
    level_crossings(z0, z1, numel(in) / in[0], 3.0, roots);
  }
  template <class T> static void rescale(OpContext<T>& c) {
    rescale_elementwise(c, [](T x, T) { return inside(x) ? T(1) / T(6) : T(0); });
  }

 private:
  template <class T> static bool inside(T x) { return T(-3) < x && x < T(3); }
};

// y = x Phi(x), as torch.nn.GELU: Phi is the normal distribution function, with
// attrs.approximate "none" (erf: Phi(x) = (1 + erf(x / sqrt 2)) / 2, Phi' = phi the density) or
// "tanh" (Phi(x) ~ (1 + tanh(u)) / 2, u = sqrt(2 / pi) (x + 0.044715 x^3)). y' = Phi + x Phi'.
struct Gelu : OpBase {
  static constexpr const char* name = "gelu";
  static FileForm file_form() { return file_op({{"approximate", &Attrs::approximate}}); }
  static void finish(Attrs& a, const AttributeNames&) { check_approximate(a); }
  template <class T> static Var<T> from_graph(GraphNode<T>& node) { return record<Gelu>({node.input()}, node.attrs()); }

  template <class T> static Shape shape(const OpContext<T>& c) { return same_shape_checked(c, check_approximate); }
  template <class T> static void forward(OpContext<T>& c) {
    if (uses_tanh(c)) kernels::map(c.x(0), c.y(), [](T x) { return x * TanhForm::cdf(x); });
    else kernels::map(c.x(0), c.y(), [](T x) { return x * ErfForm::cdf(x); });
  }
  template <class T> static void backward(OpContext<T>& c) {
    if (uses_tanh(c)) kernels::accumulate(c.x(0), c.gy(), *c.gx(0), [](T x, T gy) { return slope<TanhForm>(x) * gy; });
    else kernels::accumulate(c.x(0), c.gy(), *c.gx(0), [](T x, T gy) { return slope<ErfForm>(x) * gy; });
  }
  template <class T> static void tangent(OpContext<T>& c) {
    if (uses_tanh(c)) kernels::map2(c.x(0), *c.tx(0), c.ty(), [](T x, T tx) { return slope<TanhForm>(x) * tx; });
    else kernels::map2(c.x(0), *c.tx(0), c.ty(), [](T x, T tx) { return slope<ErfForm>(x) * tx; });
  }
  template <class T> static void rescale(OpContext<T>& c) {
    if (uses_tanh(c)) rescale_elementwise(c, [](T x, T) { return slope<TanhForm>(x); });
    else rescale_elementwise(c, [](T x, T) { return slope<ErfForm>(x); });
  }

  // PyTorch's two forms.
  static void check_approximate(const Attrs& a) {
    if (a.approximate != "none" && a.approximate != "tanh")
      throw Error("approximate \"" + a.approximate + "\" is not \"none\" or \"tanh\"");
  }

 private:
  static constexpr double kSqrtHalf = 0.70710678118654752440;     // 1 / sqrt(2)
  static constexpr double kInvSqrt2Pi = 0.39894228040143267794;   // 1 / sqrt(2 pi), the density at 0
  static constexpr double kSqrt2OverPi = 0.79788456080286535588;  // sqrt(2 / pi)
  struct ErfForm {
    template <class T> static T cdf(T x) { return T(0.5) * (T(1) + std::erf(x * T(kSqrtHalf))); }
    template <class T> static T cdf_slope(T x) { return T(kInvSqrt2Pi) * std::exp(T(-0.5) * x * x); }
  };
  struct TanhForm {
    template <class T> static T u(T x) { return T(kSqrt2OverPi) * (x + T(0.044715) * x * x * x); }
    template <class T> static T cdf(T x) { return T(0.5) * (T(1) + std::tanh(u(x))); }
    template <class T> static T cdf_slope(T x) {
      const T t = std::tanh(u(x));
      return T(0.5) * (T(1) - t * t) * T(kSqrt2OverPi) * (T(1) + T(3 * 0.044715) * x * x);
    }
  };
  template <class Form, class T> static T slope(T x) { return Form::cdf(x) + x * Form::cdf_slope(x); }
  template <class T> static bool uses_tanh(const OpContext<T>& c) { return c.attrs().approximate == "tanh"; }
};

// y = x: a model-file op that records nothing (its node is its input's).
struct Identity : OpBase {
  static constexpr const char* name = "identity";
  static constexpr Linearity linearity = Linearity::linear;
  static constexpr bool positively_homogeneous = true;
  static FileForm file_form() { return file_op(); }
  template <class T> static Var<T> from_graph(GraphNode<T>& node) { return node.input(); }
};

using ElementwiseOps = OpList<Add, Sub, Mul, Div, Affine, Exp, Log, Sigmoid, Tanh, Relu, LeakyRelu, Hardtanh, Silu,
                              Hardswish, Hardsigmoid, Gelu, Identity>;

}  // namespace ax::ops

namespace ax {

template <class T> Var<T> operator+(Var<T> a, Var<T> b) { return ops::record<ops::Add>({a, b}); }
template <class T> Var<T> operator-(Var<T> a, Var<T> b) { return ops::record<ops::Sub>({a, b}); }
template <class T> Var<T> operator*(Var<T> a, Var<T> b) { return ops::record<ops::Mul>({a, b}); }
template <class T> Var<T> operator/(Var<T> a, Var<T> b) { return ops::record<ops::Div>({a, b}); }

// y = scale x + offset with constants: neg, scale, shift and the operators with a number record this one op.
template <class T> Var<T> affine(Var<T> x, double scale, double offset) {
  Attrs attrs;
  attrs.scale = scale;
  attrs.offset = offset;
  return ops::record<ops::Affine>({x}, attrs);
}
template <class T> Var<T> neg(Var<T> x) { return affine(x, -1.0, 0.0); }
template <class T> Var<T> scale(Var<T> x, double s) { return affine(x, s, 0.0); }
template <class T> Var<T> shift(Var<T> x, double b) { return affine(x, 1.0, b); }
template <class T> Var<T> operator-(Var<T> x) { return neg(x); }
template <class T> Var<T> operator*(Var<T> x, double s) { return scale(x, s); }
template <class T> Var<T> operator*(double s, Var<T> x) { return scale(x, s); }
template <class T> Var<T> operator/(Var<T> x, double s) { return scale(x, 1.0 / s); }
template <class T> Var<T> operator+(Var<T> x, double b) { return shift(x, b); }
template <class T> Var<T> operator+(double b, Var<T> x) { return shift(x, b); }
template <class T> Var<T> operator-(Var<T> x, double b) { return shift(x, -b); }
template <class T> Var<T> operator-(double b, Var<T> x) { return affine(x, -1.0, b); }

template <class T> Var<T> exp(Var<T> x) { return ops::record<ops::Exp>({x}); }
template <class T> Var<T> log(Var<T> x) { return ops::record<ops::Log>({x}); }
template <class T> Var<T> sigmoid(Var<T> x) { return ops::record<ops::Sigmoid>({x}); }
template <class T> Var<T> tanh(Var<T> x) { return ops::record<ops::Tanh>({x}); }
// relu'(0) = 0
template <class T> Var<T> relu(Var<T> x) { return ops::record<ops::Relu>({x}); }
// the slope at 0 is `negative_slope`
template <class T> Var<T> leaky_relu(Var<T> x, double negative_slope = 0.01) {
  Attrs attrs;
  attrs.negative_slope = negative_slope;
  return ops::record<ops::LeakyRelu>({x}, attrs);
}
// min(max(x, min_val), max_val); the slope at both kinks is 0
template <class T> Var<T> hardtanh(Var<T> x, double min_val = -1, double max_val = 1) {
  Attrs attrs;
  attrs.min_val = min_val;
  attrs.max_val = max_val;
  return ops::record<ops::Hardtanh>({x}, attrs);
}
template <class T> Var<T> relu6(Var<T> x) { return hardtanh(x, 0, 6); }
// x sigmoid(x) (swish)
template <class T> Var<T> silu(Var<T> x) { return ops::record<ops::Silu>({x}); }
// x hardsigmoid(x); its slope at -3 is -1/2 and at 3 is 3/2, as PyTorch's
template <class T> Var<T> hardswish(Var<T> x) { return ops::record<ops::Hardswish>({x}); }
// min(max(x + 3, 0), 6) / 6; the slope at both kinks is 0
template <class T> Var<T> hardsigmoid(Var<T> x) { return ops::record<ops::Hardsigmoid>({x}); }
// x Phi(x); approximate is "none" (erf) or "tanh"
template <class T> Var<T> gelu(Var<T> x, const std::string& approximate = "none") {
  Attrs attrs;
  attrs.approximate = approximate;
  return ops::record<ops::Gelu>({x}, attrs);
}

}  // namespace ax
