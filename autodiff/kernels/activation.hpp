// SIMD kernels for relu and for softmax / log_softmax along contiguous rows (and a threaded
// fill), each with the plain
// scalar reference the tests compare it with. Elementwise work is split among OpenMP threads in
// fixed blocks, so results never depend on the thread count.
#pragma once

#include <cstddef>

namespace ax::kernels {

// y = max(x, 0)
template <class T> void relu_forward(const T* x, T* y, std::size_t n);
// gx += gy where x > 0 (relu'(0) = 0)
template <class T> void relu_backward(const T* x, const T* gy, T* gx, std::size_t n);
// ty = tx where x > 0, else 0
template <class T> void relu_tangent(const T* x, const T* tx, T* ty, std::size_t n);

// Along the middle axis of x seen as [outer, n, inner] (the row maximum subtracted first):
// y = softmax(x), and y = x - max - log sum exp(x - max). Rows are contiguous when inner == 1
// and then run in SIMD registers.
template <class T> void softmax(const T* x, T* y, std::size_t outer, std::size_t n, std::size_t inner);
template <class T> void log_softmax(const T* x, T* y, std::size_t outer, std::size_t n, std::size_t inner);

// p[0, n) = value, split among threads like the loops above: the tape zeroes the intermediate
// gradients whose first writer only adds, megabytes for a convolutional network.
template <class T> void fill(T* p, std::size_t n, T value);

template <class T> void relu_forward_reference(const T* x, T* y, std::size_t n);
template <class T> void relu_backward_reference(const T* x, const T* gy, T* gx, std::size_t n);
template <class T> void relu_tangent_reference(const T* x, const T* tx, T* ty, std::size_t n);
template <class T> void softmax_reference(const T* x, T* y, std::size_t outer, std::size_t n, std::size_t inner);
template <class T> void log_softmax_reference(const T* x, T* y, std::size_t outer, std::size_t n, std::size_t inner);

}  // namespace ax::kernels
