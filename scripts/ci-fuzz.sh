#!/usr/bin/env bash
# Builds the libFuzzer harnesses in fuzz/ (clang, with AddressSanitizer and UndefinedBehaviorSanitizer)
# and runs each for a bounded number of inputs from its seed corpus in fuzz/corpus/<name>/: a smoke test
# that every reader survives mutated files. A crash, leak, sanitizer report or uncaught exception fails.
#
#   bash scripts/ci-fuzz.sh [runs-per-harness]     default 20000
#
# The corpus in git is never modified: new inputs go to a scratch corpus in the build directory.
# scripts/fuzz-long.sh runs the same harnesses for a fixed time instead.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20000}
build=${FUZZ_BUILD_DIR:-build-fuzz}
start=$(date +%s)

bash scripts/install-deps.sh --fuzz
bash scripts/build-fuzzers.sh "$build"
built=$(date +%s)

for name in safetensors unet_config scheduler_config timesteps; do
  scratch="$build/corpus/$name"
  rm -rf "$scratch" && mkdir -p "$scratch"
  echo "== $name: $runs runs"
  # -rss_limit_mb: a harness that allocates more than a hostile input could justify is a finding too.
  "$build/${name}_fuzzer" -runs="$runs" -seed=1 -rss_limit_mb=1024 -malloc_limit_mb=512 -timeout=10 \
    -dict="fuzz/$name.dict" -print_final_stats=1 "$scratch" "fuzz/corpus/$name" 2>&1 | tail -n 12
done
end=$(date +%s)
echo "fuzz smoke: build $((built - start)) s, runs $((end - built)) s, total $((end - start)) s"
