// The main job: explain a model's predictions for a set of images, and write pictures and a
// report. For each image: the predicted class and its probability; IG of that class's logit from
// the baseline (exact when the network is piecewise linear, else Gauss-Legendre to a tolerance)
// with its completeness; how far Captum's default (Gauss-Legendre, 50 steps) is from it; an
// overlay, a heatmap and the convergence curve. report.md and report.json gather it all.
#pragma once

#include "path.hpp"

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace ax::attr {

struct ReportRequest {
  std::string model;
  std::vector<std::string> images;  // PNG or .npy of the model's input shape
  std::string out;                  // the folder to write into (made if missing)
  Rule rule = Rule::exact;
  std::size_t steps = 50;           // for quadrature rules; and the comparison rule's steps
  std::string baseline = "zero";
  bool float64 = false;
  std::size_t memory = std::size_t(1) << 30;
  double timeout = 0;               // seconds for the whole report (0: no limit)
};

// Writes <out>/report.md, <out>/report.json and three PNGs per image; returns the JSON.
nlohmann::json write_report(const ReportRequest& request);

}  // namespace ax::attr
