// Pooling kernels (see pool.hpp): whole planes per thread, and the references they are tested
// against.
#include "pool.hpp"

#include "simd.hpp"

#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

namespace ax::kernels {
namespace {

// Below this many input elements, the loops run on one thread: waking a second thread costs a
// few microseconds, about what reading this many elements takes.
constexpr std::size_t kParallelMinElements = std::size_t(1) << 15;

using Index = std::ptrdiff_t;

}  // namespace

// ---- forward: separable, in SIMD along rows ----
//
// A fixed window's maximum (or sum) is taken in two steps, both along contiguous memory:
//   across  for one input row and every window start c along w (stride 1):
//             h[c] = max (or sum) of row[c .. c + kernel_w)
//   down    for one output row, over the window's input rows in order:
//             v[c] = max (or sum) of h[c] over those rows
// and output column ow keeps v[ow stride_w]. Taking every start costs stride_w times the
// across work, and buys plain vector loads. A max window's first maximum in row-major order is
// the first row's (strict >) first maximum within its row (strict >): across, then down, keeps
// it, as does the NaN rule (a NaN replaces whatever came before). Positions are carried in T:
// exact below 2^24, and planes wider or taller than that take the scalar path.
// Starts are counted from the left padding: start j's window begins at column j - pad_w.
// Windows that reach into the padding (or past the input, with ceil_mode) are clipped, and are
// done one by one; the others, a contiguous range of starts, in SIMD.
namespace {

// Rows of pooled images are short (LeNet's have 13 to 26 window starts): 256-bit vectors.
template <class T>
using PoolBatch = ShortBatch<T>;

// Output columns per tile: the tile's starts fit this many, so that scratch rows live on the stack.
constexpr std::size_t kStartsPerTile = 256;

// The starts [begin, end) of a tile whose windows lie wholly inside the row.
struct StartRange {
  std::size_t begin, end;
};
StartRange interior_starts(const PoolAxis& w, std::size_t begin, std::size_t end) {
  if (w.in < w.kernel) return {begin, begin};
  const std::size_t last = w.in - w.kernel + w.pad;  // the last start whose window ends inside
  const std::size_t b = std::max(begin, w.pad), e = std::min(end, last + 1);
  return b < e ? StartRange{b, e} : StartRange{begin, begin};
}

// Calls tile(plane, output row, its input rows, first output column, output columns, first
// start) for every output row of every plane, in tiles of at most kStartsPerTile starts.
// Threads take whole planes.
template <class Tile>
void for_each_tile(const Pool2dShape& s, Tile tile) {
  const std::size_t columns_per_tile = std::max<std::size_t>(1, kStartsPerTile / s.w.stride);
  // [planes] x [OH] x [tiles of starts]
#pragma omp parallel for schedule(static) if (s.planes * s.in_plane() >= kParallelMinElements)
  for (Index p = 0; p < Index(s.planes); ++p)
    for (std::size_t oh = 0; oh < s.h.out; ++oh)
      for (std::size_t o0 = 0; o0 < s.w.out; o0 += columns_per_tile)
        tile(std::size_t(p), oh, s.h.span(oh), o0, std::min(columns_per_tile, s.w.out - o0), o0 * s.w.stride);
}

// The clipped window of start j along w: columns [begin, end) of the row.
PoolAxis::Span start_span(const PoolAxis& w, std::size_t j) {
  const std::int64_t first = std::int64_t(j) - std::int64_t(w.pad);
  const std::int64_t last = std::min(first + std::int64_t(w.kernel), std::int64_t(w.in));
  const std::size_t begin = std::size_t(std::max<std::int64_t>(first, 0));
  return {begin, std::size_t(std::max<std::int64_t>(last, std::int64_t(begin))), 0};
}

// Maxima across one row for starts [c0, c0 + n): h[j - c0] and its column hcol[j - c0].
template <class T>
void max_across(const PoolAxis& w, const T* row, std::size_t c0, std::size_t n, T* h, T* hcol) {
  constexpr std::size_t width = PoolBatch<T>::size;
  const auto scalar = [&](std::size_t j) {
    const PoolAxis::Span cols = start_span(w, j);
    T best = -std::numeric_limits<T>::infinity();
    std::size_t at = cols.begin;
    for (std::size_t iw = cols.begin; iw < cols.end; ++iw)
      if (row[iw] > best || std::isnan(row[iw])) best = row[iw], at = iw;
    h[j - c0] = best, hcol[j - c0] = T(at);
  };
  const StartRange inside = interior_starts(w, c0, c0 + n);
  for (std::size_t j = c0; j < inside.begin; ++j) scalar(j);
  std::size_t j = inside.begin;
  // [width starts] x [kernel_w columns], one vector load per column offset
  PoolBatch<T> lane_offsets;
  {
    alignas(64) T lanes[width];
    for (std::size_t l = 0; l < width; ++l) lanes[l] = T(l);
    lane_offsets = PoolBatch<T>::load_aligned(lanes);
  }
  const auto vector = [&](std::size_t j) {  // starts [j, j + width)
    const std::size_t begin = j - w.pad;
    const PoolBatch<T> first_column = lane_offsets + PoolBatch<T>(T(begin));
    PoolBatch<T> best = PoolBatch<T>::load_unaligned(row + begin), at = first_column;
    for (std::size_t kw = 1; kw < w.kernel; ++kw) {
      const PoolBatch<T> v = PoolBatch<T>::load_unaligned(row + begin + kw);
      const auto take = (v > best) | xsimd::isnan(v);
      best = xsimd::select(take, v, best);
      at = xsimd::select(take, first_column + PoolBatch<T>(T(kw)), at);
    }
    best.store_unaligned(h + (j - c0));
    at.store_unaligned(hcol + (j - c0));
  };
  for (; j + width <= inside.end; j += width) vector(j);
  // the last interior starts: a vector ending at the range's end, recomputing a few (same values)
  if (j < inside.end && inside.end - inside.begin >= width) vector(inside.end - width), j = inside.end;
  for (; j < c0 + n; ++j) scalar(j);
}

// Sums across one row for starts [c0, c0 + n), in column order.
template <class T>
void sum_across(const PoolAxis& w, const T* row, std::size_t c0, std::size_t n, T* h) {
  constexpr std::size_t width = PoolBatch<T>::size;
  const auto scalar = [&](std::size_t j) {
    const PoolAxis::Span cols = start_span(w, j);
    T sum = T(0);
    for (std::size_t iw = cols.begin; iw < cols.end; ++iw) sum += row[iw];
    h[j - c0] = sum;
  };
  const StartRange inside = interior_starts(w, c0, c0 + n);
  for (std::size_t j = c0; j < inside.begin; ++j) scalar(j);
  std::size_t j = inside.begin;
  const auto vector = [&](std::size_t j) {  // [width starts] x [kernel_w columns]
    const T* from = row + (j - w.pad);
    PoolBatch<T> sum(T(0));
    for (std::size_t kw = 0; kw < w.kernel; ++kw) sum += PoolBatch<T>::load_unaligned(from + kw);
    sum.store_unaligned(h + (j - c0));
  };
  for (; j + width <= inside.end; j += width) vector(j);
  if (j < inside.end && inside.end - inside.begin >= width) vector(inside.end - width), j = inside.end;
  for (; j < c0 + n; ++j) scalar(j);
}

// Positions are carried in T (see above): planes must stay below 2^24 along each axis in float.
template <class T>
bool positions_exact(const Pool2dShape& s) {
  const std::size_t limit = std::size_t(1) << std::numeric_limits<T>::digits;
  return s.h.in < limit && s.w.in < limit;
}

}  // namespace

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

// ---- max-pool forward, 2 x 2 windows of stride 2 without padding (LeNet's) ----
//
// The general kernel above takes every window start along a row (twice the work at stride 2)
// through tiles of scratch rows; here each output reads its four values in row-major order
// (top left, top right, bottom left, bottom right) and keeps the first maximum, a NaN replacing
// whatever came before: the same rule as maxpool2d_forward_scalar (its reference, below), so
// the same bits and positions. Branch-free, so that a row of outputs runs in SIMD. Only when
// every window lies wholly inside the plane (no clipped last window).
template <class T>
bool maxpool2d_whole_2x2(const Pool2dShape& s) {
  const auto whole = [](const PoolAxis& a) {
    return !a.adaptive && a.kernel == 2 && a.stride == 2 && a.pad == 0 && 2 * a.out <= a.in;
  };
  return whole(s.h) && whole(s.w) && s.in_plane() < (std::size_t(1) << 32);
}

template <class T>
void maxpool2d_forward_2x2(const Pool2dShape& s, const T* x, T* y, std::uint32_t* argmax) {
  const std::size_t W = s.w.in, OW = s.w.out;
  // [planes, OH] output rows, each [OW] windows of [2, 2]
#pragma omp parallel for schedule(static) if (s.planes * s.in_plane() >= kParallelMinElements)
  for (Index p = 0; p < Index(s.planes); ++p)
    for (std::size_t oh = 0; oh < s.h.out; ++oh) {
      const T* top = x + std::size_t(p) * s.in_plane() + 2 * oh * W;
      const T* bottom = top + W;
      T* out = y + std::size_t(p) * s.out_plane() + oh * OW;
      std::uint32_t* at = argmax + std::size_t(p) * s.out_plane() + oh * OW;
      const std::uint32_t row = std::uint32_t(2 * oh * W);
      for (std::size_t ow = 0; ow < OW; ++ow) {
        const T a = top[2 * ow], b = top[2 * ow + 1], c = bottom[2 * ow], d = bottom[2 * ow + 1];
        T best = a;
        std::uint32_t offset = 0;  // 0, 1, W, W + 1: the window's positions in row-major order
        const bool take_b = (b > best) | (b != b);
        best = take_b ? b : best, offset = take_b ? 1 : offset;
        const bool take_c = (c > best) | (c != c);
        best = take_c ? c : best, offset = take_c ? std::uint32_t(W) : offset;
        const bool take_d = (d > best) | (d != d);
        best = take_d ? d : best, offset = take_d ? std::uint32_t(W + 1) : offset;
        out[ow] = best;
        at[ow] = row + std::uint32_t(2 * ow) + offset;
      }
    }
}

template bool maxpool2d_whole_2x2<float>(const Pool2dShape&);
template bool maxpool2d_whole_2x2<double>(const Pool2dShape&);
template void maxpool2d_forward_2x2<float>(const Pool2dShape&, const float*, float*, std::uint32_t*);
template void maxpool2d_forward_2x2<double>(const Pool2dShape&, const double*, double*, std::uint32_t*);

// ---- 3 x 3 windows with stride 2 (SqueezeNet's, DenseNet's and ResNet's max-pools) ----
//
// The separable kernel above takes every window start along w (twice the work at stride 2) and
// does rows with fewer starts than a vector one scalar, branchy start at a time: on SqueezeNet
// 1.1's 31 x 31 to 7 x 7 planes that cost 16 ns an output, 10% of its IG-50. Here each plane
// takes two passes, both in SIMD along rows:
//   across  for every input row and output column ow: the first maximum of the columns
//           2 ow - pad + {0, 1, 2} (strict >, a NaN replaces), value and column, from the row's
//           even and odd columns copied apart (the windows clipped at either end one by one)
//   down    for every output: the first maximum of its clipped rows' across values (strict >, a
//           NaN replaces), value, row and column
// which is the window's first maximum in row-major order, or its last NaN, as the reference
// finds it (see max_across). Each input row's across values serve both output rows that hold it.
// This kernel serves double, and float in builds without AVX2; float with AVX2 takes the one
// after it.
namespace {

bool is_3x3_stride_2(const Pool2dShape& s) {
  return !s.h.adaptive && !s.w.adaptive && s.h.kernel == 3 && s.w.kernel == 3 && s.h.stride == 2 &&
         s.w.stride == 2 && s.w.pad <= 1;
}

// (best, at) <- (v, position) where v is strictly greater or a NaN, lane by lane
template <class B>
inline void take_greater(const B& v, const B& position, B& best, B& at) {
  const auto take = (v > best) | xsimd::isnan(v);
  best = xsimd::select(take, v, best);
  at = xsimd::select(take, position, at);
}

// Scratch rows of one thread: the across values of a plane and a row's columns split apart.
template <class T>
struct Pool3x3Scratch {
  std::vector<T> h, hcol, even, odd;
};

// h[ow], hcol[ow] for one input row and every output column ow
template <class T>
void across_3_stride_2(const PoolAxis& w, const T* row, T* h, T* hcol, Pool3x3Scratch<T>& scratch) {
  using B = PoolBatch<T>;
  constexpr std::size_t L = B::size;
  const auto clipped = [&](std::size_t ow) {  // one window, as the reference scans it
    const PoolAxis::Span cols = w.span(ow);
    T best = -std::numeric_limits<T>::infinity();
    std::size_t at = cols.begin;
    for (std::size_t iw = cols.begin; iw < cols.end; ++iw)
      if (row[iw] > best || std::isnan(row[iw])) best = row[iw], at = iw;
    h[ow] = best, hcol[ow] = T(at);
  };
  // interior outputs [lo, hi): columns 2 ow - pad .. 2 ow - pad + 2 all inside the row
  const std::size_t lo = std::min(w.pad, w.out);
  const std::size_t hi = std::max(lo, std::min(w.out, w.in + w.pad >= 3 ? (w.in + w.pad - 3) / 2 + 1 : 0));
  for (std::size_t ow = 0; ow < lo; ++ow) clipped(ow);
  const std::size_t n = hi - lo, first = 2 * lo - w.pad;  // the first interior window's first column
  if (n > 0) {
    // even[i] = row[first + 2 i] (i <= n), odd[i] = row[first + 2 i + 1]
    T* even = scratch.even.data();
    T* odd = scratch.odd.data();
    const std::size_t vectors = (n + L - 1) / L;  // the last one runs past n into the scratch's slack
    for (std::size_t i = 0; i < n; ++i) even[i] = row[first + 2 * i], odd[i] = row[first + 2 * i + 1];
    even[n] = row[first + 2 * n];
    std::fill(even + n + 1, even + vectors * L + 1, T(0)), std::fill(odd + n, odd + vectors * L, T(0));
    alignas(64) T lanes[L];
    for (std::size_t l = 0; l < L; ++l) lanes[l] = T(2 * l);
    const B lane_columns = B::load_aligned(lanes);
    const auto vector = [&](std::size_t i) {  // outputs lo + i .. lo + i + L
      const B column = lane_columns + B(T(first + 2 * i));
      B best = B::load_unaligned(even + i), at = column;
      take_greater(B::load_unaligned(odd + i), column + B(T(1)), best, at);
      take_greater(B::load_unaligned(even + i + 1), column + B(T(2)), best, at);
      best.store_unaligned(h + lo + i);
      at.store_unaligned(hcol + lo + i);
    };
    // h and hcol past hi: overwritten below, or the next row's, written after this one, or the
    // scratch's slack
    for (std::size_t v = 0; v < vectors; ++v) vector(v * L);
  }
  for (std::size_t ow = hi; ow < w.out; ++ow) clipped(ow);
}

template <class T>
void maxpool3x3s2_forward(const Pool2dShape& s, const T* x, T* y, std::uint32_t* argmax) {
  using B = PoolBatch<T>;
  constexpr std::size_t L = B::size;
  const std::size_t W = s.w.in, OW = s.w.out;
  // [planes]: across values of every input row, then the outputs row by row
#pragma omp parallel for schedule(static) if (s.planes * s.in_plane() >= kParallelMinElements)
  for (Index p = 0; p < Index(s.planes); ++p) {
    thread_local Pool3x3Scratch<T> scratch;
    // room for a whole vector past the last row's OW values, and past a row's split columns
    scratch.h.resize(s.h.in * OW + L), scratch.hcol.resize(s.h.in * OW + L);
    scratch.even.resize(OW + L + 1), scratch.odd.resize(OW + L);
    const T* in = x + std::size_t(p) * s.in_plane();
    T* out = y + std::size_t(p) * s.out_plane();
    std::uint32_t* out_at = argmax + std::size_t(p) * s.out_plane();
    T* h = scratch.h.data();
    T* hcol = scratch.hcol.data();
    for (std::size_t ih = 0; ih < s.h.in; ++ih) across_3_stride_2(s.w, in + ih * W, h + ih * OW, hcol + ih * OW, scratch);
    // [OH] x [OW in vectors]: down the clipped rows of each window
    for (std::size_t oh = 0; oh < s.h.out; ++oh) {
      const PoolAxis::Span rows = s.h.span(oh);
      alignas(64) T best_lanes[L], row_lanes[L], col_lanes[L];
      for (std::size_t ow = 0; ow < OW; ow += L) {
        B best = B::load_unaligned(h + rows.begin * OW + ow), at_col = B::load_unaligned(hcol + rows.begin * OW + ow);
        B at_row(T(rows.begin));
        for (std::size_t ih = rows.begin + 1; ih < rows.end; ++ih) {
          const B v = B::load_unaligned(h + ih * OW + ow);
          const auto take = (v > best) | xsimd::isnan(v);
          best = xsimd::select(take, v, best);
          at_col = xsimd::select(take, B::load_unaligned(hcol + ih * OW + ow), at_col);
          at_row = xsimd::select(take, B(T(ih)), at_row);
        }
        best.store_aligned(best_lanes), at_row.store_aligned(row_lanes), at_col.store_aligned(col_lanes);
        // [the vector's outputs inside the row]
        for (std::size_t l = 0; l < L && ow + l < OW; ++l) {
          out[oh * OW + ow + l] = best_lanes[l];
          out_at[oh * OW + ow + l] = std::uint32_t(row_lanes[l]) * std::uint32_t(W) + std::uint32_t(col_lanes[l]);
        }
      }
    }
  }
}

// ---- 3 x 3 windows with stride 2 in float with AVX2: every window in registers ----
//
// The two passes above store every across value and its column (in T) to scratch and read them
// back, copy each row's columns apart one at a time, and write each output and position one lane
// at a time: on SqueezeNet 1.1's planes (31 x 31, 15 x 15 and 7 x 7 to 15, 7 and 3 columns,
// float) that left 3.9, 6.4 and 14 ns an output. Here 8 outputs of an output row are taken at
// once, in registers, down their rows:
//   columns  four loads of the row from the windows' first column (and one further) and three
//            shuffles give the windows' first, middle and last columns, 8 windows to a register
//            (lanes in the order 0 1 4 5 2 3 6 7, put back once at the end)
//   scan     the window's 9 values in row-major order, each replacing the best so far when
//            strictly greater (or a NaN): first_max_window's rule, in the same order, so the
//            same value and position, ties, -inf and NaN alike
// and the position is carried as an int32 offset in the window (row times W plus column) in the
// same registers, added to the window's corner at the end and stored as is. A plane without NaN
// (found by one pass over it first) drops the NaN test from the scan. Rows of fewer than 8 whole
// windows (SqueezeNet's 7 and 3 columns) read on into the next row and write over outputs written
// after them, and load and store under a mask only at the plane's end; windows clipped by padding
// or ceil_mode are scanned one by one.
#if defined(__AVX2__)

// The window's first maximum (or last NaN) in row-major order: ref_argmax's scan, for the
// windows the vectors do not take.
inline void first_max_window(const float* plane, std::size_t W, PoolAxis::Span rows, PoolAxis::Span cols, float* y,
                             std::uint32_t* at) {
  float best = -std::numeric_limits<float>::infinity();
  std::size_t where = rows.begin * W + cols.begin;
  // [rows] x [cols]
  for (std::size_t ih = rows.begin; ih < rows.end; ++ih)
    for (std::size_t iw = cols.begin; iw < cols.end; ++iw)
      if (plane[ih * W + iw] > best || std::isnan(plane[ih * W + iw])) best = plane[ih * W + iw], where = ih * W + iw;
  *y = best, *at = std::uint32_t(where);
}

// Lanes 0 .. 7 whose index is below n, as a mask of sign bits.
inline __m256i first_lanes(std::size_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// (best, at) <- (v, code) in the lanes where v is strictly greater (or, when the plane may hold
// one, a NaN); `code` is an int32 offset in the window, blended as float bits
template <bool MayHoldNaN>
inline void take_greater_avx2(__m256 v, __m256 code, __m256& best, __m256& at) {
  __m256 take = _mm256_cmp_ps(v, best, _CMP_GT_OQ);
  if constexpr (MayHoldNaN) take = _mm256_or_ps(take, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  best = _mm256_blendv_ps(best, v, take);
  at = _mm256_blendv_ps(at, code, take);
}

// Where the 8 lanes of a vector of n < 8 windows may read and write: all 8 windows' columns
// (else only the n windows', under a mask), all 8 outputs (else n, under a mask). Lanes past n
// compute from whatever they read, and are thrown away or written over later.
struct LaneRoom {
  bool read_all, write_all;
};

// Outputs ow .. ow + n (n <= 8) of one output row whose windows all lie inside the row:
// `first` points at the first window's first column in the rows' first row. `codes[3 dr + dc]`
// holds dr W + dc. Reads first[r W + 0 .. 2n] for each of the rows (up to 16 with read_all).
template <bool MayHoldNaN>
inline void max_3x3_stride_2_lanes(const float* first, std::size_t W, std::size_t rows, std::size_t n, LaneRoom room,
                                   const __m256* codes, std::uint32_t corner, float* y, std::uint32_t* argmax) {
  const bool masked_loads = n < 8 && !room.read_all, masked_stores = n < 8 && !room.write_all;
  const __m256i mask_a = first_lanes(2 * n + 1), mask_b = first_lanes(2 * n + 1 < 8 ? 0 : 2 * n + 1 - 8);
  const __m256i mask_a1 = first_lanes(2 * n), mask_b1 = first_lanes(2 * n < 8 ? 0 : 2 * n - 8);
  const auto load = [&](const float* p, const __m256i& mask) {
    return masked_loads ? _mm256_maskload_ps(p, mask) : _mm256_loadu_ps(p);
  };
  __m256 best, at;
  // [rows] x [first, middle, last column], in row-major order
  for (std::size_t dr = 0; dr < rows; ++dr) {
    const float* row = first + dr * W;
    const __m256 a = load(row, mask_a), b = load(row + 8, mask_b);        // columns 0 .. 15
    const __m256 a1 = load(row + 1, mask_a1), b1 = load(row + 9, mask_b1);  // columns 1 .. 16
    const __m256 left = _mm256_shuffle_ps(a, b, 0x88), middle = _mm256_shuffle_ps(a1, b1, 0x88);
    const __m256 right = _mm256_shuffle_ps(a1, b1, 0xDD);
    if (dr == 0) best = left, at = codes[0];
    else take_greater_avx2<MayHoldNaN>(left, codes[3 * dr], best, at);
    take_greater_avx2<MayHoldNaN>(middle, codes[3 * dr + 1], best, at);
    take_greater_avx2<MayHoldNaN>(right, codes[3 * dr + 2], best, at);
  }
  // lanes back in order (64-bit pairs 0 2 1 3), the offsets on the corners
  const __m256 value = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(best), 0xD8));
  const __m256i offset = _mm256_permute4x64_epi64(_mm256_castps_si256(at), 0xD8);
  const __m256i position =
      _mm256_add_epi32(offset, _mm256_add_epi32(_mm256_set1_epi32(int(corner)), _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14)));
  if (masked_stores) {
    const __m256i mask = first_lanes(n);
    _mm256_maskstore_ps(y, mask, value);
    _mm256_maskstore_epi32(reinterpret_cast<int*>(argmax), mask, position);
  } else {
    _mm256_storeu_ps(y, value);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(argmax), position);
  }
}

