// gemm (packed, blocked, SIMD, threaded) against gemm_reference (the plain triple loop).
#include "../autodiff/kernels/gemm.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
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

}  // namespace

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
  const std::size_t M = 257, N = 263, K = 300;
  std::mt19937 rng(7);
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
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
      INFO("ta=" << ta << " tb=" << tb);
      CHECK(one != C0);  // the product was computed at all
      CHECK(std::memcmp(one.data(), two.data(), M * N * sizeof(float)) == 0);
    }
#else
  MESSAGE("built without OpenMP: nothing to compare");
#endif
}
