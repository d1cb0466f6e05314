// Loading a model file: how long reading its bytes takes, against how long axiomatic takes to
// read and check it (read_model), to load it (a Network recorded with a batch of 0, no node
// computed: parameters of the file's dtype used in place from the mapping, as attribution does),
// to load it copying every parameter into the tape (loadcopy: parameters that ask for gradients,
// as training does, so never used in place; load64: into a float64 tape, one conversion each), to
// describe it (`info`), and to record it at a batch of 1 as an engine does (that runs the network
// once: a forward pass), with the peak resident memory of each.
//
//   bench_load FILE [read|check|load|loadcopy|load64|info|record|all] [RUNS]
//
// One mode per process, so that each one's peak resident memory (getrusage's maxrss) is its own:
// `all` (the default) starts this program again for each mode and prints one line each. The file
// should be warm in the page cache (run it twice): every figure is then the cost of reading
// the bytes from memory, not from the disk. bench/bench_load.py runs it beside torch.load.
#include "../nn/graph.hpp"
#include "../nn/model_file.hpp"
#include "timing.hpp"

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

double maxrss_mib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return double(usage.ru_maxrss) / 1024.0;
}

// The bytes read with read() into one buffer, as `cat FILE > /dev/null` reads them.
void read_bytes(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY);
  if (fd < 0) return;
  std::vector<char> buffer(std::size_t(1) << 17);
  std::size_t total = 0;
  for (ssize_t n; (n = read(fd, buffer.data(), buffer.size())) > 0;) total += std::size_t(n);
  close(fd);
  if (total == 0) std::printf("(empty file)\n");
}

template <class T>
void load(const std::string& path, std::size_t batch, bool copy = false) {
  const ax::nn::ModelSpec spec = ax::nn::load_model(path);
  ax::Tape<T> tape;
  ax::nn::RecordOptions options;
  options.batch = batch;
  options.parameters_require_grad = copy;
  const ax::nn::Network<T> net(spec, tape, options);
  if (net.parameters().empty()) std::printf("(no parameters)\n");
}

void run_mode(const std::string& path, const std::string& mode, int runs) {
  const timing::MedianBest t = timing::time_runs(runs, [&] {
    if (mode == "read") read_bytes(path);
    else if (mode == "check") ax::nn::load_model(path);
    else if (mode == "load") load<float>(path, 0);
    else if (mode == "loadcopy") load<float>(path, 0, true);
    else if (mode == "load64") load<double>(path, 0);
    else if (mode == "record") load<float>(path, 1);
    else ax::nn::describe(ax::nn::load_model(path), path);
  });
  std::printf("{\"mode\": \"%s\", \"median_s\": %.4f, \"best_s\": %.4f, \"runs\": %d, \"maxrss_mib\": %.1f}\n", mode.c_str(),
              t.median, t.best, runs, maxrss_mib());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: bench_load FILE [read|check|load|loadcopy|load64|info|record|all] [RUNS]\n");
    return 0;
  }
  const std::string path = argv[1], mode = argc > 2 ? argv[2] : "all";
  const int runs = argc > 3 ? std::max(1, std::atoi(argv[3])) : 5;
  try {
    if (mode != "all") {
      run_mode(path, mode, runs);
      return 0;
    }
    std::printf("# %s: read = its bytes through read() (as cat), check = read_model (the container, the graph, every\n"
                "# parameter finite), load = read_model + the parameters in a float32 tape (in place where the dtype is F32;\n"
                "# loadcopy: every one copied, as for training; load64: float64), info = describe,\n"
                "# record = load + one forward pass at batch 1 (what an engine adds)\n",
                path.c_str());
    read_bytes(path);  // warm the page cache
    for (const char* m : {"read", "check", "load", "loadcopy", "load64", "info", "record"}) {
      std::fflush(stdout);
      const pid_t child = fork();
      if (child == 0) {
        execl("/proc/self/exe", argv[0], path.c_str(), m, std::to_string(runs).c_str(), static_cast<char*>(nullptr));
        _exit(0);
      }
      int status = 0;
      waitpid(child, &status, 0);
    }
  } catch (const std::exception& e) {
    std::printf("bench_load: %s\n", e.what());
  }
  return 0;
}
