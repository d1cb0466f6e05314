#include "report.hpp"

#include "../autodiff/ops/registry.hpp"

#include "../nn/graph.hpp"
#include "../nn/model_file.hpp"
#include "baseline.hpp"
#include "evaluate.hpp"
#include "../nn/data.hpp"
#include "explain.hpp"
#include "html.hpp"
#include "io.hpp"
#include "methods.hpp"
#include "plot.hpp"
#include "random.hpp"
#include "visualize.hpp"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>

namespace ax::attr {
namespace {

std::string stem(const std::string& path) { return std::filesystem::path(path).stem().string(); }

std::string fixed(double v, const char* format = "%.4g") {
  char text[64];
  std::snprintf(text, sizeof text, format, v);
  return text;
}

template <class T>
double relative_l2(const Tensor<T>& a, const Tensor<T>& reference) {
  double d = 0, r = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double e = double(a.data()[i]) - double(reference.data()[i]);
    d += e * e;
    r += double(reference.data()[i]) * double(reference.data()[i]);
  }
  return r > 0 ? std::sqrt(d / r) : std::sqrt(d);
}

// What the report explains. A model whose output is already a softmax (or log-softmax) is not
// given another: p is read from its output, and IG explains the logit before it.
struct Scheme {
  std::string logits;  // the node explained: the output, or the softmax's input
  Distribution output = Distribution::none;  // what the output holds, as its op's descriptor says
};

Scheme scheme_of(const nn::GraphSpec& graph) {
  for (const nn::NodeSpec& n : graph.nodes) {
    const ops::OpInfo* op = ops::find_file_op(n.op);
    if (n.name == graph.output && op && op->distribution != Distribution::none && n.inputs.size() == 1)
      return {n.inputs[0], op->distribution};
  }
  return {};
}

// The predicted class's probability from the scores of the node the model outputs.
double probability(const std::vector<double>& scores, int predicted, Distribution output) {
  const double top = scores[static_cast<std::size_t>(predicted)];
  if (output == Distribution::probabilities) return top;
  if (output == Distribution::log_probabilities) return std::exp(top);
  double total = 0;
  for (double v : scores) total += std::exp(v - top);
  return 1.0 / total;
}

// One picture name per image: the file's stem, with _2, _3, ... when two images share one.
std::vector<std::string> picture_names(const std::vector<std::string>& images) {
  std::vector<std::string> names;
  std::set<std::string> used;
  for (const std::string& image : images) {
    const std::string stem_name = stem(image);
    std::string name = stem_name;
    for (std::size_t k = 2; used.count(name); ++k) name = stem_name + "_" + std::to_string(k);
    used.insert(name);
    names.push_back(name);
  }
  return names;
}

// The page's settings, chosen so the main job (ten 28 x 28 images) stays well under 90 s.
constexpr double clip_percentile = 99;       // colour scales: |a| at this percentile of a row
constexpr std::size_t smoothgrad_samples = 32;
constexpr double smoothgrad_sigma = 0.15;    // relative to the input range
constexpr std::size_t eg_samples = 64;
constexpr std::size_t data_rows = 32;        // rows drawn from the data set, once per report
constexpr std::size_t grid_steps = 50;       // Gauss-Legendre: the baseline grid (and the gallery's blur)
constexpr std::size_t grid_samples = 4;      // random baselines averaged per grid entry
constexpr double gaussian_sigma = 0.25;      // the gaussian baseline's noise, in input units
constexpr double mask_fraction = 0.1;
constexpr std::size_t picture_side = 112;    // pictures about this many pixels across
constexpr std::size_t convergence_batch = 256;  // path points per pass: big products, tape buffers in cache

// Letters and digits of a text, lower-cased, up to its first '/' ("T-shirt/top" -> "tshirt").
std::string letters(const std::string& text, bool digits) {
  std::string out;
  for (char c : text) {
    if (c == '/') break;
    if (std::isalpha(static_cast<unsigned char>(c)) || (digits && std::isdigit(static_cast<unsigned char>(c))))
      out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

// The label a file's name gives (report.hpp): the longest label whose letters end the name's.
std::string label_from_name(const std::string& path, const std::vector<std::string>& labels) {
  const std::string name = letters(stem(path), false);
  std::string best;
  for (const std::string& label : labels) {
    const std::string l = letters(label, false);
    if (!l.empty() && l.size() <= name.size() && name.compare(name.size() - l.size(), l.size(), l) == 0 &&
        l.size() > letters(best, false).size())
      best = label;
  }
  return best;
}

struct TrueLabel {
  std::string label, from;  // empty label: not known
};

std::vector<TrueLabel> true_labels(const ReportRequest& r, const std::vector<std::string>& model_labels) {
  std::vector<TrueLabel> out(r.images.size());
  if (r.labels.empty()) {
    for (std::size_t i = 0; i < r.images.size(); ++i) out[i] = {label_from_name(r.images[i], model_labels), "from the file name"};
    return out;
  }
  std::ifstream in(r.labels, std::ios::binary);
  if (!in) throw Error(r.labels + ": cannot read the labels file");
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line) && lines.size() <= r.images.size();) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(line);
  }
  if (lines.size() != r.images.size())
    throw Error(r.labels + ": has " + std::string(lines.size() > r.images.size() ? "more than " : "") +
                std::to_string(lines.size()) + " lines, expected one label per image (" + std::to_string(r.images.size()) + ")");
  for (std::size_t i = 0; i < lines.size(); ++i) out[i] = {nn::printable(lines[i]), "from " + r.labels};
  return out;
}

