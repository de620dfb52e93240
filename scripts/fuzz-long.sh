#!/usr/bin/env bash
# Runs every libFuzzer harness in fuzz/ for a fixed time each (default 600 s), growing a scratch corpus
# in the build directory. Inputs that fail are written as crash-*/leak-*/oom-*/timeout-* files in the
# current directory; minimise one with `<build>/<name>_fuzzer -minimize_crash=1 <file>`, then add the
# minimised input to fuzz/corpus/<name>/ once the bug is fixed.
#
#   bash scripts/fuzz-long.sh [seconds-per-harness] [harness...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
shift || true
names=("$@")
((${#names[@]})) || names=(safetensors unet_config scheduler_config timesteps)
build=${FUZZ_BUILD_DIR:-build-fuzz}

bash scripts/install-deps.sh --fuzz
bash scripts/build-fuzzers.sh "$build"
status=0
for name in "${names[@]}"; do
  scratch="$build/long-corpus/$name"
  mkdir -p "$scratch"
  echo "== $name: $seconds s"
  "$build/${name}_fuzzer" -max_total_time="$seconds" -rss_limit_mb=1024 -malloc_limit_mb=512 -timeout=10 \
    -dict="fuzz/$name.dict" -print_final_stats=1 "$scratch" "fuzz/corpus/$name" || status=1
done
exit $status
