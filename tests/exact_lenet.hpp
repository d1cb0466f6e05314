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
  nn::SpecBuilder b("input", {1, 28, 28}, seed);
  b.set_range(0.0, 1.0);
  std::string x = b.conv2d("conv1", "input", 1, 4, 3);
  x = b.maxpool2d("pool1", b.relu("relu1", x), 2, 2);
  x = b.conv2d("conv2", x, 4, 8, 3);
  x = b.maxpool2d("pool2", b.relu("relu2", x), 2, 2);
  x = b.relu("relu3", b.linear("fc1", b.flatten("flat", x), 8 * 5 * 5, 32));
  return b.finish(b.linear("fc2", x, 32, 10));
#else
  return nn::lenet28(seed);
#endif
}

}  // namespace ax::test
