// Whole networks against PyTorch: the workloads an attribution runs. Prints figures; never fails.
//
//   fwd+grad  one forward pass and the input gradient of the summed class-3 logit, float, on the
//             tape directly (set_value, forward, zero_grad, backward): LeNet-28 (nn::lenet28, the
//             peer's reference LeNet) at batch 1, 10, 50 and ResNet-18 (nn::resnet18) at 224 x 224
//             at batch 1, 10, 50
//   IG-50     integrated_gradients through a Engine, zero baseline, class 3, rules
//             riemann_middle (the peer's) and gausslegendre: LeNet-28 with the 50 path points in
//             one batch, ResNet-18 with batches of 10 points (the peer's batch=10). Ours also
//             evaluates F(x) and F(x') for the completeness report (one extra forward of 2 points)
//   archs     IG-50 (riemann_middle, zero baseline, class 3) on torchvision's SqueezeNet 1.1,
//             DenseNet-121 and VGG-11-BN at 3 x 64 x 64 with random weights: exported at start
//             to a temporary directory by tools/export_torch.py --torchvision NAME --input-shape
//             3 64 64 and loaded with nn::load_model; the peer builds the same torchvision model
//             and loads the file's weights (its state_dict). Ours with the engine's default 1 GiB
//             budget (the chunk it picks is printed), the peer's 50 points in one batch. Run when
//             the peer runs (PyTorch and torchvision import)
//   exact IG  Rule::exact on LeNet-28 from a zero baseline at a random input in [0, 1): time and
//             the number of linear pieces, float and double (no peer)
//   memory    peak resident memory (VmHWM) of a fresh process that runs the ResNet-18 IG-50 with
//             the engine's default 1 GiB budget, and the chunk the engine chose; the peer's
//             ru_maxrss for its own IG-50 in a fresh process beside it
//
// The peer is bench/torch_peer.py under /usr/bin/python3 with 2 threads, run when
// `/usr/bin/python3 -c "import torch"` succeeds. It stays up in --serve mode: for each workload
// the runs are split into rounds, and each round runs a block of ours and a block of the peer's
// (the order alternating), so a burst of load from another process hits both sides alike. Each
// side times its own runs; each side warms a workload up first (untimed runs for 0.3 s, at least one).
// Figures are the median of all runs and the fastest run; peer/ours > 1 means we are faster.
// The column `others` (and a line after each section) says how much of the machine's CPU other
// processes took meanwhile (/proc/stat less this process, its children and the peer): figures
// taken while another process competes for a core are slower on both sides, and a 2-thread run
// whose second thread loses its core waits at every barrier. Trust the lines near 0%.
//
//   bench_networks [--no-peer] [--quick] [--wait-quiet S] [--only-archs] [--arch NAME ...]
//     --quick         fewer runs, for a smoke test
//     --only-archs    only the section on torchvision architectures (2b)
//     --arch NAME     section 2b on this torchvision model only (squeezenet1_1, densenet121,
//                     vgg11_bn); repeat it for several. Default: all three
//     --winograd off  ours with every convolution on the direct path (Winograd is on by default)
//     --wait-quiet S  first wait (at most S seconds) until the machine has been >= 90% idle for
//                     10 seconds in a row
#include "../attribution/methods.hpp"
#include "../nn/graph.hpp"
#include "../nn/model_file.hpp"
#include "../nn/zoo.hpp"
#include "../autodiff/kernels/conv.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#ifndef AXIOMATIC_BENCH_DIR
#define AXIOMATIC_BENCH_DIR "bench"
#endif

namespace {

using namespace ax;
using Clock = std::chrono::steady_clock;

constexpr int kThreads = 2;
constexpr int kTarget = 3;  // the class explained, as in the peer
const char* const kPython = "/usr/bin/python3";

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

double median(std::vector<double> v) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
double fastest(const std::vector<double>& v) { return v.empty() ? NAN : *std::min_element(v.begin(), v.end()); }

// ---- the peer: torch_peer.py --serve, one request per line, one JSON line per answer ----
class Peer {
 public:
  ~Peer() { stop(); }

