#include <algorithm>
#include <stdexcept>
#include <string>

#include "adapter_slots.h"
#include "cuda_check.h"

namespace loraserve::cuda {

AdapterSlots::AdapterSlots(const ModelSpec& spec, const ShardLayout& layout, int maxLoras, int maxLoraRank)
    : layout_(layout),
      numLayers_(spec.numLayers),
      maxLoras_(maxLoras),
      maxRank_((std::max(maxLoraRank, 1) + 7) / 8 * 8),
      targetOffsets_(kNumLoraTargets) {
  for (int t = 0; t < kNumLoraTargets; ++t) {
    const TargetShape shape = layout.localShape(static_cast<LoraTarget>(t));
    targetOffsets_[static_cast<size_t>(t)] = layerElements_;
    layerElements_ += static_cast<int64_t>(maxRank_) * (shape.in + shape.out);
  }
  slotElements_ = layerElements_ * numLayers_;
  if (maxLoras == 0) return;
  weights_.resize(static_cast<size_t>(slotElements_ * maxLoras));
  checkCuda(cudaMemset(weights_.data(), 0, weights_.bytes()), "cudaMemset (adapter slots)");
  std::vector<const __nv_bfloat16*> pointers(static_cast<size_t>(maxLoras));
  for (int s = 0; s < maxLoras; ++s) pointers[static_cast<size_t>(s)] = weights_.data() + s * slotElements_;
  slotPointers_.resize(pointers.size());
  checkCuda(cudaMemcpy(slotPointers_.data(), pointers.data(), slotPointers_.bytes(), cudaMemcpyHostToDevice),
            "cudaMemcpy (slot pointers)");
  ranks_.resize(static_cast<size_t>(maxLoras) * numLayers_ * kNumLoraTargets);
  checkCuda(cudaMemset(ranks_.data(), 0, ranks_.bytes()), "cudaMemset (adapter ranks)");
  checkCuda(cudaStreamCreateWithFlags(&loadStream_, cudaStreamNonBlocking), "cudaStreamCreate (adapter loads)");
  staging_.resize(static_cast<size_t>(slotElements_));
}

AdapterSlots::~AdapterSlots() {
  if (loadStream_) cudaStreamDestroy(loadStream_);
}

int64_t AdapterSlots::aOffset(int layer, LoraTarget target) const {
  return layer * layerElements_ + targetOffsets_[static_cast<size_t>(target)];
}

int64_t AdapterSlots::bOffset(int layer, LoraTarget target) const {
  return aOffset(layer, target) + static_cast<int64_t>(maxRank_) * layout_.localShape(target).in;
}

void AdapterSlots::load(int slot, const HostAdapter& adapter) {
  std::lock_guard<std::mutex> lock(loadMutex_);
  __nv_bfloat16* image = staging_.data();
  std::fill_n(image, slotElements_, __float2bfloat16(0.0f));
  std::vector<int32_t> ranks(static_cast<size_t>(numLayers_) * kNumLoraTargets, 0);
  for (int layer = 0; layer < numLayers_; ++layer) {
    for (int t = 0; t < kNumLoraTargets; ++t) {
      const std::optional<HostLoraPair>& pair = adapter.layers[static_cast<size_t>(layer)][static_cast<size_t>(t)];
      if (!pair) continue;
      const LoraTarget target = static_cast<LoraTarget>(t);
      const int64_t in = pair->a.cols;
      const int64_t out = pair->b.rows;
      const int rank = adapter.rank;
      __nv_bfloat16* a = image + aOffset(layer, target);
      for (int r = 0; r < rank; ++r) {
        for (int64_t c = 0; c < in; ++c) a[r * in + c] = __float2bfloat16(pair->a.data[static_cast<size_t>(r * in + c)]);
      }
      // The scaling is folded into B before rounding, so the kernels need no per-slot scale.
      __nv_bfloat16* b = image + bOffset(layer, target);
      for (int64_t o = 0; o < out; ++o) {
        for (int r = 0; r < rank; ++r) {
          b[o * maxRank_ + r] = __float2bfloat16(adapter.scaling * pair->b.data[static_cast<size_t>(o * rank + r)]);
        }
      }
      ranks[static_cast<size_t>(layer * kNumLoraTargets + t)] = rank;
    }
  }
  checkCuda(cudaMemcpyAsync(weights_.data() + slot * slotElements_, image, staging_.bytes(),
                            cudaMemcpyHostToDevice, loadStream_),
            "cudaMemcpyAsync (adapter weights)");
  publishRanks(slot, ranks);
}

void AdapterSlots::unload(int slot) {
  std::lock_guard<std::mutex> lock(loadMutex_);
  publishRanks(slot, std::vector<int32_t>(static_cast<size_t>(numLayers_) * kNumLoraTargets, 0));
}

void AdapterSlots::publishRanks(int slot, const std::vector<int32_t>& ranks) {
  // Stream order puts the ranks after the weights; the synchronise makes both visible before the engine hands
  // the slot to a step.
  checkCuda(cudaMemcpyAsync(ranks_.data() + static_cast<size_t>(slot) * ranks.size(), ranks.data(),
                            ranks.size() * sizeof(int32_t), cudaMemcpyHostToDevice, loadStream_),
            "cudaMemcpyAsync (adapter ranks)");
  checkCuda(cudaStreamSynchronize(loadStream_), "cudaStreamSynchronize (adapter load)");
}

LoraSlots AdapterSlots::view() const {
  return LoraSlots{slotPointers_.data(), ranks_.data(), numLayers_, maxRank_};
}

LoraGroup AdapterSlots::group(int layer, const std::vector<LoraTarget>& targets) const {
  LoraGroup group;
  group.layer = layer;
  int column = 0;
  for (LoraTarget target : targets) {
    const int g = group.numTargets++;
    const TargetShape shape = layout_.localShape(target);
    group.inDim = static_cast<int>(shape.in);
    group.target[g] = static_cast<int>(target);
    group.outOffset[g] = column;
    group.outDim[g] = static_cast<int>(shape.out);
    group.aOffset[g] = aOffset(layer, target);
    group.bOffset[g] = bOffset(layer, target);
    column += group.outDim[g];
  }
  return group;
}

}  // namespace loraserve::cuda
