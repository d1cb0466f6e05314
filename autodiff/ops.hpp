// The ops a user records on a tape: each call appends one node and computes its value.
// Elementwise binary ops need equal shapes (no broadcasting); linear broadcasts its bias over
// the rows, and that is the only broadcasting there is. Axes may be negative (-1 is the last).
// Shapes that do not fit throw ax::Error naming the op and the shapes.
#pragma once

#include "tape.hpp"

#include <cstdint>
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

// ---- convolutional networks: x is [N, C, H, W]; PyTorch's functions of the same names ----
// Pairs are [h, w], and one number means both: conv2d(x, w, b, 2, 1) has stride 2, padding 1.

// weight[O, C/groups, KH, KW], bias[O]; zero padding. groups == C == O is a depthwise convolution.
template <class T> Var<T> conv2d(Var<T> x, Var<T> weight, Pair2d stride = 1, Pair2d padding = 0,
                                 Pair2d dilation = 1, std::int64_t groups = 1);
template <class T> Var<T> conv2d(Var<T> x, Var<T> weight, Var<T> bias, Pair2d stride = 1, Pair2d padding = 0,
                                 Pair2d dilation = 1, std::int64_t groups = 1);
// The stride is the kernel unless given. Padding (at most half the kernel) is -inf for maxpool2d
// and zeros for avgpool2d, whose divisor counts it unless count_include_pad is false. ceil_mode
// rounds the output size up, dropping a last window that would start in the right padding.
// maxpool2d's gradient (and tangent) goes to the first maximum of a window in row-major order.
template <class T> Var<T> maxpool2d(Var<T> x, Pair2d kernel);
template <class T> Var<T> maxpool2d(Var<T> x, Pair2d kernel, Pair2d stride, Pair2d padding = 0, bool ceil_mode = false);
template <class T> Var<T> avgpool2d(Var<T> x, Pair2d kernel);
template <class T> Var<T> avgpool2d(Var<T> x, Pair2d kernel, Pair2d stride, Pair2d padding = 0, bool ceil_mode = false,
                                    bool count_include_pad = true);
// Output [N, C, oh, ow], window i over rows [floor(i H / oh), ceil((i + 1) H / oh)); any size >= 1.
template <class T> Var<T> adaptive_avgpool2d(Var<T> x, Pair2d output_size);
// BatchNorm2d in eval mode: (x - running_mean) / sqrt(running_var + eps) * weight + bias per
// channel; all of [C]. Without weight and bias, they are 1 and 0.
template <class T> Var<T> batchnorm2d(Var<T> x, Var<T> running_mean, Var<T> running_var, double eps = 1e-5);
template <class T> Var<T> batchnorm2d(Var<T> x, Var<T> running_mean, Var<T> running_var, Var<T> weight,
                                      Var<T> bias, double eps = 1e-5);
// (x - mean[c]) / stddev[c] per channel c on dimension 1 (any rank >= 2), as torchvision's
// Normalize: constants, one per channel or one for all; stddev > 0.
template <class T> Var<T> normalize(Var<T> x, const std::vector<double>& mean, const std::vector<double>& stddev);

}  // namespace ax
