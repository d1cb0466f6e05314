#include "plot.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

namespace ax::attr::plot {
namespace {

const char* const palette_colours[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                               "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"};

std::string colour_of(const std::vector<Series>& series, std::size_t i) {
  if (!series[i].colour.empty()) return escape_xml(series[i].colour);
  return palette_colours[i % (sizeof palette_colours / sizeof *palette_colours)];
}

std::string number(double v) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f", v);
  return text;
}

bool drawable(double v, bool log) { return std::isfinite(v) && (!log || v > 0); }

// One axis: the data's extent, widened to whole ticks, and the map from data to pixels.
struct Scale {
  bool log = false;
  std::vector<double> tick_values;
  double lo = 0, hi = 1;       // in the axis's own units (log10 of the value on a log axis)
  double from = 0, to = 1;     // pixels of lo and hi
  double unit(double v) const { return log ? std::log10(v) : v; }
  double pixel(double v) const { return from + (unit(v) - lo) / (hi - lo) * (to - from); }
};

Scale make_scale(double data_lo, double data_hi, bool log, double from, double to) {
  Scale s;
  s.log = log;
  if (!(data_lo <= data_hi)) data_lo = log ? 1 : 0, data_hi = log ? 10 : 1;  // nothing to draw
  s.tick_values = ticks(data_lo, data_hi, log);
  s.lo = s.unit(s.tick_values.front());
  s.hi = s.unit(s.tick_values.back());
  if (log) {  // the data with a margin, or the ticks around it: whichever is wider
    s.lo = std::min(s.lo, std::log10(data_lo) - 0.06);
    s.hi = std::max(s.hi, std::log10(data_hi) + 0.06);
  }
  s.from = from;
  s.to = to;
  return s;
}

// The extent of the drawable values of one coordinate over every series.
void extent(const std::vector<Series>& series, bool of_x, bool log_x, bool log_y, double& lo, double& hi) {
  lo = std::numeric_limits<double>::infinity();
  hi = -lo;
  for (const Series& s : series) {
    const std::size_t n = std::min(s.x.size(), s.y.size());
    for (std::size_t k = 0; k < n; ++k) {
      if (!drawable(s.x[k], log_x) || !drawable(s.y[k], log_y)) continue;
      const double v = of_x ? s.x[k] : s.y[k];
      lo = std::min(lo, v), hi = std::max(hi, v);
    }
  }
}

// The series as path data, "M x y L x y ...", a new M after each skipped point. A point within
// half a pixel of the last one drawn adds nothing visible and is left out, so a path of 20,000
// pieces stays a few kilobytes.
std::string path_data(const Series& s, const Scale& sx, const Scale& sy, std::vector<std::pair<double, double>>& dots) {
  std::string d;
  bool pen_down = false;
  double last_x = 0, last_y = 0;
  const std::size_t n = std::min(s.x.size(), s.y.size());
  for (std::size_t k = 0; k < n; ++k) {
    if (!drawable(s.x[k], sx.log) || !drawable(s.y[k], sy.log)) {
      pen_down = false;
      continue;
    }
    const double px = sx.pixel(s.x[k]), py = sy.pixel(s.y[k]);
    const bool last = k + 1 == n;
    if (pen_down && !last && std::abs(px - last_x) < 0.5 && std::abs(py - last_y) < 0.5) continue;
    d += (pen_down ? " L" : " M") + number(px) + " " + number(py);
    if (s.markers) dots.emplace_back(px, py);
    pen_down = true;
    last_x = px, last_y = py;
  }
  return d;
}

std::string text(double x, double y, const std::string& content, const std::string& attributes = "") {
  return "<text x=\"" + number(x) + "\" y=\"" + number(y) + "\"" + (attributes.empty() ? "" : " " + attributes) + ">" +
         escape_xml(content) + "</text>";
}

std::string grid_and_ticks(const Scale& sx, const Scale& sy, double top, double bottom, double left, double right) {
  std::string svg = "<g stroke=\"#e6e6e6\" stroke-width=\"1\">";
  for (double t : sx.tick_values) svg += "<path d=\"M" + number(sx.pixel(t)) + " " + number(top) + " V" + number(bottom) + "\"/>";
  for (double t : sy.tick_values) svg += "<path d=\"M" + number(left) + " " + number(sy.pixel(t)) + " H" + number(right) + "\"/>";
  svg += "</g><g fill=\"#333\">";
  for (double t : sx.tick_values) svg += text(sx.pixel(t), bottom + 14, tick_label(t, sx.log), "text-anchor=\"middle\"");
  for (double t : sy.tick_values) svg += text(left - 5, sy.pixel(t) + 4, tick_label(t, sy.log), "text-anchor=\"end\"");
  svg += "</g>";
  return svg;
}

// Vertical marks: full-height lines when few, a rug along the x axis when many (thousands of
// breakpoints); one per half-pixel column.
std::string marks(const std::vector<double>& x_marks, const Scale& sx, double top, double bottom) {
  std::vector<double> columns;
  for (double m : x_marks) {
    if (!drawable(m, sx.log)) continue;
    const double px = sx.pixel(m);
    if (px < std::min(sx.from, sx.to) - 0.01 || px > std::max(sx.from, sx.to) + 0.01) continue;
    columns.push_back(std::round(px * 2) / 2);
  }
  std::sort(columns.begin(), columns.end());
  columns.erase(std::unique(columns.begin(), columns.end()), columns.end());
  if (columns.empty()) return "";
  const bool rug = columns.size() > 50;
  std::string d;
  for (double c : columns) d += "M" + number(c) + " " + number(rug ? bottom - 8 : top) + " V" + number(bottom);
  return "<path d=\"" + d + "\" stroke=\"#888\" stroke-width=\"" + (rug ? "0.6" : "0.8") + "\"" +
         (rug ? "" : " stroke-dasharray=\"2 2\"") + " fill=\"none\"/>";
}

std::string legend(const Axes& axes, const std::vector<Series>& series, double top, double bottom, double left, double right) {
  std::vector<std::size_t> named;
  std::size_t longest = 0;
  for (std::size_t i = 0; i < series.size(); ++i)
    if (!series[i].name.empty()) named.push_back(i), longest = std::max(longest, series[i].name.size());
  if (named.empty()) return "";
  const double w = 30 + 6.0 * double(longest), h = 6 + 14.0 * double(named.size());
  const bool at_left = axes.legend == Corner::top_left || axes.legend == Corner::bottom_left;
  const bool at_top = axes.legend == Corner::top_left || axes.legend == Corner::top_right;
  const double x = at_left ? left + 6 : right - 6 - w, y = at_top ? top + 6 : bottom - 6 - h;
  std::string svg = "<g><rect x=\"" + number(x) + "\" y=\"" + number(y) + "\" width=\"" + number(w) + "\" height=\"" +
                    number(h) + "\" fill=\"#fff\" fill-opacity=\"0.85\" stroke=\"#ccc\"/>";
  for (std::size_t row = 0; row < named.size(); ++row) {
    const Series& s = series[named[row]];
    const std::string colour = colour_of(series, named[row]);
    const double cy = y + 10 + 14.0 * double(row);
    svg += "<path d=\"M" + number(x + 5) + " " + number(cy) + " H" + number(x + 23) + "\" stroke=\"" + colour +
           "\" stroke-width=\"2\"" + (s.dashed ? " stroke-dasharray=\"4 3\"" : "") + "/>";
    svg += text(x + 27, cy + 4, s.name, "fill=\"#222\"");
  }
  return svg + "</g>";
}

}  // namespace

