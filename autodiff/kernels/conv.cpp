// Convolution as GEMMs (an implicit GEMM forward and stride-1 backward-data, im2col and col2im
// for the other backward passes), a direct loop for groups with few channels, and the plain
// loops they are all tested against.
// See conv.hpp for the shapes and the three products.
#include "conv.hpp"

#include "gemm.hpp"
#include "scratch.hpp"
#include "simd.hpp"
#include "winograd.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <type_traits>
#include <vector>

namespace ax::kernels {
namespace {

// Below this many elements moved, a lowering loop runs on one thread: waking a second thread
// costs a few microseconds, about what copying this many elements takes.
constexpr std::size_t kParallelMinElements = std::size_t(1) << 15;

// col2im cuts planes into bands of rows until there are at least this many pieces of work, so
// that two threads (or a few more) share them evenly.
constexpr std::size_t kMinItems = 16;

using Index = std::ptrdiff_t;

// The output positions i in [0, out) whose input position i * stride + offset lies in [0, in).
struct Range {
  std::size_t begin, end;
};
Range inside(std::size_t out, std::size_t in, std::size_t stride, Index offset) {
  const Index s = Index(stride);
  const Index begin = offset >= 0 ? 0 : (-offset + s - 1) / s;
  const Index end = Index(in) - offset <= 0 ? 0 : (Index(in) - offset + s - 1) / s;
  const std::size_t e = std::min(out, std::size_t(end));
  return {std::min(std::size_t(begin), e), e};
}

// Where row r = (c, kh, kw) of the column matrix reads: channel c, and the offsets of input
// row and column from oh SH and ow SW.
struct PatchRow {
  std::size_t c;
  Index off_h, off_w;
};
PatchRow patch_row(const Conv2dShape& s, std::size_t r) {
  const std::size_t kw = r % s.kernel_w, kh = r / s.kernel_w % s.kernel_h, c = r / (s.kernel_w * s.kernel_h);
  return {c, Index(kh * s.dilation_h) - Index(s.pad_h), Index(kw * s.dilation_w) - Index(s.pad_w)};
}

// col[K, nb P] <- the windows of x[n0 .. n0 + nb, c0 .. c0 + C/G]; row (c, kh, kw), column
// (sample j, oh, ow). Each (row, sample) block of P columns is one thread's.
template <class T>
void im2col(const Conv2dShape& s, const T* x, std::size_t n0, std::size_t nb, std::size_t c0, T* col) {
  const std::size_t H = s.in_h, W = s.in_w, OH = s.out_h(), OW = s.out_w(), P = OH * OW;
  const std::size_t rows = s.patch(), width = nb * P, sh = s.stride_h, sw = s.stride_w;
  const Index items = Index(rows * nb);
  // [K x nb] blocks, each [OH, OW]
#pragma omp parallel for schedule(static) if (rows * width >= kParallelMinElements)
  for (Index item = 0; item < items; ++item) {
    const std::size_t r = std::size_t(item) / nb, j = std::size_t(item) % nb;
    const PatchRow p = patch_row(s, r);
    const T* plane = x + ((n0 + j) * s.in_channels + c0 + p.c) * H * W;
    T* out = col + r * width + j * P;
    const Range rh = inside(OH, H, sh, p.off_h), rw = inside(OW, W, sw, p.off_w);
    std::fill(out, out + rh.begin * OW, T(0));  // window rows above the input
    for (std::size_t oh = rh.begin; oh < rh.end; ++oh) {
      const T* xrow = plane + std::size_t(Index(oh * sh) + p.off_h) * W;
      T* o = out + oh * OW;
      std::fill(o, o + rw.begin, T(0));
      if (sw == 1 && rw.begin < rw.end) {  // a contiguous run of the input row
        const T* from = xrow + std::size_t(Index(rw.begin) + p.off_w);
        std::copy(from, from + (rw.end - rw.begin), o + rw.begin);
      } else {
        for (std::size_t ow = rw.begin; ow < rw.end; ++ow) o[ow] = xrow[std::size_t(Index(ow * sw) + p.off_w)];
      }
      std::fill(o + rw.end, o + OW, T(0));
    }
    std::fill(out + rh.end * OW, out + P, T(0));  // and below it
  }
}

// The column matrix col[K, nb P] of im2col for samples [n0, n0 + nb) and channels
// [c0, c0 + C/G), as the GEMM reads it: packed panel by panel straight from x (implicit GEMM),
// so the whole matrix is never written and read back. The values are im2col's, so the GEMM's
// bits are too.
template <class T>
class ImageColumns final : public PanelPacker<T> {
 public:
  ImageColumns(const Conv2dShape& s, const T* x, std::size_t n0, std::size_t c0) : s_(s), x_(x), n0_(n0), c0_(c0) {}

  // out[q / NR][k][q % NR] = col(pc + k, jc + q), zero for q in [nc, nc rounded up to NR)
  void pack(std::size_t pc, std::size_t kc, std::size_t jc, std::size_t nc, T* out) const override {
    constexpr std::size_t NR = gemm_panel_width<T>();
    const std::size_t H = s_.in_h, W = s_.in_w, OH = s_.out_h(), OW = s_.out_w(), P = OH * OW;
    const std::size_t sh = s_.stride_h, sw = s_.stride_w;
    // [kc] patch rows x [nc] columns, walked in pieces that stay in one output row and one sliver
    for (std::size_t k = 0; k < kc; ++k) {
      const PatchRow p = patch_row(s_, pc + k);
      const Range rw = inside(OW, W, sw, p.off_w);  // output columns whose input column is in x
      std::size_t sample = (jc / P), oh = jc % P / OW, ow = jc % OW;
      for (std::size_t q = 0; q < nc;) {
        const std::size_t len = std::min({nc - q, OW - ow, NR - q % NR});
        T* d = out + q / NR * kc * NR + k * NR + q % NR;
        const Index ih = Index(oh * sh) + p.off_h;
        if (ih < 0 || ih >= Index(H)) {
          std::fill(d, d + len, T(0));
        } else {
          const T* row = x_ + (((n0_ + sample) * s_.in_channels + c0_ + p.c) * H + std::size_t(ih)) * W;
          // [ow, ow + len): zeros left of the input, its values, zeros right of it
          const std::size_t a = std::clamp(rw.begin, ow, ow + len), b = std::clamp(rw.end, a, ow + len);
          std::fill(d, d + (a - ow), T(0));
          if (sw == 1) {  // a contiguous run of the input row (std::memcpy: no aliasing checks)
            std::memcpy(d + (a - ow), row + Index(a) + p.off_w, (b - a) * sizeof(T));
          } else {
            for (std::size_t o = a; o < b; ++o) d[o - ow] = row[Index(o * sw) + p.off_w];
          }
          std::fill(d + (b - ow), d + len, T(0));
        }
        q += len;
        ow += len;
        if (ow == OW) {
          ow = 0;
          if (++oh == OH) oh = 0, ++sample;
        }
      }
      // the last sliver's columns past nc
      for (std::size_t q = nc; q % NR != 0; ++q) out[q / NR * kc * NR + k * NR + q % NR] = T(0);
    }
  }

