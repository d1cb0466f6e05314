// Recording: each public op function builds its node's attributes and appends it to the tape.
// The op structs themselves (forward, backward and tangent side by side) are in ops/*.hpp.
#include "ops.hpp"

#include "ops/conv.hpp"
#include "ops/elementwise.hpp"
#include "ops/linalg.hpp"
#include "ops/norm.hpp"
#include "ops/pool.hpp"
#include "ops/reduce.hpp"
#include "ops/shape.hpp"
#include "ops/softmax.hpp"

namespace ax {
namespace {

// One OpFns table per op and scalar type, made on first use.
template <class Op, class T>
const OpFns<T>& fns() {
  static const OpFns<T> table{Op::name, &Op::template shape<T>, &Op::template forward<T>,
                              &Op::template backward<T>, &Op::template tangent<T>};
  return table;
}

template <class T>
Tape<T>& tape_of(std::initializer_list<Var<T>> vars, const char* op) {
  Tape<T>* tape = vars.begin()->tape;
  for (const Var<T>& v : vars)
    if (!v.tape || v.tape != tape) throw Error(std::string(op) + ": inputs are not all on one tape");
  return *tape;
}

template <class Op, class T>
Var<T> record(std::initializer_list<Var<T>> inputs, Attrs attrs = {}) {
  Tape<T>& tape = tape_of(inputs, Op::name);
  std::vector<int> ids;
  for (const Var<T>& v : inputs) ids.push_back(v.id);
  return tape.record(fns<Op, T>(), std::move(ids), std::move(attrs));
}

// -1 is the last axis; an axis outside the rank is an error naming the op.
template <class T>
int resolve_axis(Var<T> x, int axis, const char* op) {
  const int rank = static_cast<int>(x.tape->value(x).dimension());
  const int resolved = axis < 0 ? axis + rank : axis;
  if (resolved < 0 || resolved >= rank)
    throw Error(std::string(op) + ": axis " + std::to_string(axis) + " is out of range for " +
                x.tape->describe(x.id) + " of shape " + to_string(x.tape->value(x).shape()));
  return resolved;
}

}  // namespace

template <class T> Var<T> operator+(Var<T> a, Var<T> b) { return record<ops::Add>({a, b}); }
template <class T> Var<T> operator-(Var<T> a, Var<T> b) { return record<ops::Sub>({a, b}); }
template <class T> Var<T> operator*(Var<T> a, Var<T> b) { return record<ops::Mul>({a, b}); }
template <class T> Var<T> operator/(Var<T> a, Var<T> b) { return record<ops::Div>({a, b}); }

template <class T> Var<T> affine(Var<T> x, double a, double b) {
  Attrs attrs;
  attrs.a = a;
  attrs.b = b;
  return record<ops::Affine>({x}, attrs);
}

template <class T> Var<T> exp(Var<T> x) { return record<ops::Exp>({x}); }
template <class T> Var<T> log(Var<T> x) { return record<ops::Log>({x}); }
template <class T> Var<T> sigmoid(Var<T> x) { return record<ops::Sigmoid>({x}); }
template <class T> Var<T> tanh(Var<T> x) { return record<ops::Tanh>({x}); }
template <class T> Var<T> relu(Var<T> x) { return record<ops::Relu>({x}); }
template <class T> Var<T> leaky_relu(Var<T> x, double slope) {
  Attrs attrs;
  attrs.a = slope;
  return record<ops::LeakyRelu>({x}, attrs);
}

template <class T> Var<T> matmul(Var<T> a, Var<T> b) { return record<ops::MatMul>({a, b}); }
template <class T> Var<T> linear(Var<T> x, Var<T> weight) { return record<ops::Linear>({x, weight}); }
template <class T> Var<T> linear(Var<T> x, Var<T> weight, Var<T> bias) {
  return record<ops::Linear>({x, weight, bias});
}

template <class Op, class T>
Var<T> reduce(Var<T> x, int axis, bool keep_dim) {
  Attrs attrs;
  attrs.axis = axis;
  attrs.keep_dim = keep_dim;
  return record<Op>({x}, attrs);
}
template <class T> Var<T> sum(Var<T> x) { return reduce<ops::Sum>(x, -1, false); }
template <class T> Var<T> sum(Var<T> x, int axis, bool keep_dim) {
  return reduce<ops::Sum>(x, resolve_axis(x, axis, "sum"), keep_dim);
}
template <class T> Var<T> mean(Var<T> x) { return reduce<ops::Mean>(x, -1, false); }
template <class T> Var<T> mean(Var<T> x, int axis, bool keep_dim) {
  return reduce<ops::Mean>(x, resolve_axis(x, axis, "mean"), keep_dim);
}

template <class T> Var<T> reshape(Var<T> x, const std::vector<long>& per_sample_dims) {
  Attrs attrs;
  if (per_sample_dims.size() > 5)
    throw Error("reshape: at most 5 per-sample dimensions, " + std::to_string(per_sample_dims.size()) + " given");
  for (long d : per_sample_dims) attrs.dims.push_back(d);
  return record<ops::Reshape>({x}, attrs);
}

template <class T> Var<T> flatten(Var<T> x, int start_dim) {
  const int start = resolve_axis(x, start_dim, "flatten");
  if (start == 0) throw Error("flatten: start_dim 0 would merge the batch dimension");
  const Shape& shape = x.tape->value(x).shape();
  std::vector<long> dims(shape.begin() + 1, shape.begin() + start);
  dims.push_back(-1);
  return reshape(x, dims);
}

template <class T> Var<T> concat(const std::vector<Var<T>>& xs, int axis) {
  if (xs.empty()) throw Error("concat: no inputs");
  Tape<T>& tape = *xs[0].tape;
  std::vector<int> ids;
  for (const Var<T>& v : xs) {
    if (v.tape != &tape) throw Error("concat: inputs are not all on one tape");
    ids.push_back(v.id);
  }
  Attrs attrs;
  attrs.axis = resolve_axis(xs[0], axis, "concat");
  return tape.record(fns<ops::Concat, T>(), std::move(ids), attrs);
}

template <class T> Var<T> softmax(Var<T> x, int axis) {
  Attrs attrs;
  attrs.axis = resolve_axis(x, axis, "softmax");
  return record<ops::Softmax>({x}, attrs);
}
template <class T> Var<T> log_softmax(Var<T> x, int axis) {
  Attrs attrs;
  attrs.axis = resolve_axis(x, axis, "log_softmax");
  return record<ops::LogSoftmax>({x}, attrs);
}

namespace {

// The window attributes of conv2d and the pools (the rest keep Window2d's defaults).
Attrs conv_attrs(Pair2d stride, Pair2d padding, Pair2d dilation, std::int64_t groups) {
  Attrs attrs;
  attrs.window.stride = stride;
  attrs.window.padding = padding;
  attrs.window.dilation = dilation;
  attrs.window.groups = groups;
  return attrs;
}
Attrs pool_attrs(Pair2d kernel, Pair2d stride, Pair2d padding, bool ceil_mode, bool count_include_pad) {
  Attrs attrs;
  attrs.window.kernel = kernel;
  attrs.window.stride = stride;
  attrs.window.padding = padding;
  attrs.window.ceil_mode = ceil_mode;
  attrs.window.count_include_pad = count_include_pad;
  return attrs;
}

}  // namespace

template <class T> Var<T> conv2d(Var<T> x, Var<T> weight, Pair2d stride, Pair2d padding, Pair2d dilation,
                                 std::int64_t groups) {
  return record<ops::Conv2d>({x, weight}, conv_attrs(stride, padding, dilation, groups));
}
template <class T> Var<T> conv2d(Var<T> x, Var<T> weight, Var<T> bias, Pair2d stride, Pair2d padding,
                                 Pair2d dilation, std::int64_t groups) {
  return record<ops::Conv2d>({x, weight, bias}, conv_attrs(stride, padding, dilation, groups));
}

template <class T> Var<T> maxpool2d(Var<T> x, Pair2d kernel) { return maxpool2d(x, kernel, kernel); }
template <class T> Var<T> maxpool2d(Var<T> x, Pair2d kernel, Pair2d stride, Pair2d padding, bool ceil_mode) {
  return record<ops::MaxPool2d>({x}, pool_attrs(kernel, stride, padding, ceil_mode, true));
}
template <class T> Var<T> avgpool2d(Var<T> x, Pair2d kernel) { return avgpool2d(x, kernel, kernel); }
template <class T> Var<T> avgpool2d(Var<T> x, Pair2d kernel, Pair2d stride, Pair2d padding, bool ceil_mode,
                                    bool count_include_pad) {
  return record<ops::AvgPool2d>({x}, pool_attrs(kernel, stride, padding, ceil_mode, count_include_pad));
}
template <class T> Var<T> adaptive_avgpool2d(Var<T> x, Pair2d output_size) {
  Attrs attrs;
  attrs.window.output_size = output_size;
  return record<ops::AdaptiveAvgPool2d>({x}, attrs);
}

template <class T> Var<T> batchnorm2d(Var<T> x, Var<T> running_mean, Var<T> running_var, double eps) {
  Attrs attrs;
  attrs.a = eps;
  return record<ops::BatchNorm2d>({x, running_mean, running_var}, attrs);
}
template <class T> Var<T> batchnorm2d(Var<T> x, Var<T> running_mean, Var<T> running_var, Var<T> weight,
                                      Var<T> bias, double eps) {
  Attrs attrs;
  attrs.a = eps;
  return record<ops::BatchNorm2d>({x, running_mean, running_var, weight, bias}, attrs);
}

template <class T> Var<T> normalize(Var<T> x, const std::vector<double>& mean, const std::vector<double>& stddev) {
  Attrs attrs;
  attrs.mean = mean;
  attrs.stddev = stddev;
  return record<ops::Normalize>({x}, attrs);
}

#define AX_INSTANTIATE_OPS(T)                                              \
  template Var<T> operator+(Var<T>, Var<T>);                               \
  template Var<T> operator-(Var<T>, Var<T>);                               \
  template Var<T> operator*(Var<T>, Var<T>);                               \
  template Var<T> operator/(Var<T>, Var<T>);                               \
  template Var<T> affine(Var<T>, double, double);                          \
  template Var<T> exp(Var<T>);                                             \
  template Var<T> log(Var<T>);                                             \
  template Var<T> sigmoid(Var<T>);                                         \
  template Var<T> tanh(Var<T>);                                            \
  template Var<T> relu(Var<T>);                                            \
  template Var<T> leaky_relu(Var<T>, double);                              \
  template Var<T> matmul(Var<T>, Var<T>);                                  \
  template Var<T> linear(Var<T>, Var<T>);                                  \
  template Var<T> linear(Var<T>, Var<T>, Var<T>);                          \
  template Var<T> sum(Var<T>);                                             \
  template Var<T> sum(Var<T>, int, bool);                                  \
  template Var<T> mean(Var<T>);                                            \
  template Var<T> mean(Var<T>, int, bool);                                 \
  template Var<T> reshape(Var<T>, const std::vector<long>&);               \
  template Var<T> flatten(Var<T>, int);                                    \
  template Var<T> concat(const std::vector<Var<T>>&, int);                 \
  template Var<T> softmax(Var<T>, int);                                    \
  template Var<T> log_softmax(Var<T>, int);                                \
  template Var<T> conv2d(Var<T>, Var<T>, Pair2d, Pair2d, Pair2d,           \
                         std::int64_t);                                    \
  template Var<T> conv2d(Var<T>, Var<T>, Var<T>, Pair2d, Pair2d, Pair2d,   \
                         std::int64_t);                                    \
  template Var<T> maxpool2d(Var<T>, Pair2d);                               \
  template Var<T> maxpool2d(Var<T>, Pair2d, Pair2d, Pair2d, bool);         \
  template Var<T> avgpool2d(Var<T>, Pair2d);                               \
  template Var<T> avgpool2d(Var<T>, Pair2d, Pair2d, Pair2d, bool, bool);   \
  template Var<T> adaptive_avgpool2d(Var<T>, Pair2d);                      \
  template Var<T> batchnorm2d(Var<T>, Var<T>, Var<T>, double);             \
  template Var<T> batchnorm2d(Var<T>, Var<T>, Var<T>, Var<T>, Var<T>,       \
                              double);                                     \
  template Var<T> normalize(Var<T>, const std::vector<double>&,            \
                            const std::vector<double>&);

AX_INSTANTIATE_OPS(float)
AX_INSTANTIATE_OPS(double)

}  // namespace ax
