// Tensor: owned, 64-byte aligned, row-major storage plus a shape.
//
// A Tensor is an xtensor container, so the whole xtensor API works on it (element access,
// expressions, xt::noalias assignment, printing). Two choices make it fit a tape:
//   - the storage is a std::vector with an aligned allocator: it keeps its capacity, so a tape
//     replayed with a smaller batch after a larger one allocates nothing, and leaves new
//     elements uninitialised, so growing back within that capacity costs nothing either;
//   - the shape is a small inline vector of up to 6 dimensions: resizing to a shape of rank <= 6
//     never touches the heap.
// The leading dimension is the batch wherever a tape is concerned.
#pragma once

#include <xsimd/memory/xsimd_aligned_allocator.hpp>
#include <xtensor/xarray.hpp>
#include <xtensor/xnoalias.hpp>

#include <cstddef>
#include <initializer_list>
#include <memory>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <string>
#include <vector>

namespace ax {

// Every fault the library reports is one of these, with a one-line message.
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

using Shape = xt::svector<std::size_t, 6>;

// Storage lent to a tensor by an owner that outlives it: a model file's memory mapping, whose
// bytes serve as a parameter's values in place instead of being copied (lent_tensor below). The
// allocator takes the buffer offered on its thread when asked for exactly its size, and gives a
// lent buffer back (letting its owner go) instead of freeing it.
namespace detail {
void* take_offered(std::size_t bytes) noexcept;
bool give_back_lent(void* data) noexcept;
}  // namespace detail

// 64-byte aligned, and new elements are left uninitialised rather than zeroed: a std::vector's
// resize value-initialises, so a tensor growing back within its capacity (a tape replayed with a
// larger batch after a smaller one) would be zero-filled on every replay. Whatever reads a tensor
// writes it first; zeros(), full() and resize_zero() are there when zeros are meant.
template <class T>
struct UninitializedAllocator : xsimd::aligned_allocator<T, 64> {
  using base = xsimd::aligned_allocator<T, 64>;
  template <class U>
  struct rebind {
    using other = UninitializedAllocator<U>;
  };
  UninitializedAllocator() = default;
  template <class U>
  UninitializedAllocator(const UninitializedAllocator<U>&) noexcept {}
  template <class U>
  void construct(U* p) noexcept(std::is_nothrow_default_constructible_v<U>) {
    ::new (static_cast<void*>(p)) U;  // default-initialised: no zeroing for float and double
  }
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
  T* allocate(std::size_t n) {
    if (void* lent = detail::take_offered(n * sizeof(T))) return static_cast<T*>(lent);
    return base::allocate(n);
  }
  void deallocate(T* p, std::size_t n) {
    if (!detail::give_back_lent(p)) base::deallocate(p, n);
  }
};

template <class T>
using Buffer = std::vector<T, UninitializedAllocator<T>>;

template <class T>
using Tensor = xt::xarray_container<Buffer<T>, xt::layout_type::row_major, Shape>;

// "[2, 3, 4]"; "[]" for a scalar.
std::string to_string(const Shape& shape);

inline std::size_t numel(const Shape& shape) {
  std::size_t n = 1;
  for (std::size_t d : shape) n *= d;
  return n;
}

// A tensor of `shape` whose storage is `data` (numel(shape) values of T, at least T-aligned), lent
// by `owner`, which is kept alive until the tensor lets the storage go; nothing is copied. Writing
// the tensor writes `data`: lend only what may be written (a private mapping's pages are copied
// on write) or what nobody writes (attribution's parameters). An empty shape gets its own storage.
template <class T>
Tensor<T> lent_tensor(const Shape& shape, T* data, std::shared_ptr<const void> owner);

// A tensor of the given shape filled with one value.
template <class T>
Tensor<T> full(const Shape& shape, T value) {
  Tensor<T> t(shape);
  t.fill(value);
  return t;
}

template <class T>
Tensor<T> zeros(const Shape& shape) {
  return full<T>(shape, T(0));
}

// A tensor of the given shape holding `values` in row-major order.
template <class T>
Tensor<T> from_values(const Shape& shape, std::initializer_list<T> values) {
  if (values.size() != numel(shape))
    throw Error("from_values: shape " + to_string(shape) + " holds " + std::to_string(numel(shape)) +
                " values, " + std::to_string(values.size()) + " given");
  Tensor<T> t(shape);
  std::size_t i = 0;
  for (T v : values) t.data()[i++] = v;
  return t;
}

// Resize `t` to `shape` (keeping capacity) and set every element to zero.
template <class T>
void resize_zero(Tensor<T>& t, const Shape& shape) {
  t.resize(shape);
  t.fill(T(0));
}

}  // namespace ax
