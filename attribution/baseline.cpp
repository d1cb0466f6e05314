#include "baseline.hpp"

#include "io.hpp"

#include "../autodiff/tape.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>

namespace ax::attr {
namespace {

double parse_number(const std::string& text, const std::string& spec) {
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || !std::isfinite(v))
    throw Error("baseline '" + spec + "': '" + text + "' is not a finite number");
  return v;
}

const std::pair<double, double>& need_range(const Range& range, const char* kind) {
  if (!range) throw Error(std::string("baseline '") + kind + "' needs the model's input range, and the model file gives none");
  return *range;
}

// One [1, input shape] baseline filled by f(index).
template <class T, class F>
Tensor<T> single(const Tensor<T>& x, F f) {
  Shape shape{1};
  for (std::size_t d : x.shape()) shape.push_back(d);
  Tensor<T> b(shape);
  for (std::size_t i = 0; i < x.size(); ++i) b.data()[i] = T(f(i));
  return b;
}

// Channels are the first per-sample dimension of an image [C, H, W] (or of [C, ...]); a flat
// input is one channel.
std::pair<std::size_t, std::size_t> channels_and_size(const Shape& shape) {
  const std::size_t total = numel(shape);
  const std::size_t channels = shape.size() >= 2 ? shape[0] : 1;
  return {channels, total / channels};
}

// Reflects an index into [0, n) as scipy's 'reflect' mode: d c b a | a b c d | d c b a
std::ptrdiff_t reflect(std::ptrdiff_t i, std::ptrdiff_t n) {
  const std::ptrdiff_t period = 2 * n;
  i %= period;
  if (i < 0) i += period;
  return i < n ? i : period - 1 - i;
}

}  // namespace

BaselineSpec parse_baseline(const std::string& spec) {
  const std::size_t colon = spec.find(':');
  const std::string name = spec.substr(0, colon);
  const std::string arg = colon == std::string::npos ? "" : spec.substr(colon + 1);
  const bool has_arg = colon != std::string::npos;
  using Kind = BaselineSpec::Kind;
  BaselineSpec b;
  auto no_arg = [&](Kind k) {
    if (has_arg) throw Error("baseline '" + spec + "': '" + name + "' takes no argument");
    b.kind = k;
  };
  auto number = [&](Kind k, bool positive) {
    if (!has_arg) throw Error("baseline '" + spec + "': expected " + name + ":NUMBER");
    b.kind = k;
    b.value = parse_number(arg, spec);
    if (positive && b.value < 0) throw Error("baseline '" + spec + "': sigma must be >= 0");
    if (k == Kind::blur && b.value > max_blur_sigma)
      throw Error("baseline '" + spec + "': blur's sigma must be at most " + std::to_string(int(max_blur_sigma)) + " pixels");
  };
  auto path = [&](Kind k, bool required) {
    if (required && (!has_arg || arg.empty())) throw Error("baseline '" + spec + "': expected " + name + ":PATH");
    b.kind = k;
    b.path = arg;
  };
  if (name == "zero") no_arg(Kind::zero);
  else if (name == "white") no_arg(Kind::white);
  else if (name == "uniform") no_arg(Kind::uniform);
  else if (name == "maxdist") no_arg(Kind::maxdist);
  else if (name == "constant") number(Kind::constant, false);
  else if (name == "gaussian") number(Kind::gaussian, true);
  else if (name == "blur") number(Kind::blur, true);
  else if (name == "mean") path(Kind::mean, false);
  else if (name == "file") path(Kind::file, true);
  else if (name == "data") path(Kind::data, true);
  else
    throw Error("unknown baseline '" + spec +
                "'; expected zero, white, constant:V, mean, mean:PATH, uniform, gaussian:SIGMA, blur:SIGMA, maxdist, "
                "file:PATH or data:PATH");
  return b;
}

