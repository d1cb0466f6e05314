// Evaluation (attribution/evaluate): Spearman's rank correlation, deletion curves on a closed-form
// case, the randomized models, the whole run's determinism, and the progress lines of long runs.
#include "attribution/evaluate.hpp"
#include "attribution/methods.hpp"
#include "cli/progress.hpp"
#include "nn/model_file.hpp"

#include <doctest/doctest.h>
#include <omp.h>

#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>

using namespace ax;
using namespace ax::attr;

namespace {

const std::string shipped = std::string(AXIOMATIC_SOURCE) + "/examples/models/fashion_mnist.safetensors";

nn::TensorData f64(std::vector<std::size_t> shape, std::vector<double> values) {
  return nn::TensorData{"F64", std::move(shape), std::move(values)};
}

// Two logits over 12 inputs: z_0 = w . x + b, z_1 = 0. IG of z_0 from 0 is w * x.
nn::ModelSpec linear_two_classes(const std::vector<double>& w) {
  nn::ModelSpec m;
  m.graph.input = {"x", {w.size()}, std::pair{-10.0, 10.0}};
  m.graph.nodes.push_back(nn::make_node("fc", "linear", {"x"}));
  m.graph.output = "fc";
  std::vector<double> weight(w);
  weight.resize(2 * w.size(), 0.0);
  m.tensors["fc.weight"] = f64({2, w.size()}, weight);
  m.tensors["fc.bias"] = f64({2}, {0.25, 0.0});
  return m;
}

// A random MLP 6 -> 8 -> 8 -> 3 (relu)
nn::ModelSpec mlp(std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 0.5);
  nn::ModelSpec m;
  m.graph.input = {"x", {6}, std::pair{0.0, 1.0}};
  const std::vector<std::pair<std::string, std::size_t>> layers = {{"fc1", 8}, {"fc2", 8}, {"fc3", 3}};
  std::string previous = "x";
  std::size_t width = 6;
  for (const auto& [name, out] : layers) {
    m.graph.nodes.push_back(nn::make_node(name, "linear", {previous}));
    std::vector<double> weight(out * width), bias(out);
    for (double& v : weight) v = normal(rng);
    for (double& v : bias) v = normal(rng);
    m.tensors[name + ".weight"] = f64({out, width}, weight);
    m.tensors[name + ".bias"] = f64({out}, bias);
    previous = name;
    if (name != "fc3") {
      m.graph.nodes.push_back(nn::make_node("relu_" + name, "relu", {name}));
      previous = "relu_" + name;
    }
    width = out;
  }
  m.graph.output = "fc3";
  return m;
}

}  // namespace

TEST_CASE("Spearman's rank correlation: ties take the mean rank, a hand-computed example") {
  // a's ranks 1, 2.5, 2.5, 4; b's 1, 3, 2, 4. Centred on 2.5: sum of products 4.5, of squares
  // 4.5 and 5, so rho = 4.5 / sqrt(22.5) = 3 / sqrt(10).
  const std::vector<double> a = {1, 2, 2, 3}, b = {10, 30, 20, 40};
  CHECK(average_ranks(a) == std::vector<double>{1, 2.5, 2.5, 4});
  CHECK(average_ranks({5, 5, 5}) == std::vector<double>{2, 2, 2});
  CHECK(spearman(a, b) == doctest::Approx(3 / std::sqrt(10.0)).epsilon(1e-15));
  CHECK(spearman(b, a) == doctest::Approx(3 / std::sqrt(10.0)).epsilon(1e-15));
  CHECK(spearman({1, 2, 3, 4}, {-1, -8, -27, -64}) == -1.0);  // any decreasing map
  CHECK(spearman({1, 2, 3}, {7, 7, 7}) == 0.0);               // a constant side has no order
  CHECK_THROWS_AS(spearman({1, 2}, {1, 2, 3}), Error);
}

