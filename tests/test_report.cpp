// The report (attribution/report.hpp) and its page (html.hpp) on the toy CNN: the page shows the
// numbers of report.json, is self-contained, the run is deterministic and reports its progress,
// and a bad labels file or data set writes nothing; --evaluate adds the evaluation section.
#include "attribution/html.hpp"
#include "attribution/io.hpp"
#include "attribution/methods.hpp"
#include "attribution/report.hpp"
#include "nn/model_file.hpp"
#include "nn/zoo.hpp"
#include "support.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <type_traits>
#include <unistd.h>

using namespace ax;

namespace {

std::string temp(const std::string& name) {
  // per process: ctest -j2 runs two of these tests at once
  return (std::filesystem::temp_directory_path() / ("axiomatic_report_" + std::to_string(::getpid()) + "_" + name)).string();
}

using test::slurp;

const std::string toy = std::string(AXIOMATIC_SOURCE) + "/examples/toys/tiny_cnn.json";  // labels a, b, c

// Two 4 x 4 images (the second named so that its file name gives the label "b") and a data set.
attr::ReportRequest toy_request(const std::string& out) {
  Tensor<double> one(Shape{1, 4, 4}), two(Shape{1, 4, 4}), data(Shape{6, 1, 4, 4});
  for (std::size_t i = 0; i < 16; ++i) {
    one.data()[i] = double(i) / 16;
    two.data()[i] = double((7 * i) % 16) / 16;
  }
  for (std::size_t i = 0; i < data.size(); ++i) data.data()[i] = double((5 * i + 3) % 11) / 11;
  attr::write_npy(temp("one.npy"), one);
  attr::write_npy(temp("cab.npy"), two);
  attr::write_npy(temp("data.npy"), data);
  attr::ReportRequest r;
  r.model = toy;
  r.images = {temp("one.npy"), temp("cab.npy")};
  r.out = out;
  r.data = temp("data.npy");
  r.seed = 7;
  std::filesystem::remove_all(out);
  return r;
}

// The number a page shows, checked against the JSON's: equal to within half a unit of the last
// digit printed ("1.1e-08": 5e-10; "0.925": 5e-4; "52254": 0.5).
bool shows(const std::string& text, double value) {
  const std::size_t e = text.find_first_of("eE");
  const std::string mantissa = text.substr(0, e);
  const int exponent = e == std::string::npos ? 0 : std::stoi(text.substr(e + 1));
  const std::size_t dot = mantissa.find('.');
  const int decimals = dot == std::string::npos ? 0 : int(mantissa.size() - dot - 1);
  const double unit = std::pow(10.0, exponent - decimals);
  return std::abs(std::stod(text) - value) <= 0.5 * unit * (1 + 1e-9);
}

std::string unescape(std::string text) {
  for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{
           {"&lt;", "<"}, {"&gt;", ">"}, {"&quot;", "\""}, {"&#39;", "'"}, {"&amp;", "&"}})
    for (std::size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size()))
      text.replace(at, from.size(), to);
  return text;
}

// report.json without its timings: what must be the same bits from run to run.
nlohmann::json without_seconds(nlohmann::json j) {
  if (j.is_object()) {
    j.erase("seconds");
    for (auto& [key, value] : j.items()) value = without_seconds(value);
  } else if (j.is_array()) {
    for (auto& value : j) value = without_seconds(value);
  }
  return j;
}

}  // namespace

