// Training: the loss against its closed form, each optimizer's update against its formula,
// a small network that learns, and the IDX reader on crafted files.
#include "autodiff/gradcheck.hpp"
#include "nn/data.hpp"
#include "nn/graph.hpp"
#include "nn/zoo.hpp"
#include "nn/train.hpp"
#include "support.hpp"

#include <doctest/doctest.h>
#include <omp.h>
#include <zlib.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

using namespace ax;
using namespace ax::nn;

TEST_CASE("softmax cross-entropy: value, gradient (softmax - one_hot) / B, and gradcheck") {
  const Tensor<double> logits = from_values<double>({2, 3}, {1.0, 2.0, 0.5, -1.0, 0.0, 3.0});
  const std::uint8_t labels[] = {1, 2};
  Tensor<double> targets;
  one_hot(labels, 2, 3, targets);
  Tape<double> tape;
  const Var<double> z = tape.input(logits);
  const Var<double> loss = softmax_cross_entropy(z, tape.input(targets, false));
  double expected = 0;
  for (std::size_t i = 0; i < 2; ++i) {
    double total = 0;
    for (std::size_t k = 0; k < 3; ++k) total += std::exp(logits(i, k));
    expected += -(logits(i, labels[i]) - std::log(total)) / 2;
  }
  CHECK(tape.value(loss)() == doctest::Approx(expected).epsilon(1e-15));
  tape.backward(loss);
  for (std::size_t i = 0; i < 2; ++i) {
    double total = 0;
    for (std::size_t k = 0; k < 3; ++k) total += std::exp(logits(i, k));
    for (std::size_t k = 0; k < 3; ++k)
      CHECK(tape.grad(z)(i, k) == doctest::Approx((std::exp(logits(i, k)) / total - targets(i, k)) / 2).epsilon(1e-14));
  }
  const GradcheckReport r = gradcheck(
      [&](Tape<double>& t, const std::vector<Var<double>>& v) { return softmax_cross_entropy(v[0], t.constant(targets)); },
      {logits});
  CHECK(r.backward_error < 1e-6);
  CHECK(r.dot_error < 1e-11);
  CHECK_THROWS_WITH_AS(one_hot(labels, 2, 2, targets), doctest::Contains("label 2 of sample 1"), Error);
}

TEST_CASE("SGD with momentum and Adam follow PyTorch's update rules") {
  // f(p) = sum(p * c): the gradient is c, a constant, so the updates have closed forms.
  const Tensor<double> c = from_values<double>({1, 2}, {0.5, -2.0});
  auto setup = [&](Tape<double>& tape, Var<double>& p) {
    p = tape.parameter(from_values<double>({1, 2}, {1.0, 1.0}), true, "p");
    return sum(p * tape.constant(c));
  };
  {
    Tape<double> tape;
    Var<double> p;
    const Var<double> f = setup(tape, p);
    Sgd<double> sgd(tape, {p}, {0.1, 0.9, 0.0});
    for (int step = 0; step < 2; ++step) {
      tape.forward();
      tape.zero_grad();
      tape.backward(f);
      sgd.step();
    }
    // v1 = g, v2 = 0.9 g + g: p = 1 - 0.1 (g + 1.9 g)
    CHECK(tape.value(p)(0, 0) == doctest::Approx(1.0 - 0.1 * 2.9 * 0.5).epsilon(1e-15));
    CHECK(tape.value(p)(0, 1) == doctest::Approx(1.0 + 0.1 * 2.9 * 2.0).epsilon(1e-15));
  }
  {
    Tape<double> tape;
    Var<double> p;
    const Var<double> f = setup(tape, p);
    Adam<double> adam(tape, {p}, {0.01, 0.9, 0.999, 1e-8, 0.0});
    for (int step = 0; step < 3; ++step) {
      tape.forward();
      tape.zero_grad();
      tape.backward(f);
      adam.step();
    }
    // with a constant gradient the bias-corrected m / sqrt(v) is g / |g| at every step
    CHECK(tape.value(p)(0, 0) == doctest::Approx(1.0 - 3 * 0.01 * 0.5 / (0.5 + 1e-8)).epsilon(1e-12));
    CHECK(tape.value(p)(0, 1) == doctest::Approx(1.0 + 3 * 0.01 * 2.0 / (2.0 + 1e-8)).epsilon(1e-12));
  }
  Tape<double> tape;
  const Var<double> frozen = tape.parameter(zeros<double>({2}));
  CHECK_THROWS_WITH_AS(Adam<double>(tape, {frozen}), doctest::Contains("does not require grad"), Error);
}