std::string escape_xml(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default:
        if (static_cast<unsigned char>(c) >= 0x20 && c != 0x7f) out += c;  // control characters are not XML
    }
  }
  return out;
}

std::vector<double> ticks(double lo, double hi, bool log, int target) {
  std::vector<double> out;
  if (log) {
    // the decades inside [lo, hi]; when fewer than two, the ones around it
    int first = int(std::ceil(std::log10(lo) - 1e-9)), last = int(std::floor(std::log10(hi) + 1e-9));
    if (last - first < 1) {
      first = int(std::floor(std::log10(lo) + 1e-9)), last = int(std::ceil(std::log10(hi) - 1e-9));
      if (last <= first) last = first + 1;
    }
    const int every = std::max(1, (last - first + 7) / 8);  // at most about 8 labelled decades
    for (int e = first; e <= last; e += every) out.push_back(std::pow(10.0, e));
    return out;
  }
  if (hi == lo) {
    const double d = lo == 0 ? 1 : std::abs(lo) * 0.1;
    lo -= d, hi += d;
  }
  const double raw = (hi - lo) / std::max(1, target);
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  const double r = raw / magnitude;
  const double step = (r < 1.5 ? 1 : r < 3 ? 2 : r < 7 ? 5 : 10) * magnitude;
  const double first = std::floor(lo / step + 1e-9), last = std::ceil(hi / step - 1e-9);
  for (double k = first; k <= last + 0.5; ++k) {
    const double t = k * step;
    out.push_back(std::abs(t) < step * 1e-9 ? 0.0 : t);
  }
  if (out.size() < 2) out.push_back(out.back() + step);
  return out;
}

