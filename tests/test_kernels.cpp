// The pooling and per-channel kernels against their references, on sizes that leave SIMD
// remainders (1, 3, 7, 33, rows longer than a tile), strides and paddings that leave ragged
// edges, many ties and NaNs for max-pooling; and bitwise equal on one thread or two.
#include "autodiff/kernels/channel.hpp"
#include "autodiff/kernels/pool.hpp"
#include "support.hpp"

#include <doctest/doctest.h>
#include <omp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

using namespace ax;

namespace {

// Inputs of three kinds: spread-out values, small integers (ties in almost every window), and
// small integers with NaNs (the NaN rule).
enum class Fill { spread, ties, nans };

template <class T>
std::vector<T> pool_input(std::size_t n, Fill fill, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-1, 1);
  std::uniform_int_distribution<int> small(0, 2), one_in(0, 6);
  std::vector<T> v(n);
  for (T& x : v) {
    x = fill == Fill::spread ? T(u(rng)) : T(small(rng));
    if (fill == Fill::nans && one_in(rng) == 0) x = std::numeric_limits<T>::quiet_NaN();
  }
  return v;
}

bool same_bits(const void* a, const void* b, std::size_t bytes) { return std::memcmp(a, b, bytes) == 0; }

struct Window {
  std::size_t kh, kw, sh, sw, ph, pw;
};

kernels::PoolAxis axis(std::size_t in, std::size_t k, std::size_t s, std::size_t p, bool ceil_mode) {
  kernels::PoolAxis a;
  a.in = in, a.kernel = k, a.stride = s, a.pad = p;
  a.out = std::size_t(kernels::pool_output_size(std::int64_t(in), std::int64_t(k), std::int64_t(s), std::int64_t(p), ceil_mode));
  return a;
}

template <class T>
void check_pool(const kernels::Pool2dShape& s, Fill fill, std::uint64_t seed) {
  const std::vector<T> x = pool_input<T>(s.planes * s.in_plane(), fill, seed);
  const std::size_t outs = s.planes * s.out_plane();
  std::vector<T> fast(outs), scalar(outs), reference(outs);
  std::vector<std::uint32_t> fast_at(outs), scalar_at(outs);
  kernels::maxpool2d_forward(s, x.data(), fast.data(), fast_at.data());
  kernels::maxpool2d_forward_scalar(s, x.data(), scalar.data(), scalar_at.data());
  kernels::maxpool2d_forward_reference(s, x.data(), reference.data());
  CHECK(same_bits(fast.data(), reference.data(), outs * sizeof(T)));
  CHECK(same_bits(fast.data(), scalar.data(), outs * sizeof(T)));
  CHECK(fast_at == scalar_at);
  // the gradient goes where the reference's first maximum is
  std::vector<T> gy = pool_input<T>(outs, Fill::spread, seed + 1), g_fast(x.size(), T(0)), g_reference(x.size(), T(0));
  kernels::maxpool2d_backward(s, fast_at.data(), gy.data(), g_fast.data());
  kernels::maxpool2d_backward_reference(s, x.data(), gy.data(), g_reference.data());
  CHECK(g_fast == g_reference);

  if (fill == Fill::nans) return;
  for (bool count_include_pad : {true, false}) {
    kernels::Pool2dShape a = s;
    a.h.count_include_pad = a.w.count_include_pad = count_include_pad;
    kernels::avgpool2d_forward(a, x.data(), fast.data());
    kernels::avgpool2d_forward_reference(a, x.data(), reference.data());
    kernels::avgpool2d_forward_scalar(a, x.data(), scalar.data());
    CHECK(same_bits(scalar.data(), reference.data(), outs * sizeof(T)));
    // rows first, then the rows' sums: the order differs from the reference's, |x| <= 2
    const double tolerance = 2.0 * double(s.h.kernel * s.w.kernel) * std::numeric_limits<T>::epsilon();
    double worst = 0;
    for (std::size_t i = 0; i < outs; ++i) worst = std::max(worst, std::abs(double(fast[i]) - double(reference[i])));
    CHECK(worst <= tolerance);
  }
}

}  // namespace

