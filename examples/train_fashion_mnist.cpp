// Trains the shipped Fashion-MNIST classifier (nn::fashion_cnn) from a seed with Adam on
// Debian's dataset-fashion-mnist, reports test accuracy after each epoch and saves the model
// file with its labels.
//
//   build/examples/train_fashion_mnist [--epochs 4] [--batch 64] [--seed 1]
//                                      [--out examples/models/fashion_mnist.safetensors]
#include "nn/data.hpp"
#include "nn/graph.hpp"
#include "nn/model_file.hpp"
#include "nn/train.hpp"
#include "nn/zoo.hpp"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <numeric>
#include <random>

using namespace ax;

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Copies the images at indices[begin, begin + n) into batch [n, 1, 28, 28].
void gather(const nn::ImageSet& set, const std::vector<std::size_t>& indices, std::size_t begin, std::size_t n,
            Tensor<float>& batch, std::vector<std::uint8_t>& labels) {
  const std::size_t pixels = set.images.size() / set.size();
  batch.resize(Shape{n, 1, 28, 28});
  labels.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t from = indices[begin + i];
    std::copy_n(set.images.data() + from * pixels, pixels, batch.data() + i * pixels);
    labels[i] = set.labels[from];
  }
}

// The fraction of `set` whose highest logit is its label, evaluated in batches on the tape.
double accuracy(nn::Network<float>& net, const nn::ImageSet& set, std::size_t batch_size) {
  std::vector<std::size_t> order(set.size());
  std::iota(order.begin(), order.end(), 0);
  Tensor<float> batch;
  std::vector<std::uint8_t> labels;
  std::size_t correct = 0;
  for (std::size_t begin = 0; begin < set.size(); begin += batch_size) {
    const std::size_t n = std::min(batch_size, set.size() - begin);
    gather(set, order, begin, n, batch, labels);
    net.tape().set_value(net.input(), batch);
    net.tape().forward();
    const Tensor<float>& logits = net.tape().value(net.output());
    for (std::size_t i = 0; i < n; ++i) {
      const float* row = logits.data() + i * 10;
      correct += static_cast<std::size_t>(std::max_element(row, row + 10) - row) == labels[i];
    }
  }
  return static_cast<double>(correct) / static_cast<double>(set.size());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("Train the Fashion-MNIST classifier that axiomatic ships and explains.");
  int epochs = 4;
  std::size_t batch_size = 64;
  std::uint64_t seed = 1;
  double learning_rate = 1e-3;
  std::string out = "examples/models/fashion_mnist.safetensors";
  app.add_option("--epochs", epochs, "passes over the 60000 training images")->check(CLI::Range(1, 100));
  app.add_option("--batch", batch_size, "images per Adam step")->check(CLI::Range(1, 4096));
  app.add_option("--seed", seed, "seeds the initial weights and the shuffling");
  app.add_option("--lr", learning_rate, "Adam's learning rate (halved for the last epoch)");
  app.add_option("--out", out, "where to write the model file");
  CLI11_PARSE(app, argc, argv);

  try {
    const auto start = std::chrono::steady_clock::now();
    const nn::ImageSet train = nn::fashion_mnist_train(), test = nn::fashion_mnist_test();
    std::printf("read %zu training and %zu test images in %.1f s\n", train.size(), test.size(), seconds_since(start));
    std::fflush(stdout);

    nn::ModelSpec spec = nn::fashion_cnn(seed);
    Tape<float> tape;
    nn::RecordOptions options;
    options.batch = batch_size;
    options.input_requires_grad = false;
    options.parameters_require_grad = true;
    nn::Network<float> net(spec, tape, options);
    const Var<float> targets = tape.input(zeros<float>({batch_size, 10}), false, "targets");
    const Var<float> loss = nn::softmax_cross_entropy(net.output(), targets);
    nn::AdamOptions adam_options;
    adam_options.learning_rate = learning_rate;
    nn::Adam<float> adam(tape, net.parameter_vars(), adam_options);

    std::mt19937_64 rng(seed);
    std::vector<std::size_t> order(train.size());
    std::iota(order.begin(), order.end(), 0);
    Tensor<float> batch, one_hot;
    std::vector<std::uint8_t> labels;
    for (int epoch = 1; epoch <= epochs; ++epoch) {
      const auto epoch_start = std::chrono::steady_clock::now();
      std::shuffle(order.begin(), order.end(), rng);
      double loss_sum = 0;
      std::size_t steps = 0;
      // the last partial batch is dropped: every step sees batch_size images
      for (std::size_t begin = 0; begin + batch_size <= train.size(); begin += batch_size, ++steps) {
        gather(train, order, begin, batch_size, batch, labels);
        nn::one_hot(labels.data(), batch_size, 10, one_hot);
        tape.set_value(net.input(), batch);
        tape.set_value(targets, one_hot);
        tape.forward();
        tape.zero_grad();
        tape.backward(loss);
        adam.step();
        loss_sum += tape.value(loss)();
      }
      if (epoch == epochs - 1) adam.set_learning_rate(learning_rate / 2);
      const double train_seconds = seconds_since(epoch_start);
      // evaluate on a tape of its own so the training tape keeps its batch size
      Tape<float> eval_tape;
      nn::ModelSpec current = spec;
      net.store_parameters(current);
      nn::Network<float> eval(current, eval_tape, [] { nn::RecordOptions o; o.batch = 500; o.input_requires_grad = false; return o; }());
      std::printf("epoch %d: loss %.4f, test accuracy %.4f (%.0f s training, %.0f s in all)\n", epoch,
                  loss_sum / static_cast<double>(steps), accuracy(eval, test, 500), train_seconds, seconds_since(start));
      std::fflush(stdout);
    }
    net.store_parameters(spec);
    nn::write_model(out, spec);
    std::printf("wrote %s\n", out.c_str());
  } catch (const Error& e) {
    std::fprintf(stderr, "train_fashion_mnist: %s\n", e.what());
    return 1;
  }
  return 0;
}
