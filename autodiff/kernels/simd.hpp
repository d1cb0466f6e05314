// The SIMD architecture every kernel uses: the widest this compiler targets (-march=native):
// AVX-512 (16 floats a register), else AVX2 with fused multiply-add (8), else xsimd's default
// for a portable build. Same algorithms on all; only the register width changes.
#pragma once

// GCC 12 warns that _mm512_undefined_ps() "may be used uninitialized" inside its own AVX-512
// header wherever those intrinsics are inlined (GCC bug 105593, fixed in GCC 13).
// (clang, which builds the fuzz targets, has no such warning.)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#else
#include <immintrin.h>
#endif
#include <xsimd/xsimd.hpp>

namespace ax::kernels {

#if XSIMD_WITH_AVX512F
using Arch = xsimd::avx512f;            // 512-bit registers, 32 of them
#elif XSIMD_WITH_FMA3_AVX2
using Arch = xsimd::fma3<xsimd::avx2>;  // 256-bit registers, fused multiply-add
#else
using Arch = xsimd::default_arch;
#endif

template <class T>
using Batch = xsimd::batch<T, Arch>;

// At most 256 bits: for loops over short rows (pooling a 13-pixel row), where a 16-float vector
// would leave most of the row to scalar code.
#if XSIMD_WITH_FMA3_AVX2
template <class T>
using ShortBatch = xsimd::batch<T, xsimd::fma3<xsimd::avx2>>;
#else
template <class T>
using ShortBatch = Batch<T>;
#endif

// a * b + c, rounded once. xsimd 8.1 fuses it for fma3<avx2> but rounds twice (a multiply,
// then an add) for avx512f, so AVX-512 calls the instruction itself.
template <class T>
inline Batch<T> fused_multiply_add(const Batch<T>& a, const Batch<T>& b, const Batch<T>& c) {
#if XSIMD_WITH_AVX512F
  if constexpr (sizeof(T) == 4)
    return _mm512_fmadd_ps(a, b, c);
  else
    return _mm512_fmadd_pd(a, b, c);
#else
  return xsimd::fma(a, b, c);
#endif
}

}  // namespace ax::kernels