TEST_CASE("report page: every number on it is report.json's, and every method's numbers are on it") {
  const std::string out = temp("page");
  const attr::ReportRequest request = toy_request(out);
  attr::write_report(request);
  const nlohmann::json report = nlohmann::json::parse(slurp(out + "/report.json"));
  const std::string page = slurp(out + "/index.html");

  const std::regex span("<span data-json=\"([^\"]+)\">([^<]*)</span>");
  std::set<std::string> pointers;
  std::size_t numbers = 0;
  for (auto it = std::sregex_iterator(page.begin(), page.end(), span); it != std::sregex_iterator(); ++it) {
    const std::string pointer = (*it)[1], text = unescape((*it)[2]);
    CAPTURE(pointer);
    CAPTURE(text);
    const nlohmann::json::json_pointer at(pointer);
    REQUIRE(report.contains(at));
    const nlohmann::json& value = report.at(at);
    if (value.is_number()) {
      CHECK(shows(text, value.get<double>()));
      ++numbers;
    } else {
      CHECK(text == value.get<std::string>());
    }
    pointers.insert(pointer);
  }
  CHECK(numbers > 100);
  // what the page must show: each method's title, gap where it applies, time and evaluations;
  // each baseline's gap; the prediction
  const nlohmann::json& images = report["images"];
  REQUIRE(images.size() == 2);
  for (std::size_t i = 0; i < images.size(); ++i) {
    const std::string at = "/images/" + std::to_string(i);
    for (const char* key : {"/name", "/label", "/probability", "/predicted", "/pieces", "/gallery_clip", "/baseline_clip"})
      CHECK(pointers.count(at + key));
    const nlohmann::json& methods = images[i]["methods"];
    std::vector<std::string> ids;
    for (std::size_t m = 0; m < methods.size(); ++m) {
      ids.push_back(methods[m]["id"]);
      const std::string mt = at + "/methods/" + std::to_string(m);
      CHECK(pointers.count(mt + "/title"));
      for (const char* key : {"/relative_delta", "/seconds", "/evaluations"})
        if (methods[m].contains(key + 1)) CHECK(pointers.count(mt + key));
      CHECK(methods[m]["available"] == true);  // a data set is given, and the toy has a rescale rule everywhere
    }
    CHECK(ids == std::vector<std::string>{"gradient", "inputxgradient", "smoothgrad", "ig_gausslegendre50", "ig_reference",
                                          "ig_blur", "eg", "deeplift"});
    CHECK(methods[4]["rule"] == "exact");
    CHECK(methods[4]["relative_delta"].get<double>() < 1e-5);  // exact IG in float32
    CHECK(methods[7]["relative_delta"].get<double>() < 1e-5);  // DeepLIFT sums to the difference
    CHECK_FALSE(methods[0].contains("relative_delta"));        // the gradient claims no completeness
    const nlohmann::json& baselines = images[i]["baselines"];
    REQUIRE(baselines.size() == 7);
    for (std::size_t b = 0; b < baselines.size(); ++b)
      CHECK(pointers.count(at + "/baselines/" + std::to_string(b) + "/relative_delta"));
    // the convergence figure's numbers: one per rule and step count
    for (const nlohmann::json& rule : images[i]["convergence"]["rules"]) {
      CHECK(rule["relative_delta"].size() == request.convergence_steps.size());
      CHECK(rule["relative_l2"].size() == request.convergence_steps.size());
    }
  }
  // the label from the file name "cab.npy" (letters ending in "b"); none for "one.npy"
  CHECK_FALSE(images[0].contains("true_label"));
  CHECK(images[1]["true_label"] == "b");
  CHECK(images[1]["true_label_from"] == "from the file name");
}

