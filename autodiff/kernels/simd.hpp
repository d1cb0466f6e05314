// The SIMD architecture every kernel uses: AVX2 with fused multiply-add where the compiler
// targets it (-march=native here), else xsimd's default for a portable build.
#pragma once

#include <xsimd/xsimd.hpp>

namespace ax::kernels {

#if XSIMD_WITH_FMA3_AVX2
using Arch = xsimd::fma3<xsimd::avx2>;  // 256-bit registers, fused multiply-add
#else
using Arch = xsimd::default_arch;       // a portable build: same algorithms, maybe narrower
#endif

template <class T>
using Batch = xsimd::batch<T, Arch>;

}  // namespace ax::kernels