TEST_CASE("deletion on a linear model: the curve is F(x) less the top IG values, below every random order") {
  const std::vector<double> w = {0.5, -1.0, 2.0, 0.25, 1.5, 0.75, -0.5, -2.0, 0.1, 0.2, 0.3, 0.4};
  const nn::ModelSpec model = linear_two_classes(w);
  Engine<double> f(model, TargetSpec{"", Output::logit, 0, -1});
  Tensor<double> x(Shape{w.size()});
  for (std::size_t i = 0; i < w.size(); ++i) x(i) = (i % 2 ? -0.7 : 0.9) * double(i + 1) / 6.0;
  const Tensor<double> zero = zeros<double>({w.size()});
  const Tensor<double> ig = integrated_gradients(f, x, zero).values;  // w * x on a linear model

  const std::vector<std::size_t> order = deletion_order(ig);
  const std::vector<std::size_t> counts = deletion_counts(w.size(), w.size());  // one value a step
  const DeletionCurve curve = deletion_curve(f, 0, x, zero, order, counts);
  REQUIRE(curve.logit.size() == w.size() + 1);
  double expected = 0.25;
  for (std::size_t i = 0; i < w.size(); ++i) expected += w[i] * double(x(i));
  // removing value i (filling it with the baseline 0) takes away exactly its IG, w_i x_i
  for (std::size_t j = 0; j <= w.size(); ++j) {
    CHECK(curve.logit[j] == doctest::Approx(expected).epsilon(1e-12));
    CHECK(curve.probability[j] == doctest::Approx(1 / (1 + std::exp(-curve.logit[j]))).epsilon(1e-12));
    if (j < w.size()) expected -= double(ig(order[j]));
  }
  // while the removed IG values are positive, every step lowers the score
  std::size_t positive = 0;
  while (positive < order.size() && ig(order[positive]) > 0) ++positive;
  CHECK(positive > 3);
  for (std::size_t j = 1; j <= positive; ++j) CHECK(curve.probability[j] < curve.probability[j - 1]);

  // the sum of the top k is the largest sum of any k values: no order goes lower, at any k
  std::mt19937_64 rng(7);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<std::size_t> shuffled(order);
    std::shuffle(shuffled.begin(), shuffled.end(), rng);
    const DeletionCurve random = deletion_curve(f, 0, x, zero, shuffled, counts);
    for (std::size_t j = 0; j <= w.size(); ++j) CHECK(curve.probability[j] <= random.probability[j] + 1e-15);
    if (shuffled != order) CHECK(curve_area(curve.probability) < curve_area(random.probability));
  }
}

TEST_CASE("deletion curves as one batch: each is the curve run alone, the shared rows once") {
  const std::vector<double> w = {0.5, -1.0, 2.0, 0.25, 1.5, 0.75, -0.5, -2.0, 0.1, 0.2, 0.3, 0.4};
  const nn::ModelSpec model = linear_two_classes(w);
  Engine<double> f(model, TargetSpec{"", Output::logit, 0, -1});
  Tensor<double> x(Shape{w.size()}), half(Shape{w.size()});
  for (std::size_t i = 0; i < w.size(); ++i) x(i) = (i % 3 ? -0.6 : 0.8) * double(i + 2) / 5.0, half(i) = 0.5;
  const Tensor<double> zero = zeros<double>({w.size()});
  std::vector<std::size_t> forward(w.size()), backward(w.size());
  std::iota(forward.begin(), forward.end(), std::size_t(0));
  std::iota(backward.rbegin(), backward.rend(), std::size_t(0));
  const std::vector<std::size_t> counts = deletion_counts(w.size(), 4);  // 0, 3, 6, 9, 12
  const std::size_t before = f.evaluations();
  const std::vector<DeletionCurve> curves = deletion_curves(f, 0, x, {&zero, &half}, {forward, backward}, counts);
  // 2 orders x 2 fills x 3 inner steps, the intact image once and each fill whole once
  CHECK(f.evaluations() - before == 2 * 2 * 3 + 1 + 2);
  REQUIRE(curves.size() == 4);
  const std::vector<double> intact = f.scores(x), emptied = f.scores(zero), halved = f.scores(half);
  for (std::size_t o = 0; o < 2; ++o)
    for (std::size_t k = 0; k < 2; ++k) {
      CAPTURE(o);
      CAPTURE(k);
      const DeletionCurve alone = deletion_curve(f, 0, x, k == 0 ? zero : half, o == 0 ? forward : backward, counts);
      CHECK(curves[o * 2 + k].logit == alone.logit);
      CHECK(curves[o * 2 + k].probability == alone.probability);
      CHECK(curves[o * 2 + k].logit.front() == intact[0]);
      CHECK(curves[o * 2 + k].logit.back() == (k == 0 ? emptied : halved)[0]);
    }
  CHECK(curves[0].logit[1] != curves[2].logit[1]);  // the orders remove different values
}

