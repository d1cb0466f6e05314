// Writes the toy models of SOURCE_DIR/examples/toys as model files into OUT_DIR/model/: small
// model-file seeds, fast to mutate, for tools/fuzz.sh. Each also in fuzz_model's second form
// (the header's JSON, a 0 byte, the tensor data: no length field to keep in step).
//   make_seeds SOURCE_DIR OUT_DIR
// The other seeds are the shipped files (examples/) and fuzz/seeds/ (small .npy files and one
// --baseline SPEC of each kind), copied by the script.
#include "nn/model_file.hpp"

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>

namespace fs = std::filesystem;

namespace {

void model_seeds(const fs::path& source, const fs::path& out) {
  fs::create_directories(out);
  for (const auto& entry : fs::directory_iterator(source / "examples" / "toys")) {
    if (entry.path().extension() != ".json") continue;
    const ax::nn::ModelSpec toy = ax::nn::read_toy_json(entry.path().string());
    const std::string bytes = ax::nn::serialize_model(toy);
    const std::string stem = entry.path().stem().string();
    std::ofstream(out / (stem + ".safetensors"), std::ios::binary) << bytes;
    std::uint64_t length = 0;
    for (int i = 7; i >= 0; --i) length = (length << 8) | static_cast<unsigned char>(bytes[i]);
    std::ofstream(out / (stem + ".header"), std::ios::binary)
        << bytes.substr(8, length) << '\0' << bytes.substr(8 + length);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: make_seeds SOURCE_DIR OUT_DIR\n";
    return 2;
  }
  try {
    const fs::path source = argv[1], out = argv[2];
    model_seeds(source, out / "model");
  } catch (const std::exception& e) {
    std::cerr << "make_seeds: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
