// GEMM after Goto and van de Geijn ("Anatomy of high-performance matrix multiplication", 2008)
// as BLIS lays it out: five loops around a register-tiled micro-kernel.
//
//   for jc in N step NC          a slab of NC columns of C
//     for pc in K step KC        a KC-deep slice of the product; op(B)[pc, jc] is packed
//       for ic in M step MC      op(A)[ic, pc] is packed into an MC x KC block (stays in L2)
//         for jr in NC step NR   one KC x NR panel of packed B (stays in L1)
//           for ir in MC step MR the micro-kernel: an MR x NR tile of C held in registers
//
// Packing copies op(A) and op(B) into contiguous, zero-padded slivers in exactly the order the
// micro-kernel reads them, so transposes, leading dimensions and ragged edges are all dealt with
// there, and one micro-kernel serves every case.
#include "gemm.hpp"

#include "scratch.hpp"
#include "simd.hpp"

#include <algorithm>
#include <cstdlib>
#include <new>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace ax::kernels {
namespace {

// Register tile and cache blocks, in elements. The tile is MR rows x NR = two registers wide:
// with AVX2's 16 registers, 6 x 2 = 12 accumulators plus two B registers and one broadcast A;
// with AVX-512's 32, 8 x 2 = 16 accumulators (measured at n = 512 on 2 threads: 8 rows 70% of
// peak, 6 and 12 rows 67%). A KC x NR panel of packed B is 16 KiB with AVX2, 32 KiB with
// AVX-512 (in L1); an MC x KC block of packed A is 144 KiB (float) or 192 KiB (double) in L2; a
// KC x NC block of packed B is 2 or 4 MiB of L3. Measured on AVX2: KC 128-384 and MC 48-240 are
// all within noise of these at n = 512 and 1536; on AVX-512, KC 384 with MC 192 is slower.
template <class T>
struct Blocking {
  static constexpr std::size_t MR = XSIMD_WITH_AVX512F ? 8 : 6;
  static constexpr std::size_t NR = gemm_panel_width<T>();
  static constexpr std::size_t KC = 256;
  static constexpr std::size_t MC = sizeof(T) == 4 ? 144 : 96;  // multiples of MR
  static constexpr std::size_t NC = 2048;                        // a multiple of NR
};

// Below this many multiply-adds (M * N * K) one thread is used. Measured on 2 cores: waking
// the sleeping OpenMP pool costs 40-60 us, so a second thread pays from about 128^3 when the
// pool is cold (from about 32^3 when it is still spinning after a previous call).
constexpr std::size_t kParallelMinMultiplyAdds = std::size_t(128) * 128 * 128;

// Pack rows [0, n) x columns [0, kc) of a strided matrix X(i, k) = x[i * rs + k * cs] into
// slivers W rows wide, each stored k-major: out[s][k][w] = X(s * W + w, k). Rows past n are
// zero, so the micro-kernel always computes a full tile; what padding produces lands only in
// the part of a tile that is never written back, and zeros keep it free of NaN and denormals.
// Blocks of op(A) are packed with W = MR (X = op(A)); panels of op(B) with W = NR (X = op(B)^T).
// Row-major storage makes rs or cs equal 1; each case gets the loop order that reads memory
// sequentially, with the sliver width W fixed at compile time so the copies vectorize.
template <std::size_t W, class T>
void pack(const T* x, std::size_t rs, std::size_t cs, std::size_t n, std::size_t kc, T* out) {
  const std::size_t whole = n / W * W;  // rows in whole slivers; sliver s starts at out + s * kc
  if (rs == 1) {
    // out[whole/W][kc][W] <- x[kc (stride cs)][whole]: X's columns are contiguous, read one per k
    for (std::size_t k = 0; k < kc; ++k)
      for (std::size_t s = 0; s < whole; s += W)
        for (std::size_t w = 0; w < W; ++w) out[s * kc + k * W + w] = x[k * cs + s + w];
  } else {
    // out[whole/W][kc][W] <- x[whole (stride rs)][kc]: X's rows are contiguous, W read in step
    for (std::size_t s = 0; s < whole; s += W)
      for (std::size_t k = 0; k < kc; ++k)
        for (std::size_t w = 0; w < W; ++w) out[s * kc + k * W + w] = x[(s + w) * rs + k];
  }
  // out[kc][W] <- the ragged last rows, zero-padded to a whole sliver
  if (whole < n)
    for (std::size_t k = 0; k < kc; ++k)
      for (std::size_t w = 0; w < W; ++w)
        out[whole * kc + k * W + w] = whole + w < n ? x[(whole + w) * rs + k * cs] : T(0);
}

// The micro-kernel: an MR x NR tile of C from one packed sliver of A and one panel of B.
//   acc[MR][NR] = sum over k < kc of a[k][r] * b[k][j]          (k in order, one fma each)
//   C = alpha * acc                 if beta == 0 (C is not read)
//   C = fma(alpha, acc, beta * C)   otherwise (later KC blocks pass beta = 1: C += alpha * acc)
template <class T>
void micro_kernel(std::size_t kc, const T* a, const T* b, T alpha, T beta, T* c, std::size_t ldc) {
  using B = Batch<T>;
  constexpr std::size_t MR = Blocking<T>::MR, NR = Blocking<T>::NR, L = B::size;

  // Start fetching the C tile now; it is needed only after the k loop.
  for (std::size_t r = 0; r < MR; ++r) {
    __builtin_prefetch(c + r * ldc);
    __builtin_prefetch(c + r * ldc + NR - 1);
  }

  B acc[MR][2];
  for (std::size_t r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = B(T(0));

  // acc[MR][2L] += a[k][MR] (outer) b[k][2L], one rank-1 update per k
  for (std::size_t k = 0; k < kc; ++k, a += MR, b += 2 * L) {
    const B b0 = B::load_aligned(b), b1 = B::load_aligned(b + L);
    for (std::size_t r = 0; r < MR; ++r) {
      const B ar(a[r]);  // broadcast
      acc[r][0] = fused_multiply_add(ar, b0, acc[r][0]);
      acc[r][1] = fused_multiply_add(ar, b1, acc[r][1]);
    }
  }

  // C[MR][2L] (row stride ldc) <- alpha * acc (+ beta * C)
  const B va(alpha), vb(beta);
  for (std::size_t r = 0; r < MR; ++r)
    for (std::size_t h = 0; h < 2; ++h) {
      T* cp = c + r * ldc + h * L;
      const B out = beta == T(0) ? va * acc[r][h] : fused_multiply_add(va, acc[r][h], vb * B::load_unaligned(cp));
      out.store_unaligned(cp);
    }
}

// A ragged tile (fewer than MR rows or NR columns of C left): run the same micro-kernel on a
// full-size copy and write back only the valid part, so edge elements get the same arithmetic.
template <class T>
void micro_kernel_edge(std::size_t kc, const T* a, const T* b, T alpha, T beta, T* c,
                       std::size_t ldc, std::size_t rows, std::size_t cols) {
  constexpr std::size_t MR = Blocking<T>::MR, NR = Blocking<T>::NR;
  alignas(64) T tile[MR * NR] = {};
  if (beta != T(0))  // tile[rows][cols] <- C[rows][cols] (row stride ldc)
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t j = 0; j < cols; ++j) tile[r * NR + j] = c[r * ldc + j];
  micro_kernel(kc, a, b, alpha, beta, tile, NR);
  // C[rows][cols] <- tile[rows][cols]
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t j = 0; j < cols; ++j) c[r * ldc + j] = tile[r * NR + j];
}

