// LoRA on the CPU: rows of the batch grouped by adapter, and the low-rank update y += scaling * B (A x) of one
// projection applied per group. Rows of base-only sequences belong to no group and cost nothing.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "../forward_batch.h"
#include "../host_adapter.h"

namespace loraserve {

struct LoraGroup {
  std::shared_ptr<const HostAdapter> adapter;
  std::vector<int64_t> rows;  // batch rows, ascending
};

// One group per adapter slot the batch uses. adapters[slot] is the adapter in that slot.
std::vector<LoraGroup> groupRowsByAdapter(const ForwardBatch& batch,
                                          const std::vector<std::shared_ptr<const HostAdapter>>& adapters);

// For every group whose adapter has (layer, target): y[row] += scaling * B (A x[row]). x is [rows, in] and y is
// [rows, out] over the whole batch.
void addLoraDelta(const std::vector<LoraGroup>& groups, int layer, LoraTarget target, const float* x, int64_t in,
                  float* y, int64_t out);

}  // namespace loraserve