template <class T>
Tensor<T> gaussian_blur(const Tensor<T>& image, double sigma) {
  if (image.dimension() != 3) throw Error("blur needs an image input [C, H, W], got shape " + to_string(image.shape()));
  if (sigma == 0) return image;
  if (!(sigma > 0 && sigma <= max_blur_sigma))
    throw Error("blur: sigma " + std::to_string(sigma) + " is not in (0, " + std::to_string(int(max_blur_sigma)) + "]");
  const std::ptrdiff_t radius = static_cast<std::ptrdiff_t>(std::ceil(4 * sigma));
  std::vector<double> kernel(static_cast<std::size_t>(2 * radius + 1));
  double total = 0;
  for (std::ptrdiff_t k = -radius; k <= radius; ++k)
    total += kernel[static_cast<std::size_t>(k + radius)] = std::exp(-0.5 * double(k * k) / (sigma * sigma));
  for (double& w : kernel) w /= total;
  const std::ptrdiff_t C = static_cast<std::ptrdiff_t>(image.shape()[0]), H = static_cast<std::ptrdiff_t>(image.shape()[1]),
                       W = static_cast<std::ptrdiff_t>(image.shape()[2]);
  Tensor<double> rows(image.shape());
  Tensor<T> out(image.shape());
  // separable: along each row, then along each column; [C, H, W]
  for (std::ptrdiff_t c = 0; c < C; ++c)
    for (std::ptrdiff_t y = 0; y < H; ++y)
      for (std::ptrdiff_t x = 0; x < W; ++x) {
        double s = 0;
        for (std::ptrdiff_t k = -radius; k <= radius; ++k)
          s += kernel[static_cast<std::size_t>(k + radius)] * double(image(c, y, reflect(x + k, W)));
        rows(c, y, x) = s;
      }
  for (std::ptrdiff_t c = 0; c < C; ++c)
    for (std::ptrdiff_t y = 0; y < H; ++y)
      for (std::ptrdiff_t x = 0; x < W; ++x) {
        double s = 0;
        for (std::ptrdiff_t k = -radius; k <= radius; ++k)
          s += kernel[static_cast<std::size_t>(k + radius)] * rows(c, reflect(y + k, H), x);
        out(c, y, x) = T(s);
      }
  return out;
}

