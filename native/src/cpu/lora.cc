#include "lora.h"

#include <algorithm>
#include <map>

#include "gemm.h"

namespace loraserve {

std::vector<LoraGroup> groupRowsByAdapter(const ForwardBatch& batch,
                                          const std::vector<std::shared_ptr<const HostAdapter>>& adapters) {
  std::map<int, LoraGroup> bySlot;
  for (const BatchSegment& segment : batch.segments) {
    if (segment.adapterSlot < 0) continue;
    LoraGroup& group = bySlot[segment.adapterSlot];
    group.adapter = adapters[static_cast<size_t>(segment.adapterSlot)];
    for (int64_t i = 0; i < segment.numRows; ++i) group.rows.push_back(segment.firstRow + i);
  }
  std::vector<LoraGroup> groups;
  for (auto& entry : bySlot) groups.push_back(std::move(entry.second));
  return groups;
}

void addLoraDelta(const std::vector<LoraGroup>& groups, int layer, LoraTarget target, const float* x, int64_t in,
                  float* y, int64_t out) {
  std::vector<float> gathered;
  std::vector<float> shrunk;
  std::vector<float> expanded;
  for (const LoraGroup& group : groups) {
    const std::optional<HostLoraPair>& pair = group.adapter->layers[static_cast<size_t>(layer)][static_cast<int>(target)];
    if (!pair) continue;
    const int64_t n = static_cast<int64_t>(group.rows.size());
    const int64_t rank = pair->a.rows;
    // Gathering makes each adapter's rows one matrix, so the update is two GEMMs per adapter, not per sequence.
    gathered.resize(static_cast<size_t>(n * in));
    for (int64_t i = 0; i < n; ++i) {
      std::copy_n(x + group.rows[static_cast<size_t>(i)] * in, in, gathered.begin() + i * in);
    }
    shrunk.resize(static_cast<size_t>(n * rank));
    linear(gathered.data(), n, in, pair->a.data.data(), rank, shrunk.data());
    expanded.resize(static_cast<size_t>(n * out));
    linear(shrunk.data(), n, rank, pair->b.data.data(), out, expanded.data(), group.adapter->scaling);
    for (int64_t i = 0; i < n; ++i) {
      float* outRow = y + group.rows[static_cast<size_t>(i)] * out;
      const float* delta = expanded.data() + i * out;
      for (int64_t j = 0; j < out; ++j) outRow[j] += delta[j];
    }
  }
}

}  // namespace loraserve
