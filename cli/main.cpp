// The `axiomatic` command: parses the arguments into a request (options.cpp), then runs one
// subcommand. Exit status 0 on success, 2 on bad usage, 1 on any other failure (`check`: an
// axiom failed), with one line on stderr saying what was wrong.
#include "options.hpp"
#include "progress.hpp"

#include "autodiff/kernels/conv.hpp"
#include "autodiff/kernels/threads.hpp"
#include "nn/graph.hpp"
#include "nn/model_file.hpp"

#include <chrono>
#include <cstdio>
#include <iostream>
#include <optional>

#include <unistd.h>

namespace {

using ax::nn::printable;

// Prints what the library returned; every string from a model file goes through printable().
std::string text(const nlohmann::json& j, const char* key) { return printable(j.at(key).get<std::string>()); }

void print_summary(const nlohmann::json& j) {
  std::printf("%s", text(j, "method").c_str());
  if (!j.at("rule").is_null()) std::printf(" (%s, %zu steps)", text(j, "rule").c_str(), j.at("steps").get<std::size_t>());
  std::printf(", target %d", j.at("target").get<int>());
  if (j.contains("label")) std::printf(" (%s)", text(j, "label").c_str());
  std::printf("\n  F(x) = %.9g, F(x') = %.9g, sum of attributions = %.9g\n", j.at("f_input").get<double>(),
              j.at("f_baseline").get<double>(), j.at("sum").get<double>());
  std::printf("  completeness gap delta = %.3g (relative %.3g)", j.at("delta").get<double>(), j.at("relative_delta").get<double>());
  if (j.contains("standard_error")) std::printf(", Monte-Carlo standard error %.3g", j.at("standard_error").get<double>());
  std::printf("\n  %.3f s\n", j.at("seconds").get<double>());
}

void print_checks(const nlohmann::json& j) {
  std::printf("axiom checks of IG (%s, %s)\n", text(j, "rule").c_str(), text(j, "precision").c_str());
  for (const nlohmann::json& c : j.at("checks")) {
    const std::string axiom = text(c, "axiom");
    if (!c.at("applicable").get<bool>()) {
      std::printf("  %-26s n/a   %s\n", axiom.c_str(), text(c, "detail").c_str());
      continue;
    }
    std::printf("  %-26s %-5s error %.3g (tolerance %.3g)  %s\n", axiom.c_str(), c.at("passed").get<bool>() ? "pass" : "FAIL",
                c.at("error").get<double>(), c.at("tolerance").get<double>(), text(c, "detail").c_str());
  }
}

// "completeness (error 0.25 > tolerance 1e-06), linearity (...)": the checks that failed.
std::string failed_checks(const nlohmann::json& j) {
  std::string failed;
  for (const nlohmann::json& c : j.at("checks")) {
    if (!c.at("applicable").get<bool>() || c.at("passed").get<bool>()) continue;
    char figures[96];
    std::snprintf(figures, sizeof figures, " (error %.3g > tolerance %.3g)", c.at("error").get<double>(), c.at("tolerance").get<double>());
    failed += (failed.empty() ? "" : ", ") + text(c, "axiom") + figures;
  }
  return failed;
}

// One report per input: a JSON line each with --json; with many inputs, each summary under the
// input's name.
int run_explain(const ax::cli::Request& request) {
  for (const nlohmann::json& result : ax::attr::explain_inputs(request.explain)) {
    if (request.json) {
      std::cout << result.dump() << std::endl;
      continue;
    }
    if (result.contains("input")) std::printf("%s: ", text(result, "input").c_str());
    print_summary(result);
  }
  return 0;
}

int run_check(const ax::cli::Request& request) {
  const nlohmann::json result = ax::attr::check(request.explain);
  if (request.json) std::cout << result.dump() << std::endl;
  else print_checks(result);
  if (result.at("passed").get<bool>()) return 0;
  std::fflush(stdout);
  std::fprintf(stderr, "axiomatic: check: %s failed\n", failed_checks(result).c_str());
  return 1;
}

// Progress on stderr (each method of each image, then the evaluation); the summary on stdout.
int run_report(const ax::cli::Request& request) {
  ax::attr::ReportRequest r = request.report;
  ax::cli::Progress progress = ax::cli::Progress::on_stderr("report");
  r.on_progress = [&](std::size_t image, std::size_t images, const std::string& method) {
    progress(image, images, "image " + std::to_string(image + 1) + ", " + method);
  };
  std::optional<ax::cli::Progress> evaluation;  // its clock starts with the evaluation, after the images
  r.on_evaluation_progress = [&](std::size_t done, std::size_t total, const std::string& what) {
    if (!evaluation) evaluation.emplace(ax::cli::Progress::on_stderr("evaluation"));
    (*evaluation)(done, total, what);
  };
  const nlohmann::json result = ax::attr::write_report(r);
  for (const nlohmann::json& j : result.at("images"))
    std::printf("%-28s %-12s p=%.3f  %s, %zu pieces, relative delta %.2e (GL-50: %.2e, %.2f%% off)  %.2f s\n",
                text(j, "name").c_str(), text(j, "label").c_str(), j.at("probability").get<double>(), text(j, "rule").c_str(),
                j.at("pieces").get<std::size_t>(), j.at("relative_delta").get<double>(),
                j.at("gausslegendre50_relative_delta").get<double>(),
                100 * j.at("gausslegendre50_relative_l2_from_this").get<double>(), j.at("seconds").get<double>());
  if (result.contains("note")) std::printf("%s\n", text(result, "note").c_str());
  const std::string out = printable(request.report.out);
  std::printf("wrote %s/index.html (open it in a browser), and report.json, report.md and the pictures beside it\n",
              out.c_str());
  return 0;
}

// Progress on stderr; the areas and the files on stdout once everything is written.
int run_evaluate(const ax::cli::Request& request) {
  ax::attr::EvaluateRequest r = request.evaluate;
  ax::cli::Progress progress = ax::cli::Progress::on_stderr("evaluate");
  r.on_progress = [&](std::size_t done, std::size_t total, const std::string& what) { progress(done, total, what); };
  const auto start = std::chrono::steady_clock::now();
  const nlohmann::json e = ax::attr::write_evaluation(r, request.evaluate_out);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("deletion areas (probability, normalised by the intact images'; lower drops faster):\n");
  const nlohmann::json& curves = e.at("deletion").at("curves");
  std::vector<std::string> names = e.at("methods").get<std::vector<std::string>>();
  names.push_back("random");
  for (const std::string& name : names)
    std::printf("  %-16s mean fill %.3f, blur fill %.3f\n", name.c_str(),
                curves.at(name).at("mean").at("area_probability_normalised").get<double>(),
                curves.at(name).at("blur").at("area_probability_normalised").get<double>());
  std::printf("evaluated %zu images in %.1f s; wrote %s/evaluation.json, deletion.csv, randomization.csv and the SVG plots\n",
              e.at("images").get<std::size_t>(), seconds, printable(request.evaluate_out).c_str());
  return 0;
}

// info never runs the network (nn::describe records a batch of 0), so its time is reading the
// file; the limit is checked once that is done.
int run_info(const ax::cli::Request& request) {
  const auto start = std::chrono::steady_clock::now();
  const std::string summary = ax::nn::describe(ax::nn::load_model(request.info_model), request.info_model);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (request.info_timeout > 0 && seconds > request.info_timeout)
    throw ax::Error(request.info_model + ": the time limit ran out before the answer was complete");
  std::cout << summary;
  return 0;
}

int run(const ax::cli::Request& request) {
  switch (request.command) {
    case ax::cli::Command::explain: return run_explain(request);
    case ax::cli::Command::check: return run_check(request);
    case ax::cli::Command::report: return run_report(request);
    case ax::cli::Command::evaluate: return run_evaluate(request);
    case ax::cli::Command::info: return run_info(request);
    case ax::cli::Command::help: std::cout << request.help; return 0;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Passive waiting between parallel regions (kernels/threads.hpp): OpenMP read its environment
  // before main, so the command starts itself again, once, with OMP_WAIT_POLICY=passive set,
  // unless the user chose a policy. If that fails, it runs as it is.
  if (ax::kernels::choose_passive_waiting()) execv("/proc/self/exe", argv);
  ax::cli::Request request;
  try {
    request = ax::cli::parse_options(argc, argv);
  } catch (const ax::cli::UsageError& e) {
    std::fprintf(stderr, "axiomatic: %s\n", printable(e.what()).c_str());
    return 2;
  }
  try {
    ax::kernels::set_threads(request.threads);
    ax::kernels::set_winograd(request.winograd);
    return run(request);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "axiomatic: %s\n", printable(e.what()).c_str());
    return 1;
  }
}
