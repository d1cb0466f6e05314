#include "evaluate.hpp"

#include "../autodiff/ops/registry.hpp"
#include "../nn/model_file.hpp"
#include "baseline.hpp"
#include "explain.hpp"
#include "io.hpp"
#include "methods.hpp"
#include "plot.hpp"
#include "random.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <iterator>
#include <map>
#include <memory>
#include <numeric>

namespace ax::attr {
namespace {

const char* const fills[] = {"mean", "blur"};

// The node whose values are explained: the output, or the logits before an output that is already
// a softmax (or log-softmax), as the report does.
std::string logits_node(const nn::GraphSpec& graph) {
  for (const nn::NodeSpec& n : graph.nodes) {
    const ops::OpInfo* op = ops::find_file_op(n.op);
    if (n.name == graph.output && op && op->distribution != Distribution::none && n.inputs.size() == 1) return n.inputs[0];
  }
  return graph.output;
}

bool has_method(const std::vector<std::string>& methods, const char* name) {
  return std::find(methods.begin(), methods.end(), name) != methods.end();
}

// The methods asked for, checked: known names, none twice.
std::vector<std::string> methods_of(const EvaluateRequest& r) {
  std::vector<std::string> methods = r.methods.empty() ? default_evaluation_methods() : r.methods;
  if (r.methods.empty() && r.eg_data.empty() && r.fashion_mnist_test == 0)  // no data set: eg left out of the defaults
    methods.erase(std::find(methods.begin(), methods.end(), "eg"));
  for (std::size_t i = 0; i < methods.size(); ++i) {
    if (!has_method(evaluation_methods(), methods[i].c_str())) {
      std::string known;
      for (const std::string& m : evaluation_methods()) known += (known.empty() ? "" : ", ") + m;
      throw Error("evaluate: unknown method '" + methods[i] + "' (known: " + known + ")");
    }
    if (std::find(methods.begin(), methods.begin() + static_cast<std::ptrdiff_t>(i), methods[i]) != methods.begin() + static_cast<std::ptrdiff_t>(i))
      throw Error("evaluate: method '" + methods[i] + "' is named twice");
  }
  return methods;
}

// The image files: a folder stands for its .png files, sorted by name.
std::vector<std::string> expand_images(const std::vector<std::string>& images) {
  std::vector<std::string> files;
  for (const std::string& path : images) {
    std::error_code error;
    if (!std::filesystem::is_directory(path, error)) {
      files.push_back(path);
      continue;
    }
    std::vector<std::string> pngs;
    for (const auto& entry : std::filesystem::directory_iterator(path, error))
      if (entry.path().extension() == ".png" && entry.is_regular_file(error)) pngs.push_back(entry.path().string());
    if (error) throw Error(path + ": cannot list the folder (" + error.message() + ")");
    if (pngs.empty()) throw Error(path + ": the folder holds no .png file");
    std::sort(pngs.begin(), pngs.end());
    files.insert(files.end(), pngs.begin(), pngs.end());
  }
  return files;
}

template <class T>
Tensor<T> row_of(const Tensor<float>& images, std::size_t i, const Shape& shape) {
  Tensor<T> x(shape);
  const std::size_t n = x.size();
  std::copy(images.data() + i * n, images.data() + (i + 1) * n, x.data());
  return x;
}

// The images, every one read and checked, and a name for each.
template <class T>
struct Inputs {
  std::vector<Tensor<T>> x;
  std::vector<std::string> names;
  std::string source;  // what the JSON says they are
};

template <class T>
Inputs<T> fashion_mnist_inputs(const EvaluateRequest& r, const Shape& shape) {
  if (shape != Shape{1, 28, 28})
    throw Error("--fashion-mnist-test: the model's input is " + to_string(shape) + ", Fashion-MNIST's images are [1, 28, 28]");
  const nn::ImageSet set = nn::fashion_mnist_test(r.fashion_mnist_dir);
  if (r.fashion_mnist_test > set.size())
    throw Error("--fashion-mnist-test: " + std::to_string(r.fashion_mnist_test) + " images asked, the test set holds " +
                std::to_string(set.size()));
  Inputs<T> in;
  for (std::size_t i = 0; i < r.fashion_mnist_test; ++i) {
    in.x.push_back(row_of<T>(set.images, i, shape));
    char name[32];
    std::snprintf(name, sizeof name, "test%04zu", i);
    in.names.push_back(name);
  }
  in.source = "Fashion-MNIST test set, first " + std::to_string(r.fashion_mnist_test);
  return in;
}

template <class T>
Inputs<T> read_inputs(const EvaluateRequest& r, const Shape& shape) {
  if (r.fashion_mnist_test > 0) return fashion_mnist_inputs<T>(r, shape);
  Inputs<T> in;
  for (const std::string& path : expand_images(r.images)) {
    in.x.push_back(read_array<T>(path, shape));
    check_finite(in.x.back(), path);
    in.names.push_back(path);
  }
  if (in.x.empty()) throw Error("evaluate: no images given");
  in.source = "files";
  return in;
}

// Expected gradients' data set [D, input shape]: --eg-data, or Fashion-MNIST's training images.
template <class T>
Tensor<T> eg_data(const EvaluateRequest& r, const std::vector<std::string>& methods, const Shape& shape) {
  if (!has_method(methods, "eg")) return Tensor<T>();
  if (!r.eg_data.empty()) {
    Tensor<T> data = read_npy<T>(r.eg_data);
    const Shape& s = data.shape();
    if (s.size() != shape.size() + 1 || s[0] == 0 || !std::equal(shape.begin(), shape.end(), s.begin() + 1))
      throw Error(r.eg_data + ": has shape " + to_string(s) + ", expected [D, " + to_string(shape).substr(1) + " with D >= 1");
    check_finite(data, r.eg_data);
    return data;
  }
  if (r.fashion_mnist_test == 0) throw Error("--methods eg needs a data set: give --eg-data PATH (.npy [D, input shape])");
  const std::shared_ptr<const nn::ImageSet> set =
      r.fashion_mnist_train ? r.fashion_mnist_train : std::make_shared<const nn::ImageSet>(nn::fashion_mnist_train(r.fashion_mnist_dir));
  const std::size_t rows = std::min(r.eg_data_rows, set->size());
  Shape data_shape{rows};
  for (std::size_t d : shape) data_shape.push_back(d);
  return row_of<T>(set->images, 0, data_shape);
}

// A thread's engine on one model, made when first asked; Engine::retarget sets the class each
// image explains, so that one recorded tape serves every image the thread runs.
template <class T>
class ThreadEngine {
 public:
  ThreadEngine(const std::string& node, const EngineOptions& options) : node_(node), options_(options) {}
  Engine<T>& on(const nn::ModelSpec& model, int class_index) {
    if (!engine_ || model_ != &model) {
      engine_ = std::make_unique<Engine<T>>(model, TargetSpec{node_, Output::logit, -1, -1}, options_);
      model_ = &model;
    }
    engine_->retarget(class_index);
    return *engine_;
  }

