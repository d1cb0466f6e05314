#include "methods.hpp"

#include "random.hpp"
#include "../autodiff/kernels/conv.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <optional>

namespace ax::attr {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

template <class T>
void check_same_shape(const Engine<T>& f, const Tensor<T>& t, const char* what) {
  if (t.shape() != f.input_shape())
    throw Error(std::string(what) + " has shape " + to_string(t.shape()) + ", the model expects " +
                to_string(f.input_shape()));
}

// F at x and at x', and the completeness figures of `values` against them.
template <class T>
void report_completeness(Attribution<T>& a, double f_input, double f_baseline) {
  a.f_input = f_input;
  a.f_baseline = f_baseline;
  a.sum = 0;
  for (T v : a.values) a.sum += double(v);
  a.delta = a.sum - (f_input - f_baseline);
  const double change = std::abs(f_input - f_baseline);
  a.relative_delta = change > 0 ? std::abs(a.delta) / change : std::abs(a.delta);
  // F and every gradient were checked finite chunk by chunk (Engine names the node
  // where a NaN or Inf appears); what is left is the arithmetic of the method itself
  if (!std::isfinite(f_input) || !std::isfinite(f_baseline))
    throw NonFinite(a.method + ": F(x) = " + std::to_string(f_input) + ", F(x') = " + std::to_string(f_baseline) + " is not finite");
  for (std::size_t i = 0; i < a.values.size(); ++i)
    if (!std::isfinite(a.values.data()[i]))
      throw NonFinite(a.method + ": attribution " + std::to_string(i) + " is " + (std::isnan(a.values.data()[i]) ? "NaN" : "Inf") +
                      " although every gradient is finite: the method's products overflow the precision");
  if (!std::isfinite(a.sum) || !std::isfinite(a.delta))
    throw NonFinite(a.method + ": the sum of the attributions overflows");
}

void check_samples(std::size_t samples, const char* method) {
  if (samples > max_samples)
    throw Error(std::string(method) + ": " + std::to_string(samples) + " samples is more than the cap of " +
                std::to_string(max_samples));
}

// F at single points, without gradients.
template <class T>
std::vector<double> values_at(Engine<T>& f, std::initializer_list<const Tensor<T>*> points) {
  Shape shape{points.size()};
  for (std::size_t d : f.input_shape()) shape.push_back(d);
  Tensor<T> batch(shape);
  std::size_t at = 0;
  for (const Tensor<T>* p : points) at = static_cast<std::size_t>(std::copy(p->begin(), p->end(), batch.data() + at) - batch.data());
  std::vector<double> values;
  f.evaluate(batch, values, nullptr);
  return values;
}

// Points [n, input shape], filled row by row by `fill(row index, row pointer)`.
template <class T, class Fill>
void make_points(const Engine<T>& f, std::size_t n, Tensor<T>& points, Fill fill) {
  Shape shape{n};
  for (std::size_t d : f.input_shape()) shape.push_back(d);
  points.resize(shape);
  const std::size_t size = numel(f.input_shape());
  for (std::size_t i = 0; i < n; ++i) fill(i, points.data() + i * size);
}

// One pass of IG's sum over a quadrature: sum_k w_k dF/dx(x' + a_k (x - x')), evaluated in groups
// of the engine's chunk size on its line from x' to x (Engine::begin_line): the sum is formed at
// the line's frontier (the input, or the end of the network's affine prefix) and taken back to
// the input once. Gradients already in `cache` (keyed by the exact alpha: equal fractions round
// to equal doubles) are reused; new ones are added while the cache has room.
template <class T>
struct PathCache {
  std::map<double, std::pair<double, Tensor<T>>> at;  // alpha -> (F, dF/dz at the frontier)
  std::size_t bytes = 0, limit = 0;
};

template <class T>
Tensor<T> weighted_gradient_sum(Engine<T>& f, const Tensor<T>& x, const Tensor<T>& baseline,
                                const Quadrature& q, PathCache<T>& cache, Attribution<T>* diagnostics) {
  f.begin_line(x, baseline);
  const std::size_t width = f.line_width();
  std::vector<double> dz(width);  // dz/da at the frontier, z(1) - z(0)
  for (std::size_t i = 0; i < width; ++i) dz[i] = double(f.line_end()[i]) - double(f.line_start()[i]);
  std::vector<T> total(width, T(0));
  std::vector<double> f_at(q.alphas.size()), dot_at(q.alphas.size());
  // the alphas that need evaluating, in groups of the chunk size
  std::vector<std::size_t> todo;
  std::vector<char> cached(q.alphas.size(), 0);
  for (std::size_t k = 0; k < q.alphas.size(); ++k) {
    cached[k] = cache.at.count(q.alphas[k]) > 0;
    if (!cached[k]) todo.push_back(k);
  }

  // The weighted sum, and for the diagnostics dF/da = g . dz/da at the frontier, summed in 8
  // independent lanes so that the loop vectorizes (a frontier holds 10^4 values and more)
  auto accumulate = [&](std::size_t k, double f_value, const T* g) {
    const T w = T(q.weights[k]);
    T* out = total.data();
    // [frontier values]
    for (std::size_t i = 0; i < width; ++i) out[i] += w * g[i];
    f_at[k] = f_value;
    if (!diagnostics) return;
    constexpr std::size_t lanes = 8;
    double dot[lanes] = {};
    std::size_t i = 0;
    // [blocks of 8 frontier values]
    for (; i + lanes <= width; i += lanes)
      for (std::size_t l = 0; l < lanes; ++l) dot[l] += double(g[i + l]) * dz[i + l];
    for (; i < width; ++i) dot[0] += double(g[i]) * dz[i];
    double sum = 0;
    for (double d : dot) sum += d;
    dot_at[k] = q.weights[k] * sum;
  };

  // the points are summed in the rule's order whether cached or not, so that a sum reusing the
  // cache has the bits of one without it
  std::size_t summed = 0;  // the cached points before this index are summed
  auto sum_cached_before = [&](std::size_t end) {
    for (; summed < end; ++summed)
      if (cached[summed]) {
        const auto& [f_value, g] = cache.at.at(q.alphas[summed]);
        accumulate(summed, f_value, g.data());
      }
  };
  std::vector<double> values, alphas;
  const std::size_t group = std::max<std::size_t>(f.chunk(), 1);
  for (std::size_t begin = 0; begin < todo.size(); begin += group) {
    const std::size_t n = std::min(group, todo.size() - begin);
    alphas.resize(n);
    for (std::size_t i = 0; i < n; ++i) alphas[i] = q.alphas[todo[begin + i]];
    const T* grads = f.evaluate_line(alphas.data(), n, values);
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t k = todo[begin + i];
      const T* g = grads + i * width;
      if (cache.bytes + width * sizeof(T) <= cache.limit) {
        Tensor<T> kept(Shape{width});
        std::copy(g, g + width, kept.data());
        cache.at.emplace(q.alphas[k], std::pair{values[i], std::move(kept)});
        cache.bytes += width * sizeof(T);
      }
      sum_cached_before(k);
      accumulate(k, values[i], g);
      summed = k + 1;
    }
  }
  sum_cached_before(q.alphas.size());
  if (diagnostics) {
    diagnostics->path_alpha = q.alphas;
    diagnostics->path_f = f_at;
    diagnostics->path_cumulative.assign(q.alphas.size(), 0.0);
    double running = 0;
    for (std::size_t k = 0; k < q.alphas.size(); ++k) diagnostics->path_cumulative[k] = running += dot_at[k];
  }
  Tensor<T> gradient;
  f.line_gradient(total.data(), gradient);
  return gradient;
}

