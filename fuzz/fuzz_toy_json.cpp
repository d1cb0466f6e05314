// Fuzz target: a toy model (one JSON file, graph plus inline parameters) -> nn::read_toy_json ->
// the graph recorded on a Tape<float> -> one replayed forward pass. Seeds: examples/toys.
#include "fuzz_support.hpp"
#include "nn/graph.hpp"
#include "nn/model_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const ax::nn::ModelSpec model = ax::nn::read_toy_json(ax::fuzz::write_scratch(data, size, ".json"));
    ax::Tape<float> tape;
    ax::nn::Network<float> network(model, tape, {});
    ax::Tensor<float> x = tape.value(network.input());
    for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(i % 5) / 5.0f;
    tape.set_value(network.input(), x);
    tape.forward();
  } catch (const ax::Error&) {
  }
  return 0;
}
