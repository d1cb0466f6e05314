#include "options.hpp"

#include "attribution/baseline.hpp"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <limits>

namespace ax::cli {
namespace {

const std::vector<std::string> rule_names = {"riemann_left",      "riemann_right", "riemann_middle",
                                             "riemann_trapezoid", "gausslegendre", "exact"};
const std::vector<std::string> method_names = {"gradient",   "inputxgradient", "ig",      "eg",         "deeplift",
                                               "smoothgrad", "smoothgrad_sq",  "vargrad", "conductance"};
const char* const baseline_help =
    "zero, white, constant:V, mean, mean:PATH, uniform, gaussian:SIGMA, blur:SIGMA, maxdist, file:PATH, data:PATH";

bool is_smooth(const std::string& method) {
  return method == "smoothgrad" || method == "smoothgrad_sq" || method == "vargrad";
}

// Numbers are taken as text and checked by the strict parsers after CLI11 has matched them.
struct Numbers {
  std::string target, minus, steps, tolerance, max_steps, samples, sigma, seed, max_pieces, timeout, threads;
  std::string memory = "1G";
  std::string evaluate;  // report's --evaluate N
  std::string winograd = "unset";  // "on", "off", "" (given bare: on) or "unset" (not given)
};

// What explain, check and report share: rule, output, precision, memory, timeout.
struct Choices {
  std::string rule, output = "logit", precision;
};

CLI::Option* add_model(CLI::App& app, std::string& model) {
  return app.add_option("--model", model, "model file (.safetensors) or toy model (.json)")->required()->check(CLI::ExistingFile);
}

void add_rule(CLI::App& app, Choices& c, const char* help) {
  app.add_option("--rule", c.rule, help)->check(CLI::IsMember(rule_names));
}

void add_common(CLI::App& app, Choices& c, Numbers& n) {
  app.add_option("--precision", c.precision, "f32 or f64: the type the tape computes in")->check(CLI::IsMember({"f32", "f64"}));
  app.add_option("--memory", n.memory, "memory budget for the tape's buffers (bytes, or 512M, 1G; at most 1024G)");
  app.add_option("--timeout", n.timeout, "stop with an error after this many seconds (no partial answer)");
  app.add_option("--threads", n.threads, "threads of the computation (1 to 1024; default: the cores available)");
  app.add_option("--winograd", n.winograd,
                 "on or off: float 3x3 stride-1 convolutions through Winograd where it pays, at about 10x the "
                 "direct path's rounding; off keeps every convolution direct (default: on, but off for report, "
                 "whose figures stand beside exact IG's, always direct)")
      ->expected(0, 1)
      ->check(CLI::IsMember({"on", "off"}));
}

void add_explain(CLI::App& app, attr::ExplainRequest& r, Choices& c, Numbers& n, bool& json) {
  add_model(app, r.model);
  app.add_option("--input", r.inputs,
                 "inputs: PNG (8-bit gray or RGB) or .npy of the model's input shape, folders of them, or an .npy "
                 "batch [N, input shape]; one or more")
      ->required()
      ->check(CLI::ExistingPath);
  app.add_option("--out", r.out, "where to write the attributions (.npy: the input's shape, or [inputs, ...] for many)");
  app.add_option("--target", n.target, "class index to explain (default: the predicted class)");
  app.add_option("--minus", n.minus, "explain the difference target - minus");
  app.add_option("--node", r.target.node, "explain a named node instead of the output");
  app.add_option("--output", c.output, "logit, prob or logprob")->check(CLI::IsMember({"logit", "prob", "logprob"}));
  app.add_option("--method", r.method, "the method")->check(CLI::IsMember(method_names));
  app.add_option("--layer", r.layer, "a hidden node: layer IG (--method ig) or conductance; attributions have its shape");
  add_rule(app, c, "IG's quadrature rule");
  app.add_option("--steps", n.steps, "IG's path points (at most 32768)");
  app.add_option("--tolerance", n.tolerance, "IG: double the steps until |delta| / |F(x) - F(x')| <= T");
  app.add_option("--max-steps", n.max_steps, "IG: the cap of the adaptive doubling (at most 32768)");
  app.add_option("--baseline", r.baseline, baseline_help);
  app.add_option("--samples", n.samples, "samples (eg, smoothgrad, random baselines; at most 1048576)");
  app.add_option("--sigma", n.sigma, "SmoothGrad noise, relative to the input range unless --sigma-absolute");
  app.add_flag("--sigma-absolute", r.sigma_absolute, "--sigma is in input units, not relative to the range");
  app.add_flag("--abs", r.absolute, "gradient: its absolute value");
  app.add_option("--seed", n.seed, "seeds every random draw (0 to 2^64 - 1)");
  app.add_option("--path-csv", r.path_csv, "IG: write alpha, F and the cumulative sum along the path");
  app.add_option("--max-pieces", n.max_pieces, "--rule exact: stop with an error past this many linear pieces");
  app.add_flag("--json", json, "print one JSON object on stdout");
  add_common(app, c, n);
}

void add_check(CLI::App& app, attr::ExplainRequest& r, Choices& c, Numbers& n, bool& json) {
  add_model(app, r.model);
  app.add_option("--input", r.input, "input: PNG or .npy of the model's input shape")->required()->check(CLI::ExistingFile);
  app.add_option("--target", n.target, "class index (default: the predicted class)");
  app.add_option("--output", c.output, "logit, prob or logprob")->check(CLI::IsMember({"logit", "prob", "logprob"}));
  add_rule(app, c, "IG's rule (default exact: the network must be piecewise linear)");
  app.add_option("--steps", n.steps, "IG's path points (quadrature rules; at most 32768)");
  app.add_option("--baseline", r.baseline, "a deterministic baseline SPEC (zero, white, constant:V, mean, blur:S, maxdist, file:PATH)");
  app.add_option("--equivalent", r.equivalent, "a functionally equivalent model for implementation invariance")
      ->check(CLI::ExistingFile);
  app.add_option("--tolerance", n.tolerance, "relative tolerance of every check (default: by precision and rule)");
  app.add_option("--max-pieces", n.max_pieces, "--rule exact: the cap on linear pieces");
  app.add_flag("--json", json, "print one JSON object on stdout");
  add_common(app, c, n);
}

void add_report(CLI::App& app, attr::ReportRequest& r, Choices& c, Numbers& n) {
  add_model(app, r.model);
  app.add_option("--images", r.images, "images (PNG or .npy)")->required()->check(CLI::ExistingFile);
  app.add_option("--out", r.out, "folder for index.html, report.json, report.md and the pictures")->required();
  add_rule(app, c, "IG's rule (exact falls back to gausslegendre on networks that are not piecewise linear)");
  app.add_option("--steps", n.steps, "steps of a quadrature rule (at most 32768)");
  app.add_option("--baseline", r.baseline, "a deterministic baseline SPEC");
  app.add_option("--labels", r.labels, "the images' true labels, one line per image (default: from the file names)")
      ->check(CLI::ExistingFile);
  app.add_option("--data", r.data, "data set (.npy [D, input shape]) for expected gradients and the data baseline, "
                                   "or none (default: Debian's Fashion-MNIST training set for [1, 28, 28] inputs)");
  app.add_option("--seed", n.seed, "seeds every random draw (0 to 2^64 - 1)");
  app.add_option("--evaluate", n.evaluate, "add an evaluation section over the first N images of Fashion-MNIST's test set (1 to 10000)");
  add_common(app, c, n);
}

// evaluate's own numbers, taken as text like the others.
struct EvaluateNumbers {
  std::string fashion_mnist_test, samples, deletion_steps, blur_sigma, randomization_images, seed;
};

void add_evaluate(CLI::App& app, Request& request, Choices& c, Numbers& n, EvaluateNumbers& e) {
  attr::EvaluateRequest& r = request.evaluate;
  add_model(app, r.model);
  app.add_option("--images", r.images, "images (PNG or .npy), or folders of PNGs")->check(CLI::ExistingPath);
  app.add_option("--fashion-mnist-test", e.fashion_mnist_test, "the first N images of Fashion-MNIST's test set instead of --images");
  app.add_option("--out", request.evaluate_out, "folder for evaluation.json, deletion.csv, randomization.csv and the SVG plots")->required();
  app.add_option("--methods", r.methods, "comma-separated, from gradient, inputxgradient, smoothgrad, ig, exact_ig, eg, deeplift "
                 "(default: all but exact_ig; eg only with a data set)")
      ->delimiter(',')
      ->check(CLI::IsMember(attr::evaluation_methods()));
  app.add_option("--baseline", r.baseline, "a deterministic baseline SPEC (default zero)");
  app.add_option("--eg-data", r.eg_data, "eg's data set, .npy [D, input shape] (default with --fashion-mnist-test: 1000 training images)")
      ->check(CLI::ExistingFile);
  app.add_option("--samples", e.samples, "smoothgrad's and eg's draws per image (default 32)");
  app.add_option("--deletion-steps", e.deletion_steps, "steps of k from 0 to 100% (default 20, at most 1000)");
  app.add_option("--blur-sigma", e.blur_sigma, "the blurred fill's Gaussian in pixels (default 2)");
  app.add_option("--randomization-images", e.randomization_images, "images of the randomization check (the first; default 10)");
  app.add_option("--seed", e.seed, "seeds the random order, smoothgrad, eg and the re-initialised weights");
  add_common(app, c, n);
}

void apply_evaluate(const Choices& c, const Numbers& n, const EvaluateNumbers& e, attr::EvaluateRequest& r) {
  if (!c.precision.empty()) r.float64 = c.precision == "f64";
  r.memory = parse_bytes(n.memory, "--memory");
  if (!n.timeout.empty()) r.timeout = parse_real(n.timeout, "--timeout", 1e-3, max_timeout);
  if (!e.fashion_mnist_test.empty()) r.fashion_mnist_test = parse_count(e.fashion_mnist_test, "--fashion-mnist-test", 1, 10000);
  if (!e.samples.empty()) r.samples = parse_count(e.samples, "--samples", 1, attr::max_samples);
  if (!e.deletion_steps.empty()) r.deletion_steps = parse_count(e.deletion_steps, "--deletion-steps", 1, 1000);
  if (!e.blur_sigma.empty()) r.blur_sigma = parse_real(e.blur_sigma, "--blur-sigma", 0, attr::max_blur_sigma);
  if (!e.randomization_images.empty())
    r.randomization_images = parse_count(e.randomization_images, "--randomization-images", 1, 10000);
  if (!e.seed.empty()) r.seed = parse_count(e.seed, "--seed", 0, std::numeric_limits<std::uint64_t>::max());
  if (r.images.empty() == (r.fashion_mnist_test == 0))
    throw UsageError("evaluate: give either --images or --fashion-mnist-test N");
  for (std::size_t i = 0; i < r.methods.size(); ++i)
    if (std::find(r.methods.begin(), r.methods.begin() + static_cast<std::ptrdiff_t>(i), r.methods[i]) != r.methods.begin() + static_cast<std::ptrdiff_t>(i))
      throw UsageError("--methods: '" + r.methods[i] + "' is named twice");
  const bool eg = std::find(r.methods.begin(), r.methods.end(), "eg") != r.methods.end();
  if (eg && r.eg_data.empty() && r.fashion_mnist_test == 0)
    throw UsageError("--methods eg draws baselines from a data set: give --eg-data PATH (or use --fashion-mnist-test)");
  if (!r.eg_data.empty() && !r.methods.empty() && !eg) throw UsageError("--eg-data applies to the method eg");
}

void add_info(CLI::App& app, std::string& model, Numbers& n) {
  add_model(app, model);
  app.add_option("--timeout", n.timeout, "stop with an error after this many seconds");
}

// The numbers and choices shared by the subcommands, into a request's fields.
template <class Request>
void apply_common(const Choices& c, const Numbers& n, Request& r) {
  if (!c.rule.empty()) r.rule = attr::parse_rule(c.rule);
  if (!c.precision.empty()) r.float64 = c.precision == "f64";
  r.memory = parse_bytes(n.memory, "--memory");
  if (!n.timeout.empty()) r.timeout = parse_real(n.timeout, "--timeout", 1e-3, max_timeout);
  if (!n.steps.empty()) r.steps = parse_count(n.steps, "--steps", 1, attr::max_steps_cap);
}

void apply_explain(const Choices& c, const Numbers& n, attr::ExplainRequest& r) {
  apply_common(c, n, r);
  r.target.output = attr::parse_output(c.output);
  const auto class_index = [](const std::string& text, const char* option) {
    return static_cast<int>(parse_count(text, option, 0, std::numeric_limits<int>::max()));
  };
  if (!n.target.empty()) r.target.class_index = class_index(n.target, "--target");
  if (!n.minus.empty()) r.target.minus_class = class_index(n.minus, "--minus");
  if (!n.tolerance.empty()) r.tolerance = parse_real(n.tolerance, "--tolerance", 0, 1e300);
  if (!n.max_steps.empty()) r.max_steps = parse_count(n.max_steps, "--max-steps", 1, attr::max_steps_cap);
  if (!n.samples.empty()) r.samples = parse_count(n.samples, "--samples", 1, attr::max_samples);
  if (!n.sigma.empty()) r.sigma = parse_real(n.sigma, "--sigma", 0, 1e300);
  if (!n.seed.empty()) r.seed = parse_count(n.seed, "--seed", 0, std::numeric_limits<std::uint64_t>::max());
  if (!n.max_pieces.empty()) r.max_pieces = parse_count(n.max_pieces, "--max-pieces", 1, std::uint64_t(1) << 30);
}

void apply_check(const Choices& c, const Numbers& n, attr::ExplainRequest& r) {
  apply_common(c, n, r);
  r.target.output = attr::parse_output(c.output);
  if (!n.target.empty())
    r.target.class_index = static_cast<int>(parse_count(n.target, "--target", 0, std::numeric_limits<int>::max()));
  if (!n.tolerance.empty()) r.check_tolerance = parse_real(n.tolerance, "--tolerance", 0, 1e300);
  if (!n.max_pieces.empty()) r.max_pieces = parse_count(n.max_pieces, "--max-pieces", 1, std::uint64_t(1) << 30);
}

// A baseline SPEC, checked as the library will read it (blur's sigma bounded there).
attr::BaselineSpec baseline_of(const std::string& spec) {
  try {
    return attr::parse_baseline(spec);
  } catch (const Error& e) {
    throw UsageError(std::string("--baseline: ") + e.what());
  }
}

// An output file's folder must exist (looked up, nothing written).
void check_folder(const std::string& path, const char* option) {
  if (path.empty()) return;
  const std::filesystem::path folder = std::filesystem::path(path).parent_path();
  std::error_code error;
  if (!folder.empty() && !std::filesystem::is_directory(folder, error))
    throw UsageError(std::string(option) + ": the folder '" + folder.string() + "' does not exist");
}

// The combinations a method cannot use, refused before anything runs.
void check_explain(const attr::ExplainRequest& r, const Numbers& n, const std::vector<std::string>& given) {
  const auto has = [&](const char* option) { return std::find(given.begin(), given.end(), option) != given.end(); };
  const attr::BaselineSpec baseline = baseline_of(r.baseline);
  const bool ig = r.method == "ig", layer = !r.layer.empty();
  if (r.method == "conductance" && !layer) throw UsageError("--method conductance needs --layer NAME");
  if (layer && !ig && r.method != "conductance")
    throw UsageError("--layer applies to --method ig (layer IG) and conductance, not " + r.method);
  if (layer && ig && r.rule == attr::Rule::exact)
    throw UsageError("--layer with --method ig (layer IG) has no exact rule: its path lies in the layer's space; give a quadrature --rule");
  if (layer && baseline.random()) throw UsageError("--layer takes one baseline, not the random '" + r.baseline + "'");
  if (r.method == "eg" && baseline.kind != attr::BaselineSpec::Kind::data)
    throw UsageError("--method eg draws its baselines from a data set: give --baseline data:PATH");
  if (r.method == "deeplift" && baseline.random())
    throw UsageError("--method deeplift takes one reference, not the random baseline '" + r.baseline + "'");
  if (r.method == "deeplift" && r.target.output != attr::Output::logit)
    throw UsageError("--method deeplift explains logits (softmax has no rescale rule); drop --output");
  if (has("--path-csv") && (!ig || layer || baseline.random()))
    throw UsageError("--path-csv applies to --method ig from a single baseline, without --layer");
  if (has("--abs") && r.method != "gradient") throw UsageError("--abs applies to --method gradient");
  if ((has("--sigma") || has("--sigma-absolute")) && !is_smooth(r.method))
    throw UsageError("--sigma and --sigma-absolute apply to smoothgrad, smoothgrad_sq and vargrad");
  if (!n.samples.empty() && !(r.method == "eg" || is_smooth(r.method) || baseline.random()))
    throw UsageError("--samples applies to eg, the smoothgrad family and random baselines");
  if ((has("--tolerance") || has("--max-steps")) && (!ig || layer || r.rule == attr::Rule::exact))
    throw UsageError("--tolerance and --max-steps apply to --method ig with a quadrature rule");
  if (r.target.minus_class >= 0 && r.target.minus_class == r.target.class_index)
    throw UsageError("--target and --minus are both " + std::to_string(r.target.class_index));
  if (r.out == r.path_csv && !r.out.empty()) throw UsageError("--out and --path-csv name the same file");
  if (has("--path-csv") && r.inputs.size() > 1) throw UsageError("--path-csv applies to one input");
  check_folder(r.out, "--out");
  check_folder(r.path_csv, "--path-csv");
}

void check_deterministic_baseline(const std::string& spec) {
  if (baseline_of(spec).random())
    throw UsageError("--baseline '" + spec + "' is random; this command takes one deterministic baseline");
}

// report's own options: the seed, and the data set ("none" or an existing .npy).
void check_report(attr::ReportRequest& r, const Numbers& n) {
  if (!n.seed.empty()) r.seed = parse_count(n.seed, "--seed", 0, std::numeric_limits<std::uint64_t>::max());
  if (!n.evaluate.empty()) r.evaluate = parse_count(n.evaluate, "--evaluate", 1, 10000);
  if (r.data.empty() || r.data == "none") return;
  std::error_code error;
  if (!std::filesystem::is_regular_file(r.data, error))
    throw UsageError("--data: '" + r.data + "' is not a file (give a .npy [D, input shape], or none)");
  if (std::filesystem::path(r.data).extension() != ".npy")
    throw UsageError("--data: '" + r.data + "' is not a .npy file (give a .npy [D, input shape], or none)");
}

// The options given on the command line of one subcommand, by their long names.
std::vector<std::string> given_options(const CLI::App& app) {
  std::vector<std::string> given;
  for (const CLI::Option* o : app.get_options())
    if (o->count() > 0) given.push_back(o->get_name());
  return given;
}

}  // namespace

std::uint64_t parse_count(const std::string& text, const std::string& option, std::uint64_t lo, std::uint64_t hi) {
  const std::string expected = "' is not a whole number from " + std::to_string(lo) + " to " + std::to_string(hi);
  if (text.empty() || text.size() > 20) throw UsageError(option + ": '" + text + expected);
  std::uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') throw UsageError(option + ": '" + text + expected);
    const std::uint64_t digit = std::uint64_t(c - '0');
    if (value > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) throw UsageError(option + ": '" + text + expected);
    value = value * 10 + digit;
  }
  if (value < lo || value > hi) throw UsageError(option + ": '" + text + expected);
  return value;
}

