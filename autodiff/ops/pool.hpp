// 2-D pooling, as torch.nn.functional.max_pool2d, avg_pool2d and adaptive_avg_pool2d
// (kernels/pool.hpp has the windows and the divisors).
#pragma once

#include "../kernels/pool.hpp"
#include "kinks.hpp"
#include "window.hpp"

#include <limits>

namespace ax::ops {

// The output shape [N, C, OH, OW] of a fixed-window pool, after PyTorch's checks: kernel and
// stride positive, padding at most half the kernel, and at least one output.
template <class T>
Shape fixed_window_shape(const OpContext<T>& c) {
  require_nchw(c);
  const Attrs& a = c.attrs();
  require_positive(c, "kernel", a.kernel);
  require_positive(c, "stride", a.stride);
  require_non_negative(c, "padding", a.padding);
  if (a.padding.h > a.kernel.h / 2 || a.padding.w > a.kernel.w / 2)
    c.fail("padding " + pair_string(a.padding) + " is more than half the kernel " + pair_string(a.kernel));
  const Shape& x = c.x(0).shape();
  const Pair2d out(kernels::pool_output_size(std::int64_t(x[2]), a.kernel.h, a.stride.h, a.padding.h, a.ceil_mode),
                   kernels::pool_output_size(std::int64_t(x[3]), a.kernel.w, a.stride.w, a.padding.w, a.ceil_mode));
  if (out.h < 1 || out.w < 1)
    c.fail("output size " + pair_string(out) + " is too small: input [" + std::to_string(x[2]) + ", " +
           std::to_string(x[3]) + "], kernel " + pair_string(a.kernel) + ", stride " + pair_string(a.stride) +
           ", padding " + pair_string(a.padding));
  return {x[0], x[1], std::size_t(out.h), std::size_t(out.w)};
}

// The kernels' view of a fixed-window pool whose output y is already shaped.
template <class T>
kernels::Pool2dShape fixed_window_pool(const OpContext<T>& c) {
  const Shape& x = c.x(0).shape();
  const Attrs& a = c.attrs();
  kernels::Pool2dShape s;
  s.planes = x[0] * x[1];
  s.h = {x[2], c.y().shape()[2], std::size_t(a.kernel.h), std::size_t(a.stride.h), std::size_t(a.padding.h),
         a.count_include_pad, false};
  s.w = {x[3], c.y().shape()[3], std::size_t(a.kernel.w), std::size_t(a.stride.w), std::size_t(a.padding.w),
         a.count_include_pad, false};
  return s;
}

// The model-file form of maxpool2d and avgpool2d: the stride defaults to the kernel, and PyTorch
// allows padding up to half the kernel.
struct FixedWindowPool : OpBase {
  static FileForm file_form() {
    return file_op({{"kernel", &Attrs::kernel, Allowed::positive, true},
                    {"stride", &Attrs::stride, Allowed::positive, false, true},
                    {"padding", &Attrs::padding, Allowed::non_negative},
                    {"ceil_mode", &Attrs::ceil_mode}});
  }
  static void finish(Attrs& a, const AttributeNames& given) {
    if (!given.count("stride")) a.stride = a.kernel;
    if (a.padding.h > a.kernel.h / 2 || a.padding.w > a.kernel.w / 2)
      throw Error("padding " + pair_string(a.padding) + " is more than half the kernel " + pair_string(a.kernel) +
                  " (PyTorch requires padding <= kernel / 2)");
  }
  template <class T> static void require_nchw_input(GraphNode<T>& node, const char* op) {
    node.require_rank(4, op, "[N, C, H, W]");
  }
};

// y = the maximum of each window (padding is -inf). attrs: kernel, stride, padding, ceil_mode.
// backward: gx += gy at each window's first maximum in row-major order (PyTorch's choice; ties
// and kinks go to the first); tangent: ty = tx at that same position. The positions are kept in
// the node's index buffer by forward.
struct MaxPool2d : FixedWindowPool {
  static constexpr const char* name = "maxpool2d";
  static constexpr Linearity linearity = Linearity::piecewise_linear;  // a window's maximum changes hands
  static constexpr bool positively_homogeneous = true;
  template <class T> static Var<T> from_graph(GraphNode<T>& node) {
    require_nchw_input(node, name);
    return record<MaxPool2d>({node.input()}, node.attrs());
  }
  template <class T> static Shape shape(const OpContext<T>& c) {
    const Shape y = fixed_window_shape(c);
    if (c.x(0).shape()[2] * c.x(0).shape()[3] > std::numeric_limits<std::uint32_t>::max())
      c.fail("an input plane of " + to_string(c.x(0).shape()) + " has more than 2^32 elements");
    return y;
  }
  template <class T> static void forward(OpContext<T>& c) {
    c.index().resize(c.y().size());
    kernels::maxpool2d_forward(fixed_window_pool(c), c.x(0).data(), c.y().data(), c.index().data());
  }
  template <class T> static void backward(OpContext<T>& c) {
    kernels::maxpool2d_backward(fixed_window_pool(c), c.index().data(), c.gy().data(), c.gx(0)->data());
  }
  template <class T> static void tangent(OpContext<T>& c) {
    kernels::maxpool2d_tangent(fixed_window_pool(c), c.index().data(), c.tx(0)->data(), c.ty().data());
  }
  // Each window's maximum switches where the upper envelope of its inputs' lines changes line.
  template <class T>
  static void switches(const Attrs& a, const Shape& in, const Shape& out, const T* z0, const T* z1,
                       std::vector<double>& roots) {
    const kernels::PoolAxis ah{in[2], out[2], std::size_t(a.kernel.h), std::size_t(a.stride.h), std::size_t(a.padding.h)};
    const kernels::PoolAxis aw{in[3], out[3], std::size_t(a.kernel.w), std::size_t(a.stride.w), std::size_t(a.padding.w)};
    std::vector<double> v0, v1;  // one window's values at both ends
    // [channels, out h, out w] windows, each [span h, span w]
    for (std::size_t ch = 0; ch < in[1]; ++ch)
      for (std::size_t oy = 0; oy < ah.out; ++oy)
        for (std::size_t ox = 0; ox < aw.out; ++ox) {
          const auto sy = ah.span(oy), sx = aw.span(ox);
          v0.clear();
          v1.clear();
          for (std::size_t y = sy.begin; y < sy.end; ++y)
            for (std::size_t x = sx.begin; x < sx.end; ++x) {
              const std::size_t at = (ch * in[2] + y) * in[3] + x;
              v0.push_back(double(z0[at]));
              v1.push_back(double(z1[at]));
            }
          envelope_switches(v0, v1, roots);
        }
  }
};

// y = the mean of each window. attrs: kernel, stride, padding, ceil_mode, count_include_pad.
// The op is linear: backward spreads gy / divisor over the window, the tangent is the same pool of tx.
struct AvgPool2d : FixedWindowPool {
  static constexpr const char* name = "avgpool2d";
  static constexpr Linearity linearity = Linearity::linear;
  static constexpr bool positively_homogeneous = true;
  static FileForm file_form() {
    FileForm form = FixedWindowPool::file_form();
    form.attributes.push_back({"count_include_pad", &Attrs::count_include_pad});
    return form;
  }
  template <class T> static Var<T> from_graph(GraphNode<T>& node) {
    require_nchw_input(node, name);
    return record<AvgPool2d>({node.input()}, node.attrs());
  }
  template <class T> static Shape shape(const OpContext<T>& c) { return fixed_window_shape(c); }
  template <class T> static void forward(OpContext<T>& c) {
    kernels::avgpool2d_forward(fixed_window_pool(c), c.x(0).data(), c.y().data());
  }
  template <class T> static void backward(OpContext<T>& c) {
    kernels::avgpool2d_backward(fixed_window_pool(c), c.gy().data(), c.gx(0)->data());
  }
  template <class T> static void tangent(OpContext<T>& c) {
    kernels::avgpool2d_forward(fixed_window_pool(c), c.tx(0)->data(), c.ty().data());
  }
};

// y[N, C, oh, ow] = the mean of x over rows [floor(i H / oh), ceil((i + 1) H / oh)) and the
// columns likewise: any output size, also larger than the input (windows then overlap).
// attrs.output_size. Linear, like avgpool2d.
struct AdaptiveAvgPool2d : OpBase {
  static constexpr const char* name = "adaptive_avgpool2d";
  static constexpr Linearity linearity = Linearity::linear;
  static constexpr bool positively_homogeneous = true;
  static FileForm file_form() { return file_op({{"output_size", &Attrs::output_size, Allowed::positive}}); }
  template <class T> static Var<T> from_graph(GraphNode<T>& node) {
    node.require_rank(4, name, "[N, C, H, W]");
    return record<AdaptiveAvgPool2d>({node.input()}, node.attrs());
  }
  template <class T> static Shape shape(const OpContext<T>& c) {
    require_nchw(c);
    const Pair2d out = c.attrs().output_size;
    require_positive(c, "output size", out);
    const Shape& x = c.x(0).shape();
    if (x[2] == 0 || x[3] == 0) c.fail("input " + to_string(x) + " has an empty plane");
    return {x[0], x[1], std::size_t(out.h), std::size_t(out.w)};
  }
  template <class T> static void forward(OpContext<T>& c) {
    kernels::avgpool2d_forward(pool(c), c.x(0).data(), c.y().data());
  }
  template <class T> static void backward(OpContext<T>& c) {
    kernels::avgpool2d_backward(pool(c), c.gy().data(), c.gx(0)->data());
  }
  template <class T> static void tangent(OpContext<T>& c) {
    kernels::avgpool2d_forward(pool(c), c.tx(0)->data(), c.ty().data());
  }

