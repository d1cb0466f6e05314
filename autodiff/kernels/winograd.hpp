// Winograd convolution F(4x4, 3x3) for 3 x 3, stride-1 float convolutions (Lavin and Gray, "Fast
// Algorithms for Convolutional Neural Networks", 2016).
//
// The output is cut into 4 x 4 tiles; each reads a 6 x 6 tile of the (zero-padded) input. For one
// tile d[6,6] of input channel c and the 3 x 3 kernel g of (o, c):
//   U = G g G^T [6,6]      the weights, transformed once per call
//   V = B^T d B [6,6]      the input tile
//   m = sum over c of U (.) V          (.) elementwise: 36 independent sums over channels
//   y tile [4,4] = A^T m A + bias[o]   the bias last, as the direct path adds it (see conv.cpp)
// For each of the 36 positions xi of a 6 x 6 tile, the sums over channels of all tiles are one
// GEMM:  M_xi[O, tiles] = U_xi[O, C] V_xi[C, tiles]. So 36 GEMMs with C-deep products replace
// one with 9 C-deep products: 36 / (16 x 9) = 1/4 of the direct convolution's multiplications,
// plus the transforms (linear in the data).
//
// Backward-data of a 3 x 3, stride-1 convolution with padding p is the 3 x 3 stride-1
// convolution of gy with the weights flipped and their channels swapped, with padding 2 - p:
// the same kernel serves it.
//
// Error: the transforms' constants (1/6, 1/24, 4, 5, 8) amplify rounding; measured on ResNet-18's
// shapes (bench_conv, tests/test_winograd.cpp) the float results are within about 1e-6 relative
// (L2) of the direct convolution, a few times the direct path's own rounding; see docs/design.md.
//
// Threads: tiles are processed in blocks of whole tile rows; each block's input transform is
// split over (channel, tile row), its 36 GEMMs over xi (each GEMM on one thread), its output
// transform over (output channel, tile row). Every value is computed by one thread in a fixed
// order, so results are bitwise identical on any number of threads.
#pragma once

#include "conv.hpp"

#include <cstddef>

namespace ax::kernels {

// Both channel counts at least this for Winograd to pay (bench_conv: the transforms cost about
// as much as the products saved when either side is narrow).
constexpr std::size_t kWinogradMinChannels = 16;

// At least this many output tiles (all samples) for Winograd to pay: each of its 36 GEMMs has the
// tiles as its columns, and the GEMM's register tile is 16 or 32 columns wide; with fewer tiles
// it computes mostly padding, and transforming the weights (36 O C values a call) costs more
// than it saves. Measured (bench_conv, one thread): ResNet-18's 256 channels at 14 x 14 (16
// tiles a sample) run 0.8x the direct path's speed at batch 1 and 1.3x at batch 2; its 512
// channels at 7 x 7 (4 tiles) 0.07x at batch 1, 1.3x or more at batch 10.
constexpr std::size_t kWinogradMinTiles = 32;

// True for the convolutions Winograd computes: 3 x 3, stride 1, dilation 1, one group, padding
// at most 2, at least kWinogradMinChannels channels both ways, kWinogradMinTiles tiles, and
// s.winograd set.
bool winograd_fits(const Conv2dShape& s);
// Backward-data of the forward convolution s (gx from gy, out_channels -> in_channels) takes
// Winograd when winograd_fits(s) and it computes at least 2 kWinogradMinChannels channels, or no
// fewer than it reads. Measured (one thread, batch 10 and 50): with 16 input channels and more
// output channels (LeNet-28's 16 -> 32 at 13 x 13) the direct kernel is faster (Winograd 0.6x to
// 1.0x); 16 -> 16, 32 -> 16, 32 -> 64 and 64 -> 64 run 1.3x to 1.9x faster through Winograd.
bool winograd_backward_fits(const Conv2dShape& s);

// Tiles are processed in blocks whose transformed inputs V[36, C, tiles] and products
// M[36, O, tiles] fit in this (at least one tile row): as the lowering's workspace (conv.hpp),
// data in the L3 cache feeds the GEMMs faster.
constexpr std::size_t kWinogradBlockBytes = std::size_t(8) << 20;

// y = conv(x, w) + bias (or y += conv(x, w) + bias when accumulate); bias may be null.
// Needs a shape winograd_fits takes, the size thresholds aside (any channels and tiles work); the workspace is the kernel's own (kept per calling thread: the
// transformed weights, 36 O C floats, and one block). block_bytes is for the tests (several blocks).
void winograd_forward(const Conv2dShape& s, const float* x, const float* w, const float* bias, float* y,
                      bool accumulate, std::size_t block_bytes = kWinogradBlockBytes);
// gx += d<gy, y>/dx when `accumulate`, else gx = d<gy, y>/dx (gx is not read)
void winograd_backward_data(const Conv2dShape& s, const float* gy, const float* w, float* gx, bool accumulate,
                            std::size_t block_bytes = kWinogradBlockBytes);

// The algorithm above tile by tile, the transforms as products with the matrices B^T, G, A^T, in
// float: the fast kernels (explicit formulas, SIMD, GEMMs) are tested against it and against the
// direct convolution.
void winograd_forward_reference(const Conv2dShape& s, const float* x, const float* w, const float* bias, float* y);

}  // namespace ax::kernels
