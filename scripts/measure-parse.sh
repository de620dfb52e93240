#!/usr/bin/env bash
# Parse time and peak memory of safetensors loads against header size, from 1 MB to the 100 MB cap, for
# docs/howto/untrusted-files.md: generates files of one-element tensors (and one hostile header, a
# single 60 MB shape array), loads each with build/benchmarks/load_safetensors under /usr/bin/time -v,
# and prints header size, tensors, load time and maximum resident set size.
#
#   bash scripts/measure-parse.sh [build-dir]     default build (configured with -DDIFFUSE_BUILD_BENCHMARKS=ON)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
[[ -x $build/benchmarks/load_safetensors ]] || cmake --build "$build" --target load_safetensors
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$work" <<'PY'
import struct, sys
out = sys.argv[1]
entry = '"down_blocks.{0}.resnets.0.conv1.weight":{{"dtype":"U8","shape":[1],"data_offsets":[{0},{1}]}}'
for mb in (1, 10, 30, 60, 99):
    parts, size, i = [], 2, 0
    while True:
        e = entry.format(i, i + 1)
        if size + len(e) + 1 > mb * 1_000_000: break
        parts.append(e); size += len(e) + 1; i += 1
    text = ("{" + ",".join(parts) + "}").encode()
    with open(f"{out}/h{mb:03d}MB.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + bytes(i))
text = ('{"w":{"dtype":"U8","data_offsets":[0,0],"shape":[' + ",".join(["1"] * 30_000_000) + ']}}').encode()
with open(f"{out}/shape060MB.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text)
PY
lscpu | grep -m1 "Model name" || true
printf "%-24s %12s %10s   %s\n" file "header bytes" "max RSS MB" result
for f in "$work"/*.safetensors; do
  header=$(python3 -c "import struct,sys; print(struct.unpack('<Q', open(sys.argv[1],'rb').read(8))[0])" "$f")
  result=$( { /usr/bin/time -v "$build/benchmarks/load_safetensors" "$f" 2> "$work/time.txt" || true; } | cut -c1-60)
  rss=$(awk '/Maximum resident set size/ {printf "%.1f", $6 / 1024}' "$work/time.txt")
  printf "%-24s %12s %10s   %s\n" "$(basename "$f")" "$header" "$rss" "$result"
done