TEST_CASE("a small network learns a separable problem with either optimizer") {
  // two Gaussian blobs in 2-D, labels 0 and 1; a 2-8-2 MLP should fit them perfectly
  std::mt19937_64 rng(21);
  std::normal_distribution<float> noise(0.0f, 0.3f);
  const std::size_t n = 64;
  Tensor<float> x(Shape{n, 2});
  std::vector<std::uint8_t> labels(n);
  for (std::size_t i = 0; i < n; ++i) {
    labels[i] = static_cast<std::uint8_t>(i % 2);
    const float centre = labels[i] ? 1.0f : -1.0f;
    x(i, 0) = centre + noise(rng);
    x(i, 1) = -centre + noise(rng);
  }
  Tensor<float> targets;
  one_hot(labels.data(), n, 2, targets);
  for (bool use_adam : {false, true}) {
    CAPTURE(use_adam);
    Tape<float> tape;
    const Var<float> in = tape.input(x, false);
    const Var<float> w1 = tape.parameter(test::uniform<float>({8, 2}, -0.5, 0.5, rng), true);
    const Var<float> w2 = tape.parameter(test::uniform<float>({2, 8}, -0.5, 0.5, rng), true);
    const Var<float> logits = linear(tanh(linear(in, w1)), w2);
    const Var<float> loss = softmax_cross_entropy(logits, tape.input(targets, false));
    const float initial = tape.value(loss)();
    Sgd<float> sgd(tape, {w1, w2}, {0.1, 0.9});
    Adam<float> adam(tape, {w1, w2}, {0.05});
    for (int step = 0; step < 100; ++step) {
      tape.forward();
      tape.zero_grad();
      tape.backward(loss);
      use_adam ? adam.step() : sgd.step();
    }
    tape.forward();
    CHECK(tape.value(loss)() < 0.1f * initial);
    std::size_t correct = 0;
    for (std::size_t i = 0; i < n; ++i) correct += (tape.value(logits)(i, 1) > tape.value(logits)(i, 0)) == (labels[i] == 1);
    CHECK(correct == n);
  }
}

TEST_CASE("Adam steps on the shipped architecture give the same bits on one thread or two") {
  // nn::fashion_cnn at batch 64: its convolutions, pools and GEMMs are large enough to share
  // among threads; a seeded model is trained a few steps on random images and labels
  const std::size_t batch = 64;
  std::mt19937_64 rng(8);
  const Tensor<float> images = test::uniform<float>({batch, 1, 28, 28}, 0, 1, rng);
  std::vector<std::uint8_t> labels(batch);
  for (std::size_t i = 0; i < batch; ++i) labels[i] = static_cast<std::uint8_t>(rng() % 10);
  Tensor<float> targets_value;
  one_hot(labels.data(), batch, 10, targets_value);

  const auto train = [&](int threads) {
    const int before = omp_get_max_threads();
    omp_set_num_threads(threads);
    Tape<float> tape;
    RecordOptions options;
    options.batch = batch;
    options.input_requires_grad = false;
    options.parameters_require_grad = true;
    Network<float> net(fashion_cnn(1), tape, options);
    tape.set_value(net.input(), images);
    const Var<float> loss = softmax_cross_entropy(net.output(), tape.input(targets_value, false));
    Adam<float> adam(tape, net.parameter_vars(), {0.001});
    for (int step = 0; step < 3; ++step) {
      tape.forward();
      tape.zero_grad();
      tape.backward(loss);
      adam.step();
    }
    omp_set_num_threads(before);
    std::vector<Tensor<float>> parameters;
    for (const Var<float>& p : net.parameter_vars()) parameters.push_back(tape.value(p));
    return parameters;
  };
  const std::vector<Tensor<float>> one = train(1), two = train(2);
  REQUIRE(one.size() == two.size());
  for (std::size_t i = 0; i < one.size(); ++i) CHECK(test::same_bits(one[i], two[i]));
  Tape<float> fresh;
  const Network<float> untrained(fashion_cnn(1), fresh);
  CHECK_FALSE(test::same_bits(one[0], fresh.value(untrained.parameter_vars()[0])));  // the steps moved it
}

