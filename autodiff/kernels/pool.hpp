// 2-D pooling over NCHW tensors, as PyTorch's max_pool2d, avg_pool2d and adaptive_avg_pool2d.
//
// Every (sample, channel) plane is pooled alike, so a shape is a number of planes and two axes.
// Along one axis, the window of output i covers the input span [begin, end):
//   fixed windows     start = i stride - pad, end = start + kernel, clipped to [0, in)
//   adaptive windows  [floor(i in / out), ceil((i + 1) in / out))
// maxpool2d   y = the window's largest value. The first maximum in row-major order wins, and its
//             position in the plane (argmax) is kept for backward and tangent; a NaN wins over
//             numbers (PyTorch's rule). The padding is -inf and never wins: every window holds
//             at least one input element.
// avgpool2d   y = the window's sum / (count_h count_w). Along an axis, count is the window
//             clipped to [-pad, in + pad) when count_include_pad, else clipped to [0, in); so a
//             window cut short by ceil_mode divides by less than kernel_h kernel_w. An adaptive
//             window counts its span.
// The forward kernels of fixed windows are separable and SIMD along rows (pool.cpp says how;
// 3 x 3 windows of stride 2 in float take 8 whole windows at a time in registers); the _scalar
// ones scan one window at a time, and serve adaptive windows but global average pooling (adaptive
// to 1 x 1), which sums 8 planes side by side in the scalar kernel's order.
// Threads take whole planes (each written by one thread in a fixed order): results do not depend
// on the thread count. The _reference functions recompute every window from PyTorch's formulas,
// one output at a time, and are what the tests compare with.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace ax::kernels {

// PyTorch's pooling_output_shape: (in + 2 pad - kernel) / stride + 1, rounded down, or up with
// ceil_mode, in which case a last window that would start in the right padding is dropped.
// Below 1 when no window fits; the op reports that.
inline std::int64_t pool_output_size(std::int64_t in, std::int64_t kernel, std::int64_t stride,
                                     std::int64_t pad, bool ceil_mode) {
  const std::int64_t span = in + 2 * pad - kernel + (ceil_mode ? stride - 1 : 0);
  const std::int64_t floor_div = span >= 0 ? span / stride : -((-span + stride - 1) / stride);
  std::int64_t out = floor_div + 1;
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;
  return out;
}

// One spatial axis of a pooling.
struct PoolAxis {
  std::size_t in = 1, out = 1;
  std::size_t kernel = 1, stride = 1, pad = 0;  // fixed windows
  bool count_include_pad = true;                // fixed windows, averages
  bool adaptive = false;                        // adaptive windows instead (kernel, stride, pad unused)

  struct Span {
    std::size_t begin, end;  // the input positions the window covers
    std::size_t count;       // what an average divides by along this axis
  };
  Span span(std::size_t i) const {
    if (adaptive) {
      const std::size_t begin = i * in / out, end = ((i + 1) * in + out - 1) / out;
      return {begin, end, end - begin};
    }
    const std::int64_t start = std::int64_t(i * stride) - std::int64_t(pad);
    const std::int64_t padded_end = std::min(start + std::int64_t(kernel), std::int64_t(in + pad));
    const std::size_t begin = std::size_t(std::max<std::int64_t>(start, 0));
    const std::size_t end = std::size_t(std::min<std::int64_t>(padded_end, std::int64_t(in)));
    return {begin, end, count_include_pad ? std::size_t(padded_end - start) : end - begin};
  }
};

struct Pool2dShape {
  std::size_t planes = 1;  // N C
  PoolAxis h, w;
  std::size_t in_plane() const { return h.in * w.in; }
  std::size_t out_plane() const { return h.out * w.out; }
};

// y = the window maxima; argmax[output] = the first maximum's position in its input plane.
template <class T>
void maxpool2d_forward(const Pool2dShape& s, const T* x, T* y, std::uint32_t* argmax);
// gx[argmax] += gy
template <class T>
void maxpool2d_backward(const Pool2dShape& s, const std::uint32_t* argmax, const T* gy, T* gx);
// ty = tx[argmax]
template <class T>
void maxpool2d_tangent(const Pool2dShape& s, const std::uint32_t* argmax, const T* tx, T* ty);
// y = window sums / divisor (also the tangent: the op is linear)
template <class T>
void avgpool2d_forward(const Pool2dShape& s, const T* x, T* y);
// gx[window] += gy / divisor
template <class T>
void avgpool2d_backward(const Pool2dShape& s, const T* gy, T* gx);

// One window at a time (bitwise the same results as the forward kernels above for max; for
// averages, the sums run in row-major order instead of row by row).
template <class T>
void maxpool2d_forward_scalar(const Pool2dShape& s, const T* x, T* y, std::uint32_t* argmax);
template <class T>
void avgpool2d_forward_scalar(const Pool2dShape& s, const T* x, T* y);

template <class T>
void maxpool2d_forward_reference(const Pool2dShape& s, const T* x, T* y);

// 2 x 2 windows of stride 2, none clipped (maxpool2d_whole_2x2): one output at a time, in SIMD
// along rows; maxpool2d_forward takes it for those windows. Bitwise maxpool2d_forward_scalar's.
template <class T>
bool maxpool2d_whole_2x2(const Pool2dShape& s);
template <class T>
void maxpool2d_forward_2x2(const Pool2dShape& s, const T* x, T* y, std::uint32_t* argmax);
// gx += gy at each window's first maximum, found again from x
template <class T>
void maxpool2d_backward_reference(const Pool2dShape& s, const T* x, const T* gy, T* gx);
template <class T>
void avgpool2d_forward_reference(const Pool2dShape& s, const T* x, T* y);
template <class T>
void avgpool2d_backward_reference(const Pool2dShape& s, const T* gy, T* gx);

#define AX_DECLARE_POOL_KERNELS(T)                                                                          \
  extern template void maxpool2d_forward<T>(const Pool2dShape&, const T*, T*, std::uint32_t*);              \
  extern template void maxpool2d_backward<T>(const Pool2dShape&, const std::uint32_t*, const T*, T*);      \
  extern template void maxpool2d_tangent<T>(const Pool2dShape&, const std::uint32_t*, const T*, T*);       \
  extern template void avgpool2d_forward<T>(const Pool2dShape&, const T*, T*);                              \
  extern template void avgpool2d_backward<T>(const Pool2dShape&, const T*, T*);                             \
  extern template void maxpool2d_forward_scalar<T>(const Pool2dShape&, const T*, T*, std::uint32_t*);       \
  extern template void avgpool2d_forward_scalar<T>(const Pool2dShape&, const T*, T*);                       \
  extern template void maxpool2d_forward_reference<T>(const Pool2dShape&, const T*, T*);                    \
  extern template void maxpool2d_backward_reference<T>(const Pool2dShape&, const T*, const T*, T*);         \
  extern template void avgpool2d_forward_reference<T>(const Pool2dShape&, const T*, T*);                    \
  extern template void avgpool2d_backward_reference<T>(const Pool2dShape&, const T*, T*);
AX_DECLARE_POOL_KERNELS(float)
AX_DECLARE_POOL_KERNELS(double)
#undef AX_DECLARE_POOL_KERNELS

}  // namespace ax::kernels