 private:
  template <class T> static kernels::Pool2dShape pool(const OpContext<T>& c) {
    const Shape& x = c.x(0).shape();
    const Shape& y = c.y().shape();
    kernels::Pool2dShape s;
    s.planes = x[0] * x[1];
    s.h.in = x[2], s.h.out = y[2], s.h.adaptive = true;
    s.w.in = x[3], s.w.out = y[3], s.w.adaptive = true;
    return s;
  }
};

using PoolOps = OpList<MaxPool2d, AvgPool2d, AdaptiveAvgPool2d>;

inline Attrs pool_attrs(Pair2d kernel, Pair2d stride, Pair2d padding, bool ceil_mode, bool count_include_pad) {
  Attrs attrs;
  attrs.kernel = kernel;
  attrs.stride = stride;
  attrs.padding = padding;
  attrs.ceil_mode = ceil_mode;
  attrs.count_include_pad = count_include_pad;
  return attrs;
}

}  // namespace ax::ops

namespace ax {

// The stride is the kernel unless given. Padding (at most half the kernel) is -inf for maxpool2d
// and zeros for avgpool2d, whose divisor counts it unless count_include_pad is false. ceil_mode
// rounds the output size up, dropping a last window that would start in the right padding.
// maxpool2d's gradient (and tangent) goes to the first maximum of a window in row-major order.
template <class T> Var<T> maxpool2d(Var<T> x, Pair2d kernel, Pair2d stride, Pair2d padding = 0, bool ceil_mode = false) {
  return ops::record<ops::MaxPool2d>({x}, ops::pool_attrs(kernel, stride, padding, ceil_mode, true));
}
template <class T> Var<T> maxpool2d(Var<T> x, Pair2d kernel) { return maxpool2d(x, kernel, kernel); }
template <class T> Var<T> avgpool2d(Var<T> x, Pair2d kernel, Pair2d stride, Pair2d padding = 0, bool ceil_mode = false,
                                    bool count_include_pad = true) {
  return ops::record<ops::AvgPool2d>({x}, ops::pool_attrs(kernel, stride, padding, ceil_mode, count_include_pad));
}
template <class T> Var<T> avgpool2d(Var<T> x, Pair2d kernel) { return avgpool2d(x, kernel, kernel); }
// Output [N, C, oh, ow], window i over rows [floor(i H / oh), ceil((i + 1) H / oh)); any size >= 1.
template <class T> Var<T> adaptive_avgpool2d(Var<T> x, Pair2d output_size) {
  Attrs attrs;
  attrs.output_size = output_size;
  return ops::record<ops::AdaptiveAvgPool2d>({x}, attrs);
}

}  // namespace ax