template <class T>
Tensor<T> make_baselines(const BaselineSpec& spec, const Tensor<T>& x, const Range& range, std::size_t count,
                         Random& random) {
  using Kind = BaselineSpec::Kind;
  const std::size_t size = x.size();
  Shape batch_shape{std::max<std::size_t>(count, 1)};
  for (std::size_t d : x.shape()) batch_shape.push_back(d);
  if (!fits_elements(batch_shape))
    throw Error("baseline: " + std::to_string(count) + " baselines of shape " + to_string(x.shape()) + " hold more than 2^32 values");
  switch (spec.kind) {
    case Kind::zero: return single(x, [](std::size_t) { return 0.0; });
    case Kind::constant:
      if (range && (spec.value < range->first || spec.value > range->second))
        throw Error("baseline constant:" + std::to_string(spec.value) + " is outside the input range [" +
                    std::to_string(range->first) + ", " + std::to_string(range->second) + "]");
      // with no range to bound it, V must still be a float in a float run (V itself is finite)
      if (std::abs(spec.value) > double(std::numeric_limits<T>::max()))
        throw Error("baseline 'constant:" + std::to_string(spec.value) + "': out of float range (at most " +
                    std::to_string(double(std::numeric_limits<T>::max())) + " in magnitude)");
      return single(x, [&](std::size_t) { return spec.value; });
    case Kind::white: {
      const double hi = need_range(range, "white").second;
      return single(x, [&](std::size_t) { return hi; });
    }
    case Kind::maxdist: {
      const auto [lo, hi] = need_range(range, "maxdist");
      return single(x, [&, lo = lo, hi = hi](std::size_t i) {
        const double v = double(x.data()[i]);
        return v - lo > hi - v ? lo : hi;
      });
    }
    case Kind::blur: {
      Tensor<T> blurred = gaussian_blur(x, spec.value);
      return single(x, [&](std::size_t i) { return double(blurred.data()[i]); });
    }
    case Kind::mean: {
      // per-channel means of the input itself, or of every row of a data set
      const auto [channels, per_channel] = channels_and_size(x.shape());
      std::vector<double> mean(channels, 0.0);
      if (spec.path.empty()) {
        for (std::size_t i = 0; i < size; ++i) mean[i / per_channel] += double(x.data()[i]) / double(per_channel);
      } else {
        const Tensor<T> data = read_npy<T>(spec.path);
        if (data.dimension() != x.dimension() + 1 || data.size() != data.shape()[0] * size || data.shape()[0] == 0)
          throw Error(spec.path + ": has shape " + to_string(data.shape()) + ", expected [D] + " + to_string(x.shape()));
        const double n = double(data.shape()[0] * per_channel);
        for (std::size_t i = 0; i < data.size(); ++i) mean[(i % size) / per_channel] += double(data.data()[i]) / n;
      }
      const std::size_t values_per_channel = per_channel;  // C++17 lambdas cannot capture a binding
      return single(x, [&](std::size_t i) { return mean[i / values_per_channel]; });
    }
    case Kind::file: {
      const Tensor<T> b = read_array<T>(spec.path, x.shape());
      return single(x, [&](std::size_t i) { return double(b.data()[i]); });
    }
    case Kind::uniform: {
      const auto [lo, hi] = need_range(range, "uniform");
      Tensor<T> b(batch_shape);
      for (T& v : b) v = T(random.uniform(lo, hi));
      return b;
    }
    case Kind::gaussian: {
      const auto [lo, hi] = need_range(range, "gaussian");
      Tensor<T> b(batch_shape);
      for (std::size_t j = 0; j < batch_shape[0]; ++j)
        for (std::size_t i = 0; i < size; ++i)
          b.data()[j * size + i] = T(std::clamp(double(x.data()[i]) + spec.value * random.normal(), lo, hi));
      return b;
    }
    case Kind::data: {
      const Tensor<T> data = read_npy<T>(spec.path);
      if (data.dimension() != x.dimension() + 1 || data.shape()[0] == 0 || data.size() != data.shape()[0] * size)
        throw Error(spec.path + ": has shape " + to_string(data.shape()) + ", expected [D] + " + to_string(x.shape()));
      if (count == 0) return data;
      Tensor<T> b(batch_shape);
      for (std::size_t j = 0; j < count; ++j) {
        const std::size_t row = static_cast<std::size_t>(random.below(data.shape()[0]));
        std::copy(data.data() + row * size, data.data() + (row + 1) * size, b.data() + j * size);
      }
      return b;
    }
  }
  throw Error("unknown baseline kind");
}

template <class T>
Tensor<T> make_baseline(const BaselineSpec& spec, const Tensor<T>& x, const Range& range) {
  if (spec.random()) throw Error("this needs one deterministic baseline, not a random one (uniform, gaussian, data)");
  Random unused(0);
  Tensor<T> b = make_baselines(spec, x, range, 1, unused);
  b.reshape(x.shape());
  return b;
}

template Tensor<float> make_baseline(const BaselineSpec&, const Tensor<float>&, const Range&);
template Tensor<double> make_baseline(const BaselineSpec&, const Tensor<double>&, const Range&);
template Tensor<float> make_baselines(const BaselineSpec&, const Tensor<float>&, const Range&, std::size_t, Random&);
template Tensor<double> make_baselines(const BaselineSpec&, const Tensor<double>&, const Range&, std::size_t, Random&);
template Tensor<float> gaussian_blur(const Tensor<float>&, double);
template Tensor<double> gaussian_blur(const Tensor<double>&, double);

}  // namespace ax::attr