// An image read and checked, with its baseline and true label, before anything is explained.
template <class T>
struct Prepared {
  Tensor<T> x, baseline;
  TrueLabel truth;
};

template <class T>
std::vector<Prepared<T>> prepare(const ReportRequest& r, const nn::ModelSpec& model, const Shape& input_shape) {
  if (input_shape.size() != 3)
    throw Error(r.model + ": the report needs an image input [C, H, W], the model takes " + to_string(input_shape));
  const BaselineSpec spec = parse_baseline(r.baseline);
  const std::vector<TrueLabel> truth = true_labels(r, model.graph.labels);
  std::vector<Prepared<T>> prepared;
  for (std::size_t i = 0; i < r.images.size(); ++i) {
    Prepared<T> p;
    p.x = read_array<T>(r.images[i], input_shape);
    check_finite(p.x, r.images[i]);
    p.baseline = make_baseline(spec, p.x, model.graph.input.range);
    p.truth = truth[i];
    prepared.push_back(std::move(p));
  }
  return prepared;
}

// The rows expected gradients and the data baseline draw from: a seeded sample of data_rows.
template <class T>
struct DataSet {
  Tensor<T> rows;     // [D, input shape] when present
  std::string about;  // where the rows came from, or why there are none
  std::shared_ptr<const nn::ImageSet> fashion_mnist;  // Fashion-MNIST's training set, kept for the evaluation
  bool present() const { return rows.dimension() > 0; }
};

template <class T, class Source>
Tensor<T> sample_rows(const Source* all, std::size_t count, std::size_t wanted, const Shape& input_shape, Random& random) {
  const std::size_t size = numel(input_shape), n = std::min(count, wanted);
  std::vector<std::size_t> index(count);
  for (std::size_t i = 0; i < count; ++i) index[i] = i;
  Shape shape{n};
  shape.insert(shape.end(), input_shape.begin(), input_shape.end());
  Tensor<T> rows(shape);
  // partial Fisher-Yates: the first n of a random permutation
  for (std::size_t k = 0; k < n; ++k) {
    std::swap(index[k], index[k + random.below(count - k)]);
    std::copy(all + index[k] * size, all + (index[k] + 1) * size, rows.data() + k * size);
  }
  return rows;
}

template <class T>
DataSet<T> load_data(const ReportRequest& r, const Shape& input_shape) {
  DataSet<T> d;
  Random random(r.seed ^ 0x64617461u);  // "data": its own stream, so the methods' draws do not shift it
  if (r.data == "none") {
    d.about = "No data set (--data none): expected gradients and the data baseline are not shown.";
  } else if (!r.data.empty()) {
    const Tensor<T> all = read_npy<T>(r.data);
    Shape expected{all.dimension() ? all.shape()[0] : 0};
    expected.insert(expected.end(), input_shape.begin(), input_shape.end());
    if (all.shape() != expected || expected[0] == 0)
      throw Error(r.data + ": has shape " + to_string(all.shape()) + ", expected [D] + " + to_string(input_shape) + ", D > 0");
    check_finite(all, r.data);
    d.rows = sample_rows<T>(all.data(), expected[0], data_rows, input_shape, random);
    d.about = std::to_string(d.rows.shape()[0]) + " rows of " + r.data + " drawn with seed " + std::to_string(r.seed) + ".";
  } else if (input_shape == Shape{1, 28, 28} &&
             std::filesystem::exists(std::filesystem::path(nn::fashion_mnist_dir) / "train-images-idx3-ubyte.gz")) {
    const auto set = std::make_shared<const nn::ImageSet>(nn::fashion_mnist_train());
    d.rows = sample_rows<T>(set->images.data(), set->size(), data_rows, input_shape, random);
    if (r.evaluate > 0) d.fashion_mnist = set;  // the evaluation's expected gradients draw from it too
    d.about = std::to_string(d.rows.shape()[0]) + " images of Debian's Fashion-MNIST training set (" +
              std::string(nn::fashion_mnist_dir) + ") drawn with seed " + std::to_string(r.seed) + ".";
  } else {
    d.about = "No data set at hand (give --data FILE.npy, or install dataset-fashion-mnist for a [1, 28, 28] model): "
              "expected gradients and the data baseline are not shown.";
  }
  return d;
}

// One method's result as the page shows it.
template <class T>
struct Shown {
  std::string id, title, note;
  Attribution<T> a;
  std::size_t evaluations = 0;
  bool complete = false;  // the method claims completeness: its gap is shown
  bool available = true;
};

// Everything one image needs: its engine, its input and the progress callback.
template <class T>
struct Job {
  const ReportRequest& r;
  const nn::ModelSpec& model;
  const EngineOptions& engine;  // one deadline for the whole report
  Engine<T>& f;
  const Prepared<T>& p;
  const DataSet<T>& data;
  std::size_t image, images;
  double lo, hi;
  std::size_t scale;

  void progress(const std::string& what) const {
    if (r.on_progress) r.on_progress(image, images, what);
  }
  template <class Run>
  Shown<T> run(const std::string& id, const std::string& title, bool complete, Run method) const {
    progress(id);
    const std::size_t before = f.evaluations();
    Shown<T> s;
    s.id = id, s.title = title, s.complete = complete;
    s.a = method();
    s.evaluations = f.evaluations() - before;
    return s;
  }
  std::string png(const Image& image) const { return png_bytes(image.rgb, image.width, image.height, 3); }
};