 private:
  std::string node_;
  EngineOptions options_;
  const nn::ModelSpec* model_ = nullptr;
  std::unique_ptr<Engine<T>> engine_;
};

// Runs task(engine, i) for i = 0..n-1, one index at a time on each of OpenMP's threads, each
// thread with its own ThreadEngine. The kernels' parallel regions inside a task are nested, so
// they run on the task's thread alone; a task's result depends on i only, never on the thread,
// so the bits are the same on one thread or many. done(i) runs on one thread at a time, for i in
// increasing order, as the tasks up to i have finished. The first error, by index, is rethrown
// once every thread has stopped (the tasks after an error are skipped).
template <class T, class Task, class Done>
void run_tasks(std::size_t n, const std::string& node, const EngineOptions& options, Task task, Done done) {
  std::vector<std::exception_ptr> errors(n);
  std::vector<char> finished(n, 0);
  std::size_t reported = 0;
  std::atomic<bool> failed{false};
#pragma omp parallel
  {
    ThreadEngine<T> engine(node, options);
#pragma omp for schedule(dynamic, 1)
    for (std::ptrdiff_t k = 0; k < static_cast<std::ptrdiff_t>(n); ++k) {
      const std::size_t i = static_cast<std::size_t>(k);
      if (!failed) try {
          task(engine, i);
        } catch (...) {
          errors[i] = std::current_exception();
          failed = true;
        }
#pragma omp critical(axiomatic_evaluate_done)
      {
        finished[i] = 1;
        for (; reported < n && finished[reported] && !errors[reported] && !failed; ++reported) try {
            done(reported);
          } catch (...) {
            errors[reported] = std::current_exception();
            failed = true;
          }
      }
    }
  }
  for (const std::exception_ptr& e : errors)
    if (e) std::rethrow_exception(e);
}

// What every attribution needs besides the engine and the input.
template <class T>
struct Context {
  const EvaluateRequest& request;
  Tensor<T> eg_data;
};

template <class T>
Tensor<T> attribute(const std::string& method, Engine<T>& f, const Tensor<T>& x, const Tensor<T>& baseline,
                    const Context<T>& c, std::uint64_t seed) {
  const EvaluateRequest& r = c.request;
  if (method == "gradient") return gradient(f, x, baseline).values;
  if (method == "inputxgradient") return input_x_gradient(f, x, baseline).values;
  if (method == "deeplift") return deeplift(f, x, baseline).values;
  if (method == "smoothgrad") return smoothgrad(f, x, baseline, SmoothKind::smoothgrad, 0.15, true, r.samples, seed).values;
  if (method == "eg") return expected_gradients(f, x, c.eg_data, r.samples, seed).values;
  IgOptions ig;  // ig: Gauss-Legendre, 50 steps
  if (method == "exact_ig") ig.rule = Rule::exact;
  return integrated_gradients(f, x, baseline, ig).values;
}

std::vector<double> as_doubles(const Tensor<float>& t) { return std::vector<double>(t.begin(), t.end()); }
std::vector<double> as_doubles(const Tensor<double>& t) { return std::vector<double>(t.begin(), t.end()); }
std::vector<double> absolute(std::vector<double> v) {
  for (double& e : v) e = std::fabs(e);
  return v;
}

// A seeded random order of n positions (Fisher-Yates).
std::vector<std::size_t> random_order(std::size_t n, Random& random) {
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), std::size_t(0));
  for (std::size_t i = n; i > 1; --i) std::swap(order[i - 1], order[random.below(i)]);
  return order;
}