// True when the plane holds a NaN.
inline bool holds_nan(const float* x, std::size_t n) {
  __m256 any = _mm256_setzero_ps();
  std::size_t i = 0;
  // [n in vectors of 8]
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    any = _mm256_or_ps(any, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  }
  bool nan = _mm256_movemask_ps(any) != 0;
  for (; i < n; ++i) nan = nan || std::isnan(x[i]);
  return nan;
}

template <bool MayHoldNaN>
void max_3x3_stride_2_plane(const Pool2dShape& s, const float* plane, float* y, std::uint32_t* argmax) {
  const std::size_t W = s.w.in, OW = s.w.out;
  // the windows wholly inside a row: output columns [lo, hi) (see across_3_stride_2)
  const std::size_t lo = std::min(s.w.pad, OW);
  const std::size_t hi = std::max(lo, std::min(OW, W + s.w.pad >= 3 ? (W + s.w.pad - 3) / 2 + 1 : 0));
  __m256 codes[9];
  for (std::size_t k = 0; k < 9; ++k) codes[k] = _mm256_castsi256_ps(_mm256_set1_epi32(int((k / 3) * W + k % 3)));
  // [OH] x [OW]: the clipped windows one by one, the others 8 at a time
  for (std::size_t oh = 0; oh < s.h.out; ++oh) {
    const PoolAxis::Span rows = s.h.span(oh);
    float* out = y + oh * OW;
    std::uint32_t* out_at = argmax + oh * OW;
    for (std::size_t ow = 0; ow < lo; ++ow) first_max_window(plane, W, rows, s.w.span(ow), out + ow, out_at + ow);
    const auto lanes = [&](std::size_t ow, std::size_t n) {
      const std::size_t column = 2 * ow - s.w.pad;
      // a short vector may read on into the plane's next rows, and write over outputs that are
      // written after it (the row's clipped windows, the next rows')
      const LaneRoom room{(rows.end - 1) * W + column + 17 <= s.in_plane(), oh * OW + ow + 8 <= s.out_plane()};
      max_3x3_stride_2_lanes<MayHoldNaN>(plane + rows.begin * W + column, W, rows.end - rows.begin, n, room, codes,
                                         std::uint32_t(rows.begin * W + column), out + ow, out_at + ow);
    };
    std::size_t ow = lo;
    for (; ow + 8 <= hi; ow += 8) lanes(ow, 8);
    // the last few: a whole vector ending at hi (recomputing some, the same values), else a mask
    if (ow < hi) hi - lo >= 8 ? lanes(hi - 8, 8) : lanes(ow, hi - ow);
    for (std::size_t ow = hi; ow < OW; ++ow) first_max_window(plane, W, rows, s.w.span(ow), out + ow, out_at + ow);
  }
}

