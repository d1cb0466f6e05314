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
#include <cmath>
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

// out[k][8] <- x[8 (stride rs)][k] for k below kc rounded down to 8, one 8 x 8 block at a
// time in registers: a sliver of row-major op(A) with AVX-512's MR of 8, instead of eight
// strided scalar reads per k. Packing A is a fifth of a 512 x 40 x 512 GEMM's time, mostly
// reading A from memory; this made that GEMM 2-4% faster. Returns how many k it packed.
inline std::size_t transpose_8x8_blocks(const float* x, std::size_t rs, std::size_t kc, float* out) {
#ifdef __AVX__
  std::size_t k = 0;
  // [kc / 8] blocks of [8 rows][8 k] -> [8 k][8 rows]
  for (; k + 8 <= kc; k += 8) {
    __m256 r[8], t[8];
    for (std::size_t w = 0; w < 8; ++w) r[w] = _mm256_loadu_ps(x + w * rs + k);
    // interleave pairs of rows, then pairs of pairs: each 128-bit half holds 4 rows of one k
    for (std::size_t w = 0; w < 8; w += 2) {
      t[w] = _mm256_unpacklo_ps(r[w], r[w + 1]);
      t[w + 1] = _mm256_unpackhi_ps(r[w], r[w + 1]);
    }
    for (std::size_t w = 0; w < 8; w += 4) {
      r[w] = _mm256_shuffle_ps(t[w], t[w + 2], _MM_SHUFFLE(1, 0, 1, 0));
      r[w + 1] = _mm256_shuffle_ps(t[w], t[w + 2], _MM_SHUFFLE(3, 2, 3, 2));
      r[w + 2] = _mm256_shuffle_ps(t[w + 1], t[w + 3], _MM_SHUFFLE(1, 0, 1, 0));
      r[w + 3] = _mm256_shuffle_ps(t[w + 1], t[w + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    // k + i for i < 4 in the low halves (rows 0-3 from r[i], rows 4-7 from r[i + 4]), i >= 4 high
    for (std::size_t i = 0; i < 4; ++i) {
      _mm256_storeu_ps(out + (k + i) * 8, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
      _mm256_storeu_ps(out + (k + i + 4) * 8, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
    }
  }
  return k;
#else
  (void)x, (void)rs, (void)kc, (void)out;
  return 0;
#endif
}

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
    for (std::size_t s = 0; s < whole; s += W) {
      std::size_t k = 0;
      if constexpr (W == 8 && sizeof(T) == 4) k = transpose_8x8_blocks(x + s * rs, rs, kc, out + s * kc);
      for (; k < kc; ++k)
        for (std::size_t w = 0; w < W; ++w) out[s * kc + k * W + w] = x[(s + w) * rs + k];
    }
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

// The first n lanes of a register (0 < n <= lanes) loaded from or stored to p; a load reads
// nothing past p + n (lanes past n are zero), a store writes nothing there. C's ragged right
// edge goes through these, so an edge tile is written in place, without a copy.
#if XSIMD_WITH_AVX512F
template <class T>
Batch<T> load_first(const T* p, std::size_t n) {
  if constexpr (sizeof(T) == 4)
    return _mm512_maskz_loadu_ps(__mmask16((1u << n) - 1), p);
  else
    return _mm512_maskz_loadu_pd(__mmask8((1u << n) - 1), p);
}
template <class T>
void store_first(const Batch<T>& v, T* p, std::size_t n) {
  if constexpr (sizeof(T) == 4)
    _mm512_mask_storeu_ps(p, __mmask16((1u << n) - 1), v);
  else
    _mm512_mask_storeu_pd(p, __mmask8((1u << n) - 1), v);
}
#elif XSIMD_WITH_FMA3_AVX2
// lane i's mask is all ones when i < n: the sign bit selects it
template <class T>
__m256i first_lanes_mask(std::size_t n) {
  if constexpr (sizeof(T) == 4)
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  else
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x((long long)n), _mm256_setr_epi64x(0, 1, 2, 3));
}
template <class T>
Batch<T> load_first(const T* p, std::size_t n) {
  if constexpr (sizeof(T) == 4)
    return _mm256_maskload_ps(p, first_lanes_mask<T>(n));
  else
    return _mm256_maskload_pd(p, first_lanes_mask<T>(n));
}
template <class T>
void store_first(const Batch<T>& v, T* p, std::size_t n) {
  if constexpr (sizeof(T) == 4)
    _mm256_maskstore_ps(p, first_lanes_mask<T>(n), v);
  else
    _mm256_maskstore_pd(p, first_lanes_mask<T>(n), v);
}
#else
// [n] lanes through a buffer: the portable build has no masked moves
template <class T>
Batch<T> load_first(const T* p, std::size_t n) {
  alignas(64) T lanes[Batch<T>::size] = {};
  std::copy_n(p, n, lanes);
  return Batch<T>::load_aligned(lanes);
}
template <class T>
void store_first(const Batch<T>& v, T* p, std::size_t n) {
  alignas(64) T lanes[Batch<T>::size];
  v.store_aligned(lanes);
  std::copy_n(lanes, n, p);
}
#endif

// A ragged tile: fewer than MR rows or NR columns of C left. The same arithmetic as
// micro_kernel on each element, so an element's bits do not depend on the tile it falls in:
//   acc[MR][H] = sum over k < kc of a[k][r] * b[k][j]    (k in order, one fma each)
//   C[rows][cols] = alpha * acc (+ beta * C)             (masked at the right edge)
// Only H = cols / L rounded up registers are computed (H = 1 when at most half the panel is
// left: half the multiply-adds), and only `rows` rows are written. Rows of A past `rows` are
// zero padding and cost their multiply-adds; M is rarely ragged (channel counts).
template <class T, std::size_t H>
void edge_kernel(std::size_t kc, const T* a, const T* b, T alpha, T beta, T* c, std::size_t ldc, std::size_t rows,
                 std::size_t cols) {
  using B = Batch<T>;
  constexpr std::size_t MR = Blocking<T>::MR, NR = Blocking<T>::NR, L = B::size;
  static_assert(H >= 1 && H * L <= NR, "a tile is at most the panel's width");

  B acc[MR][H];
  for (std::size_t r = 0; r < MR; ++r)
    for (std::size_t h = 0; h < H; ++h) acc[r][h] = B(T(0));

  // acc[MR][H L] += a[k][MR] (outer) b[k][H L], one rank-1 update per k (the panel is NR wide)
  for (std::size_t k = 0; k < kc; ++k, a += MR, b += NR) {
    B bk[H];
    for (std::size_t h = 0; h < H; ++h) bk[h] = B::load_aligned(b + h * L);
    for (std::size_t r = 0; r < MR; ++r) {
      const B ar(a[r]);  // broadcast
      for (std::size_t h = 0; h < H; ++h) acc[r][h] = fused_multiply_add(ar, bk[h], acc[r][h]);
    }
  }

  // C[rows][cols] (row stride ldc) <- alpha * acc (+ beta * C): whole registers, and of the
  // last one only its first cols - h L lanes
  const B va(alpha), vb(beta);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t h = 0; h < H && h * L < cols; ++h) {
      T* cp = c + r * ldc + h * L;
      const std::size_t lanes = std::min(L, cols - h * L);
      B out = va * acc[r][h];
      if (beta != T(0))
        out = fused_multiply_add(va, acc[r][h], vb * (lanes == L ? B::load_unaligned(cp) : load_first(cp, lanes)));
      if (lanes == L)
        out.store_unaligned(cp);
      else
        store_first(out, cp, lanes);
    }
}

// A narrow edge, at most half a register of columns left (8 floats, 4 doubles on AVX-512):
// there edge_kernel's lanes would be mostly padding. Here the register runs down the rows
// instead: one register holds a column of L rows, from L / MR consecutive slivers of packed A,
// and each column of the tile is one accumulator, so every lane is a row that C has.
//   acc[CW][L] = sum over k < kc of b[k][j] * a[k][i]        (k in order, one fma each)
//   C[rows][cols] = alpha * acc^T (+ beta * C)
// The same fma chain per element as micro_kernel (same bits); the write-back is scalar, through
// a transposed copy. Only where MR divides L (AVX-512; AVX2's MR of 6 does not divide 8).
template <class T>
constexpr std::size_t kColumnSlivers = Batch<T>::size % Blocking<T>::MR == 0 ? Batch<T>::size / Blocking<T>::MR : 0;
template <class T>
constexpr std::size_t kColumnWidth = Batch<T>::size / 2;

// Row k of S = kColumnSlivers consecutive slivers (each kc x MR, k-major), as one register.
template <class T>
Batch<T> sliver_rows(const T* a, std::size_t kc, std::size_t k) {
  constexpr std::size_t MR = Blocking<T>::MR, S = kColumnSlivers<T>;
  static_assert(S == 1 || S == 2, "one or two slivers a register");
  if constexpr (S == 1) {
    return Batch<T>::load_unaligned(a + k * MR);
  } else {
#if XSIMD_WITH_AVX512F
    // two 8-float halves; insertf64x4 (AVX512F) moves 256 bits whatever they hold
    const __m256 lo = _mm256_loadu_ps(a + k * MR), hi = _mm256_loadu_ps(a + kc * MR + k * MR);
    return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(lo)), _mm256_castps_pd(hi), 1));
#else
    alignas(64) T rows[Batch<T>::size];
    std::copy_n(a + k * MR, MR, rows);
    std::copy_n(a + kc * MR + k * MR, MR, rows + MR);
    return Batch<T>::load_aligned(rows);
#endif
  }
}

