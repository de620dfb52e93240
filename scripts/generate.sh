#!/usr/bin/env bash
# Installs what is missing, builds the main example and runs it; arguments go to the example.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)" --target forward
./build/examples/forward "$@"
