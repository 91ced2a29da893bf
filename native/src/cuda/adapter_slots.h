// LoRA adapters in device slots (lora_shrink_expand.cuh describes the layout the kernels read). All slots are
// allocated at start-up, so their addresses never change under a captured CUDA graph. Loading an adapter while
// steps run must not take the GPU from them, so the GPU only copies: host threads convert the stored values
// (bf16, float16 or float32, from the mapped file or the host tier) into a page-locked image of the slot (the
// backend's 16-bit type T, each A and B times its power of two, zeros where the kernels read past the rank), and the copy
// engine sends the targets the adapter has (A's rows up to its rank rounded up to 8, all of B), on a stream of
// its own; only then are the ranks and scales published, which is what makes the slot visible to the kernels. No GPU memset or conversion kernel runs for a load.
#pragma once

#include <cuda_runtime.h>

#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "../cpu/thread_pool.h"
#include "../host_adapter.h"
#include "../tensor_parallel.h"
#include "device_buffer.h"
#include "lora_shrink_expand.cuh"

namespace loraserve::cuda {

// Elements [begin, end) of a slot that one load writes.
struct SlotRange {
  int64_t begin = 0, end = 0;
};

template <typename T>
class AdapterSlots {
 public:
  AdapterSlots(const ModelSpec& spec, const ShardLayout& layout, int maxLoras, int maxLoraRank);
  // Device bytes of one slot: every target of every layer at maxLoraRank (rounded up to 8), A and B.
  static size_t slotBytes(const ModelSpec& spec, const ShardLayout& layout, int maxLoraRank);
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
  int count() const { return maxLoras_; }
  size_t bytes() const { return weights_.bytes(); }

 private:
  int64_t aOffset(int layer, LoraTarget target) const;
  int64_t bOffset(int layer, LoraTarget target) const;
  void publishTargets(int slot, const std::vector<int32_t>& ranks, const std::vector<float>& scales);
  struct Piece;
  // Writes the pieces' converted values, and zeros around them, into the host image; in float16 each piece is
  // first given the power of two that brings its largest value near the top of the type's range.
  void fillImage(std::vector<Piece>& pieces);
  // Enqueues the copies of the image's ranges into the slot on the load stream.
  void copyImage(int slot, std::vector<SlotRange> ranges);

  // Host threads that convert one load, at most (and no more than the machine's cores): 8 converted an 84 MB
  // adapter in 15 ms on the H200 machine.
  static constexpr int kConverterThreads = 8;

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
  DeviceBuffer<float> scales_;   // [maxLoras][numLayers][kNumLoraTargets]: LoraSlots::scales
  std::mutex loadMutex_;  // one load at a time owns the image, the converters and the stream
  cudaStream_t loadStream_ = nullptr;
  ThreadPool converters_;
  PinnedBuffer<T> image_;  // [slotElements]: the slot being loaded, as it will be on the device
};

}  // namespace loraserve::cuda