template <class T>
void column_kernel(std::size_t kc, const T* a, const T* b, T alpha, T beta, T* c, std::size_t ldc, std::size_t rows,
                   std::size_t cols) {
  using B = Batch<T>;
  constexpr std::size_t NR = Blocking<T>::NR, L = B::size, CW = kColumnWidth<T>;

  B acc[CW];
  for (std::size_t j = 0; j < CW; ++j) acc[j] = B(T(0));

  // acc[CW][L] += b[k][CW] (outer) a[k][L], one rank-1 update per k (the panel is NR wide)
  for (std::size_t k = 0; k < kc; ++k) {
    const B ak = sliver_rows(a, kc, k);
    const T* bk = b + k * NR;
    for (std::size_t j = 0; j < CW; ++j) acc[j] = fused_multiply_add(B(bk[j]), ak, acc[j]);
  }

  // C[rows][cols] (row stride ldc) <- alpha * tile^T (+ beta * C), tile[CW][L] = acc
  alignas(64) T tile[CW * L];
  for (std::size_t j = 0; j < CW; ++j) acc[j].store_aligned(tile + j * L);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t j = 0; j < cols; ++j) {
      T& out = c[r * ldc + j];
      out = beta == T(0) ? alpha * tile[j * L + r] : std::fma(alpha, tile[j * L + r], beta * out);
    }
}

