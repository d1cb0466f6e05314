// Networks built in code: a small builder for ModelSpecs, PyTorch's default initialization, and
// the architectures the project trains, benchmarks and explains.
#pragma once

#include "model_spec.hpp"

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace ax::nn {

// Appends nodes to a ModelSpec and draws their parameters as PyTorch initializes its layers:
// conv and linear weights and biases ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform with
// a = sqrt(5)); batch norm weight 1, bias 0, running mean 0, running variance 1. Each method
// returns the new node's name, to be the next one's input.
class SpecBuilder {
 public:
  SpecBuilder(std::string input_name, std::vector<std::size_t> input_shape, std::uint64_t seed);
  void set_range(double lo, double hi);

  std::string conv2d(const std::string& name, const std::string& input, std::size_t in_channels,
                     std::size_t out_channels, std::int64_t kernel, std::int64_t stride = 1, std::int64_t padding = 0,
                     bool bias = true);
  std::string linear(const std::string& name, const std::string& input, std::size_t in_features,
                     std::size_t out_features, bool bias = true);
  std::string batchnorm2d(const std::string& name, const std::string& input, std::size_t channels);
  std::string maxpool2d(const std::string& name, const std::string& input, std::int64_t kernel, std::int64_t stride,
                        std::int64_t padding = 0);
  std::string adaptive_avgpool2d(const std::string& name, const std::string& input, std::int64_t output_size);
  std::string normalize(const std::string& name, const std::string& input, std::vector<double> mean,
                        std::vector<double> deviation);
  std::string flatten(const std::string& name, const std::string& input);
  std::string relu(const std::string& name, const std::string& input);
  std::string add(const std::string& name, const std::vector<std::string>& inputs);

  ModelSpec finish(const std::string& output, std::vector<std::string> labels = {});

 private:
  NodeSpec& node(const std::string& name, const std::string& op, std::vector<std::string> inputs);
  void uniform(const std::string& tensor, std::vector<std::size_t> shape, double bound);
  void constant(const std::string& tensor, std::size_t n, double value);

  ModelSpec spec_;
  std::mt19937_64 rng_;
};

// The LeNet-28 of the PyTorch peer benchmark (bench/torch_peer.py): conv 1->16 3x3, relu,
// maxpool 2, conv 16->32 3x3, relu, maxpool 2, flatten, linear 800->128, relu, linear 128->10.
// With `channels` C other than 16: conv 1->C, C->2C, linear 50C->8C (the same network, narrower).
ModelSpec lenet28(std::uint64_t seed, std::size_t channels = 16);

// torchvision's resnet18 (BasicBlock [2, 2, 2, 2]) for 3 x size x size inputs. Initialized as
// above, not as torchvision re-initializes it: the values do not matter for timing.
ModelSpec resnet18(std::uint64_t seed, std::size_t classes = 1000, std::size_t size = 224);

// The shipped Fashion-MNIST classifier: normalize, conv 1->32 3x3 pad 1, relu, maxpool 2,
// conv 32->64 3x3 pad 1, relu, maxpool 2, flatten, linear 3136->128, relu, linear 128->10;
// input [1, 28, 28] in [0, 1]; labels the ten class names.
ModelSpec fashion_cnn(std::uint64_t seed);

}  // namespace ax::nn
