#!/usr/bin/env bash
# The main job: installs what is missing, builds the generate example and draws with the shipped
# class-conditional models. Without arguments it writes two pictures: digits.png (models/digits: 4 rows
# of the digits 0-9, DDIM-50 with classifier-free guidance 2) and fashion.png (models/fashion, a
# rectified-flow model of Fashion-MNIST: 4 rows of its ten classes, flow Euler in 10 steps with guidance
# 2). Arguments go to one run of generate instead (see --help; --model fashion picks the second model).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j"$(nproc)" --target generate
if (($#)); then
  exec ./build/examples/generate "$@"
fi
./build/examples/generate
./build/examples/generate --model fashion --output fashion.png
