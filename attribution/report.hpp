// The main job: explain a model's predictions for a set of images, and write a page that shows
// it (index.html, html.hpp), report.json, report.md and three PNGs per image. For each image: the
// predicted class and its probability, its true label where known; every method side by side on
// the predicted class's logit (gradient, gradient x input, SmoothGrad, IG with Captum's default
// Gauss-Legendre 50, the reference IG: exact when the network is piecewise linear, else
// Gauss-Legendre to a tolerance; IG from a blurred copy, expected gradients over a data set,
// DeepLIFT), each with its completeness, time and evaluations; the path plot, the convergence of
// the quadrature rules, IG from seven baselines, and the image kept where the attribution is in
// its top 10%.
#pragma once

#include "path.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
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
  // The images' true labels, one line per image ("": from the file names: a file whose name's
  // letters end with a label's letters, e.g. test0000_ankle_boot.png and "Ankle boot", has that
  // label, the longest such label when several fit; names that fit none have no label).
  std::string labels;
  // Expected gradients and the data baseline draw from this .npy [D, input shape]. "": Debian's
  // Fashion-MNIST training set (dataset-fashion-mnist) when the model's input is [1, 28, 28] and
  // the set is installed; "none", or no set at hand: the page says so and shows neither.
  std::string data;
  std::uint64_t seed = 0;           // every random draw (SmoothGrad, expected gradients, baselines)
  std::vector<std::size_t> convergence_steps = {4, 16, 64, 256, 1024};
  // > 0: an evaluation section (evaluate.hpp: deletion curves and model randomization) over the
  // first this many images of Fashion-MNIST's test set, written to <out>/evaluation/ and shown on
  // the page. The set is checked before any image is explained.
  std::size_t evaluate = 0;
  std::string fashion_mnist_dir;    // "": nn::fashion_mnist_dir
  // Called before each method (and each figure) of each image: image from 0.
  std::function<void(std::size_t image, std::size_t images, const std::string& method)> on_progress;
  // Called after each step of the evaluation: (done, total, what).
  std::function<void(std::size_t done, std::size_t total, const std::string& what)> on_evaluation_progress;
};

// Writes <out>/index.html, <out>/report.json, <out>/report.md and three PNGs per image, all or
// none, once every image is explained; returns the JSON. Every image, the labels and the data set
// are read and checked before the first is explained.
nlohmann::json write_report(const ReportRequest& request);

}  // namespace ax::attr
