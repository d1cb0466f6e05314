// The LeNet of the slow float64 exact-IG tests (test_axioms.cpp, test_exact.cpp).
//
// Normally nn::lenet28. In the sanitizer build (tools/sanitize.sh defines
// AXIOMATIC_SMALL_TEST_NETWORKS through tests/CMakeLists.txt), where these tests would run 5 to 10
// times slower, a LeNet with the same layers and 28x28 input but a quarter of the channels (4 and
// 8) and 32 hidden units: the same ops, kinks and pool windows, about a quarter of the pieces.
#pragma once

#include "nn/zoo.hpp"

#include <cstdint>

namespace ax::test {

inline nn::ModelSpec exact_lenet(std::uint64_t seed) {
#ifdef AXIOMATIC_SMALL_TEST_NETWORKS
  return nn::lenet28(seed, 4);  // a quarter of the channels
#else
  return nn::lenet28(seed);
#endif
}

}  // namespace ax::test
