// What the benchmarks share: a clock, and the median and fastest of several runs (the machine is
// shared and noisy: the median is the figure, the fastest what the code does undisturbed).
#pragma once

#include <algorithm>
#include <chrono>
#include <vector>

namespace timing {

inline double seconds_now() {
  using clock = std::chrono::steady_clock;
  return std::chrono::duration<double>(clock::now().time_since_epoch()).count();
}

struct MedianBest {
  double median, best;
};

// Seconds of `runs` calls of f: their median and the fastest.
template <class F>
MedianBest time_runs(int runs, F f) {
  std::vector<double> times;
  for (int r = 0; r < runs; ++r) {
    const double t0 = seconds_now();
    f();
    times.push_back(seconds_now() - t0);
  }
  std::sort(times.begin(), times.end());
  return {times[times.size() / 2], times.front()};
}

}  // namespace timing
