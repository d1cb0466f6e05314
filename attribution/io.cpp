#include "io.hpp"

#include <stb/stb_image.h>
#include <stb/stb_image_write.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>

namespace ax::attr {
namespace {

template <class T>
const char* npy_dtype();
template <>
const char* npy_dtype<float>() { return "<f4"; }
template <>
const char* npy_dtype<double>() { return "<f8"; }

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open");
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

// The value of `key` in NumPy's header dictionary, e.g. "'<f4'" or "(1, 28, 28)".
std::string header_field(const std::string& header, const std::string& key, const std::string& path) {
  const std::size_t at = header.find("'" + key + "'");
  if (at == std::string::npos) throw Error(path + ": .npy header has no '" + key + "'");
  std::size_t begin = header.find(':', at);
  if (begin == std::string::npos) throw Error(path + ": malformed .npy header");
  ++begin;
  while (begin < header.size() && header[begin] == ' ') ++begin;
  std::size_t end = begin;
  if (begin < header.size() && header[begin] == '(') end = header.find(')', begin) + 1;
  else end = header.find_first_of(",}", begin);
  if (end == std::string::npos || end == 0 || end > header.size()) throw Error(path + ": malformed .npy header");
  return header.substr(begin, end - begin);
}

}  // namespace

template <class T>
Tensor<T> read_npy(const std::string& path) {
  const std::string bytes = read_file(path);
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0) throw Error(path + ": not a .npy file");
  const unsigned major = static_cast<unsigned char>(bytes[6]);
  std::size_t header_length = 0, header_start = 0;
  if (major == 1) {
    header_length = static_cast<unsigned char>(bytes[8]) | (static_cast<std::size_t>(static_cast<unsigned char>(bytes[9])) << 8);
    header_start = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) throw Error(path + ": truncated .npy header");
    for (int i = 3; i >= 0; --i) header_length = (header_length << 8) | static_cast<unsigned char>(bytes[8 + i]);
    header_start = 12;
  } else {
    throw Error(path + ": .npy format version " + std::to_string(major) + " is not supported");
  }
  if (header_start + header_length > bytes.size()) throw Error(path + ": truncated .npy header");
  const std::string header = bytes.substr(header_start, header_length);
  const std::string descr = header_field(header, "descr", path);
  const bool is_f4 = descr == "'<f4'", is_f8 = descr == "'<f8'";
  if (!is_f4 && !is_f8) throw Error(path + ": dtype " + descr + ", expected float32 ('<f4') or float64 ('<f8')");
  if (header_field(header, "fortran_order", path) != "False") throw Error(path + ": Fortran order is not supported");
  Shape shape;
  std::string dims = header_field(header, "shape", path);
  for (char& c : dims)
    if (c == '(' || c == ')' || c == ',') c = ' ';
  std::istringstream in(dims);
  std::size_t d = 0, count = 1;
  while (in >> d) {
    if (shape.size() == 6) throw Error(path + ": more than 6 dimensions");
    shape.push_back(d);
    if (d && count > (std::size_t(1) << 40) / d) throw Error(path + ": shape too large");
    count *= d;
  }
  if (!in.eof()) throw Error(path + ": malformed shape in .npy header");
  const std::size_t width = is_f4 ? 4 : 8, data_start = header_start + header_length;
  if (bytes.size() - data_start != count * width)
    throw Error(path + ": holds " + std::to_string(bytes.size() - data_start) + " data bytes, shape " + to_string(shape) +
                " needs " + std::to_string(count * width));
  Tensor<T> t(shape);
  for (std::size_t i = 0; i < count; ++i) {
    if (is_f4) {
      float v;
      std::memcpy(&v, bytes.data() + data_start + 4 * i, 4);
      t.data()[i] = static_cast<T>(v);
    } else {
      double v;
      std::memcpy(&v, bytes.data() + data_start + 8 * i, 8);
      // a finite value beyond T's largest has no conversion (undefined, not Inf)
      if (std::isfinite(v) && std::fabs(v) > static_cast<double>(std::numeric_limits<T>::max())) {
        char value[32];
        std::snprintf(value, sizeof value, "%g", v);
        throw Error(path + ": value out of float range (" + value + " at index " + std::to_string(i) + ")");
      }
      t.data()[i] = static_cast<T>(v);
    }
  }
  return t;
}

