// The axiomatic command: outputs, exit status (0 success, 2 bad usage, 1 any other failure) and
// one line on stderr that says what was wrong.
#include "attribution/io.hpp"
#include "support.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <unistd.h>
#include <fstream>
#include <sstream>
#include <sys/wait.h>

using namespace ax;

namespace {

struct Run {
  int status;
  std::string out, err;
};

std::string temp(const std::string& name) {
  // per process: ctest -j2 runs two of these tests at once
  return (std::filesystem::temp_directory_path() / ("axiomatic_cli_" + std::to_string(::getpid()) + "_" + name)).string();
}

using test::slurp;

Run run(const std::string& args) {
  const std::string out = temp("stdout"), err = temp("stderr");
  const int raw = std::system((std::string(AXIOMATIC_CLI) + " " + args + " >" + out + " 2>" + err + " </dev/null").c_str());
  return {WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, slurp(out), slurp(err)};
}

std::size_t lines(const std::string& s) {
  std::size_t n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

const std::string toy = std::string(AXIOMATIC_SOURCE) + "/examples/toys/relu_sensitivity.json";

}  // namespace

TEST_CASE("axiomatic explain: JSON report, attributions file, every method") {
  const std::string input = temp("x.npy"), out = temp("attr.npy");
  attr::write_npy(input, from_values<double>({1}, {2.0}));
  const Run r = run("explain --model " + toy + " --input " + input + " --rule riemann_left --steps 8 --precision f64 --json --out " + out);
  REQUIRE(r.status == 0);
  const nlohmann::json j = nlohmann::json::parse(r.out);
  for (const char* key : {"method", "rule", "steps", "target", "f_input", "f_baseline", "sum", "delta", "relative_delta", "seconds"})
    CHECK(j.contains(key));
  CHECK(j["sum"] == 1.0);
  CHECK(j["steps"] == 8);
  CHECK(attr::read_npy<double>(out)(0) == 1.0);
  for (const char* method : {"gradient", "inputxgradient", "ig", "smoothgrad", "smoothgrad_sq", "vargrad"}) {
    CAPTURE(method);
    const Run m = run("explain --model " + toy + " --input " + input + " --method " + method + " --json");
    CHECK(m.status == 0);
    CHECK(nlohmann::json::parse(m.out)["method"] == method);
  }
  const Run exact = run("explain --model " + toy + " --input " + input + " --rule exact --json");
  CHECK(exact.status == 0);
  CHECK(nlohmann::json::parse(exact.out)["pieces"] == 2);
}

TEST_CASE("axiomatic info and check") {
  const Run info = run("info --model " + toy);
  CHECK(info.status == 0);
  CHECK(info.out.find("relu") != std::string::npos);
  CHECK(info.out.find("parameters 4") != std::string::npos);
  // labels: their count and the first five, on one line
  const Run shipped = run("info --model " + std::string(AXIOMATIC_SOURCE) + "/examples/models/fashion_mnist.safetensors");
  CHECK(shipped.status == 0);
  CHECK(shipped.out.find("\nlabels 10: 0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress, 4 Coat, ... (5 more)\n") != std::string::npos);
  CHECK(shipped.out.find("Sandal") == std::string::npos);
  const std::string input = temp("x.npy");
  attr::write_npy(input, from_values<double>({1}, {2.0}));
  const Run check = run("check --model " + toy + " --input " + input + " --json");
  CHECK(check.status == 0);
  CHECK(nlohmann::json::parse(check.out)["passed"] == true);
  // a quadrature rule that puts a node on the kink breaks completeness: the check fails, status 1
  const Run failing = run("check --model " + toy + " --input " + input + " --rule riemann_right --steps 4");
  CHECK(failing.status == 1);
  CHECK(failing.out.find("FAIL") != std::string::npos);
}

TEST_CASE("bad usage exits 2, other failures exit 1, each with one line on stderr") {
  const std::string input = temp("x.npy");
  attr::write_npy(input, from_values<double>({1}, {2.0}));
  struct Case {
    std::string args;
    int status;
    std::string says;
  };
  const std::string bad_model = temp("bad.safetensors");
  std::ofstream(bad_model) << "not a model";
  const std::string nan_input = temp("nan.npy");
  attr::write_npy(nan_input, from_values<double>({1}, {std::nan("")}));
  const std::string wrong_shape = temp("wrong.npy");
  attr::write_npy(wrong_shape, from_values<double>({2}, {1.0, 2.0}));
  for (const Case& c : {
           Case{"", 2, "subcommand"},
           Case{"explain --input " + input, 2, "--model"},
           Case{"explain --model " + toy + " --input " + input + " --rule simpson", 2, "--rule"},
           Case{"explain --model " + toy + " --input " + input + " --steps 0", 2, "--steps"},
           Case{"explain --model " + toy + " --input " + input + " --memory lots", 2, "--memory"},
           Case{"explain --model " + toy + " --input " + input + " --frobnicate", 2, "frobnicate"},
           Case{"explain --model " + bad_model + " --input " + input, 1, bad_model},
           Case{"explain --model " + toy + " --input " + nan_input, 1, "NaN at index 0"},
           Case{"explain --model " + toy + " --input " + wrong_shape, 1, "has shape [2], the model expects [1]"},
           Case{"explain --model " + toy + " --input " + input + " --target 5", 1, "target 5 is out of range"},
           Case{"explain --model " + toy + " --input " + input + " --baseline white", 1, ""},
           Case{"explain --model " + toy + " --input " + input + " --baseline sideways", 2, "unknown baseline 'sideways'"},
           Case{"explain --model " + toy + " --input " + input + " --method eg", 2, "data:PATH"},
       }) {
    CAPTURE(c.args);
    const Run r = run(c.args);
    if (c.says.empty()) {
      CHECK(r.status == 0);  // white is inside the toy's range [0, 2]
      continue;
    }
    CHECK(r.status == c.status);
    CHECK(lines(r.err) == 1);
    CHECK(r.err.find(c.says) != std::string::npos);
  }
}

TEST_CASE("axiomatic report on the shipped model: exact IG, pictures and the report files") {
  const std::string out = temp("report");
  std::filesystem::remove_all(out);
  const std::string model = std::string(AXIOMATIC_SOURCE) + "/examples/models/fashion_mnist.safetensors";
  const std::string image = std::string(AXIOMATIC_SOURCE) + "/examples/images/test0008_sandal.png";
  const Run r = run("report --model " + model + " --images " + image + " --out " + out);
  REQUIRE(r.status == 0);
  CHECK(r.out.find("wrote " + out + "/index.html") != std::string::npos);  // the page's path, to open
  for (const char* file : {"index.html", "report.md", "report.json", "test0008_sandal_overlay.png",
                           "test0008_sandal_heatmap.png", "test0008_sandal_path.png"})
    CHECK(std::filesystem::exists(out + "/" + file));
  const nlohmann::json j = nlohmann::json::parse(slurp(out + "/report.json"))["images"][0];
  CHECK(j["label"] == "Sandal");  // the shipped model gets this test image right
  CHECK(j["rule"] == "exact");
  CHECK(j["pieces"].get<std::size_t>() > 100);
  CHECK(j["relative_delta"].get<double>() < 1e-5);  // float32, exact pieces
  CHECK(j["gausslegendre50_relative_delta"].get<double>() > j["relative_delta"].get<double>());
  CHECK(attr::read_png(out + "/test0008_sandal_overlay.png").shape() == Shape{3, 224, 224});
  CHECK(j["true_label"] == "Sandal");  // from the file name
  CHECK(j["correct"] == true);
}

TEST_CASE("axiomatic report: its own options checked before any work, one line, exit 2, nothing written") {
  const std::string out = temp("report_refused");
  std::filesystem::remove_all(out);
  const std::string model = std::string(AXIOMATIC_SOURCE) + "/examples/toys/tiny_cnn.json";
  const std::string image = temp("toy.npy"), text = temp("not_npy.txt");
  attr::write_npy(image, full<double>(Shape{1, 4, 4}, 0.5));
  std::ofstream(text) << "x\n";
  const std::string base = "report --model " + model + " --images " + image + " --out " + out;
  struct Case {
    std::string args, says;
  };
  for (const Case& c : std::vector<Case>{
           {" --seed -1", "--seed: '-1' is not a whole number"},
           {" --seed 18446744073709551616", "--seed: '18446744073709551616' is not a whole number"},
           {" --data " + temp("missing.npy"), "--data: '" + temp("missing.npy") + "' is not a file"},
           {" --data " + text, "--data: '" + text + "' is not a .npy file"},
           {" --labels " + temp("missing.txt"), "--labels: File does not exist"},
           {" --evaluate 0", "--evaluate"},
           {" --evaluate 10001", "--evaluate"},
           {" --evaluate x", "--evaluate: 'x' is not a whole number"},
           {" --baseline uniform", "is random; this command takes one deterministic baseline"}}) {
    CAPTURE(c.args);
    const Run r = run(base + c.args);
    CHECK(r.status == 2);
    CHECK(lines(r.err) == 1);
    CHECK(r.err.find(c.says) != std::string::npos);
    CHECK_FALSE(std::filesystem::exists(out));
  }
}

TEST_CASE("axiomatic evaluate: bad usage refused before any work, a failure writes nothing, a run writes every file") {
  const std::string out = temp("evaluation");
  std::filesystem::remove_all(out);
  const std::string model = std::string(AXIOMATIC_SOURCE) + "/examples/models/fashion_mnist.safetensors";
  const std::string images = std::string(AXIOMATIC_SOURCE) + "/examples/images";
  const std::string base = "evaluate --model " + model + " --out " + out;
  const std::string small = temp("small.npy");
  attr::write_npy(small, from_values<double>({1}, {0.5}));
  struct Case {
    std::string args;
    int status;
    std::string says;
  };
  for (const Case& c : {
           Case{base, 2, "either --images or --fashion-mnist-test"},
           Case{base + " --images " + images + " --fashion-mnist-test 3", 2, "either --images or --fashion-mnist-test"},
           Case{base + " --fashion-mnist-test 0", 2, "--fashion-mnist-test"},
           Case{base + " --fashion-mnist-test 10001", 2, "--fashion-mnist-test"},
           Case{base + " --images " + images + " --methods gradient,sideways", 2, "--methods"},
           Case{base + " --images " + images + " --methods ig,ig", 2, "'ig' is named twice"},
           Case{base + " --images " + images + " --methods eg", 2, "--eg-data"},
           Case{base + " --images " + images + " --deletion-steps 0", 2, "--deletion-steps"},
           Case{base + " --images " + images + " --blur-sigma -1", 2, "--blur-sigma"},
           Case{base + " --images " + images + " --seed -3", 2, "--seed"},
           Case{base + " --images " + images + " --baseline uniform", 2, "random"},
           Case{base + " --images " + small, 1, "has shape [1], the model expects [1, 28, 28]"},
       }) {
    CAPTURE(c.args);
    const Run r = run(c.args);
    CHECK(r.status == c.status);
    CHECK(lines(r.err) == 1);
    CHECK(r.err.find(c.says) != std::string::npos);
    CHECK(!std::filesystem::exists(out));
  }

  const Run r = run(base + " --images " + images + "/test0000_ankle_boot.png " + images +
                    "/test0008_sandal.png --methods gradient,deeplift --deletion-steps 4 --randomization-images 1");
  REQUIRE(r.status == 0);
  for (const char* file : {"evaluation.json", "deletion.csv", "randomization.csv", "deletion_mean.svg", "deletion_blur.svg",
                           "randomization_abs.svg", "randomization_signed.svg"})
    CHECK(std::filesystem::exists(out + "/" + file));
  const nlohmann::json j = nlohmann::json::parse(slurp(out + "/evaluation.json"));
  CHECK(j["images"] == 2);
  CHECK(j["methods"] == nlohmann::json({"gradient", "deeplift"}));
  CHECK(lines(slurp(out + "/randomization.csv")) == 1 + 2 * 5);  // methods x depths 0..4
  CHECK(r.out.find("evaluated 2 images") != std::string::npos);
  // stderr is not a terminal here: plain progress lines, the last one "14 of 14"
  CHECK(r.err.find("evaluate: 14 of 14 (randomization: depth 4, image 1, deeplift)") != std::string::npos);
}
