#!/usr/bin/env bash
# Installs what is missing, builds everything (tests and examples, benchmarks compiled only)
# and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
# --python: the PyTorch reference the 35.7M-parameter UNet parity test generates its fixture with.
bash scripts/install-deps.sh --python
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DDIFFUSE_BUILD_BENCHMARKS=ON
cmake --build build -j"$(nproc)"
ctest --test-dir build --output-on-failure -j"$(nproc)"
