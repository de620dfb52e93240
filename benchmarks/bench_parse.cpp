// Parsing untrusted headers and configs: a safetensors header of 1,000 to 900,000 tensors (93 KB to
// 91 MB, near the 100 MB cap) parsed from memory, and a scheduler_config.json of 1,000 to 1,000,000
// trained betas. bytes_per_second is header (or config) bytes parsed per second; the time is linear in
// the size (the callback parser these readers used before took 17 s for 40,000 tensors and minutes for
// 100,000).
//
//   ./build/benchmarks/bench_parse --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>
#include <vector>

#include "diffuse/io/safetensors.hpp"
#include "diffuse/io/scheduler_config.hpp"

namespace {

// A file of `n` one-element U8 tensors named as diffusers names a UNet's parameters.
std::vector<unsigned char> safetensors_image(std::int64_t n, std::size_t& header_bytes) {
  std::string h = "{";
  for (std::int64_t i = 0; i < n; ++i) {
    if (i) h += ",";
    h += "\"down_blocks." + std::to_string(i) + ".resnets.0.conv1.weight\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[" +
         std::to_string(i) + "," + std::to_string(i + 1) + "]}";
  }
  h += "}";
  header_bytes = h.size();
  std::vector<unsigned char> out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<unsigned char>(static_cast<std::uint64_t>(h.size()) >> (8 * i)));
  out.insert(out.end(), h.begin(), h.end());
  out.resize(out.size() + static_cast<std::size_t>(n), 0);
  return out;
}

void BM_safetensors_header(benchmark::State& state) {
  std::size_t header_bytes = 0;
  const auto image = safetensors_image(state.range(0), header_bytes);
  for (auto _ : state) {
    auto copy = image;  // from_bytes takes the bytes; the copy is a memcpy, small beside the parse
    auto f = diffuse::safetensors_file::from_bytes(std::move(copy));
    benchmark::DoNotOptimize(f.size());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * header_bytes));
  state.counters["header_MB"] = static_cast<double>(header_bytes) / 1e6;
  state.counters["tensors/s"] = benchmark::Counter(static_cast<double>(state.iterations() * state.range(0)), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_safetensors_header)->Arg(1'000)->Arg(10'000)->Arg(100'000)->Arg(900'000)->Unit(benchmark::kMillisecond);

void BM_scheduler_config_betas(benchmark::State& state) {
  std::string text = "{\"num_train_timesteps\": " + std::to_string(state.range(0)) + ", \"trained_betas\": [";
  for (std::int64_t i = 0; i < state.range(0); ++i) text += (i ? ", " : "") + std::to_string(1e-4 + 1e-12 * static_cast<double>(i));
  text += "]}";
  for (auto _ : state) {
    auto c = diffuse::scheduler_config::from_json(text);
    benchmark::DoNotOptimize(c.num_train_timesteps());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * text.size()));
  state.counters["config_MB"] = static_cast<double>(text.size()) / 1e6;
}
BENCHMARK(BM_scheduler_config_betas)->Arg(1'000)->Arg(100'000)->Arg(1'000'000)->Unit(benchmark::kMillisecond);

}  // namespace
