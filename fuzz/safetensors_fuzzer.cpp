// libFuzzer harness for the safetensors reader: arbitrary bytes as a whole file.
//
// An accepted file must describe only tensors that lie inside it, so every tensor is then read in
// full (as float or int64, as its dtype allows): an out-of-range offset or a wrapped size would be an
// out-of-bounds read that AddressSanitizer reports.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common.hpp"
#include "diffuse/io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto file = diffuse::safetensors_file::from_bytes(std::vector<unsigned char>(data, data + size), "fuzz.safetensors");
    const std::size_t data_bytes = size;  // an upper bound of the data section
    for (const auto& name : file.names()) {
      const auto& info = file.info(name);
      fuzz::require(info.begin <= info.end && info.end <= data_bytes, "tensor range inside the file");
      fuzz::require(info.numel() * diffuse::dtype_size(info.dtype) == info.end - info.begin, "tensor bytes match its shape");
      switch (info.dtype) {
        case diffuse::tensor_dtype::f64: case diffuse::tensor_dtype::f32:
        case diffuse::tensor_dtype::f16: case diffuse::tensor_dtype::bf16:
          fuzz::require(file.read<float>(name).size() == info.numel(), "read<float> size");
          break;
        case diffuse::tensor_dtype::boolean:
          break;  // no arithmetic read for BOOL
        default:
          fuzz::require(file.read<std::int64_t>(name).size() == info.numel(), "read<int64> size");
      }
    }
  } catch (const diffuse::error&) {
  }
  return 0;
}
