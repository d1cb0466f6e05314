// gemm (packed, blocked, SIMD, threaded) against gemm_reference (the plain triple loop).
#include "../autodiff/kernels/gemm.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

using ax::kernels::gemm;
using ax::kernels::gemm_reference;

template <class T>
std::vector<T> random_vector(std::size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<T> dist(T(-1), T(1));
  std::vector<T> v(n);
  for (T& x : v) x = dist(rng);
  return v;
}

// One comparison case: op(A) is M x K, op(B) is K x N, each matrix stored with `pad` spare
// columns per row so that lda, ldb, ldc exceed the row length.
struct Case {
  bool trans_a, trans_b;
  std::size_t M, N, K;
  double alpha, beta;
  bool nan_in_c;  // C starts as NaN (only meaningful with beta == 0)
  std::size_t pad;
};

std::string describe(const Case& c) {
  return "M=" + std::to_string(c.M) + " N=" + std::to_string(c.N) + " K=" + std::to_string(c.K) +
         " ta=" + std::to_string(c.trans_a) + " tb=" + std::to_string(c.trans_b) +
         " alpha=" + std::to_string(c.alpha) + " beta=" + std::to_string(c.beta) +
         " nan=" + std::to_string(c.nan_in_c) + " pad=" + std::to_string(c.pad);
}

// Largest |gemm - reference| over C, divided by the error a sum of K products may carry:
// K * eps * max|A| * max|B| * |alpha|, plus eps * |beta| * max|C0| for the beta term.
// Both results are within K * eps * (...) of the exact one, so a ratio above 2 is a bug.
template <class T>
double error_ratio(const Case& c, std::mt19937& rng) {
  const std::size_t a_rows = c.trans_a ? c.K : c.M, a_cols = c.trans_a ? c.M : c.K;
  const std::size_t b_rows = c.trans_b ? c.N : c.K, b_cols = c.trans_b ? c.K : c.N;
  const std::size_t lda = a_cols + c.pad, ldb = b_cols + c.pad, ldc = c.N + c.pad;
  const std::vector<T> A = random_vector<T>(a_rows * lda, rng);
  const std::vector<T> B = random_vector<T>(b_rows * ldb, rng);
  std::vector<T> C0 = random_vector<T>(c.M * ldc, rng);
  if (c.nan_in_c) std::fill(C0.begin(), C0.end(), std::numeric_limits<T>::quiet_NaN());
  std::vector<T> fast = C0, ref = C0;

  const T alpha = T(c.alpha), beta = T(c.beta);
  gemm<T>(c.trans_a, c.trans_b, c.M, c.N, c.K, alpha, A.data(), lda, B.data(), ldb, beta,
          fast.data(), ldc);
  gemm_reference<T>(c.trans_a, c.trans_b, c.M, c.N, c.K, alpha, A.data(), lda, B.data(), ldb,
                    beta, ref.data(), ldc);

  auto max_abs = [](const std::vector<T>& v) {
    double m = 0;
    for (T x : v) m = std::max(m, double(std::abs(x)));
    return m;
  };
  const double eps = std::numeric_limits<T>::epsilon();
  const double scale = double(std::max<std::size_t>(c.K, 1)) * eps * max_abs(A) * max_abs(B) *
                           std::abs(c.alpha) +
                       eps * std::abs(c.beta) * (c.nan_in_c ? 0.0 : max_abs(C0));
  double worst = 0;
  for (std::size_t i = 0; i < c.M; ++i)
    for (std::size_t j = 0; j < ldc; ++j) {
      const T f = fast[i * ldc + j], r = ref[i * ldc + j];
      if (j >= c.N) {  // padding past the row must be untouched (NaN stays NaN)
        if (std::memcmp(&f, &C0[i * ldc + j], sizeof(T)) != 0) return INFINITY;
        continue;
      }
      if (std::isnan(f) || std::isnan(r)) return INFINITY;  // no NaN may leak from C or padding
      worst = std::max(worst, std::abs(double(f) - double(r)) / (scale > 0 ? scale : 1));
    }
  return worst;
}

