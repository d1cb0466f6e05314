// Pictures of attributions: heatmaps, overlays on the input, and the convergence curve of a path
// method. Images are 8-bit RGB, row-major, 3 bytes a pixel, written with write_png (io.hpp).
#pragma once

#include "../autodiff/tensor.hpp"

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace ax::attr {

struct Image {
  std::size_t width = 0, height = 0;
  std::vector<std::uint8_t> rgb;  // width * height * 3
};

// Attributions [C, H, W] (or [H, W]) summed over channels, scaled by their `percentile`-th
// largest magnitude (values beyond it saturate) and shown on a diverging scale: red positive,
// blue negative, white zero. Each pixel becomes a `scale` x `scale` block.
template <class T>
Image heatmap(const Tensor<T>& attributions, std::size_t scale = 4, double percentile = 99.5);

// The input [C, H, W] (values in [lo, hi]) as gray, tinted by the heatmap where attributions are
// large: positive red, negative blue.
template <class T>
Image overlay(const Tensor<T>& input, const Tensor<T>& attributions, double lo, double hi, std::size_t scale = 4,
              double percentile = 99.5);

// A line plot on [0, 1] x [min, max] of the series, each a colour, with a light grid: for IG, the
// attributions' cumulative sum along alpha against F(g(alpha)) - F(x').
Image line_picture(const std::vector<double>& x, const std::vector<std::vector<double>>& series,
           const std::vector<std::array<std::uint8_t, 3>>& colours, std::size_t width = 480, std::size_t height = 320);

void write_image(const std::string& path, const Image& image);

// For pictures that share one colour scale (a row of the report page): the attributions summed
// over channels, one value per pixel, and the `percentile`-th largest magnitude of a set of them
// (1 when every value is zero, so a blank picture stays blank).
template <class T>
std::vector<double> pixel_sums(const Tensor<T>& attributions);
double magnitude_percentile(const std::vector<double>& values, double percentile);

// The heatmap on a given scale: a / clip in [-1, 1] (beyond it saturates), red positive, blue
// negative, white zero.
template <class T>
Image heatmap_clipped(const Tensor<T>& attributions, double clip, std::size_t scale);

// The input [C, H, W] as a picture: RGB when C = 3, else the mean over channels as gray.
template <class T>
Image picture(const Tensor<T>& input, double lo, double hi, std::size_t scale);

// The input where its pixels (attributions summed over channels) are among the `fraction` with
// the largest attribution (positive evidence first; ties to the earlier pixel), a flat gray-blue
// elsewhere: what the model is left with when it sees only its "most important" pixels.
template <class T>
Image top_fraction(const Tensor<T>& input, const Tensor<T>& attributions, double fraction, double lo, double hi,
                   std::size_t scale);

}  // namespace ax::attr