// Sums of deletion curves over images: [curve name][fill][score] -> one value per step.
using CurveSums = std::map<std::string, std::map<std::string, std::map<std::string, std::vector<double>>>>;

void add_curve(std::vector<double>& sum, const std::vector<double>& curve) {
  if (sum.empty()) sum.assign(curve.size(), 0.0);
  for (std::size_t j = 0; j < curve.size(); ++j) sum[j] += curve[j];
}

// The progress callback's bookkeeping.
struct Progress {
  const EvaluateRequest& request;
  std::size_t done = 0, total = 0;
  void step(const std::string& what) {
    ++done;
    if (request.on_progress) request.on_progress(done, total, what);
  }
};

// Everything one image needs: the input, its fills, its baseline and predicted class.
template <class T>
struct Image {
  Tensor<T> x, baseline, fill_mean, fill_blur;
  int predicted = -1;
};

template <class T>
std::vector<Image<T>> prepare_images(const EvaluateRequest& r, const nn::ModelSpec& model, const Inputs<T>& in,
                                     Engine<T>& predictor) {
  const BaselineSpec spec = parse_baseline(r.baseline);
  if (spec.random()) throw Error("--baseline '" + r.baseline + "' is random; evaluate takes one deterministic baseline");
  BaselineSpec mean_spec;
  mean_spec.kind = BaselineSpec::Kind::mean;
  std::vector<Image<T>> images;
  for (const Tensor<T>& x : in.x) {
    Image<T> image;
    image.x = x;
    image.baseline = make_baseline(spec, x, model.graph.input.range);
    image.fill_mean = make_baseline(mean_spec, x, model.graph.input.range);
    image.fill_blur = gaussian_blur(x, r.blur_sigma);
    const std::vector<double> z = predictor.scores(x);
    image.predicted = static_cast<int>(std::max_element(z.begin(), z.end()) - z.begin());
    images.push_back(std::move(image));
  }
  return images;
}

// The deletion curves' JSON: the mean over images of each curve, and its areas.
nlohmann::json deletion_json(const CurveSums& sums, std::size_t images, const std::vector<std::size_t>& counts,
                             std::size_t values) {
  nlohmann::json j;
  std::vector<double> percent;
  for (std::size_t n : counts) percent.push_back(100.0 * double(n) / double(values));
  j["percent"] = percent;
  j["fills"] = {"mean", "blur"};
  j["area"] = "trapezoid rule under the mean curve over the fraction removed (0 to 1); area_probability_normalised "
              "divides by the mean probability of the intact images (k = 0): 1 means no drop at all";
  for (const auto& [name, by_fill] : sums)
    for (const auto& [fill, by_score] : by_fill) {
      nlohmann::json& c = j["curves"][name][fill];
      for (const auto& [score, sum] : by_score) {
        std::vector<double> mean(sum);
        for (double& v : mean) v /= double(images);
        c[score] = mean;
        c["area_" + score] = curve_area(mean);
      }
      const double intact = c["probability"][0].get<double>();
      c["area_probability_normalised"] = intact > 0 ? c["area_probability"].get<double>() / intact : 0.0;
    }
  return j;
}