// C[mc, nc] (one MC block of rows by one NC slab of columns) from packed A and packed B.
template <class T>
void macro_kernel(std::size_t mc, std::size_t nc, std::size_t kc, const T* a_packed,
                  const T* b_packed, T alpha, T beta, T* c, std::size_t ldc) {
  constexpr std::size_t MR = Blocking<T>::MR, NR = Blocking<T>::NR;
  // jr over NR-wide panels of B (L1-resident), ir over MR-high slivers of A (from L2)
  for (std::size_t jr = 0; jr < nc; jr += NR) {
    const std::size_t cols = std::min(NR, nc - jr);
    for (std::size_t ir = 0; ir < mc; ir += MR) {
      const std::size_t rows = std::min(MR, mc - ir);
      const T* a = a_packed + ir * kc;
      const T* b = b_packed + jr * kc;
      T* ct = c + ir * ldc + jr;
      if (rows == MR && cols == NR)
        micro_kernel(kc, a, b, alpha, beta, ct, ldc);
      else
        micro_kernel_edge(kc, a, b, alpha, beta, ct, ldc, rows, cols);
    }
  }
}

// C[m0:m1, n0:n1] = beta * C + alpha * op(A) op(B): the sequential Goto loops on one slab of C.
// Every element of C sees the same KC blocks in the same order whichever slab holds it.
// pack_b(pc, kc, jc, nc, out) packs op(B)[pc, jc] (a PanelPacker's contract).
template <class T, class PackB>
void gemm_slab(bool trans_a, std::size_t m0, std::size_t m1, std::size_t n0, std::size_t n1, std::size_t K,
               T alpha, const T* A, std::size_t lda, const PackB& pack_b, T beta, T* C, std::size_t ldc) {
  using P = Blocking<T>;
  constexpr std::size_t MR = P::MR, NR = P::NR, MC = P::MC, KC = P::KC, NC = P::NC;
  thread_local Scratch<T> a_scratch, b_scratch;
  // Round up to whole slivers: packing writes the zero padding too.
  T* a_packed = a_scratch.get((std::min(MC, m1 - m0) + MR - 1) / MR * MR * std::min(KC, K));
  T* b_packed = b_scratch.get((std::min(NC, n1 - n0) + NR - 1) / NR * NR * std::min(KC, K));

  // op(A)(i, k) = A[i * a_rs + k * a_cs]
  const std::size_t a_rs = trans_a ? 1 : lda, a_cs = trans_a ? lda : 1;

  for (std::size_t jc = n0; jc < n1; jc += NC) {
    const std::size_t nc = std::min(NC, n1 - jc);
    for (std::size_t pc = 0; pc < K; pc += KC) {
      const std::size_t kc = std::min(KC, K - pc);
      pack_b(pc, kc, jc, nc, b_packed);
      // Only the first KC block applies the caller's beta; later ones accumulate onto it.
      const T beta_block = pc == 0 ? beta : T(1);
      for (std::size_t ic = m0; ic < m1; ic += MC) {
        const std::size_t mc = std::min(MC, m1 - ic);
        pack<MR>(A + ic * a_rs + pc * a_cs, a_rs, a_cs, mc, kc, a_packed);
        macro_kernel(mc, nc, kc, a_packed, b_packed, alpha, beta_block, C + ic * ldc + jc, ldc);
      }
    }
  }
}

