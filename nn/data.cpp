#include "data.hpp"

#include <zlib.h>

#include <algorithm>
#include <memory>

namespace ax::nn {
namespace {

// The whole file, decompressed if it is gzip (zlib's gzread passes plain files through).
std::vector<std::uint8_t> read_all(const std::string& path) {
  std::unique_ptr<gzFile_s, int (*)(gzFile)> file(gzopen(path.c_str(), "rb"), gzclose);
  if (!file) throw Error(path + ": cannot open");
  std::vector<std::uint8_t> bytes;
  std::uint8_t chunk[1 << 16];
  for (;;) {
    const int n = gzread(file.get(), chunk, sizeof chunk);
    if (n < 0) throw Error(path + ": not a readable gzip or plain file");
    if (n == 0) break;
    bytes.insert(bytes.end(), chunk, chunk + n);
  }
  return bytes;
}

std::uint32_t big_endian(const std::uint8_t* p) {
  return (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) | (std::uint32_t(p[2]) << 8) | p[3];
}

}  // namespace

IdxBytes read_idx(const std::string& path) {
  const std::vector<std::uint8_t> bytes = read_all(path);
  if (bytes.size() < 4) throw Error(path + ": too short for an IDX header");
  // magic: two zero bytes, the element type (0x08 = unsigned byte), the number of dimensions
  if (bytes[0] != 0 || bytes[1] != 0) throw Error(path + ": not an IDX file (bad magic number)");
  if (bytes[2] != 0x08) throw Error(path + ": IDX element type " + std::to_string(bytes[2]) + ", expected 8 (unsigned byte)");
  const std::size_t rank = bytes[3];
  if (rank < 1 || rank > 4) throw Error(path + ": IDX rank " + std::to_string(rank) + ", expected 1 to 4");
  if (bytes.size() < 4 + 4 * rank) throw Error(path + ": too short for its " + std::to_string(rank) + " dimensions");
  IdxBytes idx;
  std::size_t count = 1;
  for (std::size_t d = 0; d < rank; ++d) {
    idx.dims.push_back(big_endian(&bytes[4 + 4 * d]));
    count *= idx.dims.back();  // each dimension < 2^32 and rank <= 4: checked against the size next
    if (count > bytes.size()) throw Error(path + ": dimensions promise more data than the file holds");
  }
  const std::size_t header = 4 + 4 * rank;
  if (bytes.size() != header + count)
    throw Error(path + ": holds " + std::to_string(bytes.size() - header) + " data bytes, its dimensions say " +
                std::to_string(count));
  idx.data.assign(bytes.begin() + static_cast<std::ptrdiff_t>(header), bytes.end());
  return idx;
}

ImageSet read_image_set(const std::string& images_path, const std::string& labels_path) {
  const IdxBytes images = read_idx(images_path);
  const IdxBytes labels = read_idx(labels_path);
  if (images.dims.size() != 3) throw Error(images_path + ": expected images [N, rows, cols]");
  if (labels.dims.size() != 1) throw Error(labels_path + ": expected labels [N]");
  if (images.dims[0] != labels.dims[0])
    throw Error(images_path + ": " + std::to_string(images.dims[0]) + " images but " + labels_path + " has " +
                std::to_string(labels.dims[0]) + " labels");
  ImageSet set;
  set.images.resize(Shape{images.dims[0], 1, images.dims[1], images.dims[2]});
  std::transform(images.data.begin(), images.data.end(), set.images.begin(),
                 [](std::uint8_t v) { return static_cast<float>(v) / 255.0f; });
  set.labels = labels.data;
  return set;
}

ImageSet fashion_mnist_train(const std::string& dir) {
  return read_image_set(dir + "/train-images-idx3-ubyte.gz", dir + "/train-labels-idx1-ubyte.gz");
}

ImageSet fashion_mnist_test(const std::string& dir) {
  return read_image_set(dir + "/t10k-images-idx3-ubyte.gz", dir + "/t10k-labels-idx1-ubyte.gz");
}

std::vector<std::string> fashion_mnist_labels() {
  return {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};
}

}  // namespace ax::nn
