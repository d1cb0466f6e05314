// Where the time goes, node by node: forward plus input gradient on LeNet-28 at batch 50 and
// ResNet-18 (224 x 224) at batch 10, float, 2 threads. Each node's forward and backward time is
// the median over the runs (Tape::set_profiling). Prints figures; never fails.
//
// With --only maxpool: max-pool's forward (the kernel, and the scalar kernel as a fixed yardstick)
// and backward alone on SqueezeNet 1.1's three 3 x 3 stride-2 layers at 64 x 64 (batch 52, its IG-50 chunk)
// and ResNet-18's (batch 10), float, ns an output, median of the runs, on OMP_NUM_THREADS.
//
// With --only exact: exact IG (Rule::exact) on LeNet-28 from a zero baseline, float, timed as a
// whole (for a sampling profiler to look inside). With --model FILE: that model file instead (as
// tools/export_torch.py writes it), at --batch N (default 10).
//
//   bench_profile [--runs N] [--top K] [--only lenet|resnet|exact|maxpool] [--model FILE [--batch N]]
//   (defaults: 31 runs, the 25 costliest nodes)
#include "../attribution/methods.hpp"
#include "../autodiff/kernels/pool.hpp"
#include "../nn/graph.hpp"
#include "../nn/model_file.hpp"
#include "../nn/zoo.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

namespace {

using namespace ax;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// A node as the profile names it: its graph name and op, e.g. "layer1.0.conv1 (conv2d)".
std::vector<std::string> node_names(const nn::ModelSpec& spec, const nn::Network<float>& net, std::size_t size) {
  std::vector<std::string> names(size);
  for (std::size_t id = 0; id < size; ++id) {
    const Node<float>& n = net.tape().node(int(id));
    names[id] = n.kind == NodeKind::op ? std::string("(") + n.op->name + ")" : n.label;
  }
  for (const nn::NodeSpec& node : spec.graph.nodes) {
    const int id = net.node(node.name).id;
    names[std::size_t(id)] = node.name + " " + names[std::size_t(id)];
  }
  return names;
}

void profile(const char* title, const nn::ModelSpec& spec, std::size_t batch, int runs, int top) {
  Tape<float> tape;
  nn::RecordOptions options;
  options.batch = batch;
  nn::Network<float> net(spec, tape, options);

  Shape shape{batch};
  for (std::size_t d : spec.graph.input.shape) shape.push_back(d);
  Tensor<float> x = zeros<float>(shape);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> uniform(0.f, 1.f);
  for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = uniform(rng);
  Tensor<float> seed = zeros<float>(tape.value(net.output()).shape());
  for (std::size_t i = 0; i < batch; ++i) seed(i, 3) = 1.f;

  const std::size_t size = tape.size();
  std::vector<std::vector<double>> forward(size), backward(size);
  std::vector<double> totals;
  for (int run = 0; run < runs + 2; ++run) {  // the first two warm up
    tape.set_profiling(true);
    tape.set_value(net.input(), x);
    tape.forward();
    tape.zero_grad();
    tape.backward(net.output(), seed);
    if (run < 2) continue;
    const TapeStats& stats = tape.stats();
    double total = 0;
    for (std::size_t id = 0; id < size; ++id) {
      forward[id].push_back(stats.forward_seconds[id] * 1e3);
      backward[id].push_back(stats.backward_seconds[id] * 1e3);
      total += stats.forward_seconds[id] + stats.backward_seconds[id];
    }
    totals.push_back(total * 1e3);
  }
  tape.set_profiling(false);

  const std::vector<std::string> names = node_names(spec, net, size);
  struct Row { std::size_t id; double forward, backward; };
  std::vector<Row> rows;
  double sum_forward = 0, sum_backward = 0;
  for (std::size_t id = 0; id < size; ++id) {
    const Row r{id, median(forward[id]), median(backward[id])};
    sum_forward += r.forward, sum_backward += r.backward;
    if (r.forward + r.backward > 0) rows.push_back(r);
  }
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.forward + a.backward > b.forward + b.backward; });

  std::printf("%s, batch %zu: nodes' medians sum to %.3f ms forward + %.3f ms backward; whole passes %.3f ms (median of %d)\n",
              title, batch, sum_forward, sum_backward, median(totals), runs);
  std::printf("  %-34s %10s %10s %7s\n", "node", "fwd ms", "bwd ms", "share");
  for (std::size_t i = 0; i < rows.size() && int(i) < top; ++i)
    std::printf("  %-34s %10.3f %10.3f %6.1f%%\n", names[rows[i].id].c_str(), rows[i].forward, rows[i].backward,
                100 * (rows[i].forward + rows[i].backward) / (sum_forward + sum_backward));
  // the same times summed by op
  std::vector<std::pair<std::string, std::pair<double, double>>> by_op;
  for (const Row& r : rows) {
    const std::string op = net.tape().node(int(r.id)).op->name;
    auto it = std::find_if(by_op.begin(), by_op.end(), [&](const auto& e) { return e.first == op; });
    if (it == by_op.end()) by_op.push_back({op, {r.forward, r.backward}});
    else it->second.first += r.forward, it->second.second += r.backward;
  }
  std::printf("  by op:\n");
  for (const auto& [op, t] : by_op)
    std::printf("  %-34s %10.3f %10.3f %6.1f%%\n", op.c_str(), t.first, t.second,
                100 * (t.first + t.second) / (sum_forward + sum_backward));
  std::printf("\n");
}