// C = beta * C when there is no product (K == 0 or alpha == 0); true if so.
template <class T>
bool no_product(std::size_t M, std::size_t N, std::size_t K, T alpha, T beta, T* C, std::size_t ldc) {
  if (K != 0 && alpha != T(0)) return false;
  // C[M][N] (row stride ldc)
  for (std::size_t i = 0; i < M; ++i)
    for (std::size_t j = 0; j < N; ++j) C[i * ldc + j] = beta == T(0) ? T(0) : beta * C[i * ldc + j];
  return true;
}

// Runs slab(m0, m1, n0, n1) over C[M, N]. Threads own fixed, disjoint slabs of C, cut at tile
// boundaries along the longer side of C (the other operand is then packed by every thread, and
// it is the smaller one). Each slab runs the sequential loops, so no element's arithmetic
// depends on the thread count.
template <class T, class Slab>
void run_slabs(std::size_t M, std::size_t N, std::size_t K, const Slab& slab) {
  using P = Blocking<T>;
  const bool split_columns = N >= M;
  const std::size_t tile = split_columns ? P::NR : P::MR;
  const std::size_t tiles = ((split_columns ? N : M) + tile - 1) / tile;
  int parts = 1;
#ifdef _OPENMP
  if (M * N * K >= kParallelMinMultiplyAdds && !omp_in_parallel())
    parts = static_cast<int>(std::min<std::size_t>(omp_get_max_threads(), tiles));
#endif
  if (parts == 1) {  // no parallel region at all: even a one-thread region allocates in libgomp
    slab(0, M, 0, N);
    return;
  }

  // parts[P] -> slab [t0, t1) of tiles along the split side
#pragma omp parallel for schedule(static) num_threads(parts)
  for (int part = 0; part < parts; ++part) {
    const std::size_t t0 = tiles * part / parts, t1 = tiles * (part + 1) / parts;
    const std::size_t end = split_columns ? N : M;
    const std::size_t s0 = std::min(end, t0 * tile), s1 = std::min(end, t1 * tile);
    if (split_columns)
      slab(0, M, s0, s1);
    else
      slab(s0, s1, 0, N);
  }
}

}  // namespace