double parse_real(const std::string& text, const std::string& option, double lo, double hi) {
  char* end = nullptr;
  errno = 0;
  const double value = text.empty() ? 0.0 : std::strtod(text.c_str(), &end);
  const bool whole = !text.empty() && end == text.c_str() + text.size() && !std::isspace(static_cast<unsigned char>(text[0]));
  if (!whole || !std::isfinite(value) || value < lo || value > hi) {
    char range[96];
    std::snprintf(range, sizeof range, "' is not a finite number from %g to %g", lo, hi);
    throw UsageError(option + ": '" + text + range);
  }
  return value;
}

std::size_t parse_bytes(const std::string& text, const std::string& option) {
  const std::string expected = "' is not a byte count from 1 to 1024G (e.g. 1073741824, 512M, 1G)";
  std::string digits = text;
  std::uint64_t scale = 1;
  if (!digits.empty() && (digits.back() == 'K' || digits.back() == 'M' || digits.back() == 'G')) {
    scale = digits.back() == 'K' ? 1ull << 10 : digits.back() == 'M' ? 1ull << 20 : 1ull << 30;
    digits.pop_back();
  }
  std::uint64_t value = 0;
  try {
    value = parse_count(digits, option, 1, max_memory);
  } catch (const UsageError&) {
    throw UsageError(option + ": '" + text + expected);
  }
  if (value > max_memory / scale) throw UsageError(option + ": '" + text + expected);
  return static_cast<std::size_t>(value * scale);
}

