// Fuzz target: a model file's bytes -> nn::parse_model -> the graph recorded on a Tape<float>
// (nn::Network, which computes every node once) -> one replayed forward pass with a new input.
//
// Two forms of input, so that mutations of the header's JSON are not all lost to its length field:
//   - the file as it is (the first 8 bytes: the header's length), read as given;
//   - an input starting with '{': the header's JSON, a 0 byte, then the tensor data. The harness
//     writes the length in front. make_seeds writes seeds of both forms.
// Seeds: examples/models and the toy models of examples/toys written as model files.
#include "fuzz_support.hpp"
#include "nn/graph.hpp"
#include "nn/model_file.hpp"

#include <cstring>
#include <string>

namespace {

// The file's bytes for an input of the second form; the input itself otherwise.
std::string model_file_bytes(const std::string& input) {
  if (input.empty() || input[0] != '{') return input;
  const std::size_t end = input.find('\0');
  const std::string header = input.substr(0, end);
  const std::string data = end == std::string::npos ? std::string() : input.substr(end + 1);
  std::string bytes(8, '\0');
  std::uint64_t length = header.size();
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((length >> (8 * i)) & 0xff);  // little-endian
  return bytes + header + data;
}

void run(const std::string& bytes) {
  const ax::nn::ModelSpec model = ax::nn::parse_model(bytes, "fuzz.safetensors");
  ax::Tape<float> tape;
  ax::nn::Network<float> network(model, tape, {});
  // Replay on an input other than the zeros recorded: every node is evaluated again.
  ax::Tensor<float> x = tape.value(network.input());
  for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(i % 7) / 7.0f;
  tape.set_value(network.input(), x);
  tape.forward();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    run(model_file_bytes(std::string(reinterpret_cast<const char*>(data), size)));
  } catch (const ax::Error&) {
    // refused with one line: what bad input should get
  }
  return 0;
}