// C[mc, cols] from the last, ragged panel of B (cols < NR): its whole registers of columns by
// edge_kernel, and where no more than kColumnWidth columns are left past them, those by
// column_kernel (on L rows while L / MR slivers of A are left, edge_kernel on the rest). So 40
// columns on AVX-512 (float) cost 32 + 8 columns' multiply-adds (no lane wasted), not 64; 49
// cost 32 + 16 + 8.
template <class T>
void ragged_panel(std::size_t mc, std::size_t cols, std::size_t kc, const T* a_packed, const T* b, T alpha, T beta,
                  T* c, std::size_t ldc) {
  constexpr std::size_t MR = Blocking<T>::MR, NR = Blocking<T>::NR, L = Batch<T>::size, S = kColumnSlivers<T>;
  std::size_t narrow = 0;  // the columns for column_kernel, after `wide` for edge_kernel
  if constexpr (S != 0)
    if (cols % L <= kColumnWidth<T>) narrow = cols % L;
  const std::size_t wide = cols - narrow;
  // ir over MR-high slivers of A: C[mc, wide]
  if (wide != 0)
    for (std::size_t ir = 0; ir < mc; ir += MR) {
      const std::size_t rows = std::min(MR, mc - ir);
      if (wide <= L)
        edge_kernel<T, 1>(kc, a_packed + ir * kc, b, alpha, beta, c + ir * ldc, ldc, rows, wide);
      else
        edge_kernel<T, NR / L>(kc, a_packed + ir * kc, b, alpha, beta, c + ir * ldc, ldc, rows, wide);
    }
  if constexpr (S != 0)
    if (narrow != 0) {
      std::size_t ir = 0;
      // ir over L-row blocks of S slivers of A: C[mc, narrow] past `wide`
      for (; ir + (S - 1) * MR < mc; ir += L)
        column_kernel(kc, a_packed + ir * kc, b + wide, alpha, beta, c + ir * ldc + wide, ldc, std::min(L, mc - ir),
                      narrow);
      // ir over the slivers left
      for (; ir < mc; ir += MR)
        edge_kernel<T, 1>(kc, a_packed + ir * kc, b + wide, alpha, beta, c + ir * ldc + wide, ldc,
                          std::min(MR, mc - ir), narrow);
    }
}

// C[mc, nc] (one MC block of rows by one NC slab of columns) from packed A and packed B.
template <class T>
void macro_kernel(std::size_t mc, std::size_t nc, std::size_t kc, const T* a_packed,
                  const T* b_packed, T alpha, T beta, T* c, std::size_t ldc) {
  constexpr std::size_t MR = Blocking<T>::MR, NR = Blocking<T>::NR;
  // jr over NR-wide panels of B (L1-resident), ir over MR-high slivers of A (from L2)
  for (std::size_t jr = 0; jr < nc; jr += NR) {
    const std::size_t cols = std::min(NR, nc - jr);
    const T* b = b_packed + jr * kc;
    if (cols < NR) {
      ragged_panel(mc, cols, kc, a_packed, b, alpha, beta, c + jr, ldc);
      continue;
    }
    for (std::size_t ir = 0; ir < mc; ir += MR) {
      const std::size_t rows = std::min(MR, mc - ir);
      const T* a = a_packed + ir * kc;
      T* ct = c + ir * ldc + jr;
      if (rows == MR)
        micro_kernel(kc, a, b, alpha, beta, ct, ldc);
      else
        edge_kernel<T, NR / Batch<T>::size>(kc, a, b, alpha, beta, ct, ldc, rows, cols);
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
