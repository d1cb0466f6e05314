// Replays a fuzz target's inputs without libFuzzer: the regression tests of the normal suite
// (tests/CMakeLists.txt) and of the sanitizer build. Linked with one fuzz_*.cpp:
//   replay_<target> FILE_OR_DIR...
// Runs LLVMFuzzerTestOneInput on every file (a directory: every file in it, sorted). An input that
// crashes, trips a sanitizer or throws anything but ax::Error ends the process abnormally, so the
// test fails. Outside the sanitizers the address space is capped (AXIOMATIC_REPLAY_LIMIT_MB,
// default 3072), so an input that makes the code allocate gigabytes fails too instead of taking the
// machine (under ASan, hard_rss_limit_mb and max_allocation_size_mb do that).
#include <sys/resource.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace fs = std::filesystem;

namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool address_sanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool address_sanitizer = true;
#else
constexpr bool address_sanitizer = false;
#endif
#else
constexpr bool address_sanitizer = false;
#endif

}  // namespace

// Under ASan: a resident-memory cap and a cap on one allocation, both reported as errors (options
// given in ASAN_OPTIONS come after these and win).
extern "C" const char* __asan_default_options() {
  return "hard_rss_limit_mb=3072:max_allocation_size_mb=3072:allocator_may_return_null=0";
}

namespace {

void cap_address_space() {
  const char* text = std::getenv("AXIOMATIC_REPLAY_LIMIT_MB");
  const unsigned long long mb = text ? std::strtoull(text, nullptr, 10) : 3072;
  const rlimit limit{mb << 20, mb << 20};
  if (setrlimit(RLIMIT_AS, &limit) != 0) std::perror("replay: setrlimit");
}

std::vector<fs::path> inputs(int argc, char** argv) {
  std::vector<fs::path> files;
  for (int i = 1; i < argc; ++i) {
    const fs::path p = argv[i];
    if (fs::is_directory(p)) {
      for (const auto& entry : fs::directory_iterator(p))
        if (entry.is_regular_file() && entry.path().filename().string()[0] != '.') files.push_back(entry.path());
    } else {
      files.push_back(p);
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s FILE_OR_DIR...\n", argv[0]);
    return 2;
  }
  if (!address_sanitizer) cap_address_space();
  const std::vector<fs::path> files = inputs(argc, argv);
  for (const fs::path& file : files) {
    std::printf("replay: %s\n", file.string().c_str());
    std::fflush(stdout);
    std::ifstream in(file, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
  }
  std::printf("replay: %zu inputs, none crashed\n", files.size());
  return files.empty() ? 1 : 0;
}
