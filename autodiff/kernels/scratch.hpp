// Scratch memory for the kernels (gemm.cpp, winograd.cpp).
#pragma once

#include <cstddef>
#include <cstdlib>
#include <new>

namespace ax::kernels {

// A 64-byte aligned scratch array that grows on demand and keeps its capacity, so repeated
// calls of the same size allocate nothing. One per thread (thread_local below).
template <class T>
class Scratch {
 public:
  Scratch() = default;
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch() { std::free(data_); }

  T* get(std::size_t n) {
    if (n > capacity_) {
      std::free(data_);
      const std::size_t bytes = (n * sizeof(T) + 63) / 64 * 64;  // aligned_alloc wants a multiple
      data_ = static_cast<T*>(std::aligned_alloc(64, bytes));
      capacity_ = data_ ? n : 0;
      if (!data_) throw std::bad_alloc();
    }
    return data_;
  }

 private:
  T* data_ = nullptr;
  std::size_t capacity_ = 0;
};

}  // namespace ax::kernels
