// A tensor inside a safetensors file, as the TypeScript loader describes it (native/addon.ts TensorRef).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dtype.h"

namespace loraserve {

struct TensorRef {
  std::string file;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t offset = 0;
  uint64_t nbytes = 0;
};

}  // namespace loraserve