TEST_CASE("SIMD pooling equals the references on awkward sizes, ties and NaNs") {
  const std::vector<std::pair<std::size_t, std::size_t>> sizes = {{1, 1}, {3, 7}, {7, 33}, {33, 3}, {5, 300}, {9, 17}};
  const std::vector<Window> windows = {{1, 1, 1, 1, 0, 0}, {2, 2, 2, 2, 0, 0}, {3, 3, 2, 2, 1, 1}, {3, 3, 1, 1, 1, 1},
                                       {5, 5, 3, 3, 2, 2}, {2, 2, 1, 1, 1, 1}, {3, 3, 3, 3, 0, 0}, {3, 2, 2, 1, 1, 0},
                                       {2, 9, 1, 4, 0, 4}};
  std::uint64_t seed = 1;
  int cases = 0;
  for (const auto& [H, W] : sizes)
    for (const Window& w : windows)
      for (bool ceil_mode : {false, true}) {
        kernels::Pool2dShape s;
        s.planes = 3;
        s.h = axis(H, w.kh, w.sh, w.ph, ceil_mode);
        s.w = axis(W, w.kw, w.sw, w.pw, ceil_mode);
        if (H + 2 * w.ph < w.kh || W + 2 * w.pw < w.kw) continue;  // no window fits
        for (Fill fill : {Fill::spread, Fill::ties, Fill::nans}) {
          CAPTURE(H);
          CAPTURE(W);
          const std::string window = std::to_string(w.kh) + "x" + std::to_string(w.kw) + " stride " + std::to_string(w.sh) +
                                     "x" + std::to_string(w.sw) + " padding " + std::to_string(w.ph) + "x" + std::to_string(w.pw);
          CAPTURE(window);
          CAPTURE(ceil_mode);
          CAPTURE(int(fill));
          check_pool<float>(s, fill, ++seed);
          check_pool<double>(s, fill, ++seed);
          ++cases;
        }
      }
  CHECK(cases > 200);
}

TEST_CASE("pooling kernels give the same bits on one thread or two") {
  kernels::Pool2dShape s;
  s.planes = 64;
  s.h = axis(57, 3, 2, 1, true);
  s.w = axis(57, 3, 2, 1, true);
  const std::vector<float> x = pool_input<float>(s.planes * s.in_plane(), Fill::ties, 9);
  const std::size_t outs = s.planes * s.out_plane();
  std::vector<float> max1(outs), max2(outs), avg1(outs), avg2(outs);
  std::vector<std::uint32_t> at1(outs), at2(outs);
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  kernels::maxpool2d_forward(s, x.data(), max1.data(), at1.data());
  kernels::avgpool2d_forward(s, x.data(), avg1.data());
  omp_set_num_threads(2);
  kernels::maxpool2d_forward(s, x.data(), max2.data(), at2.data());
  kernels::avgpool2d_forward(s, x.data(), avg2.data());
  omp_set_num_threads(threads);
  CHECK(max1 == max2);
  CHECK(at1 == at2);
  CHECK(avg1 == avg2);
}

namespace {

template <class T>
void check_channels(const kernels::ChannelShape& s, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-2, 2);
  const auto values = [&](std::size_t n) {
    std::vector<T> v(n);
    for (T& x : v) x = T(u(rng));
    return v;
  };
  const std::size_t n = s.N * s.C * s.plane;
  const std::vector<T> x = values(n), g = values(n), center = values(s.C), scale = values(s.C), shift = values(s.C);
  const double eps = std::numeric_limits<T>::epsilon();
  for (bool accumulate : {false, true}) {
    std::vector<T> fast = values(n), reference = fast;
    kernels::channel_affine(s, x.data(), center.data(), scale.data(), shift.data(), fast.data(), accumulate);
    kernels::channel_affine_reference(s, x.data(), center.data(), scale.data(), shift.data(), reference.data(), accumulate);
    double worst = 0;  // one rounding apart: |terms| <= 4 * 2 + 2 + 2
    for (std::size_t i = 0; i < n; ++i) worst = std::max(worst, std::abs(double(fast[i]) - double(reference[i])));
    CHECK(worst <= 24 * eps);
  }
  const T* none = nullptr;
  std::vector<T> fast = values(n), reference = fast;
  kernels::channel_affine(s, x.data(), none, scale.data(), none, fast.data(), false);
  kernels::channel_affine_reference(s, x.data(), none, scale.data(), none, reference.data(), false);
  CHECK(fast == reference);  // a product alone is rounded once either way