// The next step count of the adaptive doubling: chosen so that the nodes nest where the rule
// allows it (riemann_left/right: k/n within k/2n; trapezoid: k/(n-1) within k/(2n-2)).
std::size_t doubled(Rule rule, std::size_t n) { return rule == Rule::riemann_trapezoid ? 2 * n - 1 : 2 * n; }

// A method's result before its values: the input checked, the method named, the class resolved.
template <class T>
Attribution<T> checked_attribution(Engine<T>& f, const Tensor<T>& x, const std::string& method) {
  check_same_shape(f, x, "the input");
  check_finite(x, "the input");
  Attribution<T> a;
  a.method = method;
  a.target = f.resolve_class(x);
  return a;
}

}  // namespace

template <class T>
void check_finite(const Tensor<T>& t, const std::string& what) {
  for (std::size_t i = 0; i < t.size(); ++i)
    if (!std::isfinite(t.data()[i]))
      throw Error(what + ": " + (std::isnan(t.data()[i]) ? "NaN" : "Inf") + " at index " + std::to_string(i));
}

const char* smooth_name(SmoothKind kind) {
  switch (kind) {
    case SmoothKind::smoothgrad: return "smoothgrad";
    case SmoothKind::smoothgrad_sq: return "smoothgrad_sq";
    case SmoothKind::vargrad: return "vargrad";
  }
  return "?";
}

