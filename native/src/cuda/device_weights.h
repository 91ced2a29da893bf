// The base model's weights for one tensor-parallel rank in device memory, in the backend's 16-bit type T,
// copied from the mmapped safetensors files (as they are when stored in T; otherwise through a device-side
// conversion). q/k/v are stacked into one [q + k + v, hidden] matrix and gate/up into one [2 intermediate,
// hidden], so each is one matrix product.
#pragma once

#include <cuda_runtime.h>

#include <vector>

#include "../engine_options.h"
#include "../tensor_parallel.h"
#include "device_buffer.h"

namespace loraserve::cuda {

template <typename T>
struct DeviceLayerWeights {
  DeviceBuffer<T> inputNorm, postAttentionNorm;
  DeviceBuffer<T> qkv;     // [qLocal + 2 kvLocal, hidden]
  DeviceBuffer<T> o;       // [hidden, qLocal]
  DeviceBuffer<T> gateUp;  // [2 intermediateLocal, hidden]
  DeviceBuffer<T> down;    // [hidden, intermediateLocal]
};

template <typename T>
struct DeviceModelWeights {
  DeviceBuffer<T> embedTokens;  // [this rank's vocabulary rows, hidden] (ShardLayout::vocabRows)
  DeviceBuffer<T> lmHead;       // the same rows; empty when tied to embedTokens
  DeviceBuffer<T> finalNorm;
  std::vector<DeviceLayerWeights<T>> layers;

  const T* outputProjection() const { return lmHead.size() ? lmHead.data() : embedTokens.data(); }
  size_t bytes() const;
};

// Checks every tensor's shape against the spec (errors name the file and tensor) and keeps this rank's slice.
// A value beyond T's range (float16's 65504) is an error that names the tensor and bfloat16.
template <typename T>
DeviceModelWeights<T> uploadModelWeights(const EngineOptions& options, const ShardLayout& layout);

}  // namespace loraserve::cuda