template <class T>
nlohmann::json run(const EvaluateRequest& r, const nn::ModelSpec& model) {
  const std::vector<std::string> methods = methods_of(r);
  const EngineOptions options = engine_options(r.memory, r.model, r.timeout);
  const std::string node = logits_node(model.graph);
  Engine<T> predictor(model, TargetSpec{node, Output::logit, -1, -1}, options);
  const Shape shape = predictor.input_shape();
  const Inputs<T> in = read_inputs<T>(r, shape);  // every image read and checked first
  const Context<T> context{r, eg_data<T>(r, methods, shape)};
  const std::vector<Image<T>> images = prepare_images(r, model, in, predictor);
  const std::size_t values = numel(shape);
  const std::vector<std::size_t> counts = deletion_counts(values, r.deletion_steps);
  const std::vector<std::string> layers = parameterised_layers(model);
  const std::size_t kept = std::min(r.randomization_images, images.size());

  Progress progress{r, 0, images.size() * methods.size() + (layers.size() + 1) * kept * methods.size()};
  // the random orders first, in image order: one stream for them all
  Random random(r.seed);
  std::vector<std::vector<std::size_t>> random_orders;
  for (std::size_t i = 0; i < images.size(); ++i) random_orders.push_back(random_order(values, random));

  // images (in parallel) x methods: each attribution ranks the values once; an image's curves,
  // every order and both fills, run as one batch
  std::vector<std::vector<DeletionCurve>> curves(images.size());         // [image][order x fill]
  std::vector<std::vector<std::vector<double>>> originals(kept);           // [image][method]: the attributions
  run_tasks<T>(
      images.size(), node, options,
      [&](ThreadEngine<T>& engine, std::size_t i) {
        const Image<T>& image = images[i];
        Engine<T>& f = engine.on(model, image.predicted);
        std::vector<std::vector<std::size_t>> orders{random_orders[i]};
        for (const std::string& method : methods) {
          const Tensor<T> a = attribute(method, f, image.x, image.baseline, context, r.seed + i);
          orders.push_back(deletion_order(a));
          if (i < kept) originals[i].push_back(as_doubles(a));
        }
        curves[i] = deletion_curves(f, image.predicted, image.x, {&image.fill_mean, &image.fill_blur}, orders, counts);
      },
      [&](std::size_t i) {
        for (const std::string& method : methods) progress.step("deletion: image " + std::to_string(i + 1) + ", " + method);
      });
  CurveSums sums;  // summed in image order, whatever thread made each image's curves
  for (std::size_t i = 0; i < images.size(); ++i)
    for (std::size_t o = 0; o <= methods.size(); ++o)
      for (std::size_t k = 0; k < std::size(fills); ++k) {
        const DeletionCurve& curve = curves[i][o * std::size(fills) + k];
        std::map<std::string, std::vector<double>>& sum = sums[o == 0 ? "random" : methods[o - 1]][fills[k]];
        add_curve(sum["probability"], curve.probability);
        add_curve(sum["logit"], curve.logit);
      }

  // depths x images (in parallel) x methods: the same seeds as above, so only the weights differ.
  // Depth 0 is the original model, whose attributions are the originals themselves.
  std::vector<nn::ModelSpec> randomized;  // [depth - 1]
  for (std::size_t depth = 1; depth <= layers.size(); ++depth) randomized.push_back(randomize_top_layers(model, depth, r.seed));
  std::vector<std::vector<double>> abs_rho((layers.size() + 1) * kept), signed_rho((layers.size() + 1) * kept);  // [depth x image][method]
  run_tasks<T>(
      (layers.size() + 1) * kept, node, options,
      [&](ThreadEngine<T>& engine, std::size_t t) {
        const std::size_t depth = t / kept, i = t % kept;
        for (std::size_t m = 0; m < methods.size(); ++m) {
          std::vector<double> now = originals[i][m];
          if (depth > 0)
            now = as_doubles(attribute(methods[m], engine.on(randomized[depth - 1], images[i].predicted), images[i].x,
                                       images[i].baseline, context, r.seed + i));
          abs_rho[t].push_back(spearman(absolute(originals[i][m]), absolute(now)));
          signed_rho[t].push_back(spearman(originals[i][m], now));
        }
      },
      [&](std::size_t t) {
        for (const std::string& method : methods)
          progress.step("randomization: depth " + std::to_string(t / kept) + ", image " + std::to_string(t % kept + 1) + ", " + method);
      });
  std::map<std::string, std::vector<double>> abs_sum, signed_sum;  // summed in image order
  for (std::size_t m = 0; m < methods.size(); ++m) {
    abs_sum[methods[m]].assign(layers.size() + 1, 0.0);
    signed_sum[methods[m]].assign(layers.size() + 1, 0.0);
    for (std::size_t t = 0; t < abs_rho.size(); ++t) {
      abs_sum[methods[m]][t / kept] += abs_rho[t][m];
      signed_sum[methods[m]][t / kept] += signed_rho[t][m];
    }
  }

  nlohmann::json j;
  j["model"] = r.model;
  j["images"] = images.size();
  j["image_source"] = in.source;
  j["explained"] = "the logit (and probability) of the class the model predicts, node '" + node + "'";
  j["methods"] = methods;
  j["baseline"] = r.baseline;
  j["samples"] = r.samples;
  j["blur_sigma"] = r.blur_sigma;
  j["seed"] = r.seed;
  j["precision"] = r.float64 ? "f64" : "f32";
  j["deletion"] = deletion_json(sums, images.size(), counts, values);
  nlohmann::json& rj = j["randomization"];
  rj["images"] = kept;
  std::vector<std::string> reinitialised{""};  // the layer each depth adds, from the output down
  for (std::size_t d = 1; d <= layers.size(); ++d) reinitialised.push_back(layers[layers.size() - d]);
  rj["layer_at_depth"] = reinitialised;
  rj["correlation"] = "Spearman's rank correlation with the original model's attributions, of |a| (abs) and of a (signed)";
  for (const std::string& method : methods)
    for (std::size_t d = 0; d <= layers.size(); ++d) {
      rj["methods"][method]["spearman_abs"].push_back(kept ? abs_sum[method][d] / double(kept) : 0.0);
      rj["methods"][method]["spearman_signed"].push_back(kept ? signed_sum[method][d] / double(kept) : 0.0);
    }
  return j;
}