  std::vector<T> sg(s.C), sgd(s.C), rg(s.C), rgd(s.C);
  kernels::channel_sums(s, g.data(), x.data(), center.data(), sg.data(), sgd.data());
  kernels::channel_sums_reference(s, g.data(), x.data(), center.data(), rg.data(), rgd.data());
  const double terms = double(s.N * s.plane);
  for (std::size_t c = 0; c < s.C; ++c) {
    CHECK(std::abs(double(sg[c]) - double(rg[c])) <= 2 * terms * 2 * eps);
    CHECK(std::abs(double(sgd[c]) - double(rgd[c])) <= 2 * terms * 8 * eps);
  }
}

}  // namespace

TEST_CASE("per-channel kernels match their references on awkward sizes") {
  std::uint64_t seed = 100;
  for (std::size_t N : {1, 3})
    for (std::size_t C : {1, 5})
      for (std::size_t plane : {1, 3, 7, 9, 33, 49, 3136}) {
        CAPTURE(N);
        CAPTURE(C);
        CAPTURE(plane);
        check_channels<float>({N, C, plane}, ++seed);
        check_channels<double>({N, C, plane}, ++seed);
      }
}

TEST_CASE("per-channel kernels give the same bits on one thread or two") {
  const kernels::ChannelShape s{4, 64, 3137};
  std::mt19937_64 rng(3);
  const Tensor<float> x = test::uniform<float>({s.N * s.C * s.plane}, -1, 1, rng);
  const Tensor<float> scale = test::uniform<float>({s.C}, -1, 1, rng), center = test::uniform<float>({s.C}, -1, 1, rng);
  std::vector<float> y1(x.size()), y2(x.size()), sum1(s.C), sum2(s.C), sumd1(s.C), sumd2(s.C);
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  kernels::channel_affine(s, x.data(), center.data(), scale.data(), scale.data(), y1.data(), false);
  kernels::channel_sums(s, x.data(), x.data(), center.data(), sum1.data(), sumd1.data());
  omp_set_num_threads(2);
  kernels::channel_affine(s, x.data(), center.data(), scale.data(), scale.data(), y2.data(), false);
  kernels::channel_sums(s, x.data(), x.data(), center.data(), sum2.data(), sumd2.data());
  omp_set_num_threads(threads);
  CHECK(y1 == y2);
  CHECK(sum1 == sum2);
  CHECK(sumd1 == sumd2);
}

TEST_CASE("max-pool's 2 x 2 stride-2 kernel: taken for whole windows only, the scalar kernel's bits on LeNet planes") {
  // odd sides leave a last row or column no window reads; ceil mode clips a last window
  CHECK(kernels::maxpool2d_whole_2x2<float>({1, axis(28, 2, 2, 0, false), axis(27, 2, 2, 0, false)}));
  CHECK_FALSE(kernels::maxpool2d_whole_2x2<float>({1, axis(28, 2, 2, 0, false), axis(27, 2, 2, 0, true)}));
  CHECK_FALSE(kernels::maxpool2d_whole_2x2<float>({1, axis(28, 2, 2, 1, false), axis(28, 2, 2, 1, false)}));
  CHECK_FALSE(kernels::maxpool2d_whole_2x2<float>({1, axis(28, 2, 1, 0, false), axis(28, 2, 1, 0, false)}));
  for (Fill fill : {Fill::spread, Fill::ties, Fill::nans}) {
    CAPTURE(int(fill));
    kernels::Pool2dShape s{64 * 32, axis(28, 2, 2, 0, false), axis(29, 2, 2, 0, false)};  // a batch: both threads
    const std::vector<float> x = pool_input<float>(s.planes * s.in_plane(), fill, 21);
    const std::size_t outs = s.planes * s.out_plane();
    std::vector<float> fast(outs), scalar(outs);
    std::vector<std::uint32_t> fast_at(outs), scalar_at(outs);
    kernels::maxpool2d_forward_2x2(s, x.data(), fast.data(), fast_at.data());
    kernels::maxpool2d_forward_scalar(s, x.data(), scalar.data(), scalar_at.data());
    CHECK(same_bits(fast.data(), scalar.data(), outs * sizeof(float)));
    CHECK(fast_at == scalar_at);
  }
}

