// Array and image files: inputs, baselines and attributions. `.npy` (NumPy's format, float32
// or float64, C order) and 8-bit PNG (gray or RGB, read as [C, H, W] scaled to [0, 1]).
// Every fault is an ax::Error "<path>: <what is wrong>".
#pragma once

#include "../autodiff/tensor.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace ax::attr {

// Reads a .npy of dtype <f4 or <f8 in C order, converted to T.
template <class T>
Tensor<T> read_npy(const std::string& path);
// Writes t as a .npy of T's dtype (<f4 or <f8), format version 1.0.
template <class T>
void write_npy(const std::string& path, const Tensor<T>& t);

// Reads an 8-bit PNG as [C, H, W] in [0, 1]: C = 1 for gray (a paletted image whose colours
// are all gray included), 3 for RGB (an alpha channel is refused: what it would mean for the
// model is unclear). With `expected`, the header's size is checked against it before anything
// is decoded; without, images over 2^26 pixels are refused.
Tensor<float> read_png(const std::string& path, const Shape* expected = nullptr);
// Writes 8-bit pixels, row-major, `channels` (1 or 3) interleaved per pixel.
void write_png(const std::string& path, const std::vector<std::uint8_t>& pixels, std::size_t width,
               std::size_t height, std::size_t channels);

// The bytes of a .npy and of a PNG, as write_npy and write_png write them.
template <class T>
std::string npy_bytes(const Tensor<T>& t);
std::string png_bytes(const std::vector<std::uint8_t>& pixels, std::size_t width, std::size_t height, std::size_t channels);

// Writes one file and checks that every byte reached it (a full disk is an Error naming it).
void write_file(const std::string& path, const std::string& bytes);
// Writes several files, all or none: when one fails, those written before it are removed and the
// Error is thrown.
void write_files(const std::vector<std::pair<std::string, std::string>>& files);

// An input or baseline file by its extension (.png or .npy), checked against the model's
// per-sample input shape.
template <class T>
Tensor<T> read_array(const std::string& path, const Shape& expected);

}  // namespace ax::attr
