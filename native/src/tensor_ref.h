// A tensor inside a safetensors file, as the TypeScript loader describes it (native/addon.ts TensorRef).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace loraserve {

enum class DType { F32, F16, BF16 };

struct TensorRef {
  std::string file;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t offset = 0;
  uint64_t nbytes = 0;
};

size_t dtypeSize(DType dtype);
const char* dtypeName(DType dtype);

}  // namespace loraserve