  // Starts the peer when torch imports; `why` says why not otherwise.
  bool start(std::string& why) {
    if (std::system("/usr/bin/python3 -c \"import torch, torchvision\" > /dev/null 2>&1") != 0) {
      why = "`/usr/bin/python3 -c \"import torch, torchvision\"` failed";
      return false;
    }
    int to_child[2], from_child[2];
    if (pipe(to_child) != 0 || pipe(from_child) != 0) {
      why = "pipe() failed";
      return false;
    }
    const std::string script = std::string(AXIOMATIC_BENCH_DIR) + "/torch_peer.py";
    std::fflush(nullptr);
    pid_ = fork();
    if (pid_ < 0) {
      why = "fork() failed";
      return false;
    }
    if (pid_ == 0) {
      dup2(to_child[0], 0);
      dup2(from_child[1], 1);
      close(to_child[0]), close(to_child[1]), close(from_child[0]), close(from_child[1]);
      execl(kPython, kPython, script.c_str(), "--serve", "--threads", std::to_string(kThreads).c_str(),
            static_cast<char*>(nullptr));
      _exit(127);
    }
    close(to_child[0]);
    close(from_child[1]);
    to_ = fdopen(to_child[1], "w");
    from_ = fdopen(from_child[0], "r");
    nlohmann::json hello;
    if (!read_json(hello) || hello.value("name", "") != "ready") {
      why = "the peer " + script + " did not start";
      stop();
      return false;
    }
    version_ = hello.value("torch", std::string("?"));
    return true;
  }

  bool running() const { return to_ != nullptr; }
  pid_t pid() const { return running() ? pid_ : -1; }
  const std::string& version() const { return version_; }

  // Runs `words` `runs` times in the peer; appends the times (ms). False (with a message) on error.
  bool run(const std::string& words, int runs, std::vector<double>& times, std::string& error) {
    if (!running()) return false;
    std::fprintf(to_, "%s %d\n", words.c_str(), runs);
    std::fflush(to_);
    nlohmann::json answer;
    if (!read_json(answer)) {
      error = "the peer stopped answering";
      stop();
      return false;
    }
    if (answer.contains("error")) {
      error = answer["error"].get<std::string>();
      return false;
    }
    for (double t : answer["times_ms"]) times.push_back(t);
    return true;
  }

  void stop() {
    if (to_) {
      std::fputs("quit\n", to_);
      std::fclose(to_);
      to_ = nullptr;
    }
    if (from_) {
      std::fclose(from_);
      from_ = nullptr;
    }
    if (pid_ > 0) {
      int status = 0;
      waitpid(pid_, &status, 0);
      pid_ = -1;
    }
  }

 private:
  bool read_json(nlohmann::json& out) {
    char* line = nullptr;
    std::size_t capacity = 0;
    bool ok = false;
    while (getline(&line, &capacity, from_) > 0) {
      if (line[0] != '{') continue;  // a warning on stdout: skip it
      try {
        out = nlohmann::json::parse(line);
        ok = true;
      } catch (const std::exception&) {
        ok = false;
      }
      break;
    }
    std::free(line);
    return ok;
  }