template <class T>
Attribution<T> gradient(Engine<T>& f, const Tensor<T>& x, const Tensor<T>& baseline, bool absolute) {
  const auto clock = Clock::now();
  Attribution<T> a = checked_attribution(f, x, "gradient");
  check_same_shape(f, baseline, "the baseline");
  Tensor<T> points;
  make_points(f, 1, points, [&](std::size_t, T* row) { std::copy(x.begin(), x.end(), row); });
  std::vector<double> values;
  f.evaluate(points, values, &a.values);
  a.values.reshape(x.shape());
  if (absolute)
    for (T& v : a.values) v = std::abs(v);
  a.steps = 1;
  report_completeness(a, values[0], values_at(f, {&baseline})[0]);
  a.seconds = seconds_since(clock);
  return a;
}

template <class T>
Attribution<T> input_x_gradient(Engine<T>& f, const Tensor<T>& x, const Tensor<T>& baseline) {
  const auto clock = Clock::now();
  Attribution<T> a = gradient(f, x, baseline, false);
  a.method = "inputxgradient";
  for (std::size_t i = 0; i < x.size(); ++i) a.values.data()[i] *= x.data()[i];
  report_completeness(a, a.f_input, a.f_baseline);
  a.seconds = seconds_since(clock);
  return a;
}

template <class T>
Attribution<T> deeplift(Engine<T>& f, const Tensor<T>& x, const Tensor<T>& baseline) {
  const auto clock = Clock::now();
  Attribution<T> a = checked_attribution(f, x, "deeplift");
  check_same_shape(f, baseline, "the baseline");
  check_finite(baseline, "the baseline");
  double f_x = 0, f_baseline = 0;
  f.rescale_multipliers(x, baseline, a.values, f_x, f_baseline);
  for (std::size_t i = 0; i < x.size(); ++i) a.values.data()[i] *= x.data()[i] - baseline.data()[i];
  a.steps = 2;
  report_completeness(a, f_x, f_baseline);
  a.seconds = seconds_since(clock);
  return a;
}