template <class T>
void check_sizes(const std::vector<std::size_t>& sizes, std::size_t pad) {
  std::mt19937 rng(1234);
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (std::size_t M : sizes)
        for (std::size_t N : sizes)
          for (std::size_t K : sizes) {
            const Case c{ta, tb, M, N, K, 0.75, 0.5, false, pad};
            INFO(describe(c));
            CHECK(error_ratio<T>(c, rng) <= 2.0);
          }
}

template <class T>
void check_alpha_beta() {
  std::mt19937 rng(99);
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (double alpha : {1.0, -1.5})
        for (double beta : {0.0, 1.0, 0.5})
          for (bool nan_in_c : {false, true}) {
            if (nan_in_c && beta != 0.0) continue;
            for (std::size_t n : {1, 7, 17, 65, 300}) {
              const Case c{ta, tb, n, 300 - n + 1, 129, alpha, beta, nan_in_c, 5};
              INFO(describe(c));
              CHECK(error_ratio<T>(c, rng) <= 2.0);
            }
          }
}

// Every width of a ragged right edge, 0 to NR - 1 columns past whole panels, against the
// reference: row counts around the register tile's height (6 or 8) and pairs of it, all
// transposes, alpha and beta variants, K past one KC block (256), where later blocks add to C.
template <class T>
void check_edge_widths() {
  const std::size_t NR = ax::kernels::gemm_panel_width<T>();
  std::mt19937 rng(2024);
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (std::size_t M : {1, 5, 8, 13, 16, 24, 37})
        for (std::size_t r = 0; r < NR; ++r)
          for (const auto& [alpha, beta, nan_in_c] : {std::tuple{1.0, 0.0, true}, std::tuple{-1.5, 1.0, false},
                                                       std::tuple{0.75, 0.5, false}}) {
            const std::size_t N = r == 0 ? NR : (r % 2 ? NR : 0) + r;  // odd widths past a whole panel too
            const std::size_t K = M == 24 ? 300 : 37;
            const Case c{ta, tb, M, N, K, alpha, beta, nan_in_c, 2};
            INFO(describe(c));
            CHECK(error_ratio<T>(c, rng) <= 2.0);
          }
}

// An element of C gets the same fma chain whichever tile it falls in (a whole one, a ragged
// edge, a narrow one): C[m, n] from a GEMM on the first m rows and n columns equals, bit for
// bit, the top-left of C[M, N] from one on all of them. N is three whole panels and M a multiple
// of every register-tile height, so the large product has no ragged tile at all.
template <class T>
void check_edges_bitwise() {
  const std::size_t NR = ax::kernels::gemm_panel_width<T>(), M = 48, N = 3 * NR, K = 300;
  std::mt19937 rng(31);
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (double beta : {0.0, 0.5}) {
        const std::size_t lda = ta ? M : K, ldb = tb ? K : N;
        const std::vector<T> A = random_vector<T>(M * K, rng), B = random_vector<T>(K * N, rng);
        const std::vector<T> C0 = random_vector<T>(M * N, rng);
        std::vector<T> whole = C0;
        gemm<T>(ta, tb, M, N, K, T(-1.25), A.data(), lda, B.data(), ldb, T(beta), whole.data(), N);
        for (std::size_t m : {M, std::size_t(1), std::size_t(7), std::size_t(17), std::size_t(40)})
          for (std::size_t n = 1; n <= N; ++n) {
            std::vector<T> part = C0;  // the same leading dimensions: op(A)'s first m rows, op(B)'s first n columns
            gemm<T>(ta, tb, m, n, K, T(-1.25), A.data(), lda, B.data(), ldb, T(beta), part.data(), N);
            bool same = true;
            // [M][N]: the computed m x n corner equals `whole`'s, the rest is untouched
            for (std::size_t i = 0; i < M && same; ++i)
              for (std::size_t j = 0; j < N && same; ++j) {
                const T want = i < m && j < n ? whole[i * N + j] : C0[i * N + j];
                same = std::memcmp(&part[i * N + j], &want, sizeof(T)) == 0;
              }
            INFO("ta=" << ta << " tb=" << tb << " beta=" << beta << " m=" << m << " n=" << n);
            CHECK(same);
          }
      }
}

}  // namespace

