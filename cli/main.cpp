// The `axiomatic` command: parses arguments and calls the library. Exit status 0 on success,
// 2 on bad usage, 1 on any other failure, with one line on stderr saying what was wrong.
#include "attribution/explain.hpp"
#include "attribution/report.hpp"
#include "nn/graph.hpp"
#include "nn/model_file.hpp"

#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>

namespace {

// "1073741824", "512M", "1G", "64K": a byte count.
std::size_t parse_bytes(const std::string& text) {
  std::size_t pos = 0;
  unsigned long long value = 0;
  try {
    value = std::stoull(text, &pos);
  } catch (const std::exception&) {
    throw CLI::ValidationError("--memory", "'" + text + "' is not a byte count (e.g. 1073741824, 512M, 1G)");
  }
  const std::string suffix = text.substr(pos);
  const unsigned long long scale = suffix.empty() ? 1 : suffix == "K" ? 1ull << 10 : suffix == "M" ? 1ull << 20
                                                  : suffix == "G" ? 1ull << 30 : 0;
  if (!scale || value == 0) throw CLI::ValidationError("--memory", "'" + text + "' is not a positive byte count (e.g. 512M, 1G)");
  return static_cast<std::size_t>(value * scale);
}

void add_explain(CLI::App& app, ax::attr::ExplainRequest& r, std::string& memory, std::string& rule,
                 std::string& output, std::string& precision, bool& json) {
  app.add_option("--model", r.model, "model file (.safetensors) or toy model (.json)")->required()->check(CLI::ExistingFile);
  app.add_option("--input", r.input, "input: PNG (8-bit gray or RGB) or .npy of the model's input shape")
      ->required()
      ->check(CLI::ExistingFile);
  app.add_option("--out", r.out, "where to write the attributions (.npy, the input's shape)");
  app.add_option("--target", r.target.class_index, "class index to explain (default: the predicted class)");
  app.add_option("--minus", r.target.minus_class, "explain the difference target - minus");
  app.add_option("--node", r.target.node, "explain a named node instead of the output");
  app.add_option("--output", output, "logit, prob or logprob")->check(CLI::IsMember({"logit", "prob", "logprob"}));
  app.add_option("--method", r.method, "the method")
      ->check(CLI::IsMember({"gradient", "inputxgradient", "ig", "eg", "smoothgrad", "smoothgrad_sq", "vargrad", "conductance"}));
  app.add_option("--layer", r.layer, "a hidden node: layer IG (--method ig) or conductance; attributions have its shape");
  app.add_option("--rule", rule, "IG's quadrature rule")
      ->check(CLI::IsMember({"riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre", "exact"}));
  app.add_option("--steps", r.steps, "IG's path points")->check(CLI::Range(1, 1 << 24));
  app.add_option("--tolerance", r.tolerance, "IG: double the steps until |delta| / |F(x) - F(x')| <= T")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--max-steps", r.max_steps, "IG: the cap of the adaptive doubling")->check(CLI::Range(1, 1 << 24));
  app.add_option("--baseline", r.baseline,
                 "zero, white, constant:V, mean, mean:PATH, uniform, gaussian:SIGMA, blur:SIGMA, maxdist, file:PATH, data:PATH");
  app.add_option("--samples", r.samples, "samples (eg, smoothgrad, random baselines); 0: the method's default");
  app.add_option("--sigma", r.sigma, "SmoothGrad noise, relative to the input range unless --sigma-absolute")
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--sigma-absolute", r.sigma_absolute, "--sigma is in input units, not relative to the range");
  app.add_flag("--abs", r.absolute, "gradient: its absolute value");
  app.add_option("--seed", r.seed, "seeds every random draw");
  app.add_option("--precision", precision, "f32 or f64: the type the tape computes in")->check(CLI::IsMember({"f32", "f64"}));
  app.add_option("--memory", memory, "memory budget for batched path points (bytes, or 512M, 1G)");
  app.add_option("--path-csv", r.path_csv, "IG: write alpha, F and the cumulative sum along the path");
  app.add_option("--max-pieces", r.max_pieces, "--rule exact: stop with an error past this many linear pieces")
      ->check(CLI::Range(1, 1 << 30));
  app.add_flag("--json", json, "print one JSON object on stdout");
}

void add_check(CLI::App& app, ax::attr::ExplainRequest& r, std::string& memory, std::string& rule,
               std::string& output, std::string& precision, bool& json) {
  app.add_option("--model", r.model, "model file (.safetensors) or toy model (.json)")->required()->check(CLI::ExistingFile);
  app.add_option("--input", r.input, "input: PNG or .npy of the model's input shape")->required()->check(CLI::ExistingFile);
  app.add_option("--target", r.target.class_index, "class index (default: the predicted class)");
  app.add_option("--output", output, "logit, prob or logprob")->check(CLI::IsMember({"logit", "prob", "logprob"}));
  app.add_option("--rule", rule, "IG's rule (default exact: the network must be piecewise linear)")
      ->check(CLI::IsMember({"riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre", "exact"}));
  app.add_option("--steps", r.steps, "IG's path points (quadrature rules)")->check(CLI::Range(1, 1 << 24));
  app.add_option("--baseline", r.baseline, "a deterministic baseline SPEC (zero, white, constant:V, mean, blur:S, maxdist, file:PATH)");
  app.add_option("--equivalent", r.equivalent, "a functionally equivalent model for implementation invariance")
      ->check(CLI::ExistingFile);
  app.add_option("--tolerance", r.check_tolerance, "relative tolerance of every check (default: by precision and rule)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--precision", precision, "f32 or f64")->check(CLI::IsMember({"f32", "f64"}));
  app.add_option("--memory", memory, "memory budget (bytes, or 512M, 1G)");
  app.add_option("--max-pieces", r.max_pieces, "--rule exact: the cap on linear pieces")->check(CLI::Range(1, 1 << 30));
  app.add_flag("--json", json, "print one JSON object on stdout");
}

void print_checks(const nlohmann::json& j) {
  std::printf("axiom checks of IG (%s, %s)\n", j.at("rule").get<std::string>().c_str(), j.at("precision").get<std::string>().c_str());
  for (const nlohmann::json& c : j.at("checks")) {
    const std::string axiom = c.at("axiom").get<std::string>();
    if (!c.at("applicable").get<bool>()) {
      std::printf("  %-26s n/a   %s\n", axiom.c_str(), c.at("detail").get<std::string>().c_str());
      continue;
    }
    std::printf("  %-26s %-5s error %.3g (tolerance %.3g)  %s\n", axiom.c_str(), c.at("passed").get<bool>() ? "pass" : "FAIL",
                c.at("error").get<double>(), c.at("tolerance").get<double>(), c.at("detail").get<std::string>().c_str());
  }
}

void print_summary(const nlohmann::json& j) {
  std::printf("%s", j.at("method").get<std::string>().c_str());
  if (!j.at("rule").is_null()) std::printf(" (%s, %zu steps)", j.at("rule").get<std::string>().c_str(), j.at("steps").get<std::size_t>());
  std::printf(", target %d", j.at("target").get<int>());
  if (j.contains("label")) std::printf(" (%s)", j.at("label").get<std::string>().c_str());
  std::printf("\n  F(x) = %.9g, F(x') = %.9g, sum of attributions = %.9g\n", j.at("f_input").get<double>(),
              j.at("f_baseline").get<double>(), j.at("sum").get<double>());
  std::printf("  completeness gap delta = %.3g (relative %.3g)", j.at("delta").get<double>(), j.at("relative_delta").get<double>());
  if (j.contains("standard_error")) std::printf(", Monte-Carlo standard error %.3g", j.at("standard_error").get<double>());
  std::printf("\n  %.3f s\n", j.at("seconds").get<double>());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("axiomatic: path attributions (gradients, Integrated Gradients, expected gradients, SmoothGrad) "
               "for neural networks, with the attribution axioms checked.");
  app.require_subcommand(1);

  ax::attr::ExplainRequest request;
  std::string memory = "1G", rule = "gausslegendre", output = "logit", precision = "f32";
  bool json = false;
  CLI::App* explain = app.add_subcommand("explain", "attribute one prediction to the input's values");
  add_explain(*explain, request, memory, rule, output, precision, json);

  ax::attr::ExplainRequest check_request;
  check_request.rule = ax::attr::Rule::exact;
  std::string check_memory = "1G", check_rule = "exact", check_output = "logit", check_precision = "f64";
  bool check_json = false;
  CLI::App* check = app.add_subcommand("check", "check the attribution axioms of IG on a model and an input");
  add_check(*check, check_request, check_memory, check_rule, check_output, check_precision, check_json);

  ax::attr::ReportRequest report_request;
  std::string report_rule = "exact", report_precision = "f32", report_memory = "1G";
  CLI::App* report = app.add_subcommand("report", "explain a model's predictions for images: pictures and a report");
  report->add_option("--model", report_request.model, "model file or toy model")->required()->check(CLI::ExistingFile);
  report->add_option("--images", report_request.images, "images (PNG or .npy)")->required()->check(CLI::ExistingFile);
  report->add_option("--out", report_request.out, "folder for report.md, report.json and the pictures")->required();
  report->add_option("--rule", report_rule, "IG's rule (exact falls back to gausslegendre on smooth networks)")
      ->check(CLI::IsMember({"riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre", "exact"}));
  report->add_option("--steps", report_request.steps, "steps of a quadrature rule")->check(CLI::Range(1, 1 << 24));
  report->add_option("--baseline", report_request.baseline, "a deterministic baseline SPEC");
  report->add_option("--precision", report_precision, "f32 or f64")->check(CLI::IsMember({"f32", "f64"}));
  report->add_option("--memory", report_memory, "memory budget (bytes, or 512M, 1G)");

  std::string info_model;
  CLI::App* info = app.add_subcommand("info", "a model's nodes, shapes, parameter count and labels");
  info->add_option("--model", info_model, "model file or toy model")->required()->check(CLI::ExistingFile);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "axiomatic: %s (see --help)\n", e.what());
    return 2;
  }

  try {
    if (*explain) {
      request.memory = parse_bytes(memory);
      request.rule = ax::attr::parse_rule(rule);
      request.target.output = ax::attr::parse_output(output);
      request.float64 = precision == "f64";
      const nlohmann::json result = ax::attr::explain(request);
      if (json) std::cout << result.dump() << std::endl;
      else print_summary(result);
    } else if (*check) {
      check_request.memory = parse_bytes(check_memory);
      check_request.rule = ax::attr::parse_rule(check_rule);
      check_request.target.output = ax::attr::parse_output(check_output);
      check_request.float64 = check_precision == "f64";
      const nlohmann::json result = ax::attr::check(check_request);
      if (check_json) std::cout << result.dump() << std::endl;
      else print_checks(result);
      return result.at("passed").get<bool>() ? 0 : 1;
    } else if (*report) {
      report_request.rule = ax::attr::parse_rule(report_rule);
      report_request.float64 = report_precision == "f64";
      report_request.memory = parse_bytes(report_memory);
      const nlohmann::json result = ax::attr::write_report(report_request);
      for (const nlohmann::json& j : result.at("images"))
        std::printf("%-28s %-12s p=%.3f  %s, %zu pieces, relative delta %.2e (GL-50: %.2e, %.2f%% off)  %.2f s\n",
                    j.at("name").get<std::string>().c_str(), j.at("label").get<std::string>().c_str(),
                    j.at("probability").get<double>(), j.at("rule").get<std::string>().c_str(), j.at("pieces").get<std::size_t>(),
                    j.at("relative_delta").get<double>(), j.at("gausslegendre50_relative_delta").get<double>(),
                    100 * j.at("gausslegendre50_relative_l2_from_this").get<double>(), j.at("seconds").get<double>());
      std::printf("wrote %s/report.md, report.json and the pictures\n", report_request.out.c_str());
    } else if (*info) {
      std::cout << ax::nn::describe(ax::nn::load_model(info_model), info_model);
    }
  } catch (const CLI::ValidationError& e) {
    std::fprintf(stderr, "axiomatic: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "axiomatic: %s\n", e.what());
    return 1;
  }
  return 0;
}
