// Causal attention over the paged KV cache: each row's query heads attend to positions [0, its position] of
// its own sequence (grouped-query: heads / kvHeads query heads share one kv head), scale 1/sqrt(headDim),
// softmax in float32.
#pragma once

#include <cstdint>

#include "../forward_batch.h"
#include "kv_cache.h"
#include "thread_pool.h"

namespace loraserve {

struct AttentionShape {
  int64_t heads = 0;    // query heads held by this rank
  int64_t kvHeads = 0;  // kv heads held by this rank
  int64_t headDim = 0;
};

// q and out are [rows, heads * headDim]. The batch's K/V must already be in the cache.
void pagedAttention(const ForwardBatch& batch, int layer, const float* q, const KvCache& cache,
                    const AttentionShape& shape, ThreadPool& pool, float* out);

}  // namespace loraserve
