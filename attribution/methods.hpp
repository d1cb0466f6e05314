// The attribution methods, each a few batched passes of a Engine (docs/design.md,
// "Paths and Integrated Gradients"). Every result reports completeness: F(x), F(x'), the sum of the
// attributions, the gap delta = sum - (F(x) - F(x')) and |delta| / |F(x) - F(x')|.
#pragma once

#include "exact.hpp"
#include "path.hpp"
#include "target.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace ax::attr {

template <class T>
struct Attribution {
  Tensor<T> values;           // one attribution per input value (the input's shape)
  std::string method;         // "gradient", "ig", ...
  std::string rule;           // IG's quadrature rule; empty for the others
  std::size_t steps = 0;      // path points or samples evaluated for the result
  int target = -1;            // the class explained
  double f_input = 0, f_baseline = 0;  // F(x), F(x') (expected gradients: the mean over baselines)
  double sum = 0, delta = 0, relative_delta = 0;
  double standard_error = 0;  // expected gradients, SmoothGrad family: Monte-Carlo SE of the sum
  std::uint64_t seed = 0;     // the random methods' seed
  std::size_t pieces = 0;     // exact IG: the number of linear pieces of the path
  double seconds = 0;
  // Path diagnostics (IG, on request): at each node a_k, F(g(a_k)) and the attributions'
  // cumulative sum up to a_k. The curve shows whether the quadrature has converged.
  std::vector<double> path_alpha, path_f, path_cumulative;
};

// The most samples expected gradients and SmoothGrad may draw (their bookkeeping grows with it).
constexpr std::size_t max_samples = std::size_t(1) << 20;

struct IgOptions {
  Rule rule = Rule::gausslegendre;
  std::size_t steps = 50;
  double tolerance = 0;          // > 0: double the steps until relative_delta <= tolerance
  std::size_t max_steps = 4096;  // the cap of the adaptive doubling (at most max_steps_cap)
  bool diagnostics = false;      // fill path_alpha, path_f, path_cumulative
  ExactOptions exact;            // Rule::exact: the piece cap, Gauss-Legendre nodes per piece
};

// dF/dx (its absolute value when `absolute`). Completeness is reported against `baseline`.
template <class T>
Attribution<T> gradient(Engine<T>& f, const Tensor<T>& x, const Tensor<T>& baseline, bool absolute = false);

// DeepLIFT with the rescale rule (Shrikumar et al., 2017): (x - x') times the multipliers of one
// rescale pass over the tape (Engine::rescale_multipliers). One forward of [x, x'] and one
// backward, so as cheap as a gradient. On networks of affine ops and elementwise non-linearities
// the attributions sum to F(x) - F(x') to rounding ("summation to delta"); max-pooling follows
// Captum's rule (ops/pool.hpp), which keeps the sum unless a window's maximum has x ~ x'.
template <class T>
Attribution<T> deeplift(Engine<T>& f, const Tensor<T>& x, const Tensor<T>& baseline);

// x * dF/dx.
template <class T>
Attribution<T> input_x_gradient(Engine<T>& f, const Tensor<T>& x, const Tensor<T>& baseline);

// (x - x') * sum_k w_k dF/dx(x' + a_k (x - x')), with the rule's nodes and weights; with a
// tolerance, adaptive (IgOptions::tolerance).
template <class T>
Attribution<T> integrated_gradients(Engine<T>& f, const Tensor<T>& x, const Tensor<T>& baseline,
                                    const IgOptions& options = {});

// The mean of IG over several baselines [B, input shape]; F(x') is the mean of F over them.
template <class T>
Attribution<T> integrated_gradients_multi(Engine<T>& f, const Tensor<T>& x, const Tensor<T>& baselines,
                                          const IgOptions& options = {});

// Expected gradients: the mean over `samples` draws of a baseline x' from `data` [D, input
// shape] and a ~ U(0, 1) of (x - x') * dF/dx(x' + a (x - x')).
template <class T>
Attribution<T> expected_gradients(Engine<T>& f, const Tensor<T>& x, const Tensor<T>& data,
                                  std::size_t samples, std::uint64_t seed);

enum class SmoothKind { smoothgrad, smoothgrad_sq, vargrad };
const char* smooth_name(SmoothKind kind);

// SmoothGrad: over `samples` draws eps ~ N(0, sigma^2) of g = dF/dx(x + eps): the mean of g
// (smoothgrad), of g^2 (smoothgrad_sq) or the variance of g (vargrad). `sigma` is absolute, or
// relative to the input's range (hi - lo) when `relative_sigma`.
template <class T>
Attribution<T> smoothgrad(Engine<T>& f, const Tensor<T>& x, const Tensor<T>& baseline, SmoothKind kind,
                          double sigma, bool relative_sigma, std::size_t samples, std::uint64_t seed);

// Layer IG: IG credited to the neurons of the hidden node `layer`, along the straight path from
// h(x') to h(x) in that node's space while the rest of the network sees x (Captum's
// LayerIntegratedGradients): (h(x) - h(x')) * sum_k w_k dF/dh. Its sum is F(x) minus F with h set
// to h(x'), which is F(x') unless other branches bypass h. Quadrature rules only.
template <class T>
Attribution<T> layer_integrated_gradients(Engine<T>& f, const Tensor<T>& x, const Tensor<T>& baseline,
                                          const std::string& layer, const IgOptions& options = {});

// Conductance (Dhamdhere et al., 2018): the part of IG that flows through each neuron of `layer`,
// sum_k w_k dF/dh(g(a_k)) * dh/da(g(a_k)) on the input's straight path, dh/da from the tangent
// pass. Exact with Rule::exact (both factors are constant on each linear piece). Its sum is
// F(x) - F(x') when every path from the input to F goes through `layer`.
template <class T>
Attribution<T> conductance(Engine<T>& f, const Tensor<T>& x, const Tensor<T>& baseline,
                           const std::string& layer, const IgOptions& options = {});

// Every method throws NonFinite rather than return a NaN or Inf in F, an attribution or the
// sum, naming the node where it first appeared (Engine's check after each chunk).
//
// Throws Error("<what>: NaN or Inf at index i") unless every value is finite.
template <class T>
void check_finite(const Tensor<T>& t, const std::string& what);

}  // namespace ax::attr
