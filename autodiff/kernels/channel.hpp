// Per-channel maps over [N, C, plane] tensors (NCHW with the pixels of a plane contiguous):
// what batchnorm2d computes in its inference form.
//
//   channel_affine  y[n, c, i] = (x[n, c, i] - center[c]) * scale[c] + shift[c]
//                   (or y += that, when accumulate; center and shift may be null for 0).
//                   A channel whose scale is 0 maps to its shift: its center is not
//                   subtracted, so an x - center that overflows cannot make inf * 0 = NaN
//   channel_sums    sum_g[c] = sum over n, i of g[n, c, i]
//                   sum_gd[c] = sum over n, i of g[n, c, i] (x[n, c, i] - center[c])
//
// Fast kernels: SIMD along each plane, threads over whole (n, c) planes for the map and over
// channels for the sums (each channel summed by one thread, planes in order, lanes combined in
// a fixed order), so results do not depend on the thread count. The _reference functions are
// plain loops, which round the product and the sum separately (the fast map fuses them) and
// sum in order (the fast sums keep SIMD lanes of partial sums): the two agree to rounding.
#pragma once

#include <cstddef>

namespace ax::kernels {

struct ChannelShape {
  std::size_t N = 1, C = 1, plane = 1;
};

template <class T>
void channel_affine(const ChannelShape& s, const T* x, const T* center, const T* scale, const T* shift, T* y,
                    bool accumulate);
template <class T>
void channel_sums(const ChannelShape& s, const T* g, const T* x, const T* center, T* sum_g, T* sum_gd);

template <class T>
void channel_affine_reference(const ChannelShape& s, const T* x, const T* center, const T* scale, const T* shift,
                              T* y, bool accumulate);
template <class T>
void channel_sums_reference(const ChannelShape& s, const T* g, const T* x, const T* center, T* sum_g, T* sum_gd);

#define AX_DECLARE_CHANNEL_KERNELS(T)                                                                         \
  extern template void channel_affine<T>(const ChannelShape&, const T*, const T*, const T*, const T*, T*, bool); \
  extern template void channel_sums<T>(const ChannelShape&, const T*, const T*, const T*, T*, T*);              \
  extern template void channel_affine_reference<T>(const ChannelShape&, const T*, const T*, const T*, const T*, \
                                                   T*, bool);                                                   \
  extern template void channel_sums_reference<T>(const ChannelShape&, const T*, const T*, const T*, T*, T*);
AX_DECLARE_CHANNEL_KERNELS(float)
AX_DECLARE_CHANNEL_KERNELS(double)
#undef AX_DECLARE_CHANNEL_KERNELS

}  // namespace ax::kernels
