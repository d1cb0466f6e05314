// General matrix multiply, the kernel where the time goes (matmul, linear, and convolutions
// once they are lowered to matrices).
//
//   C[M,N] = beta * C + alpha * op(A)[M,K] * op(B)[K,N]        all matrices row-major
//
// op(A) is A (M x K, row stride lda) or, when trans_a, A^T (A stored K x M, row stride lda);
// op(B) likewise. beta == 0 means C is written without being read, so it may hold garbage
// (even NaN). alpha == 0 or K == 0 leaves C = beta * C and reads neither A nor B.
// C must not overlap A or B.
//
// gemm is the fast one (packed panels, cache blocking, an xsimd register-tiled micro-kernel,
// OpenMP over fixed slabs of C); gemm_reference is the plain triple loop it is tested against.
// Results of gemm are bitwise identical whatever the number of OpenMP threads.
//
// Both are defined in gemm.cpp and instantiated there for float and double.
#pragma once

#include "simd.hpp"

#include <cstddef>

namespace ax::kernels {

template <class T>
void gemm(bool trans_a, bool trans_b, std::size_t M, std::size_t N, std::size_t K,
          T alpha, const T* A, std::size_t lda, const T* B, std::size_t ldb,
          T beta, T* C, std::size_t ldc);

// op(B) given by what packs it rather than as a matrix: an implicit GEMM (a convolution packs
// its panels straight from the image, and never writes the column matrix). pack() must write
//   out[s][k][w] = op(B)(pc + k, jc + s NR + w)    for k < kc and s NR + w < nc rounded up to NR,
// zero past column nc, where NR = gemm_panel_width<T>(): slivers NR columns wide, each k-major.
// It is called by several threads at once, for disjoint column ranges.
template <class T>
class PanelPacker {
 public:
  virtual ~PanelPacker() = default;
  virtual void pack(std::size_t pc, std::size_t kc, std::size_t jc, std::size_t nc, T* out) const = 0;
};

// The width of a packed B sliver: two SIMD registers (16 floats or 8 doubles on AVX2).
template <class T>
constexpr std::size_t gemm_panel_width() {
  return 2 * Batch<T>::size;
}

// C[M,N] = beta * C + alpha * op(A)[M,K] * op(B)[K,N], op(B) packed by B; same arithmetic (and
// bits) as gemm() on the matrix that B describes.
template <class T>
void gemm(bool trans_a, std::size_t M, std::size_t N, std::size_t K, T alpha, const T* A, std::size_t lda,
          const PanelPacker<T>& B, T beta, T* C, std::size_t ldc);

template <class T>
void gemm_reference(bool trans_a, bool trans_b, std::size_t M, std::size_t N, std::size_t K,
                    T alpha, const T* A, std::size_t lda, const T* B, std::size_t ldb,
                    T beta, T* C, std::size_t ldc);

extern template void gemm<float>(bool, bool, std::size_t, std::size_t, std::size_t, float,
                                 const float*, std::size_t, const float*, std::size_t, float,
                                 float*, std::size_t);
extern template void gemm<double>(bool, bool, std::size_t, std::size_t, std::size_t, double,
                                  const double*, std::size_t, const double*, std::size_t, double,
                                  double*, std::size_t);
extern template void gemm<float>(bool, std::size_t, std::size_t, std::size_t, float, const float*, std::size_t,
                                 const PanelPacker<float>&, float, float*, std::size_t);
extern template void gemm<double>(bool, std::size_t, std::size_t, std::size_t, double, const double*, std::size_t,
                                  const PanelPacker<double>&, double, double*, std::size_t);
extern template void gemm_reference<float>(bool, bool, std::size_t, std::size_t, std::size_t,
                                           float, const float*, std::size_t, const float*,
                                           std::size_t, float, float*, std::size_t);
extern template void gemm_reference<double>(bool, bool, std::size_t, std::size_t, std::size_t,
                                            double, const double*, std::size_t, const double*,
                                            std::size_t, double, double*, std::size_t);

}  // namespace ax::kernels
