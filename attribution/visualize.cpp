#include "visualize.hpp"

#include "io.hpp"

#include <algorithm>
#include <cmath>
#include <functional>

namespace ax::attr {
namespace {

// [C, H, W] or [H, W] to [H, W] by summing channels
template <class T>
std::vector<double> per_pixel(const Tensor<T>& t, std::size_t& height, std::size_t& width) {
  if (t.dimension() < 2) throw Error("pictures need an image [C, H, W] or [H, W], got shape " + to_string(t.shape()));
  height = t.shape()[t.dimension() - 2];
  width = t.shape()[t.dimension() - 1];
  std::vector<double> pixels(height * width, 0.0);
  for (std::size_t i = 0; i < t.size(); ++i) pixels[i % (height * width)] += double(t.data()[i]);
  return pixels;
}

double magnitude_at(const std::vector<double>& v, double percentile) {
  std::vector<double> m(v.size());
  std::transform(v.begin(), v.end(), m.begin(), [](double a) { return std::abs(a); });
  std::sort(m.begin(), m.end());
  const std::size_t at = std::min(m.size() - 1, static_cast<std::size_t>(percentile / 100.0 * double(m.size() - 1) + 0.5));
  return m[at] > 0 ? m[at] : 1.0;
}

// a in [-1, 1] to white-to-red (positive) or white-to-blue (negative)
std::array<double, 3> diverging(double a) {
  const double s = std::min(1.0, std::abs(a));
  return a >= 0 ? std::array<double, 3>{1.0, 1.0 - 0.85 * s, 1.0 - 0.85 * s}
                : std::array<double, 3>{1.0 - 0.85 * s, 1.0 - 0.6 * s, 1.0};
}

std::uint8_t byte(double v) { return static_cast<std::uint8_t>(std::clamp(v, 0.0, 1.0) * 255.0 + 0.5); }

Image blocks(std::size_t height, std::size_t width, std::size_t scale,
             const std::function<std::array<double, 3>(std::size_t)>& colour_of) {
  Image image;
  image.width = width * scale;
  image.height = height * scale;
  image.rgb.resize(image.width * image.height * 3);
  for (std::size_t y = 0; y < image.height; ++y)
    for (std::size_t x = 0; x < image.width; ++x) {
      const std::array<double, 3> c = colour_of((y / scale) * width + x / scale);
      for (int k = 0; k < 3; ++k) image.rgb[(y * image.width + x) * 3 + std::size_t(k)] = byte(c[std::size_t(k)]);
    }
  return image;
}

}  // namespace

template <class T>
Image heatmap(const Tensor<T>& attributions, std::size_t scale, double percentile) {
  std::size_t h = 0, w = 0;
  const std::vector<double> a = per_pixel(attributions, h, w);
  const double top = magnitude_at(a, percentile);
  return blocks(h, w, scale, [&](std::size_t i) { return diverging(a[i] / top); });
}

template <class T>
Image overlay(const Tensor<T>& input, const Tensor<T>& attributions, double lo, double hi, std::size_t scale,
              double percentile) {
  std::size_t h = 0, w = 0, ih = 0, iw = 0;
  const std::vector<double> a = per_pixel(attributions, h, w);
  std::vector<double> gray = per_pixel(input, ih, iw);
  if (ih != h || iw != w) throw Error("overlay: the input and the attributions differ in size");
  const double channels = double(input.size() / (h * w));
  const double top = magnitude_at(a, percentile);
  return blocks(h, w, scale, [&](std::size_t i) {
    const double g = 0.35 + 0.5 * ((gray[i] / channels - lo) / (hi - lo));  // the image, dimmed
    const double s = std::min(1.0, std::abs(a[i]) / top);
    const std::array<double, 3> tint = a[i] >= 0 ? std::array<double, 3>{1.0, 0.1, 0.05} : std::array<double, 3>{0.1, 0.35, 1.0};
    return std::array<double, 3>{g * (1 - s) + tint[0] * s, g * (1 - s) + tint[1] * s, g * (1 - s) + tint[2] * s};
  });
}

Image line_picture(const std::vector<double>& x, const std::vector<std::vector<double>>& series,
           const std::vector<std::array<std::uint8_t, 3>>& colours, std::size_t width, std::size_t height) {
  Image image;
  image.width = width;
  image.height = height;
  image.rgb.assign(width * height * 3, 255);
  double lo = 0, hi = 0;
  for (const auto& s : series)
    for (double v : s) lo = std::min(lo, v), hi = std::max(hi, v);
  if (hi == lo) hi = lo + 1;
  const double pad = 0.05 * (hi - lo);
  lo -= pad, hi += pad;
  const std::size_t margin = 12;
  auto px = [&](double v) { return double(margin) + v * double(width - 2 * margin); };
  auto py = [&](double v) { return double(height - margin) - (v - lo) / (hi - lo) * double(height - 2 * margin); };
  auto put = [&](long x0, long y0, std::array<std::uint8_t, 3> c) {
    if (x0 < 0 || y0 < 0 || x0 >= long(width) || y0 >= long(height)) return;
    for (int k = 0; k < 3; ++k) image.rgb[(std::size_t(y0) * width + std::size_t(x0)) * 3 + std::size_t(k)] = c[std::size_t(k)];
  };
  // grid: tenths of alpha, and the zero line
  for (int i = 0; i <= 10; ++i)
    for (std::size_t y = margin; y <= height - margin; ++y) put(long(px(i / 10.0)), long(y), {225, 225, 225});
  for (std::size_t xx = margin; xx <= width - margin; ++xx) put(long(xx), long(py(0)), {150, 150, 150});
  for (std::size_t s = 0; s < series.size(); ++s)
    for (std::size_t k = 1; k < x.size() && k < series[s].size(); ++k) {
      // a segment drawn as dots close enough to join
      const double x0 = px(x[k - 1]), y0 = py(series[s][k - 1]), x1 = px(x[k]), y1 = py(series[s][k]);
      const int steps = std::max(1, int(std::max(std::abs(x1 - x0), std::abs(y1 - y0))) * 2);
      for (int t = 0; t <= steps; ++t) {
        const double u = double(t) / steps;
        const long cx = long(x0 + u * (x1 - x0)), cy = long(y0 + u * (y1 - y0));
        put(cx, cy, colours[s]), put(cx + 1, cy, colours[s]), put(cx, cy + 1, colours[s]);
      }
    }
  return image;
}

void write_image(const std::string& path, const Image& image) { write_png(path, image.rgb, image.width, image.height, 3); }

template <class T>
std::vector<double> pixel_sums(const Tensor<T>& attributions) {
  std::size_t h = 0, w = 0;
  return per_pixel(attributions, h, w);
}

double magnitude_percentile(const std::vector<double>& values, double percentile) {
  return values.empty() ? 1.0 : magnitude_at(values, percentile);
}

template <class T>
Image heatmap_clipped(const Tensor<T>& attributions, double clip, std::size_t scale) {
  std::size_t h = 0, w = 0;
  const std::vector<double> a = per_pixel(attributions, h, w);
  const double top = clip > 0 && std::isfinite(clip) ? clip : 1.0;
  return blocks(h, w, scale, [&](std::size_t i) { return diverging(a[i] / top); });
}

template <class T>
Image picture(const Tensor<T>& input, double lo, double hi, std::size_t scale) {
  std::size_t h = 0, w = 0;
  const std::vector<double> gray = per_pixel(input, h, w);
  const std::size_t channels = input.size() / (h * w);
  const auto unit = [&](double v) { return hi > lo ? (v - lo) / (hi - lo) : v; };
  return blocks(h, w, scale, [&](std::size_t i) {
    if (channels == 3)
      return std::array<double, 3>{unit(double(input.data()[i])), unit(double(input.data()[h * w + i])),
                                   unit(double(input.data()[2 * h * w + i]))};
    const double g = unit(gray[i] / double(channels));
    return std::array<double, 3>{g, g, g};
  });
}

template <class T>
Image top_fraction(const Tensor<T>& input, const Tensor<T>& attributions, double fraction, double lo, double hi,
                   std::size_t scale) {
  const std::vector<double> a = pixel_sums(attributions);
  std::vector<std::size_t> order(a.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](std::size_t i, std::size_t j) { return a[i] > a[j]; });
  const std::size_t kept = std::min(a.size(), static_cast<std::size_t>(std::ceil(fraction * double(a.size()))));
  std::vector<bool> keep(a.size(), false);
  for (std::size_t k = 0; k < kept; ++k) keep[order[k]] = true;
  const Image shown = picture(input, lo, hi, scale);
  Image out = shown;
  const std::size_t w = out.width / scale;
  for (std::size_t y = 0; y < out.height; ++y)
    for (std::size_t x = 0; x < out.width; ++x)
      if (!keep[(y / scale) * w + x / scale]) {
        std::uint8_t* p = &out.rgb[(y * out.width + x) * 3];
        p[0] = 200, p[1] = 208, p[2] = 222;  // removed: a flat gray-blue no image pixel is likely to be
      }
  return out;
}

template Image heatmap(const Tensor<float>&, std::size_t, double);
template Image heatmap(const Tensor<double>&, std::size_t, double);
template Image overlay(const Tensor<float>&, const Tensor<float>&, double, double, std::size_t, double);
template Image overlay(const Tensor<double>&, const Tensor<double>&, double, double, std::size_t, double);
template std::vector<double> pixel_sums(const Tensor<float>&);
template std::vector<double> pixel_sums(const Tensor<double>&);
template Image heatmap_clipped(const Tensor<float>&, double, std::size_t);
template Image heatmap_clipped(const Tensor<double>&, double, std::size_t);
template Image picture(const Tensor<float>&, double, double, std::size_t);
template Image picture(const Tensor<double>&, double, double, std::size_t);
template Image top_fraction(const Tensor<float>&, const Tensor<float>&, double, double, double, std::size_t);
template Image top_fraction(const Tensor<double>&, const Tensor<double>&, double, double, double, std::size_t);

}  // namespace ax::attr
