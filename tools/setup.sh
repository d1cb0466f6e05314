#!/usr/bin/env bash
# Installs the Debian packages axiomatic needs (only those missing, and says which), then
# configures and builds into build/. Works as root or as a user with sudo.
#   bash tools/setup.sh            # the main job's packages: then run the command (README.md)
#   bash tools/setup.sh --tests    # also what only the tests, sanitizers and fuzzers need: then
#                                  # ctest --test-dir build (docs/testing.md)
# With --tests the build is configured so that a test whose optional packages are missing fails
# instead of skipping (AXIOMATIC_REQUIRE_TEST_DEPS).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tests=OFF
case "${1-}" in
  "") ;;
  --tests) tests=ON ;;
  *) echo "usage: bash tools/setup.sh [--tests]" >&2; exit 2 ;;
esac

packages=(
  g++ cmake make pkg-config
  xtensor-dev libxsimd-dev xtl-dev  # tensors and SIMD
  doctest-dev                       # tests
  nlohmann-json3-dev                # JSON (model graphs, reports)
  libstb-dev                        # PNG
  libcli11-dev                      # the command line
  zlib1g-dev                        # gzip'd IDX data files
  dataset-fashion-mnist             # training data of the shipped model
)
if [ "$tests" = ON ]; then
  packages+=(
    python3 python3-numpy python3-torch python3-torchvision  # export_torch: PyTorch as the reference
    clang libclang-rt-14-dev libomp-14-dev                   # fuzzers (libFuzzer) and sanitizer runtimes
    chromium                                                 # headless: renders the report page
  )
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "setup: installing missing packages: ${missing[*]}"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "setup: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
    sudo="sudo"
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all ${#packages[@]} packages present"
fi

cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=Release -DAXIOMATIC_REQUIRE_TEST_DEPS="$tests"
cmake --build "$root/build" -j2