template <class T>
Attribution<T> integrated_gradients(Engine<T>& f, const Tensor<T>& x, const Tensor<T>& baseline,
                                    const IgOptions& options) {
  const auto clock = Clock::now();
  // exact IG keeps the direct convolutions: Winograd's rounding adds breakpoints to its search
  std::optional<kernels::DirectConvolutions> direct;
  if (options.rule == Rule::exact) direct.emplace();
  Attribution<T> a = checked_attribution(f, x, "ig");
  check_same_shape(f, baseline, "the baseline");
  check_finite(baseline, "the baseline");
  a.rule = rule_name(options.rule);
  const std::vector<double> ends = values_at(f, {&x, &baseline});
  PathCache<T> cache;
  // reuse only pays when adaptive; keep it within the engine's memory budget
  if (options.tolerance > 0) cache.limit = f.chunk() * f.bytes_per_point() / 2;
  std::size_t steps = options.steps;
  if (options.rule == Rule::exact && exact_search_applies(f)) {
    // one backward pass per linear piece, the integral over each piece exact (exact.hpp)
    const ExactPath<T> path = exact_path(f, x, baseline, options.exact);
    a.values.resize(x.shape());
    for (std::size_t i = 0; i < x.size(); ++i) a.values.data()[i] = (x.data()[i] - baseline.data()[i]) * path.gradient.data()[i];
    report_completeness(a, ends[0], ends[1]);
    a.pieces = a.steps = path.pieces;
    if (options.diagnostics) {
      a.path_alpha = path.alphas;
      a.path_f = path.f;
      double running = 0;
      for (double d : path.weighted_dot) a.path_cumulative.push_back(running += d);
    }
    a.seconds = seconds_since(clock);
    return a;
  }
  const bool exact = options.rule == Rule::exact;  // on a network with branches: the reference search
  for (;;) {
    // exact: one gradient per linear piece (Gauss-Legendre inside each piece for prob/logprob)
    const Quadrature q = exact ? exact_quadrature(f, x, baseline, options.exact, a.pieces) : quadrature(options.rule, steps);
    const Tensor<T> g = weighted_gradient_sum(f, x, baseline, q, cache, options.diagnostics ? &a : nullptr);
    a.values.resize(x.shape());
    for (std::size_t i = 0; i < x.size(); ++i) a.values.data()[i] = (x.data()[i] - baseline.data()[i]) * g.data()[i];
    report_completeness(a, ends[0], ends[1]);
    a.steps = q.alphas.size();
    if (exact) break;
    const std::size_t next = doubled(options.rule, steps);
    if (options.tolerance <= 0 || a.relative_delta <= options.tolerance || next > std::min(options.max_steps, max_steps_cap))
      break;
    steps = next;
  }
  a.seconds = seconds_since(clock);
  return a;
}

template <class T>
Attribution<T> integrated_gradients_multi(Engine<T>& f, const Tensor<T>& x, const Tensor<T>& baselines,
                                          const IgOptions& options) {
  const auto clock = Clock::now();
  if (baselines.dimension() != x.dimension() + 1 || baselines.shape()[0] == 0)
    throw Error("baselines have shape " + to_string(baselines.shape()) + ", expected [B] + " + to_string(x.shape()));
  const std::size_t count = baselines.shape()[0], size = x.size();
  Attribution<T> total;
  double f_baselines = 0;
  Tensor<T> one(x.shape());
  for (std::size_t b = 0; b < count; ++b) {
    std::copy(baselines.data() + b * size, baselines.data() + (b + 1) * size, one.data());
    Attribution<T> a = integrated_gradients(f, x, one, options);
    if (b == 0) total = a;
    else
      for (std::size_t i = 0; i < size; ++i) total.values.data()[i] += a.values.data()[i];
    f_baselines += a.f_baseline;
  }
  for (T& v : total.values) v /= T(count);
  total.method = "ig";
  total.path_alpha.clear();
  total.path_f.clear();
  total.path_cumulative.clear();
  report_completeness(total, total.f_input, f_baselines / double(count));
  total.seconds = seconds_since(clock);
  return total;
}

