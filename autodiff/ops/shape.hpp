// Ops that move values without changing them: reshape (flatten is a reshape), permute and concat.
#pragma once

#include "common.hpp"

#include <algorithm>
#include <string>
#include <vector>

namespace ax::ops {

// "[0, 2, 1]": a list of dims as messages show it.
inline std::string dims_text(const Dims& dims) {
  std::string out = "[";
  for (std::size_t i = 0; i < dims.size(); ++i) out += (i ? ", " : "") + std::to_string(dims[i]);
  return out + "]";
}

// y = x with the per-sample shape attrs.dims: the leading (batch) dimension is kept, so a tape
// replayed with another batch size still fits. One entry of dims may be -1 (inferred). In a
// model file the attribute is `shape` (torch.reshape's, without the batch).
struct Reshape : OpBase {
  static constexpr const char* name = "reshape";
  static constexpr Linearity linearity = Linearity::linear;
  static constexpr bool positively_homogeneous = true;
  static constexpr bool writes_unset_gradients = true;
  static FileForm file_form() { return file_op({{"shape", &Attrs::dims, Allowed::any, true}}); }
  static void finish(Attrs& a, const AttributeNames&) {
    if (a.dims.size() > 5) throw Error("shape has " + std::to_string(a.dims.size()) + " entries; at most 5 (a sample's)");
    const auto inferred = std::count(a.dims.begin(), a.dims.end(), -1L);
    for (long v : a.dims)
      if (v < 1 && v != -1) throw Error("shape " + dims_text(a.dims) + " holds " + std::to_string(v) + "; entries are at least 1, or -1");
    if (inferred > 1) throw Error("shape " + dims_text(a.dims) + " has more than one -1");
  }
  template <class T> static Var<T> from_graph(GraphNode<T>& node) { return record<Reshape>({node.input()}, node.attrs()); }
  template <class T> static Shape shape(const OpContext<T>& c) {
    const Shape& x = c.x(0).shape();
    if (x.empty()) c.fail("cannot reshape a scalar: the leading dimension is the batch");
    const std::size_t per_sample = numel(Shape(x.begin() + 1, x.end()));  // also for a batch of 0
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
  template <class T> static void backward(OpContext<T>& c) { pass_gradient(c, 0); }
  template <class T> static void tangent(OpContext<T>& c) { kernels::scale_or_zero(c.tx(0), T(1), c.ty()); }
};

// y = x with its dimensions reordered, as torch.permute: y's dimension d is x's attrs.dims[d].
// dims[0] is 0, so the batch stays first. Backward and tangent move values the same way.
struct Permute : OpBase {
  static constexpr const char* name = "permute";
  static constexpr Linearity linearity = Linearity::linear;
  static constexpr bool positively_homogeneous = true;
  static FileForm file_form() { return file_op({{"dims", &Attrs::dims, Allowed::any, true}}); }
  static void finish(Attrs& a, const AttributeNames&) { check_dims(a.dims); }
  template <class T> static Var<T> from_graph(GraphNode<T>& node) {
    if (node.attrs().dims.size() != node.input_shape().size())
      node.fail("dims " + dims_text(node.attrs().dims) + " has " + std::to_string(node.attrs().dims.size()) +
                " entries for an input of shape " + to_string(node.input_shape()) + " (the batch counted)");
    return record<Permute>({node.input()}, node.attrs());
  }

  template <class T> static Shape shape(const OpContext<T>& c) {
    const Dims& dims = c.attrs().dims;
    try {
      check_dims(dims);
    } catch (const Error& e) {
      c.fail(e.what());
    }
    const Shape& x = c.x(0).shape();
    if (dims.size() != x.size())
      c.fail("dims " + dims_text(dims) + " does not fit the rank of " + to_string(x));
    Shape y;
    for (long d : dims) y.push_back(x[static_cast<std::size_t>(d)]);
    return y;
  }
  template <class T> static void forward(OpContext<T>& c) {
    const T* x = c.x(0).data();
    T* y = c.y().data();
    each_source(c, [&](std::size_t out, std::size_t in) { y[out] = x[in]; });
  }
  template <class T> static void backward(OpContext<T>& c) {
    const T* gy = c.gy().data();
    T* gx = c.gx(0)->data();
    each_source(c, [&](std::size_t out, std::size_t in) { gx[in] += gy[out]; });
  }
  template <class T> static void tangent(OpContext<T>& c) {
    const T* tx = c.tx(0)->data();
    T* ty = c.ty().data();
    each_source(c, [&](std::size_t out, std::size_t in) { ty[out] = tx[in]; });
  }

  // A permutation of 0..n-1 (n at most 6) that keeps the batch (0) first.
  static void check_dims(const Dims& dims) {
    std::vector<bool> seen(dims.size(), false);
    for (long d : dims) {
      if (d < 0 || d >= static_cast<long>(dims.size()) || seen[static_cast<std::size_t>(d)])
        throw Error("dims " + dims_text(dims) + " is not a permutation of 0.." + std::to_string(long(dims.size()) - 1));
      seen[static_cast<std::size_t>(d)] = true;
    }
    if (dims.empty() || dims[0] != 0) throw Error("dims " + dims_text(dims) + " must start with 0 (the batch stays first)");
    if (dims.size() > 6) throw Error("dims " + dims_text(dims) + " has more than 6 entries");
  }