template <class T>
std::string npy_bytes(const Tensor<T>& t) {
  std::string shape = "(";
  for (std::size_t d : t.shape()) shape += std::to_string(d) + ", ";
  if (t.dimension() > 1) shape.resize(shape.size() - 2);
  else if (t.dimension() == 1) shape.resize(shape.size() - 1);  // "(3,)"
  shape += ")";
  std::string header = "{'descr': '" + std::string(npy_dtype<T>()) + "', 'fortran_order': False, 'shape': " + shape + ", }";
  // magic (6) + version (2) + length (2) + header + '\n' is a multiple of 64
  header.append(63 - (10 + header.size()) % 64, ' ');
  header += '\n';
  std::string bytes("\x93NUMPY\x01\x00", 8);
  bytes += static_cast<char>(header.size() & 0xff);
  bytes += static_cast<char>(header.size() >> 8);
  bytes += header;
  bytes.append(reinterpret_cast<const char*>(t.data()), t.size() * sizeof(T));
  return bytes;
}

template <class T>
void write_npy(const std::string& path, const Tensor<T>& t) {
  write_file(path, npy_bytes(t));
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  if (!out) throw Error(path + ": cannot write (cannot open the file)");
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();  // flushes: a full disk shows here
  if (!out) throw Error(path + ": cannot write (" + std::to_string(bytes.size()) + " bytes did not all reach the file)");
}

void write_files(const std::vector<std::pair<std::string, std::string>>& files) {
  for (std::size_t i = 0; i < files.size(); ++i) {
    try {
      write_file(files[i].first, files[i].second);
    } catch (const Error&) {
      for (std::size_t j = 0; j < i; ++j) std::remove(files[j].first.c_str());
      throw;
    }
  }
}

namespace {

// PNG's colour types; a paletted image whose entries are all gray is read as gray.
constexpr int png_palette = 3;

std::uint32_t big_endian(const std::string& bytes, std::size_t at) {
  return (std::uint32_t(static_cast<unsigned char>(bytes[at])) << 24) | (std::uint32_t(static_cast<unsigned char>(bytes[at + 1])) << 16) |
         (std::uint32_t(static_cast<unsigned char>(bytes[at + 2])) << 8) | std::uint32_t(static_cast<unsigned char>(bytes[at + 3]));
}

// Whether a PNG is paletted with every palette entry gray (r = g = b): walks the chunks up to
// PLTE, every length checked against the file's size.
bool gray_palette(const std::string& bytes) {
  if (bytes.size() < 33 || bytes.compare(12, 4, "IHDR") != 0 || static_cast<unsigned char>(bytes[25]) != png_palette) return false;
  std::size_t at = 8;  // after the signature: chunks of length, type, data, CRC
  while (at + 8 <= bytes.size()) {
    const std::size_t length = big_endian(bytes, at);
    if (length > bytes.size() - at - 8) return false;
    if (bytes.compare(at + 4, 4, "PLTE") == 0) {
      if (length % 3 != 0) return false;
      for (std::size_t e = at + 8; e < at + 8 + length; e += 3)
        if (bytes[e] != bytes[e + 1] || bytes[e] != bytes[e + 2]) return false;
      return true;
    }
    if (bytes.compare(at + 4, 4, "IDAT") == 0) return false;
    at += 12 + length;
  }
  return false;
}

}  // namespace

// Found by fuzzing: stb_image decodes every format it knows (a 29-byte PGM declaring 5555555
// columns made it allocate 33 MB), and grows its buffer to an IDAT chunk's declared length before
// reading the chunk (a 373-byte PNG whose IDAT claims 1.4 GB made it allocate 2 GB). So: the PNG
// signature first, and no chunk may claim more bytes than the file has left.
static void check_png_chunks(const std::string& path, const std::string& bytes) {
  static const char signature[] = "\x89PNG\r\n\x1a\n";
  if (bytes.size() < 8 || bytes.compare(0, 8, signature, 8) != 0)
    throw Error(path + ": not a PNG file (no PNG signature); expected 8-bit gray or RGB PNG");
  // each chunk: 4-byte big-endian length, 4-byte type, the data, 4-byte CRC
  for (std::size_t at = 8; bytes.size() - at >= 8;) {
    std::uint64_t length = 0;
    for (std::size_t i = 0; i < 4; ++i) length = (length << 8) | static_cast<unsigned char>(bytes[at + i]);
    if (length > bytes.size() - at - 8)
      throw Error(path + ": PNG chunk at byte " + std::to_string(at) + " claims " + std::to_string(length) +
                  " bytes; the file has " + std::to_string(bytes.size() - at - 8) + " left");
    if (bytes.compare(at + 4, 4, "IEND") == 0) break;  // what follows the end is not read
    at += 8 + length + std::min<std::size_t>(4, bytes.size() - at - 8 - length);
  }
}

