// Evaluating attribution methods on a set of images: two questions a method's pictures cannot
// answer by themselves.
//
// Deletion (Petsiuk et al., 2018, as in RISE): does the model lose its prediction when the
// values a method ranks highest are removed first? The input's values are sorted by their
// attribution (signed, largest first: the evidence the method says supports the class), the top
// k% are replaced by a fill (the image's own per-channel mean, or a blurred copy of the image),
// and the explained class's probability and logit are read at each k. A seeded random order is the
// control. The curves are averaged over the images; the area under the mean curve (trapezoid
// rule over the fraction removed, 0 to 1) is the score, lower meaning a faster drop.
//
// Model randomization (Adebayo et al., 2018, "Sanity checks for saliency maps"): do the
// attributions depend on what the model learned? The parameterised layers are re-initialised
// from the output down, cumulatively (depth d: the top d layers), each tensor with Gaussian draws of
// the original tensor's own standard deviation; at each depth the attributions of the original
// prediction's class are compared with the original ones by Spearman's rank correlation, of
// |a| and of a, averaged over images. A method whose correlation stays near 1 explains the
// input, not the model.
#pragma once

#include "../nn/data.hpp"
#include "../nn/model_spec.hpp"
#include "target.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace ax::attr {

// The methods `evaluate` knows, by the names it reports.
//   gradient, inputxgradient, smoothgrad (mean gradient under noise of 0.15 of the input range),
//   ig (Gauss-Legendre, 50 steps: Captum's default), exact_ig (one gradient per linear piece),
//   eg (expected gradients over data images), deeplift (rescale rule)
// All but eg and smoothgrad explain from the baseline (default black).
const std::vector<std::string>& evaluation_methods();
// The default set: every method but exact_ig (about 2 s an image on the shipped model).
std::vector<std::string> default_evaluation_methods();

struct EvaluateRequest {
  std::string model;
  std::vector<std::string> images;       // PNG or .npy files; a folder stands for its *.png, sorted
  std::size_t fashion_mnist_test = 0;    // > 0: the first N images of Fashion-MNIST's test set instead
  std::string fashion_mnist_dir = nn::fashion_mnist_dir;
  std::vector<std::string> methods;      // empty: default_evaluation_methods()
  std::string baseline = "zero";         // a deterministic baseline SPEC (baseline.hpp)
  std::string eg_data;                   // eg's data set (.npy [D, input shape]); "" with Fashion-MNIST: its training set
  std::size_t eg_data_rows = 1000;       // eg with Fashion-MNIST: the first this many training images
  // Fashion-MNIST's training set when the caller has read it already (a report does), so that eg's
  // rows come from it instead of reading fashion_mnist_dir again; null: read it when needed.
  std::shared_ptr<const nn::ImageSet> fashion_mnist_train;
  std::size_t samples = 32;              // smoothgrad's and eg's draws per image
  std::size_t deletion_steps = 20;       // k = 0, 100/steps, ..., 100 percent
  double blur_sigma = 2;                 // the blurred fill's Gaussian, in pixels
  std::size_t randomization_images = 10; // the first this many images (at most N) for the randomization check
  std::uint64_t seed = 0;
  bool float64 = false;
  std::size_t memory = std::size_t(1) << 30;
  double timeout = 0;                    // seconds for the whole run (0: none)
  // Called after each step of work: (done, total, what), e.g. (3, 120, "deletion: image 3, ig").
  std::function<void(std::size_t, std::size_t, const std::string&)> on_progress;
};

// Runs the evaluation and returns it as JSON (evaluation.json's content): the settings, per
// method the deletion curves (mean over images, per fill, probability and logit) and their areas,
// the random control's, and the randomization correlations per depth. Every image is read and
// checked before any work. Throws Error naming the file or option at fault.
nlohmann::json evaluate(const EvaluateRequest& request);

// The files an evaluation is written as, by name: evaluation.json, deletion.csv,
// randomization.csv, deletion_mean.svg, deletion_blur.svg, randomization_abs.svg,
// randomization_signed.svg.
std::vector<std::pair<std::string, std::string>> evaluation_files(const nlohmann::json& evaluation);

// evaluate(), then every file of evaluation_files() into `out` (made if missing), all or none.
nlohmann::json write_evaluation(const EvaluateRequest& request, const std::string& out);

// An HTML fragment (no <html> or <body>) for a report page: the deletion and randomization plots
// as inline SVG and a table of the deletion areas, with a sentence on how to read them.
std::string evaluation_html(const nlohmann::json& evaluation);

// ---- the pieces, exposed for tests ----

// Ranks 1..n of the values, ties given the mean of the ranks they span.
std::vector<double> average_ranks(const std::vector<double>& values);
// Spearman's rank correlation: Pearson's correlation of the average ranks. 0 when either side is
// constant (its ranks carry no order). Throws Error unless both have the same length >= 2.
double spearman(const std::vector<double>& a, const std::vector<double>& b);

// The order in which deletion removes values: by attribution, largest first, ties by index.
template <class T>
std::vector<std::size_t> deletion_order(const Tensor<T>& attributions);

// The numbers of values removed at each step: round(D * j / steps), j = 0..steps.
std::vector<std::size_t> deletion_counts(std::size_t values, std::size_t steps);

// The explained class's logit and probability (the softmax of the engine's scores) at x with the
// first counts[j] values of `order` replaced by `fill`'s, for each j: one forward pass a chunk
// (the engine's class is not used: any engine on the logits will do).
struct DeletionCurve {
  std::vector<double> logit, probability;
};
template <class T>
DeletionCurve deletion_curve(Engine<T>& f, int class_index, const Tensor<T>& x, const Tensor<T>& fill,
                             const std::vector<std::size_t>& order, const std::vector<std::size_t>& counts);
// The curves of every order with every fill, curve o * fills.size() + k for order o and fill k,
// as one batch: the rows they share (the intact image, each fill whole) run once.
template <class T>
std::vector<DeletionCurve> deletion_curves(Engine<T>& f, int class_index, const Tensor<T>& x,
                                           const std::vector<const Tensor<T>*>& fills,
                                           const std::vector<std::vector<std::size_t>>& orders,
                                           const std::vector<std::size_t>& counts);

// The area under y over x in [0, 1] on equally spaced points (trapezoid rule).
double curve_area(const std::vector<double>& y);

// The parameterised nodes of the graph (those with a tensor "<node>.<param>"), in graph order.
std::vector<std::string> parameterised_layers(const nn::ModelSpec& model);

// The model with its top `depth` parameterised layers (counted from the output) re-initialised:
// each of their tensors replaced by N(0, s^2) draws, s the tensor's own standard deviation. The
// draws for a layer do not depend on `depth` (one generator per layer, seeded from `seed` and the
// layer's position), so depth d + 1 keeps depth d's new weights: cumulative.
nn::ModelSpec randomize_top_layers(const nn::ModelSpec& model, std::size_t depth, std::uint64_t seed);

}  // namespace ax::attr