std::string number(double v) {
  char text[32];
  std::snprintf(text, sizeof text, "%.9g", v);
  return text;
}

std::vector<double> doubles(const nlohmann::json& j) { return j.get<std::vector<double>>(); }

// Curve names in the order they are shown: the methods, then the random control.
std::vector<std::string> curve_names(const nlohmann::json& e) {
  std::vector<std::string> names = e.at("methods").get<std::vector<std::string>>();
  names.push_back("random");
  return names;
}

std::string deletion_csv(const nlohmann::json& e) {
  const nlohmann::json& d = e.at("deletion");
  const std::vector<double> percent = doubles(d.at("percent"));
  std::string csv = "method,fill,percent_removed,probability,logit\n";
  for (const std::string& name : curve_names(e))
    for (const char* fill : fills) {
      const nlohmann::json& c = d.at("curves").at(name).at(fill);
      for (std::size_t k = 0; k < percent.size(); ++k)
        csv += name + "," + fill + "," + number(percent[k]) + "," + number(c.at("probability")[k].get<double>()) + "," +
               number(c.at("logit")[k].get<double>()) + "\n";
    }
  return csv;
}

std::string randomization_csv(const nlohmann::json& e) {
  const nlohmann::json& rj = e.at("randomization");
  const std::vector<std::string> layers = rj.at("layer_at_depth").get<std::vector<std::string>>();
  std::string csv = "method,depth,layer_reinitialised,spearman_abs,spearman_signed\n";
  for (const std::string& method : e.at("methods").get<std::vector<std::string>>()) {
    const nlohmann::json& m = rj.at("methods").at(method);
    for (std::size_t d = 0; d < layers.size(); ++d)
      csv += method + "," + std::to_string(d) + "," + layers[d] + "," + number(m.at("spearman_abs")[d].get<double>()) + "," +
             number(m.at("spearman_signed")[d].get<double>()) + "\n";
  }
  return csv;
}

// The corner of the plot whose legend-sized box (40% of the width, 45% of the height of the data's
// range) covers the fewest points of the series: where the legend hides the least.
plot::Corner emptiest_corner(const std::vector<plot::Series>& series) {
  double x_lo = HUGE_VAL, x_hi = -HUGE_VAL, y_lo = HUGE_VAL, y_hi = -HUGE_VAL;
  for (const plot::Series& s : series)
    for (std::size_t i = 0; i < std::min(s.x.size(), s.y.size()); ++i) {
      x_lo = std::min(x_lo, s.x[i]), x_hi = std::max(x_hi, s.x[i]);
      y_lo = std::min(y_lo, s.y[i]), y_hi = std::max(y_hi, s.y[i]);
    }
  const plot::Corner corners[] = {plot::Corner::top_right, plot::Corner::bottom_left, plot::Corner::bottom_right,
                                  plot::Corner::top_left};
  plot::Corner best = corners[0];
  std::size_t fewest = ~std::size_t(0);
  // corners x series x points: count the points inside each corner's box
  for (plot::Corner corner : corners) {
    const bool right = corner == plot::Corner::top_right || corner == plot::Corner::bottom_right;
    const bool top = corner == plot::Corner::top_right || corner == plot::Corner::top_left;
    const double x_edge = right ? x_hi - 0.4 * (x_hi - x_lo) : x_lo + 0.4 * (x_hi - x_lo);
    const double y_edge = top ? y_hi - 0.45 * (y_hi - y_lo) : y_lo + 0.45 * (y_hi - y_lo);
    std::size_t inside = 0;
    for (const plot::Series& s : series)
      for (std::size_t i = 0; i < std::min(s.x.size(), s.y.size()); ++i)
        inside += (right ? s.x[i] >= x_edge : s.x[i] <= x_edge) && (top ? s.y[i] >= y_edge : s.y[i] <= y_edge);
    if (inside < fewest) fewest = inside, best = corner;
  }
  return best;
}

std::string deletion_svg(const nlohmann::json& e, const char* fill) {
  const nlohmann::json& d = e.at("deletion");
  std::vector<plot::Series> series;
  for (const std::string& name : curve_names(e)) {
    plot::Series s;
    s.name = name;
    s.x = doubles(d.at("percent"));
    s.y = doubles(d.at("curves").at(name).at(fill).at("probability"));
    s.dashed = name == "random";
    series.push_back(std::move(s));
  }
  plot::Axes axes;
  axes.title = std::string("Deletion, filled with the ") + (std::string(fill) == "mean" ? "image's mean" : "blurred image");
  axes.x_label = "% of values removed (top attributions first)";
  axes.y_label = "probability of the class";
  axes.legend = emptiest_corner(series);
  return plot::line_plot_svg(axes, series);
}

