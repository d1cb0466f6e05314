// Matrix products. Both act on the last dimension of their first input, so a batch (or any
// number of leading dimensions) rides along as the rows of one GEMM.
#pragma once

#include "../kernels/gemm.hpp"
#include "common.hpp"

namespace ax::ops {

// Rows and width of x seen as a matrix [rows, last dimension].
template <class T>
std::size_t rows_of(const Tensor<T>& x) {
  return x.size() / x.shape().back();
}

// y[..., N] = a[..., K] b[K, N]; or, batched, y[B..., M, N] = a[B..., M, K] b[B..., K, N] (inputs of
// one rank, at least 3, whose leading dimensions B agree), as torch.matmul. A model file's matmul
// is the batched form (the batch is one of the leading dimensions): attention's q k^T and p v.
struct MatMul : OpBase {
  static constexpr const char* name = "matmul";
  static constexpr Linearity linearity = Linearity::multilinear;
  static FileForm file_form() { return file_op({}, {}, 2, 2); }
  template <class T> static Var<T> from_graph(GraphNode<T>& node) {
    if (node.input_shape(0).size() < 3 || node.input_shape(1).size() != node.input_shape(0).size())
      node.fail("matmul multiplies batches of matrices: inputs of one rank, at least 3 with the batch, got " +
                to_string(node.input_shape(0)) + " and " + to_string(node.input_shape(1)));
    return record<MatMul>(node.inputs());
  }
  template <class T> static Shape shape(const OpContext<T>& c) {
    const Shape& a = c.x(0).shape();
    const Shape& b = c.x(1).shape();
    if (b.size() == 2 && a.size() >= 1 && a.back() == b[0]) {
      Shape y = a;
      y.back() = b[1];
      return y;
    }
    bool fits = a.size() >= 3 && b.size() == a.size() && a.back() == b[b.size() - 2];
    for (std::size_t d = 0; fits && d + 2 < a.size(); ++d) fits = a[d] == b[d];
    if (!fits)
      c.fail("cannot multiply shapes " + to_string(a) + " and " + to_string(b) +
             " (expected [..., K] and [K, N], or [B..., M, K] and [B..., K, N])");
    Shape y = a;
    y.back() = b.back();
    return y;
  }
  template <class T> static void forward(OpContext<T>& c) {
    const Sizes s = sizes(c);
    // [batches] of a[M, K] b[K, N]
    for (std::size_t i = 0; i < s.batches; ++i)
      kernels::gemm<T>(false, false, s.M, s.N, s.K, T(1), c.x(0).data() + i * s.a, s.K, c.x(1).data() + i * s.b, s.N,
                       T(0), c.y().data() + i * s.y, s.N);
  }
  template <class T> static void backward(OpContext<T>& c) {
    const Sizes s = sizes(c);
    // [batches]: ga[M, K] += gy[M, N] b[K, N]^T, gb[K, N] += a[M, K]^T gy[M, N]
    for (std::size_t i = 0; i < s.batches; ++i) {
      const T* gy = c.gy().data() + i * s.y;
      if (Tensor<T>* g = c.gx(0))
        kernels::gemm<T>(false, true, s.M, s.K, s.N, T(1), gy, s.N, c.x(1).data() + i * s.b, s.N, T(1),
                         g->data() + i * s.a, s.K);
      if (Tensor<T>* g = c.gx(1))
        kernels::gemm<T>(true, false, s.K, s.N, s.M, T(1), c.x(0).data() + i * s.a, s.K, gy, s.N, T(1),
                         g->data() + i * s.b, s.N);
    }
  }
  template <class T> static void tangent(OpContext<T>& c) {  // ty = ta b + a tb
    const Sizes s = sizes(c);
    // [batches]
    for (std::size_t i = 0; i < s.batches; ++i) {
      T* ty = c.ty().data() + i * s.y;
      T beta = T(0);
      if (const Tensor<T>* t = c.tx(0)) {
        kernels::gemm<T>(false, false, s.M, s.N, s.K, T(1), t->data() + i * s.a, s.K, c.x(1).data() + i * s.b, s.N,
                         beta, ty, s.N);
        beta = T(1);
      }
      if (const Tensor<T>* t = c.tx(1))
        kernels::gemm<T>(false, false, s.M, s.N, s.K, T(1), c.x(0).data() + i * s.a, s.K, t->data() + i * s.b, s.N,
                         beta, ty, s.N);
    }
  }

