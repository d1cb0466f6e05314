#include "explain.hpp"

#include "../nn/model_file.hpp"
#include "axioms.hpp"
#include "baseline.hpp"
#include "io.hpp"

#include <fstream>

namespace ax::attr {
namespace {

std::size_t default_samples(const ExplainRequest& r) {
  if (r.samples) return r.samples;
  if (r.method == "eg") return 100;
  if (r.method == "smoothgrad" || r.method == "smoothgrad_sq" || r.method == "vargrad") return 50;
  return 10;  // IG averaged over random baselines
}

template <class T>
void write_path_csv(const std::string& path, const Attribution<T>& a) {
  std::ofstream out(path);
  if (!out) throw Error(path + ": cannot write");
  out << "alpha,f,cumulative_sum\n";
  out.precision(17);
  for (std::size_t k = 0; k < a.path_alpha.size(); ++k)
    out << a.path_alpha[k] << ',' << a.path_f[k] << ',' << a.path_cumulative[k] << '\n';
}

template <class T>
nlohmann::json run(const ExplainRequest& r, const nn::ModelSpec& model) {
  EngineOptions engine;
  engine.memory_budget = r.memory;
  engine.source = r.model;
  TargetFunction<T> f(model, r.target, engine);
  const Tensor<T> x = read_array<T>(r.input, f.input_shape());
  check_finite(x, r.input);
  Random random(r.seed);
  const BaselineSpec spec = parse_baseline(r.baseline);
  const std::size_t samples = default_samples(r);
  const Tensor<T> baselines = make_baselines(spec, x, model.graph.input.range, spec.random() ? samples : 1, random);
  check_finite(baselines, "the baseline");
  Tensor<T> first(x.shape());  // the baseline of the methods that take one
  std::copy(baselines.data(), baselines.data() + x.size(), first.data());

  IgOptions ig;
  ig.rule = r.rule;
  ig.steps = r.steps;
  ig.tolerance = r.tolerance;
  ig.max_steps = r.max_steps;
  ig.diagnostics = !r.path_csv.empty();
  ig.exact.max_pieces = r.max_pieces;
  Attribution<T> a;
  if (r.method == "gradient") a = gradient(f, x, first, r.absolute);
  else if (r.method == "inputxgradient") a = input_x_gradient(f, x, first);
  else if (r.method == "conductance" || (r.method == "ig" && !r.layer.empty())) {
    if (r.layer.empty()) throw Error("--method conductance needs --layer NAME");
    if (baselines.shape()[0] != 1) throw Error("layer attribution takes one baseline, not '" + r.baseline + "'");
    a = r.method == "ig" ? layer_integrated_gradients(f, x, first, r.layer, ig) : conductance(f, x, first, r.layer, ig);
  } else if (r.method == "ig") {
    a = baselines.shape()[0] == 1 ? integrated_gradients(f, x, first, ig) : integrated_gradients_multi(f, x, baselines, ig);
  } else if (r.method == "eg") {
    if (spec.kind != BaselineSpec::Kind::data)
      throw Error("--method eg draws its baselines from a data set: give --baseline data:PATH");
    a = expected_gradients(f, x, make_baselines(spec, x, model.graph.input.range, 0, random), samples, r.seed);
  } else if (r.method == "smoothgrad" || r.method == "smoothgrad_sq" || r.method == "vargrad") {
    const SmoothKind kind = r.method == "smoothgrad" ? SmoothKind::smoothgrad
                            : r.method == "smoothgrad_sq" ? SmoothKind::smoothgrad_sq : SmoothKind::vargrad;
    a = smoothgrad(f, x, first, kind, r.sigma, !r.sigma_absolute, samples, r.seed);
  } else {
    throw Error("unknown method '" + r.method +
                "'; expected gradient, inputxgradient, ig, eg, smoothgrad, smoothgrad_sq, vargrad or conductance");
  }
  if (!r.layer.empty() && r.method != "ig" && r.method != "conductance")
    throw Error("--layer applies to --method ig (layer IG) and conductance");
  if (!r.out.empty()) write_npy(r.out, a.values);
  if (!r.path_csv.empty()) {
    if (a.path_alpha.empty()) throw Error("--path-csv applies to IG from a single baseline");
    write_path_csv(r.path_csv, a);
  }
  nlohmann::json j = report(a, model.graph);
  j["precision"] = r.float64 ? "f64" : "f32";
  j["output"] = output_name(r.target.output);
  j["baseline"] = r.baseline;
  if (!r.layer.empty()) j["layer"] = r.layer;
  j["chunk"] = f.chunk();
  j["evaluations"] = f.evaluations();
  if (r.method == "smoothgrad" || r.method == "smoothgrad_sq" || r.method == "vargrad") {
    j["sigma"] = r.sigma;
    j["sigma_relative_to_range"] = !r.sigma_absolute;
  }
  return j;
}

template <class T>
nlohmann::json run_check(const ExplainRequest& r, const nn::ModelSpec& model) {
  CheckRequest c;
  c.target = r.target;
  c.engine.memory_budget = r.memory;
  c.engine.source = r.model;
  c.ig.rule = r.rule;
  c.ig.steps = r.steps;
  c.ig.exact.max_pieces = r.max_pieces;
  c.tolerance = r.check_tolerance;
  nn::ModelSpec equivalent;
  if (!r.equivalent.empty()) {
    equivalent = nn::load_model(r.equivalent);
    c.equivalent = &equivalent;
  }
  TargetFunction<T> shapes(model, r.target, c.engine);
  const Tensor<T> x = read_array<T>(r.input, shapes.input_shape());
  check_finite(x, r.input);
  const Tensor<T> baseline = make_baseline(parse_baseline(r.baseline), x, model.graph.input.range);
  nlohmann::json out;
  out["passed"] = true;
  out["rule"] = rule_name(r.rule);
  out["precision"] = r.float64 ? "f64" : "f32";
  for (const AxiomCheck& a : check_axioms(model, x, baseline, c)) {
    nlohmann::json j;
    j["axiom"] = a.axiom;
    j["applicable"] = a.applicable;
    j["passed"] = a.passed;
    j["error"] = a.error;
    j["tolerance"] = a.tolerance;
    j["detail"] = a.detail;
    out["checks"].push_back(j);
    if (!a.passed) out["passed"] = false;
  }
  return out;
}

}  // namespace

nlohmann::json check(const ExplainRequest& request) {
  const nn::ModelSpec model = nn::load_model(request.model);
  return request.float64 ? run_check<double>(request, model) : run_check<float>(request, model);
}

template <class T>
nlohmann::json report(const Attribution<T>& a, const nn::GraphSpec& graph) {
  nlohmann::json j;
  j["method"] = a.method;
  j["rule"] = a.rule.empty() ? nlohmann::json(nullptr) : nlohmann::json(a.rule);
  j["steps"] = a.steps;
  j["target"] = a.target;
  if (a.target >= 0 && static_cast<std::size_t>(a.target) < graph.labels.size()) j["label"] = graph.labels[a.target];
  j["f_input"] = a.f_input;
  j["f_baseline"] = a.f_baseline;
  j["sum"] = a.sum;
  j["delta"] = a.delta;
  j["relative_delta"] = a.relative_delta;
  if (a.method == "eg" || a.method == "smoothgrad" || a.method == "smoothgrad_sq") j["standard_error"] = a.standard_error;
  if (a.method == "eg" || a.method.rfind("smooth", 0) == 0 || a.method == "vargrad") j["seed"] = a.seed;
  if (a.pieces) j["pieces"] = a.pieces;
  j["seconds"] = a.seconds;
  return j;
}

nlohmann::json explain(const ExplainRequest& request) {
  const nn::ModelSpec model = nn::load_model(request.model);
  return request.float64 ? run<double>(request, model) : run<float>(request, model);
}

template nlohmann::json report(const Attribution<float>&, const nn::GraphSpec&);
template nlohmann::json report(const Attribution<double>&, const nn::GraphSpec&);

}  // namespace ax::attr