TEST_CASE("gemm matches the reference at every ragged edge width, all transposes (float)") {
  check_edge_widths<float>();
}

TEST_CASE("gemm matches the reference at every ragged edge width, all transposes (double)") {
  check_edge_widths<double>();
}

TEST_CASE("gemm gives an element the same bits in an edge tile as in a whole one (float)") {
  check_edges_bitwise<float>();
}

TEST_CASE("gemm gives an element the same bits in an edge tile as in a whole one (double)") {
  check_edges_bitwise<double>();
}

TEST_CASE("gemm matches the reference on awkward sizes, all transposes (float)") {
  check_sizes<float>({1, 3, 7, 16, 17, 33, 65}, 0);
  check_sizes<float>({1, 17, 129, 300}, 3);
}

TEST_CASE("gemm matches the reference on awkward sizes, all transposes (double)") {
  check_sizes<double>({1, 3, 7, 16, 17, 33, 65}, 0);
  check_sizes<double>({1, 17, 129, 300}, 3);
}

TEST_CASE("gemm alpha and beta, including beta = 0 over NaN (float)") { check_alpha_beta<float>(); }
TEST_CASE("gemm alpha and beta, including beta = 0 over NaN (double)") { check_alpha_beta<double>(); }

TEST_CASE("gemm with K = 0 or alpha = 0 scales C by beta") {
  std::vector<float> A(12, std::numeric_limits<float>::quiet_NaN()), B = A;
  std::vector<float> C = {1, 2, 3, 4};
  gemm<float>(false, false, 2, 2, 0, 1.f, A.data(), 1, B.data(), 2, 0.5f, C.data(), 2);
  CHECK(C == std::vector<float>{0.5f, 1.f, 1.5f, 2.f});
  gemm<float>(false, false, 2, 2, 3, 0.f, A.data(), 3, B.data(), 2, 2.f, C.data(), 2);
  CHECK(C == std::vector<float>{1, 2, 3, 4});
  C.assign(4, std::numeric_limits<float>::quiet_NaN());
  gemm<float>(false, false, 2, 2, 0, 1.f, A.data(), 1, B.data(), 2, 0.f, C.data(), 2);
  CHECK(C == std::vector<float>{0, 0, 0, 0});
}

TEST_CASE("gemm is bitwise identical on 1 and 2 threads") {
#ifdef _OPENMP
  std::mt19937 rng(7);
  // a ragged tile at both edges; a narrow ragged panel (40 = 32 + 8 on AVX-512) over 65 slivers
  // of 8 rows, which two threads split unevenly
  struct Shape {
    std::size_t M, N, K;
  };
  for (const Shape& s : {Shape{257, 263, 300}, Shape{520, 40, 300}})
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        const std::size_t M = s.M, N = s.N, K = s.K;
        const std::vector<float> A = random_vector<float>(M * K, rng);
        const std::vector<float> B = random_vector<float>(K * N, rng);
        const std::vector<float> C0 = random_vector<float>(M * N, rng);
        std::vector<float> one = C0, two = C0;
        const std::size_t lda = ta ? M : K, ldb = tb ? K : N;
        const int saved = omp_get_max_threads();
        omp_set_num_threads(1);
        gemm<float>(ta, tb, M, N, K, 0.5f, A.data(), lda, B.data(), ldb, 0.25f, one.data(), N);
        omp_set_num_threads(2);
        gemm<float>(ta, tb, M, N, K, 0.5f, A.data(), lda, B.data(), ldb, 0.25f, two.data(), N);
        omp_set_num_threads(saved);
        INFO("M=" << M << " N=" << N << " ta=" << ta << " tb=" << tb);
        CHECK(one != C0);  // the product was computed at all
        CHECK(std::memcmp(one.data(), two.data(), M * N * sizeof(float)) == 0);
      }
#else
  MESSAGE("built without OpenMP: nothing to compare");
#endif
}