std::string tick_label(double value, bool log) {
  char text[32];
  if (log) {
    const int e = int(std::lround(std::log10(value)));
    if (e >= -3 && e <= 4) std::snprintf(text, sizeof text, "%g", std::pow(10.0, e));
    else std::snprintf(text, sizeof text, "1e%d", e);
    return text;
  }
  std::snprintf(text, sizeof text, "%.6g", value);
  return text;
}

std::string line_plot_svg(const Axes& axes, const std::vector<Series>& series, int width, int height) {
  const double w = std::max(width, 120), h = std::max(height, 100);
  const double left = 58, right = w - 12, top = axes.title.empty() ? 10 : 26, bottom = h - (axes.x_label.empty() ? 24 : 40);
  double x_lo, x_hi, y_lo, y_hi;
  extent(series, true, axes.log_x, axes.log_y, x_lo, x_hi);
  extent(series, false, axes.log_x, axes.log_y, y_lo, y_hi);
  const Scale sx = make_scale(x_lo, x_hi, axes.log_x, left, right);
  const Scale sy = make_scale(y_lo, y_hi, axes.log_y, bottom, top);

  std::string svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + number(w) + "\" height=\"" + number(h) +
                    "\" viewBox=\"0 0 " + number(w) + " " + number(h) +
                    "\" font-family=\"sans-serif\" font-size=\"11\" role=\"img\">";
  if (!axes.title.empty()) svg += "<title>" + escape_xml(axes.title) + "</title>";
  svg += "<rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>";
  svg += grid_and_ticks(sx, sy, top, bottom, left, right);
  svg += marks(axes.x_marks, sx, top, bottom);
  std::vector<std::pair<double, double>> dots;
  for (std::size_t i = 0; i < series.size(); ++i) {
    const std::string colour = colour_of(series, i);
    dots.clear();
    const std::string d = path_data(series[i], sx, sy, dots);
    if (!d.empty())
      svg += "<path d=\"" + d.substr(1) + "\" fill=\"none\" stroke=\"" + colour + "\" stroke-width=\"1.6\"" +
             (series[i].dashed ? " stroke-dasharray=\"5 3\"" : "") + " stroke-linejoin=\"round\"/>";
    for (const auto& [px, py] : dots)
      svg += "<circle cx=\"" + number(px) + "\" cy=\"" + number(py) + "\" r=\"2.2\" fill=\"" + colour + "\"/>";
  }
  svg += "<rect x=\"" + number(left) + "\" y=\"" + number(top) + "\" width=\"" + number(right - left) + "\" height=\"" +
         number(bottom - top) + "\" fill=\"none\" stroke=\"#555\"/>";
  svg += legend(axes, series, top, bottom, left, right);
  if (!axes.title.empty()) svg += text(w / 2, 17, axes.title, "text-anchor=\"middle\" font-weight=\"bold\" font-size=\"12\"");
  if (!axes.x_label.empty()) svg += text((left + right) / 2, h - 8, axes.x_label, "text-anchor=\"middle\"");
  if (!axes.y_label.empty())
    svg += "<text transform=\"translate(13 " + number((top + bottom) / 2) + ") rotate(-90)\" text-anchor=\"middle\">" +
           escape_xml(axes.y_label) + "</text>";
  return svg + "</svg>";
}

}  // namespace ax::attr::plot
