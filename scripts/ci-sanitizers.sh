#!/usr/bin/env bash
# Builds the unit-test programs with AddressSanitizer and UndefinedBehaviorSanitizer and runs them.
#
# Only the test_<topic> executables are built (no examples, benchmarks or packaging tests) and only they
# are run: ctest -R '^test_' leaves out the packaging tests and the ddpm-cifar10-32 parity test (its
# 35.7M-parameter fixture comes from PyTorch and takes minutes under ASan; the Release run covers it).
# Any report is fatal (-fno-sanitize-recover=all, halt_on_error), so a clean exit means a clean run.
#
#   bash scripts/ci-sanitizers.sh [build-dir]      default build dir: build-asan
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-asan}
jobs=${JOBS:-$(nproc)}
start=$(date +%s)

bash scripts/install-deps.sh
# float-cast-overflow is not part of GCC's -fsanitize=undefined; a double → int conversion out of range
# is exactly the kind of bug hostile config values provoke, so it is asked for by name.
sanitize="-fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all -fno-omit-frame-pointer"
# -O1: fast enough to run the statistical sampler tests, and keeps stack traces readable.
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE= -DCMAKE_CXX_FLAGS="-O1 -g1 $sanitize" \
      -DCMAKE_EXE_LINKER_FLAGS="$sanitize" -DDIFFUSE_BUILD_EXAMPLES=OFF -DDIFFUSE_BUILD_BENCHMARKS=OFF \
      -DDIFFUSE_NATIVE=OFF >/dev/null

# The unit-test programs are the ctest tests named test_* (each built by the target of that name), the
# heaviest first so that two compilations at a time finish together.
targets=(test_unet test_samplers test_determinism test_bad_input_catalogue)
for name in $(ctest --test-dir "$build" -N -R '^test_' | awk '/Test +#/ {print $3}'); do
  [[ " ${targets[*]} " == *" $name "* ]] || targets+=("$name")
done
# CMake's Makefiles build the targets named in one call one after another (each test is one source
# file), so each test gets its own call, $jobs at a time, once the shared doctest main is built.
cmake --build "$build" --target diffuse_test_main
printf '%s\n' "${targets[@]}" | xargs -P "$jobs" -I{} cmake --build "$build" --target {}
built=$(date +%s)

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# Threads that sleep at barriers instead of spinning: the thread-count tests run 2 and 3 threads, which
# on a busy 2-core CI machine would otherwise spin against each other for whole time slices.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
ctest --test-dir "$build" -R '^test_' --output-on-failure -j"$jobs" --timeout 900
end=$(date +%s)
echo "sanitizers: build $((built - start)) s, tests $((end - built)) s, total $((end - start)) s"
