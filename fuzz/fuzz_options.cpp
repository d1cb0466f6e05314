// Fuzz target: a command line -> cli::parse_options (the subcommands, every option, the strict
// number parsers and the --baseline SPEC). The input is argv after the program's name, one
// argument per NUL-separated piece (an argument can hold anything but NUL, newlines included).
// Contract: parse_options returns a request whose numbers are within their stated ranges, or
// throws cli::UsageError; it prints nothing and never exits (help comes back as the request's
// text). Any other exception escapes and libFuzzer reports it as a crash.
// Seeds: fuzz/seeds/options (the README's and the tests' command lines, with /dev/null for the
// files that must exist); dictionary: fuzz/options.dict.
#include "attribution/methods.hpp"
#include "attribution/path.hpp"
#include "cli/options.hpp"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

std::vector<std::string> arguments(const std::uint8_t* data, std::size_t size) {
  std::vector<std::string> args{"axiomatic"};
  std::string current;
  for (std::size_t i = 0; i < size; ++i) {
    if (data[i] == 0) {
      args.push_back(current);
      current.clear();
    } else {
      current += static_cast<char>(data[i]);
    }
  }
  if (size > 0) args.push_back(current);
  return args;
}

// A broken promise of parse_options: reported as a crash, with what was broken.
void require(bool holds, const char* what) {
  if (holds) return;
  std::fprintf(stderr, "fuzz_options: %s\n", what);
  std::abort();
}

bool within(double seconds) { return std::isfinite(seconds) && seconds >= 0 && seconds <= ax::cli::max_timeout; }

void check_request(const ax::cli::Request& r) {
  using ax::cli::Command;
  switch (r.command) {
    case Command::help: require(!r.help.empty(), "help without text"); return;
    case Command::info: require(within(r.info_timeout), "info --timeout out of range"); return;
    case Command::report:
      require(r.report.steps >= 1 && r.report.steps <= ax::attr::max_steps_cap, "report --steps out of range");
      require(r.report.memory >= 1 && r.report.memory <= ax::cli::max_memory, "report --memory out of range");
      require(within(r.report.timeout), "report --timeout out of range");
      require(r.report.evaluate <= 10000, "report --evaluate out of range");
      require(r.threads <= ax::cli::max_threads, "--threads out of range");
      return;
    case Command::evaluate: {
      const ax::attr::EvaluateRequest& e = r.evaluate;
      require(e.fashion_mnist_test <= 10000, "--fashion-mnist-test out of range");
      require(e.samples >= 1 && e.samples <= ax::attr::max_samples, "evaluate --samples out of range");
      require(e.deletion_steps >= 1 && e.deletion_steps <= 1000, "--deletion-steps out of range");
      require(std::isfinite(e.blur_sigma) && e.blur_sigma >= 0, "--blur-sigma out of range");
      require(e.memory >= 1 && e.memory <= ax::cli::max_memory, "evaluate --memory out of range");
      require(within(e.timeout), "evaluate --timeout out of range");
      require(r.threads <= ax::cli::max_threads, "--threads out of range");
      return;
    }
    case Command::explain:
    case Command::check: {
      const ax::attr::ExplainRequest& e = r.explain;
      require(e.steps >= 1 && e.steps <= ax::attr::max_steps_cap, "--steps out of range");
      require(e.max_steps >= 1 && e.max_steps <= ax::attr::max_steps_cap, "--max-steps out of range");
      require(e.samples <= ax::attr::max_samples, "--samples out of range");
      require(e.memory >= 1 && e.memory <= ax::cli::max_memory, "--memory out of range");
      require(within(e.timeout), "--timeout out of range");
      require(std::isfinite(e.tolerance) && e.tolerance >= 0, "--tolerance not finite");
      require(std::isfinite(e.sigma) && e.sigma >= 0, "--sigma not finite");
      require(std::isfinite(e.check_tolerance), "check --tolerance not finite");
      require(r.threads <= ax::cli::max_threads, "--threads out of range");
      return;
    }
  }
  require(false, "unknown command");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::vector<std::string> args = arguments(data, size);
  std::vector<const char*> argv;
  for (const std::string& a : args) argv.push_back(a.c_str());
  argv.push_back(nullptr);
  try {
    check_request(ax::cli::parse_options(static_cast<int>(args.size()), argv.data()));
  } catch (const ax::cli::UsageError& e) {
    require(e.what()[0] != '\0', "a usage error without a message");
  }
  return 0;
}
