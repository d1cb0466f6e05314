#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, clang, -fsanitize=fuzzer,address,undefined) into build-fuzz/
# and runs them (docs/testing.md). Needs `bash tools/setup.sh --tests` first (clang and its
# sanitizer runtimes).
#   bash tools/fuzz.sh TARGET SECONDS [libFuzzer flags...]   fuzz one target for SECONDS
#   bash tools/fuzz.sh all SECONDS                           each target in turn, SECONDS each
#   bash tools/fuzz.sh smoke                                 each target once over its seeds and
#                                                            its regression files (no mutation)
# TARGET: model, toy_json, npy, png, baseline or options. Runs under `nice -n 10`, one fuzzer at a time.
# Each unit is limited to 10 s (-timeout=10) and 2048 MB (-rss_limit_mb, also the largest single
# allocation); the run goes on past a finding (-fork=1 -ignore_crashes/-ignore_ooms/-ignore_timeouts)
# and leaves every one in build-fuzz/artifacts/TARGET/ (crash-*, leak-*, oom-*, timeout-*).
# The corpus grows in build-fuzz/corpus/TARGET/, seeded from the shipped files:
#   model     examples/models/*.safetensors, examples/toys/*.json written as model files (both
#             forms of fuzz/fuzz_model.cpp); with fuzz/graph.dict (the graph's keys and op names)
#   toy_json  examples/toys/*.json; with fuzz/graph.dict
#   npy       fuzz/seeds/npy: small .npy files (float32 and float64, ranks 0 to 4)
#   png       examples/images/*.png
#   baseline  fuzz/seeds/baseline: one --baseline SPEC of each kind
#   options   fuzz/seeds/options: the README's and the tests' command lines, one argument per
#             NUL-separated piece (files that must exist are /dev/null); with fuzz/options.dict
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/build-fuzz"
targets=(model toy_json npy png baseline options)

usage() { echo "usage: bash tools/fuzz.sh TARGET|all SECONDS [libFuzzer flags...] | bash tools/fuzz.sh smoke" >&2; exit 2; }

build_targets() {
  command -v clang++ >/dev/null || { echo "fuzz: clang++ missing: run bash tools/setup.sh --tests" >&2; exit 1; }
  cmake -S "$root" -B "$build" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DAXIOMATIC_FUZZ=ON >/dev/null
  nice -n 10 cmake --build "$build" -j2 --target make_seeds $(printf 'fuzz_%s ' "${targets[@]}")
}

# The seed corpus of every target, written anew from the shipped files.
write_seeds() {
  local seeds="$build/seeds"
  rm -rf "$seeds"
  "$build/fuzz/make_seeds" "$root" "$seeds"
  cp -r "$root/fuzz/seeds/npy" "$root/fuzz/seeds/baseline" "$root/fuzz/seeds/options" "$seeds/"
  cp "$root"/examples/models/*.safetensors "$seeds/model/"
  mkdir -p "$seeds/toy_json" "$seeds/png"
  cp "$root"/examples/toys/*.json "$seeds/toy_json/"
  cp "$root"/examples/images/*.png "$seeds/png/"
}

fuzz_one() {
  local target="$1" seconds="$2"
  shift 2
  local corpus="$build/corpus/$target" artifacts="$build/artifacts/$target"
  mkdir -p "$corpus" "$artifacts"
  local dict=()
  case "$target" in
    model | toy_json) dict=(-dict="$root/fuzz/graph.dict") ;;
    options) dict=(-dict="$root/fuzz/options.dict") ;;
  esac
  echo "fuzz: $target for $seconds s (corpus $corpus, findings in $artifacts)"
  nice -n 10 "$build/fuzz/fuzz_$target" "${dict[@]}" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "$@" "$corpus" "$build/seeds/$target" "$root/fuzz/regressions/$target"
  echo "fuzz: $target done; findings: $(find "$artifacts" -type f | wc -l)"
}

# Every seed and regression file once, no mutation: a fast check that the targets run clean.
smoke_one() {
  local target="$1"
  echo "fuzz: smoke $target"
  "$build/fuzz/fuzz_$target" -runs=0 -timeout=10 -rss_limit_mb=2048 \
    "$build/seeds/$target" "$root/fuzz/regressions/$target"
}

[ $# -ge 1 ] || usage
case "$1" in
  smoke)
    build_targets
    write_seeds
    for t in "${targets[@]}"; do smoke_one "$t"; done
    ;;
  all)
    [ $# -eq 2 ] || usage
    build_targets
    write_seeds
    for t in "${targets[@]}"; do fuzz_one "$t" "$2"; done
    ;;
  *)
    [ $# -ge 2 ] || usage
    [[ " ${targets[*]} " == *" $1 "* ]] || { echo "fuzz: unknown target '$1' (${targets[*]})" >&2; exit 2; }
    build_targets
    write_seeds
    fuzz_one "$@"
    ;;
esac