  pid_t pid_ = -1;
  FILE* to_ = nullptr;
  FILE* from_ = nullptr;
  std::string version_;
};

// ---- what else runs on the machine ----
// CPU ticks (USER_HZ) from /proc: the machine's busy and total ticks, and those of this process
// (its threads and its finished children) and of the peer.
struct CpuTicks {
  long long busy = 0, total = 0, ours = 0;
};

// Fields 14-17 of /proc/<pid>/stat (utime, stime, cutime, cstime), summed; 0 if unreadable.
long long process_ticks(const std::string& stat_path, bool with_children) {
  std::ifstream in(stat_path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::size_t close = text.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream fields(text.substr(close + 2));
  std::vector<std::string> f;
  for (std::string w; fields >> w && f.size() < 15;) f.push_back(w);
  if (f.size() < 15) return 0;
  // f[0] is field 3 (state): utime is field 14
  long long t = std::stoll(f[11]) + std::stoll(f[12]);
  if (with_children) t += std::stoll(f[13]) + std::stoll(f[14]);
  return t;
}

// The first line of /proc/stat: {busy, total} ticks of all cores.
std::pair<long long, long long> machine_ticks() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  long long v[8] = {0};
  in >> cpu;
  for (long long& x : v) in >> x;
  long long total = 0;
  for (long long x : v) total += x;
  return {total - v[3] - v[4], total};  // less idle and iowait
}

CpuTicks cpu_ticks(pid_t peer) {
  CpuTicks t;
  std::tie(t.busy, t.total) = machine_ticks();
  t.ours = process_ticks("/proc/self/stat", true);
  if (peer > 0) t.ours += process_ticks("/proc/" + std::to_string(peer) + "/stat", false);
  return t;
}

// Percent of the machine's CPU that other processes used between two samples.
double others_percent(const CpuTicks& a, const CpuTicks& b) {
  const long long total = b.total - a.total;
  if (total <= 0) return 0;
  return std::max(0.0, 100.0 * double((b.busy - a.busy) - (b.ours - a.ours)) / double(total));
}

void print_others(const CpuTicks& since, pid_t peer) {
  std::printf("  (other processes used %.0f%% of the machine's CPU meanwhile)\n", others_percent(since, cpu_ticks(peer)));
  std::fflush(stdout);
}

// Waits until the machine has been >= 90% idle for 10 consecutive seconds, at most `limit` s.
void wait_quiet(int limit) {
  const auto start = Clock::now();
  int quiet = 0;
  auto previous = machine_ticks();
  std::printf("waiting for a quiet machine (at most %d s) ... ", limit);
  std::fflush(stdout);
  while (quiet < 10) {
    std::this_thread::sleep_for(std::chrono::seconds(1));
    const auto now = machine_ticks();
    const long long total = now.second - previous.second, busy = now.first - previous.first;
    quiet = (total > 0 && 100 * (total - busy) >= 90 * total) ? quiet + 1 : 0;
    previous = now;
    if (ms_since(start) > 1000.0 * limit) {
      std::printf("still busy after %d s; figures may be noisy\n", limit);
      return;
    }
  }
  std::printf("waited %.0f s\n", ms_since(start) / 1000);
}

// ---- interleaved timing ----
struct Timing {
  std::vector<double> ours, peer;  // ms per run
  std::string peer_error;          // why the peer has no figure, if it has none
  double others = 0;               // percent of the machine's CPU other processes used meanwhile
};

// Runs `ours` and the peer's `words` `runs` times each, in `rounds` rounds of alternating blocks.
template <class F>
Timing interleave(Peer& peer, const std::string& words, int runs, int rounds, F&& ours) {
  Timing t;
  rounds = std::max(1, std::min(rounds, runs));
  // warm-up (buffers sized, pages touched, threads started, memory freed by the previous
  // workload faulted back in): once, then again until 0.3 s have passed, at most 20 times; the
  // peer does the same on its first request
  {
    const auto t0 = Clock::now();
    for (int n = 0; n == 0 || (n < 20 && ms_since(t0) < 300); ++n) ours();
  }
  const CpuTicks start = cpu_ticks(peer.pid());
  bool peer_ok = peer.running();
  if (!peer_ok) t.peer_error = "not run";
  const auto pause = [] { std::this_thread::sleep_for(std::chrono::milliseconds(30)); };  // spinning threads park
  for (int r = 0; r < rounds; ++r) {
    const int n = runs / rounds + (r < runs % rounds ? 1 : 0);
    const auto ours_block = [&] {
      for (int i = 0; i < n; ++i) {
        const auto t0 = Clock::now();
        ours();
        t.ours.push_back(ms_since(t0));
      }
    };
    const auto peer_block = [&] {
      if (!peer_ok) return;
      peer_ok = peer.run(words, n, t.peer, t.peer_error);
      if (!peer_ok) t.peer.clear();
      pause();
    };
    if (r % 2 == 0) {
      ours_block();
      pause();
      peer_block();
    } else {
      peer_block();
      ours_block();
      pause();
    }
  }
  t.others = others_percent(start, cpu_ticks(peer.pid()));
  return t;
}

void print_header() {
  std::printf("  %-34s %5s %12s %10s %12s %10s %10s %7s\n", "workload", "runs", "ours median", "fastest", "peer median",
              "fastest", "peer/ours", "others");
}

// One line per workload; returns the ratio peer/ours of the medians (NaN without a peer).
double print_line(const std::string& name, const Timing& t, const std::string& note = "") {
  const double om = median(t.ours), of = fastest(t.ours);
  std::printf("  %-34s %5zu %9.2f ms %7.2f ms", name.c_str(), t.ours.size(), om, of);
  double ratio = NAN;
  if (!t.peer.empty()) {
    const double pm = median(t.peer), pf = fastest(t.peer);
    ratio = pm / om;
    std::printf(" %9.2f ms %7.2f ms %9.2fx %6.0f%%", pm, pf, ratio, t.others);
  } else {
    std::printf("   peer: %s; others %.0f%%", t.peer_error.c_str(), t.others);
  }
  std::printf("%s%s\n", note.empty() ? "" : "  ", note.c_str());
  std::fflush(stdout);
  return ratio;
}

template <class T>
Tensor<T> random_input(const Shape& shape, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> dist(0.0, 1.0);
  Tensor<T> x(shape);
  for (T& v : x) v = T(dist(rng));
  return x;
}

Shape with_batch(std::size_t batch, const Shape& per_sample) {
  Shape s{batch};
  for (std::size_t d : per_sample) s.push_back(d);
  return s;
}

// ---- fwd+grad: the tape directly ----
struct FwdGrad {
  Tape<float> tape;
  std::unique_ptr<nn::Network<float>> net;
  Tensor<float> x, seed;
  std::vector<double> forward_ms, backward_ms;