void maxpool3x3s2_forward_avx2(const Pool2dShape& s, const float* x, float* y, std::uint32_t* argmax) {
  // [planes]
#pragma omp parallel for schedule(static) if (s.planes * s.in_plane() >= kParallelMinElements)
  for (Index p = 0; p < Index(s.planes); ++p) {
    const float* plane = x + std::size_t(p) * s.in_plane();
    float* out = y + std::size_t(p) * s.out_plane();
    std::uint32_t* out_at = argmax + std::size_t(p) * s.out_plane();
    if (holds_nan(plane, s.in_plane())) max_3x3_stride_2_plane<true>(s, plane, out, out_at);
    else max_3x3_stride_2_plane<false>(s, plane, out, out_at);
  }
}

#endif  // __AVX2__
}  // namespace

template <class T>
void maxpool2d_forward(const Pool2dShape& s, const T* x, T* y, std::uint32_t* argmax) {
  if (s.h.adaptive || s.w.adaptive || !positions_exact<T>(s)) {
    maxpool2d_forward_scalar(s, x, y, argmax);
    return;
  }
  if (maxpool2d_whole_2x2<T>(s)) return maxpool2d_forward_2x2(s, x, y, argmax);  // LeNet's windows
  if (is_3x3_stride_2(s)) {
#if defined(__AVX2__)
    if constexpr (std::is_same_v<T, float>)  // positions in int32 lanes
      if (s.in_plane() < (std::size_t(1) << 31)) return maxpool3x3s2_forward_avx2(s, x, y, argmax);
#endif
    maxpool3x3s2_forward(s, x, y, argmax);
    return;
  }
  constexpr std::size_t width = PoolBatch<T>::size;
  const std::size_t W = s.w.in;
  for_each_tile(s, [&](std::size_t p, std::size_t oh, PoolAxis::Span rows, std::size_t o0, std::size_t columns, std::size_t c0) {
    const T* in = x + p * s.in_plane();
    const std::size_t out0 = p * s.out_plane();
    alignas(64) T h[kStartsPerTile], hcol[kStartsPerTile], v[kStartsPerTile], vcol[kStartsPerTile], vrow[kStartsPerTile];
    const std::size_t n = (columns - 1) * s.w.stride + 1;  // starts in this tile
    max_across(s.w, in + rows.begin * W, c0, n, v, vcol);
    std::fill(vrow, vrow + n, T(rows.begin));
    for (std::size_t ih = rows.begin + 1; ih < rows.end; ++ih) {
      max_across(s.w, in + ih * W, c0, n, h, hcol);
      // [n starts]: a later row wins only when strictly greater (or NaN). Doing a start twice
      // changes nothing (the second time its row no longer wins), so a last vector may overlap.
      const auto combine = [&](std::size_t j) {
        const PoolBatch<T> hv = PoolBatch<T>::load_unaligned(h + j), best = PoolBatch<T>::load_unaligned(v + j);
        const auto take = (hv > best) | xsimd::isnan(hv);
        xsimd::select(take, hv, best).store_unaligned(v + j);
        xsimd::select(take, PoolBatch<T>::load_unaligned(hcol + j), PoolBatch<T>::load_unaligned(vcol + j)).store_unaligned(vcol + j);
        xsimd::select(take, PoolBatch<T>(T(ih)), PoolBatch<T>::load_unaligned(vrow + j)).store_unaligned(vrow + j);
      };
      std::size_t j = 0;
      for (; j + width <= n; j += width) combine(j);
      if (j < n && n >= width) combine(n - width), j = n;
      for (; j < n; ++j)
        if (h[j] > v[j] || std::isnan(h[j])) v[j] = h[j], vcol[j] = hcol[j], vrow[j] = T(ih);
    }
    // [columns]: output ow keeps start ow stride
    for (std::size_t i = 0; i < columns; ++i) {
      const std::size_t j = i * s.w.stride, o = out0 + oh * s.w.out + o0 + i;
      y[o] = v[j];
      argmax[o] = std::uint32_t(vrow[j]) * std::uint32_t(W) + std::uint32_t(vcol[j]);
    }
  });
}

