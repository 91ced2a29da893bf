// LoRA adapters in device slots (lora_shrink_expand.cuh describes the layout the kernels read). All slots are
// allocated at start-up, so their addresses never change under a captured CUDA graph; loading an adapter
// converts it to bf16 (scaling folded into B) in pinned host memory, copies it on its own stream while steps
// run, and only then publishes its ranks, which is what makes the slot visible to the kernels.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <mutex>
#include <optional>
#include <vector>

#include "../host_adapter.h"
#include "../tensor_parallel.h"
#include "device_buffer.h"
#include "lora_shrink_expand.cuh"

namespace loraserve::cuda {

class AdapterSlots {
 public:
  AdapterSlots(const ModelSpec& spec, const ShardLayout& layout, int maxLoras, int maxLoraRank);
  ~AdapterSlots();
  AdapterSlots(const AdapterSlots&) = delete;
  AdapterSlots& operator=(const AdapterSlots&) = delete;

  // Worker thread; the slot is used by no running step.
  void load(int slot, const HostAdapter& adapter);
  // JS thread; the slot is used by no running step.
  void unload(int slot);

  LoraSlots view() const;
  // The group of targets that read one input, with their offsets in a slot and their outputs' columns.
  LoraGroup group(int layer, const std::vector<LoraTarget>& targets) const;
  int maxRank() const { return maxRank_; }
  size_t bytes() const { return weights_.bytes(); }

 private:
  int64_t aOffset(int layer, LoraTarget target) const;
  int64_t bOffset(int layer, LoraTarget target) const;
  void publishRanks(int slot, const std::vector<int32_t>& ranks);

  ShardLayout layout_;
  int numLayers_;
  int maxLoras_;
  int maxRank_;  // maxLoraRank rounded up to a multiple of 8
  int64_t layerElements_ = 0;
  int64_t slotElements_ = 0;
  std::vector<int64_t> targetOffsets_;  // [kNumLoraTargets]: A's offset inside one layer; B follows A
  DeviceBuffer<__nv_bfloat16> weights_;  // [maxLoras][slotElements]
  DeviceBuffer<const __nv_bfloat16*> slotPointers_;
  DeviceBuffer<int32_t> ranks_;  // [maxLoras][numLayers][kNumLoraTargets]
  std::mutex loadMutex_;         // one load at a time owns the staging buffer and the stream
  cudaStream_t loadStream_ = nullptr;
  PinnedBuffer<__nv_bfloat16> staging_;  // one slot's image
};

}  // namespace loraserve::cuda
