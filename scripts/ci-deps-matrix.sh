#!/usr/bin/env bash
# The dependency matrix: builds the unit tests against the xsimd and Eigen releases users get from
# vcpkg and ConanCenter (headers in ../shared/deps, see its README; the newest pair runs the tests, the
# middle xsimd release compiles every public header and the digest), runs them, and requires the exact
# bits of noise, steps, a sampling loop and UNet forwards (tests/digest/bits_digest.cpp) to equal those
# of the Debian build (xsimd 8.1 + Eigen 3.4, build/ from scripts/test.sh). Then checks that a release
# outside the supported range is refused at configure time with a message naming it and the range.
#
# Usage: bash scripts/ci-deps-matrix.sh [DEPS_DIR]   (default: ../shared/deps beside the checkout)
# Environment: JOBS (default nproc).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
deps=${1:-$root/../shared/deps}
jobs=${JOBS:-$(nproc)}
if [ ! -d "$deps/xsimd-14.3.0" ]; then
  if [ "${CI:-}" = true ]; then echo "ci-deps-matrix: no $deps/xsimd-14.3.0; CI needs the dependency headers" >&2; exit 1; fi
  echo "ci-deps-matrix: no $deps (the headers of newer xsimd and Eigen releases); skipped"; exit 0
fi
deps=$(cd "$deps" && pwd)
[ -x build/tests/bits_digest ] || { cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build -j"$jobs" --target bits_digest; }
build/tests/bits_digest > build/bits_digest.txt
echo "Debian (xsimd 8.1, Eigen 3.4):"; cat build/bits_digest.txt

# Every unit-test program (tests/test_*.cpp) and the digest; examples, benchmarks and the packaging
# checks need nothing version-specific and run once, in build/.
# Every unit test whose code reaches xsimd or Eigen, as the Debian build's dependency files say (a test of
# file reading or error text alone gives the same result with any release of either, so it is not built
# again); every unit test when those files are missing.
targets=(bits_digest)
for f in tests/test_*.cpp; do
  n=$(basename "$f" .cpp)
  [ "$n" = test_main ] && continue
  d=build/tests/CMakeFiles/$n.dir/$n.cpp.o.d
  if [ -f "$d" ] && ! grep -q -E 'xsimd|eigen3|/Eigen/' "$d"; then continue; fi
  targets+=("$n")
done
echo "unit tests built against each release: ${targets[*]:1}"

build_combo() {  # dir, targets..., -- configure options
  local dir=$1; shift
  local t=()
  while [ "$1" != -- ]; do t+=("$1"); shift; done; shift
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DDIFFUSE_BUILD_EXAMPLES=OFF "$@" | grep "diffuse:"
  cmake --build "$dir" -j"$jobs" --target "${t[@]}" > "$dir/build.log" 2>&1 || { tail -50 "$dir/build.log"; exit 1; }
}
run_combo() {  # name, then configure options: every unit test, then the digest
  local name=$1; shift
  local dir=build-deps/$name
  echo; echo "== $name"
  build_combo "$dir" "${targets[@]}" -- "$@"
  local regex="^($(IFS='|'; echo "${targets[*]}"))\$"
  ctest --test-dir "$dir" -R "$regex" -j"$jobs" --output-on-failure | tail -3
  "$dir/tests/bits_digest" > "$dir/bits_digest.txt"
}
digest_combo() {  # name, then configure options: every public header compiled alone, then the digest
  local name=$1; shift
  local dir=build-deps/$name
  echo; echo "== $name (every public header alone, and the digest)"
  build_combo "$dir" bits_digest diffuse_headers_alone -- "$@"
  "$dir/tests/bits_digest" > "$dir/bits_digest.txt"
}
# same_lines <a> <b> <grep -E pattern> <what>: the lines of two digests that match the pattern are equal.
same_lines() {
  if ! diff <(grep -E "$3" "$1") <(grep -E "$3" "$2"); then
    echo "ci-deps-matrix: FAIL: $4 (lines above: < $1, > $2)" >&2
    exit 1
  fi
  echo "ok: $4"
}

# xsimd 13.2 with Debian's Eigen 3.4: every header compiles and every bit is as with xsimd 8.1. (The unit
# tests run against 14.3 below, the release furthest from Debian's; between the two ends the digest of
# every kernel's bits is the check.)
digest_combo xsimd-13.2-eigen-3.4 -DDIFFUSE_XSIMD_INCLUDE_DIR="$deps/xsimd-13.2.0/include"
same_lines build/bits_digest.txt build-deps/xsimd-13.2-eigen-3.4/bits_digest.txt . "xsimd 13.2 gives the bits of xsimd 8.1 (Eigen 3.4)"

