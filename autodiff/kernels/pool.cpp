// Pooling kernels (see pool.hpp): whole planes per thread, and the references they are tested
// against.
#include "pool.hpp"

#include <cmath>
#include <limits>

namespace ax::kernels {
namespace {

// Below this many input elements, the loops run on one thread: waking a second thread costs a
// few microseconds, about what reading this many elements takes.
constexpr std::size_t kParallelMinElements = std::size_t(1) << 15;

using Index = std::ptrdiff_t;

}  // namespace

template <class T>
void maxpool2d_forward(const Pool2dShape& s, const T* x, T* y, std::uint32_t* argmax) {
  const std::size_t W = s.w.in;
  // [planes, OH, OW] outputs, each a scan of its [rows, cols] window
#pragma omp parallel for schedule(static) if (s.planes * s.in_plane() >= kParallelMinElements)
  for (Index p = 0; p < Index(s.planes); ++p) {
    const T* in = x + std::size_t(p) * s.in_plane();
    const std::size_t out0 = std::size_t(p) * s.out_plane();
    for (std::size_t oh = 0; oh < s.h.out; ++oh) {
      const PoolAxis::Span rows = s.h.span(oh);
      for (std::size_t ow = 0; ow < s.w.out; ++ow) {
        const PoolAxis::Span cols = s.w.span(ow);
        T best = -std::numeric_limits<T>::infinity();
        std::size_t at = rows.begin * W + cols.begin;
        for (std::size_t ih = rows.begin; ih < rows.end; ++ih)
          for (std::size_t iw = cols.begin; iw < cols.end; ++iw) {
            const T v = in[ih * W + iw];
            if (v > best || std::isnan(v)) {  // strictly greater: the first maximum stays
              best = v;
              at = ih * W + iw;
            }
          }
        y[out0 + oh * s.w.out + ow] = best;
        argmax[out0 + oh * s.w.out + ow] = std::uint32_t(at);
      }
    }
  }
}

template <class T>
void maxpool2d_backward(const Pool2dShape& s, const std::uint32_t* argmax, const T* gy, T* gx) {
  // [planes, OH OW]: each output's gradient goes to its argmax in the plane
#pragma omp parallel for schedule(static) if (s.planes * s.in_plane() >= kParallelMinElements)
  for (Index p = 0; p < Index(s.planes); ++p) {
    T* g = gx + std::size_t(p) * s.in_plane();
    const std::size_t out0 = std::size_t(p) * s.out_plane();
    for (std::size_t o = 0; o < s.out_plane(); ++o) g[argmax[out0 + o]] += gy[out0 + o];
  }
}

template <class T>
void maxpool2d_tangent(const Pool2dShape& s, const std::uint32_t* argmax, const T* tx, T* ty) {
  // [planes, OH OW]
#pragma omp parallel for schedule(static) if (s.planes * s.in_plane() >= kParallelMinElements)
  for (Index p = 0; p < Index(s.planes); ++p) {
    const T* t = tx + std::size_t(p) * s.in_plane();
    const std::size_t out0 = std::size_t(p) * s.out_plane();
    for (std::size_t o = 0; o < s.out_plane(); ++o) ty[out0 + o] = t[argmax[out0 + o]];
  }
}

template <class T>
void avgpool2d_forward(const Pool2dShape& s, const T* x, T* y) {
  const std::size_t W = s.w.in;
  // [planes, OH, OW] outputs, each a sum over its [rows, cols] window
#pragma omp parallel for schedule(static) if (s.planes * s.in_plane() >= kParallelMinElements)
  for (Index p = 0; p < Index(s.planes); ++p) {
    const T* in = x + std::size_t(p) * s.in_plane();
    T* out = y + std::size_t(p) * s.out_plane();
    for (std::size_t oh = 0; oh < s.h.out; ++oh) {
      const PoolAxis::Span rows = s.h.span(oh);
      for (std::size_t ow = 0; ow < s.w.out; ++ow) {
        const PoolAxis::Span cols = s.w.span(ow);
        T sum = T(0);
        for (std::size_t ih = rows.begin; ih < rows.end; ++ih)
          for (std::size_t iw = cols.begin; iw < cols.end; ++iw) sum += in[ih * W + iw];
        out[oh * s.w.out + ow] = sum / T(rows.count * cols.count);
      }
    }
  }
}

template <class T>
void avgpool2d_backward(const Pool2dShape& s, const T* gy, T* gx) {
  const std::size_t W = s.w.in;
  // [planes, OH, OW] outputs, each spreading gy / divisor over its window
#pragma omp parallel for schedule(static) if (s.planes * s.in_plane() >= kParallelMinElements)
  for (Index p = 0; p < Index(s.planes); ++p) {
    T* g = gx + std::size_t(p) * s.in_plane();
    const T* go = gy + std::size_t(p) * s.out_plane();
    for (std::size_t oh = 0; oh < s.h.out; ++oh) {
      const PoolAxis::Span rows = s.h.span(oh);
      for (std::size_t ow = 0; ow < s.w.out; ++ow) {
        const PoolAxis::Span cols = s.w.span(ow);
        const T share = go[oh * s.w.out + ow] / T(rows.count * cols.count);
        for (std::size_t ih = rows.begin; ih < rows.end; ++ih)
          for (std::size_t iw = cols.begin; iw < cols.end; ++iw) g[ih * W + iw] += share;
      }
    }
  }
}

// ---- references: PyTorch's window formulas (ATen's CPU pooling kernels), one output at a time ----
namespace {

// One output's window along one axis, as ATen computes it: the clipped span and the divisor.
struct RefWindow {
  Index begin, end, divisor;
};
RefWindow ref_window(const PoolAxis& a, Index i) {
  if (a.adaptive) {  // start_index and end_index of AdaptiveAveragePooling.cpp
    const Index in = Index(a.in), out = Index(a.out);
    const Index begin = (i / out) * in + ((i % out) * in) / out;
    const Index end = 1 + ((i + 1) * in - 1) / out;
    return {begin, end, end - begin};
  }
  Index begin = i * Index(a.stride) - Index(a.pad);
  Index end = std::min(begin + Index(a.kernel), Index(a.in + a.pad));
  const Index padded = end - begin;
  begin = std::max<Index>(begin, 0);
  end = std::min<Index>(end, Index(a.in));
  return {begin, end, a.count_include_pad ? padded : end - begin};
}

// Calls f(plane, output index, rows, cols) for every output.
template <class F>
void for_each_output(const Pool2dShape& s, F f) {
  for (std::size_t p = 0; p < s.planes; ++p)
    for (Index oh = 0; oh < Index(s.h.out); ++oh)
      for (Index ow = 0; ow < Index(s.w.out); ++ow)
        f(p, p * s.out_plane() + std::size_t(oh) * s.w.out + std::size_t(ow), ref_window(s.h, oh), ref_window(s.w, ow));
}

// The position in the plane of the window's first maximum (NaN wins), as ATen's max_pool2d.
template <class T>
std::size_t ref_argmax(const T* plane, Index W, const RefWindow& r, const RefWindow& c) {
  std::size_t at = std::size_t(r.begin * W + c.begin);
  T best = -std::numeric_limits<T>::infinity();
  for (Index ih = r.begin; ih < r.end; ++ih)
    for (Index iw = c.begin; iw < c.end; ++iw)
      if (plane[ih * W + iw] > best || std::isnan(plane[ih * W + iw])) {
        best = plane[ih * W + iw];
        at = std::size_t(ih * W + iw);
      }
  return at;
}

}  // namespace

template <class T>
void maxpool2d_forward_reference(const Pool2dShape& s, const T* x, T* y) {
  for_each_output(s, [&](std::size_t p, std::size_t o, const RefWindow& r, const RefWindow& c) {
    const T* plane = x + p * s.in_plane();
    y[o] = plane[ref_argmax(plane, Index(s.w.in), r, c)];
  });
}

template <class T>
void maxpool2d_backward_reference(const Pool2dShape& s, const T* x, const T* gy, T* gx) {
  for_each_output(s, [&](std::size_t p, std::size_t o, const RefWindow& r, const RefWindow& c) {
    gx[p * s.in_plane() + ref_argmax(x + p * s.in_plane(), Index(s.w.in), r, c)] += gy[o];
  });
}

template <class T>
void avgpool2d_forward_reference(const Pool2dShape& s, const T* x, T* y) {
  for_each_output(s, [&](std::size_t p, std::size_t o, const RefWindow& r, const RefWindow& c) {
    T sum = T(0);
    for (Index ih = r.begin; ih < r.end; ++ih)
      for (Index iw = c.begin; iw < c.end; ++iw) sum += x[p * s.in_plane() + std::size_t(ih * Index(s.w.in) + iw)];
    y[o] = sum / T(r.divisor * c.divisor);
  });
}

template <class T>
void avgpool2d_backward_reference(const Pool2dShape& s, const T* gy, T* gx) {
  for_each_output(s, [&](std::size_t p, std::size_t o, const RefWindow& r, const RefWindow& c) {
    for (Index ih = r.begin; ih < r.end; ++ih)
      for (Index iw = c.begin; iw < c.end; ++iw)
        gx[p * s.in_plane() + std::size_t(ih * Index(s.w.in) + iw)] += gy[o] / T(r.divisor * c.divisor);
  });
}

#define AX_INSTANTIATE_POOL_KERNELS(T)                                                              \
  template void maxpool2d_forward<T>(const Pool2dShape&, const T*, T*, std::uint32_t*);             \
  template void maxpool2d_backward<T>(const Pool2dShape&, const std::uint32_t*, const T*, T*);     \
  template void maxpool2d_tangent<T>(const Pool2dShape&, const std::uint32_t*, const T*, T*);      \
  template void avgpool2d_forward<T>(const Pool2dShape&, const T*, T*);                             \
  template void avgpool2d_backward<T>(const Pool2dShape&, const T*, T*);                            \
  template void maxpool2d_forward_reference<T>(const Pool2dShape&, const T*, T*);                   \
  template void maxpool2d_backward_reference<T>(const Pool2dShape&, const T*, const T*, T*);        \
  template void avgpool2d_forward_reference<T>(const Pool2dShape&, const T*, T*);                   \
  template void avgpool2d_backward_reference<T>(const Pool2dShape&, const T*, T*);
AX_INSTANTIATE_POOL_KERNELS(float)
AX_INSTANTIATE_POOL_KERNELS(double)

}  // namespace ax::kernels
