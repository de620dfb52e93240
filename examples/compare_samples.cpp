// compare_samples: checks that shards (or MPI ranks) of a generation reproduce a single run bit for bit.
//
//   ./build/examples/compare_samples whole.safetensors part0.safetensors part1.safetensors ...
//
// Each file is what `generate --raw` writes: samples (n, C, H, W), labels (n) and global indices (n).
// Every sample of the parts must equal the sample of the same global index in the whole run, bit for
// bit, and together the parts must cover the whole run exactly once.
//
//   ./build/examples/compare_samples --tolerance 2e-3 reference.safetensors other.safetensors
//
// compares two runs of different networks instead: every value within the given absolute difference
// (the largest difference is printed).
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <iostream>
#include <map>
#include <vector>

#include "diffuse/io/safetensors.hpp"

int main(int argc, char** argv) {
  double tolerance = 0;  // 0: bit for bit
  if (argc >= 3 && std::string(argv[1]) == "--tolerance") {
    char* end = nullptr;
    tolerance = std::strtod(argv[2], &end);
    if (end == argv[2] || *end != '\0' || !(tolerance >= 0) || !std::isfinite(tolerance)) {
      std::cerr << "compare_samples: --tolerance " << argv[2] << " is not a number >= 0\n";
      return 2;
    }
    argv += 2;
    argc -= 2;
  }
  if (argc < 3) {
    std::cerr << "usage: compare_samples [--tolerance ABS] whole.safetensors part.safetensors...\n";
    return 2;
  }
  try {
    struct item {
      std::vector<float> values;
      std::int64_t label;
    };
    auto read = [](const char* path) {
      const auto f = diffuse::safetensors_file::load(path);
      const auto samples = f.read<float>("samples");
      const auto labels = f.read<std::int64_t>("labels"), indices = f.read<std::int64_t>("indices");
      const std::size_t n = indices.size(), per = n ? samples.size() / n : 0;
      std::map<std::int64_t, item> out;
      for (std::size_t i = 0; i < n; ++i)
        out[indices[i]] = {std::vector<float>(samples.begin() + i * per, samples.begin() + (i + 1) * per), labels[i]};
      return out;
    };
    const auto whole = read(argv[1]);
    std::map<std::int64_t, item> parts;
    for (int a = 2; a < argc; ++a)
      for (auto& [k, v] : read(argv[a]))
        if (!parts.emplace(k, v).second) {
          std::cerr << "compare_samples: index " << k << " appears in more than one part\n";
          return 1;
        }
    if (parts.size() != whole.size()) {
      std::cerr << "compare_samples: the parts hold " << parts.size() << " samples; the whole run " << whole.size() << "\n";
      return 1;
    }
    double worst = 0;
    for (const auto& [k, v] : whole) {
      const auto it = parts.find(k);
      if (it == parts.end() || it->second.label != v.label || it->second.values.size() != v.values.size()) {
        std::cerr << "compare_samples: sample " << k << " is missing or has another label or size\n";
        return 1;
      }
      const auto& a = it->second.values;
      if (tolerance == 0 && std::memcmp(a.data(), v.values.data(), a.size() * sizeof(float)) != 0) {
        std::cerr << "compare_samples: sample " << k << " differs\n";
        return 1;
      }
      for (std::size_t i = 0; i < a.size(); ++i) {
        const double d = std::abs(static_cast<double>(a[i]) - v.values[i]);
        if (!(d <= worst)) worst = std::isnan(d) ? HUGE_VAL : d;
      }
    }
    if (tolerance == 0) {
      std::cout << whole.size() << " samples bit-identical\n";
      return 0;
    }
    std::cout << whole.size() << " samples, largest difference " << worst << " (tolerance " << tolerance << ")\n";
    return worst <= tolerance ? 0 : 1;
  } catch (const std::exception& e) {
    std::cerr << "compare_samples: " << e.what() << "\n";
    return 1;
  }
}
