#!/usr/bin/env bash
# Runs every libFuzzer harness in fuzz/ for a fixed time each (default 600 s), growing a scratch corpus
# in the build directory. Inputs that fail are written as crash-*/leak-*/oom-*/timeout-* files in the
# current directory; minimise one with `<build>/<name>_fuzzer -minimize_crash=1 <file>`, then add the
# minimised input to fuzz/corpus/<name>/ once the bug is fixed.
#
# Inputs may be as large as the readers accept (-max_len at the caps: a safetensors header of up to
# 100 MB, a config of up to 32 MiB), and the scratch corpus is seeded with large generated inputs (a
# header of 100,000 tensors, a config of 100,000 trained betas) so that the size-dependent paths are
# exercised from the start instead of after hours of growth. -malloc_limit_mb / -rss_limit_mb turn an
# allocation out of proportion to the input into a finding: a reader may hold its input and at most 8
# bytes of parsed values per input byte, so 100 MB of input justifies about 1 GB; 2 GB is the limit.
#
#   bash scripts/fuzz-long.sh [seconds-per-harness] [harness...]
# Environment: FUZZ_BUILD_DIR (default build-fuzz), FUZZ_FULL_SIZE=0 for the old 4 KB inputs.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
shift || true
names=("$@")
((${#names[@]})) || names=(safetensors unet_config scheduler_config timesteps)
build=${FUZZ_BUILD_DIR:-build-fuzz}
full=${FUZZ_FULL_SIZE:-1}

bash scripts/install-deps.sh --fuzz
bash scripts/build-fuzzers.sh "$build"

# The largest input each harness is given: the reader's cap (plus the 8-byte length of a safetensors file
# and a little data), or libFuzzer's default for the timestep rules, whose input is a short string.
max_len_of() {
  case $1 in
    safetensors) echo $((100000000 + 8 + 65536)) ;;
    unet_config | scheduler_config) echo $((32 * 1024 * 1024)) ;;
    *) echo 4096 ;;
  esac
}

# Large valid seeds, written into the scratch corpus (never into fuzz/corpus/, which stays small).
seed_large() {
  local name=$1 dir=$2
  python3 - "$name" "$dir" <<'EOF'
import json, struct, sys
name, out = sys.argv[1], sys.argv[2]
def safetensors(n, path):
    header = {f"down_blocks.{i}.weight": {"dtype": "F32", "shape": [1], "data_offsets": [4 * i, 4 * i + 4]} for i in range(n)}
    text = json.dumps(header, separators=(",", ":")).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + bytes(4 * n))
if name == "safetensors":
    safetensors(10_000, f"{out}/large-10k-tensors")
    safetensors(100_000, f"{out}/large-100k-tensors")
elif name == "scheduler_config":
    with open(f"{out}/large-100k-betas", "w") as f:
        json.dump({"num_train_timesteps": 100_000, "trained_betas": [1e-4 + i * 1e-9 for i in range(100_000)]}, f)
elif name == "unet_config":
    with open(f"{out}/large-padded", "w") as f:
        f.write('{"in_channels": 3,' + " " * 1_000_000 + '"out_channels": 3}')
EOF
}

status=0
for name in "${names[@]}"; do
  scratch="$build/long-corpus/$name"
  mkdir -p "$scratch"
  size_flags=()
  if [[ $full == 1 ]]; then
    seed_large "$name" "$scratch"
    size_flags=(-max_len="$(max_len_of "$name")")
  fi
  echo "== $name: $seconds s ${size_flags[*]}"
  # -timeout=60: a full-size input takes a few seconds under ASan; a minute means a hang.
  "$build/${name}_fuzzer" -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=60 \
    "${size_flags[@]}" -dict="fuzz/$name.dict" -print_final_stats=1 "$scratch" "fuzz/corpus/$name" || status=1
done
exit $status
