#!/usr/bin/env bash
# The main job: installs what is missing, builds the generate example and draws digits with the
# shipped class-conditional model (models/digits). Arguments go to generate (see --help); without
# any it writes digits.png: 4 rows of the digits 0-9, DDIM-50 with classifier-free guidance 2.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j"$(nproc)" --target generate
./build/examples/generate "$@"