IgOptions gauss_legendre(std::size_t steps, bool diagnostics = false) {
  IgOptions o;
  o.rule = Rule::gausslegendre;
  o.steps = steps;
  o.diagnostics = diagnostics;
  return o;
}

// The baseline grid: IG from each baseline (Gauss-Legendre grid_steps; the random ones averaged
// over grid_samples draws), the first baseline drawn kept for its picture.
template <class T>
struct GridEntry {
  std::string name, spec, note;
  Tensor<T> first;     // the baseline shown
  std::size_t samples = 0;  // baselines averaged
  Shown<T> ig;         // not available: the note says why
};

template <class T>
std::vector<GridEntry<T>> baseline_grid(const Job<T>& job, double blur_sigma, const Shown<T>& gl50) {
  const std::vector<std::pair<std::string, std::string>> kinds = {
      {"black", "zero"},       {"white", "white"},   {"blur", "blur:" + fixed(blur_sigma, "%g")},
      {"uniform", "uniform"},  {"gaussian", "gaussian:" + fixed(gaussian_sigma, "%g")},
      {"max-distance", "maxdist"}, {"data", "data"}};
  Random random(job.r.seed ^ (0x62617365u + job.image));  // "base", per image
  const Range& range = job.model.graph.input.range;
  std::vector<GridEntry<T>> grid;
  for (const auto& [name, spec] : kinds) {
    GridEntry<T> e;
    e.name = name, e.spec = spec;
    Tensor<T> baselines;
    if (name == "data") {
      if (!job.data.present()) e.note = "no data set at hand";
      else baselines = sample_rows<T>(job.data.rows.data(), job.data.rows.shape()[0], grid_samples, job.p.x.shape(), random);
    } else if (!range && (name == "white" || name == "uniform" || name == "max-distance")) {
      e.note = "needs the model's input range";
    } else {
      const BaselineSpec parsed = parse_baseline(spec);
      baselines = make_baselines(parsed, job.p.x, range, parsed.random() ? grid_samples : 1, random);
    }
    if (baselines.dimension() == 0) {  // none made: the note says why
      e.ig.available = false;
      grid.push_back(std::move(e));
      continue;
    }
    e.samples = baselines.shape()[0];
    e.first = Tensor<T>(job.p.x.shape());
    std::copy(baselines.data(), baselines.data() + job.p.x.size(), e.first.data());
    const bool same_as_gl50 = baselines.shape()[0] == 1 && gl50.a.steps == grid_steps &&
                              std::equal(job.p.baseline.begin(), job.p.baseline.end(), e.first.begin());
    if (same_as_gl50) {  // the report's own baseline (black by default): Gauss-Legendre 50 has it already
      job.progress("baseline " + name);
      e.ig = gl50;
      e.ig.id = "baseline " + name, e.ig.title = "IG from " + name;
      grid.push_back(std::move(e));
      continue;
    }
    e.ig = job.run("baseline " + name, "IG from " + name, true, [&] {
      return baselines.shape()[0] == 1 ? integrated_gradients(job.f, job.p.x, e.first, gauss_legendre(grid_steps))
                                       : integrated_gradients_multi(job.f, job.p.x, baselines, gauss_legendre(grid_steps));
    });
    grid.push_back(std::move(e));
  }
  return grid;
}

// The method gallery, in the page's order.
template <class T>
std::vector<Shown<T>> gallery(const Job<T>& job, const Attribution<T>& reference, std::size_t reference_evaluations,
                              const Shown<T>& gl50, const GridEntry<T>& blur) {
  const Tensor<T>& x = job.p.x;
  const Tensor<T>& b = job.p.baseline;
  std::vector<Shown<T>> shown;
  shown.push_back(job.run("gradient", "gradient", false, [&] { return gradient(job.f, x, b); }));
  shown.push_back(job.run("inputxgradient", "gradient x input", false, [&] { return input_x_gradient(job.f, x, b); }));
  shown.push_back(job.run("smoothgrad", "SmoothGrad", false, [&] {
    return smoothgrad(job.f, x, b, SmoothKind::smoothgrad, smoothgrad_sigma, true, smoothgrad_samples, job.r.seed);
  }));
  shown.back().note = std::to_string(smoothgrad_samples) + " samples, sigma " + fixed(smoothgrad_sigma, "%g") + " of the range";
  shown.push_back(gl50);
  Shown<T> ref;
  ref.id = "ig_reference", ref.a = reference, ref.evaluations = reference_evaluations, ref.complete = true;
  ref.title = reference.rule == "exact" ? "IG, exact" : "IG, " + reference.rule + " " + std::to_string(reference.steps);
  if (reference.rule == "exact") ref.note = std::to_string(reference.pieces) + " linear pieces";
  shown.push_back(ref);
  Shown<T> blurred = blur.ig;
  blurred.id = "ig_blur", blurred.title = "IG from a blur";
  blurred.note = "baseline " + blur.spec + ", Gauss-Legendre " + std::to_string(grid_steps);
  shown.push_back(blurred);
  if (job.data.present()) {
    shown.push_back(job.run("eg", "expected gradients", true,
                            [&] { return expected_gradients(job.f, x, job.data.rows, eg_samples, job.r.seed); }));
    shown.back().note = std::to_string(eg_samples) + " samples, SE of the sum " + fixed(shown.back().a.standard_error, "%.2g");
  } else {
    Shown<T> none;
    none.id = "eg", none.title = "expected gradients", none.available = false, none.note = "no data set at hand";
    job.progress("eg");
    shown.push_back(none);
  }
  try {
    shown.push_back(job.run("deeplift", "DeepLIFT (rescale)", true, [&] { return deeplift(job.f, x, b); }));
  } catch (const TimeLimitExceeded&) {
    throw;
  } catch (const NonFinite&) {
    throw;
  } catch (const Error& e) {  // an op with no rescale rule: the page says which
    Shown<T> none;
    none.id = "deeplift", none.title = "DeepLIFT (rescale)", none.available = false, none.note = e.what();
    shown.push_back(none);
  }
  return shown;
}