std::string randomization_svg(const nlohmann::json& e, const char* key) {
  const nlohmann::json& rj = e.at("randomization");
  std::vector<plot::Series> series;
  for (const std::string& method : e.at("methods").get<std::vector<std::string>>()) {
    plot::Series s;
    s.name = method;
    s.y = doubles(rj.at("methods").at(method).at(key));
    for (std::size_t d = 0; d < s.y.size(); ++d) s.x.push_back(double(d));
    s.markers = true;
    series.push_back(std::move(s));
  }
  plot::Axes axes;
  axes.title = std::string("Model randomization, Spearman of ") + (std::string(key) == "spearman_abs" ? "|a|" : "a");
  axes.x_label = "layers re-initialised, from the output down";
  axes.y_label = "rank correlation with the original";
  axes.legend = emptiest_corner(series);
  return plot::line_plot_svg(axes, series);
}

std::string html_number(double v, const char* format = "%.3f") {
  char text[32];
  std::snprintf(text, sizeof text, format, v);
  return text;
}

// The table of deletion areas: one row per method and the random control, per fill.
std::string area_table(const nlohmann::json& e) {
  const nlohmann::json& curves = e.at("deletion").at("curves");
  std::string t = "<table class=\"evaluation-areas\">\n<tr><th>method</th>";
  for (const char* fill : fills)
    t += std::string("<th>area, ") + fill + " fill</th><th>normalised</th>";
  t += "</tr>\n";
  for (const std::string& name : curve_names(e)) {
    t += "<tr><td>" + plot::escape_xml(name) + "</td>";
    for (const char* fill : fills) {
      const nlohmann::json& c = curves.at(name).at(fill);
      t += "<td>" + html_number(c.at("area_probability").get<double>()) + "</td><td>" +
           html_number(c.at("area_probability_normalised").get<double>()) + "</td>";
    }
    t += "</tr>\n";
  }
  return t + "</table>\n";
}

}  // namespace

const std::vector<std::string>& evaluation_methods() {
  static const std::vector<std::string> names = {"gradient", "inputxgradient", "smoothgrad", "ig",
                                                 "exact_ig", "eg",             "deeplift"};
  return names;
}

std::vector<std::string> default_evaluation_methods() {
  std::vector<std::string> names;
  for (const std::string& m : evaluation_methods())
    if (m != "exact_ig") names.push_back(m);
  return names;
}

std::vector<double> average_ranks(const std::vector<double>& values) {
  std::vector<std::size_t> order(values.size());
  std::iota(order.begin(), order.end(), std::size_t(0));
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return values[a] < values[b]; });
  std::vector<double> ranks(values.size());
  // runs of equal values [begin, end) share the mean of ranks begin+1 .. end
  for (std::size_t begin = 0; begin < order.size();) {
    std::size_t end = begin + 1;
    while (end < order.size() && values[order[end]] == values[order[begin]]) ++end;
    const double rank = 0.5 * double(begin + 1 + end);
    for (std::size_t k = begin; k < end; ++k) ranks[order[k]] = rank;
    begin = end;
  }
  return ranks;
}

double spearman(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size() || a.size() < 2)
    throw Error("spearman: needs two lists of the same length >= 2, got " + std::to_string(a.size()) + " and " +
                std::to_string(b.size()));
  const std::vector<double> ra = average_ranks(a), rb = average_ranks(b);
  const double mean = 0.5 * double(a.size() + 1);  // the mean rank, ties or not
  double ab = 0, aa = 0, bb = 0;
  for (std::size_t i = 0; i < ra.size(); ++i) {
    ab += (ra[i] - mean) * (rb[i] - mean);
    aa += (ra[i] - mean) * (ra[i] - mean);
    bb += (rb[i] - mean) * (rb[i] - mean);
  }
  if (aa == 0 || bb == 0) return 0.0;
  return ab / std::sqrt(aa * bb);
}

template <class T>
std::vector<std::size_t> deletion_order(const Tensor<T>& attributions) {
  std::vector<std::size_t> order(attributions.size());
  std::iota(order.begin(), order.end(), std::size_t(0));
  const T* a = attributions.data();
  std::stable_sort(order.begin(), order.end(), [&](std::size_t i, std::size_t j) { return a[i] > a[j]; });
  return order;
}

std::vector<std::size_t> deletion_counts(std::size_t values, std::size_t steps) {
  if (steps == 0) throw Error("deletion_counts: 0 steps");
  std::vector<std::size_t> counts;
  for (std::size_t j = 0; j <= steps; ++j) counts.push_back((2 * values * j + steps) / (2 * steps));
  return counts;
}

