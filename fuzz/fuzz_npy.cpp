// Fuzz target: a .npy file -> attr::read_npy<float> and <double>, and attr::read_array against a
// 1x28x28 input shape (the shipped model's). Seeds: small .npy files (tools/fuzz.sh writes them).
#include "attribution/io.hpp"
#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string& path = ax::fuzz::write_scratch(data, size, ".npy");
  try {
    ax::attr::read_npy<float>(path);
  } catch (const ax::Error&) {
  }
  try {
    ax::attr::read_npy<double>(path);
  } catch (const ax::Error&) {
  }
  try {
    ax::attr::read_array<float>(path, ax::Shape{1, 28, 28});
  } catch (const ax::Error&) {
  }
  return 0;
}
