#!/usr/bin/env bash
# Installs what diffuse's build, tests and examples need on Debian 12 / Ubuntu, and nothing else.
# Packages already present are left alone, so running it twice is cheap.
set -euo pipefail
packages=(cmake g++ make libeigen3-dev libxsimd-dev doctest-dev libbenchmark-dev
          nlohmann-json3-dev libcli11-dev libstb-dev libopenmpi-dev openmpi-bin)
if [[ "${1:-}" == "--python" ]]; then
  # Only the reference-fixture and training scripts in tools/ need these; libjemalloc2 is the allocator
  # tools/compare_steps.py preloads for PyTorch.
  # libtorch-dev: the libtorch_generate example and its test (a real runtime driving diffuse's sampler).
  # dataset-fashion-mnist: the training set of models/fashion (tools/train_fashion.py); python3-scipy: its Fréchet distance.
  packages+=(python3-torch python3-numpy python3-sklearn python3-scipy libopenblas0-openmp libjemalloc2 libtorch-dev dataset-fashion-mnist)
fi
if [[ " $* " == *" --fuzz "* ]]; then
  # Only the libFuzzer harnesses (scripts/ci-fuzz.sh, scripts/fuzz-long.sh) need clang and its runtimes.
  packages+=(clang libclang-rt-14-dev)
fi
if [[ " $* " == *" --docs "* ]]; then
  # Only the API reference (scripts/ci-docs.sh) needs Doxygen.
  packages+=(doxygen)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo_cmd=()
  [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
  echo "installing: ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
