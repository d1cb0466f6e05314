#!/usr/bin/env bash
# The whole test suite built and run under AddressSanitizer + UndefinedBehaviorSanitizer
# (-fsanitize=address,undefined,float-cast-overflow, GCC; docs/testing.md), in build-asan/.
# Every program is built with the same flags: the tests, the command that the CLI tests and
# export_torch run, and the package consumer (through the installed target's flags). The first
# report stops the program, so the test fails. Needs `bash tools/setup.sh --tests` first.
#   bash tools/sanitize.sh [ctest arguments...]
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/build-asan"

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAXIOMATIC_SANITIZE=ON \
  -DAXIOMATIC_BUILD_BENCH=OFF -DAXIOMATIC_REQUIRE_TEST_DEPS=ON >/dev/null
cmake --build "$build" -j2

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:strict_string_checks=1:check_initialization_order=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
ctest --test-dir "$build" -j2 --output-on-failure "$@"