template <class T>
Attribution<T> expected_gradients(Engine<T>& f, const Tensor<T>& x, const Tensor<T>& data,
                                  std::size_t samples, std::uint64_t seed) {
  const auto clock = Clock::now();
  Attribution<T> a = checked_attribution(f, x, "eg");
  if (data.dimension() != x.dimension() + 1 || data.shape()[0] == 0)
    throw Error("the baseline data set has shape " + to_string(data.shape()) + ", expected [D] + " + to_string(x.shape()));
  if (samples < 2) throw Error("expected gradients needs at least 2 samples for its standard error");
  check_samples(samples, "expected gradients");
  check_finite(data, "the baseline data set");
  const std::size_t size = x.size(), rows = data.shape()[0];
  Random random(seed);
  a.seed = seed;
  a.values = zeros<T>(x.shape());
  // Per-sample contributions c_j = (x - x'_j) * dF/dx(x'_j + a_j (x - x'_j)); their sums give
  // the standard error, F at the drawn baselines gives the expected F(x').
  std::vector<std::size_t> drawn(samples);
  std::vector<T> alphas(samples);
  for (std::size_t j = 0; j < samples; ++j) {
    drawn[j] = static_cast<std::size_t>(random.below(rows));
    alphas[j] = T(random.uniform());
  }
  double sum_of_sums = 0, sum_of_squares = 0, f_baselines = 0;
  Tensor<T> points, grads, baseline_points;
  std::vector<double> values, baseline_values;
  const std::size_t group = std::max<std::size_t>(f.chunk(), 1);
  for (std::size_t begin = 0; begin < samples; begin += group) {
    const std::size_t n = std::min(group, samples - begin);
    auto baseline_row = [&](std::size_t j) { return data.data() + drawn[begin + j] * size; };
    make_points(f, n, points, [&](std::size_t j, T* row) {
      const T* b = baseline_row(j);
      for (std::size_t i = 0; i < size; ++i) row[i] = b[i] + alphas[begin + j] * (x.data()[i] - b[i]);
    });
    f.evaluate(points, values, &grads);
    make_points(f, n, baseline_points, [&](std::size_t j, T* row) { std::copy(baseline_row(j), baseline_row(j) + size, row); });
    f.evaluate(baseline_points, baseline_values, nullptr);
    for (std::size_t j = 0; j < n; ++j) {
      const T* b = baseline_row(j);
      const T* g = grads.data() + j * size;
      double contribution_sum = 0;
      // [input values]
      for (std::size_t i = 0; i < size; ++i) {
        const T c = (x.data()[i] - b[i]) * g[i];
        a.values.data()[i] += c;
        contribution_sum += double(c);
      }
      sum_of_sums += contribution_sum;
      sum_of_squares += contribution_sum * contribution_sum;
      f_baselines += baseline_values[j];
    }
  }
  const double m = double(samples);
  for (T& v : a.values) v /= T(m);
  const double mean = sum_of_sums / m;
  a.standard_error = std::sqrt(std::max(0.0, (sum_of_squares / m - mean * mean) * m / (m - 1)) / m);
  a.steps = samples;
  report_completeness(a, values_at(f, {&x})[0], f_baselines / m);
  a.seconds = seconds_since(clock);
  return a;
}

template <class T>
Attribution<T> smoothgrad(Engine<T>& f, const Tensor<T>& x, const Tensor<T>& baseline, SmoothKind kind,
                          double sigma, bool relative_sigma, std::size_t samples, std::uint64_t seed) {
  const auto clock = Clock::now();
  Attribution<T> a = checked_attribution(f, x, smooth_name(kind));
  check_same_shape(f, baseline, "the baseline");
  if (samples < 2) throw Error(std::string(smooth_name(kind)) + " needs at least 2 samples");
  check_samples(samples, smooth_name(kind));
  if (!(sigma >= 0) || !std::isfinite(sigma)) throw Error("sigma must be a finite number >= 0, got " + std::to_string(sigma));
  if (relative_sigma) {
    if (!f.graph().input.range)
      throw Error("a relative sigma needs the model's input range, and the model file gives none");
    sigma *= f.graph().input.range->second - f.graph().input.range->first;
  }
  const std::size_t size = x.size();
  Random random(seed);
  a.seed = seed;
  // Welford's running mean and squared deviations of g, per input value: stable for VarGrad
  Tensor<double> mean = zeros<double>(x.shape()), squares = zeros<double>(x.shape());
  double sum_of_sums = 0, sum_of_squares = 0;
  Tensor<T> points, grads;
  std::vector<double> values;
  std::size_t seen = 0;
  const std::size_t group = std::max<std::size_t>(f.chunk(), 1);
  for (std::size_t begin = 0; begin < samples; begin += group) {
    const std::size_t n = std::min(group, samples - begin);
    make_points(f, n, points, [&](std::size_t, T* row) {
      for (std::size_t i = 0; i < size; ++i) row[i] = x.data()[i] + T(sigma * random.normal());
    });
    f.evaluate(points, values, &grads);
    for (std::size_t j = 0; j < n; ++j) {
      ++seen;
      const T* g = grads.data() + j * size;
      double sample_sum = 0;
      // [input values]
      for (std::size_t i = 0; i < size; ++i) {
        const double gi = double(g[i]);
        const double d = gi - mean.data()[i];
        mean.data()[i] += d / double(seen);
        squares.data()[i] += d * (gi - mean.data()[i]);
        sample_sum += kind == SmoothKind::smoothgrad_sq ? gi * gi : gi;
      }
      sum_of_sums += sample_sum;
      sum_of_squares += sample_sum * sample_sum;
    }
  }
  const double m = double(samples);
  a.values.resize(x.shape());
  for (std::size_t i = 0; i < size; ++i) {
    const double var = squares.data()[i] / m;  // population variance, as Captum's VarGrad
    const double mu = mean.data()[i];
    a.values.data()[i] = T(kind == SmoothKind::smoothgrad ? mu : kind == SmoothKind::smoothgrad_sq ? var + mu * mu : var);
  }
  if (kind != SmoothKind::vargrad) {
    const double mu = sum_of_sums / m;
    a.standard_error = std::sqrt(std::max(0.0, (sum_of_squares / m - mu * mu) * m / (m - 1)) / m);
  }
  a.steps = samples;
  const std::vector<double> ends = values_at(f, {&x, &baseline});
  report_completeness(a, ends[0], ends[1]);
  a.seconds = seconds_since(clock);
  return a;
}

