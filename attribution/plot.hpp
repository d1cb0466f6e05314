// Line plots as inline SVG text, for the report page (html.hpp) and the evaluation: axes with
// "nice" ticks (steps of 1, 2 or 5 times a power of ten; whole decades on log axes), tick labels,
// a title, axis labels, one colour per series and a legend. Points that cannot be drawn (NaN,
// Inf, and zero or negative values on a log axis) are skipped, breaking the line there; the SVG
// never holds a NaN. No script, no external font or style: it renders the same anywhere.
#pragma once

#include <string>
#include <vector>

namespace ax::attr::plot {

struct Series {
  std::string name;  // in the legend (empty: left out of it)
  std::vector<double> x, y;  // drawn up to the shorter of the two
  bool dashed = false;
  bool markers = false;  // a dot at each point
  std::string colour = {};  // a CSS colour; empty: the palette's, by the series' place in the list
};

enum class Corner { top_right, top_left, bottom_right, bottom_left };

struct Axes {
  std::string title, x_label, y_label;
  bool log_x = false, log_y = false;
  std::vector<double> x_marks;  // vertical marks (e.g. breakpoints), drawn as a rug on the x axis
  Corner legend = Corner::top_right;  // where the legend sits inside the plotting area
};

// The plot as one <svg> element, width x height pixels.
std::string line_plot_svg(const Axes& axes, const std::vector<Series>& series, int width = 420, int height = 300);

// Text safe inside an XML element or attribute: & < > " ' escaped, control characters dropped.
std::string escape_xml(const std::string& text);

// The tick positions of an axis covering [lo, hi] (lo <= hi, both finite; on a log axis both > 0).
// Linear: multiples of a step of 1, 2 or 5 times a power of ten, about `target` of them, the first
// at or below lo and the last at or above hi (the axis spans them). Log: the powers of ten inside
// [lo, hi] (the axis spans the data with a small margin), or, when fewer than two fall inside, the
// decades at or below lo and at or above hi; every k-th decade when there are more than about 8.
// Exposed for the tests.
std::vector<double> ticks(double lo, double hi, bool log, int target = 5);

// A tick's label: the shortest of %g-style text that tells neighbouring ticks apart
// ("0.25", "1e-06", "1000").
std::string tick_label(double value, bool log);

}  // namespace ax::attr::plot