template <class T>
void gemm_reference(bool trans_a, bool trans_b, std::size_t M, std::size_t N, std::size_t K,
                    T alpha, const T* A, std::size_t lda, const T* B, std::size_t ldb, T beta,
                    T* C, std::size_t ldc) {
  // C[M][N] = beta * C + alpha * sum_k op(A)[M][K] op(B)[K][N]
  for (std::size_t i = 0; i < M; ++i)
    for (std::size_t j = 0; j < N; ++j) {
      T sum = T(0);
      for (std::size_t k = 0; k < K; ++k) {
        const T a = trans_a ? A[k * lda + i] : A[i * lda + k];
        const T b = trans_b ? B[j * ldb + k] : B[k * ldb + j];
        sum += a * b;
      }
      T& c = C[i * ldc + j];
      c = beta == T(0) ? alpha * sum : alpha * sum + beta * c;
    }
}

template <class T>
void gemm(bool trans_a, bool trans_b, std::size_t M, std::size_t N, std::size_t K, T alpha,
          const T* A, std::size_t lda, const T* B, std::size_t ldb, T beta, T* C,
          std::size_t ldc) {
  if (M == 0 || N == 0 || no_product(M, N, K, alpha, beta, C, ldc)) return;
  // op(B)(k, j) = B[k * b_rs + j * b_cs]; packed B panels are X(j, k) = op(B)(pc + k, jc + j):
  // rows j step b_cs, columns k step b_rs.
  const std::size_t b_rs = trans_b ? 1 : ldb, b_cs = trans_b ? ldb : 1;
  const auto pack_b = [&](std::size_t pc, std::size_t kc, std::size_t jc, std::size_t nc, T* out) {
    pack<Blocking<T>::NR>(B + pc * b_rs + jc * b_cs, b_cs, b_rs, nc, kc, out);
  };
  run_slabs<T>(M, N, K, [&](std::size_t m0, std::size_t m1, std::size_t n0, std::size_t n1) {
    gemm_slab(trans_a, m0, m1, n0, n1, K, alpha, A, lda, pack_b, beta, C, ldc);
  });
}

template <class T>
void gemm(bool trans_a, std::size_t M, std::size_t N, std::size_t K, T alpha, const T* A, std::size_t lda,
          const PanelPacker<T>& B, T beta, T* C, std::size_t ldc) {
  if (M == 0 || N == 0 || no_product(M, N, K, alpha, beta, C, ldc)) return;
  const auto pack_b = [&](std::size_t pc, std::size_t kc, std::size_t jc, std::size_t nc, T* out) {
    B.pack(pc, kc, jc, nc, out);
  };
  run_slabs<T>(M, N, K, [&](std::size_t m0, std::size_t m1, std::size_t n0, std::size_t n1) {
    gemm_slab(trans_a, m0, m1, n0, n1, K, alpha, A, lda, pack_b, beta, C, ldc);
  });
}

template void gemm<float>(bool, bool, std::size_t, std::size_t, std::size_t, float, const float*,
                          std::size_t, const float*, std::size_t, float, float*, std::size_t);
template void gemm<double>(bool, bool, std::size_t, std::size_t, std::size_t, double,
                           const double*, std::size_t, const double*, std::size_t, double,
                           double*, std::size_t);
template void gemm<float>(bool, std::size_t, std::size_t, std::size_t, float, const float*, std::size_t,
                          const PanelPacker<float>&, float, float*, std::size_t);
template void gemm<double>(bool, std::size_t, std::size_t, std::size_t, double, const double*, std::size_t,
                           const PanelPacker<double>&, double, double*, std::size_t);
template void gemm_reference<float>(bool, bool, std::size_t, std::size_t, std::size_t, float,
                                    const float*, std::size_t, const float*, std::size_t, float,
                                    float*, std::size_t);
template void gemm_reference<double>(bool, bool, std::size_t, std::size_t, std::size_t, double,
                                     const double*, std::size_t, const double*, std::size_t,
                                     double, double*, std::size_t);

}  // namespace ax::kernels
