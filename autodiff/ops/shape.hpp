// Ops that move values without changing them: reshape (flatten is a reshape) and concat.
#pragma once

#include "common.hpp"

#include <algorithm>

namespace ax::ops {

// y = x with the per-sample shape attrs.dims: the leading (batch) dimension is kept, so a tape
// replayed with another batch size still fits. One entry of dims may be -1 (inferred).
struct Reshape : OpBase {
  static constexpr const char* name = "reshape";
  static constexpr Linearity linearity = Linearity::linear;
  static constexpr bool positively_homogeneous = true;
  template <class T> static Shape shape(const OpContext<T>& c) {
    const Shape& x = c.x(0).shape();
    if (x.empty()) c.fail("cannot reshape a scalar: the leading dimension is the batch");
    const std::size_t per_sample = numel(x) / std::max<std::size_t>(x[0], 1);
    Shape y{x[0]};
    std::size_t known = 1;
    int inferred = -1;
    for (std::size_t d = 0; d < c.attrs().dims.size(); ++d) {
      const long v = c.attrs().dims[d];
      if (v == -1 && inferred < 0) {
        inferred = static_cast<int>(d) + 1;
        y.push_back(1);
      } else if (v < 0) {
        c.fail("dimension " + std::to_string(v) + " is not allowed (one -1 at most)");
      } else {
        y.push_back(static_cast<std::size_t>(v));
        known *= static_cast<std::size_t>(v);
      }
    }
    if (inferred >= 0 && known != 0 && per_sample % known == 0) y[static_cast<std::size_t>(inferred)] = per_sample / known;
    if (x[0] != 0 && numel(y) != numel(x))
      c.fail("cannot reshape " + to_string(x) + " to " + to_string(y) + ": element counts differ");
    return y;
  }
  template <class T> static void forward(OpContext<T>& c) { std::copy(c.x(0).begin(), c.x(0).end(), c.y().data()); }
  template <class T> static void backward(OpContext<T>& c) { kernels::axpy(T(1), c.gy(), *c.gx(0)); }
  template <class T> static void tangent(OpContext<T>& c) { kernels::scale_or_zero(c.tx(0), T(1), c.ty()); }
};

// Dimensions start_dim.. joined into one, as torch.nn.Flatten: a model-file op recorded as a reshape.
struct Flatten : OpBase {
  static constexpr const char* name = "flatten";
  static constexpr Linearity linearity = Linearity::linear;
  static constexpr bool positively_homogeneous = true;
  static FileForm file_form() { return file_op({{"start_dim", &Attrs::start_dim, Allowed::sample_axis}}); }
  template <class T> static Var<T> from_graph(GraphNode<T>& node) {
    return flatten_from(node.input(), node.axis(node.attrs().start_dim, "start_dim"));
  }
  // x's dimensions from `start` (resolved, at least 1) on, joined.
  template <class T> static Var<T> flatten_from(Var<T> x, int start) {
    const Shape& shape = x.tape->value(x).shape();
    Attrs attrs;
    attrs.dims.assign(shape.begin() + 1, shape.begin() + start);
    attrs.dims.push_back(-1);
    return record<Reshape>({x}, attrs);
  }
};

// y = the inputs joined along attrs.axis; every other dimension must agree.
struct Concat : OpBase {
  static constexpr const char* name = "concat";
  static constexpr Linearity linearity = Linearity::linear;
  static FileForm file_form() { return file_op({{"axis", &Attrs::axis, Allowed::sample_axis}}, {}, 2, kAnyCount); }
  static void set_defaults(Attrs& a) { a.axis = 1; }
  template <class T> static Var<T> from_graph(GraphNode<T>& node) {
    Attrs attrs;
    attrs.axis = node.axis(node.attrs().axis, "axis");
    return record<Concat>(node.inputs(), attrs);
  }
  template <class T> static Shape shape(const OpContext<T>& c) {
    const std::size_t axis = static_cast<std::size_t>(c.attrs().axis);
    Shape y = c.x(0).shape();
    if (axis >= y.size()) c.fail("axis " + std::to_string(axis) + " is out of range for shape " + to_string(y));
    for (int i = 1; i < c.arity(); ++i) {
      const Shape& s = c.x(i).shape();
      bool fits = s.size() == y.size();
      for (std::size_t d = 0; fits && d < s.size(); ++d) fits = d == axis || s[d] == y[d];
      if (!fits)
        c.fail("input " + std::to_string(i) + " has shape " + to_string(s) + ", which does not fit " +
               to_string(c.x(0).shape()) + " along axis " + std::to_string(axis));
      y[axis] += s[axis];
    }
    return y;
  }
  // Each input is a block [outer, n_i, inner] of y [outer, sum n_i, inner], starting at `offset`.
  template <class T> static void forward(OpContext<T>& c) {
    for_each_block(c, [&](int i, std::size_t o, std::size_t at, std::size_t len) {
      const T* x = c.x(i).data() + o * len;
      std::copy(x, x + len, c.y().data() + at);
    });
  }
  template <class T> static void backward(OpContext<T>& c) {
    for_each_block(c, [&](int i, std::size_t o, std::size_t at, std::size_t len) {
      if (Tensor<T>* g = c.gx(i)) {
        T* gx = g->data() + o * len;
        const T* gy = c.gy().data() + at;
        for (std::size_t j = 0; j < len; ++j) gx[j] += gy[j];
      }
    });
  }
  template <class T> static void tangent(OpContext<T>& c) {
    for_each_block(c, [&](int i, std::size_t o, std::size_t at, std::size_t len) {
      T* ty = c.ty().data() + at;
      if (const Tensor<T>* t = c.tx(i)) std::copy(t->data() + o * len, t->data() + (o + 1) * len, ty);
      else std::fill(ty, ty + len, T(0));
    });
  }

