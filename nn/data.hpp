// Data sets for training and for baselines: IDX files (the MNIST family's format), plain or
// gzip-compressed, as Debian's dataset-fashion-mnist ships them.
#pragma once

#include "../autodiff/tensor.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace ax::nn {

// Images as [N, 1, rows, cols] with pixels scaled to [0, 1], and their labels.
struct ImageSet {
  Tensor<float> images;
  std::vector<std::uint8_t> labels;
  std::size_t size() const { return labels.size(); }
};

// Reads an IDX file of unsigned bytes (magic 0x00000801 labels or 0x00000803 images); gzip is
// detected from the content. Returns the dimensions and the bytes. Throws Error("<path>: ...").
struct IdxBytes {
  std::vector<std::size_t> dims;
  std::vector<std::uint8_t> data;
};
IdxBytes read_idx(const std::string& path);

// Reads an images file and its labels file; their counts must agree.
ImageSet read_image_set(const std::string& images_path, const std::string& labels_path);

// Debian's dataset-fashion-mnist, installed by `apt-get install dataset-fashion-mnist`.
inline const char* fashion_mnist_dir = "/usr/share/datasets/fashion-mnist";
ImageSet fashion_mnist_train(const std::string& dir = fashion_mnist_dir);
ImageSet fashion_mnist_test(const std::string& dir = fashion_mnist_dir);
// The ten class names, in label order.
std::vector<std::string> fashion_mnist_labels();

}  // namespace ax::nn
