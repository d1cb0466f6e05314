// Per-channel maps and sums (see channel.hpp), and the plain loops they are tested against.
#include "channel.hpp"

#include "simd.hpp"

#include <cmath>
#include <cstddef>

namespace ax::kernels {
namespace {

// Below this many elements, one thread: waking a second costs about what this much work takes.
constexpr std::size_t kParallelMinElements = std::size_t(1) << 15;

using Index = std::ptrdiff_t;

}  // namespace

template <class T>
void channel_affine_reference(const ChannelShape& s, const T* x, const T* center, const T* scale, const T* shift,
                              T* y, bool accumulate) {
  // [N, C, plane]
  for (std::size_t n = 0; n < s.N; ++n)
    for (std::size_t c = 0; c < s.C; ++c)
      for (std::size_t i = 0; i < s.plane; ++i) {
        const std::size_t at = (n * s.C + c) * s.plane + i;
        const T m = center && scale[c] != T(0) ? center[c] : T(0);
        const T v = (x[at] - m) * scale[c] + (shift ? shift[c] : T(0));
        y[at] = accumulate ? y[at] + v : v;
      }
}

// The product and the shift are fused (one rounding), in the vector lanes and the tail alike.
template <class T>
void channel_affine(const ChannelShape& s, const T* x, const T* center, const T* scale, const T* shift, T* y,
                    bool accumulate) {
  constexpr std::size_t width = Batch<T>::size;
  // [N C] planes, each [plane] in SIMD then the tail
#pragma omp parallel for schedule(static) if (s.N * s.C * s.plane >= kParallelMinElements)
  for (Index item = 0; item < Index(s.N * s.C); ++item) {
    const std::size_t c = std::size_t(item) % s.C, at = std::size_t(item) * s.plane;
    const T a = scale[c], b = shift ? shift[c] : T(0);
    const T m = center && a != T(0) ? center[c] : T(0);  // see channel.hpp: a scale of 0 ignores the center
    const T* in = x + at;
    T* out = y + at;
    const Batch<T> mv(m), av(a), bv(b);
    std::size_t i = 0;
    if (accumulate) {
      for (; i + width <= s.plane; i += width)
        (Batch<T>::load_unaligned(out + i) + fused_multiply_add(Batch<T>::load_unaligned(in + i) - mv, av, bv)).store_unaligned(out + i);
      for (; i < s.plane; ++i) out[i] += std::fma(in[i] - m, a, b);
    } else {
      for (; i + width <= s.plane; i += width) fused_multiply_add(Batch<T>::load_unaligned(in + i) - mv, av, bv).store_unaligned(out + i);
      for (; i < s.plane; ++i) out[i] = std::fma(in[i] - m, a, b);
    }
  }
}

template <class T>
void channel_sums_reference(const ChannelShape& s, const T* g, const T* x, const T* center, T* sum_g, T* sum_gd) {
  // [C] channels, each over [N, plane]
  for (std::size_t c = 0; c < s.C; ++c) {
    T total_g = T(0), total_gd = T(0);
    for (std::size_t n = 0; n < s.N; ++n)
      for (std::size_t i = 0; i < s.plane; ++i) {
        const std::size_t at = (n * s.C + c) * s.plane + i;
        total_g += g[at];
        if (sum_gd) total_gd += g[at] * (x[at] - (center ? center[c] : T(0)));
      }
    if (sum_g) sum_g[c] = total_g;
    if (sum_gd) sum_gd[c] = total_gd;
  }
}

template <class T>
void channel_sums(const ChannelShape& s, const T* g, const T* x, const T* center, T* sum_g, T* sum_gd) {
  constexpr std::size_t width = Batch<T>::size;
  // [C] channels, each over [N, plane]: lanes of partial sums, then the lanes in order
#pragma omp parallel for schedule(static) if (s.N * s.C * s.plane >= kParallelMinElements)
  for (Index ci = 0; ci < Index(s.C); ++ci) {
    const std::size_t c = std::size_t(ci);
    const T m = center ? center[c] : T(0);
    Batch<T> lanes_g(T(0)), lanes_gd(T(0));
    T tail_g = T(0), tail_gd = T(0);
    for (std::size_t n = 0; n < s.N; ++n) {
      const std::size_t at = (n * s.C + c) * s.plane;
      std::size_t i = 0;
      for (; i + width <= s.plane; i += width) {
        const Batch<T> gv = Batch<T>::load_unaligned(g + at + i);
        lanes_g += gv;
        if (sum_gd) lanes_gd += gv * (Batch<T>::load_unaligned(x + at + i) - Batch<T>(m));
      }
      for (; i < s.plane; ++i) {
        tail_g += g[at + i];
        if (sum_gd) tail_gd += g[at + i] * (x[at + i] - m);
      }
    }
    alignas(64) T lanes[width];
    lanes_g.store_aligned(lanes);
    for (std::size_t l = 0; l < width; ++l) tail_g += lanes[l];
    if (sum_g) sum_g[c] = tail_g;
    if (sum_gd) {
      lanes_gd.store_aligned(lanes);
      for (std::size_t l = 0; l < width; ++l) tail_gd += lanes[l];
      sum_gd[c] = tail_gd;
    }
  }
}

#define AX_INSTANTIATE_CHANNEL_KERNELS(T)                                                                       \
  template void channel_affine<T>(const ChannelShape&, const T*, const T*, const T*, const T*, T*, bool);       \
  template void channel_sums<T>(const ChannelShape&, const T*, const T*, const T*, T*, T*);                     \
  template void channel_affine_reference<T>(const ChannelShape&, const T*, const T*, const T*, const T*, T*, bool); \
  template void channel_sums_reference<T>(const ChannelShape&, const T*, const T*, const T*, T*, T*);
AX_INSTANTIATE_CHANNEL_KERNELS(float)
AX_INSTANTIATE_CHANNEL_KERNELS(double)

}  // namespace ax::kernels