namespace {

// The report's convergence figure against IG run rule by rule on an engine of type T, to within
// `epsilon` relatively (and epsilon * 1e-3 absolutely, for the gaps at the precision's floor).
template <class T>
void check_convergence(const std::string& name, double epsilon) {
  const std::string out = temp(name);
  attr::ReportRequest request = toy_request(out);
  request.float64 = std::is_same_v<T, double>;
  request.images.resize(1);
  const nlohmann::json report = attr::write_report(request);
  const nlohmann::json& image = report["images"][0];
  const nn::ModelSpec model = nn::load_model(toy);
  attr::Engine<T> f(model, attr::TargetSpec{image["explained_node"].get<std::string>(), attr::Output::logit,
                                            image["predicted"].get<int>(), -1});
  const Tensor<T> x = attr::read_npy<T>(request.images[0]);
  const Tensor<T> black = zeros<T>(x.shape());
  attr::IgOptions exact;
  exact.rule = attr::Rule::exact;
  const Tensor<T> reference = attr::integrated_gradients(f, x, black, exact).values;
  const nlohmann::json& rules = image["convergence"]["rules"];
  REQUIRE(rules.size() == 5);
  std::size_t compared = 0;
  for (const nlohmann::json& rule : rules)
    for (std::size_t s = 0; s < rule["steps"].size(); ++s) {
      attr::IgOptions ig;
      ig.rule = attr::parse_rule(rule["rule"].get<std::string>());
      ig.steps = rule["steps"][s].get<std::size_t>();  // the trapezoid's n + 1 points
      const attr::Attribution<T> a = attr::integrated_gradients(f, x, black, ig);
      double d = 0, r = 0;
      for (std::size_t i = 0; i < a.values.size(); ++i) {
        d += (double(a.values.data()[i]) - double(reference.data()[i])) * (double(a.values.data()[i]) - double(reference.data()[i]));
        r += double(reference.data()[i]) * double(reference.data()[i]);
      }
      CAPTURE(rule["rule"]);
      CAPTURE(ig.steps);
      CHECK(rule["relative_delta"][s].get<double>() == doctest::Approx(a.relative_delta).epsilon(epsilon).scale(1e-3));
      CHECK(rule["relative_l2"][s].get<double>() == doctest::Approx(std::sqrt(d / r)).epsilon(epsilon).scale(1e-3));
      ++compared;
    }
  CHECK(compared == 5 * request.convergence_steps.size());
  // the grid's black baseline is the report's own: the same numbers as Gauss-Legendre 50's
  const nlohmann::json& gl50 = image["methods"][3];
  const nlohmann::json& grid_black = image["baselines"][0];
  REQUIRE(grid_black["name"] == "black");
  CHECK(gl50["id"] == "ig_gausslegendre50");
  for (const char* key : {"sum", "relative_delta", "f_baseline", "evaluations"}) CHECK(grid_black[key] == gl50[key]);
}

}  // namespace

TEST_CASE("report: the convergence figure is each rule's IG, and the grid's black is Gauss-Legendre 50's") {
  // float64: the figure's shared nodes and sums at the line's frontier agree with IG run rule by
  // rule to far below anything the plot could show
  check_convergence<double>("convergence64", 1e-9);
  // float32: Gauss-Legendre's nodes run as points formed in double, the grid's on the line, the
  // sums in double; IG's own rounds every node to float and sums the line's gradients in float,
  // so the smallest gaps (1e-4 of F's change) agree only to some 10%
  check_convergence<float>("convergence32", 0.1);
}

TEST_CASE("report page: self-contained, every picture a PNG data URI, the plots inline SVG") {
  const std::string out = temp("self");
  attr::write_report(toy_request(out));
  const std::string page = slurp(out + "/index.html");
  CHECK(page.find("<script") == std::string::npos);
  CHECK(page.find("url(") == std::string::npos);
  CHECK(page.find("<link") == std::string::npos);
  // the only address is SVG's namespace, which is a name, never fetched
  std::string rest = page;
  for (std::size_t at = rest.find("xmlns=\"http://www.w3.org/2000/svg\""); at != std::string::npos;
       at = rest.find("xmlns=\"http://www.w3.org/2000/svg\""))
    rest.erase(at, 34);
  CHECK(rest.find("http:") == std::string::npos);
  CHECK(rest.find("https:") == std::string::npos);
  CHECK(rest.find("file:") == std::string::npos);
  const std::regex src("src=\"([^\"]{0,40})");
  std::size_t images = 0;
  for (auto it = std::sregex_iterator(page.begin(), page.end(), src); it != std::sregex_iterator(); ++it, ++images)
    CHECK((*it)[1].str().rfind("data:image/png;base64,", 0) == 0);
  // per image: the input twice, 8 methods, 7 baselines and 7 attributions, the masked image
  CHECK(images == 2 * (2 + 8 + 7 + 7 + 1));
  std::size_t svgs = 0;
  for (std::size_t at = page.find("<svg "); at != std::string::npos; at = page.find("<svg ", at + 1)) ++svgs;
  CHECK(svgs == 2 * 2);  // the path plot and the convergence plot
  CHECK(page.find("nan") == std::string::npos);
  CHECK(page.find("inf\"") == std::string::npos);
}

