// Embedding axiomatic in a program of your own: exact Integrated Gradients of a model file's
// prediction with the installed library alone (find_package(axiomatic), target
// axiomatic::axiomatic). The package-consumer test builds and runs it against an install.
//
//   embed_minimal MODEL.safetensors IMAGE.png
#include <axiomatic/attribution/io.hpp>
#include <axiomatic/attribution/methods.hpp>
#include <axiomatic/nn/model_file.hpp>

#include <cmath>
#include <cstdio>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: embed_minimal MODEL.safetensors IMAGE.png\n");
    return 2;
  }
  try {
    const ax::nn::ModelSpec model = ax::nn::load_model(argv[1]);
    ax::attr::Engine<float> f(model, ax::attr::TargetSpec{});  // the output's logit of the predicted class
    const ax::Tensor<float> x = ax::attr::read_array<float>(argv[2], f.input_shape());
    const int predicted = f.resolve_class(x);
    ax::attr::IgOptions options;
    options.rule = ax::attr::Rule::exact;  // one gradient per linear piece of the path: no quadrature error
    const auto a = ax::attr::integrated_gradients(f, x, ax::zeros<float>(f.input_shape()), options);
    const double change = a.f_input - a.f_baseline;  // F(x) - F(x'), x' black
    std::printf("class %d, %zu linear pieces: sum of attributions %.6f, F(x) - F(x') %.6f\n", predicted, a.pieces,
                a.sum, change);
    return std::fabs(a.sum - change) <= 1e-4 * std::fabs(change) ? 0 : 1;  // completeness, to float32 rounding
  } catch (const std::exception& e) {
    std::fprintf(stderr, "embed_minimal: %s\n", e.what());
    return 1;
  }
}
