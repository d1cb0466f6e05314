// 2-D pooling, as torch.nn.functional.max_pool2d, avg_pool2d and adaptive_avg_pool2d
// (kernels/pool.hpp has the windows and the divisors).
#pragma once

#include "../kernels/pool.hpp"
#include "window.hpp"

#include <limits>

namespace ax::ops {

// The output shape [N, C, OH, OW] of a fixed-window pool, after PyTorch's checks: kernel and
// stride positive, padding at most half the kernel, and at least one output.
template <class T>
Shape fixed_window_shape(const OpContext<T>& c) {
  require_nchw(c);
  const Window2d& a = c.attrs().window;
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
  const Window2d& a = c.attrs().window;
  kernels::Pool2dShape s;
  s.planes = x[0] * x[1];
  s.h = {x[2], c.y().shape()[2], std::size_t(a.kernel.h), std::size_t(a.stride.h), std::size_t(a.padding.h),
         a.count_include_pad, false};
  s.w = {x[3], c.y().shape()[3], std::size_t(a.kernel.w), std::size_t(a.stride.w), std::size_t(a.padding.w),
         a.count_include_pad, false};
  return s;
}

// y = the maximum of each window (padding is -inf). attrs.window: kernel, stride, padding, ceil_mode.
// backward: gx += gy at each window's first maximum in row-major order (PyTorch's choice; ties
// and kinks go to the first); tangent: ty = tx at that same position. The positions are kept in
// the node's index buffer by forward.
struct MaxPool2d {
  static constexpr const char* name = "maxpool2d";
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
};

// y = the mean of each window. attrs.window: kernel, stride, padding, ceil_mode, count_include_pad.
// The op is linear: backward spreads gy / divisor over the window, the tangent is the same pool of tx.
struct AvgPool2d {
  static constexpr const char* name = "avgpool2d";
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
// attrs.window.output_size. Linear, like avgpool2d.
struct AdaptiveAvgPool2d {
  static constexpr const char* name = "adaptive_avgpool2d";
  template <class T> static Shape shape(const OpContext<T>& c) {
    require_nchw(c);
    const Pair2d out = c.attrs().window.output_size;
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

}  // namespace ax::ops
