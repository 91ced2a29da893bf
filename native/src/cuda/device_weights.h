// The base model's weights for one tensor-parallel rank in bf16 device memory, copied from the mmapped
// safetensors files (bf16 straight from the mapping; float32/float16 through a device-side conversion).
// q/k/v are stacked into one [q + k + v, hidden] matrix and gate/up into one [2 intermediate, hidden], so each
// is one matrix product.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <vector>

#include "../engine_options.h"
#include "../tensor_parallel.h"
#include "device_buffer.h"

namespace loraserve::cuda {

struct DeviceLayerWeights {
  DeviceBuffer<__nv_bfloat16> inputNorm, postAttentionNorm;
  DeviceBuffer<__nv_bfloat16> qkv;     // [qLocal + 2 kvLocal, hidden]
  DeviceBuffer<__nv_bfloat16> o;       // [hidden, qLocal]
  DeviceBuffer<__nv_bfloat16> gateUp;  // [2 intermediateLocal, hidden]
  DeviceBuffer<__nv_bfloat16> down;    // [hidden, intermediateLocal]
};

struct DeviceModelWeights {
  DeviceBuffer<__nv_bfloat16> embedTokens;  // [vocab, hidden]
  DeviceBuffer<__nv_bfloat16> lmHead;       // empty when tied to embedTokens
  DeviceBuffer<__nv_bfloat16> finalNorm;
  std::vector<DeviceLayerWeights> layers;

  const __nv_bfloat16* outputProjection() const { return lmHead.size() ? lmHead.data() : embedTokens.data(); }
  size_t bytes() const;
};

// Checks every tensor's shape against the spec (errors name the file and tensor) and keeps this rank's slice.
DeviceModelWeights uploadModelWeights(const EngineOptions& options, const ShardLayout& layout);

}  // namespace loraserve::cuda
