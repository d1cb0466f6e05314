// The SVG line plot (attribution/plot.hpp): nice ticks, log axes, points that cannot be drawn.
#include "attribution/plot.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <regex>

using namespace ax::attr::plot;

namespace {

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (std::size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// Every number in the SVG's attributes and path data is finite.
bool only_finite_numbers(const std::string& svg) {
  for (const char* bad : {"nan", "NaN", "inf", "Inf"})
    if (svg.find(bad) != std::string::npos) return false;
  return true;
}

// A step is "nice" when it is 1, 2 or 5 times a power of ten.
bool nice(double step) {
  const double magnitude = std::pow(10.0, std::floor(std::log10(step) + 1e-9));
  const double r = step / magnitude;
  return std::abs(r - 1) < 1e-9 || std::abs(r - 2) < 1e-9 || std::abs(r - 5) < 1e-9;
}

}  // namespace

TEST_CASE("plot: linear ticks are 1-2-5 steps that cover the data") {
  const std::vector<double> unit = ticks(0, 1, false);
  REQUIRE(unit.size() == 6);
  for (std::size_t k = 0; k < 6; ++k) CHECK(unit[k] == doctest::Approx(0.2 * double(k)));
  for (auto [lo, hi] : std::vector<std::pair<double, double>>{{0.13, 0.87}, {-3.7, 12.2}, {1e-7, 3.3e-7}, {-250, -3}, {0, 17}}) {
    CAPTURE(lo);
    CAPTURE(hi);
    const std::vector<double> t = ticks(lo, hi, false);
    REQUIRE(t.size() >= 3);
    CHECK(t.size() <= 11);
    CHECK(t.front() <= lo);
    CHECK(t.back() >= hi);
    const double step = t[1] - t[0];
    CHECK(nice(step));
    for (std::size_t k = 1; k < t.size(); ++k) CHECK(t[k] - t[k - 1] == doctest::Approx(step));
    CHECK(t.front() > lo - step * 1.0000001);  // no wasted tick below the data
  }
  // one value: a range around it
  const std::vector<double> one = ticks(5, 5, false);
  CHECK(one.front() < 5);
  CHECK(one.back() > 5);
  CHECK(tick_label(0.25, false) == "0.25");
  CHECK(tick_label(-1500, false) == "-1500");
}

TEST_CASE("plot: log ticks are whole decades") {
  CHECK(ticks(3e-5, 200, true) == std::vector<double>{1e-4, 1e-3, 1e-2, 1e-1, 1, 10, 100});
  CHECK(ticks(4, 1024, true) == std::vector<double>{10, 100, 1000});
  CHECK(ticks(10, 10, true) == std::vector<double>{10, 100});
  CHECK(ticks(2, 50, true) == std::vector<double>{1, 10, 100});  // one decade inside: the ones around
  // many decades: every k-th, still covering the data
  const std::vector<double> wide = ticks(1e-16, 1, true);
  CHECK(wide.size() <= 10);
  CHECK(wide.front() == 1e-16);
  CHECK(wide.back() <= 1);
  CHECK(wide.back() >= 1e-2);
  CHECK(tick_label(1e-3, true) == "0.001");
  CHECK(tick_label(1e-6, true) == "1e-6");
  CHECK(tick_label(1e5, true) == "1e5");
  CHECK(tick_label(100, true) == "100");
}

TEST_CASE("plot: an SVG with title, labels, legend and one path per series") {
  Axes axes;
  axes.title = "gap <vs> steps";
  axes.x_label = "steps";
  axes.y_label = "relative gap";
  axes.log_x = axes.log_y = true;
  const std::string svg = line_plot_svg(axes, {{"left", {4, 16, 64}, {1e-1, 3e-2, 8e-3}, false, true},
                                               {"exact", {4, 64}, {1e-7, 1e-7}, true, false}});
  CHECK(svg.rfind("<svg xmlns=\"http://www.w3.org/2000/svg\"", 0) == 0);
  CHECK(svg.substr(svg.size() - 6) == "</svg>");
  CHECK(svg.find("gap &lt;vs&gt; steps") != std::string::npos);
  CHECK(svg.find(">steps</text>") != std::string::npos);
  CHECK(svg.find("rotate(-90)\" text-anchor=\"middle\">relative gap</text>") != std::string::npos);
  CHECK(svg.find(">left</text>") != std::string::npos);   // the legend
  CHECK(svg.find(">exact</text>") != std::string::npos);
  CHECK(count(svg, "stroke-width=\"1.6\"") == 2);         // one path per series
  CHECK(count(svg, "<circle") == 3);                     // markers on the first only
  CHECK(count(svg, "stroke-dasharray=\"5 3\"") == 1);
  // decade labels on both axes: 1e-7 .. 0.1 on y, 10 on x
  CHECK(svg.find(">1e-7</text>") != std::string::npos);
  CHECK(svg.find(">0.1</text>") != std::string::npos);
  CHECK(svg.find(">10</text>") != std::string::npos);
  CHECK(only_finite_numbers(svg));
}

TEST_CASE("plot: NaN, Inf and non-positive values on a log axis are skipped, breaking the line") {
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  Axes linear;
  const std::string a = line_plot_svg(linear, {{"s", {0, 1, 2, 3, 4}, {1, nan, 2, inf, 3}}});
  CHECK(only_finite_numbers(a));
  // three pieces: the pen is lifted at each skipped point
  const std::regex path("<path d=\"([^\"]*)\" fill=\"none\" stroke=\"#1f77b4\"");
  std::smatch m;
  REQUIRE(std::regex_search(a, m, path));
  CHECK(count(m[1].str(), "M") == 3);
  CHECK(count(m[1].str(), "L") == 0);

  Axes log;
  log.log_y = true;
  const std::string b = line_plot_svg(log, {{"s", {0, 1, 2, 3}, {0, -1, 1e-3, 1e-1}}});
  CHECK(only_finite_numbers(b));
  REQUIRE(std::regex_search(b, m, path));
  CHECK(count(m[1].str(), "M") == 1);  // the two drawable points, one segment
  CHECK(count(m[1].str(), "L") == 1);
  CHECK(b.find(">0.001</text>") != std::string::npos);

  // nothing drawable at all: axes still, and no NaN
  const std::string c = line_plot_svg(log, {{"s", {1, 2}, {nan, 0}}});
  CHECK(only_finite_numbers(c));
  CHECK(count(c, "stroke-width=\"1.6\"") == 0);
}

// The marks' path in an SVG: <path d="PATH" stroke="#888" stroke-width="WIDTH". Found with
// find, not std::regex, whose recursion overflows the stack on a long path under ASan.
namespace {
struct Marks {
  bool found = false;
  std::string path, width;
};
Marks marks_of(const std::string& svg) {
  const std::string tail = "\" stroke=\"#888\" stroke-width=\"";
  const std::size_t end = svg.find(tail);
  if (end == std::string::npos) return {};
  const std::size_t start = svg.rfind("<path d=\"", end);
  if (start == std::string::npos) return {};
  const std::size_t width = end + tail.size();
  return {true, svg.substr(start + 9, end - start - 9), svg.substr(width, svg.find('"', width) - width)};
}
}  // namespace

TEST_CASE("plot: vertical marks are lines when few and a rug when many, one per half pixel") {
  Axes axes;
  axes.x_marks = {0.25, 0.5, 2.0 /* outside the axis: left out */};
  const Series s{"f", {0, 1}, {0, 1}};
  const std::string few = line_plot_svg(axes, {s});
  const Marks sparse = marks_of(few);
  REQUIRE(sparse.found);
  CHECK(count(sparse.path, "M") == 2);
  CHECK(sparse.width == "0.8");
  for (int k = 0; k <= 20000; ++k) axes.x_marks.push_back(k / 20000.0);
  const std::string many = line_plot_svg(axes, {s});
  const Marks rug = marks_of(many);
  REQUIRE(rug.found);
  CHECK(rug.width == "0.6");
  CHECK(count(rug.path, "M") < 800);  // 350 pixels across, two marks a pixel at most
  CHECK(many.size() < 40000);
}

TEST_CASE("plot: escape_xml") {
  CHECK(escape_xml("a<b & \"c\" 'd'>") == "a&lt;b &amp; &quot;c&quot; &#39;d&#39;&gt;");
  CHECK(escape_xml(std::string("x\x1b[31my\n")) == "x[31my");
}
