#include "explain.hpp"

#include "../nn/model_file.hpp"
#include "axioms.hpp"
#include "baseline.hpp"
#include "io.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <sstream>

namespace ax::attr {
namespace {

std::size_t default_samples(const ExplainRequest& r) {
  if (r.samples) return r.samples;
  if (r.method == "eg") return 100;
  if (r.method == "smoothgrad" || r.method == "smoothgrad_sq" || r.method == "vargrad") return 50;
  return 10;  // IG averaged over random baselines
}

template <class T>
std::string path_csv(const Attribution<T>& a) {
  std::ostringstream out;
  out << "alpha,f,cumulative_sum\n";
  out.precision(17);
  for (std::size_t k = 0; k < a.path_alpha.size(); ++k)
    out << a.path_alpha[k] << ',' << a.path_f[k] << ',' << a.path_cumulative[k] << '\n';
  return out.str();
}

// Random baselines are drawn all at once: their batch must fit the memory budget.
template <class T>
void check_baseline_batch(const ExplainRequest& r, std::size_t count, std::size_t per_sample) {
  if (count > r.memory / sizeof(T) / std::max<std::size_t>(per_sample, 1))
    throw Error("--baseline " + r.baseline + ": " + std::to_string(count) + " baselines of " + std::to_string(per_sample) +
                " values do not fit the memory budget of " + std::to_string(r.memory) + " bytes");
}

// What a request asks that its method cannot do, refused before any work runs (the command
// line refuses the same earlier; this guards the library's own callers).
void check_request(const ExplainRequest& r, const BaselineSpec& spec) {
  const bool layer = !r.layer.empty();
  if (r.method == "conductance" && !layer) throw Error("--method conductance needs --layer NAME");
  if (layer && r.method != "ig" && r.method != "conductance")
    throw Error("--layer applies to --method ig (layer IG) and conductance");
  if (layer && r.method == "ig" && r.rule == Rule::exact)
    throw Error("layer IG has no exact rule: its path lies in the layer's space; use a quadrature rule");
  if (layer && spec.random()) throw Error("layer attribution takes one baseline, not '" + r.baseline + "'");
  if (r.method == "eg" && spec.kind != BaselineSpec::Kind::data)
    throw Error("--method eg draws its baselines from a data set: give --baseline data:PATH");
  if (r.method == "deeplift" && spec.random()) throw Error("DeepLIFT takes one reference, not '" + r.baseline + "'");
  if (!r.path_csv.empty() && (r.method != "ig" || layer || spec.random()))
    throw Error("--path-csv applies to IG from a single baseline");
}

template <class T>
Attribution<T> attribute(const ExplainRequest& r, Engine<T>& f, const nn::ModelSpec& model, const Tensor<T>& x,
                         const BaselineSpec& spec, std::size_t samples, Random& random) {
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
  if (r.method == "gradient") return gradient(f, x, first, r.absolute);
  if (r.method == "inputxgradient") return input_x_gradient(f, x, first);
  if (r.method == "deeplift") return deeplift(f, x, first);
  if (r.method == "conductance") return conductance(f, x, first, r.layer, ig);
  if (r.method == "ig" && !r.layer.empty()) return layer_integrated_gradients(f, x, first, r.layer, ig);
  if (r.method == "ig")
    return baselines.shape()[0] == 1 ? integrated_gradients(f, x, first, ig) : integrated_gradients_multi(f, x, baselines, ig);
  if (r.method == "eg")
    return expected_gradients(f, x, make_baselines(spec, x, model.graph.input.range, 0, random), samples, r.seed);
  if (r.method == "smoothgrad" || r.method == "smoothgrad_sq" || r.method == "vargrad") {
    const SmoothKind kind = r.method == "smoothgrad" ? SmoothKind::smoothgrad
                            : r.method == "smoothgrad_sq" ? SmoothKind::smoothgrad_sq : SmoothKind::vargrad;
    return smoothgrad(f, x, first, kind, r.sigma, !r.sigma_absolute, samples, r.seed);
  }
  throw Error("unknown method '" + r.method +
              "'; expected gradient, inputxgradient, deeplift, ig, eg, smoothgrad, smoothgrad_sq, vargrad or conductance");
}

// One input to explain: its name in reports ("x.npy", a batch's row "batch.npy[3]") and its
// values [input shape].
template <class T>
struct NamedInput {
  std::string name;
  Tensor<T> x;
};

bool has_suffix(const std::string& text, const char* suffix) {
  const std::size_t n = std::strlen(suffix);
  return text.size() >= n && text.compare(text.size() - n, n, suffix) == 0;
}

// A folder's files that can be inputs (.png, .npy), sorted by name; none is an error.
std::vector<std::string> folder_inputs(const std::string& folder) {
  std::vector<std::string> files;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(folder, error)) {
    const std::string name = entry.path().string();
    if (entry.is_regular_file(error) && (has_suffix(name, ".npy") || has_suffix(name, ".png") || has_suffix(name, ".PNG")))
      files.push_back(name);
  }
  if (error) throw Error(folder + ": cannot list the folder (" + error.message() + ")");
  if (files.empty()) throw Error(folder + ": the folder holds no .png or .npy file");
  std::sort(files.begin(), files.end());
  return files;
}

// A file's inputs, appended to `out`: a file of the model's input shape is one input; an .npy
// of one dimension more (rank = the model input's rank + 1) is a batch, one input per row of
// its leading dimension. Returns whether it was a batch.
template <class T>
bool read_file_inputs(const std::string& path, const Shape& expected, std::vector<NamedInput<T>>& out) {
  if (has_suffix(path, ".npy")) {
    Tensor<T> t = read_npy<T>(path);
    const Shape& shape = t.shape();
    if (shape.size() == expected.size() + 1 && Shape(shape.begin() + 1, shape.end()) == expected) {
      const std::size_t per = numel(expected);
      for (std::size_t i = 0; i < shape[0]; ++i) {
        Tensor<T> x(expected);
        std::copy(t.data() + i * per, t.data() + (i + 1) * per, x.data());
        const std::string name = path + "[" + std::to_string(i) + "]";
        check_finite(x, name);
        out.push_back({name, std::move(x)});
      }
      return true;
    }
    if (shape != expected)
      throw Error(path + ": has shape " + to_string(shape) + ", the model expects " + to_string(expected) +
                  " (one input) or [N, " + to_string(expected).substr(1) + " (a batch of N)");
  }
  Tensor<T> x = read_array<T>(path, expected);
  check_finite(x, path);
  out.push_back({path, std::move(x)});
  return false;
}

// Every input of the request, read and checked before any is explained. `many` tells the
// single-input form (one file of the model's input shape: attributions of that shape, one
// report) from the others (several paths, a folder, a batch: stacked attributions, one report
// per input).
template <class T>
std::vector<NamedInput<T>> read_inputs(const ExplainRequest& r, const Shape& expected, bool& many) {
  std::vector<std::string> paths = r.inputs;
  if (!r.input.empty()) paths.insert(paths.begin(), r.input);
  if (paths.empty()) throw Error("no input: give an input file, a folder or a batch .npy");
  many = paths.size() > 1;
  std::vector<NamedInput<T>> inputs;
  for (const std::string& path : paths) {
    std::error_code error;
    if (std::filesystem::is_directory(path, error)) {
      many = true;
      for (const std::string& file : folder_inputs(path)) read_file_inputs(file, expected, inputs);
    } else if (read_file_inputs(path, expected, inputs)) {
      many = true;
    }
  }
  if (inputs.empty()) throw Error(paths.front() + ": a batch of 0 inputs: nothing to explain");
  return inputs;
}

// One input's report, from an engine that may have explained others before it: the target class
// as the request gives it (or this input's prediction), the random draws seeded afresh, so each
// input gets the bits a run of its own would give.
template <class T>
nlohmann::json explain_one(const ExplainRequest& r, Engine<T>& f, const nn::ModelSpec& model, const BaselineSpec& spec,
                           const Tensor<T>& x, Attribution<T>& a) {
  f.retarget(r.target.class_index);
  const std::size_t evaluations = f.evaluations();
  const std::size_t samples = default_samples(r);
  Random random(r.seed);
  a = attribute(r, f, model, x, spec, samples, random);
  nlohmann::json j = report(a, model.graph, r.target.node);
  j["precision"] = r.float64 ? "f64" : "f32";
  j["output"] = output_name(r.target.output);
  j["baseline"] = r.baseline;
  if (!r.target.node.empty()) j["node"] = r.target.node;
  if (!r.layer.empty()) j["layer"] = r.layer;
  j["chunk"] = f.chunk();
  j["evaluations"] = f.evaluations() - evaluations;
  if (r.method == "smoothgrad" || r.method == "smoothgrad_sq" || r.method == "vargrad") {
    j["sigma"] = r.sigma;
    j["sigma_relative_to_range"] = !r.sigma_absolute;
  }
  return j;
}

// explain, computed in precision T: one engine (the tape recorded once) for every input.
template <class T>
std::vector<nlohmann::json> explain_in(const ExplainRequest& r, const nn::ModelSpec& model) {
  const BaselineSpec spec = parse_baseline(r.baseline);
  check_request(r, spec);
  EngineOptions options = engine_options(r.memory, r.model, r.timeout, r.threads);
  if (!r.layer.empty()) options.keep_nodes.push_back(r.layer);
  Engine<T> f(model, r.target, options);
  bool many = false;
  const std::vector<NamedInput<T>> inputs = read_inputs<T>(r, f.input_shape(), many);
  if (many && !r.path_csv.empty()) throw Error("--path-csv applies to one input, not " + std::to_string(inputs.size()));
  const std::size_t samples = default_samples(r);
  if (spec.random()) check_baseline_batch<T>(r, samples, numel(f.input_shape()));

  std::vector<nlohmann::json> reports;
  Tensor<T> stacked;  // [inputs, attribution shape]
  Attribution<T> a;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    reports.push_back(explain_one(r, f, model, spec, inputs[i].x, a));
    if (many) reports.back()["input"] = inputs[i].name;
    if (i == 0) {
      Shape shape{inputs.size()};
      shape.insert(shape.end(), a.values.shape().begin(), a.values.shape().end());
      stacked.resize(shape);
    }
    std::copy(a.values.begin(), a.values.end(), stacked.data() + i * a.values.size());
  }
  // every output is made in memory, then written all or none
  std::vector<std::pair<std::string, std::string>> files;
  if (!r.out.empty()) files.emplace_back(r.out, many ? npy_bytes(stacked) : npy_bytes(a.values));
  if (!r.path_csv.empty()) files.emplace_back(r.path_csv, path_csv(a));
  write_files(files);
  return reports;
}