namespace {

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("axiomatic_test_" + name)).string();
}

void write_file(const std::string& path, const std::vector<std::uint8_t>& bytes, bool gzip) {
  if (gzip) {
    gzFile f = gzopen(path.c_str(), "wb");
    gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
    gzclose(f);
  } else {
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  }
}

// An IDX header: magic 0 0 8 rank, then each dimension big-endian.
std::vector<std::uint8_t> idx(std::vector<std::uint32_t> dims, std::vector<std::uint8_t> data) {
  std::vector<std::uint8_t> b{0, 0, 8, static_cast<std::uint8_t>(dims.size())};
  for (std::uint32_t d : dims)
    for (int shift = 24; shift >= 0; shift -= 8) b.push_back(static_cast<std::uint8_t>(d >> shift));
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

}  // namespace

TEST_CASE("IDX files: images and labels, plain or gzip, faults are named") {
  const std::string images = temp_path("images.gz"), labels = temp_path("labels");
  write_file(images, idx({2, 2, 3}, {0, 255, 51, 102, 0, 0, 1, 2, 3, 4, 5, 255}), true);
  write_file(labels, idx({2}, {7, 3}), false);
  const ImageSet set = read_image_set(images, labels);
  CHECK(set.images.shape() == Shape{2, 1, 2, 3});
  CHECK(set.images(0, 0, 0, 1) == 1.0f);
  CHECK(set.images(0, 0, 0, 2) == doctest::Approx(0.2f));
  CHECK(set.labels == std::vector<std::uint8_t>{7, 3});

  const std::string bad = temp_path("bad");
  write_file(bad, {1, 2, 3}, false);
  CHECK_THROWS_WITH_AS(read_idx(bad), (bad + ": too short for an IDX header").c_str(), Error);
  write_file(bad, {1, 0, 8, 1, 0, 0, 0, 0}, false);
  CHECK_THROWS_WITH_AS(read_idx(bad), doctest::Contains("bad magic number"), Error);
  write_file(bad, idx({2}, {1, 2, 3}), false);
  CHECK_THROWS_WITH_AS(read_idx(bad), doctest::Contains("holds 3 data bytes, its dimensions say 2"), Error);
  write_file(bad, idx({100000, 100000}, {1}), true);
  CHECK_THROWS_WITH_AS(read_idx(bad), doctest::Contains("promise more data"), Error);
  write_file(bad, idx({3}, {1, 2, 3}), false);
  CHECK_THROWS_WITH_AS(read_image_set(images, bad), doctest::Contains("2 images but"), Error);
  CHECK_THROWS_WITH_AS(read_idx(temp_path("missing")), doctest::Contains("cannot open"), Error);
  for (const std::string& p : {images, labels, bad}) std::remove(p.c_str());
}

TEST_CASE("Fashion-MNIST from Debian's dataset-fashion-mnist") {
  const ImageSet test = fashion_mnist_test();
  CHECK(test.size() == 10000);
  CHECK(test.images.shape() == Shape{10000, 1, 28, 28});
  std::array<int, 10> per_class{};
  for (std::uint8_t l : test.labels) ++per_class.at(l);
  for (int count : per_class) CHECK(count == 1000);  // the test set is balanced
  CHECK(*std::max_element(test.images.begin(), test.images.end()) == 1.0f);
  CHECK(fashion_mnist_labels().size() == 10);
}