# xsimd 14.3 with Eigen 5.0.1 (vcpkg's pair): noise, steps and sampling loops bit for bit; the UNet bit
# for bit as with xsimd 8.1 on the same Eigen 5.0.1 (its digest alone is built for that); against Eigen
# 3.4 the UNet layers that still use Eigen's matrix products may round differently (docs/howto/
# reproducibility.md): that difference is measured and bounded instead.
run_combo xsimd-14.3-eigen-5.0.1 -DDIFFUSE_XSIMD_INCLUDE_DIR="$deps/xsimd-14.3.0/include" -DDIFFUSE_EIGEN_INCLUDE_DIR="$deps/eigen-5.0.1"
same_lines build/bits_digest.txt build-deps/xsimd-14.3-eigen-5.0.1/bits_digest.txt '^(noise|ddim|ddpm)' \
  "xsimd 14.3 + Eigen 5.0.1: noise, steps and loops give the bits of xsimd 8.1 + Eigen 3.4"
echo; echo "== xsimd-8.1-eigen-5.0.1 (the digest only)"
build_combo build-deps/xsimd-8.1-eigen-5.0.1 bits_digest -- -DDIFFUSE_EIGEN_INCLUDE_DIR="$deps/eigen-5.0.1"
build-deps/xsimd-8.1-eigen-5.0.1/tests/bits_digest > build-deps/xsimd-8.1-eigen-5.0.1/bits_digest.txt
same_lines build-deps/xsimd-8.1-eigen-5.0.1/bits_digest.txt build-deps/xsimd-14.3-eigen-5.0.1/bits_digest.txt . \
  "xsimd 14.3 gives the bits of xsimd 8.1 (Eigen 5.0.1)"
echo "UNet outputs, Eigen 5.0.1 against Eigen 3.4 (largest difference relative to the largest value):"
rm -rf build-deps/dump-3.4 build-deps/dump-5.0 && mkdir -p build-deps/dump-3.4 build-deps/dump-5.0
build/tests/bits_digest --dump build-deps/dump-3.4 > /dev/null
build-deps/xsimd-14.3-eigen-5.0.1/tests/bits_digest --dump build-deps/dump-5.0 > /dev/null
/usr/bin/python3 - build-deps/dump-3.4 build-deps/dump-5.0 <<'PY'
import os, sys
import numpy as np
a_dir, b_dir = sys.argv[1:]
bad = 0
for f in sorted(os.listdir(a_dir)):
    if not f.startswith("unet"):
        continue
    single = f.endswith(".f32")
    a = np.fromfile(os.path.join(a_dir, f), np.float32 if single else np.float64).astype(np.float64)
    b = np.fromfile(os.path.join(b_dir, f), np.float32 if single else np.float64).astype(np.float64)
    rel = float(np.abs(a - b).max() / np.abs(a).max())
    bound = 2e-6 if single else 1e-13   # a few float ulps / double ulps of the largest output
    print(f"  {f[:-4]:40s} {rel:.3g} (bound {bound:g})")
    bad += not rel <= bound
sys.exit(1 if bad else 0)
PY

echo; echo "== releases outside the range are refused at configure time"
fake=$(mktemp -d)
trap 'rm -rf "$fake"' EXIT
refuse() {  # what, expected message fragment, then configure options
  local what=$1 expect=$2; shift 2
  if cmake -S . -B "$fake/build-$what" -DDIFFUSE_BUILD_TESTS=OFF -DDIFFUSE_BUILD_EXAMPLES=OFF "$@" > "$fake/$what.log" 2>&1; then
    echo "ci-deps-matrix: FAIL: $what was accepted" >&2; exit 1
  fi
  grep -q "$expect" "$fake/$what.log" || { cat "$fake/$what.log"; echo "ci-deps-matrix: FAIL: no \"$expect\" in the message" >&2; exit 1; }
  echo "ok: $what refused: $(grep -o "diffuse supports.*" "$fake/$what.log" | head -1)"
}
for v in "15 0 0" "8 0 0"; do
  read -r major minor patch <<< "$v"
  mkdir -p "$fake/xsimd-$major.$minor/xsimd/config"
  printf '#define XSIMD_VERSION_MAJOR %s\n#define XSIMD_VERSION_MINOR %s\n#define XSIMD_VERSION_PATCH %s\n' "$major" "$minor" "$patch" \
    > "$fake/xsimd-$major.$minor/xsimd/config/xsimd_config.hpp"
  refuse "xsimd-$major.$minor" "supports xsimd 8.1 up to (not including) 15; found xsimd $major.$minor.$patch" \
    -DDIFFUSE_XSIMD_INCLUDE_DIR="$fake/xsimd-$major.$minor"
done
mkdir -p "$fake/eigen-5.1/Eigen"
touch "$fake/eigen-5.1/Eigen/Core"
printf '#define EIGEN_MAJOR_VERSION 5\n#define EIGEN_MINOR_VERSION 1\n#define EIGEN_PATCH_VERSION 0\n' > "$fake/eigen-5.1/Eigen/Version"
refuse eigen-5.1 "supports Eigen 3.4 up to (not including) 5.1; found Eigen 5.1.0" -DDIFFUSE_EIGEN_INCLUDE_DIR="$fake/eigen-5.1"
echo; echo "ci-deps-matrix: all combinations passed"
