// One LoRA adapter as file references (native/addon.ts AdapterWeights).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "lora_target.h"
#include "tensor_ref.h"

namespace loraserve {

struct LoraPairRef {
  int layer = 0;
  LoraTarget target = LoraTarget::Q;
  TensorRef a;  // [rank, in]
  TensorRef b;  // [out, rank]
};

// A file's contents already in host memory, owned by the caller for as long as the load runs.
struct BorrowedBytes {
  const uint8_t* data = nullptr;
  size_t size = 0;
};

struct AdapterRefs {
  int rank = 0;
  double scaling = 1.0;
  std::vector<LoraPairRef> pairs;
  // File path -> its contents (AdapterWeights.fileBytes): those files are read from here, never opened.
  std::map<std::string, BorrowedBytes> fileBytes;
};

}  // namespace loraserve
