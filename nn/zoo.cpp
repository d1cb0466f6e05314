#include "zoo.hpp"

#include "data.hpp"

#include <cmath>

namespace ax::nn {

SpecBuilder::SpecBuilder(std::string input_name, std::vector<std::size_t> input_shape, std::uint64_t seed)
    : rng_(seed) {
  spec_.graph.input.name = std::move(input_name);
  spec_.graph.input.shape = std::move(input_shape);
}

void SpecBuilder::set_range(double lo, double hi) { spec_.graph.input.range = std::pair{lo, hi}; }

NodeSpec& SpecBuilder::node(const std::string& name, const std::string& op, std::vector<std::string> inputs) {
  spec_.graph.nodes.push_back(make_node(name, op, std::move(inputs)));
  return spec_.graph.nodes.back();
}

void SpecBuilder::uniform(const std::string& tensor, std::vector<std::size_t> shape, double bound) {
  TensorData& t = spec_.tensors[tensor];
  t.dtype = "F32";
  t.shape = std::move(shape);
  std::size_t n = 1;
  for (std::size_t d : t.shape) n *= d;
  std::uniform_real_distribution<double> draw(-bound, bound);
  t.values.resize(n);
  // rounded to float now, so that the spec holds exactly what an F32 file will
  for (double& v : t.values) v = static_cast<float>(draw(rng_));
}

void SpecBuilder::constant(const std::string& tensor, std::size_t n, double value) {
  spec_.tensors[tensor] = TensorData{"F32", {n}, std::vector<double>(n, value)};
}

std::string SpecBuilder::conv2d(const std::string& name, const std::string& input, std::size_t in_channels,
                                std::size_t out_channels, std::int64_t kernel, std::int64_t stride,
                                std::int64_t padding, bool bias) {
  NodeSpec& n = node(name, "conv2d", {input});
  n.attrs.stride = stride;
  n.attrs.padding = padding;
  const std::size_t k = static_cast<std::size_t>(kernel);
  const double bound = 1.0 / std::sqrt(static_cast<double>(in_channels * k * k));
  uniform(name + ".weight", {out_channels, in_channels, k, k}, bound);
  if (bias) uniform(name + ".bias", {out_channels}, bound);
  return name;
}

std::string SpecBuilder::linear(const std::string& name, const std::string& input, std::size_t in_features,
                                std::size_t out_features, bool bias) {
  node(name, "linear", {input});
  const double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
  uniform(name + ".weight", {out_features, in_features}, bound);
  if (bias) uniform(name + ".bias", {out_features}, bound);
  return name;
}

std::string SpecBuilder::batchnorm2d(const std::string& name, const std::string& input, std::size_t channels) {
  node(name, "batchnorm2d", {input});
  constant(name + ".weight", channels, 1.0);
  constant(name + ".bias", channels, 0.0);
  constant(name + ".running_mean", channels, 0.0);
  constant(name + ".running_var", channels, 1.0);
  return name;
}

std::string SpecBuilder::maxpool2d(const std::string& name, const std::string& input, std::int64_t kernel,
                                   std::int64_t stride, std::int64_t padding) {
  NodeSpec& n = node(name, "maxpool2d", {input});
  n.attrs.kernel = kernel;
  n.attrs.stride = stride;
  n.attrs.padding = padding;
  return name;
}

std::string SpecBuilder::adaptive_avgpool2d(const std::string& name, const std::string& input,
                                            std::int64_t output_size) {
  node(name, "adaptive_avgpool2d", {input}).attrs.output_size = output_size;
  return name;
}

std::string SpecBuilder::normalize(const std::string& name, const std::string& input, std::vector<double> mean,
                                   std::vector<double> deviation) {
  NodeSpec& n = node(name, "normalize", {input});
  n.attrs.mean = std::move(mean);
  n.attrs.stddev = std::move(deviation);
  return name;
}

std::string SpecBuilder::flatten(const std::string& name, const std::string& input) {
  node(name, "flatten", {input}).attrs.start_dim = 1;
  return name;
}

std::string SpecBuilder::relu(const std::string& name, const std::string& input) {
  node(name, "relu", {input});
  return name;
}

std::string SpecBuilder::add(const std::string& name, const std::vector<std::string>& inputs) {
  node(name, "add", inputs);
  return name;
}

ModelSpec SpecBuilder::finish(const std::string& output, std::vector<std::string> labels) {
  spec_.graph.output = output;
  spec_.graph.labels = std::move(labels);
  return spec_;
}

ModelSpec lenet28(std::uint64_t seed, std::size_t channels) {
  SpecBuilder b("input", {1, 28, 28}, seed);
  b.set_range(0.0, 1.0);
  std::string x = b.conv2d("conv1", "input", 1, channels, 3);
  x = b.maxpool2d("pool1", b.relu("relu1", x), 2, 2);
  x = b.conv2d("conv2", x, channels, 2 * channels, 3);
  x = b.maxpool2d("pool2", b.relu("relu2", x), 2, 2);
  x = b.relu("relu3", b.linear("fc1", b.flatten("flat", x), 2 * channels * 5 * 5, 8 * channels));
  return b.finish(b.linear("fc2", x, 8 * channels, 10));
}

ModelSpec resnet18(std::uint64_t seed, std::size_t classes, std::size_t size) {
  SpecBuilder b("input", {3, size, size}, seed);
  std::string x = b.conv2d("conv1", "input", 3, 64, 7, 2, 3, false);
  x = b.relu("relu", b.batchnorm2d("bn1", x, 64));
  x = b.maxpool2d("maxpool", x, 3, 2, 1);
  std::size_t channels = 64;
  for (int layer = 1; layer <= 4; ++layer) {
    const std::size_t width = 64u << (layer - 1);
    for (int block = 0; block < 2; ++block) {
      // torchvision's BasicBlock: conv-bn-relu-conv-bn, plus the input (downsampled when the
      // stride or width changes), then relu
      const std::string p = "layer" + std::to_string(layer) + "." + std::to_string(block) + ".";
      const std::int64_t stride = (layer > 1 && block == 0) ? 2 : 1;
      std::string y = b.conv2d(p + "conv1", x, channels, width, 3, stride, 1, false);
      y = b.relu(p + "relu1", b.batchnorm2d(p + "bn1", y, width));
      y = b.batchnorm2d(p + "bn2", b.conv2d(p + "conv2", y, width, width, 3, 1, 1, false), width);
      std::string skip = x;
      if (stride != 1 || channels != width)
        skip = b.batchnorm2d(p + "downsample.1", b.conv2d(p + "downsample.0", x, channels, width, 1, stride, 0, false), width);
      x = b.relu(p + "relu2", b.add(p + "add", {y, skip}));
      channels = width;
    }
  }
  x = b.flatten("flatten", b.adaptive_avgpool2d("avgpool", x, 1));
  return b.finish(b.linear("fc", x, 512, classes));
}

ModelSpec fashion_cnn(std::uint64_t seed) {
  SpecBuilder b("image", {1, 28, 28}, seed);
  b.set_range(0.0, 1.0);
  // the training set's pixel mean and standard deviation
  std::string x = b.normalize("normalize", "image", {0.2860}, {0.3530});
  x = b.maxpool2d("pool1", b.relu("relu1", b.conv2d("conv1", x, 1, 32, 3, 1, 1)), 2, 2);
  x = b.maxpool2d("pool2", b.relu("relu2", b.conv2d("conv2", x, 32, 64, 3, 1, 1)), 2, 2);
  x = b.relu("relu3", b.linear("fc1", b.flatten("flatten", x), 64 * 7 * 7, 128));
  return b.finish(b.linear("fc2", x, 128, 10), fashion_mnist_labels());
}

}  // namespace ax::nn
