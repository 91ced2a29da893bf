// One LoRA adapter as file references (native/addon.ts AdapterWeights).
#pragma once

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

struct AdapterRefs {
  int rank = 0;
  double scaling = 1.0;
  std::vector<LoraPairRef> pairs;
};

}  // namespace loraserve
