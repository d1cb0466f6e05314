#include "progress.hpp"

#include <algorithm>
#include <chrono>
#include <unistd.h>

namespace ax::cli {

namespace {
double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
constexpr std::size_t bar_width = 24;
constexpr double redraw_interval = 0.1;  // a terminal's bar is redrawn at most ten times a second
}  // namespace

Progress::Progress(std::FILE* out, bool terminal, std::string label, double interval, Clock clock)
    : out_(out), terminal_(terminal), label_(std::move(label)), interval_(interval),
      clock_(clock ? std::move(clock) : Clock(steady_seconds)) {
  start_ = clock_();
}

Progress Progress::on_stderr(std::string label) { return Progress(stderr, isatty(STDERR_FILENO) == 1, std::move(label)); }

std::string Progress::duration(double seconds) {
  char text[48];
  if (seconds < 10) std::snprintf(text, sizeof text, "%.1f s", seconds);
  else if (seconds < 60) std::snprintf(text, sizeof text, "%.0f s", seconds);
  else {
    const long whole = static_cast<long>(seconds + 0.5);
    std::snprintf(text, sizeof text, "%ld min %02ld s", whole / 60, whole % 60);
  }
  return text;
}

std::string Progress::line(std::size_t done, std::size_t total, const std::string& what, double elapsed) const {
  std::string text = label_ + ": " + std::to_string(done) + " of " + std::to_string(total);
  if (!what.empty()) text += " (" + what + ")";
  text += ", " + duration(elapsed) + " elapsed";
  if (done > 0 && done < total) text += ", about " + duration(elapsed / double(done) * double(total - done)) + " left";
  return text;
}

void Progress::operator()(std::size_t done, std::size_t total, const std::string& what) {
  const double now = clock_();
  const bool last = done >= total;
  const bool first = !started_;
  started_ = true;
  if (!terminal_) {
    if (!first && !last && now - last_ < interval_) return;
    last_ = now;
    std::fprintf(out_, "%s\n", line(done, total, what, now - start_).c_str());
    std::fflush(out_);
    return;
  }
  if (!first && !last && now - last_ < redraw_interval) return;
  last_ = now;
  const std::size_t filled = total ? bar_width * std::min(done, total) / total : bar_width;
  const std::string bar = "[" + std::string(filled, '#') + std::string(bar_width - filled, '.') + "] ";
  // \r back to the line's start, \x1b[K clears what a longer previous line left
  std::fprintf(out_, "\r%s%s\x1b[K%s", bar.c_str(), line(done, total, what, now - start_).c_str(), last ? "\n" : "");
  std::fflush(out_);
}

}  // namespace ax::cli
