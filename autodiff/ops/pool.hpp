// 2-D pooling, as torch.nn.functional.max_pool2d, avg_pool2d and adaptive_avg_pool2d
// (kernels/pool.hpp has the windows and the divisors).
#pragma once

#include "../kernels/pool.hpp"
#include "kinks.hpp"
#include "rescale.hpp"
#include "window.hpp"

#include <algorithm>
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
  // DeepLIFT for max-pooling: each window must pass on gy (y - y'), so that its contributions sum
  // to delta. Where the input's first maximum moved (|x - x'| > eps there), Captum's rule: all of
  // it through that position, scaled by (y - y') / (x - x'). Where it did not move but the window's
  // maximum changed (the reference's maximum lies elsewhere), Captum's rule would lose the change;
  // here it is spread over the window's positions in proportion to how far each moved:
  // m_i = (y - y') (x_i - x'_i) / sum_j (x_j - x'_j)^2, so that sum_i m_i (x_i - x'_i) = y - y'.
  template <class T> static void rescale(OpContext<T>& c) {
    const kernels::Pool2dShape s = fixed_window_pool(c);
    const std::size_t half_out = rescale_half(c, c.y()), half_in = c.x(0).size() / 2;
    const T* x = c.x(0).data();
    const T* y = c.y().data();
    const T* gy = c.gy().data();
    T* gx = c.gx(0)->data();
    const T eps = rescale_epsilon<T>();
    // [the input rows' output values]: o in plane o / out_plane, its maximum at index[o] in that plane
    for (std::size_t o = 0; o < half_out; ++o) {
      const std::size_t plane = o / s.out_plane(), in_plane = plane * s.in_plane();
      const std::size_t at = in_plane + c.index()[o];
      const T dx = x[at] - x[half_in + at], dy = y[o] - y[half_out + o];
      if (std::abs(dx) > eps) {
        gx[at] += gy[o] * dy / dx;
        continue;
      }
      const auto rows = s.h.span((o % s.out_plane()) / s.w.out), cols = s.w.span(o % s.w.out);
      T moved = 0;  // sum of (x_j - x'_j)^2 over the window
      // [window rows, window columns]
      for (std::size_t r = rows.begin; r < rows.end; ++r)
        for (std::size_t q = cols.begin; q < cols.end; ++q) {
          const T d = x[in_plane + r * s.w.in + q] - x[half_in + in_plane + r * s.w.in + q];
          moved += d * d;
        }
      if (moved == T(0)) {  // the window did not move, so neither did its maximum: the gradient
        gx[at] += gy[o];
        continue;
      }
      for (std::size_t r = rows.begin; r < rows.end; ++r)
        for (std::size_t q = cols.begin; q < cols.end; ++q) {
          const std::size_t i = in_plane + r * s.w.in + q;
          gx[i] += gy[o] * dy * (x[i] - x[half_in + i]) / moved;
        }
    }
  }
  // Whether the line that leads at s = 0 (the first maximum, ties to the steeper line) is still
  // the highest at s = 1. Then it leads throughout (the upper envelope is convex and meets that
  // line at both ends), and the window has no switch.
  static bool same_leader(const double* v0, const double* v1, std::size_t k) {
    std::size_t lead = 0;
    for (std::size_t m = 1; m < k; ++m)
      if (v0[m] > v0[lead] || (v0[m] == v0[lead] && v1[m] - v0[m] > v1[lead] - v0[lead])) lead = m;
    for (std::size_t m = 0; m < k; ++m)
      if (v1[m] > v1[lead]) return false;
    return true;
  }
  // The quick form of the same test on a window's values as they are (no copy, no conversion:
  // comparisons are exact in T): some position holds the window's maximum at both ends. Then
  // that line is the highest at s = 0 and at s = 1, so it leads throughout. Most windows end
  // here. A NaN is passed over as the full test passes it over (at the window's first position
  // it fails the quick test, and the full test decides). KH x KW windows unrolled; 0 x 0 any.
  template <std::size_t KH, std::size_t KW, class T>
  static bool steady_window(const T* z0, const T* z1, std::size_t row, kernels::PoolAxis::Span sy,
                            kernels::PoolAxis::Span sx) {
    const std::size_t rows = KH ? KH : sy.end - sy.begin, cols = KW ? KW : sx.end - sx.begin;
    z0 += sy.begin * row + sx.begin, z1 += sy.begin * row + sx.begin;
    T top0 = z0[0], top1 = z1[0];
    // [rows, cols]
    for (std::size_t y = 0; y < rows; ++y)
      for (std::size_t x = 0; x < cols; ++x) {
        top0 = z0[y * row + x] > top0 ? z0[y * row + x] : top0;
        top1 = z1[y * row + x] > top1 ? z1[y * row + x] : top1;
      }
    bool steady = false;
    for (std::size_t y = 0; y < rows; ++y)
      for (std::size_t x = 0; x < cols; ++x) steady |= (z0[y * row + x] == top0) & (z1[y * row + x] == top1);
    return steady;
  }
  // The quick test for the 2 x 2 windows whose top-left corners are the n consecutive positions
  // from z0, z1 (rows `row` apart): steady[i] when one of the four positions of the window at i
  // holds its maximum at both ends, and no value is a NaN (those take the full test). Every
  // position is taken, not only the stride-2 corners: the loads are then contiguous and the loop
  // runs in SIMD at full width, where a row of 7 windows (the shipped model's second pool) left
  // it scalar. Branch-free for the same reason.
  template <class T>
  static void steady_corners_2x2(const T* z0, const T* z1, std::size_t row, std::size_t n, unsigned char* steady) {
    // [positions]
    for (std::size_t i = 0; i < n; ++i) {
      const T a0 = z0[i], b0 = z0[i + 1], c0 = z0[i + row], d0 = z0[i + row + 1];
      const T a1 = z1[i], b1 = z1[i + 1], c1 = z1[i + row], d1 = z1[i + row + 1];
      const T m0 = std::max(std::max(a0, b0), std::max(c0, d0)), m1 = std::max(std::max(a1, b1), std::max(c1, d1));
      const int numbers = (a0 == a0) & (b0 == b0) & (c0 == c0) & (d0 == d0) & (a1 == a1) & (b1 == b1) & (c1 == c1) & (d1 == d1);
      const int held = ((a0 == m0) & (a1 == m1)) | ((b0 == m0) & (b1 == m1)) | ((c0 == m0) & (c1 == m1)) |
                       ((d0 == m0) & (d1 == m1));
      steady[i] = static_cast<unsigned char>(numbers & held);
    }
  }
  template <class T>
  static bool steady(const T* z0, const T* z1, std::size_t row, kernels::PoolAxis::Span sy, kernels::PoolAxis::Span sx) {
    const std::size_t rows = sy.end - sy.begin, cols = sx.end - sx.begin;
    if (rows == 2 && cols == 2) return steady_window<2, 2>(z0, z1, row, sy, sx);
    if (rows == 3 && cols == 3) return steady_window<3, 3>(z0, z1, row, sy, sx);
    return steady_window<0, 0>(z0, z1, row, sy, sx);
  }
  // Each window's maximum switches where the upper envelope of its inputs' lines changes line.
  // A window that fails the quick test has its values copied (on the stack up to kWindowOnStack
  // of them) for the full test and the walk along its envelope.
  template <class T>
  static void switches(const Attrs& a, const Shape& in, const Shape& out, const T* z0, const T* z1,
                       std::vector<double>& roots) {
    const kernels::PoolAxis ah{in[2], out[2], std::size_t(a.kernel.h), std::size_t(a.stride.h), std::size_t(a.padding.h)};
    const kernels::PoolAxis aw{in[3], out[3], std::size_t(a.kernel.w), std::size_t(a.stride.w), std::size_t(a.padding.w)};
    constexpr std::size_t kWindowOnStack = 64;
    const std::size_t most = ah.kernel * aw.kernel, plane = in[2] * in[3];
    double stack0[kWindowOnStack], stack1[kWindowOnStack];
    std::vector<double> heap0, heap1;
    if (most > kWindowOnStack) heap0.resize(most), heap1.resize(most);
    double* v0 = most > kWindowOnStack ? heap0.data() : stack0;  // one window's values at both ends
    double* v1 = most > kWindowOnStack ? heap1.data() : stack1;
    // 2 x 2 windows of stride 2 (LeNet's): the quick test over blocks of kCorners consecutive
    // positions (the windows' corners among them), for the whole windows; a whole window's
    // bottom-right position is inside the sample, so is every position a block reads
    const bool pairs = ah.kernel == 2 && aw.kernel == 2 && ah.stride == 2 && aw.stride == 2 && ah.pad == 0 && aw.pad == 0;
    const std::size_t whole_rows = pairs ? std::min(ah.out, in[2] / 2) : 0;
    const std::size_t whole_cols = pairs ? std::min(aw.out, in[3] / 2) : 0;
    // positions from last_corner on have no whole window below-right of them
    const std::size_t last_corner = whole_rows && whole_cols ? in[1] * plane - in[3] - 1 : 0;
    constexpr std::size_t kCorners = 1024;
    unsigned char corner_steady[kCorners];
    std::size_t block = 0, block_end = 0;  // the positions corner_steady holds
    // [channels, out h, out w] windows, each [span h, span w]
    for (std::size_t ch = 0; ch < in[1]; ++ch)
      for (std::size_t oy = 0; oy < ah.out; ++oy)
        for (std::size_t ox = 0; ox < aw.out; ++ox) {
          const bool quick = oy < whole_rows && ox < whole_cols;
          if (quick) {
            const std::size_t corner = ch * plane + 2 * oy * in[3] + 2 * ox;  // increasing
            if (corner >= block_end) {
              block = corner, block_end = std::min(corner + kCorners, last_corner);
              steady_corners_2x2(z0 + block, z1 + block, in[3], block_end - block, corner_steady);
            }
            if (corner_steady[corner - block]) continue;
          }
          const auto sy = ah.span(oy), sx = aw.span(ox);
          if (!quick && steady(z0 + ch * plane, z1 + ch * plane, in[3], sy, sx)) continue;
          std::size_t k = 0;
          for (std::size_t y = sy.begin; y < sy.end; ++y)
            for (std::size_t x = sx.begin; x < sx.end; ++x, ++k) {
              const std::size_t at = ch * plane + y * in[3] + x;
              v0[k] = double(z0[at]);
              v1[k] = double(z1[at]);
            }
          if (!same_leader(v0, v1, k)) envelope_switches(v0, v1, k, roots);
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
