// Baselines x': where the path starts. All live in the input's space (pixels), inside the
// model's input range [lo, hi] when the model file gives one; those that need the range are
// refused without it. Random ones draw from the one seeded generator (random.hpp).
//
//   zero           0
//   constant:V     V everywhere (refused outside the range)
//   white          the range's top, hi
//   mean           the input's own mean, per channel; mean:PATH the mean of a data set, per channel
//   uniform        U(lo, hi) per value                                    (one per sample)
//   gaussian:S     x + N(0, S^2) per value, clipped to the range           (one per sample)
//   blur:S         x filtered by a Gaussian of standard deviation S pixels (0 to 1000), per channel
//   maxdist        the point of the range farthest from x in L1: lo where x is nearer hi, else hi
//   file:PATH      a .npy or .png of the input's shape
//   data:PATH      rows of a data set (.npy [D, input shape]): `count` drawn at random, or all
#pragma once

#include "../nn/model_spec.hpp"
#include "random.hpp"

#include "../autodiff/tensor.hpp"

#include <optional>
#include <string>

namespace ax::attr {

// The widest blur: sigma in pixels (its kernel spans 8 sigma + 1 taps).
constexpr double max_blur_sigma = 1000;

struct BaselineSpec {
  enum class Kind { zero, constant, white, mean, uniform, gaussian, blur, maxdist, file, data };
  Kind kind = Kind::zero;
  double value = 0;  // constant: V; gaussian, blur: sigma
  std::string path;  // file, data; mean (empty: the input's own mean)
  bool random() const { return kind == Kind::uniform || kind == Kind::gaussian || kind == Kind::data; }
};

// Parses a SPEC as listed above; throws Error naming the spec and what was expected.
BaselineSpec parse_baseline(const std::string& spec);

using Range = std::optional<std::pair<double, double>>;

// The baselines for input x [input shape]: [B, input shape], B = 1 for the deterministic kinds
// and `count` for the random ones (data: `count` rows drawn, or every row when count is 0).
template <class T>
Tensor<T> make_baselines(const BaselineSpec& spec, const Tensor<T>& x, const Range& range, std::size_t count,
                         Random& random);

// One baseline [input shape] of a deterministic kind; throws for the random ones, whose meaning
// is a set (make_baselines).
template <class T>
Tensor<T> make_baseline(const BaselineSpec& spec, const Tensor<T>& x, const Range& range);

// A Gaussian blur of an image [C, H, W], each channel on its own, edges reflected (as
// scipy.ndimage.gaussian_filter's default mode); the kernel is cut at 4 sigma. Sigma 0 copies;
// sigma must be at most max_blur_sigma.
template <class T>
Tensor<T> gaussian_blur(const Tensor<T>& image, double sigma);

}  // namespace ax::attr
