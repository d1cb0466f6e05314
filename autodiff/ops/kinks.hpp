// Where piecewise-linear ops switch pieces along a straight path: the `switches` of relu,
// leaky_relu, hardtanh and maxpool2d are built from these two. Exact Integrated Gradients
// (attribution/exact) calls them between consecutive breakpoints, where every op's input moves
// affinely from z0 to z1; a switch is returned as s in (0, 1), the fraction of that interval.
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

namespace ax::ops {

// Where, strictly inside (0, 1), each of the n affine functions with end values z0[i], z1[i]
// crosses `level` (a kink of an elementwise op).
// Few units cross between two breakpoints: each block of kBlock is first tested as a whole,
// branch-free (in SIMD), and only a block with a crossing is walked unit by unit. The test is
// the walk's own (in double, where a float converts exactly), so the roots are the same.
template <class T>
void level_crossings(const T* z0, const T* z1, std::size_t n, double level, std::vector<double>& roots) {
  constexpr std::size_t kBlock = 64;
  for (std::size_t begin = 0; begin < n; begin += kBlock) {
    const std::size_t end = std::min(n, begin + kBlock);
    int crosses = 0;
    // [block]
    for (std::size_t i = begin; i < end; ++i) {
      const double d0 = double(z0[i]) - level, d1 = double(z1[i]) - level;
      crosses |= ((d0 < 0) & (d1 > 0)) | ((d0 > 0) & (d1 < 0));
    }
    if (!crosses) continue;
    for (std::size_t i = begin; i < end; ++i) {
      const double d0 = double(z0[i]) - level, d1 = double(z1[i]) - level;
      if ((d0 < 0 && d1 > 0) || (d0 > 0 && d1 < 0)) roots.push_back(d0 / (d0 - d1));
    }
  }
}

// The switches of a window's maximum strictly inside (0, 1): the upper envelope of the k lines
// v0[m] + s (v1[m] - v0[m]), walked from s = 0. Ties at a switch go to the steeper line (it is
// the maximum just after); equal lines are one line.
inline void envelope_switches(const double* v0, const double* v1, std::size_t k, std::vector<double>& roots) {
  std::size_t current = 0;
  for (std::size_t m = 1; m < k; ++m) {
    const double slope_m = v1[m] - v0[m], slope_c = v1[current] - v0[current];
    if (v0[m] > v0[current] || (v0[m] == v0[current] && slope_m > slope_c)) current = m;
  }
  double s = 0;
  for (std::size_t guard = 0; guard < k; ++guard) {  // each line leads at most once
    const double slope_c = v1[current] - v0[current];
    double next = 1;
    std::size_t winner = current;
    for (std::size_t m = 0; m < k; ++m) {
      const double slope_m = v1[m] - v0[m];
      if (slope_m <= slope_c) continue;  // never overtakes the current maximum going forwards
      const double cross = (v0[current] - v0[m]) / (slope_m - slope_c);
      if (cross > s && (cross < next || (cross == next && slope_m > v1[winner] - v0[winner]))) {
        next = cross;
        winner = m;
      }
    }
    if (winner == current || next >= 1) return;
    roots.push_back(next);
    s = next;
    current = winner;
  }
}

}  // namespace ax::ops