namespace {

// `count` values that end where an unreadable, unwritable page begins: a kernel that reads or
// writes one element past them stops the test with a fault.
template <class T>
class GuardedBuffer {
 public:
  explicit GuardedBuffer(std::size_t count) : count_(count) {
    const std::size_t page = std::size_t(sysconf(_SC_PAGESIZE));
    data_pages_ = (count * sizeof(T) + page - 1) / page * page;
    bytes_ = data_pages_ + page;
    void* base = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(base != MAP_FAILED);
    base_ = static_cast<char*>(base);
    REQUIRE(mprotect(base_ + data_pages_, page, PROT_NONE) == 0);
  }
  GuardedBuffer(const GuardedBuffer&) = delete;
  GuardedBuffer& operator=(const GuardedBuffer&) = delete;
  ~GuardedBuffer() { munmap(base_, bytes_); }
  T* data() { return reinterpret_cast<T*>(base_ + data_pages_) - count_; }

 private:
  std::size_t count_, data_pages_ = 0, bytes_ = 0;
  char* base_ = nullptr;
};

// Max-pool's fast forward on `x` (copied to the end of a guarded buffer, its outputs written to
// the ends of two more) against the scalar kernel (values and positions) and the reference
// (values), bit for bit, on `threads` threads; the positions are returned.
std::vector<std::uint32_t> check_maxpool_guarded(const kernels::Pool2dShape& s, const std::vector<float>& x, int threads) {
  const std::size_t outs = s.planes * s.out_plane();
  GuardedBuffer<float> in(x.size()), out(outs);
  GuardedBuffer<std::uint32_t> out_at(outs);
  std::copy(x.begin(), x.end(), in.data());
  std::vector<float> scalar(outs), reference(outs);
  std::vector<std::uint32_t> scalar_at(outs);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(threads);
  kernels::maxpool2d_forward(s, in.data(), out.data(), out_at.data());
  omp_set_num_threads(saved);
  kernels::maxpool2d_forward_scalar(s, x.data(), scalar.data(), scalar_at.data());
  kernels::maxpool2d_forward_reference(s, x.data(), reference.data());
  CHECK(same_bits(out.data(), reference.data(), outs * sizeof(float)));
  CHECK(same_bits(out.data(), scalar.data(), outs * sizeof(float)));
  const std::vector<std::uint32_t> at(out_at.data(), out_at.data() + outs);
  CHECK(at == scalar_at);
  return at;
}

// Values from {+0, -0, -inf, 1}: ties of zeros of either sign (the first one's bits are kept),
// and windows of -inf alone (the first position is kept).
std::vector<float> zeros_and_infinities(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> pick(0, 7);
  std::vector<float> v(n);
  for (float& x : v) {
    const int r = pick(rng);
    x = r < 3 ? 0.0f : r < 6 ? -0.0f : r < 7 ? -std::numeric_limits<float>::infinity() : 1.0f;
  }
  return v;
}

}  // namespace

TEST_CASE("max-pool's 3 x 3 stride-2 kernel: SqueezeNet's planes and every width to 40, ties, signed zeros, NaN, "
          "nothing read or written past the planes") {
  // SqueezeNet 1.1's three max-pools at 64 x 64 (ceil_mode, no padding), a batch's worth of
  // planes: both threads, rows of 15, 7 and 3 outputs (a whole vector and a masked one)
  for (std::size_t side : {31, 15, 7}) {
    const kernels::Pool2dShape s{96, axis(side, 3, 2, 0, true), axis(side, 3, 2, 0, true)};
    CAPTURE(side);
    for (Fill fill : {Fill::spread, Fill::ties, Fill::nans}) {
      CAPTURE(int(fill));
      const std::vector<float> x = pool_input<float>(s.planes * s.in_plane(), fill, 31 + side);
      CHECK(check_maxpool_guarded(s, x, 1) == check_maxpool_guarded(s, x, 2));
    }
    const std::vector<float> z = zeros_and_infinities(s.planes * s.in_plane(), side);
    CHECK(check_maxpool_guarded(s, z, 1) == check_maxpool_guarded(s, z, 2));
    // a NaN in one plane only, at its first, middle and last elements (odd row and column: in
    // one window each): those windows take the NaN, the planes beside it keep their maxima
    std::vector<float> one = pool_input<float>(s.planes * s.in_plane(), Fill::spread, 7);
    const std::size_t middle = s.in_plane() / 2, middle_window = (side / 2 - 1) / 2 * (s.w.out + 1);
    for (std::size_t at : {std::size_t(0), middle, s.in_plane() - 1}) one[5 * s.in_plane() + at] = std::nanf("");
    const std::vector<std::uint32_t> positions = check_maxpool_guarded(s, one, 2);
    CHECK(std::isnan(one[5 * s.in_plane() + middle]));
    CHECK(positions[5 * s.out_plane()] == 0);
    CHECK(positions[5 * s.out_plane() + middle_window] == middle);
    CHECK(positions[6 * s.out_plane() - 1] == s.in_plane() - 1);
  }
  // every width and height from 1 to 40 on a few planes, padded or not, ceil_mode or not: windows
  // clipped at either end, rows of whole vectors, of a whole vector and a last overlapping one, and
  // of fewer windows than a vector
  std::uint64_t seed = 500;
  for (std::size_t h : {1, 2, 3, 4, 7, 40})
    for (std::size_t w = 1; w <= 40; ++w)
      for (std::size_t pad : {0, 1})
        for (bool ceil_mode : {false, true}) {
          if (h + 2 * pad < 3 || w + 2 * pad < 3) continue;
          const kernels::Pool2dShape s{3, axis(h, 3, 2, pad, ceil_mode), axis(w, 3, 2, pad, ceil_mode)};
          CAPTURE(h);
          CAPTURE(w);
          CAPTURE(pad);
          CAPTURE(ceil_mode);
          for (Fill fill : {Fill::spread, Fill::ties, Fill::nans}) {
            CAPTURE(int(fill));
            check_maxpool_guarded(s, pool_input<float>(s.planes * s.in_plane(), fill, ++seed), 1);
          }
          check_maxpool_guarded(s, zeros_and_infinities(s.planes * s.in_plane(), ++seed), 1);
        }
}