namespace {

// Averages whose sum left T's range although every value of the window is finite (rows of +max
// and -max: inf - inf = NaN, or an infinite partial sum of a finite mean) are summed again in
// long double, whose range holds any window of T values; a window that holds a NaN or an
// infinity keeps the IEEE result. One test per output when nothing overflowed.
template <class T>
void resum_overflowed(const Pool2dShape& s, const T* x, T* y) {
  const std::size_t W = s.w.in;
  // [planes, OH, OW]
  for (std::size_t p = 0; p < s.planes; ++p)
    for (std::size_t oh = 0; oh < s.h.out; ++oh)
      for (std::size_t ow = 0; ow < s.w.out; ++ow) {
        T& out = y[p * s.out_plane() + oh * s.w.out + ow];
        if (std::isfinite(out)) continue;
        const PoolAxis::Span rows = s.h.span(oh), cols = s.w.span(ow);
        long double sum = 0;
        bool finite = true;
        for (std::size_t ih = rows.begin; ih < rows.end; ++ih)
          for (std::size_t iw = cols.begin; iw < cols.end; ++iw) {
            const T v = x[p * s.in_plane() + ih * W + iw];
            finite = finite && std::isfinite(v);
            sum += v;
          }
        if (!finite) continue;
        const long double mean = sum / static_cast<long double>(rows.count * cols.count);
        const long double top = std::numeric_limits<T>::max();
        out = mean > top ? std::numeric_limits<T>::infinity() : mean < -top ? -std::numeric_limits<T>::infinity() : T(mean);
      }
}

template <class T>
void avgpool2d_forward_fast(const Pool2dShape& s, const T* x, T* y) {
  constexpr std::size_t width = PoolBatch<T>::size;
  const std::size_t W = s.w.in;
  for_each_tile(s, [&](std::size_t p, std::size_t oh, PoolAxis::Span rows, std::size_t o0, std::size_t columns, std::size_t c0) {
    const T* in = x + p * s.in_plane();
    T* out = y + p * s.out_plane();
    alignas(64) T h[kStartsPerTile], v[kStartsPerTile];
    const std::size_t n = (columns - 1) * s.w.stride + 1;
    sum_across(s.w, in + rows.begin * W, c0, n, v);
    for (std::size_t ih = rows.begin + 1; ih < rows.end; ++ih) {
      sum_across(s.w, in + ih * W, c0, n, h);
      // [n starts]
      std::size_t j = 0;
      for (; j + width <= n; j += width)
        (PoolBatch<T>::load_aligned(v + j) + PoolBatch<T>::load_aligned(h + j)).store_aligned(v + j);
      for (; j < n; ++j) v[j] += h[j];
    }
    // [columns]
    for (std::size_t i = 0; i < columns; ++i)
      out[oh * s.w.out + o0 + i] = v[i * s.w.stride] / T(rows.count * s.w.span(o0 + i).count);
  });
}

}  // namespace

