// conv2d_backward_data on output gradients that are zero in most channels (a class logit's
// gradient through a classifier convolution): it runs on the nonzero channels alone, which must
// give the definition's gx, on 1 and 2 threads alike, and add nothing when every channel is zero.
#include "autodiff/kernels/conv.hpp"
#include "support.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

using namespace ax;
using ax::test::same_bits;
using ax::test::uniform;

namespace {

kernels::Conv2dShape conv_shape(std::size_t n, std::size_t c, std::size_t size, std::size_t o, std::size_t k,
                                std::size_t pad) {
  kernels::Conv2dShape s;
  s.batch = n, s.in_channels = c, s.in_h = s.in_w = size, s.out_channels = o;
  s.kernel_h = s.kernel_w = k, s.pad_h = s.pad_w = pad;
  s.chunk = kernels::conv2d_chunk(s, sizeof(double));
  return s;
}

// gy with random values in the channels `live` only, zero elsewhere
template <class T>
Tensor<T> sparse_gy(const kernels::Conv2dShape& s, const std::vector<std::size_t>& live, std::mt19937_64& rng) {
  Tensor<T> gy = uniform<T>({s.batch, s.out_channels, s.out_h(), s.out_w()}, -1, 1, rng);
  const std::size_t P = s.out_pixels();
  for (std::size_t n = 0; n < s.batch; ++n)
    for (std::size_t o = 0; o < s.out_channels; ++o)
      if (std::find(live.begin(), live.end(), o) == live.end())
        std::fill_n(gy.data() + (n * s.out_channels + o) * P, P, T(0));
  return gy;
}

}  // namespace

TEST_CASE("conv2d_backward_data on an output gradient zero in most channels matches the definition") {
  std::mt19937_64 rng(91);
  // a classifier's 1 x 1 (one live channel of 200), a padded 3 x 3 with two live channels of 40
  // (one of them live in one sample only), and a quarter of the channels live (the limit)
  struct Case { kernels::Conv2dShape s; std::vector<std::size_t> live; };
  const Case cases[] = {{conv_shape(5, 64, 3, 200, 1, 0), {3}},
                        {conv_shape(3, 24, 9, 40, 3, 1), {0, 39}},
                        {conv_shape(2, 16, 6, 16, 3, 1), {1, 5, 9, 15}}};
  for (const Case& c : cases) {
    const kernels::Conv2dShape& s = c.s;
    CAPTURE(s.out_channels);
    const Tensor<double> w = uniform<double>({s.out_channels, s.in_channels, s.kernel_h, s.kernel_w}, -1, 1, rng);
    Tensor<double> gy = sparse_gy<double>(s, c.live, rng);
    if (c.live.size() == 2)  // channel 39 zero in every sample but the last
      for (std::size_t n = 0; n + 1 < s.batch; ++n)
        std::fill_n(gy.data() + (n * s.out_channels + 39) * s.out_pixels(), s.out_pixels(), 0.0);
    const Tensor<double> start = uniform<double>({s.batch, s.in_channels, s.in_h, s.in_w}, -1, 1, rng);
    Tensor<double> gx = start, gx_ref = start;
    std::vector<double> workspace(kernels::conv2d_workspace(s));
    kernels::conv2d_backward_data(s, gy.data(), w.data(), gx.data(), true, workspace.data());
    kernels::conv2d_backward_data_reference(s, gy.data(), w.data(), gx_ref.data());
    double worst = 0;
    for (std::size_t i = 0; i < gx.size(); ++i) worst = std::fmax(worst, std::fabs(gx.data()[i] - gx_ref.data()[i]));
    CHECK(worst <= 1e-12);
  }
}

