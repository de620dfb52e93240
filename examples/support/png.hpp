// PNG writing for the examples, through Debian's stb_image_write: encoded in memory, then written
// whole or not at all by diffuse::write_file.
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "diffuse/io/write_file.hpp"

// Each example is one translation unit: the writer is compiled into it, with internal linkage.
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>

namespace examples {

/// An 8-bit RGB canvas.
struct canvas {
  int width = 0, height = 0;
  std::vector<std::uint8_t> rgb;
  canvas(int w, int h, std::uint8_t fill = 255) : width(w), height(h), rgb(static_cast<std::size_t>(w) * h * 3, fill) {}
  void set(int x, int y, std::uint8_t r, std::uint8_t g, std::uint8_t b) {
    if (x < 0 || y < 0 || x >= width || y >= height) return;
    auto* p = &rgb[(static_cast<std::size_t>(y) * width + x) * 3];
    p[0] = r;
    p[1] = g;
    p[2] = b;
  }
  /// Paints a grayscale tile from values in [−1, 1] (clamped), each pixel scaled up `zoom` times.
  template <class T>
  void tile(int x0, int y0, const T* values, int w, int h, int zoom) {
    for (int y = 0; y < h * zoom; ++y)
      for (int x = 0; x < w * zoom; ++x) {
        double v = static_cast<double>(values[(y / zoom) * w + x / zoom]);
        v = v < -1 ? -1 : (v > 1 ? 1 : v);
        const auto g = static_cast<std::uint8_t>((v + 1.0) * 127.5 + 0.5);
        set(x0 + x, y0 + y, g, g, g);
      }
  }
};

/// Encodes the canvas as PNG bytes in memory, so the file itself goes through diffuse::write_file.
inline std::vector<unsigned char> encode_png(const canvas& c) {
  std::vector<unsigned char> out;
  auto sink = [](void* context, void* data, int size) {
    auto* v = static_cast<std::vector<unsigned char>*>(context);
    v->insert(v->end(), static_cast<unsigned char*>(data), static_cast<unsigned char*>(data) + size);
  };
  if (!stbi_write_png_to_func(sink, &out, c.width, c.height, 3, c.rgb.data(), c.width * 3))
    throw std::runtime_error("cannot encode a " + std::to_string(c.width) + "x" + std::to_string(c.height) + " PNG");
  return out;
}

/// Writes the canvas as PNG, whole or not at all; throws (diffuse::error) with the path and cause when it cannot.
inline void write_png(const std::string& path, const canvas& c) { diffuse::write_file(path, encode_png(c)); }

}  // namespace examples
