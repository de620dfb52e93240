#!/usr/bin/env bash
# Compiles each fuzz/<name>_fuzzer.cpp into <build-dir>/<name>_fuzzer with clang's libFuzzer,
# AddressSanitizer and UndefinedBehaviorSanitizer (every report fatal). Used by ci-fuzz.sh and fuzz-long.sh.
#
#   bash scripts/build-fuzzers.sh [build-dir]      default build-fuzz
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-fuzz}
mkdir -p "$build"
cxx=$(command -v clang++-14 || command -v clang++)
flags=(-std=c++20 -O1 -g -fno-omit-frame-pointer -ffp-contract=off
       -fsanitize=fuzzer,address,undefined,float-divide-by-zero -fno-sanitize-recover=all
       -Iinclude -Ifuzz)
pids=()
for src in fuzz/*_fuzzer.cpp; do
  name=$(basename "$src" .cpp)
  out="$build/$name"
  # Rebuild only when the harness or a library header is newer than the binary.
  if [[ -x $out && -z $(find "$src" fuzz/common.hpp include -newer "$out" -print -quit) ]]; then continue; fi
  "$cxx" "${flags[@]}" "$src" -o "$out" &
  pids+=($!)
  # Two compilations at a time.
  if ((${#pids[@]} >= 2)); then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
done
for p in "${pids[@]}"; do wait "$p"; done
