// Fuzz target: a PNG file -> attr::read_png, and attr::read_array against a 1x28x28 input shape.
// Seeds: examples/images.
#include "attribution/io.hpp"
#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string& path = ax::fuzz::write_scratch(data, size, ".png");
  try {
    ax::attr::read_png(path);
  } catch (const ax::Error&) {
  }
  try {
    ax::attr::read_array<float>(path, ax::Shape{1, 28, 28});
  } catch (const ax::Error&) {
  }
  return 0;
}
