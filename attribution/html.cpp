#include "html.hpp"

#include "plot.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdio>

namespace ax::attr::html {
namespace {

using nlohmann::json;
using plot::escape_xml;

const char* const style = R"(
body { font-family: sans-serif; font-size: 14px; color: #222; margin: 16px 24px; }
h1 { font-size: 22px; margin: 0 0 6px; }
h2 { font-size: 17px; margin: 26px 0 4px; border-top: 1px solid #ccc; padding-top: 12px; }
h3 { font-size: 14px; margin: 12px 0 4px; color: #444; }
.row { display: flex; flex-wrap: nowrap; gap: 10px; overflow-x: auto; align-items: flex-start; }
figure { margin: 0; text-align: center; }
figure img { display: block; margin: 0 auto 2px; image-rendering: pixelated; border: 1px solid #ddd; }
figcaption { font-size: 11px; line-height: 1.35; color: #333; max-width: 130px; }
figcaption b { font-size: 12px; }
.note { font-size: 12px; color: #555; max-width: 1100px; margin: 4px 0; }
.ok { color: #1a7f37; } .wrong { color: #c62828; }
.missing { width: 112px; height: 112px; border: 1px dashed #bbb; display: flex; align-items: center;
           justify-content: center; font-size: 11px; color: #777; margin: 0 auto 2px; }
code { font-size: 12px; }
)";

// A value of the report, printed inside <span data-json="POINTER"> so the page can be checked
// against report.json.
std::string shown(const json& report, const std::string& pointer, const char* format = "%.3g") {
  const json& v = report.at(json::json_pointer(pointer));
  std::string text;
  if (v.is_number()) {
    char buffer[64];
    std::snprintf(buffer, sizeof buffer, format, v.get<double>());
    text = buffer;
  } else {
    text = escape_xml(v.get<std::string>());
  }
  return "<span data-json=\"" + pointer + "\">" + text + "</span>";
}

std::string img(const std::string& png, const std::string& alt, int size = 112) {
  if (png.empty()) return "<div class=\"missing\">not available</div>";
  return "<img src=\"data:image/png;base64," + base64(png) + "\" width=\"" + std::to_string(size) + "\" height=\"" +
         std::to_string(size) + "\" alt=\"" + escape_xml(alt) + "\">";
}

std::string figure(const std::string& pictures, const std::string& caption) {
  return "<figure>" + pictures + "<figcaption>" + caption + "</figcaption></figure>";
}

std::string header(const json& r) {
  std::string h = "<h1>axiomatic report</h1>\n<p>Model <code>" + shown(r, "/model") + "</code>, " +
                  std::to_string(r["images"].size()) + " image(s), baseline <code>" + shown(r, "/baseline") +
                  "</code>, precision " + shown(r, "/precision") + ", seed " + shown(r, "/settings/seed", "%.0f") + "; " +
                  shown(r, "/seconds", "%.1f") + " s in all.</p>\n";
  h += "<p class=\"note\">For each image: the prediction, then every method side by side on the logit of the predicted "
       "class, each with its relative completeness gap |sum - (F(x) - F(x'))| / |F(x) - F(x')| where the method "
       "claims completeness, its time and its number of network evaluations (path points, samples or linear "
       "pieces). Red is positive attribution (evidence for the class), blue negative, white zero. The plots are "
       "drawn from the same numbers as report.json.</p>\n";
  if (r.contains("note")) h += "<p class=\"note\">" + shown(r, "/note") + "</p>\n";
  if (r["settings"].contains("data_note")) h += "<p class=\"note\">" + shown(r, "/settings/data_note") + "</p>\n";
  return h;
}

std::string verdict(const json& r, std::size_t i) {
  const std::string at = "/images/" + std::to_string(i);
  const json& image = r["images"][i];
  std::string v = "<p>";
  if (image.contains("true_label"))
    v += "True label: <b>" + shown(r, at + "/true_label") + "</b> (" + shown(r, at + "/true_label_from") + "). ";
  else
    v += "True label: not known. ";
  v += "Predicted: <b>" + shown(r, at + "/label") + "</b> (class " + shown(r, at + "/predicted", "%.0f") +
       "), p = " + shown(r, at + "/probability", "%.3f");
  if (image.contains("correct"))
    v += image["correct"].get<bool>() ? " <span class=\"ok\">correct</span>" : " <span class=\"wrong\">wrong</span>";
  return v + ".</p>\n";
}

std::string gallery(const json& r, std::size_t i, const ImageFigures& f) {
  const std::string at = "/images/" + std::to_string(i);
  const json& methods = r["images"][i]["methods"];
  std::string row = "<div class=\"row\">" + figure(img(f.input_png, "input"), "<b>input</b>");
  for (std::size_t m = 0; m < methods.size(); ++m) {
    const std::string mt = at + "/methods/" + std::to_string(m);
    std::string caption = "<b>" + shown(r, mt + "/title") + "</b><br>";
    if (methods[m].contains("relative_delta")) caption += "gap " + shown(r, mt + "/relative_delta", "%.2g") + "<br>";
    else if (methods[m].contains("seconds")) caption += "gap: does not apply<br>";
    if (methods[m].contains("seconds"))
      caption += shown(r, mt + "/seconds", "%.3f") + " s, " + shown(r, mt + "/evaluations", "%.0f") + " evaluations";
    if (methods[m].contains("note")) caption += "<br>" + shown(r, mt + "/note");
    row += figure(img(f.method_png[m], methods[m]["title"].get<std::string>()), caption);
  }
  row += "</div>\n<p class=\"note\">One colour scale for the row: each pixel's attribution (summed over channels) "
         "divided by " + shown(r, at + "/gallery_clip", "%.3g") + ", the " + shown(r, "/settings/percentile", "%g") +
         "th percentile of |a| over every picture in the row; values beyond it saturate. Gradient and SmoothGrad are "
         "in units of F per unit of input, the others in units of F.</p>\n";
  return row;
}

std::string path_figures(const json& r, std::size_t i, const ImageFigures& f) {
  const std::string at = "/images/" + std::to_string(i);
  std::string s = "<div class=\"row\">" + f.path_svg + f.convergence_svg + "</div>\n";
  s += "<p class=\"note\">Left: F along the straight path from the baseline, F(g(&alpha;)) - F(x'), against the running "
       "sum of the attributions up to &alpha;: they end at the same height when the attributions are complete. " +
       (r["images"][i].value("rule", "") == "exact"
            ? "The reference IG, exact, crosses " + shown(r, at + "/pieces", "%.0f") +
                  " linear pieces (ticks along the axis: its breakpoints); "
            : "The reference IG is " + shown(r, at + "/rule") + " with " + shown(r, at + "/steps", "%.0f") +
                  " steps (the network is not piecewise linear, or another rule was asked for); ") +
       "Gauss-Legendre 50 samples the same curve at 50 "
       "points. Right: for each quadrature rule, the relative completeness gap and the relative L2 distance to the "
       "reference IG against the number of steps; the reference's own gap (" +
       shown(r, at + "/convergence/reference_relative_delta", "%.2g") +
       ") is the floor. A small gap does not prove the attributions right: the distance to the exact answer "
       "can stay large while the gap is small.</p>\n";
  return s;
}

std::string baseline_grid(const json& r, std::size_t i, const ImageFigures& f) {
  const std::string at = "/images/" + std::to_string(i);
  const json& baselines = r["images"][i]["baselines"];
  std::string row = "<div class=\"row\">";
  for (std::size_t b = 0; b < baselines.size(); ++b) {
    const std::string bt = at + "/baselines/" + std::to_string(b);
    std::string caption = "<b>" + shown(r, bt + "/name") + "</b><br><code>" + shown(r, bt + "/spec") + "</code><br>";
    if (baselines[b].contains("relative_delta"))
      caption += "gap " + shown(r, bt + "/relative_delta", "%.2g") + "<br>F(x') " + shown(r, bt + "/f_baseline", "%.3g") +
                 "<br>" + shown(r, bt + "/seconds", "%.3f") + " s, " + shown(r, bt + "/evaluations", "%.0f") + " evaluations";
    if (baselines[b].contains("note")) caption += "<br>" + shown(r, bt + "/note");
    const std::string name = baselines[b]["name"].get<std::string>();
    row += figure(img(f.baseline_png[b], name + " baseline") + img(f.baseline_attribution_png[b], "IG from " + name), caption);
  }
  row += "</div>\n<p class=\"note\">Top: the baseline x' (for the random ones, the first of " +
         shown(r, "/settings/grid_samples", "%.0f") + " drawn; IG is their mean). Bottom: IG from it, Gauss-Legendre " +
         shown(r, "/settings/grid_steps", "%.0f") + " steps, on one colour scale: &plusmn;" +
         shown(r, at + "/baseline_clip", "%.3g") + ", the " + shown(r, "/settings/percentile", "%g") +
         "th percentile of |a| over the row. Each baseline asks a different question (what made this image differ "
         "from black, from white, from a blurred copy, from noise, from typical training images); none is the "
         "answer.</p>\n";
  return row;
}

std::string mask(const json& r, std::size_t i, const ImageFigures& f) {
  const std::string at = "/images/" + std::to_string(i);
  return "<div class=\"row\">" + figure(img(f.input_png, "input"), "<b>input</b>") +
         figure(img(f.masked_png, "top pixels"), "<b>top " + shown(r, "/settings/mask_percent", "%g") + "%</b><br>of " +
                                                     shown(r, at + "/mask_method")) +
         "</div>\n<p class=\"note\">The image kept only where the reference IG's attribution is among the largest " +
         shown(r, "/settings/mask_percent", "%g") +
         "% (positive first); the rest is painted gray-blue. It shows where the evidence lies, not that the model "
         "would still predict the class from those pixels alone (that is what a deletion test measures).</p>\n";
}

std::string image_section(const json& r, std::size_t i, const ImageFigures& f) {
  const std::string at = "/images/" + std::to_string(i);
  return "<section id=\"image-" + std::to_string(i) + "\">\n<h2>" + std::to_string(i + 1) + ". " + shown(r, at + "/name") +
         "</h2>\n" + verdict(r, i) + "<h3>Methods</h3>\n" + gallery(r, i, f) + "<h3>Along the path</h3>\n" +
         path_figures(r, i, f) + "<h3>Baselines</h3>\n" + baseline_grid(r, i, f) + "<h3>Where the evidence is</h3>\n" +
         mask(r, i, f) + "</section>\n";
}

}  // namespace

std::string base64(const std::string& bytes) {
  static const char* const digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  // three bytes to four digits; the last group padded with '='
  for (std::size_t i = 0; i < bytes.size(); i += 3) {
    const std::size_t n = std::min<std::size_t>(3, bytes.size() - i);
    std::uint32_t v = 0;
    for (std::size_t k = 0; k < 3; ++k)
      v = (v << 8) | (k < n ? static_cast<unsigned char>(bytes[i + k]) : 0u);
    for (std::size_t k = 0; k < 4; ++k) out += k <= n ? digits[(v >> (18 - 6 * k)) & 63] : '=';
  }
  return out;
}

std::string page(const nlohmann::json& report, const std::vector<ImageFigures>& figures, const std::string& evaluation) {
  std::string html = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>axiomatic report</title>\n"
                     "<style>" + std::string(style) + "</style>\n</head>\n<body>\n";
  html += header(report);
  for (std::size_t i = 0; i < figures.size() && i < report["images"].size(); ++i)
    html += image_section(report, i, figures[i]);
  return html + evaluation + "</body>\n</html>\n";
}

}  // namespace ax::attr::html