 private:
  // Calls f(input i, outer index o, offset in y, length) for every contiguous block.
  template <class T, class F> static void for_each_block(OpContext<T>& c, F f) {
    const std::size_t axis = static_cast<std::size_t>(c.attrs().axis);
    const kernels::AxisSplit ys = kernels::split_at(c.y().shape(), axis);
    const std::size_t row = ys.n * ys.inner;  // one outer slice of y
    // [outer, inputs]
    for (std::size_t o = 0; o < ys.outer; ++o) {
      std::size_t at = o * row;
      for (int i = 0; i < c.arity(); ++i) {
        const std::size_t len = c.x(i).shape()[axis] * ys.inner;
        f(i, o, at, len);
        at += len;
      }
    }
  }
};

using ShapeOps = OpList<Reshape, Flatten, Concat>;

}  // namespace ax::ops

namespace ax {

// The per-sample shape changes, the leading (batch) dimension stays; one dim may be -1.
template <class T> Var<T> reshape(Var<T> x, const std::vector<long>& per_sample_dims) {
  if (per_sample_dims.size() > 5)
    throw Error("reshape: at most 5 per-sample dimensions, " + std::to_string(per_sample_dims.size()) + " given");
  Attrs attrs;
  attrs.dims.assign(per_sample_dims.begin(), per_sample_dims.end());
  return ops::record<ops::Reshape>({x}, attrs);
}

// Dimensions start_dim.. joined into one (start_dim >= 1: the batch stays), as torch.flatten.
template <class T> Var<T> flatten(Var<T> x, int start_dim = 1) {
  const int start = ops::resolve_axis(x, start_dim, "flatten");
  if (start == 0) throw Error("flatten: start_dim 0 would merge the batch dimension");
  return ops::Flatten::flatten_from(x, start);
}

template <class T> Var<T> concat(const std::vector<Var<T>>& xs, int axis) {
  if (xs.empty()) throw Error("concat: no inputs");
  Attrs attrs;
  attrs.axis = ops::resolve_axis(xs[0], axis, "concat");
  return ops::record<ops::Concat>(xs, attrs);
}

}  // namespace ax
