// The report page, index.html: one self-contained file (every picture a data URI, every plot
// inline SVG, no script, nothing fetched) rendered from the report's JSON and its figures. Every
// number on the page is printed from the JSON inside <span data-json="POINTER">, POINTER the
// JSON pointer of the value in report.json, so a test can check the page against the file.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace ax::attr::html {

// The pictures of one image, in the order of its JSON entries.
struct ImageFigures {
  std::string input_png;                      // the image itself
  std::vector<std::string> method_png;        // one per images[i].methods (empty: not available)
  std::vector<std::string> baseline_png;      // one per images[i].baselines: the baseline itself
  std::vector<std::string> baseline_attribution_png;  // and IG from it
  std::string masked_png;                     // the image kept where its attribution is in the top 10%
  std::string path_svg, convergence_svg;      // plot.hpp
};

// The page. `report` is report.json's content; figures[i] belongs to report["images"][i].
// `evaluation` is an HTML fragment placed after the images (evaluate.hpp's evaluation_html), or "".
std::string page(const nlohmann::json& report, const std::vector<ImageFigures>& figures,
                 const std::string& evaluation = "");

// RFC 4648 base64 with padding.
std::string base64(const std::string& bytes);

}  // namespace ax::attr::html