Tensor<float> read_png(const std::string& path, const Shape* expected) {
  const std::string bytes = read_file(path);
  check_png_chunks(path, bytes);
  if (bytes.size() > std::size_t(std::numeric_limits<int>::max())) throw Error(path + ": larger than 2 GiB");
  const stbi_uc* data = reinterpret_cast<const stbi_uc*>(bytes.data());
  const int length = static_cast<int>(bytes.size());
  int width = 0, height = 0, channels = 0;
  if (!stbi_info_from_memory(data, length, &width, &height, &channels))
    throw Error(path + ": not a readable image (" + stbi_failure_reason() + ")");
  if (stbi_is_16_bit_from_memory(data, length)) throw Error(path + ": 16-bit images are not supported; expected 8-bit gray or RGB");
  if (channels == 2 || channels == 4) throw Error(path + ": has an alpha channel; expected 8-bit gray or RGB");
  if (channels == 3 && gray_palette(bytes)) channels = 1;  // stb expands a palette to RGB; its gray is exact
  // the header's size, checked before anything is decoded
  const Shape shape{static_cast<std::size_t>(channels), static_cast<std::size_t>(height), static_cast<std::size_t>(width)};
  if (expected && shape != *expected)
    throw Error(path + ": has shape " + to_string(shape) + ", the model expects " + to_string(*expected));
  if (!expected && std::size_t(width) * std::size_t(height) > (std::size_t(1) << 26))
    throw Error(path + ": " + std::to_string(width) + "x" + std::to_string(height) + " pixels is more than 2^26");
  int decoded_channels = 0;
  stbi_uc* pixels = stbi_load_from_memory(data, length, &width, &height, &decoded_channels, channels);
  if (!pixels) throw Error(path + ": cannot decode (" + stbi_failure_reason() + ")");
  const std::size_t c = shape[0], h = shape[1], w = shape[2];
  Tensor<float> image(shape);
  // interleaved [H, W, C] bytes to planar [C, H, W] in [0, 1]
  for (std::size_t ch = 0; ch < c; ++ch)
    for (std::size_t y = 0; y < h; ++y)
      for (std::size_t x = 0; x < w; ++x) image(ch, y, x) = static_cast<float>(pixels[(y * w + x) * c + ch]) / 255.0f;
  stbi_image_free(pixels);
  return image;
}

std::string png_bytes(const std::vector<std::uint8_t>& pixels, std::size_t width, std::size_t height, std::size_t channels) {
  if (pixels.size() != width * height * channels) throw Error("PNG: the pixel count does not match the image size");
  std::string bytes;
  const auto append = [](void* context, void* data, int size) {
    static_cast<std::string*>(context)->append(static_cast<const char*>(data), static_cast<std::size_t>(size));
  };
  if (!stbi_write_png_to_func(append, &bytes, static_cast<int>(width), static_cast<int>(height), static_cast<int>(channels),
                              pixels.data(), static_cast<int>(width * channels)))
    throw Error("PNG: cannot encode the image");
  return bytes;
}

void write_png(const std::string& path, const std::vector<std::uint8_t>& pixels, std::size_t width, std::size_t height,
               std::size_t channels) {
  try {
    write_file(path, png_bytes(pixels, width, height, channels));
  } catch (const Error& e) {
    const std::string what = e.what();
    if (what.rfind(path, 0) == 0) throw;
    throw Error(path + ": " + what);
  }
}

template <class T>
Tensor<T> read_array(const std::string& path, const Shape& expected) {
  const auto ends_with = [&](const char* suffix) {
    const std::size_t n = std::strlen(suffix);
    return path.size() >= n && path.compare(path.size() - n, n, suffix) == 0;
  };
  Tensor<T> t;
  if (ends_with(".npy")) t = read_npy<T>(path);
  else if (ends_with(".png") || ends_with(".PNG")) t = read_png(path, &expected);
  else throw Error(path + ": unknown file type; expected .png or .npy");
  if (t.shape() != expected)
    throw Error(path + ": has shape " + to_string(t.shape()) + ", the model expects " + to_string(expected));
  return t;
}

template Tensor<float> read_npy(const std::string&);
template Tensor<double> read_npy(const std::string&);
template void write_npy(const std::string&, const Tensor<float>&);
template void write_npy(const std::string&, const Tensor<double>&);
template std::string npy_bytes(const Tensor<float>&);
template std::string npy_bytes(const Tensor<double>&);
template Tensor<float> read_array(const std::string&, const Shape&);
template Tensor<double> read_array(const std::string&, const Shape&);

}  // namespace ax::attr