 private:
  // The product as `batches` GEMMs of [M, K] by [K, N], and each operand's step between them
  // (b's step is 0 when one [K, N] serves every row of a).
  struct Sizes {
    std::size_t batches, M, K, N, a, b, y;
  };
  template <class T> static Sizes sizes(const OpContext<T>& c) {
    const Shape& a = c.x(0).shape();
    const Shape& b = c.x(1).shape();
    const std::size_t K = b[b.size() - 2], N = b.back();
    if (b.size() == 2 && a.back() == K) return {1, rows_of(c.x(0)), K, N, 0, 0, 0};
    const std::size_t M = a[a.size() - 2];
    return {M * K == 0 ? 0 : c.x(0).size() / (M * K), M, K, N, M * K, K * N, M * N};
  }
};

// y[..., O] = x[..., I] w[O, I]^T + bias[O]; the bias (input 2) is optional. PyTorch's nn.Linear.
struct Linear : OpBase {
  static constexpr const char* name = "linear";
  static constexpr Linearity linearity = Linearity::multilinear;  // bilinear in x and the weight
  static constexpr bool scales_with_parameters = true;
  static constexpr bool writes_unset_gradients = true;
  static FileForm file_form() { return file_op({}, {{"weight", true}, {"bias", false}}); }
  static void check_parameters(const FileParameters& p) {
    if (p.shape("weight").size() != 2)
      throw Error("parameter " + p.quoted("weight") + " has shape " + dims_string(p.shape("weight")) +
                  "; expected rank 2, [O, I]");
    check_bias_fits_weight(p);
  }
  template <class T> static Var<T> from_graph(GraphNode<T>& node) {
    const Shape& x = node.input_shape();
    if (x.size() < 2) node.fail("linear needs an input with features, got shape " + to_string(x));
    std::vector<Var<T>> inputs{node.input(), node.parameter("weight", {0, x.back()})};
    if (node.has("bias")) inputs.push_back(node.parameter("bias", {inputs[1].tape->value(inputs[1]).shape()[0]}));
    return record<Linear>(inputs);
  }
  template <class T> static Shape shape(const OpContext<T>& c) {
    const Shape& x = c.x(0).shape();
    const Shape& w = c.x(1).shape();
    if (x.size() < 1 || w.size() != 2 || x.back() != w[1])
      c.fail("input " + to_string(x) + " does not fit weight " + to_string(w) + " (expected [..., I] and [O, I])");
    if (c.arity() == 3 && c.x(2).shape() != Shape{w[0]})
      c.fail("bias has shape " + to_string(c.x(2).shape()) + ", expected [" + std::to_string(w[0]) + "]");
    Shape y = x;
    y.back() = w[0];
    return y;
  }
  template <class T> static void forward(OpContext<T>& c) {
    const std::size_t R = rows_of(c.x(0)), I = c.x(1).shape()[1], O = c.x(1).shape()[0];
    kernels::gemm<T>(false, true, R, O, I, T(1), c.x(0).data(), I, c.x(1).data(), I, T(0), c.y().data(), O);
    if (c.arity() == 3) add_rows(c.x(2).data(), R, O, c.y().data());  // the bias after the products (kernels/conv.cpp, direct_tile)
  }
  template <class T> static void backward(OpContext<T>& c) {
    const std::size_t R = rows_of(c.x(0)), I = c.x(1).shape()[1], O = c.x(1).shape()[0];
    // beta 0 where the gradient is unset: the GEMM writes it without reading it
    if (Tensor<T>* g = c.gx(0))  // gx[R, I] (+)= gy[R, O] w[O, I]
      kernels::gemm<T>(false, false, R, I, O, T(1), c.gy().data(), O, c.x(1).data(), I, T(c.gx_unset(0) ? 0 : 1),
                       g->data(), I);
    if (Tensor<T>* g = c.gx(1))  // gw[O, I] (+)= gy[R, O]^T x[R, I]
      kernels::gemm<T>(true, false, O, I, R, T(1), c.gy().data(), O, c.x(0).data(), I, T(c.gx_unset(1) ? 0 : 1),
                       g->data(), I);
    if (c.arity() == 3)
      if (Tensor<T>* g = gx_to_add(c, 2)) {  // gbias[O] += sum over rows of gy[R, O]
        const T* gy = c.gy().data();
        T* gb = g->data();
        // [R, O]
        for (std::size_t r = 0; r < R; ++r)
          for (std::size_t o = 0; o < O; ++o) gb[o] += gy[r * O + o];
      }
  }
  template <class T> static void tangent(OpContext<T>& c) {  // ty = tx w^T + x tw^T + tbias
    const std::size_t R = rows_of(c.x(0)), I = c.x(1).shape()[1], O = c.x(1).shape()[0];
    T* ty = c.ty().data();
    const Tensor<T>* tbias = c.arity() == 3 ? c.tx(2) : nullptr;
    // At least one of the three has a tangent, so ty is fully written.
    T beta = T(0);
    if (tbias) {
      fill_rows(tbias->data(), R, O, ty);
      beta = T(1);
    }
    if (const Tensor<T>* t = c.tx(0)) {
      kernels::gemm<T>(false, true, R, O, I, T(1), t->data(), I, c.x(1).data(), I, beta, ty, O);
      beta = T(1);
    }
    if (const Tensor<T>* t = c.tx(1))
      kernels::gemm<T>(false, true, R, O, I, T(1), c.x(0).data(), I, t->data(), I, beta, ty, O);
  }

 private:
  // y[r, o] = bias[o] for every row r (then the GEMM adds onto it).
  template <class T> static void fill_rows(const T* bias, std::size_t R, std::size_t O, T* y) {
    // [R, O]
    for (std::size_t r = 0; r < R; ++r)
      for (std::size_t o = 0; o < O; ++o) y[r * O + o] = bias[o];
  }
  // y[r, o] += bias[o] for every row r.
  template <class T> static void add_rows(const T* bias, std::size_t R, std::size_t O, T* y) {
    // [R, O]
    for (std::size_t r = 0; r < R; ++r)
      for (std::size_t o = 0; o < O; ++o) y[r * O + o] += bias[o];
  }
};

using LinalgOps = OpList<MatMul, Linear>;

}  // namespace ax::ops

namespace ax {

// a[..., K] b[K, N] -> [..., N]
template <class T> Var<T> matmul(Var<T> a, Var<T> b) { return ops::record<ops::MatMul>({a, b}); }
// x[..., I] w[O, I]^T (+ bias[O]) -> [..., O], as torch.nn.Linear
template <class T> Var<T> linear(Var<T> x, Var<T> weight) { return ops::record<ops::Linear>({x, weight}); }
template <class T> Var<T> linear(Var<T> x, Var<T> weight, Var<T> bias) {
  return ops::record<ops::Linear>({x, weight, bias});
}

}  // namespace ax