TEST_CASE("conv2d_backward_data adds nothing for an all-zero output gradient, and gives the same bits on 1 and 2 threads") {
  std::mt19937_64 rng(92);
  const kernels::Conv2dShape s = conv_shape(4, 32, 12, 64, 3, 1);
  const Tensor<float> w = uniform<float>({64, 32, 3, 3}, -1, 1, rng);
  const Tensor<float> start = uniform<float>({4, 32, 12, 12}, -1, 1, rng);
  std::vector<float> workspace(kernels::conv2d_workspace(s));
  Tensor<float> gx = start;
  kernels::conv2d_backward_data(s, zeros<float>({4, 64, 12, 12}).data(), w.data(), gx.data(), true, workspace.data());
  CHECK(same_bits(gx, start));
#ifdef _OPENMP
  const kernels::Conv2dShape big = conv_shape(10, 512, 3, 1000, 1, 0);  // past the threading thresholds
  const Tensor<float> wb = uniform<float>({1000, 512, 1, 1}, -1, 1, rng);
  const Tensor<float> gy = sparse_gy<float>(big, {3}, rng);
  std::vector<float> big_workspace(kernels::conv2d_workspace(big));
  Tensor<float> out[2] = {zeros<float>({10, 512, 3, 3}), zeros<float>({10, 512, 3, 3})};
  const int saved = omp_get_max_threads();
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    kernels::conv2d_backward_data(big, gy.data(), wb.data(), out[threads - 1].data(), true, big_workspace.data());
  }
  omp_set_num_threads(saved);
  CHECK(same_bits(out[0], out[1]));
#endif
}

TEST_CASE("conv2d_backward_data without accumulate writes every element of gx, on every route") {
  // gx poisoned with NaN, written (accumulate false), against gx = 0 added to (accumulate true):
  // the same bits, in float (Winograd among the routes) and double
  std::mt19937_64 rng(93);
  struct Case { kernels::Conv2dShape s; std::vector<std::size_t> live; };  // live empty: all channels
  std::vector<Case> cases = {{conv_shape(2, 4, 9, 6, 3, 1), {}},       // direct
                             {conv_shape(2, 32, 10, 8, 3, 1), {}},     // as a forward convolution
                             {conv_shape(3, 48, 12, 48, 3, 1), {}},    // Winograd in float
                             {conv_shape(2, 24, 5, 40, 1, 0), {}},     // 1 x 1, col2im
                             {conv_shape(3, 24, 9, 40, 3, 1), {0, 39}},  // the nonzero channels alone
                             {conv_shape(2, 16, 6, 16, 3, 1), {99}}};  // every channel zero
  kernels::Conv2dShape strided = conv_shape(2, 8, 11, 12, 3, 1);      // stride 2: col2im
  strided.stride_h = strided.stride_w = 2;
  kernels::Conv2dShape grouped = conv_shape(2, 8, 7, 8, 3, 1);        // 4 groups, stride 2
  grouped.groups = 4, grouped.stride_h = grouped.stride_w = 2;
  cases.push_back({strided, {}});
  cases.push_back({grouped, {}});
  auto check = [&](auto zero) {
    using T = decltype(zero);
    for (Case c : cases) {
      kernels::Conv2dShape& s = c.s;
      s.chunk = kernels::conv2d_chunk(s, sizeof(T));
      CAPTURE(s.in_channels);
      CAPTURE(s.out_channels);
      const Tensor<T> w = uniform<T>({s.out_channels, s.in_channels / s.groups, s.kernel_h, s.kernel_w}, -1, 1, rng);
      const Tensor<T> gy = c.live.empty() ? uniform<T>({s.batch, s.out_channels, s.out_h(), s.out_w()}, -1, 1, rng)
                                          : sparse_gy<T>(s, c.live, rng);
      const Shape x_shape{s.batch, s.in_channels, s.in_h, s.in_w};
      Tensor<T> added = zeros<T>(x_shape), written = full<T>(x_shape, std::numeric_limits<T>::quiet_NaN());
      std::vector<T> workspace(kernels::conv2d_workspace(s));
      kernels::conv2d_backward_data(s, gy.data(), w.data(), added.data(), true, workspace.data());
      kernels::conv2d_backward_data(s, gy.data(), w.data(), written.data(), false, workspace.data());
      CHECK(same_bits(added, written));
    }
  };
  check(0.0f);
  check(0.0);
}