template <class T>
std::vector<DeletionCurve> deletion_curves(Engine<T>& f, int class_index, const Tensor<T>& x,
                                           const std::vector<const Tensor<T>*>& fills,
                                           const std::vector<std::vector<std::size_t>>& orders,
                                           const std::vector<std::size_t>& counts) {
  const std::size_t n = x.size(), steps = counts.size(), curves = orders.size() * fills.size();
  // The rows to run, each once: the intact image (nothing removed) and each fill whole
  // (everything removed) are shared by every curve that reaches them.
  std::vector<T> rows;                  // [rows, n]
  std::vector<std::size_t> removed_at;  // per row: the values removed, for messages
  std::vector<std::size_t> row_of(curves * steps);  // [curve, step] -> its row
  const auto add_row = [&](const T* values, std::size_t removed) {
    rows.insert(rows.end(), values, values + n);
    removed_at.push_back(removed);
    return removed_at.size() - 1;
  };
  const std::size_t none = ~std::size_t(0);
  std::size_t intact = none;
  std::vector<std::size_t> whole(fills.size(), none);
  Buffer<T> row(n);
  // curves (order x fill) x steps x the values removed since the step before
  for (std::size_t c = 0; c < curves; ++c) {
    const std::vector<std::size_t>& order = orders[c / fills.size()];
    const std::size_t k = c % fills.size();
    const T* fill = fills[k]->data();
    std::copy(x.begin(), x.end(), row.begin());
    std::size_t removed = 0;
    for (std::size_t j = 0; j < steps; ++j) {
      for (; removed < counts[j]; ++removed) row[order[removed]] = fill[order[removed]];
      if (counts[j] == 0 || counts[j] == n) {
        std::size_t& shared = counts[j] == 0 ? intact : whole[k];
        if (shared == none) shared = add_row(row.data(), counts[j]);
        row_of[c * steps + j] = shared;
      } else {
        row_of[c * steps + j] = add_row(row.data(), counts[j]);
      }
    }
  }
  // chunks of rows x classes: the logit, and the probability from a shifted log-sum-exp
  std::vector<double> logit(removed_at.size()), probability(removed_at.size());
  for (std::size_t begin = 0; begin < removed_at.size(); begin += f.chunk()) {
    const std::size_t count = std::min(f.chunk(), removed_at.size() - begin);
    f.forward_points(rows.data() + begin * n, count, f.score_var());
    const Tensor<T>& z = f.tape().value(f.score_var());  // [count, classes]
    const std::size_t classes = z.size() / count;
    for (std::size_t i = 0; i < count; ++i) {
      const T* zi = z.data() + i * classes;
      const double top = double(*std::max_element(zi, zi + classes));
      double total = 0;
      for (std::size_t k = 0; k < classes; ++k) total += std::exp(double(zi[k]) - top);
      logit[begin + i] = double(zi[class_index]);
      if (!std::isfinite(top) || !std::isfinite(logit[begin + i]))
        throw NonFinite("deletion: a score is NaN or infinite at " + std::to_string(removed_at[begin + i]) + " values removed");
      probability[begin + i] = std::exp(logit[begin + i] - top) / total;
    }
  }
  std::vector<DeletionCurve> out(curves);
  for (std::size_t c = 0; c < curves; ++c)
    for (std::size_t j = 0; j < steps; ++j) {
      out[c].logit.push_back(logit[row_of[c * steps + j]]);
      out[c].probability.push_back(probability[row_of[c * steps + j]]);
    }
  return out;
}

template <class T>
DeletionCurve deletion_curve(Engine<T>& f, int class_index, const Tensor<T>& x, const Tensor<T>& fill,
                             const std::vector<std::size_t>& order, const std::vector<std::size_t>& counts) {
  return deletion_curves(f, class_index, x, {&fill}, {order}, counts)[0];
}

double curve_area(const std::vector<double>& y) {
  if (y.size() < 2) return y.empty() ? 0.0 : y[0];
  double area = 0;
  for (std::size_t j = 1; j < y.size(); ++j) area += 0.5 * (y[j - 1] + y[j]);
  return area / double(y.size() - 1);
}

namespace {
// The learned tensors of a node: "<node>.weight" and "<node>.bias" (running statistics are kept:
// a random running variance could be negative).
std::vector<std::string> learned_tensors(const nn::ModelSpec& model, const std::string& node) {
  std::vector<std::string> names;
  for (const char* param : {"weight", "bias"}) {
    const auto t = model.tensors.find(node + "." + param);
    if (t != model.tensors.end() && nn::has_values(t->second)) names.push_back(t->first);
  }
  return names;
}
}  // namespace

std::vector<std::string> parameterised_layers(const nn::ModelSpec& model) {
  std::vector<std::string> layers;
  for (const nn::NodeSpec& n : model.graph.nodes)
    if (!learned_tensors(model, n.name).empty()) layers.push_back(n.name);
  return layers;
}