TEST_CASE("global average pooling (adaptive to 1 x 1): the scalar kernel's and the references' bits, on 1 and 2 threads") {
  // plane counts around the kernel's blocks of 8, SqueezeNet's 3 x 3 planes and ResNet's 7 x 7,
  // values with signed zeros, infinities and NaNs, and rows of +-max whose sum overflows
  for (std::size_t planes : {1, 7, 8, 13, 4100})
    for (const auto& [h, w] : std::vector<std::pair<std::size_t, std::size_t>>{{1, 1}, {3, 3}, {2, 5}, {7, 7}}) {
      kernels::Pool2dShape s;
      s.planes = planes;
      s.h.in = h, s.w.in = w, s.h.adaptive = s.w.adaptive = true;
      for (Fill fill : {Fill::spread, Fill::nans}) {
        CAPTURE(planes);
        CAPTURE(h);
        CAPTURE(w);
        CAPTURE(int(fill));
        std::vector<float> x = pool_input<float>(planes * h * w, fill, planes + h);
        if (planes > 1) std::fill(x.begin(), x.begin() + std::ptrdiff_t(h * w), -0.0f);  // a plane of -0: +0
        if (planes > 8) x[8 * h * w] = std::numeric_limits<float>::infinity();
        const bool overflow = fill == Fill::spread && planes > 12 && h * w > 1;  // plane 12's sum
        if (overflow) x[12 * h * w] = x[12 * h * w + 1] = std::numeric_limits<float>::max();
        std::vector<float> fast(planes), two(planes), scalar(planes), reference(planes);
        const int threads = omp_get_max_threads();
        omp_set_num_threads(1);
        kernels::avgpool2d_forward(s, x.data(), fast.data());
        omp_set_num_threads(2);
        kernels::avgpool2d_forward(s, x.data(), two.data());
        omp_set_num_threads(threads);
        kernels::avgpool2d_forward_scalar(s, x.data(), scalar.data());
        kernels::avgpool2d_forward_reference(s, x.data(), reference.data());
        CHECK(same_bits(fast.data(), two.data(), planes * sizeof(float)));
        CHECK(same_bits(fast.data(), reference.data(), planes * sizeof(float)) == !overflow);
        if (overflow) CHECK(std::isfinite(fast[12]));  // summed again in long double
        for (std::size_t p = 0; p < planes; ++p)
          if (!overflow || p != 12) CHECK(same_bits(&fast[p], &scalar[p], sizeof(float)));
        if (planes > 1) CHECK(!std::signbit(fast[0]));
        // backward: each plane's values get gy / (h w), added to what is there
        const std::vector<float> gy = pool_input<float>(planes, Fill::spread, 3);
        std::vector<float> g = pool_input<float>(planes * h * w, Fill::spread, 4), g_reference = g;
        kernels::avgpool2d_backward(s, gy.data(), g.data());
        kernels::avgpool2d_backward_reference(s, gy.data(), g_reference.data());
        CHECK(same_bits(g.data(), g_reference.data(), g.size() * sizeof(float)));
      }
    }
}