  FwdGrad(const nn::ModelSpec& spec, std::size_t batch) {
    nn::RecordOptions o;
    o.batch = batch;
    net = std::make_unique<nn::Network<float>>(spec, tape, o);
    Shape per_sample;
    for (std::size_t d : spec.graph.input.shape) per_sample.push_back(d);
    x = random_input<float>(with_batch(batch, per_sample), 1);
    const Shape& out = tape.value(net->output()).shape();
    seed = zeros<float>(out);
    for (std::size_t i = 0; i < batch; ++i) seed(i, std::size_t(kTarget)) = 1.f;
  }
  void operator()() {
    const auto t0 = Clock::now();
    tape.set_value(net->input(), x);
    tape.forward();
    const auto t1 = Clock::now();
    tape.zero_grad();
    tape.backward(net->output(), seed);
    forward_ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    backward_ms.push_back(ms_since(t1));
  }
};

attr::TargetSpec class_target() {
  attr::TargetSpec t;
  t.class_index = kTarget;
  return t;
}

long vm_hwm_kib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}

// The memory workload, run in a fresh process (bench_networks --memory-child): one line of JSON.
int memory_child() {
#ifdef _OPENMP
  omp_set_num_threads(kThreads);
#endif
  const nn::ModelSpec spec = nn::resnet18(7, 1000, 224);
  const long before_kib = vm_hwm_kib();
  attr::Engine<float> f(spec, class_target());  // the default 1 GiB budget
  const Tensor<float> x = random_input<float>(f.input_shape(), 2);
  const Tensor<float> baseline = zeros<float>(f.input_shape());
  attr::IgOptions o;
  o.rule = attr::Rule::riemann_middle;
  o.steps = 50;
  const long recorded_kib = vm_hwm_kib();
  const auto t0 = Clock::now();
  const attr::Attribution<float> a = attr::integrated_gradients(f, x, baseline, o);
  const double ms = ms_since(t0);
  std::printf("{\"chunk\": %zu, \"bytes_per_point\": %zu, \"hwm_start_kib\": %ld, \"hwm_recorded_kib\": %ld, "
              "\"hwm_after_kib\": %ld, \"ms\": %.1f, \"relative_delta\": %.3e}\n",
              f.chunk(), f.bytes_per_point(), before_kib, recorded_kib, vm_hwm_kib(), ms, a.relative_delta);
  return 0;
}

std::string self_path() {
  char buffer[4096];
  const ssize_t n = readlink("/proc/self/exe", buffer, sizeof(buffer) - 1);
  if (n <= 0) return "bench_networks";
  buffer[n] = 0;
  return buffer;
}

// The first JSON line a command prints, or an empty object.
nlohmann::json run_for_json(const std::string& command) {
  std::fflush(nullptr);
  FILE* p = popen(command.c_str(), "r");
  if (!p) return nlohmann::json::object();
  char line[4096];
  nlohmann::json out = nlohmann::json::object();
  while (std::fgets(line, sizeof(line), p))
    if (line[0] == '{' && out.empty()) {
      try {
        out = nlohmann::json::parse(line);
      } catch (const std::exception&) {
      }
    }
  pclose(p);
  return out;
}

// ---- real architectures: torchvision models exported to model files ----
struct Arch {
  const char* torchvision;  // the constructor's name in torchvision.models
  const char* title;
  int runs, rounds;
};
const Arch kArchs[] = {{"squeezenet1_1", "SqueezeNet 1.1", 11, 5},
                       {"densenet121", "DenseNet-121", 5, 5},
                       {"vgg11_bn", "VGG-11-BN", 5, 5}};

// A fresh temporary directory for the exported models ("" if none could be made).
std::string make_temp_dir() {
  char pattern[] = "/tmp/bench_networks_XXXXXX";
  const char* dir = mkdtemp(pattern);
  return dir ? dir : "";
}

// Exports a torchvision model with random weights (seed 0) at 3 x 64 x 64 into `path`; true
// when the model file was written.
bool export_arch(const Arch& a, const std::string& path) {
  const std::string command = std::string(kPython) + " " + AXIOMATIC_BENCH_DIR + "/../tools/export_torch.py --torchvision " +
                              a.torchvision + " --input-shape 3 64 64 --out " + path + " > /dev/null 2>&1";
  return std::system(command.c_str()) == 0;
}

struct Target {
  std::string what;
  bool measured;
  bool met;
  std::string figure;
};