template <class T>
nlohmann::json run_check(const ExplainRequest& r, const nn::ModelSpec& model) {
  CheckRequest c;
  c.target = r.target;
  c.engine = engine_options(r.memory, r.model, r.timeout, r.threads);
  c.ig.rule = r.rule;
  c.ig.steps = r.steps;
  c.ig.exact.max_pieces = r.max_pieces;
  c.tolerance = r.check_tolerance;
  const BaselineSpec spec = parse_baseline(r.baseline);
  nn::ModelSpec equivalent;
  if (!r.equivalent.empty()) {
    equivalent = nn::load_model(r.equivalent);
    // the twin must take the same input before anything runs on it
    if (equivalent.graph.input.shape != model.graph.input.shape)
      throw Error(r.equivalent + ": input shape " + to_string(Shape(equivalent.graph.input.shape.begin(), equivalent.graph.input.shape.end())) +
                  " differs from " + r.model + "'s " + to_string(Shape(model.graph.input.shape.begin(), model.graph.input.shape.end())) +
                  "; --equivalent needs a model of the same input");
    c.equivalent = &equivalent;
    // recording the twin checks it as a model: its faults name its own file
    const Engine<T> twin(equivalent, r.target, engine_options(r.memory, r.equivalent, r.timeout, r.threads));
  }
  Engine<T> shapes(model, r.target, c.engine);
  const Tensor<T> x = read_array<T>(r.input, shapes.input_shape());
  check_finite(x, r.input);
  const Tensor<T> baseline = make_baseline(spec, x, model.graph.input.range);
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

EngineOptions engine_options(std::size_t memory, const std::string& source, double timeout, std::size_t threads) {
  EngineOptions engine;
  engine.threads = threads;
  engine.memory_budget = memory;
  engine.source = source;
  if (timeout > 0)
    engine.deadline = std::chrono::steady_clock::now() +
                      std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(timeout));
  return engine;
}