 private:
  // Calls f(flat index in y, flat index in x) for every element, y in row-major order.
  template <class T, class F> static void each_source(const OpContext<T>& c, F f) {
    const Shape& x = c.x(0).shape();
    const Dims& dims = c.attrs().dims;
    const std::size_t rank = x.size(), n = numel(x);
    if (n == 0) return;
    std::vector<std::size_t> x_stride(rank, 1), step(rank), extent(rank), index(rank, 0);
    for (std::size_t d = rank - 1; d > 0; --d) x_stride[d - 1] = x_stride[d] * x[d];
    for (std::size_t d = 0; d < rank; ++d) {  // y's dimension d walks x's dimension dims[d]
      step[d] = x_stride[static_cast<std::size_t>(dims[d])];
      extent[d] = x[static_cast<std::size_t>(dims[d])];
    }
    // y's elements in order; `in` follows y's multi-index through x's strides (an odometer)
    std::size_t in = 0;
    for (std::size_t out = 0; out < n; ++out) {
      f(out, in);
      for (std::size_t d = rank; d-- > 0;) {
        in += step[d];
        if (++index[d] < extent[d]) break;
        in -= step[d] * extent[d];
        index[d] = 0;
      }
    }
  }
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
  static constexpr bool writes_unset_gradients = true;
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
      if (Tensor<T>* g = c.gx(i)) {  // every block of an unset gx is written once
        T* gx = g->data() + o * len;
        const T* gy = c.gy().data() + at;
        if (c.gx_unset(i)) std::copy(gy, gy + len, gx);
        else for (std::size_t j = 0; j < len; ++j) gx[j] += gy[j];
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

// y = x[..., start:end, ...] along attrs.axis (a sample's axis; step 1), as PyTorch's x[:, a:b]:
// the axis is kept, with end - start entries. x[:, i] is this slice followed by a reshape.
struct Slice : OpBase {
  static constexpr const char* name = "slice";
  static constexpr Linearity linearity = Linearity::linear;
  static constexpr bool positively_homogeneous = true;
  static FileForm file_form() {
    return file_op({{"axis", &Attrs::axis, Allowed::sample_axis, true},
                    {"start", &Attrs::start, Allowed::non_negative, true},
                    {"end", &Attrs::end, Allowed::positive, true}});
  }
  static void finish(Attrs& a, const AttributeNames&) {
    if (!(a.start < a.end))
      throw Error("start " + std::to_string(a.start) + " must be below end " + std::to_string(a.end));
  }
  template <class T> static Var<T> from_graph(GraphNode<T>& node) {
    Attrs attrs = node.attrs();
    attrs.axis = node.axis(attrs.axis, "axis");
    return record<Slice>({node.input()}, attrs);
  }
  template <class T> static Shape shape(const OpContext<T>& c) {
    const std::size_t axis = static_cast<std::size_t>(c.attrs().axis);
    Shape y = c.x(0).shape();
    if (axis == 0 || axis >= y.size()) c.fail("axis " + std::to_string(axis) + " is not a sample's axis of " + to_string(y));
    const std::int64_t start = c.attrs().start, end = c.attrs().end;
    if (start < 0 || end <= start || static_cast<std::size_t>(end) > y[axis])
      c.fail("[start, end) = [" + std::to_string(start) + ", " + std::to_string(end) + ") does not fit the " +
             std::to_string(y[axis]) + " entries along axis " + std::to_string(axis) + " of " + to_string(y));
    y[axis] = static_cast<std::size_t>(end - start);
    return y;
  }
  template <class T> static void forward(OpContext<T>& c) {
    const T* x = c.x(0).data();
    T* y = c.y().data();
    each_block(c, [&](std::size_t in, std::size_t out, std::size_t len) { std::copy(x + in, x + in + len, y + out); });
  }
  template <class T> static void backward(OpContext<T>& c) {
    const T* gy = c.gy().data();
    T* gx = c.gx(0)->data();
    each_block(c, [&](std::size_t in, std::size_t out, std::size_t len) {
      for (std::size_t j = 0; j < len; ++j) gx[in + j] += gy[out + j];
    });
  }
  template <class T> static void tangent(OpContext<T>& c) {
    const T* tx = c.tx(0)->data();
    T* ty = c.ty().data();
    each_block(c, [&](std::size_t in, std::size_t out, std::size_t len) { std::copy(tx + in, tx + in + len, ty + out); });
  }

 private:
  // Calls f(offset in x, offset in y, length) for each contiguous block kept: one per outer index.
  template <class T, class F> static void each_block(const OpContext<T>& c, F f) {
    const kernels::AxisSplit xs = kernels::split_at(c.x(0).shape(), static_cast<std::size_t>(c.attrs().axis));
    const std::size_t start = static_cast<std::size_t>(c.attrs().start);
    const std::size_t len = static_cast<std::size_t>(c.attrs().end - c.attrs().start) * xs.inner;
    // [outer]
    for (std::size_t o = 0; o < xs.outer; ++o) f((o * xs.n + start) * xs.inner, o * len, len);
  }
};

// y[n] = value for every sample n: a learned constant (a class token, a position embedding, a
// layer scale), as a parameter `value` of the per-sample shape attrs.dims (the file's `shape`).
// Input 0 gives only the batch size; y does not depend on its values (its gradient is zero).
struct Constant : OpBase {
  static constexpr const char* name = "constant";
  static constexpr Linearity linearity = Linearity::linear;  // constant in input 0
  static constexpr bool shape_only_first = true;             // no path to input 0: it never varies
  static FileForm file_form() {
    return file_op({{"shape", &Attrs::dims, Allowed::positive, true}}, {{"value", true}});
  }
  static void finish(Attrs& a, const AttributeNames&) {
    if (a.dims.size() > 5) throw Error("shape has " + std::to_string(a.dims.size()) + " entries; at most 5 (a sample's)");
    for (long v : a.dims)
      if (v < 1) throw Error("shape " + dims_text(a.dims) + " holds " + std::to_string(v) + "; entries are at least 1");
  }
  static void check_parameters(const FileParameters& p) {
    const std::vector<std::size_t> expected(p.attrs->dims.begin(), p.attrs->dims.end());
    if (p.shape("value") != expected)
      throw Error("parameter " + p.quoted("value") + " has shape " + dims_string(p.shape("value")) + "; expected " +
                  dims_string(expected) + " (the node's shape)");
  }
  template <class T> static Var<T> from_graph(GraphNode<T>& node) {
    const Shape value(node.attrs().dims.begin(), node.attrs().dims.end());
    return record<Constant>({node.input(), node.parameter("value", value)});
  }
  template <class T> static Shape shape(const OpContext<T>& c) {
    if (c.x(0).shape().empty()) c.fail("input 0 is a scalar; it must have a batch dimension");
    Shape y{c.x(0).shape()[0]};
    for (std::size_t d : c.x(1).shape()) y.push_back(d);
    return y;
  }
  // y [N, value]
  template <class T> static void forward(OpContext<T>& c) {
    const std::size_t len = c.x(1).size();
    for (std::size_t n = 0; n < c.y().shape()[0]; ++n) std::copy(c.x(1).begin(), c.x(1).end(), c.y().data() + n * len);
  }
  template <class T> static void backward(OpContext<T>& c) {  // gvalue += sum over samples of gy
    Tensor<T>* g = c.gx(1);
    if (!g) return;
    const std::size_t len = g->size();
    const T* gy = c.gy().data();
    // [N, value]
    for (std::size_t n = 0; n < c.y().shape()[0]; ++n)
      for (std::size_t j = 0; j < len; ++j) g->data()[j] += gy[n * len + j];
  }
  template <class T> static void tangent(OpContext<T>& c) {  // ty[n] = tvalue
    T* ty = c.ty().data();
    const Tensor<T>* t = c.tx(1);
    const std::size_t len = c.x(1).size();
    for (std::size_t n = 0; n < c.y().shape()[0]; ++n) {
      if (t) std::copy(t->begin(), t->end(), ty + n * len);
      else std::fill(ty + n * len, ty + (n + 1) * len, T(0));
    }
  }
};

using ShapeOps = OpList<Reshape, Permute, Flatten, Concat, Slice, Constant>;

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

// The dimensions reordered, as torch.permute: y's dimension d is x's dims[d]; dims[0] must be 0.
template <class T> Var<T> permute(Var<T> x, const std::vector<long>& dims) {
  Attrs attrs;
  attrs.dims.assign(dims.begin(), dims.end());
  return ops::record<ops::Permute>({x}, attrs);
}

template <class T> Var<T> concat(const std::vector<Var<T>>& xs, int axis) {
  if (xs.empty()) throw Error("concat: no inputs");
  Attrs attrs;
  attrs.axis = ops::resolve_axis(xs[0], axis, "concat");
  return ops::record<ops::Concat>(xs, attrs);
}

// x[..., start:end, ...] along a sample's axis (the axis kept), as x[:, start:end] in PyTorch.
template <class T> Var<T> slice_along(Var<T> x, int axis, std::int64_t start, std::int64_t end) {
  Attrs attrs;
  attrs.axis = ops::resolve_axis(x, axis, "slice");
  attrs.start = start, attrs.end = end;
  return ops::record<ops::Slice>({x}, attrs);
}

// value repeated for every sample of x (only x's batch size is read): [N, value's shape].
template <class T> Var<T> learned_constant(Var<T> x, Var<T> value) {
  return ops::record<ops::Constant>({x, value});
}

}  // namespace ax
