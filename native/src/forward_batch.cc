#include "forward_batch.h"

namespace loraserve {

bool needsLogits(const SeqStep& seq, size_t i) {
  if (seq.returnLogits) return true;
  if (seq.sample && i + 1 == seq.tokens.size()) return true;
  return !seq.logprobTargets.empty() && seq.logprobTargets[i] >= 0;
}

ForwardBatch buildForwardBatch(const std::vector<SeqStep>& seqs) {
  ForwardBatch batch;
  size_t rows = 0;
  for (const SeqStep& seq : seqs) rows += seq.tokens.size();
  batch.tokens.reserve(rows);
  batch.positions.reserve(rows);
  for (const SeqStep& seq : seqs) {
    BatchSegment segment;
    segment.firstRow = static_cast<int64_t>(batch.tokens.size());
    segment.numRows = static_cast<int64_t>(seq.tokens.size());
    segment.startPos = seq.startPos;
    segment.blockTable = seq.blockTable.data();
    segment.adapterSlot = seq.adapterSlot;
    segment.firstLogit = static_cast<int64_t>(batch.logitRows.size());
    for (size_t i = 0; i < seq.tokens.size(); ++i) {
      batch.tokens.push_back(seq.tokens[i]);
      batch.positions.push_back(static_cast<int32_t>(seq.startPos + static_cast<int64_t>(i)));
      if (needsLogits(seq, i)) batch.logitRows.push_back(segment.firstRow + static_cast<int64_t>(i));
    }
    segment.numLogits = static_cast<int64_t>(batch.logitRows.size()) - segment.firstLogit;
    batch.segments.push_back(segment);
  }
  return batch;
}

}  // namespace loraserve