// Section 2b: IG-50 on each of kArchs (those named in `only`, or all when it is empty), ours
// beside the peer; appends a target per model.
void arch_section(Peer& peer, bool quick, const std::vector<std::string>& only, std::vector<Target>& targets) {
  std::printf("\n2b. IG-50 (riemann_middle, zero baseline) on torchvision models at 3x64x64, random weights (seed 0)\n");
  print_header();
  const std::string dir = make_temp_dir();
  for (const Arch& a : kArchs) {
    if (!only.empty() && std::find(only.begin(), only.end(), a.torchvision) == only.end()) continue;
    const std::string path = dir + "/" + a.torchvision + ".safetensors";
    if (dir.empty() || !export_arch(a, path)) {
      std::printf("  %-34s tools/export_torch.py could not export it\n", a.title);
      continue;
    }
    {
      attr::Engine<float> f(nn::load_model(path), class_target());  // the default 1 GiB budget
      const Tensor<float> x = random_input<float>(f.input_shape(), 2);
      const Tensor<float> baseline = zeros<float>(f.input_shape());
      attr::IgOptions o;
      o.rule = attr::Rule::riemann_middle;
      o.steps = 50;
      double relative_delta = 0;
      const std::string words = std::string("ig file:") + a.torchvision + ":" + path + " riemann_middle 50 50";
      const int runs = quick ? std::max(1, a.runs / 4) : a.runs;
      const Timing t = interleave(peer, words, runs, a.rounds, [&] {
        relative_delta = attr::integrated_gradients(f, x, baseline, o).relative_delta;
      });
      char note[160];
      std::snprintf(note, sizeof(note), "chunk %zu, |delta|/|dF| %.1e", f.chunk(), relative_delta);
      const double ratio = print_line(std::string("IG-50 ") + a.torchvision + "_64", t, note);
      char fig[160];
      std::snprintf(fig, sizeof(fig), "ours %.1f ms, peer %.1f ms, peer/ours %.2fx", median(t.ours), median(t.peer), ratio);
      targets.push_back({std::string(a.title) + " IG-50 at 64x64 no slower than PyTorch", !std::isnan(ratio),
                         ratio >= 1.0, fig});
    }
    std::remove(path.c_str());
    std::this_thread::sleep_for(std::chrono::seconds(2));  // freed buffers settle (see `settle` in main)
  }
  if (!dir.empty()) rmdir(dir.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  bool use_peer = true, quick = false, only_archs = false;
  std::vector<std::string> archs;  // --arch: section 2b's models
  int wait_limit = 0;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--memory-child")) return memory_child();
    if (!std::strcmp(argv[i], "--no-peer")) use_peer = false;
    else if (!std::strcmp(argv[i], "--quick")) quick = true;
    else if (!std::strcmp(argv[i], "--only-archs")) only_archs = true;
    else if (!std::strcmp(argv[i], "--winograd") && i + 1 < argc && !std::strcmp(argv[i + 1], "off"))
      kernels::set_winograd(false), ++i;
    else if (!std::strcmp(argv[i], "--winograd")) i += i + 1 < argc && !std::strcmp(argv[i + 1], "on");
    else if (!std::strcmp(argv[i], "--arch") && i + 1 < argc) archs.push_back(argv[++i]);
    else if (!std::strcmp(argv[i], "--wait-quiet") && i + 1 < argc) wait_limit = std::atoi(argv[++i]);
    else {
      std::printf("usage: bench_networks [--no-peer] [--quick] [--wait-quiet SECONDS] [--only-archs] [--winograd on|off] "
                  "[--arch squeezenet1_1|densenet121|vgg11_bn ...]\n");
      return 0;
    }
  }
  for (const std::string& name : archs)
    if (std::none_of(std::begin(kArchs), std::end(kArchs), [&](const Arch& a) { return name == a.torchvision; })) {
      std::fprintf(stderr, "bench_networks: --arch %s: expected squeezenet1_1, densenet121 or vgg11_bn\n", name.c_str());
      return 2;
    }
  if (wait_limit > 0) wait_quiet(wait_limit);
#ifdef _OPENMP
  omp_set_num_threads(kThreads);
#endif
  // runs per workload: light ones many times, ResNet-18 at batch 50 and its IG few times
  const auto runs = [quick](int n) { return quick ? std::max(1, n / 4) : n; };

  Peer peer;
  std::string why_no_peer = "--no-peer";
  const bool peer_up = use_peer && peer.start(why_no_peer);
  std::printf("bench_networks: float32, %d threads on both sides, class %d logit\n", kThreads, kTarget);
  if (peer_up)
    std::printf("peer: PyTorch %s (bench/torch_peer.py, eager, %d threads), runs interleaved with ours in rounds\n",
                peer.version().c_str(), kThreads);
  else
    std::printf("peer: not run (%s); our figures alone\n", why_no_peer.c_str());
  const char* policy = std::getenv("OMP_WAIT_POLICY");  // both sides read it (the peer inherits it)
  std::printf("OMP_WAIT_POLICY: %s\n", policy ? policy : "unset (libgomp's default: threads spin before they sleep)");
  std::printf("Winograd (float 3x3 stride-1 convolutions): %s\n",
              kernels::winograd_enabled() ? "on (the default)" : "off (--winograd off)");
  std::printf("figures: median of all runs and the fastest run, in ms; peer/ours > 1 means we are faster\n\n");

  const nn::ModelSpec lenet = nn::lenet28(7);
  const nn::ModelSpec resnet = nn::resnet18(7, 1000, 224);
  std::vector<Target> targets;
  const CpuTicks run_start = cpu_ticks(peer.pid());
  CpuTicks section = run_start;
  if (only_archs) {
    if (peer_up) arch_section(peer, quick, archs, targets);
    std::printf("\nother processes used %.0f%% of the machine's CPU during the run\n", others_percent(run_start, cpu_ticks(-1)));
    for (const Target& t : targets)
      std::printf("  [%s] %s: %s\n", !t.measured ? "no peer" : t.met ? "met" : "missed", t.what.c_str(), t.figure.c_str());
    return 0;
  }

  // ---- 1. forward + input gradient ----
  std::printf("1. forward + input gradient (tape: set_value, forward, zero_grad, backward)\n");
  print_header();
  struct Split {
    std::string name;
    double forward, backward;
  };
  std::vector<Split> splits;
  double lenet50_ratio = NAN, resnet10_ratio = NAN;
  std::string lenet50_fig, resnet10_fig;
  struct FwdCase {
    const char* model;
    const nn::ModelSpec* spec;
    std::size_t batch;
    int runs, rounds;
  };
  const FwdCase fwd_cases[] = {
      // small workloads: many runs in rounds of 3 per side, so that a burst of noise (it comes in
      // bursts of ~100 ms here) falls on both sides
      {"lenet28", &lenet, 1, runs(61), 20},   {"lenet28", &lenet, 10, runs(61), 20},
      {"lenet28", &lenet, 50, runs(61), 20},  {"resnet18", &resnet, 1, runs(11), 11},
      {"resnet18", &resnet, 10, runs(7), 7},  {"resnet18", &resnet, 50, runs(3), 3},
  };
  // After a ResNet-18 workload frees its buffers (up to ~5 GB), this VM runs the next fraction of
  // a second slower (measured: a LeNet workload right after ResNet b50 without this pause had a
  // median 1.6x its usual), so the next workload starts after a pause.
  bool after_large = false;
  const auto settle = [&after_large](bool large) {
    if (after_large) std::this_thread::sleep_for(std::chrono::seconds(2));
    after_large = large;
  };
  for (const FwdCase& c : fwd_cases) {
    settle(c.spec == &resnet);
    FwdGrad work(*c.spec, c.batch);
    const std::string words = std::string("fwdgrad ") + c.model + " " + std::to_string(c.batch);
    const Timing t = interleave(peer, words, c.runs, c.rounds, [&] { work(); });
    const std::string name = std::string("fwd+grad ") + c.model + (c.spec == &resnet ? "_224" : "") + " b" +
                             std::to_string(c.batch);
    const double ratio = print_line(name, t);
    // the timed runs are the last entries of the split timings (the warm-up runs come first)
    const std::size_t warm = work.forward_ms.size() - t.ours.size();
    splits.push_back({name, median(std::vector<double>(work.forward_ms.begin() + long(warm), work.forward_ms.end())),
                      median(std::vector<double>(work.backward_ms.begin() + long(warm), work.backward_ms.end()))});
    char fig[160];
    std::snprintf(fig, sizeof(fig), "ours %.2f ms, peer %.2f ms, peer/ours %.2fx", median(t.ours), median(t.peer), ratio);
    if (c.spec == &lenet && c.batch == 50) lenet50_ratio = ratio, lenet50_fig = fig;
    if (c.spec == &resnet && c.batch == 10) resnet10_ratio = ratio, resnet10_fig = fig;
  }
  std::printf("  where our time goes (medians): forward pass | backward pass (zero_grad included)\n");
  for (const Split& s : splits)
    std::printf("    %-32s %9.2f ms | %9.2f ms  (%.0f%% | %.0f%%)\n", s.name.c_str(), s.forward, s.backward,
                100 * s.forward / (s.forward + s.backward), 100 * s.backward / (s.forward + s.backward));
  print_others(section, peer.pid());
  section = cpu_ticks(peer.pid());
  targets.push_back({"ResNet-18 fwd+grad b10 no slower than PyTorch (peer/ours >= 1)", !std::isnan(resnet10_ratio),
                     resnet10_ratio >= 1.0, resnet10_fig});
  targets.push_back({"LeNet-28 fwd+grad b50 at least 3x faster (peer/ours >= 3)", !std::isnan(lenet50_ratio),
                     lenet50_ratio >= 3.0, lenet50_fig});

  // ---- 2. IG-50 ----
  std::printf("\n2. IG-50 through Engine + integrated_gradients, zero baseline, one input in [0, 1)\n");
  print_header();
  struct IgCase {
    const char* model;
    const nn::ModelSpec* spec;
    std::size_t batch;  // the peer's batch; ours: the engine's chunk, set to the same
    int runs, rounds;
  };
  const IgCase ig_cases[] = {{"lenet28", &lenet, 50, runs(61), 20}, {"resnet18", &resnet, 10, runs(5), 5}};
  for (const IgCase& c : ig_cases) {
    settle(c.spec == &resnet);
    attr::Engine<float> probe(*c.spec, class_target());
    const std::size_t default_chunk = probe.chunk(), per_point = probe.bytes_per_point();
    attr::EngineOptions engine;
    // the same batch of path points as the peer: a budget for exactly `batch` points (the default
    // 1 GiB gives `default_chunk`; the memory section below runs with it)
    if (default_chunk < c.batch || c.batch < 50) engine.memory_budget = c.batch * per_point;
    attr::Engine<float> f(*c.spec, class_target(), engine);
    const Tensor<float> x = random_input<float>(f.input_shape(), 2);
    const Tensor<float> baseline = zeros<float>(f.input_shape());
    for (attr::Rule rule : {attr::Rule::riemann_middle, attr::Rule::gausslegendre}) {
      attr::IgOptions o;
      o.rule = rule;
      o.steps = 50;
      double relative_delta = 0;
      const std::string words = std::string("ig ") + c.model + " " + attr::rule_name(rule) + " 50 " + std::to_string(c.batch);
      const Timing t = interleave(peer, words, c.runs, c.rounds, [&] {
        relative_delta = attr::integrated_gradients(f, x, baseline, o).relative_delta;
      });
      char note[160];
      std::snprintf(note, sizeof(note), "chunk %zu (default budget: %zu), |delta|/|dF| %.1e", f.chunk(), default_chunk,
                    relative_delta);
      const std::string name = std::string("IG-50 ") + c.model + (c.spec == &resnet ? "_224" : "") + " " +
                               (rule == attr::Rule::riemann_middle ? "riemann_mid" : "gausslegendre");
      const double ratio = print_line(name, t, note);
      char fig[160];
      std::snprintf(fig, sizeof(fig), "%s: ours %.1f ms, peer %.1f ms, peer/ours %.2fx", attr::rule_name(rule),
                    median(t.ours), median(t.peer), ratio);
      if (c.spec == &lenet)
        targets.push_back({std::string("LeNet-28 IG-50 at least 3x faster than PyTorch (") + attr::rule_name(rule) + ")",
                           !std::isnan(ratio), ratio >= 3.0, fig});
      else
        targets.push_back({std::string("ResNet-18 IG-50 at least 1.5x faster than PyTorch (") + attr::rule_name(rule) + ")",
                           !std::isnan(ratio), ratio >= 1.5, fig});
    }
    if (c.spec == &resnet) {  // what folding its 20 batch norms into their convolutions moves: rounding
      attr::EngineOptions folded_options = engine;
      folded_options.fold_batchnorm = true;
      attr::Engine<float> folded(*c.spec, class_target(), folded_options);
      attr::IgOptions o;
      o.rule = attr::Rule::riemann_middle;
      const Tensor<float> folded_ig = attr::integrated_gradients(folded, x, baseline, o).values;
      const Tensor<float> unfolded_ig = attr::integrated_gradients(f, x, baseline, o).values;
      double difference = 0, norm = 0;
      for (std::size_t i = 0; i < folded_ig.size(); ++i) {
        difference += std::pow(double(folded_ig.data()[i]) - double(unfolded_ig.data()[i]), 2);
        norm += std::pow(double(unfolded_ig.data()[i]), 2);
      }
      std::printf("  (IG-50 resnet18_224 with its batch norms folded into the convolutions vs recorded as they are: "
                  "relative L2 difference %.1e)\n", std::sqrt(difference / norm));
    }
  }

  print_others(section, peer.pid());
  section = cpu_ticks(peer.pid());

  // ---- 2b. IG-50 on torchvision architectures at 64 x 64 ----
  if (peer_up) {
    settle(false);
    arch_section(peer, quick, archs, targets);
    print_others(section, peer.pid());
    section = cpu_ticks(peer.pid());
  }

  // ---- 3. exact IG on LeNet-28 ----
  std::printf("\n3. exact IG (Rule::exact) on LeNet-28 from a zero baseline, one input in [0, 1), no peer\n");
  std::printf("  %-34s %5s %12s %10s %8s %8s %12s\n", "workload", "runs", "median", "fastest", "pieces", "steps",
              "|delta|/|dF|");
  double exact_float_ms = NAN;
  settle(false);
  const auto exact_ig = [&](auto zero, const char* type, int threads) {
    using T = decltype(zero);
#ifdef _OPENMP
    omp_set_num_threads(threads);
#endif
    attr::Engine<T> f(lenet, class_target());
    const Tensor<T> x = random_input<T>(f.input_shape(), 3);
    const Tensor<T> baseline = zeros<T>(f.input_shape());
    attr::IgOptions o;
    o.rule = attr::Rule::exact;
    attr::Attribution<T> a;
    std::vector<double> times;
    const auto once = [&] {
      const auto t0 = Clock::now();
      a = attr::integrated_gradients(f, x, baseline, o);
      times.push_back(ms_since(t0));
    };
    once();  // warm-up, and a measure of how many runs fit
    const int n = runs(times.back() > 5000 ? 3 : 7);
    times.clear();
    for (int i = 0; i < n; ++i) once();
    const std::string name = std::string("exact IG lenet28 ") + type + (threads == 1 ? ", 1 thread" : "");
    std::printf("  %-34s %5zu %9.1f ms %7.1f ms %8zu %8zu %12.1e\n", name.c_str(), times.size(), median(times),
                fastest(times), a.pieces, a.steps, a.relative_delta);
    std::fflush(stdout);
#ifdef _OPENMP
    omp_set_num_threads(kThreads);
#endif
    return median(times);
  };
  exact_float_ms = exact_ig(0.0f, "float", kThreads);
  exact_ig(0.0, "double", kThreads);
  const double exact_one_thread_ms = exact_ig(0.0f, "float", 1);  // diagnostic: no barriers to wait at
  {
    char fig[160];
    std::snprintf(fig, sizeof(fig), "float: %.1f ms on %d threads (%.1f ms on 1)", exact_float_ms, kThreads,
                  exact_one_thread_ms);
    targets.push_back({"exact IG on LeNet-28 under one second", true, exact_float_ms < 1000.0, fig});
  }

  print_others(section, peer.pid());

  // ---- 4. memory ----
  std::printf("\n4. peak resident memory of a fresh process running ResNet-18 224 IG-50 (riemann_middle), default 1 GiB budget\n");
  peer.stop();  // nothing of the peer runs while memory is measured
  const nlohmann::json mem = run_for_json(self_path() + (kernels::winograd_enabled() ? "" : " --winograd off") + " --memory-child");
  if (mem.contains("hwm_after_kib")) {
    const double mib = 1.0 / 1024;
    std::printf("  ours: VmHWM %.0f MiB after IG-50 (%.0f MiB after recording the tape, %.0f MiB at start); "
                "chunk %zu points (%.1f MiB estimated per point); IG took %.0f ms\n",
                mem["hwm_after_kib"].get<double>() * mib, mem["hwm_recorded_kib"].get<double>() * mib,
                mem["hwm_start_kib"].get<double>() * mib, mem["chunk"].get<std::size_t>(),
                mem["bytes_per_point"].get<double>() / (1 << 20), mem["ms"].get<double>());
  } else {
    std::printf("  ours: the child process gave no figures\n");
  }
  if (peer_up) {
    const nlohmann::json pm = run_for_json(std::string(kPython) + " " + AXIOMATIC_BENCH_DIR + "/torch_peer.py --memory --threads " +
                                           std::to_string(kThreads) + " 2>/dev/null");
    if (pm.contains("maxrss_mib"))
      std::printf("  peer: ru_maxrss %.0f MiB for its IG-50 at batch 10 (the Python interpreter and torch included)\n",
                  pm["maxrss_mib"].get<double>());
    else
      std::printf("  peer: gave no figure\n");
  }

  // ---- targets ----
  std::printf("\nother processes used %.0f%% of the machine's CPU during the whole run\n",
              others_percent(run_start, cpu_ticks(-1)));
  std::printf("\ntargets (reported, never enforced):\n");
  for (const Target& t : targets)
    std::printf("  [%s] %s: %s\n", !t.measured ? "no peer" : t.met ? "met" : "missed", t.what.c_str(), t.figure.c_str());
  return 0;
}