template <class T>
void avgpool2d_forward_reference(const Pool2dShape& s, const T* x, T* y) {
  for_each_output(s, [&](std::size_t p, std::size_t o, const RefWindow& r, const RefWindow& c) {
    T sum = T(0);
    for (Index ih = r.begin; ih < r.end; ++ih)
      for (Index iw = c.begin; iw < c.end; ++iw) sum += x[p * s.in_plane() + std::size_t(ih * Index(s.w.in) + iw)];
    y[o] = sum / T(r.divisor * c.divisor);
  });
}

// ---- global average pooling: adaptive windows of one output (the last pool of SqueezeNet,
// ResNet, DenseNet) ----
//
// Each plane's values are summed in order from 0 and the sum divided by the plane's size: what
// avgpool2d_forward_scalar and avgpool2d_backward do for these windows, bit for bit. Their
// window bookkeeping and one dependent chain of adds a plane cost 14 ns a plane on SqueezeNet's
// 3 x 3 planes; here 8 planes' chains run side by side.
namespace {

bool is_global(const Pool2dShape& s) { return s.h.adaptive && s.w.adaptive && s.h.out == 1 && s.w.out == 1; }

template <class T>
void global_avgpool_forward(const Pool2dShape& s, const T* x, T* y) {
  constexpr std::size_t kPlanes = 8;
  const std::size_t n = s.in_plane();
  const T divisor = T(n);
  // [blocks of kPlanes planes]
#pragma omp parallel for schedule(static) if (s.planes * n >= kParallelMinElements)
  for (Index b = 0; b < Index((s.planes + kPlanes - 1) / kPlanes); ++b) {
    const std::size_t p0 = std::size_t(b) * kPlanes, count = std::min(kPlanes, s.planes - p0);
    T sum[kPlanes] = {};
    // [n values] x [count planes]: each plane's sum in its own order
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t l = 0; l < count; ++l) sum[l] += x[(p0 + l) * n + i];
    for (std::size_t l = 0; l < count; ++l) y[p0 + l] = sum[l] / divisor;
  }
}