 private:
  const Conv2dShape& s_;
  const T* x_;
  std::size_t n0_, c0_;
};

// gx[n0 .. n0 + nb, c0 .. c0 + C/G] (+)= the columns dcol[K, nb P] added back where im2col read
// them (onto zeros unless `accumulate`). A thread takes one band of input rows of one (sample,
// channel) plane, so that a single image's three channels still split evenly; every element
// receives its KH KW taps in order, wherever the bands fall.
template <class T>
void col2im_add(const Conv2dShape& s, const T* dcol, std::size_t n0, std::size_t nb, std::size_t c0, bool accumulate,
                T* gx) {
  const std::size_t H = s.in_h, W = s.in_w, OH = s.out_h(), OW = s.out_w(), P = OH * OW;
  const std::size_t cg = s.group_in(), taps = s.kernel_h * s.kernel_w, width = nb * P;
  const std::size_t sh = s.stride_h, sw = s.stride_w;
  const std::size_t planes = nb * cg, bands = std::min(H, (kMinItems + planes - 1) / planes);
  const Index items = Index(planes * bands);
  // [nb x C/G x bands] items, each summing KH KW taps of [OH, OW] into rows [r0, r1) of a plane
#pragma omp parallel for schedule(static) if (s.patch() * width >= kParallelMinElements)
  for (Index item = 0; item < items; ++item) {
    const std::size_t j = std::size_t(item) / bands / cg, c = std::size_t(item) / bands % cg;
    const std::size_t band = std::size_t(item) % bands, r0 = H * band / bands, r1 = H * (band + 1) / bands;
    T* plane = gx + ((n0 + j) * s.in_channels + c0 + c) * H * W;
    if (!accumulate) std::fill(plane + r0 * W, plane + r1 * W, T(0));  // the band, while it is in cache
    for (std::size_t t = 0; t < taps; ++t) {
      const PatchRow p = patch_row(s, c * taps + t);
      const T* d = dcol + (c * taps + t) * width + j * P;
      // the output rows whose input row oh SH + off_h falls in the band
      const Range rh = inside(OH, r1 - r0, sh, p.off_h - Index(r0)), rw = inside(OW, W, sw, p.off_w);
      for (std::size_t oh = rh.begin; oh < rh.end; ++oh) {
        T* grow = plane + std::size_t(Index(oh * sh) + p.off_h) * W;
        const T* drow = d + oh * OW;
        for (std::size_t ow = rw.begin; ow < rw.end; ++ow) grow[std::size_t(Index(ow * sw) + p.off_w)] += drow[ow];
      }
    }
  }
}

// y[n0 + j, o0 + o, :] = (accumulate ? y : 0) + block[o, j P .. (j + 1) P] + bias[o0 + o]
template <class T>
void scatter_output(const Conv2dShape& s, const T* block, const T* bias, std::size_t n0, std::size_t nb,
                    std::size_t o0, bool accumulate, T* y) {
  const std::size_t P = s.out_pixels(), og = s.group_out(), width = nb * P;
  const Index items = Index(nb * og);
  // [nb x O/G] rows of P pixels
#pragma omp parallel for schedule(static) if (og * width >= kParallelMinElements)
  for (Index item = 0; item < items; ++item) {
    const std::size_t j = std::size_t(item) / og, o = std::size_t(item) % og;
    const T* b = block + o * width + j * P;
    T* out = y + ((n0 + j) * s.out_channels + o0 + o) * P;
    const T shift = bias ? bias[o0 + o] : T(0);
    if (accumulate)  // (y + products) + bias, as the one-sample path computes it in place
      for (std::size_t p = 0; p < P; ++p) out[p] = (out[p] + b[p]) + shift;
    else
      for (std::size_t p = 0; p < P; ++p) out[p] = b[p] + shift;
  }
}

// rows[o, :] += bias[o], for O/G rows of P: a one-sample output once the GEMM has written its
// products (the bias last: see direct_tile)
template <class T>
void add_bias_rows(const T* bias, std::size_t rows, std::size_t P, T* y) {
  // [rows, P]
  for (std::size_t o = 0; o < rows; ++o)
    for (std::size_t p = 0; p < P; ++p) y[o * P + p] += bias[o];
}

// block[o, j P .. (j + 1) P] = gy[n0 + j, o0 + o, :]: one group's output gradient as a matrix
template <class T>
void gather_output(const Conv2dShape& s, const T* gy, std::size_t n0, std::size_t nb, std::size_t o0, T* block) {
  const std::size_t P = s.out_pixels(), og = s.group_out(), width = nb * P;
  const Index items = Index(nb * og);
  // [nb x O/G] rows of P pixels
#pragma omp parallel for schedule(static) if (og * width >= kParallelMinElements)
  for (Index item = 0; item < items; ++item) {
    const std::size_t j = std::size_t(item) / og, o = std::size_t(item) % og;
    const T* in = gy + ((n0 + j) * s.out_channels + o0 + o) * P;
    std::copy(in, in + P, block + o * width + j * P);
  }
}

// ---- direct convolution: few output channels per group, no lowering ----
//
// A GEMM has the group's output channels as its rows and its window values as its depth; with
// few of either (a depthwise convolution has 1 and 9) it wastes most of its tile and its
// packing. The direct loop instead keeps OB <= 6 output channels of a stretch of one output
// row in SIMD registers, and adds each tap as one load of a shifted input row times a
// broadcast weight. It needs unit stride along w
// (contiguous loads), and reads a zero-padded copy of one sample at a time, so that no tap
// leaves its row:
//   out[n, o, oh, ow] = (accumulate ? out : 0) + (bias[o] + the taps, in (c, kh, kw) order, each
//                       padded[g Cg + c, oh SH + kh DH, ow + kw DW] wt[o, c, kh, kw])
// every tap one fused multiply-add. Backward-data of a stride-1 convolution is this same loop
// over gy with the window flipped (see conv2d_backward_data).
struct DirectShape {
  std::size_t N, C, H, W;       // in [N, C, H, W]
  std::size_t O, OH, OW;        // out [N, O, OH, OW]
  std::size_t KH, KW, SH;       // window; stride along h (1 along w)
  std::size_t PH, PW;           // zero padding
  std::size_t DH, DW, groups;   // dilation, groups
  // The padded sample: [C, HP, WP], with a vector's worth of zeros more on the right so that
  // the last vector of an output row may read past its end.
  std::size_t HP() const { return H + 2 * PH; }
  template <class T> std::size_t WP() const { return W + 2 * PW + Batch<T>::size; }
};

// Groups with at most this many output channels go direct (measured with bench_conv: a
// depthwise 3 x 3 layer runs 8-10x faster direct; LeNet-sized first layers, 1 input channel and
// 16 or 32 outputs, run as fast or faster through the GEMM both ways: their backward-data
// direct, one output channel with taps over 16 or 32, ran 3x slower).
constexpr std::size_t kDirectMaxGroupOut = 8;
// The taps' input rows (channels of a group x kernel rows) are listed on the stack.
constexpr std::size_t kDirectMaxRows = 512;

// acc[b][v] = every tap, then + bias, for OB channels from o0 and V vectors of output columns
// from ow of output row oh; w points at channel o0's weights, `rows` at the taps' padded input
// rows. The bias comes last, as in PyTorch: near a constant input (an attribution path near its
// baseline) neighbouring outputs differ by far less than the bias's last bit, and the sum of the
// products rounded once into the bias keeps their order; the bias first would round every
// product at the bias's scale and break such near-ties either way (a max-pool then picks the
// other window element).
template <std::size_t OB, std::size_t V, class T>
void direct_tile(const DirectShape& d, const T* const* rows, std::size_t row_count, const T* w, std::size_t taps,
                 const T* bias, std::size_t ow, Batch<T> (&acc)[OB][V]) {
  constexpr std::size_t L = Batch<T>::size;
  for (std::size_t b = 0; b < OB; ++b)
    for (std::size_t v = 0; v < V; ++v) acc[b][v] = Batch<T>(T(0));
  // [Cg KH] input rows x [KW] taps: V loads, then OB broadcasts x V fused multiply-adds
  for (std::size_t ck = 0; ck < row_count; ++ck) {
    const T* from = rows[ck] + ow;
    const T* wk = w + ck * d.KW;
    for (std::size_t kw = 0; kw < d.KW; ++kw) {
      Batch<T> x[V];
      for (std::size_t v = 0; v < V; ++v) x[v] = Batch<T>::load_unaligned(from + kw * d.DW + v * L);
      for (std::size_t b = 0; b < OB; ++b) {
        const Batch<T> weight(wk[b * taps + kw]);
        for (std::size_t v = 0; v < V; ++v) acc[b][v] = fused_multiply_add(x[v], weight, acc[b][v]);
      }
    }
  }
  if (bias)
    for (std::size_t b = 0; b < OB; ++b)
      for (std::size_t v = 0; v < V; ++v) acc[b][v] = acc[b][v] + Batch<T>(bias[b]);
}

// Output channels [o0, o0 + OB) of output row oh of sample n, from the padded sample.
template <std::size_t OB, class T>
void direct_row(const DirectShape& d, const T* padded, const T* wt, const T* bias, T* out, bool accumulate,
                std::size_t n, std::size_t o0, std::size_t oh) {
  constexpr std::size_t L = Batch<T>::size;
  const std::size_t cg = d.C / d.groups, og = d.O / d.groups, taps = cg * d.KH * d.KW, WP = d.WP<T>();
  const std::size_t c0 = o0 / og * cg;  // the group's first input channel
  const T* rows[kDirectMaxRows];
  const std::size_t row_count = cg * d.KH;
  for (std::size_t c = 0; c < cg; ++c)
    for (std::size_t kh = 0; kh < d.KH; ++kh) rows[c * d.KH + kh] = padded + ((c0 + c) * d.HP() + oh * d.SH + kh * d.DH) * WP;
  const T* w = wt + o0 * taps;
  const T* b0 = bias ? bias + o0 : nullptr;
  T* out0 = out + ((n * d.O + o0) * d.OH + oh) * d.OW;  // channel b's row at out0 + b OH OW
  const std::size_t plane = d.OH * d.OW;

  std::size_t ow = 0;
  for (; ow + 2 * L <= d.OW; ow += 2 * L) {  // [OB channels] x [2 L columns]
    Batch<T> acc[OB][2];
    direct_tile<OB, 2>(d, rows, row_count, w, taps, b0, ow, acc);
    for (std::size_t b = 0; b < OB; ++b)
      for (std::size_t v = 0; v < 2; ++v) {
        T* o = out0 + b * plane + ow + v * L;
        (accumulate ? Batch<T>::load_unaligned(o) + acc[b][v] : acc[b][v]).store_unaligned(o);
      }
  }
  for (; ow < d.OW; ow += L) {  // [OB] x [L], the last one cut at OW
    Batch<T> acc[OB][1];
    direct_tile<OB, 1>(d, rows, row_count, w, taps, b0, ow, acc);
    alignas(64) T lanes[L];
    for (std::size_t b = 0; b < OB; ++b) {
      acc[b][0].store_aligned(lanes);
      T* o = out0 + b * plane + ow;
      for (std::size_t l = 0; l < L && ow + l < d.OW; ++l) o[l] = accumulate ? o[l] + lanes[l] : lanes[l];
    }
  }
}

// The whole direct convolution, a sample at a time: pad it into `padded`, then items (block of
// output channels, output row), with blocks of 6 channels in each group and one of the rest.
// Each output element is written by one thread.
template <class T>
void direct_conv(const DirectShape& d, const T* in, const T* wt, const T* bias, T* out, bool accumulate, T* padded) {
  const std::size_t og = d.O / d.groups, rest = og % 6, blocks = og / 6 + (rest ? 1 : 0);  // per group
  const std::size_t HP = d.HP(), WP = d.WP<T>();
  const Index items = Index(d.groups * blocks * d.OH);
  const bool threads = d.O * d.OH * d.OW * (d.C / d.groups) * d.KH * d.KW >= kParallelMinElements * 8;
  for (std::size_t n = 0; n < d.N; ++n) {
    // padded[C, HP, WP] <- in[n], zeros around it
#pragma omp parallel for schedule(static) if (threads)
    for (Index c = 0; c < Index(d.C); ++c) {
      T* to = padded + std::size_t(c) * HP * WP;
      const T* from = in + (n * d.C + std::size_t(c)) * d.H * d.W;
      std::fill(to, to + d.PH * WP, T(0));
      for (std::size_t h = 0; h < d.H; ++h) {
        T* row = to + (d.PH + h) * WP;
        std::fill(row, row + d.PW, T(0));
        std::copy(from + h * d.W, from + (h + 1) * d.W, row + d.PW);
        std::fill(row + d.PW + d.W, row + WP, T(0));
      }
      std::fill(to + (d.PH + d.H) * WP, to + HP * WP, T(0));
    }
    // [G x blocks x OH] output rows of a block of channels
#pragma omp parallel for schedule(static) if (threads)
    for (Index item = 0; item < items; ++item) {
      const std::size_t oh = std::size_t(item) % d.OH, block = std::size_t(item) / d.OH % blocks;
      const std::size_t g = std::size_t(item) / d.OH / blocks;
      const std::size_t o0 = g * og + 6 * block, count = std::min<std::size_t>(6, og - 6 * block);
      switch (count) {
        case 6: direct_row<6>(d, padded, wt, bias, out, accumulate, n, o0, oh); break;
        case 5: direct_row<5>(d, padded, wt, bias, out, accumulate, n, o0, oh); break;
        case 4: direct_row<4>(d, padded, wt, bias, out, accumulate, n, o0, oh); break;
        case 3: direct_row<3>(d, padded, wt, bias, out, accumulate, n, o0, oh); break;
        case 2: direct_row<2>(d, padded, wt, bias, out, accumulate, n, o0, oh); break;
        default: direct_row<1>(d, padded, wt, bias, out, accumulate, n, o0, oh); break;
      }
    }
  }
}

// The two uses, both for groups with few channels on either side. Forward: unit stride along w.
DirectShape direct_forward_shape(const Conv2dShape& s) {
  return {s.batch, s.in_channels, s.in_h, s.in_w, s.out_channels, s.out_h(), s.out_w(), s.kernel_h, s.kernel_w,
          s.stride_h, s.pad_h, s.pad_w, s.dilation_h, s.dilation_w, s.groups};
}
bool direct_forward_fits(const Conv2dShape& s) {
  return s.stride_w == 1 && s.group_out() <= kDirectMaxGroupOut && s.group_in() <= kDirectMaxGroupOut &&
         s.group_in() * s.kernel_h <= kDirectMaxRows;
}

// Backward-data: gx += gy correlated with the flipped window, channels swapped (gx's channels
// are the outputs, O/G per group become the inputs), padded by D (K - 1) - P; stride 1 only,
// and padding within the dilated window so that this padding is not negative.
DirectShape direct_backward_shape(const Conv2dShape& s) {
  return {s.batch, s.out_channels, s.out_h(), s.out_w(), s.in_channels, s.in_h, s.in_w, s.kernel_h, s.kernel_w, 1,
          s.dilation_h * (s.kernel_h - 1) - s.pad_h, s.dilation_w * (s.kernel_w - 1) - s.pad_w,
          s.dilation_h, s.dilation_w, s.groups};
}
bool direct_backward_fits(const Conv2dShape& s) {
  return s.stride_h == 1 && s.stride_w == 1 && s.pad_h <= s.dilation_h * (s.kernel_h - 1) &&
         s.pad_w <= s.dilation_w * (s.kernel_w - 1) && s.group_in() <= kDirectMaxGroupOut &&
         s.group_out() <= kDirectMaxGroupOut && s.group_out() * s.kernel_h <= kDirectMaxRows;
}

// A 1 x 1 convolution with stride 1 and no padding maps each pixel on its own, so it may read
// each plane [H, W] as one row [1, H W]: packing, col2im and the moves between NCHW and the
// GEMM's blocks then run along whole planes instead of stopping at every row's end (small
// planes, 2 x 2 to 16 x 16 in networks at 64 x 64, made those pieces a few values long). The
// products and their order are the same, so are the bits.
Conv2dShape pixels_as_one_row(Conv2dShape s) {
  if (s.kernel_h == 1 && s.kernel_w == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_h == 0 && s.pad_w == 0) {
    s.in_w *= s.in_h;
    s.in_h = 1;
  }
  return s;
}

// Group g's output gradient for samples [n0, n0 + nb) as a matrix [O/G, nb P]: the rows inside
// gy for one sample, else gathered into `block`.
template <class T>
const T* output_matrix(const Conv2dShape& s, const T* gy, std::size_t n0, std::size_t nb, std::size_t g, T* block) {
  if (nb == 1) return gy + (n0 * s.out_channels + g * s.group_out()) * s.out_pixels();
  gather_output(s, gy, n0, nb, g * s.group_out(), block);
  return block;
}

// flipped[g Cg + c, o, kh, kw] = w[g Og + o, c, KH-1-kh, KW-1-kw]: the window of backward-data
// as a convolution of gy, [C, O/G, KH, KW]
template <class T>
void flip_window(const Conv2dShape& s, const T* w, T* flipped) {
  const std::size_t cg = s.group_in(), og = s.group_out(), KH = s.kernel_h, KW = s.kernel_w;
  // [G, Cg, Og, KH, KW]
  for (std::size_t g = 0; g < s.groups; ++g)
    for (std::size_t c = 0; c < cg; ++c)
      for (std::size_t o = 0; o < og; ++o)
        for (std::size_t kh = 0; kh < KH; ++kh)
          for (std::size_t kw = 0; kw < KW; ++kw)
            flipped[(((g * cg + c) * og + o) * KH + kh) * KW + kw] =
                w[(((g * og + o) * cg + c) * KH + (KH - 1 - kh)) * KW + (KW - 1 - kw)];
}

// Backward-data of a stride-1 convolution is the forward convolution of gy [N, O, OH, OW] with
// the flipped window (flip_window) and padding D (K - 1) - pad, which gives back [N, C, H, W].
// Lowered that way the GEMM packs its panels from gy (an implicit GEMM, as the forward) and is
// O/G KH KW deep, where lowering to columns writes C/G KH KW rows of dcol only O/G deep (32 for a
// DenseNet layer's 3 x 3) and adds them back with col2im. The shape of that convolution:
Conv2dShape transposed(const Conv2dShape& s) {
  Conv2dShape t = s;
  t.in_channels = s.out_channels, t.in_h = s.out_h(), t.in_w = s.out_w();
  t.out_channels = s.in_channels;
  t.pad_h = s.dilation_h * (s.kernel_h - 1) - s.pad_h;
  t.pad_w = s.dilation_w * (s.kernel_w - 1) - s.pad_w;
  t.chunk = 1;
  return t;
}
// Its GEMM has C/G rows: with few input channels (an image's 3) most of each tile of rows would
// be empty, and lowering to columns (C/G KH KW rows) is faster (measured on VGG-11-BN's first
// layer at 64 x 64: 4x). It pays where the columns' GEMM is shallow: that one sums over O/G,
// this one over O/G KH KW, so it is taken only when O/G < C/G (DenseNet's 128 -> 32 layers and
// its wide 1 x 1 ones). Where O/G >= C/G (ResNet-18's 64 -> 64, LeNet's 16 -> 32) the columns
// were faster (bench_networks, quiet: ResNet-18 batch 1 backward 15 ms against 24 ms, LeNet-28
// batch 50 backward 0.95 ms against 1.95 ms).
constexpr std::size_t kTransposedMinGroupIn = 16;
bool transposed_fits(const Conv2dShape& s) {
  return s.stride_h == 1 && s.stride_w == 1 && s.pad_h <= s.dilation_h * (s.kernel_h - 1) &&
         s.pad_w <= s.dilation_w * (s.kernel_w - 1) && s.group_in() >= kTransposedMinGroupIn &&
         s.group_out() < s.group_in();
}
// Its chunk and workspace: flipped weights [O K], then the forward's block [C/G, chunk H W].
Conv2dShape transposed_chunked(const Conv2dShape& s, std::size_t element_bytes) {
  Conv2dShape t = transposed(s);
  t.chunk = conv2d_chunk(t, element_bytes);
  return t;
}

// ---- indirect GEMM: output pixels x output channels, for short output rows ----
//
// The implicit GEMM above packs col[K, pixels] panel by panel, K values copied per output pixel,
// and each copy then serves O/G output channels. DenseNet's 3 x 3 layers have O/G = 32 and
// output rows of 16 down to 2 pixels: the packing walked 2- to 16-value pieces and cost about as
// much as the products (perf, one thread: 21% of an IG-50 against the forward GEMM's 15%). This
// path swaps the operands: a tile of MR output pixels by NR = two vectors of output channels
// stays in registers, the weights are packed once per call as wt[G][O/G in slivers of NR][K][NR],
// and every window value is broadcast straight from the (zero-padded) input:
//   acc[r][o] = sum over k = (c, kh, kw) in order of  in[base(pixel r) + offset(k)] wt[k][o]
//   base(n, oh, ow) = ((n C + g C/G) HP + oh SH) WP + ow SW,  offset(c, kh, kw) = (c HP + kh DH) WP + kw DW
// on the input padded to [N, C, HP, WP] (the input itself when there is no padding). Each output
// is one chain of K fused multiply-adds, then (accumulate ? y + acc : acc) + bias, whichever
// thread computes its tile.
template <class T>
struct IndirectTile {
  static constexpr std::size_t MR = XSIMD_WITH_AVX512F ? 8 : 6;  // pixels: 2 MR accumulators
  static constexpr std::size_t NR = gemm_panel_width<T>();      // channels: two registers
};

// Where it pays (forward, float, one thread, DenseNet-121, SqueezeNet 1.1, ResNet-18 and LeNet
// layers, bench_conv shapes timed in turn with the GEMM):
// - windows packed piece by piece (not 1 x 1 stride 1 unpadded) into a GEMM with few rows or
//   short output rows: 2-5x on DenseNet's 128 -> 32 3 x 3 at 16 x 16 to 2 x 2, SqueezeNet's
//   expand 3 x 3 (64 to 256 outputs on 15 x 15 to 3 x 3), LeNet's 16 -> 32; with more output
//   channels on longer rows the GEMM's packing is amortized, and ResNet-18's 256 -> 256 at
//   14 x 14 ran as fast or 7% slower (its 224 x 224 layers all keep the GEMM);
// - 1 x 1 stride-1 windows (packed as whole planes) with at most 128 output channels and at
//   least 128 input channels: 1.2-2x on DenseNet's bottlenecks and SqueezeNet's squeezes;
//   with few input channels (SqueezeNet's 16 -> 64 expand) each tile's stores cost more than
//   its 16-deep sums, and with 256 or more outputs (DenseNet's transitions) the GEMM was 2x
//   faster.
// Backward-data keeps the GEMM: its transposed convolutions have C/G >= 128 rows, where the
// indirect tiles ran 1.1-2x slower.
constexpr std::size_t kIndirectMinDepth = 64, kIndirectFewOut = 32;
constexpr std::size_t kIndirectPlaneMinDepth = 128, kIndirectPlaneMaxGroupOut = 128;
bool indirect_fits(const Conv2dShape& original) {
  const Conv2dShape& s = original;
  const std::size_t og = s.group_out(), row = s.out_w();
  if (s.kernel_h == 1 && s.kernel_w == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_h == 0 && s.pad_w == 0)
    return og <= kIndirectPlaneMaxGroupOut && s.patch() >= kIndirectPlaneMinDepth;
  return s.patch() >= kIndirectMinDepth && (og <= kIndirectFewOut || (row < 16 && og <= 128) || (row < 8 && og <= 256));
}

std::size_t padded_h(const Conv2dShape& s) { return s.in_h + 2 * s.pad_h; }
std::size_t padded_w(const Conv2dShape& s) { return s.in_w + 2 * s.pad_w; }
bool needs_padding(const Conv2dShape& s) { return s.pad_h != 0 || s.pad_w != 0; }

// Samples padded at once: within the workspace budget, at least one.
std::size_t indirect_chunk(const Conv2dShape& s, std::size_t element_bytes) {
  const std::size_t per_sample = s.in_channels * padded_h(s) * padded_w(s) * element_bytes;
  return std::max<std::size_t>(1, std::min(s.batch, kConvWorkspaceBytes / per_sample));
}
// Elements: the packed weights (slivers rounded up to float's wider NR, the larger count), then
// the padded chunk.
std::size_t indirect_workspace(const Conv2dShape& s) {
  constexpr std::size_t NR = IndirectTile<float>::NR;
  const std::size_t weights = s.groups * (s.group_out() + NR - 1) / NR * NR * s.patch();
  const std::size_t padded =
      needs_padding(s) ? indirect_chunk(s, sizeof(float)) * s.in_channels * padded_h(s) * padded_w(s) : 0;
  return weights + padded;
}

// padded[nb, C, HP, WP] <- x[n0 .. n0 + nb], zeros around each plane
template <class T>
void pad_input(const Conv2dShape& s, const T* x, std::size_t n0, std::size_t nb, T* padded) {
  const std::size_t H = s.in_h, W = s.in_w, HP = padded_h(s), WP = padded_w(s), planes = nb * s.in_channels;
  // [nb C] planes, each [HP, WP]
#pragma omp parallel for schedule(static) if (planes * HP * WP >= kParallelMinElements)
  for (Index p = 0; p < Index(planes); ++p) {
    T* to = padded + std::size_t(p) * HP * WP;
    const T* from = x + (n0 * s.in_channels + std::size_t(p)) * H * W;
    std::fill(to, to + s.pad_h * WP, T(0));
    for (std::size_t h = 0; h < H; ++h) {
      T* row = to + (s.pad_h + h) * WP;
      std::fill(row, row + s.pad_w, T(0));
      std::copy(from + h * W, from + (h + 1) * W, row + s.pad_w);
      std::fill(row + s.pad_w + W, row + WP, T(0));
    }
    std::fill(to + (s.pad_h + H) * WP, to + HP * WP, T(0));
  }
}

// wt[g][sliver][k][j] = weight(g O/G + sliver NR + j, k), zero past O/G; weight(o, k) gives the
// window of output channel o at depth k.
template <class T, class Weight>
void pack_indirect_weights(const Conv2dShape& s, Weight weight, T* wt) {
  constexpr std::size_t NR = IndirectTile<T>::NR;
  const std::size_t og = s.group_out(), K = s.patch(), slivers = (og + NR - 1) / NR;
  // [G, slivers, K, NR]
  for (std::size_t g = 0; g < s.groups; ++g)
    for (std::size_t v = 0; v < slivers; ++v)
      for (std::size_t k = 0; k < K; ++k)
        for (std::size_t j = 0; j < NR; ++j, ++wt) {
          const std::size_t o = v * NR + j;
          *wt = o < og ? weight(g * og + o, k) : T(0);
        }
}

// The depth of one chain of fused multiply-adds; deeper sums add up such partial sums, as the
// GEMM's KC blocks do (one chain 1152 deep, a DenseNet layer's, rounded enough more to move a
// few ReLUs across their kink in float32 IG against float64).
constexpr std::size_t kIndirectBlockDepth = 256;

// tile[MR][NR] = sum over k < K of in[base[r] + koff[k]] wt[k][:], k in order, in partial sums
// of kIndirectBlockDepth
template <class T>
void indirect_tile(std::size_t K, const std::size_t* koff, const T* const* base, const T* wt, T* tile) {
  using B = Batch<T>;
  constexpr std::size_t MR = IndirectTile<T>::MR, L = B::size;
  const T* b[MR];
  for (std::size_t r = 0; r < MR; ++r) b[r] = base[r];
  for (std::size_t k0 = 0; k0 < K; k0 += kIndirectBlockDepth) {
    B acc[MR][2];
    for (std::size_t r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = B(T(0));
    // acc[MR][2L] += in[MR pixels at offset k] (outer) wt[k][2L], one rank-1 update per k
    const std::size_t k1 = std::min(K, k0 + kIndirectBlockDepth);
    for (std::size_t k = k0; k < k1; ++k, wt += 2 * L) {
      const std::size_t off = koff[k];
      const B w0 = B::load_unaligned(wt), w1 = B::load_unaligned(wt + L);
      for (std::size_t r = 0; r < MR; ++r) {
        const B a(b[r][off]);  // broadcast
        acc[r][0] = fused_multiply_add(a, w0, acc[r][0]);
        acc[r][1] = fused_multiply_add(a, w1, acc[r][1]);
      }
    }
    // tile (+)= acc
    for (std::size_t r = 0; r < MR; ++r)
      for (std::size_t h = 0; h < 2; ++h) {
        T* to = tile + r * 2 * L + h * L;
        (k0 == 0 ? acc[r][h] : B::load_unaligned(to) + acc[r][h]).store_unaligned(to);
      }
  }
}

// y[n0 .. n0 + nb] = (accumulate ? y : 0) + conv(in, wt) + bias, in = the chunk's input, padded or
// not ([nb, C, HP, WP]); wt packed by pack_indirect_weights. Threads take (group, pixel tile,
// channel sliver) items, each writing its own outputs.
template <class T>
void indirect_chunk_forward(const Conv2dShape& s, const T* in, std::size_t HP, std::size_t WP, const T* wt,
                            const T* bias, std::size_t n0, std::size_t nb, bool accumulate, T* y) {
  constexpr std::size_t MR = IndirectTile<T>::MR, NR = IndirectTile<T>::NR;
  const std::size_t cg = s.group_in(), og = s.group_out(), K = s.patch(), OW = s.out_w(), P = s.out_pixels();
  const std::size_t width = nb * P, tiles = (width + MR - 1) / MR, slivers = (og + NR - 1) / NR;
  std::vector<std::size_t> koff(K);
  for (std::size_t k = 0; k < K; ++k) {
    const PatchRow p = patch_row(s, k);
    koff[k] = (p.c * HP + std::size_t(p.off_h + Index(s.pad_h))) * WP + std::size_t(p.off_w + Index(s.pad_w));
  }
  const Index items = Index(s.groups * tiles * slivers);
  const bool threads = double(width) * double(s.out_channels) * double(K) >= double(kParallelMinElements) * 64;
  // [G x pixel tiles x slivers] tiles of [MR pixels, NR channels]
#pragma omp parallel for schedule(static) if (threads)
  for (Index item = 0; item < items; ++item) {
    const std::size_t v = std::size_t(item) % slivers, tile = std::size_t(item) / slivers % tiles;
    const std::size_t g = std::size_t(item) / slivers / tiles;
    const T* base[MR];
    T* out[MR];
    const std::size_t pixels = std::min(MR, width - tile * MR);
    for (std::size_t r = 0; r < MR; ++r) {
      // past the last pixel: read the tile's first window again, write nothing
      const std::size_t j = tile * MR + (r < pixels ? r : 0);
      const std::size_t n = j / P, p = j % P, oh = p / OW, ow = p % OW;
      base[r] = in + ((n * s.in_channels + g * cg) * HP + oh * s.stride_h) * WP + ow * s.stride_w;
      out[r] = y + ((n0 + n) * s.out_channels + g * og + v * NR) * P + p;
    }
    alignas(64) T acc[MR * NR];
    indirect_tile(K, koff.data(), base, wt + (g * slivers + v) * K * NR, acc);
    // [channels of this sliver, pixels]
    const std::size_t channels = std::min(NR, og - v * NR);
    for (std::size_t o = 0; o < channels; ++o) {
      const T shift = bias ? bias[g * og + v * NR + o] : T(0);
      for (std::size_t r = 0; r < pixels; ++r) {
        T& to = out[r][o * P];
        to = (accumulate ? to + acc[r * NR + o] : acc[r * NR + o]) + shift;
      }
    }
  }
}

// The whole convolution through indirect_chunk_forward, weight(o, k) giving the window; the
// workspace holds the packed weights, then the padded chunk (indirect_workspace).
template <class T, class Weight>
void indirect_forward(const Conv2dShape& s, const T* x, Weight weight, const T* bias, T* y, bool accumulate,
                      T* workspace) {
  constexpr std::size_t NR = IndirectTile<T>::NR;
  T* wt = workspace;
  pack_indirect_weights(s, weight, wt);
  T* padded = wt + s.groups * (s.group_out() + NR - 1) / NR * NR * s.patch();
  const std::size_t chunk = needs_padding(s) ? indirect_chunk(s, sizeof(T)) : s.batch;
  const std::size_t HP = padded_h(s), WP = padded_w(s);
  for (std::size_t n0 = 0; n0 < s.batch; n0 += chunk) {
    const std::size_t nb = std::min(chunk, s.batch - n0);
    const T* in = x + n0 * s.in_channels * s.in_h * s.in_w;
    if (needs_padding(s)) {
      pad_input(s, x, n0, nb, padded);
      in = padded;
    }
    indirect_chunk_forward(s, in, HP, WP, wt, bias, n0, nb, accumulate, y);
  }
}

// gx (+)= the convolution of gy with the flipped window, chunk by chunk through an output block
// (for one sample too, so that the sums, and the bits, do not depend on the chunk).
template <class T>
void backward_data_as_forward(const Conv2dShape& s, const T* gy, const T* w, T* gx, bool accumulate, T* workspace) {
  const Conv2dShape t = transposed_chunked(s, sizeof(T));
  // A 1 x 1 window needs no flip: flipped_g[C/G, O/G] is w_g[O/G, C/G] transposed, which the
  // GEMM reads as it packs (flipping it was a strided transpose of every weight, 7% of
  // DenseNet-121's IG-50 on one thread).
  const bool one_by_one = s.kernel_h == 1 && s.kernel_w == 1;
  T* flipped = workspace;
  if (!one_by_one) flip_window(s, w, flipped);
  T* block = flipped + s.out_channels * s.patch();
  const std::size_t K = t.patch(), og = t.group_out(), P = t.out_pixels();
  for (std::size_t n0 = 0; n0 < t.batch; n0 += t.chunk) {
    const std::size_t nb = std::min(t.chunk, t.batch - n0), width = nb * P;
    for (std::size_t g = 0; g < t.groups; ++g) {
      // block[C/G, width] = flipped_g[C/G, K] col(gy)[K, width], then added into gx
      const ImageColumns<T> col(t, gy, n0, g * t.group_in());
      if (one_by_one)
        gemm<T>(true, og, width, K, T(1), w + g * K * og, og, col, T(0), block, width);
      else
        gemm<T>(false, og, width, K, T(1), flipped + g * og * K, K, col, T(0), block, width);
      scatter_output(t, block, static_cast<const T*>(nullptr), n0, nb, g * og, accumulate, gx);
    }
  }
}

}  // namespace

std::size_t conv2d_chunk(const Conv2dShape& s, std::size_t element_bytes, std::size_t budget_bytes) {
  const std::size_t per_sample = s.out_pixels() * (s.patch() + s.group_out()) * element_bytes;
  const std::size_t fits = per_sample == 0 ? s.batch : budget_bytes / per_sample;
  return std::max<std::size_t>(1, std::min(s.batch, fits));
}

std::size_t conv2d_workspace(const Conv2dShape& shape) {
  const Conv2dShape s = pixels_as_one_row(shape);
  // Lowering: the columns and one output block. Direct: a padded sample, for backward-data the
  // flipped weights too. Element counts, good for float and double: a padded row's slack is one
  // vector, and float's has the more lanes.
  const std::size_t lowering = s.chunk * s.out_pixels() * (s.patch() + s.group_out());
  const std::size_t slack = Batch<float>::size;
  std::size_t direct = 0;
  if (direct_forward_fits(s)) {
    const DirectShape d = direct_forward_shape(s);
    direct = d.C * d.HP() * (d.W + 2 * d.PW + slack);
  }
  if (direct_backward_fits(s)) {
    const DirectShape d = direct_backward_shape(s);
    direct = std::max(direct, s.out_channels * s.patch() + d.C * d.HP() * (d.W + 2 * d.PW + slack));
  } else if (transposed_fits(s)) {  // float's chunk: the larger in elements
    const Conv2dShape t = transposed_chunked(s, sizeof(float));
    direct = std::max(direct, s.out_channels * s.patch() + t.chunk * t.out_pixels() * t.group_out());
  }
  if (!direct_forward_fits(s) && indirect_fits(shape)) direct = std::max(direct, indirect_workspace(s));
  return std::max(lowering, direct);
}

// Workspace layouts. Through the GEMM: col or dcol [K, chunk P], then block [O/G, chunk P] (the
// forward packs straight from x and leaves col's place unused). A chunk of one sample needs no
// block: its group's output rows are already a matrix [O/G, P] inside y or gy, which the GEMM
// then reads or writes in place. Direct: the padded sample; for backward-data the flipped
// weights [C, O/G, KH, KW] first.

// ---- references: the definition, one product at a time ----
namespace {

// Calls f(y index, x index, w index) for every product x w of the definition, in order: the
// outputs [N, O, OH, OW], then each output's taps [C/G, KH, KW] that fall inside the input.
template <class F>
void for_each_product(const Conv2dShape& s, F f) {
  const Index H = Index(s.in_h), W = Index(s.in_w);
  const std::size_t OH = s.out_h(), OW = s.out_w(), cg = s.group_in(), og = s.group_out();
  for (std::size_t n = 0; n < s.batch; ++n)
    for (std::size_t o = 0; o < s.out_channels; ++o)
      for (std::size_t oh = 0; oh < OH; ++oh)
        for (std::size_t ow = 0; ow < OW; ++ow)
          for (std::size_t c = 0; c < cg; ++c)
            for (std::size_t kh = 0; kh < s.kernel_h; ++kh)
              for (std::size_t kw = 0; kw < s.kernel_w; ++kw) {
                const Index ih = Index(oh * s.stride_h + kh * s.dilation_h) - Index(s.pad_h);
                const Index iw = Index(ow * s.stride_w + kw * s.dilation_w) - Index(s.pad_w);
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;  // zero padding
                const std::size_t ic = o / og * cg + c;
                f(((n * s.out_channels + o) * OH + oh) * OW + ow,
                  ((n * s.in_channels + ic) * s.in_h + std::size_t(ih)) * s.in_w + std::size_t(iw),
                  ((o * cg + c) * s.kernel_h + kh) * s.kernel_w + kw);
              }
}

}  // namespace

template <class T>
void conv2d_forward_reference(const Conv2dShape& s, const T* x, const T* w, const T* bias, T* y) {
  // y = every product in order, then + bias (the kernels' order: see direct_tile)
  const std::size_t P = s.out_pixels();
  std::fill(y, y + s.batch * s.out_channels * P, T(0));
  for_each_product(s, [&](std::size_t yi, std::size_t xi, std::size_t wi) { y[yi] += x[xi] * w[wi]; });
  if (bias)
    for (std::size_t n = 0; n < s.batch; ++n)
      for (std::size_t o = 0; o < s.out_channels; ++o)
        for (std::size_t p = 0; p < P; ++p) y[(n * s.out_channels + o) * P + p] += bias[o];
}

namespace {
// Which float convolutions take Winograd, beside the indirect tiles and the GEMM. Measured per
// layer (forward and backward-data, Winograd against the other path, fastest of 15 interleaved
// rounds, batches 10, 22 and 52, 1 and 2 threads, load 4-5):
// - forward: where the indirect tiles fit, they beat Winograd on every shape with fewer than
//   128 input channels (SqueezeNet's expands 16 -> 64 at 15 x 15 to 64 -> 256 at 3 x 3 in
//   0.45-0.88x its time, LeNet-28's 16 -> 32 in 0.55x, Fashion's 32 -> 64 at 14 x 14 0.9-0.96x)
//   and on DenseNet's 128 -> 32 at 4 x 4 and 2 x 2 (0.4-0.9x); Winograd stays ahead on deep
//   windows with 128 outputs or more (ResNet-18 at 64 x 64: 128 -> 128 at 8 x 8 1.2-1.6x,
//   256 -> 256 at 4 x 4 1.3-1.6x) or rows of 8 and more (DenseNet's 128 -> 32 at 16 x 16 1.0-1.2x,
//   8 x 8 0.9-1.1x);
// - backward-data: on rows or columns shorter than one 4 x 4 tile most of each tile is padding,
//   and the GEMM beat Winograd (SqueezeNet's 48 -> 192 and 64 -> 256 at 3 x 3 in 0.81-0.95x its
//   time, DenseNet's 128 -> 32 at 2 x 2 0.92x); from 4 x 4 up winograd_backward_fits's rule holds.
constexpr std::size_t kWinogradDeepWindow = 128, kWinogradWideOut = 128, kWinogradLongRow = 8;
constexpr std::size_t kWinogradTile = 4;  // F(4x4, 3x3)'s output tile side
bool forward_takes_winograd(const Conv2dShape& s) {
  if (!winograd_fits(s)) return false;
  if (!indirect_fits(s)) return true;
  return s.in_channels >= kWinogradDeepWindow && (s.out_channels >= kWinogradWideOut || s.out_w() >= kWinogradLongRow);
}
bool backward_takes_winograd(const Conv2dShape& s) {
  return winograd_backward_fits(s) && s.out_h() >= kWinogradTile && s.out_w() >= kWinogradTile;
}
}  // namespace

template <class T>
void conv2d_forward(const Conv2dShape& shape, const T* x, const T* w, const T* bias, T* y, bool accumulate,
                    T* workspace) {
  if constexpr (std::is_same_v<T, float>)
    if (forward_takes_winograd(shape)) return winograd_forward(shape, x, w, bias, y, accumulate);
  const Conv2dShape s = pixels_as_one_row(shape);
  if (direct_forward_fits(s)) {
    direct_conv(direct_forward_shape(s), x, w, bias, y, accumulate, workspace);
    return;
  }
  const std::size_t K = s.patch(), og = s.group_out(), P = s.out_pixels();
  if (indirect_fits(shape)) {
    indirect_forward(s, x, [&](std::size_t o, std::size_t k) { return w[o * K + k]; }, bias, y, accumulate, workspace);
    return;
  }
  T* block = workspace + s.chunk * P * K;
  for (std::size_t n0 = 0; n0 < s.batch; n0 += s.chunk) {
    const std::size_t nb = std::min(s.chunk, s.batch - n0), width = nb * P;
    for (std::size_t g = 0; g < s.groups; ++g) {
      const ImageColumns<T> col(s, x, n0, g * s.group_in());
      const T* w_g = w + g * og * K;
      if (nb == 1) {  // y_g[O/G, P] = ((accumulate ? y_g : 0) + w_g[O/G, K] col[K, P]) + bias_g
        T* y_g = y + (n0 * s.out_channels + g * og) * P;
        gemm<T>(false, og, P, K, T(1), w_g, K, col, T(accumulate ? 1 : 0), y_g, P);
        if (bias) add_bias_rows(bias + g * og, og, P, y_g);
      } else {  // block[O/G, width] = w_g[O/G, K] col[K, width], then moved into y
        gemm<T>(false, og, width, K, T(1), w_g, K, col, T(0), block, width);
        scatter_output(s, block, bias, n0, nb, g * og, accumulate, y);
      }
    }
  }
}

template <class T>
void conv2d_backward_data_reference(const Conv2dShape& s, const T* gy, const T* w, T* gx) {
  for_each_product(s, [&](std::size_t yi, std::size_t xi, std::size_t wi) { gx[xi] += gy[yi] * w[wi]; });
}

namespace {

// Output channels whose gradient is zero in every sample add nothing to gx. A class logit's
// gradient reaches one channel of a classifier convolution (SqueezeNet 1.1's 512 -> 1000 1 x 1,
// whose full backward-data took about a tenth of its IG-50): with at most a quarter of the
// channels nonzero (one group), backward-data runs on those channels alone, gathered into
// scratch (none: nothing to add). True with the nonzero channels in `nonzero`, false when there
// are more.
constexpr std::size_t kSparseChannelsFraction = 4;
template <class T>
bool few_nonzero_channels(const Conv2dShape& s, const T* gy, std::vector<std::size_t>& nonzero) {
  if (s.groups != 1) return false;
  const std::size_t O = s.out_channels, P = s.out_pixels(), most = O / kSparseChannelsFraction;
  nonzero.reserve(most + 1);
  // [O] channels in order, each over [N, P] until its first nonzero value
  for (std::size_t o = 0; o < O; ++o) {
    bool zero = true;
    for (std::size_t n = 0; n < s.batch && zero; ++n) {
      const T* plane = gy + (n * O + o) * P;
      zero = std::all_of(plane, plane + P, [](T v) { return v == T(0); });
    }
    if (!zero) nonzero.push_back(o);
    if (nonzero.size() > most) return false;
  }
  return true;
}

template <class T>
void backward_data_dense(const Conv2dShape& shape, const T* gy, const T* w, T* gx, bool accumulate, T* workspace) {
  if constexpr (std::is_same_v<T, float>)
    if (backward_takes_winograd(shape)) return winograd_backward_data(shape, gy, w, gx, accumulate);
  const Conv2dShape s = pixels_as_one_row(shape);
  if (direct_backward_fits(s)) {
    T* flipped = workspace;
    flip_window(s, w, flipped);
    direct_conv(direct_backward_shape(s), gy, flipped, static_cast<const T*>(nullptr), gx, accumulate,
                flipped + s.out_channels * s.patch());
    return;
  }
  if (transposed_fits(s)) {
    backward_data_as_forward(s, gy, w, gx, accumulate, workspace);
    return;
  }
  const std::size_t K = s.patch(), og = s.group_out(), P = s.out_pixels();
  T* dcol = workspace;
  T* block = workspace + s.chunk * P * K;
  for (std::size_t n0 = 0; n0 < s.batch; n0 += s.chunk) {
    const std::size_t nb = std::min(s.chunk, s.batch - n0), width = nb * P;
    for (std::size_t g = 0; g < s.groups; ++g) {
      const T* gy_g = output_matrix(s, gy, n0, nb, g, block);
      // dcol[K, width] = w_g[O/G, K]^T gy_g[O/G, width]
      gemm<T>(true, false, K, width, og, T(1), w + g * og * K, K, gy_g, width, T(0), dcol, width);
      col2im_add(s, dcol, n0, nb, g * s.group_in(), accumulate, gx);
    }
  }
}

// gx (+)= backward-data over the output channels `kept` only (at least one): gy's and w's rows
// gathered, then the usual dispatch on a shape with that many output channels (its own
// workspace, in scratch), which writes every element of gx.
template <class T>
void backward_data_kept_channels(const Conv2dShape& s, const std::vector<std::size_t>& kept, const T* gy,
                                 const T* w, T* gx, bool accumulate) {
  Conv2dShape t = s;
  t.out_channels = kept.size();
  const std::size_t O = s.out_channels, k = kept.size(), P = s.out_pixels(), K = s.patch();
  thread_local Scratch<T> scratch;
  T* gy_kept = scratch.get(s.batch * k * P + k * K + conv2d_workspace(t));
  T* w_kept = gy_kept + s.batch * k * P;
  // [N, kept] planes and [kept] weight rows
  for (std::size_t n = 0; n < s.batch; ++n)
    for (std::size_t j = 0; j < k; ++j)
      std::copy_n(gy + (n * O + kept[j]) * P, P, gy_kept + (n * k + j) * P);
  for (std::size_t j = 0; j < k; ++j) std::copy_n(w + kept[j] * K, K, w_kept + j * K);
  backward_data_dense(t, gy_kept, w_kept, gx, accumulate, w_kept + k * K);
}

}  // namespace

template <class T>
void conv2d_backward_data(const Conv2dShape& shape, const T* gy, const T* w, T* gx, bool accumulate, T* workspace) {
  thread_local std::vector<std::size_t> kept;  // its capacity kept: no allocation once warm
  kept.clear();
  if (!few_nonzero_channels(shape, gy, kept)) return backward_data_dense(shape, gy, w, gx, accumulate, workspace);
  if (!kept.empty()) return backward_data_kept_channels(shape, kept, gy, w, gx, accumulate);
  if (!accumulate) std::fill_n(gx, shape.batch * shape.in_channels * shape.in_h * shape.in_w, T(0));  // gy is zero
}


template <class T>
void conv2d_backward_weights_reference(const Conv2dShape& s, const T* x, const T* gy, T* gw) {
  for_each_product(s, [&](std::size_t yi, std::size_t xi, std::size_t wi) { gw[wi] += gy[yi] * x[xi]; });
}

template <class T>
void conv2d_backward_weights(const Conv2dShape& shape, const T* x, const T* gy, T* gw, T* workspace) {
  const Conv2dShape s = pixels_as_one_row(shape);
  const std::size_t K = s.patch(), og = s.group_out(), P = s.out_pixels();
  T* col = workspace;
  T* block = workspace + s.chunk * P * K;
  for (std::size_t n0 = 0; n0 < s.batch; n0 += s.chunk) {
    const std::size_t nb = std::min(s.chunk, s.batch - n0), width = nb * P;
    for (std::size_t g = 0; g < s.groups; ++g) {
      im2col(s, x, n0, nb, g * s.group_in(), col);
      const T* gy_g = output_matrix(s, gy, n0, nb, g, block);
      // gw_g[O/G, K] += gy_g[O/G, width] col[K, width]^T
      gemm<T>(false, true, og, K, width, T(1), gy_g, width, col, width, T(1), gw + g * og * K, K);
    }
  }
}

template <class T>
void conv2d_backward_bias(const Conv2dShape& s, const T* gy, T* gbias) {
  const std::size_t P = s.out_pixels(), O = s.out_channels;
  // [O] sums over [N, P], each channel by one thread in a fixed order
#pragma omp parallel for schedule(static) if (s.batch * O * P >= kParallelMinElements)
  for (Index o = 0; o < Index(O); ++o) {
    T total = T(0);
    for (std::size_t n = 0; n < s.batch; ++n) {
      const T* row = gy + (n * O + std::size_t(o)) * P;
      for (std::size_t p = 0; p < P; ++p) total += row[p];
    }
    gbias[o] += total;
  }
}

#define AX_INSTANTIATE_CONV_KERNELS(T)                                                            \
  template void conv2d_forward<T>(const Conv2dShape&, const T*, const T*, const T*, T*, bool, T*); \
  template void conv2d_backward_data<T>(const Conv2dShape&, const T*, const T*, T*, bool, T*);          \
  template void conv2d_backward_weights<T>(const Conv2dShape&, const T*, const T*, T*, T*);       \
  template void conv2d_backward_bias<T>(const Conv2dShape&, const T*, T*);                        \
  template void conv2d_forward_reference<T>(const Conv2dShape&, const T*, const T*, const T*, T*); \
  template void conv2d_backward_data_reference<T>(const Conv2dShape&, const T*, const T*, T*);    \
  template void conv2d_backward_weights_reference<T>(const Conv2dShape&, const T*, const T*, T*);
AX_INSTANTIATE_CONV_KERNELS(float)
AX_INSTANTIATE_CONV_KERNELS(double)

}  // namespace ax::kernels
