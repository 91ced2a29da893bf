// A LoRA adapter's weights for one tensor-parallel rank, in float32 host memory.
#pragma once

#include <array>
#include <optional>
#include <vector>

#include "adapter_refs.h"
#include "host_matrix.h"
#include "model_spec.h"
#include "tensor_parallel.h"

namespace loraserve {

struct HostLoraPair {
  HostMatrix a;  // [rank, local in]
  HostMatrix b;  // [local out, rank]
};

struct HostAdapter {
  int rank = 0;
  float scaling = 1.0f;
  // [layer][target]: empty where the adapter leaves that projection alone (targets or layers_to_transform).
  std::vector<std::array<std::optional<HostLoraPair>, kNumLoraTargets>> layers;
};

// Checks rank, layers, targets and every shape against the base (errors name the file), keeps this rank's slice.
HostAdapter loadHostAdapter(const AdapterRefs& refs, const ModelSpec& spec, const ShardLayout& layout,
                            int maxLoraRank);

}  // namespace loraserve