template <class T>
void global_avgpool_backward(const Pool2dShape& s, const T* gy, T* gx) {
  const std::size_t n = s.in_plane();
  const T divisor = T(n);
  // [planes] x [n values]
#pragma omp parallel for schedule(static) if (s.planes * n >= kParallelMinElements)
  for (Index p = 0; p < Index(s.planes); ++p) {
    const T share = gy[p] / divisor;
    T* g = gx + std::size_t(p) * n;
    for (std::size_t i = 0; i < n; ++i) g[i] += share;
  }
}

}  // namespace

template <class T>
void avgpool2d_forward(const Pool2dShape& s, const T* x, T* y) {
  if (is_global(s)) global_avgpool_forward(s, x, y);
  else if (s.h.adaptive || s.w.adaptive) avgpool2d_forward_scalar(s, x, y);
  else avgpool2d_forward_fast(s, x, y);
  resum_overflowed(s, x, y);
}

// ---- forward, one window at a time: adaptive windows, and planes too large for T positions ----

template <class T>
void maxpool2d_forward_scalar(const Pool2dShape& s, const T* x, T* y, std::uint32_t* argmax) {
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
void maxpool2d_backward_reference(const Pool2dShape& s, const T* x, const T* gy, T* gx) {
  for_each_output(s, [&](std::size_t p, std::size_t o, const RefWindow& r, const RefWindow& c) {
    gx[p * s.in_plane() + ref_argmax(x + p * s.in_plane(), Index(s.w.in), r, c)] += gy[o];
  });
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
void avgpool2d_forward_scalar(const Pool2dShape& s, const T* x, T* y) {
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
void avgpool2d_backward_reference(const Pool2dShape& s, const T* gy, T* gx) {
  for_each_output(s, [&](std::size_t p, std::size_t o, const RefWindow& r, const RefWindow& c) {
    for (Index ih = r.begin; ih < r.end; ++ih)
      for (Index iw = c.begin; iw < c.end; ++iw)
        gx[p * s.in_plane() + std::size_t(ih * Index(s.w.in) + iw)] += gy[o] / T(r.divisor * c.divisor);
  });
}

template <class T>
void avgpool2d_backward(const Pool2dShape& s, const T* gy, T* gx) {
  if (is_global(s)) return global_avgpool_backward(s, gy, gx);
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

#define AX_INSTANTIATE_POOL_KERNELS(T)                                                              \
  template void maxpool2d_forward<T>(const Pool2dShape&, const T*, T*, std::uint32_t*);             \
  template void maxpool2d_backward<T>(const Pool2dShape&, const std::uint32_t*, const T*, T*);     \
  template void maxpool2d_tangent<T>(const Pool2dShape&, const std::uint32_t*, const T*, T*);      \
  template void avgpool2d_forward<T>(const Pool2dShape&, const T*, T*);                             \
  template void avgpool2d_backward<T>(const Pool2dShape&, const T*, T*);                            \
  template void maxpool2d_forward_scalar<T>(const Pool2dShape&, const T*, T*, std::uint32_t*);      \
  template void avgpool2d_forward_scalar<T>(const Pool2dShape&, const T*, T*);                      \
  template void maxpool2d_forward_reference<T>(const Pool2dShape&, const T*, T*);                   \
  template void maxpool2d_backward_reference<T>(const Pool2dShape&, const T*, const T*, T*);        \
  template void avgpool2d_forward_reference<T>(const Pool2dShape&, const T*, T*);                   \
  template void avgpool2d_backward_reference<T>(const Pool2dShape&, const T*, T*);
AX_INSTANTIATE_POOL_KERNELS(float)
AX_INSTANTIATE_POOL_KERNELS(double)

}  // namespace ax::kernels