TEST_CASE("report: the same seed gives the same numbers and pictures; progress before each method") {
  const std::string a = temp("seed_a"), b = temp("seed_b");
  attr::ReportRequest first = toy_request(a);
  std::vector<std::pair<std::size_t, std::string>> calls;
  first.on_progress = [&](std::size_t image, std::size_t images, const std::string& method) {
    CHECK(images == 2);
    calls.emplace_back(image, method);
  };
  attr::write_report(first);
  attr::ReportRequest second = toy_request(b);
  attr::write_report(second);
  const nlohmann::json ja = nlohmann::json::parse(slurp(a + "/report.json"));
  const nlohmann::json jb = nlohmann::json::parse(slurp(b + "/report.json"));
  CHECK(without_seconds(ja).dump() == without_seconds(jb).dump());
  CHECK(slurp(a + "/one_overlay.png") == slurp(b + "/one_overlay.png"));

  // progress: every method of the gallery, in each image, image 0 first
  REQUIRE(calls.size() % 2 == 0);
  const std::size_t per_image = calls.size() / 2;
  for (std::size_t k = 0; k < calls.size(); ++k) CHECK(calls[k].first == k / per_image);
  for (const char* method : {"exact", "ig_gausslegendre50", "gradient", "inputxgradient", "smoothgrad", "eg", "deeplift",
                             "convergence", "baseline blur", "baseline data"})
    for (std::size_t image = 0; image < 2; ++image)
      CHECK(std::count(calls.begin(), calls.end(), std::make_pair(image, std::string(method))) == 1);

  // another seed draws other SmoothGrad noise
  attr::ReportRequest third = toy_request(b);
  third.seed = 8;
  attr::write_report(third);
  const nlohmann::json jc = nlohmann::json::parse(slurp(b + "/report.json"));
  CHECK(jc["images"][0]["methods"][2]["sum"] != ja["images"][0]["methods"][2]["sum"]);
}

TEST_CASE("report: labels from a file, or none; bad labels and data sets write nothing") {
  const std::string out = temp("labels");
  attr::ReportRequest r = toy_request(out);
  {
    std::ofstream labels(temp("labels.txt"));
    labels << "c\nsomething else\n";
  }
  r.labels = temp("labels.txt");
  r.data = "none";
  const nlohmann::json j = attr::write_report(r);
  CHECK(j["images"][0]["true_label"] == "c");
  CHECK(j["images"][1]["true_label"] == "something else");
  CHECK(j["images"][1]["correct"] == false);
  CHECK(j["images"][0]["methods"][6]["available"] == false);  // expected gradients: no data set
  CHECK(j["settings"]["data_note"].get<std::string>().find("--data none") != std::string::npos);
  CHECK(slurp(out + "/index.html").find("not available") != std::string::npos);

  const std::string nothing = temp("nothing");
  attr::ReportRequest bad = toy_request(nothing);
  {
    std::ofstream labels(temp("short.txt"));
    labels << "a\n";
  }
  bad.labels = temp("short.txt");
  CHECK_THROWS_WITH_AS(attr::write_report(bad),
                       (temp("short.txt") + ": has 1 lines, expected one label per image (2)").c_str(), Error);
  CHECK_FALSE(std::filesystem::exists(nothing));

  attr::ReportRequest wrong_data = toy_request(nothing);
  Tensor<double> wrong(Shape{3, 1, 4, 5});
  std::fill(wrong.begin(), wrong.end(), 0.5);
  attr::write_npy(temp("wrong.npy"), wrong);
  wrong_data.data = temp("wrong.npy");
  CHECK_THROWS_WITH_AS(attr::write_report(wrong_data),
                       (temp("wrong.npy") + ": has shape [3, 1, 4, 5], expected [D] + [1, 4, 4], D > 0").c_str(), Error);
  CHECK_FALSE(std::filesystem::exists(nothing));
}