template <class T>
Attribution<T> layer_integrated_gradients(Engine<T>& f, const Tensor<T>& x, const Tensor<T>& baseline,
                                          const std::string& layer, const IgOptions& options) {
  const auto clock = Clock::now();
  Attribution<T> a = checked_attribution(f, x, "layer_ig");
  check_same_shape(f, baseline, "the baseline");
  check_finite(baseline, "the baseline");
  if (options.rule == Rule::exact) throw Error("layer IG has no exact rule: its path lies in the layer's space; use a quadrature rule");
  const Var<T> h = f.network().node(layer);
  a.rule = rule_name(options.rule);
  // h(x') and h(x)
  Tensor<T> h_baseline, h_input;
  f.forward_points(baseline.data(), 1, h);
  h_baseline = f.tape().value(h);
  f.forward_points(x.data(), 1, h);
  h_input = f.tape().value(h);
  const std::size_t per_h = h_input.size();
  const Quadrature q = quadrature(options.rule, options.steps);
  const std::size_t count = q.alphas.size();
  // every point is x; h is replaced by h(x') + a_k (h(x) - h(x')), plus the two ends
  Tensor<T> points, replacement, grads;
  make_points(f, count + 2, points, [&](std::size_t, T* row) { std::copy(x.begin(), x.end(), row); });
  Shape r_shape = h_input.shape();
  r_shape[0] = count + 2;
  replacement.resize(r_shape);
  for (std::size_t k = 0; k < count + 2; ++k) {
    const T alpha = k < count ? T(q.alphas[k]) : T(k == count ? 0 : 1);
    for (std::size_t j = 0; j < per_h; ++j)
      replacement.data()[k * per_h + j] = h_baseline.data()[j] + alpha * (h_input.data()[j] - h_baseline.data()[j]);
  }
  std::vector<double> values;
  f.evaluate_node(points, h, values, grads, &replacement);
  Shape v_shape = h_input.shape();
  v_shape.erase(v_shape.begin());
  a.values = zeros<T>(v_shape);
  for (std::size_t k = 0; k < count; ++k)
    for (std::size_t j = 0; j < per_h; ++j)
      a.values.data()[j] += T(q.weights[k]) * grads.data()[k * per_h + j];
  for (std::size_t j = 0; j < per_h; ++j) a.values.data()[j] *= h_input.data()[j] - h_baseline.data()[j];
  a.steps = count;
  report_completeness(a, values[count + 1], values[count]);
  a.seconds = seconds_since(clock);
  return a;
}