// The path plot: F(g(alpha)) - F(x') against the running sum of the attributions, for the
// reference IG (at its breakpoints, which are marked) and Gauss-Legendre 50 (at its nodes).
template <class T>
std::string path_figure(const Attribution<T>& reference, const Attribution<T>& gl50) {
  plot::Series f_path{"F(g(\xce\xb1)) - F(x')", {0.0}, {0.0}};
  plot::Series exact_sum{"running sum, reference IG", {0.0}, {0.0}, true};
  plot::Series gl_sum{"running sum, Gauss-Legendre 50", {0.0}, {0.0}, false, true};
  plot::Axes axes;
  axes.title = "F along the path and the attributions' running sum";
  axes.x_label = "\xce\xb1 (0: baseline, 1: input)";
  axes.y_label = "change of the logit";
  axes.legend = plot::Corner::top_left;
  const bool pieces = reference.rule == "exact";
  // exact: path_alpha holds each piece's midpoint, so its breakpoints are b_{k+1} = 2 m_k - b_k
  double b = 0;
  for (std::size_t k = 0; k < reference.path_alpha.size(); ++k) {
    f_path.x.push_back(reference.path_alpha[k]);
    f_path.y.push_back(reference.path_f[k] - reference.f_baseline);
    const double end = pieces ? std::clamp(2 * reference.path_alpha[k] - b, b, 1.0) : reference.path_alpha[k];
    exact_sum.x.push_back(end);
    exact_sum.y.push_back(reference.path_cumulative[k]);
    if (pieces && k + 1 < reference.path_alpha.size()) axes.x_marks.push_back(end);
    b = end;
  }
  f_path.x.push_back(1.0);
  f_path.y.push_back(reference.f_input - reference.f_baseline);
  for (std::size_t k = 0; k < gl50.path_alpha.size(); ++k) {
    gl_sum.x.push_back(gl50.path_alpha[k]);
    gl_sum.y.push_back(gl50.path_cumulative[k]);
  }
  return plot::line_plot_svg(axes, {f_path, exact_sum, gl_sum}, 460, 320);
}

// The attributions (x - x') * sum_k w_k dF/dx(g(a_k)) of many rules at once, each distinct node
// evaluated once: the convergence plot's Riemann and trapezoid rules with power-of-two steps share
// most of their nodes (k/n lies on the grid of every 2^j n). Those nodes run on the engine's line
// (Engine::begin_line) in batches, each rule's weighted sum formed at the line's frontier and taken
// back to the input once per rule. The line rounds a node to T; nodes that T does not hold exactly
// (Gauss-Legendre's) run as points of the input formed in double instead, so that each node is
// where the rule puts it: near one of the path's kinks, a node moved by a rounding can take the
// next piece's gradient, and the smallest gaps would show it.
template <class T>
std::vector<Tensor<T>> rule_attributions(Engine<T>& f, const Tensor<T>& x, const Tensor<T>& baseline,
                                         const std::vector<Quadrature>& rules) {
  std::map<double, std::vector<std::pair<std::size_t, double>>> uses;  // alpha -> (rule, weight) pairs
  for (std::size_t r = 0; r < rules.size(); ++r)
    for (std::size_t k = 0; k < rules[r].alphas.size(); ++k) uses[rules[r].alphas[k]].emplace_back(r, rules[r].weights[k]);
  std::vector<double> on_line, off_line;
  for (const auto& use : uses) (double(T(use.first)) == use.first ? on_line : off_line).push_back(use.first);
  // sums[r, j] += w * g[j] for every rule r using the node a, over one node's gradient g
  const auto add = [&](std::vector<double>& sums, std::size_t width, double a, const T* g) {
    for (const auto& [r, w] : uses.at(a)) {
      double* sum = sums.data() + r * width;
      // [values]
      for (std::size_t j = 0; j < width; ++j) sum[j] += w * double(g[j]);
    }
  };
  const std::size_t group = std::min(f.chunk(), convergence_batch), size = x.size();
  std::vector<double> values;
  f.begin_line(x, baseline);
  const std::size_t width = f.line_width();
  std::vector<double> line_sums(rules.size() * width, 0.0);  // [rules, frontier values]
  for (std::size_t begin = 0; begin < on_line.size(); begin += group) {
    const std::size_t n = std::min(group, on_line.size() - begin);
    const T* grads = f.evaluate_line(on_line.data() + begin, n, values);
    for (std::size_t i = 0; i < n; ++i) add(line_sums, width, on_line[begin + i], grads + i * width);
  }
  std::vector<double> input_sums(rules.size() * size, 0.0);  // [rules, input values]
  Tensor<T> points, grads;
  for (std::size_t begin = 0; begin < off_line.size(); begin += group) {
    const std::size_t n = std::min(group, off_line.size() - begin);
    Shape shape{n};
    shape.insert(shape.end(), x.shape().begin(), x.shape().end());
    points.resize(shape);
    // [points, input values]: g(a) = x' + a (x - x')
    for (std::size_t k = 0; k < n; ++k)
      for (std::size_t i = 0; i < size; ++i)
        points.data()[k * size + i] = T(double(baseline.data()[i]) + off_line[begin + k] * double(x.data()[i] - baseline.data()[i]));
    f.evaluate(points, values, &grads);
    for (std::size_t k = 0; k < n; ++k) add(input_sums, size, off_line[begin + k], grads.data() + k * size);
  }
  std::vector<Tensor<T>> out;
  std::vector<T> total(width);
  Tensor<T> gradient;
  for (std::size_t r = 0; r < rules.size(); ++r) {
    std::copy(line_sums.begin() + std::ptrdiff_t(r * width), line_sums.begin() + std::ptrdiff_t((r + 1) * width), total.begin());
    f.line_gradient(total.data(), gradient);
    Tensor<T> a(x.shape());
    const double* direct = input_sums.data() + r * size;
    for (std::size_t i = 0; i < size; ++i)
      a.data()[i] = T(double(x.data()[i] - baseline.data()[i]) * (double(gradient.data()[i]) + direct[i]));
    out.push_back(std::move(a));
  }
  return out;
}

