#include "report.hpp"

#include "../autodiff/ops/registry.hpp"

#include "../nn/graph.hpp"
#include "../nn/model_file.hpp"
#include "baseline.hpp"
#include "explain.hpp"
#include "io.hpp"
#include "methods.hpp"
#include "visualize.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
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

// An image read and checked, with its baseline, before anything is explained.
template <class T>
struct Prepared {
  Tensor<T> x, baseline;
};

template <class T>
std::vector<Prepared<T>> prepare(const ReportRequest& r, const nn::ModelSpec& model, const Shape& input_shape) {
  const BaselineSpec spec = parse_baseline(r.baseline);
  std::vector<Prepared<T>> prepared;
  for (const std::string& image : r.images) {
    Prepared<T> p;
    p.x = read_array<T>(image, input_shape);
    check_finite(p.x, image);
    p.baseline = make_baseline(spec, p.x, model.graph.input.range);
    prepared.push_back(std::move(p));
  }
  return prepared;
}

template <class T>
Attribution<T> explain_logit(const ReportRequest& r, Engine<T>& f, const Prepared<T>& p) {
  IgOptions ig;
  ig.rule = r.rule;
  ig.steps = r.steps;
  ig.diagnostics = true;
  if (r.rule != Rule::exact) ig.tolerance = 1e-3;
  try {
    return integrated_gradients(f, p.x, p.baseline, ig);
  } catch (const NotPiecewiseLinear&) {
    if (r.rule != Rule::exact) throw;
    ig.rule = Rule::gausslegendre;  // not piecewise linear: converge a quadrature instead
    ig.tolerance = 1e-3;            // (more pieces than the cap is an error, never a fallback)
    return integrated_gradients(f, p.x, p.baseline, ig);
  }
}

template <class T>
nlohmann::json explain_image(const ReportRequest& r, const nn::ModelSpec& model, const EngineOptions& engine,
                             const Scheme& scheme, const std::string& image_path, const std::string& name,
                             const Prepared<T>& p, std::vector<std::pair<std::string, std::string>>& files,
                             const std::filesystem::path& out) {
  TargetSpec target;
  target.node = scheme.logits;
  Engine<T> f(model, target, engine);
  Engine<T> outputs(model, TargetSpec{}, engine);
  const int predicted = f.resolve_class(p.x);
  const Attribution<T> a = explain_logit(r, f, p);
  IgOptions captum;
  captum.rule = Rule::gausslegendre;
  captum.steps = 50;
  const Attribution<T> gl50 = integrated_gradients(f, p.x, p.baseline, captum);

  const double lo = model.graph.input.range ? model.graph.input.range->first : 0.0;
  const double hi = model.graph.input.range ? model.graph.input.range->second : 1.0;
  // pictures about 224 pixels across, whatever the input's size
  const Tensor<T>& x = p.x;
  const std::size_t side = std::max(x.shape()[x.dimension() - 1], x.shape()[x.dimension() - 2]);
  const std::size_t scale = std::max<std::size_t>(1, 224 / side);
  const auto picture = [&](const std::string& suffix, const Image& image) {
    files.emplace_back((out / (name + suffix)).string(), png_bytes(image.rgb, image.width, image.height, 3));
  };
  picture("_overlay.png", overlay(x, a.values, lo, hi, scale));
  picture("_heatmap.png", heatmap(a.values, scale));
  std::vector<double> path_f(a.path_f.size());
  for (std::size_t k = 0; k < a.path_f.size(); ++k) path_f[k] = a.path_f[k] - a.f_baseline;
  picture("_path.png", plot(a.path_alpha, {path_f, a.path_cumulative}, {{{40, 40, 40}}, {{220, 40, 30}}}));

  nlohmann::json j = report(a, model.graph);
  j["image"] = image_path;
  j["name"] = name;
  j["predicted"] = predicted;
  j["label"] = j.value("label", std::string());
  j["pieces"] = a.pieces;
  j["probability"] = probability(outputs.scores(p.x), predicted, scheme.output);
  if (scheme.output != Distribution::none) j["explained_node"] = scheme.logits;
  j["gausslegendre50_relative_delta"] = gl50.relative_delta;
  j["gausslegendre50_relative_l2_from_this"] = relative_l2(gl50.values, a.values);
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
nlohmann::json explain_all(const ReportRequest& r, const nn::ModelSpec& model,
                           std::vector<std::pair<std::string, std::string>>& files) {
  const EngineOptions engine = engine_options(r.memory, r.model, r.timeout);
  const Scheme scheme = scheme_of(model.graph);
  const Shape input_shape = Engine<T>(model, TargetSpec{}, engine).input_shape();
  const std::vector<Prepared<T>> prepared = prepare<T>(r, model, input_shape);  // every image checked first
  const std::vector<std::string> names = picture_names(r.images);
  nlohmann::json images = nlohmann::json::array();
  for (std::size_t i = 0; i < r.images.size(); ++i)
    images.push_back(explain_image(r, model, engine, scheme, r.images[i], names[i], prepared[i], files, r.out));
  return images;
}

}  // namespace

nlohmann::json write_report(const ReportRequest& r) {
  const nn::ModelSpec model = nn::load_model(r.model);
  if (r.images.empty()) throw Error("report: no images given");
  const std::filesystem::path out(r.out);
  std::vector<std::pair<std::string, std::string>> files;
  const nlohmann::json images = r.float64 ? explain_all<double>(r, model, files) : explain_all<float>(r, model, files);
  nlohmann::json report;
  report["model"] = r.model;
  report["baseline"] = r.baseline;
  report["precision"] = r.float64 ? "f64" : "f32";
  const std::string note = scheme_note(model.graph, scheme_of(model.graph));
  if (!note.empty()) report["note"] = note;
  report["images"] = images;
  files.emplace_back((out / "report.json").string(), report.dump(2) + "\n");
  files.emplace_back((out / "report.md").string(), markdown(r, model, images, note));
  // everything is made before the first file is written: a failure writes nothing
  std::error_code made;
  std::filesystem::create_directories(out, made);
  if (made) throw Error(r.out + ": cannot make the folder (" + made.message() + ")");
  write_files(files);
  return report;
}

}  // namespace ax::attr
