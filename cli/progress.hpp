// Progress of a long run on stderr: done of total, what is being done, the time elapsed and an
// estimate of the time left. On a terminal one line is redrawn in place (\r) as a bar; otherwise
// (a log, a pipe) plain lines, at most one every few seconds, and the last.
#pragma once

#include <cstddef>
#include <cstdio>
#include <functional>
#include <string>

namespace ax::cli {

class Progress {
 public:
  using Clock = std::function<double()>;  // seconds from any fixed instant

  // Writes to `out`, as a redrawn bar when `terminal`. Plain lines come at most one per
  // `interval` seconds (the first and the last always); `clock` is the steady clock unless given.
  Progress(std::FILE* out, bool terminal, std::string label, double interval = 3.0, Clock clock = {});
  // On stderr, a bar when stderr is a terminal (isatty).
  static Progress on_stderr(std::string label);

  // Reports that `done` of `total` steps are finished, the last being `what`.
  void operator()(std::size_t done, std::size_t total, const std::string& what);

  // "0.4 s", "12 s", "3 min 05 s": how the times are written.
  static std::string duration(double seconds);

 private:
  std::string line(std::size_t done, std::size_t total, const std::string& what, double elapsed) const;

  std::FILE* out_;
  bool terminal_;
  std::string label_;
  double interval_;
  Clock clock_;
  double start_ = 0;
  double last_ = 0;  // when the last line or redraw was written
  bool started_ = false;
};

}  // namespace ax::cli
