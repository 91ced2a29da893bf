// The base model's weights for one tensor-parallel rank, read from the safetensors files into float32 host
// memory: the CPU backend computes on them directly; a device backend may upload or convert them.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <vector>

#include "engine_options.h"
#include "host_matrix.h"
#include "lora_target.h"
#include "tensor_parallel.h"

namespace loraserve {

struct HostLayerWeights {
  std::vector<float> inputNorm;
  std::vector<float> postAttentionNorm;
  // This rank's slice of each projection, [out, in], indexed by LoraTarget.
  std::array<HostMatrix, kNumLoraTargets> projections;

  const HostMatrix& projection(LoraTarget target) const { return projections[static_cast<int>(target)]; }
};

struct HostModelWeights {
  HostMatrix embedTokens;            // this rank's vocabulary rows (ShardLayout::vocabRows)
  std::optional<HostMatrix> lmHead;  // the same rows; empty when tied to embedTokens
  std::vector<float> finalNorm;
  std::vector<HostLayerWeights> layers;

  const HostMatrix& outputProjection() const { return lmHead ? *lmHead : embedTokens; }
  size_t bytes() const;
};

// Checks every tensor's shape against the spec (errors name the file and tensor) and keeps this rank's slice.
HostModelWeights loadHostWeights(const EngineOptions& options, const ShardLayout& layout);

}  // namespace loraserve
