#include "report.hpp"

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
#include <fstream>

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

template <class T>
nlohmann::json explain_image(const ReportRequest& r, const nn::ModelSpec& model, const std::string& image_path,
                             const std::filesystem::path& out) {
  EngineOptions engine;
  engine.memory_budget = r.memory;
  engine.source = r.model;
  TargetFunction<T> f(model, TargetSpec{}, engine);
  const Tensor<T> x = read_array<T>(image_path, f.input_shape());
  check_finite(x, image_path);
  const Tensor<T> baseline = make_baseline(parse_baseline(r.baseline), x, model.graph.input.range);

  const int predicted = f.resolve_class(x);
  const std::vector<double> z = f.scores(x);
  double total = 0;
  for (double v : z) total += std::exp(v - z[static_cast<std::size_t>(predicted)]);

  IgOptions ig;
  ig.rule = r.rule;
  ig.steps = r.steps;
  ig.diagnostics = true;
  if (r.rule != Rule::exact) ig.tolerance = 1e-3;
  Attribution<T> a;
  try {
    a = integrated_gradients(f, x, baseline, ig);
  } catch (const Error& e) {
    if (r.rule != Rule::exact) throw;
    ig.rule = Rule::gausslegendre;  // not piecewise linear: converge a quadrature instead
    ig.tolerance = 1e-3;
    a = integrated_gradients(f, x, baseline, ig);
  }
  IgOptions captum;
  captum.rule = Rule::gausslegendre;
  captum.steps = 50;
  const Attribution<T> gl50 = integrated_gradients(f, x, baseline, captum);

  const std::string name = stem(image_path);
  const double lo = model.graph.input.range ? model.graph.input.range->first : 0.0;
  const double hi = model.graph.input.range ? model.graph.input.range->second : 1.0;
  // pictures about 224 pixels across, whatever the input's size
  const std::size_t side = std::max(x.shape()[x.dimension() - 1], x.shape()[x.dimension() - 2]);
  const std::size_t scale = std::max<std::size_t>(1, 224 / side);
  write_image((out / (name + "_overlay.png")).string(), overlay(x, a.values, lo, hi, scale));
  write_image((out / (name + "_heatmap.png")).string(), heatmap(a.values, scale));
  std::vector<double> path_f(a.path_f.size());
  for (std::size_t k = 0; k < a.path_f.size(); ++k) path_f[k] = a.path_f[k] - a.f_baseline;
  write_image((out / (name + "_path.png")).string(),
              plot(a.path_alpha, {path_f, a.path_cumulative}, {{{40, 40, 40}}, {{220, 40, 30}}}));

  nlohmann::json j = report(a, model.graph);
  j["image"] = image_path;
  j["name"] = name;
  j["predicted"] = predicted;
  j["label"] = j.value("label", std::string());
  j["pieces"] = a.pieces;
  j["probability"] = 1.0 / total;
  j["gausslegendre50_relative_delta"] = gl50.relative_delta;
  j["gausslegendre50_relative_l2_from_this"] = relative_l2(gl50.values, a.values);
  return j;
}

std::string markdown(const ReportRequest& r, const nn::ModelSpec& model, const nlohmann::json& images) {
  std::string md = "# axiomatic report\n\n";
  md += "Model `" + r.model + "`, baseline `" + r.baseline + "`, precision " + (r.float64 ? "f64" : "f32") +
        ". For each image: the predicted class, Integrated Gradients of its logit, and the completeness of the "
        "attributions (delta = sum - (F(x) - F(x'))).\n\n";
  md += "Pictures: the image with positive attributions in red and negative in blue; the heatmap alone; and the "
        "path, F(g(alpha)) - F(x') in black against the attributions' cumulative sum in red, which meet at alpha = 1 "
        "when IG is complete.\n\n";
  md += "| image | predicted | p | rule | pieces | F(x) | F(x') | sum | relative delta | GL-50 relative delta | GL-50 L2 off | s |\n";
  md += "|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  for (const nlohmann::json& j : images)
    md += "| " + j["name"].get<std::string>() + " | " + std::to_string(j["predicted"].get<int>()) + " " +
          j["label"].get<std::string>() + " | " + fixed(j["probability"].get<double>(), "%.3f") + " | " +
          j["rule"].get<std::string>() + " | " + std::to_string(j["pieces"].get<std::size_t>()) + " | " +
          fixed(j["f_input"].get<double>()) + " | " + fixed(j["f_baseline"].get<double>()) + " | " +
          fixed(j["sum"].get<double>()) + " | " + fixed(j["relative_delta"].get<double>(), "%.2e") + " | " +
          fixed(j["gausslegendre50_relative_delta"].get<double>(), "%.2e") + " | " +
          fixed(100 * j["gausslegendre50_relative_l2_from_this"].get<double>(), "%.2f%%") + " | " +
          fixed(j["seconds"].get<double>(), "%.2f") + " |\n";
  md += "\n";
  for (const nlohmann::json& j : images) {
    const std::string n = j["name"].get<std::string>();
    md += "## " + n + ": " + j["label"].get<std::string>() + "\n\n";
    md += "![overlay](" + n + "_overlay.png) ![heatmap](" + n + "_heatmap.png) ![path](" + n + "_path.png)\n\n";
  }
  md += "GL-50 is Gauss-Legendre with 50 steps, Captum's default; its L2 distance is relative to the attributions "
        "above, which are exact (one gradient per linear piece of the path) when the rule is `exact`.\n";
  (void)model;
  return md;
}

}  // namespace

nlohmann::json write_report(const ReportRequest& r) {
  const nn::ModelSpec model = nn::load_model(r.model);
  if (r.images.empty()) throw Error("report: no images given");
  const std::filesystem::path out(r.out);
  std::error_code made;
  std::filesystem::create_directories(out, made);
  if (made) throw Error(r.out + ": cannot make the folder (" + made.message() + ")");
  nlohmann::json images = nlohmann::json::array();
  for (const std::string& image : r.images)
    images.push_back(r.float64 ? explain_image<double>(r, model, image, out) : explain_image<float>(r, model, image, out));
  nlohmann::json report;
  report["model"] = r.model;
  report["baseline"] = r.baseline;
  report["precision"] = r.float64 ? "f64" : "f32";
  report["images"] = images;
  std::ofstream((out / "report.json").string()) << report.dump(2) << "\n";
  std::ofstream md((out / "report.md").string());
  md << markdown(r, model, images);
  if (!md) throw Error((out / "report.md").string() + ": cannot write");
  return report;
}

}  // namespace ax::attr