Request parse_options(int argc, const char* const* argv) {
  CLI::App app("axiomatic: path attributions (gradients, Integrated Gradients, expected gradients, SmoothGrad) "
               "for neural networks, with the attribution axioms checked.");
  app.require_subcommand(1);
  Request request;

  Choices explain_choices{"gausslegendre", "logit", "f32"};
  Numbers explain_numbers;
  CLI::App* explain = app.add_subcommand("explain", "attribute one prediction to the input's values");
  add_explain(*explain, request.explain, explain_choices, explain_numbers, request.json);

  attr::ExplainRequest check_request;
  check_request.rule = attr::Rule::exact;
  check_request.float64 = true;
  Choices check_choices{"exact", "logit", "f64"};
  Numbers check_numbers;
  bool check_json = false;
  CLI::App* check = app.add_subcommand("check", "check the attribution axioms of IG on a model and an input");
  add_check(*check, check_request, check_choices, check_numbers, check_json);

  Choices report_choices{"exact", "logit", "f32"};
  Numbers report_numbers;
  CLI::App* report = app.add_subcommand("report", "explain a model's predictions for images: pictures and a report");
  add_report(*report, request.report, report_choices, report_numbers);

  Choices evaluate_choices{"", "logit", "f32"};
  Numbers evaluate_numbers;
  EvaluateNumbers evaluate_extra;
  CLI::App* evaluate = app.add_subcommand("evaluate", "evaluate methods over images: deletion curves and model randomization");
  add_evaluate(*evaluate, request, evaluate_choices, evaluate_numbers, evaluate_extra);

  Numbers info_numbers;
  CLI::App* info = app.add_subcommand("info", "a model's nodes, shapes, parameter count and labels");
  add_info(*info, request.info_model, info_numbers);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    request.command = Command::help;
    request.help = app.help();
    for (const CLI::App* sub : {explain, check, report, evaluate, info})
      if (sub->parsed()) request.help = sub->help();
    return request;
  } catch (const CLI::CallForAllHelp&) {
    request.command = Command::help;
    request.help = app.help("", CLI::AppFormatMode::All);
    return request;
  } catch (const CLI::ParseError& e) {
    throw UsageError(std::string(e.what()) + " (see --help)");
  }

  try {
    if (*explain) {
      request.command = Command::explain;
      apply_explain(explain_choices, explain_numbers, request.explain);
      check_explain(request.explain, explain_numbers, given_options(*explain));
    } else if (*check) {
      request.command = Command::check;
      request.json = check_json;
      apply_check(check_choices, check_numbers, check_request);
      check_deterministic_baseline(check_request.baseline);
      request.explain = check_request;
    } else if (*evaluate) {
      request.command = Command::evaluate;
      apply_evaluate(evaluate_choices, evaluate_numbers, evaluate_extra, request.evaluate);
      check_deterministic_baseline(request.evaluate.baseline);
    } else if (*report) {
      request.command = Command::report;
      apply_common(report_choices, report_numbers, request.report);
      check_deterministic_baseline(request.report.baseline);
      check_report(request.report, report_numbers);
    } else {
      request.command = Command::info;
      if (!info_numbers.timeout.empty()) request.info_timeout = parse_real(info_numbers.timeout, "--timeout", 1e-3, max_timeout);
    }
    // --threads: the kernels' thread count for every subcommand that computes
    for (const Numbers* n : {&explain_numbers, &check_numbers, &report_numbers, &evaluate_numbers})
      if (!n->threads.empty()) request.threads = parse_count(n->threads, "--threads", 1, max_threads);
    for (const Numbers* n : {&explain_numbers, &check_numbers, &report_numbers, &evaluate_numbers})
      if (n->winograd == "off") request.winograd = false;
    // The report sets every method beside exact IG, which runs on the direct path (Winograd's
    // rounding breaks exact max-pool ties, such as a constant baseline's): unless asked, it all does.
    if (request.command == Command::report && report_numbers.winograd == "unset") request.winograd = false;
    request.explain.threads = request.threads;
  } catch (const UsageError&) {
    throw;
  } catch (const Error& e) {
    throw UsageError(e.what());
  }
  return request;
}

}  // namespace ax::cli
