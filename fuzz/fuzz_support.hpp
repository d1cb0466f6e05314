// What the fuzz targets share. The readers under test take a path, so each input is written to
// one scratch file per process first (removed at exit).
//
// Contract checked by every target: bad input ends in ax::Error (one line naming what was wrong).
// Any other exception escapes and libFuzzer reports it as a crash (e.g. a bare std::bad_alloc or
// a JSON library error), as it does sanitizer reports, timeouts and out-of-memory.
#pragma once

#include "autodiff/tensor.hpp"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <unistd.h>

namespace ax::fuzz {

// The scratch file's path, created on first use and removed when the process exits.
inline const std::string& scratch_path(const char* suffix) {
  static const std::string path = [suffix] {
    std::string p = "/tmp/axiomatic-fuzz-" + std::to_string(::getpid()) + suffix;
    static std::string removed;
    removed = p;
    std::atexit([] { std::remove(removed.c_str()); });
    return p;
  }();
  return path;
}

// Writes the input to the scratch file and returns its path.
inline const std::string& write_scratch(const std::uint8_t* data, std::size_t size, const char* suffix) {
  const std::string& path = scratch_path(suffix);
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();  // the harness itself failed: not a finding about the reader
  if (size && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  return path;
}

}  // namespace ax::fuzz
