#!/usr/bin/env bash
# Compile time of the entry include: times `g++ -O2 -std=c++20 -c` of a file that includes
# <diffuse/ddpm.hpp> and runs one DDIM loop (a schedule, a timestep list, fill_initial_noise and
# sample() around a lambda model), five times, and prints the median. The target is <= 3 s: users
# who bring their own network should not pay for the reference UNet or Eigen's Tensor module.
#   bash scripts/compile-time.sh [--runs N] [--max SECONDS]   (exit 1 when the median CPU time exceeds --max)
# Environment: CXX (default g++), CXXFLAGS added after -O2 -std=c++20.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
runs=5
max=""
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --max) max=$2; shift 2 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "compile-time: unknown argument $1" >&2; exit 2 ;;
  esac
done
cxx=${CXX:-g++}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/ddim_loop.cpp" <<'CPP'
#include <diffuse/ddpm.hpp>

#include <span>
#include <vector>

int main() {
  const auto schedule = diffuse::noise_schedule::cosine(1000);
  const diffuse::ddim_sampler sampler(schedule, diffuse::make_timesteps(1000, 50, diffuse::timestep_spacing::trailing));
  const diffuse::sample_shape shape{.batch = 4, .channels = 3, .spatial = 32 * 32};
  auto model = [](std::span<const float> x_t, int t, std::span<float> out) {
    for (std::size_t i = 0; i < x_t.size(); ++i) out[i] = 0.001f * static_cast<float>(t) * x_t[i];
  };
  std::vector<float> x(shape.numel());
  diffuse::fill_initial_noise<float>(x, shape, 42);
  diffuse::sample(sampler, model, std::span<float>(x), shape, {.seed = 42});
  return x[0] == x[0] ? 0 : 1;
}
CPP
# Both wall time and CPU time (user + sys of the compiler) are measured; the figure and the limit use
# CPU time, since on a shared machine wall time measures the other jobs as much as the compiler.
wall=() cpu=()
TIMEFORMAT='%R %U %S'
for ((i = 0; i < runs; ++i)); do
  # shellcheck disable=SC2086
  { time "$cxx" -O2 -std=c++20 ${CXXFLAGS:-} -I"$root/include" -c "$work/ddim_loop.cpp" -o "$work/ddim_loop.o" 2> "$work/stderr"; } 2> "$work/time"
  [ -s "$work/stderr" ] && { cat "$work/stderr" >&2; exit 1; }
  read -r r u s < "$work/time"
  wall+=("$r")
  cpu+=("$(awk -v u="$u" -v s="$s" 'BEGIN {printf "%.2f", u + s}')")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
cpu_median=$(median "${cpu[@]}")
wall_median=$(median "${wall[@]}")
printf 'compile-time: #include <diffuse/ddpm.hpp> + one DDIM loop, %s -O2 -std=c++20, median of %d: %.2f s CPU (runs: %s), %.2f s wall\n' \
  "$cxx" "$runs" "$cpu_median" "${cpu[*]}" "$wall_median"
if [ -n "$max" ] && awk -v m="$cpu_median" -v x="$max" 'BEGIN {exit !(m > x)}'; then
  echo "compile-time: the median CPU time exceeds the limit of $max s" >&2
  exit 1
fi
