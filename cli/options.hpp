// The command line of `axiomatic`, parsed into a request and checked as a whole before any work
// runs: every number strictly (digits only for counts, finite for reals, within a stated range),
// every combination of options that the chosen method cannot use refused. Parsing reads no
// file and runs nothing, so it can be fed any argv (a fuzz target does).
#pragma once

#include "attribution/evaluate.hpp"
#include "attribution/explain.hpp"
#include "attribution/report.hpp"

#include <string>

namespace ax::cli {

enum class Command { explain, check, report, evaluate, info, help };

struct Request {
  Command command = Command::help;
  attr::ExplainRequest explain;  // explain and check
  attr::ReportRequest report;
  attr::EvaluateRequest evaluate;  // evaluate (its on_progress is the command's to set)
  std::string evaluate_out;        // evaluate: the folder written
  std::string info_model;        // info
  double info_timeout = 0;       // info: seconds, 0 for none
  bool json = false;             // explain, check: one JSON object on stdout (explain: one line per input)
  std::size_t threads = 0;       // explain, check, report: --threads (0: the cores available)
  bool winograd = true;          // explain, check, report, evaluate: --winograd on|off
  std::string help;              // help: the text to print
};

// Bad usage: exit status 2, the message on one line.
struct UsageError : Error {
  using Error::Error;
};

// The most bytes --memory may give (1 TiB), and the longest --timeout (a year).
constexpr std::size_t max_memory = std::size_t(1) << 40;
constexpr double max_timeout = 365.0 * 24 * 3600;
// The most threads --threads may ask for.
constexpr std::size_t max_threads = 1024;

// Parses argv (argv[0] is the program) into a request. Throws UsageError.
Request parse_options(int argc, const char* const* argv);

// Strict number parsing, each throwing UsageError("<option>: '<text>' is not ...").
// A whole number in [lo, hi]: digits only (no sign, no spaces, no exponent), no wrapping.
std::uint64_t parse_count(const std::string& text, const std::string& option, std::uint64_t lo, std::uint64_t hi);
// A finite real number in [lo, hi] (no NaN, no infinity, no trailing characters).
double parse_real(const std::string& text, const std::string& option, double lo, double hi);
// A byte count: digits with an optional K, M or G suffix (powers of 1024), from 1 to max_memory.
std::size_t parse_bytes(const std::string& text, const std::string& option);

}  // namespace ax::cli
