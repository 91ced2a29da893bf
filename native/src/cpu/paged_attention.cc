#include "paged_attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace loraserve {

void pagedAttention(const ForwardBatch& batch, int layer, const float* q, const KvCache& cache,
                    const AttentionShape& shape, ThreadPool& pool, float* out) {
  const int64_t rows = static_cast<int64_t>(batch.tokens.size());
  std::vector<const BatchSegment*> segmentOfRow(static_cast<size_t>(rows));
  for (const BatchSegment& segment : batch.segments) {
    std::fill_n(segmentOfRow.begin() + segment.firstRow, segment.numRows, &segment);
  }
  const int64_t headDim = shape.headDim;
  const int64_t queriesPerKv = shape.heads / shape.kvHeads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(headDim));
  pool.parallelFor(rows * shape.heads, [&](int64_t begin, int64_t end) {
    std::vector<float> weights;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t row = item / shape.heads;
      const int64_t head = item % shape.heads;
      const int64_t kvOffset = (head / queriesPerKv) * headDim;
      const BatchSegment& segment = *segmentOfRow[static_cast<size_t>(row)];
      const int64_t length = batch.positions[static_cast<size_t>(row)] + 1;  // causal: itself and everything before
      const float* query = q + (row * shape.heads + head) * headDim;
      weights.resize(static_cast<size_t>(length));
      float maxScore = -INFINITY;
      for (int64_t p = 0; p < length; ++p) {
        const float* key = cache.keys(layer, cache.slotOf(segment.blockTable, p)) + kvOffset;
        float dot = 0.0f;
        for (int64_t d = 0; d < headDim; ++d) dot += query[d] * key[d];
        weights[static_cast<size_t>(p)] = dot * scale;
        maxScore = std::max(maxScore, dot * scale);
      }
      float total = 0.0f;
      for (float& w : weights) {
        w = std::exp(w - maxScore);
        total += w;
      }
      float* result = out + (row * shape.heads + head) * headDim;
      std::fill_n(result, headDim, 0.0f);
      for (int64_t p = 0; p < length; ++p) {
        const float* value = cache.values(layer, cache.slotOf(segment.blockTable, p)) + kvOffset;
        const float w = weights[static_cast<size_t>(p)] / total;
        for (int64_t d = 0; d < headDim; ++d) result[d] += w * value[d];
      }
    }
  });
}

}  // namespace loraserve
