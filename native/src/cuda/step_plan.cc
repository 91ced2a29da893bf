#include "step_plan.h"

#include <algorithm>

namespace loraserve::cuda {

std::vector<ForwardBatch> splitByTokenBudget(const ForwardBatch& batch, int64_t budget) {
  std::vector<ForwardBatch> parts;
  const int64_t rows = static_cast<int64_t>(batch.tokens.size());
  if (rows <= budget) {
    parts.push_back(batch);
    return parts;
  }
  size_t nextLogit = 0;
  for (int64_t begin = 0; begin < rows; begin += budget) {
    const int64_t end = std::min(rows, begin + budget);
    ForwardBatch part;
    part.tokens.assign(batch.tokens.begin() + begin, batch.tokens.begin() + end);
    part.positions.assign(batch.positions.begin() + begin, batch.positions.begin() + end);
    for (const BatchSegment& segment : batch.segments) {
      const int64_t first = std::max(begin, segment.firstRow);
      const int64_t last = std::min(end, segment.firstRow + segment.numRows);
      if (first >= last) continue;
      BatchSegment piece = segment;
      piece.firstRow = first - begin;
      piece.numRows = last - first;
      piece.startPos = segment.startPos + (first - segment.firstRow);
      piece.firstLogit = static_cast<int64_t>(part.logitRequests.size());
      while (nextLogit < batch.logitRequests.size() && batch.logitRequests[nextLogit].row < last) {
        LogitRequest request = batch.logitRequests[nextLogit++];
        request.row -= begin;
        part.logitRequests.push_back(request);
      }
      piece.numLogits = static_cast<int64_t>(part.logitRequests.size()) - piece.firstLogit;
      part.segments.push_back(piece);
    }
    parts.push_back(std::move(part));
  }
  return parts;
}

StepPlan planStep(const ForwardBatch& batch, int blockSize) {
  StepPlan plan;
  plan.rows = static_cast<int>(batch.tokens.size());
  plan.tokens = batch.tokens;
  plan.positions = batch.positions;
  plan.cacheSlots.resize(batch.tokens.size());
  for (const LogitRequest& request : batch.logitRequests) plan.logitRows.push_back(static_cast<int32_t>(request.row));
  for (const BatchSegment& segment : batch.segments) {
    const int tableOffset = static_cast<int>(plan.blockTables.size());
    const int64_t endPos = segment.startPos + segment.numRows;
    plan.blockTables.insert(plan.blockTables.end(), segment.blockTable,
                            segment.blockTable + (endPos + blockSize - 1) / blockSize);
    for (int64_t i = 0; i < segment.numRows; ++i) {
      const int64_t position = segment.startPos + i;
      plan.cacheSlots[static_cast<size_t>(segment.firstRow + i)] =
          static_cast<int32_t>(segment.blockTable[position / blockSize] * blockSize + position % blockSize);
    }
    const int firstRow = static_cast<int>(segment.firstRow);
    const int numRows = static_cast<int>(segment.numRows);
    if (segment.adapterSlot >= 0) {
      for (int r = 0; r < numRows; r += kLoraTileRows) {
        plan.loraTiles.push_back({firstRow + r, std::min(kLoraTileRows, numRows - r), segment.adapterSlot});
      }
    }
    if (numRows == 1) {
      plan.decodeItems.push_back({firstRow, static_cast<int>(segment.startPos) + 1, tableOffset});
    } else {
      for (int r = 0; r < numRows; r += kPrefillTileRows) {
        plan.prefillTiles.push_back({firstRow + r, std::min(kPrefillTileRows, numRows - r),
                                     static_cast<int>(segment.startPos) + r, tableOffset});
      }
    }
  }
  return plan;
}

}  // namespace loraserve::cuda
