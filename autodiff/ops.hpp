// The ops a user records on a tape: each call appends one node and computes its value.
// Elementwise binary ops need equal shapes (no broadcasting); linear broadcasts its bias over
// the rows, and that is the only broadcasting there is. Axes may be negative (-1 is the last).
// Shapes that do not fit throw ax::Error naming the op and the shapes.
#pragma once

#include "tape.hpp"

#include <vector>

namespace ax {

template <class T> Var<T> operator+(Var<T> a, Var<T> b);  // add
template <class T> Var<T> operator-(Var<T> a, Var<T> b);  // sub
template <class T> Var<T> operator*(Var<T> a, Var<T> b);  // mul
template <class T> Var<T> operator/(Var<T> a, Var<T> b);  // div

// y = a x + b with constants: neg, scale and shift all record this one op.
template <class T> Var<T> affine(Var<T> x, double a, double b);
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

template <class T> Var<T> exp(Var<T> x);
template <class T> Var<T> log(Var<T> x);
template <class T> Var<T> sigmoid(Var<T> x);
template <class T> Var<T> tanh(Var<T> x);
template <class T> Var<T> relu(Var<T> x);                         // relu'(0) = 0
template <class T> Var<T> leaky_relu(Var<T> x, double slope = 0.01);  // slope at 0 = slope

// a[..., K] b[K, N] -> [..., N]
template <class T> Var<T> matmul(Var<T> a, Var<T> b);
// x[..., I] w[O, I]^T (+ bias[O]) -> [..., O], as torch.nn.Linear
template <class T> Var<T> linear(Var<T> x, Var<T> weight);
template <class T> Var<T> linear(Var<T> x, Var<T> weight, Var<T> bias);

// Whole-tensor reductions give a scalar (shape []); along an axis, it is dropped or kept as 1.
template <class T> Var<T> sum(Var<T> x);
template <class T> Var<T> sum(Var<T> x, int axis, bool keep_dim = false);
template <class T> Var<T> mean(Var<T> x);
template <class T> Var<T> mean(Var<T> x, int axis, bool keep_dim = false);

// The per-sample shape changes, the leading (batch) dimension stays; one dim may be -1.
template <class T> Var<T> reshape(Var<T> x, const std::vector<long>& per_sample_dims);
// Dimensions start_dim.. joined into one (start_dim >= 1: the batch stays), as torch.flatten.
template <class T> Var<T> flatten(Var<T> x, int start_dim = 1);
template <class T> Var<T> concat(const std::vector<Var<T>>& xs, int axis);

template <class T> Var<T> softmax(Var<T> x, int axis = -1);
template <class T> Var<T> log_softmax(Var<T> x, int axis = -1);

}  // namespace ax
