#!/usr/bin/env bash
# The quality figures of models/fashion/MODEL_CARD.md as diffuse samples the model: generate --raw writes
# COUNT samples (labels 0-9 in turn, seed 0) per row, then tools/train_fashion.py --score scores them all with
# the model card's classifier (class accuracy, Fréchet distance to the real test set, and the real-vs-real
# baseline of the same size).
#
#   bash tools/measure_fashion.sh [ROW ...]      ROW = sampler:steps:guidance, e.g. flow-euler:10:2
#
# Without rows it measures flow Euler at 5, 10 and 20 steps with guidance 1 and 2. Environment: GENERATE (the
# generate binary, default build/examples/generate), COUNT (default 1000), OUT (default /tmp/fashion-quality),
# THREADS (default: all cores).
set -euo pipefail
cd "$(dirname "$0")/.."
gen=${GENERATE:-build/examples/generate}
count=${COUNT:-1000}
out=${OUT:-/tmp/fashion-quality}
threads=${THREADS:-$(nproc)}
rows=("$@")
((${#rows[@]})) || rows=(flow-euler:5:1 flow-euler:10:1 flow-euler:20:1 flow-euler:5:2 flow-euler:10:2 flow-euler:20:2)
mkdir -p "$out"
files=()
for row in "${rows[@]}"; do
  IFS=: read -r sampler steps guidance <<<"$row"
  file="$out/${sampler}-${steps}-w${guidance}.safetensors"
  "$gen" --model fashion --count "$count" --batch 100 --threads "$threads" --sampler "$sampler" --steps "$steps" \
    --guidance "$guidance" --seed 0 --quiet --output "$out/grid.png" --raw "$file"
  files+=("$file")
done
/usr/bin/python3 tools/train_fashion.py --threads "$threads" --score "${files[@]}"
