#include "kv_cache.h"

#include <cstring>

namespace loraserve {

KvCache::KvCache(int layers, int64_t numBlocks, int64_t blockSize, int64_t kvHeads, int64_t headDim)
    : blockSize_(blockSize), rowWidth_(kvHeads * headDim) {
  const size_t elements = static_cast<size_t>(numBlocks * blockSize * rowWidth_);
  for (int i = 0; i < layers; ++i) {
    layerKeys_.emplace_back(new float[elements]);
    layerValues_.emplace_back(new float[elements]);
  }
}

void KvCache::write(int layer, const ForwardBatch& batch, const float* k, const float* v) {
  const size_t rowBytes = static_cast<size_t>(rowWidth_) * sizeof(float);
  for (const BatchSegment& segment : batch.segments) {
    for (int64_t i = 0; i < segment.numRows; ++i) {
      const int64_t row = segment.firstRow + i;
      const int64_t slot = slotOf(segment.blockTable, segment.startPos + i);
      std::memcpy(layerKeys_[layer].get() + slot * rowWidth_, k + row * rowWidth_, rowBytes);
      std::memcpy(layerValues_[layer].get() + slot * rowWidth_, v + row * rowWidth_, rowBytes);
    }
  }
}

}  // namespace loraserve