// The convergence of the quadrature rules: relative completeness gap and relative L2 distance to
// the reference IG against the number of steps, the reference's own gap as the floor. The
// trapezoid rule gets one point more than the others (n + 1 points, n intervals), so that its
// nodes nest with theirs.
template <class T>
nlohmann::json convergence(const Job<T>& job, const Attribution<T>& reference, std::string& svg) {
  const std::vector<Rule> rules = {Rule::riemann_left, Rule::riemann_right, Rule::riemann_middle,
                                   Rule::riemann_trapezoid, Rule::gausslegendre};
  job.progress("convergence");
  nlohmann::json j;
  j["reference_relative_delta"] = reference.relative_delta;
  std::vector<plot::Series> series;
  const char* const colours[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd"};
  const auto clock = std::chrono::steady_clock::now();
  const std::size_t before = job.f.evaluations();
  std::vector<Quadrature> quadratures;  // [rules x steps]
  for (Rule rule : rules)
    for (std::size_t n : job.r.convergence_steps) quadratures.push_back(quadrature(rule, rule == Rule::riemann_trapezoid ? n + 1 : n));
  const std::vector<Tensor<T>> attributions = rule_attributions(job.f, job.p.x, job.p.baseline, quadratures);
  const double change = reference.f_input - reference.f_baseline;
  for (std::size_t i = 0, q = 0; i < rules.size(); ++i) {
    plot::Series gap{rule_name(rules[i]), {}, {}, false, true, colours[i]};
    plot::Series l2{"", {}, {}, true, false, colours[i]};
    for (std::size_t s = 0; s < job.r.convergence_steps.size(); ++s, ++q) {
      const Tensor<T>& a = attributions[q];
      const double points = double(quadratures[q].alphas.size());
      double sum = 0;
      for (T v : a) sum += double(v);
      gap.x.push_back(points), gap.y.push_back(std::abs(sum - change) / (change != 0 ? std::abs(change) : 1.0));
      l2.x.push_back(points), l2.y.push_back(relative_l2(a, reference.values));
    }
    j["rules"].push_back({{"rule", gap.name}, {"steps", gap.x}, {"relative_delta", gap.y}, {"relative_l2", l2.y}});
    series.push_back(gap), series.push_back(l2);
  }
  j["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - clock).count();
  j["evaluations"] = job.f.evaluations() - before;
  const double lo = double(job.r.convergence_steps.front()), hi = double(job.r.convergence_steps.back() + 1);
  series.push_back({"reference IG's gap (floor)", {lo, hi}, {reference.relative_delta, reference.relative_delta}, true,
                    false, "#000"});
  series.push_back({"dashed: L2 to reference", {}, {}, true, false, "#777"});
  plot::Axes axes;
  axes.title = "Quadrature rules against the reference IG";
  axes.x_label = "steps (gradient evaluations)";
  axes.y_label = "relative gap (solid), L2 distance (dashed)";
  axes.log_x = axes.log_y = true;
  axes.legend = plot::Corner::bottom_left;  // the curves fall from the top left; the floor lies below
  svg = plot::line_plot_svg(axes, series, 460, 320);
  return j;
}

nlohmann::json method_json(const std::string& id, const std::string& title, const std::string& note) {
  nlohmann::json j{{"id", id}, {"title", title}};
  if (!note.empty()) j["note"] = note;
  return j;
}

template <class T>
nlohmann::json shown_json(const Shown<T>& s) {
  nlohmann::json j = method_json(s.id, s.title, s.note);
  j["available"] = s.available;
  if (!s.available) return j;
  j["method"] = s.a.method;
  if (!s.a.rule.empty()) j["rule"] = s.a.rule;
  j["steps"] = s.a.steps;
  j["seconds"] = s.a.seconds;
  j["evaluations"] = s.evaluations;
  j["sum"] = s.a.sum;
  if (s.complete) {
    j["f_baseline"] = s.a.f_baseline;
    j["relative_delta"] = s.a.relative_delta;
  }
  if (s.a.standard_error > 0) j["standard_error"] = s.a.standard_error;
  return j;
}

// One colour scale for a row of attributions: the clip_percentile-th |a| over all of them.
template <class T>
double row_clip(const std::vector<const Attribution<T>*>& row) {
  std::vector<double> all;
  for (const Attribution<T>* a : row) {
    const std::vector<double> v = pixel_sums(a->values);
    all.insert(all.end(), v.begin(), v.end());
  }
  return magnitude_percentile(all, clip_percentile);
}

// IG from the report's baseline with the report's rule: the reference the other methods and the
// quadrature rules are measured against.
template <class T>
Attribution<T> reference_ig(const Job<T>& job) {
  const ReportRequest& r = job.r;
  job.progress(rule_name(r.rule));
  IgOptions ig;
  ig.rule = r.rule;
  ig.steps = r.steps;
  ig.diagnostics = true;
  if (r.rule != Rule::exact) ig.tolerance = 1e-3;
  try {
    return integrated_gradients(job.f, job.p.x, job.p.baseline, ig);
  } catch (const NotPiecewiseLinear&) {
    if (r.rule != Rule::exact) throw;
    ig.rule = Rule::gausslegendre;  // not piecewise linear: converge a quadrature instead
    ig.tolerance = 1e-3;            // (more pieces than the cap is an error, never a fallback)
    return integrated_gradients(job.f, job.p.x, job.p.baseline, ig);
  }
}

// The page's pictures of one image: the gallery and the grid, each row on one colour scale
// (returned: the gallery's clip and the grid's), and the top-fraction mask.
template <class T>
std::pair<double, double> draw_pictures(const Job<T>& job, const std::vector<Shown<T>>& shown,
                                        const std::vector<GridEntry<T>>& grid, const Attribution<T>& reference,
                                        html::ImageFigures& figures) {
  std::vector<const Attribution<T>*> gallery_row, grid_row;
  for (const Shown<T>& s : shown)
    if (s.available) gallery_row.push_back(&s.a);
  for (const GridEntry<T>& e : grid)
    if (e.ig.available) grid_row.push_back(&e.ig.a);
  const double gallery_clip = row_clip(gallery_row), grid_clip = row_clip(grid_row);
  figures.input_png = job.png(picture(job.p.x, job.lo, job.hi, job.scale));
  for (const Shown<T>& s : shown)
    figures.method_png.push_back(s.available ? job.png(heatmap_clipped(s.a.values, gallery_clip, job.scale)) : "");
  for (const GridEntry<T>& e : grid) {
    figures.baseline_png.push_back(e.ig.available ? job.png(picture(e.first, job.lo, job.hi, job.scale)) : "");
    figures.baseline_attribution_png.push_back(e.ig.available ? job.png(heatmap_clipped(e.ig.a.values, grid_clip, job.scale)) : "");
  }
  figures.masked_png = job.png(top_fraction(job.p.x, reference.values, mask_fraction, job.lo, job.hi, job.scale));
  return {gallery_clip, grid_clip};
}

// The three PNGs of earlier reports, beside the page, about 224 pixels across.
template <class T>
void files_beside(const Job<T>& job, const std::string& name, const Attribution<T>& reference,
                  std::vector<std::pair<std::string, std::string>>& files) {
  const std::filesystem::path out(job.r.out);
  const auto file = [&](const std::string& suffix, const Image& image) {
    files.emplace_back((out / (name + suffix)).string(), job.png(image));
  };
  const std::size_t big = std::max<std::size_t>(1, 224 / std::max(job.p.x.shape()[1], job.p.x.shape()[2]));
  file("_overlay.png", overlay(job.p.x, reference.values, job.lo, job.hi, big));
  file("_heatmap.png", heatmap(reference.values, big));
  std::vector<double> path_f(reference.path_f.size());
  for (std::size_t k = 0; k < reference.path_f.size(); ++k) path_f[k] = reference.path_f[k] - reference.f_baseline;
  file("_path.png", line_picture(reference.path_alpha, {path_f, reference.path_cumulative}, {{{40, 40, 40}}, {{220, 40, 30}}}));
}

template <class T>
nlohmann::json explain_image(const Job<T>& job, const Scheme& scheme, const std::string& image_path,
                             const std::string& name, std::vector<std::pair<std::string, std::string>>& files,
                             html::ImageFigures& figures) {
  const Prepared<T>& p = job.p;
  Engine<T> outputs(job.model, TargetSpec{}, job.engine);
  const int predicted = job.f.resolve_class(p.x);

  const std::size_t before = job.f.evaluations();
  const Attribution<T> reference = reference_ig(job);
  const std::size_t reference_evaluations = job.f.evaluations() - before;
  const Shown<T> gl50 = job.run("ig_gausslegendre50", "IG, Gauss-Legendre 50", true,
                                 [&] { return integrated_gradients(job.f, p.x, p.baseline, gauss_legendre(50, true)); });

  const std::size_t side = std::max(p.x.shape()[1], p.x.shape()[2]);
  const std::vector<GridEntry<T>> grid = baseline_grid(job, double(side) / 10, gl50);
  const GridEntry<T>& blur = *std::find_if(grid.begin(), grid.end(), [](const GridEntry<T>& e) { return e.name == "blur"; });
  const std::vector<Shown<T>> shown = gallery(job, reference, reference_evaluations, gl50, blur);
  const nlohmann::json conv = convergence(job, reference, figures.convergence_svg);
  figures.path_svg = path_figure(reference, gl50.a);
  const auto [gallery_clip, grid_clip] = draw_pictures(job, shown, grid, reference, figures);
  files_beside(job, name, reference, files);

  nlohmann::json j = report(reference, job.model.graph);
  j["image"] = image_path;
  j["name"] = name;
  j["predicted"] = predicted;
  j["label"] = j.value("label", std::string());
  if (!p.truth.label.empty()) {
    j["true_label"] = p.truth.label;
    j["true_label_from"] = p.truth.from;
    if (!job.model.graph.labels.empty()) j["correct"] = letters(p.truth.label, true) == letters(j["label"].get<std::string>(), true);
  }
  j["pieces"] = reference.pieces;
  j["evaluations"] = reference_evaluations;
  j["probability"] = probability(outputs.scores(p.x), predicted, scheme.output);
  if (scheme.output != Distribution::none) j["explained_node"] = scheme.logits;
  j["gausslegendre50_relative_delta"] = gl50.a.relative_delta;
  j["gausslegendre50_relative_l2_from_this"] = relative_l2(gl50.a.values, reference.values);
  for (const Shown<T>& s : shown) j["methods"].push_back(shown_json(s));
  j["gallery_clip"] = gallery_clip;
  for (const GridEntry<T>& e : grid) {
    nlohmann::json g = shown_json(e.ig);
    g["name"] = e.name;
    g["spec"] = e.spec;
    if (!e.note.empty()) g["note"] = e.note;
    if (e.ig.available) g["samples"] = e.samples;
    j["baselines"].push_back(g);
  }
  j["baseline_clip"] = grid_clip;
  j["convergence"] = conv;
  j["mask_method"] = shown[4].title;  // the reference IG
  return j;
}

std::string markdown(const ReportRequest& r, const nn::ModelSpec& model, const nlohmann::json& images, const std::string& note) {
  std::string md = "# axiomatic report\n\n";
  md += "Model `" + r.model + "`, baseline `" + r.baseline + "`, precision " + (r.float64 ? "f64" : "f32") +
        ". For each image: the predicted class, Integrated Gradients of its logit, and the completeness of the "
        "attributions (delta = sum - (F(x) - F(x'))).\n\n";
  if (!note.empty()) md += note + "\n\n";
  md += "Pictures: the image with positive attributions in red and negative in blue; the heatmap alone; and the "
        "path, F(g(alpha)) - F(x') in black against the attributions' cumulative sum in red, which meet at alpha = 1 "
        "when IG is complete.\n\n";
  md += "| image | predicted | p | rule | pieces | F(x) | F(x') | sum | relative delta | GL-50 relative delta | GL-50 L2 off | s |\n";
  md += "|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  for (const nlohmann::json& j : images)
    md += "| " + j["name"].get<std::string>() + " | " + std::to_string(j["predicted"].get<int>()) + " " +
          nn::printable(j["label"].get<std::string>()) + " | " + fixed(j["probability"].get<double>(), "%.3f") + " | " +
          j["rule"].get<std::string>() + " | " + std::to_string(j["pieces"].get<std::size_t>()) + " | " +
          fixed(j["f_input"].get<double>()) + " | " + fixed(j["f_baseline"].get<double>()) + " | " +
          fixed(j["sum"].get<double>()) + " | " + fixed(j["relative_delta"].get<double>(), "%.2e") + " | " +
          fixed(j["gausslegendre50_relative_delta"].get<double>(), "%.2e") + " | " +
          fixed(100 * j["gausslegendre50_relative_l2_from_this"].get<double>(), "%.2f%%") + " | " +
          fixed(j["seconds"].get<double>(), "%.2f") + " |\n";
  md += "\n";
  for (const nlohmann::json& j : images) {
    const std::string n = j["name"].get<std::string>();
    md += "## " + n + ": " + nn::printable(j["label"].get<std::string>()) + "\n\n";
    md += "![overlay](" + n + "_overlay.png) ![heatmap](" + n + "_heatmap.png) ![path](" + n + "_path.png)\n\n";
  }
  md += "GL-50 is Gauss-Legendre with 50 steps, Captum's default; its L2 distance is relative to the attributions "
        "above, which are exact (one gradient per linear piece of the path) when the rule is `exact`.\n";
  (void)model;
  return md;
}


// The sentence the report adds when the model's output is already a softmax.
std::string scheme_note(const nn::GraphSpec& graph, const Scheme& scheme) {
  if (scheme.output == Distribution::none) return "";
  const std::string op = scheme.output == Distribution::probabilities ? "softmax" : "log_softmax";
  return "The model's output '" + graph.output + "' is a " + op +
         ": p is read from it (no softmax is applied again), and IG explains the logit, node '" + scheme.logits +
         "', before it.";
}

template <class T>
nlohmann::json explain_all(const ReportRequest& r, const nn::ModelSpec& model, nlohmann::json& settings,
                           std::vector<std::pair<std::string, std::string>>& files, std::vector<html::ImageFigures>& figures,
                           std::shared_ptr<const nn::ImageSet>& fashion_mnist_train) {
  const EngineOptions engine = engine_options(r.memory, r.model, r.timeout);
  const Scheme scheme = scheme_of(model.graph);
  const Shape input_shape = Engine<T>(model, TargetSpec{}, engine).input_shape();
  // every image, the labels and the data set read and checked first
  const std::vector<Prepared<T>> prepared = prepare<T>(r, model, input_shape);
  const DataSet<T> data = load_data<T>(r, input_shape);
  settings["data"] = data.about;
  fashion_mnist_train = data.fashion_mnist;
  if (!data.present()) settings["data_note"] = data.about;
  const std::vector<std::string> names = picture_names(r.images);
  const double lo = model.graph.input.range ? model.graph.input.range->first : 0.0;
  const double hi = model.graph.input.range ? model.graph.input.range->second : 1.0;
  const std::size_t side = std::max(input_shape[1], input_shape[2]);
  const std::size_t scale = std::max<std::size_t>(1, picture_side / side);
  nlohmann::json images = nlohmann::json::array();
  for (std::size_t i = 0; i < r.images.size(); ++i) {
    TargetSpec target;
    target.node = scheme.logits;
    Engine<T> f(model, target, engine);
    const Job<T> job{r, model, engine, f, prepared[i], data, i, r.images.size(), lo, hi, scale};
    figures.emplace_back();
    images.push_back(explain_image(job, scheme, r.images[i], names[i], files, figures.back()));
  }
  return images;
}

nlohmann::json settings_json(const ReportRequest& r) {
  return {{"seed", r.seed},
          {"percentile", clip_percentile},
          {"smoothgrad_samples", smoothgrad_samples},
          {"smoothgrad_sigma", smoothgrad_sigma},
          {"eg_samples", eg_samples},
          {"data_rows", data_rows},
          {"grid_steps", grid_steps},
          {"grid_samples", grid_samples},
          {"gaussian_sigma", gaussian_sigma},
          {"blur_sigma", "a tenth of the image's side, in pixels"},
          {"mask_percent", 100 * mask_fraction},
          {"convergence_steps", r.convergence_steps}};
}

// Options the library's own callers could get wrong (the command line refuses them earlier).
void check_request(const ReportRequest& r) {
  if (r.images.empty()) throw Error("report: no images given");
  if (r.convergence_steps.empty()) throw Error("report: no convergence steps");
  for (std::size_t n : r.convergence_steps)
    if (n < 2 || n > max_steps_cap)
      throw Error("report: convergence steps must be 2 to " + std::to_string(max_steps_cap) + ", got " + std::to_string(n));
  if (!std::is_sorted(r.convergence_steps.begin(), r.convergence_steps.end()))
    throw Error("report: convergence steps must increase");
}

// The evaluation section's request: the report's model, seed, precision and budget; its images
// the first r.evaluate of Fashion-MNIST's test set.
EvaluateRequest evaluation_request(const ReportRequest& r) {
  EvaluateRequest e;
  e.model = r.model;
  e.fashion_mnist_test = r.evaluate;
  if (!r.fashion_mnist_dir.empty()) e.fashion_mnist_dir = r.fashion_mnist_dir;
  e.seed = r.seed;
  e.float64 = r.float64;
  e.memory = r.memory;
  e.on_progress = r.on_evaluation_progress;
  return e;
}

// Checked before any image is explained: the model takes Fashion-MNIST's images, and the test set
// is there and holds enough of them.
void check_evaluation_set(const ReportRequest& r, const nn::ModelSpec& model) {
  if (r.evaluate == 0) return;
  if (model.graph.input.shape != std::vector<std::size_t>{1, 28, 28})
    throw Error("report: --evaluate runs on Fashion-MNIST's [1, 28, 28] images; the model's input is " +
                to_string(Shape(model.graph.input.shape.begin(), model.graph.input.shape.end())));
  const std::string dir = evaluation_request(r).fashion_mnist_dir;
  const std::size_t held = nn::fashion_mnist_test(dir).size();
  if (r.evaluate > held)
    throw Error("report: --evaluate " + std::to_string(r.evaluate) + " images asked, the Fashion-MNIST test set in " + dir +
                " holds " + std::to_string(held));
}

}  // namespace

nlohmann::json write_report(const ReportRequest& r) {
  const auto clock = std::chrono::steady_clock::now();
  check_request(r);
  const nn::ModelSpec model = nn::load_model(r.model);
  check_evaluation_set(r, model);
  const std::filesystem::path out(r.out);
  std::vector<std::pair<std::string, std::string>> files;
  std::vector<html::ImageFigures> figures;
  nlohmann::json settings = settings_json(r);
  std::shared_ptr<const nn::ImageSet> train;  // Fashion-MNIST's training set, if the report read it
  const nlohmann::json images = r.float64 ? explain_all<double>(r, model, settings, files, figures, train)
                                          : explain_all<float>(r, model, settings, files, figures, train);
  nlohmann::json report;
  report["model"] = r.model;
  report["baseline"] = r.baseline;
  report["precision"] = r.float64 ? "f64" : "f32";
  const std::string note = scheme_note(model.graph, scheme_of(model.graph));
  if (!note.empty()) report["note"] = note;
  report["settings"] = settings;
  report["images"] = images;
  std::string evaluation_section;
  if (r.evaluate > 0) {
    EvaluateRequest e = evaluation_request(r);
    if (e.fashion_mnist_dir == nn::fashion_mnist_dir) e.fashion_mnist_train = train;  // read once
    if (r.timeout > 0) {  // what is left of the report's time
      e.timeout = r.timeout - std::chrono::duration<double>(std::chrono::steady_clock::now() - clock).count();
      if (e.timeout <= 0) throw TimeLimitExceeded(r.model + ": the time limit ran out before the answer was complete");
    }
    const nlohmann::json evaluation = evaluate(e);
    for (const auto& [name, content] : evaluation_files(evaluation))
      files.emplace_back((out / "evaluation" / name).string(), content);
    evaluation_section = evaluation_html(evaluation);
    report["evaluation"] = evaluation;
  }
  report["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - clock).count();
  files.emplace_back((out / "report.json").string(), report.dump(2) + "\n");
  files.emplace_back((out / "report.md").string(), markdown(r, model, images, note));
  files.emplace_back((out / "index.html").string(), html::page(report, figures, evaluation_section));
  // everything is made before the first file is written: a failure writes nothing
  std::error_code made;
  std::filesystem::create_directories(r.evaluate > 0 ? out / "evaluation" : out, made);
  if (made) throw Error(r.out + ": cannot make the folder (" + made.message() + ")");
  write_files(files);
  return report;
}

}  // namespace ax::attr
