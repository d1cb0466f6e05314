// 2-D convolution over NCHW tensors, as PyTorch's conv2d: zero padding, stride, dilation, groups.
//
//   x[N, C, H, W] (*) w[O, C/G, KH, KW] + bias[O] -> y[N, O, OH, OW]
//   OH = (H + 2 PH - DH (KH - 1) - 1) / SH + 1       (floor; OW likewise)
//   y[n, o, oh, ow] = bias[o] + sum over c < C/G, kh, kw of
//                     x[n, g C/G + c, oh SH - PH + kh DH, ow SW - PW + kw DW] w[o, c, kh, kw]
//   with g = o / (O/G) the group of output channel o, and x = 0 outside the input.
//
// The fast kernels turn the convolution into GEMMs. For a chunk of samples and one group, the
// column matrix col[K, chunk OH OW], K = C/G KH KW, holds in each column the K input values one
// output pixel's window reads (0 in the padding). Then, per group g:
//   forward           y_g[O/G, pixels]   = w_g[O/G, K] col[K, pixels]
//   backward data     dcol[K, pixels]    = w_g^T gy_g[O/G, pixels], added back into gx (col2im)
//   backward weights  gw_g[O/G, K]      += gy_g[O/G, pixels] col^T
// where `pixels` runs over the chunk's samples and their output pixels, so one GEMM serves the
// whole chunk (its output block is then moved to or from NCHW; a chunk of one sample needs no
// move). The forward never writes col: the GEMM packs its panels straight from x (an implicit
// GEMM). Backward-data writes dcol and backward-weights writes col (im2col) in a workspace the
// caller provides; lowering `chunk` samples at a time bounds its size (conv2d_chunk) whatever
// the batch. Groups with few channels (depthwise) skip the GEMM, forward and backward-data: a
// direct loop keeps output rows in SIMD registers (conv.cpp). Backward-data of a stride-1
// convolution with fewer output than input channels a group skips dcol: it is the forward convolution of gy with the flipped window
//   gx_g[C/G, pixels] += flip(w)_g[C/G, O/G KH KW] col(gy)[O/G KH KW, pixels]
// packed straight from gy like the forward. A 1 x 1 convolution with stride 1 and no padding
// reads each plane [H, W] as one row [1, H W] (same products, longer runs to pack and move).
// Forward convolutions whose GEMM would have few rows or short output rows (DenseNet's and
// SqueezeNet's at 64 x 64) take an indirect GEMM instead: a tile of output pixels by output
// channels in registers, each window value broadcast straight from the zero-padded input, the
// weights packed once per call (conv.cpp says where it pays).
// Float 3 x 3 stride-1 convolutions with enough channels and tiles can take Winograd instead,
// forward and backward-data (winograd.hpp; on unless set_winograd(false)).
//
// Threads: the GEMMs thread themselves; the other loops are split over (sample, row),
// (sample, channel) or (channel block, output row), with each element written by one thread in
// a fixed order, so results are bitwise identical on any number of threads. The chunk size
// depends on the shape only.
//
// The _reference functions are the definition above as plain loops: the tests compare with them.
#pragma once

#include <cstddef>

namespace ax::kernels {

// The process-wide default of Conv2dShape::winograd, true unless set: the float 3 x 3 stride-1
// convolutions shaped afterwards (the conv op shapes one per call) take Winograd where
// winograd_fits says it pays. Its rounding is about ten times the direct path's; false keeps
// every convolution on the direct path (docs/design.md says what that rounding does). Thread-safe.
void set_winograd(bool enabled);
// The default of shapes made now on the calling thread: set_winograd's, unless a
// DirectConvolutions lives on this thread.
bool winograd_enabled();
// While one lives, the convolutions shaped on its thread keep the direct path, whatever
// set_winograd says: exact IG holds its search to it (Winograd's rounding adds breakpoints).
class DirectConvolutions {
 public:
  DirectConvolutions();
  ~DirectConvolutions();
  DirectConvolutions(const DirectConvolutions&) = delete;
  DirectConvolutions& operator=(const DirectConvolutions&) = delete;
};

struct Conv2dShape {
  std::size_t batch = 1, in_channels = 1, in_h = 1, in_w = 1;
  std::size_t out_channels = 1, kernel_h = 1, kernel_w = 1;
  std::size_t stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dilation_h = 1, dilation_w = 1;
  std::size_t groups = 1;
  std::size_t chunk = 1;  // samples lowered at once by the fast kernels (set by conv2d_chunk)
  // float 3 x 3 stride-1 convolutions with enough channels take Winograd (winograd.hpp), a few
  // 1e-6 (relative) from the direct path, when true; false keeps the direct/GEMM path
  bool winograd = winograd_enabled();

