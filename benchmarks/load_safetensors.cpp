// Loads one safetensors file and prints its tensor count and the load time: run under
// `/usr/bin/time -v` for the peak memory of a load (scripts/measure-parse.sh does, for headers from
// 1 MB to the 100 MB cap).
//
//   ./build/benchmarks/load_safetensors FILE
#include <chrono>
#include <cstdio>
#include <exception>

#include "diffuse/io/safetensors.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: load_safetensors FILE\n");
    return 2;
  }
  try {
    const auto start = std::chrono::steady_clock::now();
    const auto f = diffuse::safetensors_file::load(argv[1]);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("%zu tensors, %.3f s\n", f.size(), s);
  } catch (const std::exception& e) {
    std::printf("refused: %s\n", e.what());
    return 1;
  }
  return 0;
}