template <class T>
Attribution<T> conductance(Engine<T>& f, const Tensor<T>& x, const Tensor<T>& baseline,
                           const std::string& layer, const IgOptions& options) {
  const auto clock = Clock::now();
  std::optional<kernels::DirectConvolutions> direct;  // as integrated_gradients, for exact
  if (options.rule == Rule::exact) direct.emplace();
  Attribution<T> a = checked_attribution(f, x, "conductance");
  check_same_shape(f, baseline, "the baseline");
  check_finite(baseline, "the baseline");
  const Var<T> h = f.network().node(layer);
  a.rule = rule_name(options.rule);
  const Quadrature q = options.rule == Rule::exact ? exact_quadrature(f, x, baseline, options.exact, a.pieces)
                                                   : quadrature(options.rule, options.steps);
  const std::size_t size = x.size(), count = q.alphas.size();
  Tensor<T> direction(x.shape());
  for (std::size_t i = 0; i < size; ++i) direction.data()[i] = x.data()[i] - baseline.data()[i];
  Tensor<T> points, grads, tangents;
  std::vector<double> values;
  const std::size_t group = std::max<std::size_t>(f.chunk(), 1);
  for (std::size_t begin = 0; begin < count; begin += group) {
    const std::size_t n = std::min(group, count - begin);
    make_points(f, n, points, [&](std::size_t i, T* row) {
      const T alpha = T(q.alphas[begin + i]);
      for (std::size_t j = 0; j < size; ++j) row[j] = baseline.data()[j] + alpha * direction.data()[j];
    });
    f.evaluate_node(points, h, values, grads, nullptr, &direction, &tangents);
    const std::size_t per_h = grads.size() / n;
    if (begin == 0) {
      Shape v_shape = grads.shape();
      v_shape.erase(v_shape.begin());
      a.values = zeros<T>(v_shape);
    }
    // [points, neurons]: the flow through each neuron, dF/dh * dh/da, weighted
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = 0; j < per_h; ++j)
        a.values.data()[j] += T(q.weights[begin + i]) * grads.data()[i * per_h + j] * tangents.data()[i * per_h + j];
  }
  a.steps = count;
  const std::vector<double> ends = values_at(f, {&x, &baseline});
  report_completeness(a, ends[0], ends[1]);
  a.seconds = seconds_since(clock);
  return a;
}

#define AX_INSTANTIATE_METHODS(T)                                                                                  \
  template void check_finite(const Tensor<T>&, const std::string&);                                               \
  template Attribution<T> gradient(Engine<T>&, const Tensor<T>&, const Tensor<T>&, bool);                \
  template Attribution<T> input_x_gradient(Engine<T>&, const Tensor<T>&, const Tensor<T>&);              \
  template Attribution<T> deeplift(Engine<T>&, const Tensor<T>&, const Tensor<T>&);                      \
  template Attribution<T> integrated_gradients(Engine<T>&, const Tensor<T>&, const Tensor<T>&,          \
                                               const IgOptions&);                                                 \
  template Attribution<T> integrated_gradients_multi(Engine<T>&, const Tensor<T>&, const Tensor<T>&,    \
                                                     const IgOptions&);                                           \
  template Attribution<T> expected_gradients(Engine<T>&, const Tensor<T>&, const Tensor<T>&, std::size_t, \
                                             std::uint64_t);                                                      \
  template Attribution<T> smoothgrad(Engine<T>&, const Tensor<T>&, const Tensor<T>&, SmoothKind, double, \
                                     bool, std::size_t, std::uint64_t);                                           \
  template Attribution<T> layer_integrated_gradients(Engine<T>&, const Tensor<T>&, const Tensor<T>&,    \
                                                     const std::string&, const IgOptions&);                       \
  template Attribution<T> conductance(Engine<T>&, const Tensor<T>&, const Tensor<T>&, const std::string&, \
                                      const IgOptions&);

AX_INSTANTIATE_METHODS(float)
AX_INSTANTIATE_METHODS(double)

}  // namespace ax::attr