  // The window must fit in the padded input (the op checks this before building a shape).
  std::size_t out_h() const { return (in_h + 2 * pad_h - dilation_h * (kernel_h - 1) - 1) / stride_h + 1; }
  std::size_t out_w() const { return (in_w + 2 * pad_w - dilation_w * (kernel_w - 1) - 1) / stride_w + 1; }
  std::size_t out_pixels() const { return out_h() * out_w(); }
  std::size_t group_in() const { return in_channels / groups; }    // C/G
  std::size_t group_out() const { return out_channels / groups; }  // O/G
  std::size_t patch() const { return group_in() * kernel_h * kernel_w; }  // K: one window's values
  double flops() const { return 2.0 * double(batch) * double(out_channels) * double(out_pixels()) * double(patch()); }
};

// The workspace the fast kernels may use, unless told otherwise (a chunk is at least one sample,
// so one sample needing more takes more: 10 MiB for ResNet-18's 7 x 7 stem at 224 x 224).
// Small on purpose: columns that stay in the L3 cache make the GEMM faster than a wide GEMM over
// columns in memory. Measured at batch 10 (bench_conv): 1 or 2 samples of ResNet-18's 56 x 56 and
// 28 x 28 layers run 20-40% faster than chunks of 8-10, and its 7 x 7 layers are as fast with
// 8 samples (8 MiB) as with all 10.
constexpr std::size_t kConvWorkspaceBytes = std::size_t(8) << 20;

// Samples per chunk so that the workspace stays within budget_bytes: at least 1, at most the batch.
std::size_t conv2d_chunk(const Conv2dShape& s, std::size_t element_bytes,
                         std::size_t budget_bytes = kConvWorkspaceBytes);
// Elements of workspace the fast kernels need for s.chunk samples: the columns plus one group's
// output block.
std::size_t conv2d_workspace(const Conv2dShape& s);

// y = conv(x, w) + bias, or y += conv(x, w) + bias when `accumulate`; bias may be null.
template <class T>
void conv2d_forward(const Conv2dShape& s, const T* x, const T* w, const T* bias, T* y,
                    bool accumulate, T* workspace);
// gx += d<gy, y>/dx when `accumulate`, else gx = d<gy, y>/dx (gx is not read)
template <class T>
void conv2d_backward_data(const Conv2dShape& s, const T* gy, const T* w, T* gx, bool accumulate, T* workspace);
// gw += d<gy, y>/dw
template <class T>
void conv2d_backward_weights(const Conv2dShape& s, const T* x, const T* gy, T* gw, T* workspace);
// gbias[o] += sum over n, pixels of gy[n, o, pixel]
template <class T>
void conv2d_backward_bias(const Conv2dShape& s, const T* gy, T* gbias);

// The definitions as direct loops: y = conv(x, w) + bias (bias may be null); gx += ...; gw += ...
template <class T>
void conv2d_forward_reference(const Conv2dShape& s, const T* x, const T* w, const T* bias, T* y);
template <class T>
void conv2d_backward_data_reference(const Conv2dShape& s, const T* gy, const T* w, T* gx);
template <class T>
void conv2d_backward_weights_reference(const Conv2dShape& s, const T* x, const T* gy, T* gw);

#define AX_DECLARE_CONV_KERNELS(T)                                                                       \
  extern template void conv2d_forward<T>(const Conv2dShape&, const T*, const T*, const T*, T*, bool, T*); \
  extern template void conv2d_backward_data<T>(const Conv2dShape&, const T*, const T*, T*, bool, T*);          \
  extern template void conv2d_backward_weights<T>(const Conv2dShape&, const T*, const T*, T*, T*);       \
  extern template void conv2d_backward_bias<T>(const Conv2dShape&, const T*, T*);                        \
  extern template void conv2d_forward_reference<T>(const Conv2dShape&, const T*, const T*, const T*, T*); \
  extern template void conv2d_backward_data_reference<T>(const Conv2dShape&, const T*, const T*, T*);    \
  extern template void conv2d_backward_weights_reference<T>(const Conv2dShape&, const T*, const T*, T*);
AX_DECLARE_CONV_KERNELS(float)
AX_DECLARE_CONV_KERNELS(double)
#undef AX_DECLARE_CONV_KERNELS

}  // namespace ax::kernels
