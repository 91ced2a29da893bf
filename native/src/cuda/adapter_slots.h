// LoRA adapters in device slots (lora_shrink_expand.cuh describes the layout the kernels read). All slots are
// allocated at start-up, so their addresses never change under a captured CUDA graph. Loading an adapter runs on
// its own stream while steps run: the stored bytes (bf16, float16 or float32, from the mapped file or the host
// tier's page-locked memory) are copied as they are (pinned_upload.h: straight from page-locked memory, through
// pinned chunks from a mapping), a few contiguous runs of the file at a time, into a device staging area; one
// kernel per filling of that area converts them into the slot (the backend's 16-bit type T, the scaling folded
// into B); only then are the ranks published, which is what makes the slot visible to the kernels. No host pass
// touches a value.
#pragma once

#include <cuda_runtime.h>

#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "../host_adapter.h"
#include "../tensor_parallel.h"
#include "convert_weights.cuh"
#include "device_buffer.h"
#include "lora_shrink_expand.cuh"
#include "pinned_upload.h"

namespace loraserve::cuda {

template <typename T>
class AdapterSlots {
 public:
  AdapterSlots(const ModelSpec& spec, const ShardLayout& layout, int maxLoras, int maxLoraRank);
  ~AdapterSlots();
  AdapterSlots(const AdapterSlots&) = delete;
  AdapterSlots& operator=(const AdapterSlots&) = delete;

  // Worker thread; the slot is used by no running step.
  void load(int slot, const CheckedAdapter& adapter);
  // JS thread; the slot is used by no running step.
  void unload(int slot);

  LoraSlots<T> view() const;
  // The group of targets that read one input, with their offsets in a slot and their outputs' columns.
  LoraGroup group(int layer, const std::vector<LoraTarget>& targets) const;
  int maxRank() const { return maxRank_; }
  size_t bytes() const { return weights_.bytes(); }

 private:
  int64_t aOffset(int layer, LoraTarget target) const;
  int64_t bOffset(int layer, LoraTarget target) const;
  void publishRanks(int slot, const std::vector<int32_t>& ranks);
  struct Piece;
  // Copies the pieces' stored bytes to the device and converts them into their places in the slot.
  void copyAndConvert(std::vector<Piece>& pieces);

  ShardLayout layout_;
  int numLayers_;
  int maxLoras_;
  int maxRank_;  // maxLoraRank rounded up to a multiple of 8
  int64_t layerElements_ = 0;
  int64_t slotElements_ = 0;
  std::vector<int64_t> targetOffsets_;  // [kNumLoraTargets]: A's offset inside one layer; B follows A
  DeviceBuffer<T> weights_;  // [maxLoras][slotElements]
  DeviceBuffer<const T*> slotPointers_;
  DeviceBuffer<int32_t> ranks_;  // [maxLoras][numLayers][kNumLoraTargets]
  std::mutex loadMutex_;         // one load at a time owns the staging area, the window table and the stream
  cudaStream_t loadStream_ = nullptr;
  std::unique_ptr<PinnedUpload> upload_;
  DeviceBuffer<uint8_t> staging_;                // stored bytes on their way into a slot: one slot's size
  PinnedBuffer<ConvertWindow<T>> windowsHost_;   // [numLayers * kNumLoraTargets * 2]: every A and B of one load
  DeviceBuffer<ConvertWindow<T>> windows_;
};

}  // namespace loraserve::cuda
