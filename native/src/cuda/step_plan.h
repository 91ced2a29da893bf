// Host side of a CUDA forward pass: a batch cut to the token budget, and each part turned into the plain
// descriptors the kernels read (rows' cache slots, LoRA tiles, decode items, prefill tiles, block tables).
#pragma once

#include <cstdint>
#include <vector>

#include "../forward_batch.h"
#include "decode_attention.cuh"
#include "lora_shrink_expand.cuh"
#include "prefill_attention.cuh"

namespace loraserve::cuda {

// Consecutive parts of at most `budget` rows; a sequence's prompt may be cut between parts (chunked prefill:
// a later part attends to the earlier part's keys in the cache). Logit requests keep their order.
std::vector<ForwardBatch> splitByTokenBudget(const ForwardBatch& batch, int64_t budget);

struct StepPlan {
  int rows = 0;
  std::vector<int32_t> tokens;
  std::vector<int32_t> positions;
  std::vector<int32_t> cacheSlots;  // each row's cache row: block * blockSize + offset
  std::vector<int32_t> logitRows;
  std::vector<LoraTile> loraTiles;  // only rows with an adapter
  std::vector<DecodeItem> decodeItems;
  std::vector<PrefillTile> prefillTiles;
  std::vector<int32_t> blockTables;  // every segment's needed blocks, concatenated

  bool isPureDecode() const { return prefillTiles.empty() && static_cast<int>(decodeItems.size()) == rows; }
};

// Sequences of one row go to the decode kernel, longer ones to the prefill kernel.
StepPlan planStep(const ForwardBatch& batch, int blockSize);

}  // namespace loraserve::cuda