TEST_CASE("report --evaluate: the evaluation's files, its section on the page, checked before any work") {
  // a narrow LeNet on Fashion-MNIST's [1, 28, 28] images, so exact IG and the evaluation are quick
  const std::string model = temp("lenet.safetensors");
  nn::write_model(model, nn::lenet28(3, 2));
  Tensor<double> image(Shape{1, 28, 28});
  for (std::size_t i = 0; i < image.size(); ++i) image.data()[i] = double((i * 37) % 29) / 29;
  attr::write_npy(temp("fm.npy"), image);
  const std::string out = temp("evaluated");
  std::filesystem::remove_all(out);
  attr::ReportRequest r;
  r.model = model;
  r.images = {temp("fm.npy")};
  r.out = out;
  r.data = "none";
  r.convergence_steps = {4, 16};
  r.evaluate = 2;
  std::size_t evaluation_calls = 0;
  r.on_evaluation_progress = [&](std::size_t done, std::size_t, const std::string&) { CHECK(done == ++evaluation_calls); };
  const nlohmann::json j = attr::write_report(r);
  CHECK(evaluation_calls > 0);
  REQUIRE(j.contains("evaluation"));
  CHECK(j["evaluation"]["images"] == 2);
  for (const char* file : {"evaluation.json", "deletion.csv", "randomization.csv", "deletion_mean.svg", "deletion_blur.svg"})
    CHECK(std::filesystem::file_size(out + "/evaluation/" + file) > 0);
  CHECK(nlohmann::json::parse(slurp(out + "/evaluation/evaluation.json")) == j["evaluation"]);
  const std::string page = slurp(out + "/index.html");
  CHECK(page.find("<h2>Evaluation</h2>") != std::string::npos);
  CHECK(page.find("<h2>Evaluation</h2>") > page.rfind("<img"));  // after the images

  // a model that does not take Fashion-MNIST's images: refused before any image is explained
  const std::string nothing = temp("not_evaluated");
  attr::ReportRequest toy_evaluated = toy_request(nothing);
  toy_evaluated.evaluate = 2;
  std::size_t explained = 0;
  toy_evaluated.on_progress = [&](std::size_t, std::size_t, const std::string&) { ++explained; };
  CHECK_THROWS_WITH_AS(attr::write_report(toy_evaluated),
                       "report: --evaluate runs on Fashion-MNIST's [1, 28, 28] images; the model's input is [1, 4, 4]", Error);
  CHECK(explained == 0);
  CHECK_FALSE(std::filesystem::exists(nothing));
  // more images than the test set holds
  r.evaluate = 10001;
  r.out = nothing;
  CHECK_THROWS_AS(attr::write_report(r), Error);
  CHECK_FALSE(std::filesystem::exists(nothing));
}

TEST_CASE("html: base64") {
  CHECK(attr::html::base64("") == "");
  CHECK(attr::html::base64("f") == "Zg==");
  CHECK(attr::html::base64("fo") == "Zm8=");
  CHECK(attr::html::base64("foo") == "Zm9v");
  CHECK(attr::html::base64("foobar") == "Zm9vYmFy");
  CHECK(attr::html::base64(std::string("\xff\x00\x80", 3)) == "/wCA");
}
