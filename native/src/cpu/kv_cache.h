// The paged KV cache: per layer, K and V for numBlocks * blockSize token slots of [kvHeads, headDim] float32.
// A sequence's position p lives in slot blockTable[p / blockSize] * blockSize + p % blockSize.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "../forward_batch.h"

namespace loraserve {

class KvCache {
 public:
  KvCache(int layers, int64_t numBlocks, int64_t blockSize, int64_t kvHeads, int64_t headDim);

  int64_t slotOf(const int32_t* blockTable, int64_t position) const {
    return static_cast<int64_t>(blockTable[position / blockSize_]) * blockSize_ + position % blockSize_;
  }
  // [kvHeads * headDim] of one slot.
  const float* keys(int layer, int64_t slot) const { return layerKeys_[layer].get() + slot * rowWidth_; }
  const float* values(int layer, int64_t slot) const { return layerValues_[layer].get() + slot * rowWidth_; }

  // Stores k and v ([rows, kvHeads * headDim]) of every batch row at its position.
  void write(int layer, const ForwardBatch& batch, const float* k, const float* v);

 private:
  int64_t blockSize_;
  int64_t rowWidth_;
  // Left uninitialised: only slots a step has written are ever read, and untouched pages cost no memory.
  std::vector<std::unique_ptr<float[]>> layerKeys_;
  std::vector<std::unique_ptr<float[]>> layerValues_;
};

}  // namespace loraserve