TEST_CASE("deletion's steps and the area under a curve") {
  CHECK(deletion_counts(10, 4) == std::vector<std::size_t>{0, 3, 5, 8, 10});  // round(10 j / 4)
  CHECK(deletion_counts(784, 20).back() == 784);
  CHECK(curve_area({1, 0}) == 0.5);
  CHECK(curve_area({1, 1, 1}) == 1.0);
  CHECK(curve_area({0, 1, 0}) == 0.5);
  // ties in the attributions keep the index order
  CHECK(deletion_order(from_values<float>({5}, {0.5f, 2.0f, 0.5f, -1.0f, 2.0f})) == std::vector<std::size_t>{1, 4, 0, 2, 3});
}

TEST_CASE("randomized models: the top layers from the output down, cumulative, seeded") {
  const nn::ModelSpec m = mlp(3);
  REQUIRE(parameterised_layers(m) == std::vector<std::string>{"fc1", "fc2", "fc3"});
  const auto same = [](const nn::ModelSpec& a, const nn::ModelSpec& b, const std::string& t) {
    return a.tensors.at(t).values == b.tensors.at(t).values;
  };
  const nn::ModelSpec d0 = randomize_top_layers(m, 0, 1), d1 = randomize_top_layers(m, 1, 1);
  const nn::ModelSpec d2 = randomize_top_layers(m, 2, 1), other = randomize_top_layers(m, 1, 2);
  for (const auto& [name, t] : m.tensors) CHECK(same(d0, m, name));
  CHECK(!same(d1, m, "fc3.weight"));
  CHECK(!same(d1, m, "fc3.bias"));
  CHECK(same(d1, m, "fc2.weight"));
  CHECK(same(d2, d1, "fc3.weight"));  // cumulative: depth 2 keeps depth 1's new top layer
  CHECK(!same(d2, m, "fc2.weight"));
  CHECK(same(d2, m, "fc1.weight"));
  CHECK(!same(other, d1, "fc3.weight"));
  CHECK(same(randomize_top_layers(m, 2, 1), d2, "fc2.weight"));
  CHECK_THROWS_AS(randomize_top_layers(m, 4, 1), Error);

  // a large layer's new values have about the original's standard deviation
  const nn::ModelSpec shipped_model = nn::load_model(shipped);
  const auto sd = [](const std::vector<double>& v) {
    const double mean = std::accumulate(v.begin(), v.end(), 0.0) / double(v.size());
    double s = 0;
    for (double e : v) s += (e - mean) * (e - mean);
    return std::sqrt(s / double(v.size()));
  };
  const std::vector<std::string> layers = parameterised_layers(shipped_model);
  const nn::ModelSpec top = randomize_top_layers(shipped_model, 2, 5);
  CHECK(sd(top.tensors.at("fc1.weight").values) ==
        doctest::Approx(sd(nn::widened_values(shipped_model.tensors.at("fc1.weight")))).epsilon(0.02));
}