template <class T>
nlohmann::json report(const Attribution<T>& a, const nn::GraphSpec& graph, const std::string& node) {
  nlohmann::json j;
  j["method"] = a.method;
  j["rule"] = a.rule.empty() ? nlohmann::json(nullptr) : nlohmann::json(a.rule);
  j["steps"] = a.steps;
  j["target"] = a.target;
  // labels name the output's values, not a hidden node's
  const bool output = node.empty() || node == graph.output;
  if (output && a.target >= 0 && static_cast<std::size_t>(a.target) < graph.labels.size()) j["label"] = graph.labels[a.target];
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

std::vector<nlohmann::json> explain_inputs(const ExplainRequest& request) {
  const nn::ModelSpec model = nn::load_model(request.model);
  return request.float64 ? explain_in<double>(request, model) : explain_in<float>(request, model);
}

nlohmann::json explain(const ExplainRequest& request) {
  std::vector<nlohmann::json> reports = explain_inputs(request);
  if (reports.size() == 1 && !reports.front().contains("input")) return reports.front();
  return reports;  // many inputs: an array of their reports
}

template nlohmann::json report(const Attribution<float>&, const nn::GraphSpec&, const std::string&);
template nlohmann::json report(const Attribution<double>&, const nn::GraphSpec&, const std::string&);

}  // namespace ax::attr
