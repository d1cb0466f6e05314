#include "activation.hpp"

#include "simd.hpp"

#include <algorithm>
#include <cmath>

namespace ax::kernels {
namespace {

// Elementwise loops split in fixed blocks among threads, only when there is enough work to pay
// for waking them.
constexpr std::size_t block = 1 << 14;
constexpr std::size_t threaded = 1 << 17;

// f(batch of x, batch of other) over [begin, end) in registers, then the tail one by one.
template <class T, class Simd, class Scalar>
void blocked(std::size_t n, Simd simd, Scalar scalar) {
  const std::size_t blocks = (n + block - 1) / block;
#pragma omp parallel for schedule(static) if (n >= threaded)
  for (std::size_t b = 0; b < blocks; ++b) {
    const std::size_t begin = b * block, end = std::min(n, begin + block);
    constexpr std::size_t width = Batch<T>::size;
    std::size_t i = begin;
    for (; i + width <= end; i += width) simd(i);
    for (; i < end; ++i) scalar(i);
  }
}

}  // namespace

template <class T>
void relu_forward_reference(const T* x, T* y, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) y[i] = x[i] > T(0) ? x[i] : T(0);
}

template <class T>
void relu_forward(const T* x, T* y, std::size_t n) {
  const Batch<T> zero(T(0));
  blocked<T>(
      n, [&](std::size_t i) { xsimd::max(Batch<T>::load_unaligned(x + i), zero).store_unaligned(y + i); },
      [&](std::size_t i) { y[i] = x[i] > T(0) ? x[i] : T(0); });
}

template <class T>
void fill(T* p, std::size_t n, T value) {
  const Batch<T> v(value);
  blocked<T>(n, [&](std::size_t i) { v.store_unaligned(p + i); }, [&](std::size_t i) { p[i] = value; });
}

template <class T>
void relu_backward_reference(const T* x, const T* gy, T* gx, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) gx[i] += x[i] > T(0) ? gy[i] : T(0);
}

template <class T>
void relu_backward(const T* x, const T* gy, T* gx, std::size_t n) {
  const Batch<T> zero(T(0));
  blocked<T>(
      n,
      [&](std::size_t i) {
        const auto open = Batch<T>::load_unaligned(x + i) > zero;
        const Batch<T> g = Batch<T>::load_unaligned(gx + i) + xsimd::select(open, Batch<T>::load_unaligned(gy + i), zero);
        g.store_unaligned(gx + i);
      },
      [&](std::size_t i) { gx[i] += x[i] > T(0) ? gy[i] : T(0); });
}

template <class T>
void relu_tangent_reference(const T* x, const T* tx, T* ty, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) ty[i] = x[i] > T(0) ? tx[i] : T(0);
}

template <class T>
void relu_tangent(const T* x, const T* tx, T* ty, std::size_t n) {
  const Batch<T> zero(T(0));
  blocked<T>(
      n,
      [&](std::size_t i) {
        xsimd::select(Batch<T>::load_unaligned(x + i) > zero, Batch<T>::load_unaligned(tx + i), zero).store_unaligned(ty + i);
      },
      [&](std::size_t i) { ty[i] = x[i] > T(0) ? tx[i] : T(0); });
}

// One row: the maximum, then exp(x - max) and its sum in registers; exp is xsimd's, accurate to
// a few ulps (the tests compare with std::exp within that).
template <class T>
T exp_row(const T* x, T* e, std::size_t n, T& top) {
  constexpr std::size_t width = Batch<T>::size;
  top = x[0];
  std::size_t i = 0;
  if (n >= width) {
    Batch<T> m = Batch<T>::load_unaligned(x);
    for (i = width; i + width <= n; i += width) m = xsimd::max(m, Batch<T>::load_unaligned(x + i));
    alignas(64) T lanes[width];  // xsimd 8.1 has no horizontal max: store and scan the lanes
    m.store_aligned(lanes);
    top = *std::max_element(lanes, lanes + width);
  }
  for (; i < n; ++i) top = std::max(top, x[i]);
  Batch<T> total(T(0));
  const Batch<T> shift(top);
  // exp of anything below this is 0; clamping keeps -inf (x - top overflowing) out of xsimd's
  // exp, whose range reduction converts its argument to an integer
  const Batch<T> lowest(std::is_same_v<T, float> ? T(-200) : T(-1000));
  for (i = 0; i + width <= n; i += width) {
    const Batch<T> v = xsimd::exp(xsimd::max(Batch<T>::load_unaligned(x + i) - shift, lowest));
    v.store_unaligned(e + i);
    total += v;
  }
  T sum = xsimd::hadd(total);
  for (; i < n; ++i) sum += (e[i] = std::exp(x[i] - top));
  return sum;
}