TEST_CASE("evaluate on the shipped model: the same seed gives the same bits on one thread and on two") {
  // small settings: the two-thread run is the slow one on a loaded machine (libgomp spins at barriers)
  EvaluateRequest r;
  r.model = shipped;
  r.fashion_mnist_test = 2;
  r.samples = 4;
  r.deletion_steps = 5;
  r.randomization_images = 1;
  r.eg_data_rows = 50;
  std::size_t calls = 0, last_total = 0;
  r.on_progress = [&](std::size_t done, std::size_t total, const std::string&) {
    CHECK(done == ++calls);
    last_total = total;
  };
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const nlohmann::json one = evaluate(r);
  // every step reported once: 2 images x 6 methods, then 5 depths x 1 image x 6 methods
  CHECK(calls == 2 * 6 + 5 * 1 * 6);
  CHECK(last_total == calls);
  omp_set_num_threads(2);
  calls = 0;
  const nlohmann::json two = evaluate(r);
  omp_set_num_threads(threads);
  const auto one_files = evaluation_files(one), two_files = evaluation_files(two);
  REQUIRE(one_files.size() == 7);
  for (std::size_t i = 0; i < one_files.size(); ++i) {
    CAPTURE(one_files[i].first);
    CHECK(one_files[i] == two_files[i]);
  }

  // six methods by default (exact IG is opt-in), and the random control
  const std::vector<std::string> methods = one["methods"].get<std::vector<std::string>>();
  CHECK(methods == default_evaluation_methods());
  CHECK(methods.size() == 6);
  const nlohmann::json& curves = one["deletion"]["curves"];
  CHECK(curves.size() == 7);
  CHECK(one["deletion"]["percent"].size() == 6);
  // k = 0 is the intact image for every order
  for (const auto& [name, c] : curves.items())
    CHECK(c["mean"]["probability"][0] == curves["random"]["blur"]["probability"][0]);
  // depth 0 is the original model: every method's attributions match themselves
  const nlohmann::json& randomization = one["randomization"];
  CHECK(randomization["layer_at_depth"] == nlohmann::json({"", "fc2", "fc1", "conv2", "conv1"}));
  for (const std::string& m : methods) {
    CHECK(randomization["methods"][m]["spearman_abs"][0] == 1.0);
    CHECK(randomization["methods"][m]["spearman_signed"][0] == 1.0);
    CHECK(randomization["methods"][m]["spearman_signed"][4].get<double>() < 0.9);
  }

  // the CSV holds a row per curve, fill and step; the HTML fragment the four plots and the table
  const std::string csv = one_files[1].second;
  CHECK(std::count(csv.begin(), csv.end(), '\n') == 1 + 7 * 2 * 6);
  const std::string html = evaluation_html(one);
  std::size_t svgs = 0;
  for (std::size_t at = html.find("<svg"); at != std::string::npos; at = html.find("<svg", at + 1)) ++svgs;
  CHECK(svgs == 4);
  CHECK(html.find("<table") != std::string::npos);
  CHECK(html.find("<html") == std::string::npos);
  for (const std::string& m : methods) CHECK(html.find("<td>" + m + "</td>") != std::string::npos);

  // another seed: another random order (and other smoothgrad and eg draws)
  r.seed = 1;
  r.on_progress = nullptr;
  const nlohmann::json reseeded = evaluate(r);
  CHECK(reseeded["deletion"]["curves"]["random"] != curves["random"]);
  CHECK(reseeded["deletion"]["curves"]["ig"] == curves["ig"]);
}

TEST_CASE("evaluate refuses what it cannot run, naming it") {
  EvaluateRequest r;
  r.model = shipped;
  r.fashion_mnist_test = 2;
  r.methods = {"gradient", "sideways"};
  CHECK_THROWS_WITH_AS(evaluate(r), doctest::Contains("unknown method 'sideways'"), Error);
  r.methods = {"ig", "ig"};
  CHECK_THROWS_WITH_AS(evaluate(r), doctest::Contains("'ig' is named twice"), Error);
  r.methods = {"eg"};
  r.fashion_mnist_test = 0;
  r.images = {std::string(AXIOMATIC_SOURCE) + "/examples/images"};
  CHECK_THROWS_WITH_AS(evaluate(r), doctest::Contains("--eg-data"), Error);
  r.methods = {"gradient"};
  r.fashion_mnist_test = 20000;
  r.images.clear();
  CHECK_THROWS_WITH_AS(evaluate(r), doctest::Contains("the test set holds 10000"), Error);
}

TEST_CASE("progress: plain lines when not on a terminal, at most one per interval, the first and the last") {
  std::FILE* out = std::tmpfile();
  REQUIRE(out);
  double now = 100;
  cli::Progress progress(out, false, "evaluate", 3.0, [&] { return now; });
  const double times[] = {101, 102, 103.5, 104, 200};
  for (std::size_t i = 0; i < 5; ++i) {
    now = times[i];
    progress(i + 1, 5, "image " + std::to_string(i + 1));
  }
  std::rewind(out);
  std::string text;
  for (int c; (c = std::fgetc(out)) != EOF;) text += char(c);
  std::fclose(out);
  CHECK(text ==
        "evaluate: 1 of 5 (image 1), 1.0 s elapsed, about 4.0 s left\n"
        "evaluate: 4 of 5 (image 4), 4.0 s elapsed, about 1.0 s left\n"
        "evaluate: 5 of 5 (image 5), 1 min 40 s elapsed\n");
  CHECK(cli::Progress::duration(0.26) == "0.3 s");
  CHECK(cli::Progress::duration(42.4) == "42 s");
  CHECK(cli::Progress::duration(3725) == "62 min 05 s");
}