nn::ModelSpec randomize_top_layers(const nn::ModelSpec& model, std::size_t depth, std::uint64_t seed) {
  const std::vector<std::string> layers = parameterised_layers(model);
  if (depth > layers.size())
    throw Error("randomize_top_layers: depth " + std::to_string(depth) + ", the model has " + std::to_string(layers.size()) +
                " parameterised layers");
  nn::ModelSpec randomized = model;
  // layers from the output down x their tensors x values
  for (std::size_t d = 0; d < depth; ++d) {
    Random random(seed + 0x9E3779B97F4A7C15ull * (d + 1));  // the layer's own stream
    for (const std::string& name : learned_tensors(model, layers[layers.size() - 1 - d])) {
      std::vector<double>& v = nn::own_values(randomized.tensors.at(name));  // a loaded file's bytes widened once
      double mean = 0, square = 0;
      for (double e : v) mean += e;
      mean /= double(v.size());
      for (double e : v) square += (e - mean) * (e - mean);
      const double sd = std::sqrt(square / double(v.size()));
      for (double& e : v) e = sd * random.normal();
    }
  }
  return randomized;
}

nlohmann::json evaluate(const EvaluateRequest& r) {
  if (r.deletion_steps == 0) throw Error("evaluate: deletion_steps must be at least 1");
  if (r.samples == 0) throw Error("evaluate: samples must be at least 1");
  if (!(r.blur_sigma >= 0 && r.blur_sigma <= max_blur_sigma)) throw Error("evaluate: blur sigma out of range");
  const nn::ModelSpec model = nn::load_model(r.model);
  return r.float64 ? run<double>(r, model) : run<float>(r, model);
}

std::vector<std::pair<std::string, std::string>> evaluation_files(const nlohmann::json& e) {
  return {{"evaluation.json", e.dump(2) + "\n"},
          {"deletion.csv", deletion_csv(e)},
          {"randomization.csv", randomization_csv(e)},
          {"deletion_mean.svg", deletion_svg(e, "mean")},
          {"deletion_blur.svg", deletion_svg(e, "blur")},
          {"randomization_abs.svg", randomization_svg(e, "spearman_abs")},
          {"randomization_signed.svg", randomization_svg(e, "spearman_signed")}};
}

nlohmann::json write_evaluation(const EvaluateRequest& request, const std::string& out) {
  const nlohmann::json e = evaluate(request);
  std::vector<std::pair<std::string, std::string>> files;
  for (auto& [name, bytes] : evaluation_files(e)) files.emplace_back((std::filesystem::path(out) / name).string(), bytes);
  // everything is made before the first file is written: a failure writes nothing
  std::error_code made;
  std::filesystem::create_directories(out, made);
  if (made) throw Error(out + ": cannot make the folder (" + made.message() + ")");
  write_files(files);
  return e;
}

std::string evaluation_html(const nlohmann::json& e) {
  const std::size_t images = e.at("images").get<std::size_t>();
  const std::size_t kept = e.at("randomization").at("images").get<std::size_t>();
  std::string h = "<section class=\"evaluation\">\n<h2>Evaluation</h2>\n";
  h += "<p>Deletion, over " + std::to_string(images) + " images (" + plot::escape_xml(e.at("image_source").get<std::string>()) +
       "): the values each method ranks highest are replaced first, by the image's mean or by a blurred copy, and the "
       "probability of the predicted class is read at each step; the dashed line removes them in a random order. A "
       "faster drop (a smaller area) means the method found what the model uses; it does not say the picture is "
       "easy to read, and the fill itself can move the model off its data.</p>\n";
  h += "<div class=\"evaluation-plots\">" + deletion_svg(e, "mean") + deletion_svg(e, "blur") + "</div>\n";
  h += area_table(e);
  h += "<p>Areas: trapezoid rule under the mean curve over the fraction removed (0 to 1), in probability; normalised "
       "divides by the mean probability of the intact images.</p>\n";
  h += "<p>Model randomization, over the first " + std::to_string(kept) +
       " images: the layers are re-initialised from the output down, cumulatively, and the attributions compared with "
       "the original ones by Spearman's rank correlation. A method that explains the model should fall towards 0; one "
       "that stays high shows the input more than what the model learned.</p>\n";
  h += "<div class=\"evaluation-plots\">" + randomization_svg(e, "spearman_abs") + randomization_svg(e, "spearman_signed") +
       "</div>\n</section>\n";
  return h;
}

template std::vector<std::size_t> deletion_order(const Tensor<float>&);
template std::vector<std::size_t> deletion_order(const Tensor<double>&);
template std::vector<DeletionCurve> deletion_curves(Engine<float>&, int, const Tensor<float>&,
                                                    const std::vector<const Tensor<float>*>&,
                                                    const std::vector<std::vector<std::size_t>>&,
                                                    const std::vector<std::size_t>&);
template std::vector<DeletionCurve> deletion_curves(Engine<double>&, int, const Tensor<double>&,
                                                    const std::vector<const Tensor<double>*>&,
                                                    const std::vector<std::vector<std::size_t>>&,
                                                    const std::vector<std::size_t>&);
template DeletionCurve deletion_curve(Engine<float>&, int, const Tensor<float>&, const Tensor<float>&,
                                      const std::vector<std::size_t>&, const std::vector<std::size_t>&);
template DeletionCurve deletion_curve(Engine<double>&, int, const Tensor<double>&, const Tensor<double>&,
                                      const std::vector<std::size_t>&, const std::vector<std::size_t>&);

}  // namespace ax::attr