// The reference's loop, for rows that are not contiguous: [outer, inner] rows of n values,
// `inner` apart; `log` picks log_softmax.
template <class T>
void strided_softmax(const T* x, T* y, std::size_t outer, std::size_t n, std::size_t inner, bool log) {
  // [outer, inner] rows
  for (std::size_t o = 0; o < outer; ++o)
    for (std::size_t i = 0; i < inner; ++i) {
      const T* xr = x + o * n * inner + i;
      T* yr = y + o * n * inner + i;
      T top = xr[0];
      for (std::size_t k = 1; k < n; ++k) top = std::max(top, xr[k * inner]);
      T total = 0;
      for (std::size_t k = 0; k < n; ++k) total += std::exp(xr[k * inner] - top);
      const T log_total = top + std::log(total);
      for (std::size_t k = 0; k < n; ++k)
        yr[k * inner] = log ? xr[k * inner] - log_total : std::exp(xr[k * inner] - top) / total;
    }
}

namespace {

// Rows of n contiguous values (inner == 1): y = softmax or log_softmax of each, row by row.
template <class T>
void contiguous_softmax(const T* x, T* y, std::size_t outer, std::size_t n, bool log) {
#pragma omp parallel for schedule(static) if (outer * n >= threaded)
  for (std::size_t r = 0; r < outer; ++r) {
    T top;
    const T total = exp_row(x + r * n, y + r * n, n, top);  // y holds exp(x - max) meanwhile
    if (log) {
      const T log_total = std::log(total) + top;
      for (std::size_t i = 0; i < n; ++i) y[r * n + i] = x[r * n + i] - log_total;
    } else {
      const T scale = T(1) / total;
      for (std::size_t i = 0; i < n; ++i) y[r * n + i] *= scale;
    }
  }
}

}  // namespace

template <class T>
void softmax_reference(const T* x, T* y, std::size_t outer, std::size_t n, std::size_t inner) {
  strided_softmax(x, y, outer, n, inner, false);
}

template <class T>
void softmax(const T* x, T* y, std::size_t outer, std::size_t n, std::size_t inner) {
  if (inner != 1) return strided_softmax(x, y, outer, n, inner, false);
  contiguous_softmax(x, y, outer, n, false);
}

template <class T>
void log_softmax_reference(const T* x, T* y, std::size_t outer, std::size_t n, std::size_t inner) {
  strided_softmax(x, y, outer, n, inner, true);
}

template <class T>
void log_softmax(const T* x, T* y, std::size_t outer, std::size_t n, std::size_t inner) {
  if (inner != 1) return strided_softmax(x, y, outer, n, inner, true);
  contiguous_softmax(x, y, outer, n, true);
}

#define AX_ACTIVATION(T)                                                                        \
  template void relu_forward(const T*, T*, std::size_t);                                        \
  template void fill(T*, std::size_t, T);                                                       \
  template void relu_backward(const T*, const T*, T*, std::size_t);                             \
  template void relu_tangent(const T*, const T*, T*, std::size_t);                              \
  template void softmax(const T*, T*, std::size_t, std::size_t, std::size_t);                   \
  template void log_softmax(const T*, T*, std::size_t, std::size_t, std::size_t);               \
  template void relu_forward_reference(const T*, T*, std::size_t);                              \
  template void relu_backward_reference(const T*, const T*, T*, std::size_t);                   \
  template void relu_tangent_reference(const T*, const T*, T*, std::size_t);                    \
  template void softmax_reference(const T*, T*, std::size_t, std::size_t, std::size_t);         \
  template void log_softmax_reference(const T*, T*, std::size_t, std::size_t, std::size_t);
AX_ACTIVATION(float)
AX_ACTIVATION(double)

}  // namespace ax::kernels
