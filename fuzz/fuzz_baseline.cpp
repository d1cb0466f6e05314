// Fuzz target: a --baseline SPEC -> attr::parse_baseline, then the baselines it names for a
// 1x28x28 input in the range [0, 1] (two draws for the random kinds). Kinds that read a file
// (file:, data:, mean:PATH) are parsed only: the file readers have targets of their own.
// Seeds: tools/fuzz.sh writes one file per kind.
#include "attribution/baseline.hpp"
#include "fuzz_support.hpp"

#include <string>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string spec(reinterpret_cast<const char*>(data), size);
  try {
    const ax::attr::BaselineSpec baseline = ax::attr::parse_baseline(spec);
    if (!baseline.path.empty()) return 0;
    ax::Tensor<double> x = ax::zeros<double>({1, 28, 28});
    for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = static_cast<double>(i % 11) / 11.0;
    const ax::attr::Range range = std::make_pair(0.0, 1.0);
    ax::attr::Random random(1);
    ax::attr::make_baselines(baseline, x, range, 2, random);
  } catch (const ax::Error&) {
  }
  return 0;
}