// Max-pool 3 x 3 stride 2 alone: one line per layer.
void maxpool_alone(int runs) {
  struct Layer {
    const char* name;
    std::size_t batch, channels, side, pad;
  };
  const Layer layers[] = {{"SqueezeNet 64x31x31 -> 15x15", 52, 64, 31, 0},
                          {"SqueezeNet 128x15x15 -> 7x7", 52, 128, 15, 0},
                          {"SqueezeNet 256x7x7 -> 3x3", 52, 256, 7, 0},
                          {"ResNet-18 64x112x112 -> 56x56", 10, 64, 112, 1}};
  std::printf("max-pool 3x3 stride 2, float, ns an output (median of %d runs)\n", runs);
  std::printf("  %-32s %8s %8s %8s %8s\n", "layer", "batch", "forward", "scalar", "backward");
  for (const Layer& l : layers) {
    kernels::Pool2dShape s;
    s.planes = l.batch * l.channels;
    for (kernels::PoolAxis* a : {&s.h, &s.w}) {  // SqueezeNet's ceil_mode, ResNet's padding
      a->in = l.side, a->kernel = 3, a->stride = 2, a->pad = l.pad;
      a->out = std::size_t(kernels::pool_output_size(std::int64_t(l.side), 3, 2, std::int64_t(l.pad), l.pad == 0));
    }
    const std::size_t outs = s.planes * s.out_plane();
    std::vector<float> x(s.planes * s.in_plane()), y(outs), gy(outs, 1.f), gx(x.size());
    std::vector<std::uint32_t> at(outs);
    std::mt19937 rng(1);
    std::uniform_real_distribution<float> uniform(0.f, 1.f);
    for (float& v : x) v = uniform(rng);
    const auto ns_an_output = [&](auto pass) {
      std::vector<double> t;
      for (int run = 0; run < runs + 1; ++run) {  // the first warms up
        const auto t0 = std::chrono::steady_clock::now();
        pass();
        if (run > 0) t.push_back(std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count() / double(outs));
      }
      return median(t);
    };
    const double forward = ns_an_output([&] { kernels::maxpool2d_forward(s, x.data(), y.data(), at.data()); });
    const double scalar = ns_an_output([&] { kernels::maxpool2d_forward_scalar(s, x.data(), y.data(), at.data()); });
    const double backward = ns_an_output([&] { kernels::maxpool2d_backward(s, at.data(), gy.data(), gx.data()); });
    std::printf("  %-32s %8zu %8.2f %8.2f %8.2f\n", l.name, l.batch, forward, scalar, backward);
  }
}

}  // namespace

int main(int argc, char** argv) {
  int runs = 31, top = 25;
  std::string only, model;
  std::size_t batch = 10;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--runs")) runs = std::max(1, std::atoi(argv[i + 1]));
    else if (!std::strcmp(argv[i], "--top")) top = std::max(1, std::atoi(argv[i + 1]));
    else if (!std::strcmp(argv[i], "--only")) only = argv[i + 1];
    else if (!std::strcmp(argv[i], "--model")) model = argv[i + 1];
    else if (!std::strcmp(argv[i], "--batch")) batch = std::size_t(std::max(1, std::atoi(argv[i + 1])));
  }
  if (!model.empty()) {
    profile(model.c_str(), nn::load_model(model), batch, runs, top);
    return 0;
  }
  if (only == "maxpool") {
    maxpool_alone(runs);
    return 0;
  }
  if (only == "exact") {
    attr::TargetSpec target;
    target.class_index = 3;
    attr::Engine<float> f(nn::lenet28(7), target);
    Tensor<float> x = zeros<float>(f.input_shape());
    std::mt19937 rng(3);
    std::uniform_real_distribution<float> uniform(0.f, 1.f);
    for (float& v : x) v = uniform(rng);
    attr::IgOptions o;
    o.rule = attr::Rule::exact;
    std::vector<double> times;
    std::size_t pieces = 0;
    for (int run = 0; run < runs; ++run) {
      const auto t0 = std::chrono::steady_clock::now();
      pieces = attr::integrated_gradients(f, x, zeros<float>(f.input_shape()), o).pieces;
      times.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    std::printf("exact IG, LeNet-28, float: %zu pieces, median %.1f ms of %d runs\n", pieces, median(times), runs);
    return 0;
  }
  if (only != "resnet") profile("LeNet-28", nn::lenet28(7), 50, runs, top);
  if (only != "lenet") profile("ResNet-18 224", nn::resnet18(7, 1000, 224), 10, std::max(3, runs / 5), top);
}
