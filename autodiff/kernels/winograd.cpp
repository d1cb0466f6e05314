// Winograd F(4x4, 3x3): weight, input and output transforms around 36 GEMMs (see winograd.hpp).
// The transforms are written twice: as the matrices B^T, G, A^T (the reference, plain loops),
// and as the explicit formulas those matrices stand for, over whole rows so that the compiler
// vectorizes them (the fast path).
#include "winograd.hpp"

#include "gemm.hpp"
#include "scratch.hpp"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

namespace ax::kernels {
namespace {

using Index = std::ptrdiff_t;

constexpr std::size_t kOut = 4;     // output tile side (m)
constexpr std::size_t kIn = 6;      // input tile side (m + r - 1)
constexpr std::size_t kPoints = 36; // positions xi of a 6 x 6 tile: the GEMMs

// The transforms for the interpolation points 0, 1, -1, 2, -2 and infinity (Lavin and Gray).
constexpr float kBT[kIn][kIn] = {{4, 0, -5, 0, 1, 0},  {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
                                 {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};
constexpr float kG[kIn][3] = {{1.f / 4, 0, 0},
                              {-1.f / 6, -1.f / 6, -1.f / 6},
                              {-1.f / 6, 1.f / 6, -1.f / 6},
                              {1.f / 24, 1.f / 12, 1.f / 6},
                              {1.f / 24, -1.f / 12, 1.f / 6},
                              {0, 0, 1}};
constexpr float kAT[kOut][kIn] = {{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};

// Below this many direct-convolution multiply-adds the kernel runs on the calling thread alone
// (waking the pool costs tens of microseconds; see gemm.cpp).
constexpr std::size_t kParallelMinMultiplyAdds = std::size_t(1) << 21;

// A 3 x 3, stride-1 convolution in[N, C, H, W] -> out[N, O, OH, OW] with zero padding PH, PW:
// the forward pass, or backward-data seen as one (winograd.hpp).
struct Plan {
  std::size_t N, C, H, W, O, PH, PW, OH, OW;
  std::size_t tiles_h() const { return (OH + kOut - 1) / kOut; }
  std::size_t tiles_w() const { return (OW + kOut - 1) / kOut; }
  std::size_t tile_rows() const { return N * tiles_h(); }  // (sample, tile row) pairs
  // the padded input one tile row reads: from column -PW, 4 per tile plus 2
  std::size_t padded_w() const { return kOut * tiles_w() + 2; }
};

Plan forward_plan(const Conv2dShape& s) {
  return {s.batch, s.in_channels, s.in_h, s.in_w, s.out_channels, s.pad_h, s.pad_w, s.out_h(), s.out_w()};
}
// gy[N, O, OH, OW] -> gx[N, C, H, W], padding 2 - p (the flipped window's)
Plan backward_plan(const Conv2dShape& s) {
  return {s.batch, s.out_channels, s.out_h(), s.out_w(), s.in_channels, 2 - s.pad_h, 2 - s.pad_w, s.in_h, s.in_w};
}

// ---- the reference: the matrices, one tile at a time ----

// out[rows, cols] = a[rows, inner] b[inner, cols]
template <std::size_t rows, std::size_t inner, std::size_t cols>
void multiply(const float (&a)[rows][inner], const float (&b)[inner][cols], float (&out)[rows][cols]) {
  for (std::size_t i = 0; i < rows; ++i)
    for (std::size_t j = 0; j < cols; ++j) {
      float sum = 0;
      for (std::size_t k = 0; k < inner; ++k) sum += a[i][k] * b[k][j];
      out[i][j] = sum;
    }
}
template <std::size_t rows, std::size_t cols>
void transpose(const float (&a)[rows][cols], float (&out)[cols][rows]) {
  for (std::size_t i = 0; i < rows; ++i)
    for (std::size_t j = 0; j < cols; ++j) out[j][i] = a[i][j];
}

}  // namespace

void winograd_forward_reference(const Conv2dShape& s, const float* x, const float* w, const float* bias, float* y) {
  const Plan p = forward_plan(s);
  float B[kIn][kIn], GT[3][kIn], A[kIn][kOut];
  transpose(kBT, B), transpose(kG, GT), transpose(kAT, A);
  // [N, O, tiles_h, tiles_w] tiles, each summing [C] products U (.) V
  for (std::size_t n = 0; n < p.N; ++n)
    for (std::size_t o = 0; o < p.O; ++o)
      for (std::size_t th = 0; th < p.tiles_h(); ++th)
        for (std::size_t tw = 0; tw < p.tiles_w(); ++tw) {
          float m[kIn][kIn] = {};
          for (std::size_t c = 0; c < p.C; ++c) {
            float g[3][3], d[kIn][kIn], t[kIn][3], u[kIn][kIn], e[kIn][kIn], v[kIn][kIn];
            std::memcpy(g, w + (o * p.C + c) * 9, sizeof g);
            for (std::size_t i = 0; i < kIn; ++i)  // d: the 6 x 6 input tile, zero outside x
              for (std::size_t j = 0; j < kIn; ++j) {
                const Index ih = Index(kOut * th + i) - Index(p.PH), iw = Index(kOut * tw + j) - Index(p.PW);
                const bool inside = ih >= 0 && ih < Index(p.H) && iw >= 0 && iw < Index(p.W);
                d[i][j] = inside ? x[((n * p.C + c) * p.H + std::size_t(ih)) * p.W + std::size_t(iw)] : 0.f;
              }
            multiply(kG, g, t), multiply(t, GT, u);   // U = G g G^T
            multiply(kBT, d, e), multiply(e, B, v);   // V = B^T d B
            for (std::size_t i = 0; i < kIn; ++i)
              for (std::size_t j = 0; j < kIn; ++j) m[i][j] += u[i][j] * v[i][j];
          }
          float f[kOut][kIn], out[kOut][kOut];
          multiply(kAT, m, f), multiply(f, A, out);  // A^T m A
          for (std::size_t i = 0; i < kOut && kOut * th + i < p.OH; ++i)
            for (std::size_t j = 0; j < kOut && kOut * tw + j < p.OW; ++j)
              y[((n * p.O + o) * p.OH + kOut * th + i) * p.OW + kOut * tw + j] = out[i][j] + (bias ? bias[o] : 0.f);
        }
}

// ---- the fast path ----
namespace {

// The row loops below read and write distinct rows of one scratch array: tell GCC so, and it
// vectorizes them (clang needs no hint for these).
#if defined(__GNUC__) && !defined(__clang__)
#define AX_INDEPENDENT_ITERATIONS _Pragma("GCC ivdep")
#else
#define AX_INDEPENDENT_ITERATIONS
#endif

// The formulas the matrices stand for, on 6 (or 3) values a stride apart.
// (B^T d)[i] for i < 6: out[i * os] from d[k * ds]
inline void input_transform(const float* d, std::size_t ds, float* out, std::size_t os) {
  const float d0 = d[0], d1 = d[ds], d2 = d[2 * ds], d3 = d[3 * ds], d4 = d[4 * ds], d5 = d[5 * ds];
  out[0] = 4 * d0 - 5 * d2 + d4;
  out[os] = -4 * (d1 + d2) + (d3 + d4);
  out[2 * os] = 4 * (d1 - d2) + (d4 - d3);
  out[3 * os] = 2 * (d3 - d1) + (d4 - d2);
  out[4 * os] = 2 * (d1 - d3) + (d4 - d2);
  out[5 * os] = 4 * d1 - 5 * d3 + d5;
}
// (G g)[i] for i < 6, g three values
inline void weight_transform(float g0, float g1, float g2, float* out, std::size_t os) {
  out[0] = g0 * (1.f / 4);
  out[os] = (g0 + g1 + g2) * (-1.f / 6);
  out[2 * os] = (g0 - g1 + g2) * (-1.f / 6);
  out[3 * os] = g0 * (1.f / 24) + g1 * (1.f / 12) + g2 * (1.f / 6);
  out[4 * os] = g0 * (1.f / 24) - g1 * (1.f / 12) + g2 * (1.f / 6);
  out[5 * os] = g2;
}
// (A^T m)[i] for i < 4
inline void output_transform(const float* m, std::size_t ms, float* out, std::size_t os) {
  const float m0 = m[0], m1 = m[ms], m2 = m[2 * ms], m3 = m[3 * ms], m4 = m[4 * ms], m5 = m[5 * ms];
  const float a = m1 + m2, b = m1 - m2, c = m3 + m4, d = m3 - m4;
  out[0] = m0 + a + c;
  out[os] = b + 2 * d;
  out[2 * os] = a + 4 * c;
  out[3 * os] = b + 8 * d + m5;
}

// The per-thread rows the transforms work in.
float* thread_rows(std::size_t n) {
  thread_local Scratch<float> rows;
  return rows.get(n);
}

// Layouts. The GEMM for position xi reads U_xi[R, S] as rows 36 S apart, V_xi[C, tiles] and
// writes M_xi[O, tiles] as rows 36 tiles apart: U[R, 36, S], V[C, 36, tiles], M[O, 36, tiles].
// So what one weight row, one input channel or one output channel of a block needs is one
// contiguous stretch (the transforms touch 36 nearby rows, not 36 planes megabytes apart, whose
// power-of-two distances also collide in the cache).

// U[R, 36, S] = G g G^T for the R x S kernels g: forward R = O, S = C and g = w[o, c]; flipped
// (backward-data) R = C, S = O and g = w[o, c] turned by 180 degrees.
void transform_weights(const float* w, std::size_t O, std::size_t C, bool flipped, float* U, bool threads) {
  const std::size_t R = flipped ? C : O, S = flipped ? O : C;
  // the kernel (r, s) at w + r step + s stride; tap k of g is its tap 8 - k when flipped
  const std::size_t step = flipped ? 9 : C * 9, stride = flipped ? C * 9 : 9;
  const std::size_t tap[2][3] = {{0, 1, 2}, {8, 7, 6}};  // tap of g[0][j] for j < 3; rows 3 apart
  const std::size_t* t0 = tap[flipped];
  const Index down = flipped ? -3 : 3;  // from row i of g to row i + 1
  // [R] rows: t = G g [6, 3, S], then u = t G^T [6, 6, S], vector loops along S
#pragma omp parallel for schedule(static) if (threads)
  for (Index r = 0; r < Index(R); ++r) {
    float* t = thread_rows(kIn * 3 * S);
    float* u = U + std::size_t(r) * kPoints * S;
    const float* kernels = w + std::size_t(r) * step;
    for (std::size_t j = 0; j < 3; ++j) {  // column j of every g
      const float* g = kernels + t0[j];
      AX_INDEPENDENT_ITERATIONS
      for (std::size_t s = 0; s < S; ++s)
        weight_transform(g[s * stride], g[Index(s * stride) + down], g[Index(s * stride) + 2 * down], t + j * S + s, 3 * S);
    }
    for (std::size_t i = 0; i < kIn; ++i)  // row i of every t
      AX_INDEPENDENT_ITERATIONS
      for (std::size_t s = 0; s < S; ++s)
        weight_transform(t[(i * 3) * S + s], t[(i * 3 + 1) * S + s], t[(i * 3 + 2) * S + s], u + i * kIn * S + s, S);
  }
}

// V[c, xi, col0 + tw] for tw < tiles_w: the input transform of channel c of tile row `row`
// (sample, tile row). First B^T d along the image rows for the whole tile row (6 rows in, 6
// out, vector loops), then d B on each tile's 6 values (scalar, out to channel c's 36 rows).
void transform_input_row(const Plan& p, const float* in, std::size_t c, std::size_t row, float* V, std::size_t ldv,
                         std::size_t col0) {
  const std::size_t WP = p.padded_w(), TW = p.tiles_w(), n = row / p.tiles_h(), th = row % p.tiles_h();
  float* d = thread_rows(2 * kIn * WP);  // d[6][WP] the input rows, e[6][WP] = B^T d
  float* e = d + kIn * WP;
  // d[6][WP] <- input rows 4 th - PH + k, columns from -PW, zero outside
  for (std::size_t k = 0; k < kIn; ++k) {
    float* to = d + k * WP;
    const Index ih = Index(kOut * th + k) - Index(p.PH);
    std::fill(to, to + WP, 0.f);
    if (ih >= 0 && ih < Index(p.H)) {
      const float* from = in + ((n * p.C + c) * p.H + std::size_t(ih)) * p.W;
      std::copy(from, from + p.W, to + p.PW);
    }
  }
  // e[6][WP] = B^T d, column by column
  AX_INDEPENDENT_ITERATIONS
  for (std::size_t j = 0; j < WP; ++j) input_transform(d + j, WP, e + j, WP);
  // [TW tiles] x [6 rows of e]: the tile's 6 columns -> V's rows (i, 0..5) of channel c
  float* v = V + c * kPoints * ldv + col0;
  for (std::size_t tw = 0; tw < TW; ++tw)
    for (std::size_t i = 0; i < kIn; ++i) input_transform(e + i * WP + kOut * tw, 1, v + i * kIn * ldv + tw, ldv);
}

// out[n, o, 4 th .. 4 th + 4, :] from M[o, xi, col0 + tw]: A^T m A for the tile row's tiles, then
// (accumulate ? out : 0) + that + bias[o]. First m A on each tile (scalar, into rows f[6][4 TW]),
// then A^T f along the rows (vector loops).
void transform_output_row(const Plan& p, const float* M, std::size_t ldm, std::size_t col0, std::size_t o,
                          std::size_t row, const float* bias, bool accumulate, float* out) {
  const std::size_t TW = p.tiles_w(), width = kOut * TW, n = row / p.tiles_h(), th = row % p.tiles_h();
  float* f = thread_rows((kIn + kOut) * width);  // f[6][width] = m A, t[4][width] = A^T f
  float* t = f + kIn * width;
  const float* m = M + o * kPoints * ldm + col0;
  // [TW tiles] x [6 rows]: M's rows (i, 0..5) of channel o -> 4 columns of f's row i
  for (std::size_t tw = 0; tw < TW; ++tw)
    for (std::size_t i = 0; i < kIn; ++i) output_transform(m + i * kIn * ldm + tw, ldm, f + i * width + kOut * tw, 1);
  // t[4][width] = A^T f, column by column
  AX_INDEPENDENT_ITERATIONS
  for (std::size_t j = 0; j < width; ++j) output_transform(f + j, width, t + j, width);
  const float shift = bias ? bias[o] : 0.f;
  // [rows of the tile row inside OH] x [OW]; the bias last (conv.cpp's direct_tile says why)
  for (std::size_t i = 0; i < kOut && kOut * th + i < p.OH; ++i) {
    float* y = out + ((n * p.O + o) * p.OH + kOut * th + i) * p.OW;
    const float* r = t + i * width;
    if (accumulate)
      for (std::size_t j = 0; j < p.OW; ++j) y[j] = (y[j] + r[j]) + shift;
    else
      for (std::size_t j = 0; j < p.OW; ++j) y[j] = r[j] + shift;
  }
}

// Tile rows per block: V and M of a block within block_bytes, at least one row.
std::size_t rows_per_block(const Plan& p, std::size_t block_bytes) {
  const std::size_t per_row = kPoints * (p.C + p.O) * p.tiles_w() * sizeof(float);
  return std::clamp<std::size_t>(block_bytes / per_row, 1, p.tile_rows());
}

// The columns a row of V and M spans for `tiles` tiles. The GEMM of point xi reads rows 36 of
// them apart; when that is a multiple of 4 KiB (tiles a multiple of 256) every row falls in the
// same cache sets, and the kernel ran 5x slower (bench: 32 -> 64 channels at 14 x 14, batch 32):
// 16 more columns, never read, move the rows apart.
std::size_t row_columns(std::size_t tiles) { return tiles % 256 == 0 ? tiles + 16 : tiles; }

// The whole convolution given the transformed weights U[O, 36, C].
void winograd_conv(const Plan& p, const float* in, const float* U, const float* bias, float* out, bool accumulate,
                   bool threads, std::size_t block_bytes) {
  const std::size_t TW = p.tiles_w(), block_rows = rows_per_block(p, block_bytes);
  thread_local Scratch<float> block_scratch;
  const std::size_t widest = block_rows * TW + 16;  // row_columns of any block at most
  float* V = block_scratch.get(kPoints * (p.C + p.O) * widest);  // V[C, 36, ld], then M[O, 36, ld]
#pragma omp parallel if (threads)
  for (std::size_t r0 = 0; r0 < p.tile_rows(); r0 += block_rows) {
    const std::size_t rows = std::min(block_rows, p.tile_rows() - r0), tiles = rows * TW, ld = row_columns(tiles);
    float* M = V + kPoints * p.C * ld;
    // [C x rows] (channel, tile row) input transforms into V[C, 36, ld]
#pragma omp for schedule(static)
    for (Index item = 0; item < Index(p.C * rows); ++item) {
      const std::size_t c = std::size_t(item) / rows, r = std::size_t(item) % rows;
      transform_input_row(p, in, c, r0 + r, V, ld, r * TW);
    }
    // [36] GEMMs M_xi[O, tiles] = U_xi[O, C] V_xi[C, tiles], one thread each (gemm stays on the
    // thread inside a parallel region)
#pragma omp for schedule(static)
    for (Index xi = 0; xi < Index(kPoints); ++xi)
      gemm<float>(false, false, p.O, tiles, p.C, 1.f, U + std::size_t(xi) * p.C, kPoints * p.C,
                  V + std::size_t(xi) * ld, kPoints * ld, 0.f, M + std::size_t(xi) * ld, kPoints * ld);
    // [O x rows] (output channel, tile row) output transforms into out
#pragma omp for schedule(static)
    for (Index item = 0; item < Index(p.O * rows); ++item) {
      const std::size_t o = std::size_t(item) / rows, r = std::size_t(item) % rows;
      transform_output_row(p, M, ld, r * TW, o, r0 + r, bias, accumulate, out);
    }
  }
}

// Transformed weights, per calling thread.
float* weight_scratch(std::size_t O, std::size_t C) {
  thread_local Scratch<float> weights;
  return weights.get(kPoints * O * C);
}

bool worth_threads(const Conv2dShape& s) { return s.flops() / 2 >= double(kParallelMinMultiplyAdds); }

}  // namespace

namespace {
std::atomic<bool> winograd_default{true};
thread_local int direct_scopes = 0;  // DirectConvolutions alive on this thread
}  // namespace
void set_winograd(bool enabled) { winograd_default.store(enabled, std::memory_order_relaxed); }
bool winograd_enabled() { return direct_scopes == 0 && winograd_default.load(std::memory_order_relaxed); }
DirectConvolutions::DirectConvolutions() { ++direct_scopes; }
DirectConvolutions::~DirectConvolutions() { --direct_scopes; }

bool winograd_fits(const Conv2dShape& s) {
  return s.winograd && s.kernel_h == 3 && s.kernel_w == 3 && s.stride_h == 1 && s.stride_w == 1 &&
         s.dilation_h == 1 && s.dilation_w == 1 && s.groups == 1 && s.pad_h <= 2 && s.pad_w <= 2 &&
         s.in_channels >= kWinogradMinChannels && s.out_channels >= kWinogradMinChannels &&
         s.batch * ((s.out_h() + kOut - 1) / kOut) * ((s.out_w() + kOut - 1) / kOut) >= kWinogradMinTiles;
}

bool winograd_backward_fits(const Conv2dShape& s) {
  return winograd_fits(s) && (s.in_channels >= 2 * kWinogradMinChannels || s.in_channels >= s.out_channels);
}

void winograd_forward(const Conv2dShape& s, const float* x, const float* w, const float* bias, float* y,
                      bool accumulate, std::size_t block_bytes) {
  const Plan p = forward_plan(s);
  float* U = weight_scratch(p.O, p.C);
  transform_weights(w, s.out_channels, s.in_channels, false, U, worth_threads(s));
  winograd_conv(p, x, U, bias, y, accumulate, worth_threads(s), block_bytes);
}

void winograd_backward_data(const Conv2dShape& s, const float* gy, const float* w, float* gx, bool accumulate,
                            std::size_t block_bytes) {
  const Plan p = backward_plan(s);
  float* U = weight_scratch(p.O, p.C);
  transform_weights(w, s.out_channels, s.in_channels, true, U, worth_threads(s));
  winograd_conv(p, gy, U, nullptr, gx, accumulate, worth_threads(s), block_bytes);
}

}  // namespace ax::kernels
