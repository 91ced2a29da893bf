// A dense row-major float32 matrix in host memory, and how to read one (or a window of one) from a file.
#pragma once

#include <cstdint>
#include <vector>

#include "safetensors_view.h"

namespace loraserve {

struct HostMatrix {
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<float> data;

  size_t bytes() const { return data.size() * sizeof(float); }
};

// rows x cols of a 2-D tensor already checked with checkTensorRef.
HostMatrix readMatrix(const MappedFile& file, const TensorRef& ref, IndexRange rows, IndexRange cols);

}  // namespace loraserve
