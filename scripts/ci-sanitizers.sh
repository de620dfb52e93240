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
# -O1 runs the tests at a usable speed; -g0 saves CI build time (reports still name functions, from the
# symbol table; rebuild with -g to get file and line).
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE= -DCMAKE_CXX_FLAGS="-O1 -g0 $sanitize" \
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

# detect_stack_use_after_return is left off: it gives every call a heap frame, and the SIMD kernels are
# thousands of tiny inlined calls at -O1 (it made the step tests 200x slower than Release).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# Threads that sleep at barriers instead of spinning: the thread-count tests run 2 and 3 threads, which
# on a busy 2-core CI machine would otherwise spin against each other for whole time slices.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
# Every test program, every test case, except two kinds whose value is in their volume, not in new code
# paths: the exhaustive vector-versus-scalar bit sweeps (the same kernels run under the sanitizers in
# the reference-fixture and NaN cases) and the statistical mixture runs of thousands of samples (the
# same loops run in the determinism and small sampler cases). The Release run executes both in full.
exclude="*scalar reference's bits*,*reproduce a*mixture*"
programs=$(ctest --test-dir "$build" -N -R '^test_' | sed -n 's/^ *Test *#[0-9]*: \(test_[a-z0-9_]*\)$/\1/p')
status=0
printf '%s\n' $programs | xargs -P "$jobs" -I{} sh -c \
  'out=$("$1/tests/$2" --test-case-exclude="$3" 2>&1); rc=$?; echo "$out" | tail -n 3 | sed "s/^/$2: /"; exit $rc' \
  _ "$build" {} "$exclude" || status=$?
end=$(date +%s)
echo "sanitizers: build $((built - start)) s, tests $((end - built)) s, total $((end - start)) s"
exit $status
