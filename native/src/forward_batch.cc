#include "forward_batch.h"

namespace loraserve {

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
    segment.firstLogit = static_cast<int64_t>(batch.logitRequests.size());
    for (size_t i = 0; i < seq.tokens.size(); ++i) {
      const int64_t row = segment.firstRow + static_cast<int64_t>(i);
      batch.tokens.push_back(seq.tokens[i]);
      batch.positions.push_back(static_cast<int32_t>(seq.startPos + static_cast<int64_t>(i)));
      LogitRequest request;
      request.row = row;
      request.select = seq.sample && i + 1 == seq.tokens.size();
      if (request.select) {
        request.sampling = seq.sampling;
        request.history = {seq.penaltyTokens.data(), seq.penaltyTokens.size(),
                           static_cast<size_t>(seq.penaltyPromptLength)};
        request.topN = seq.topN;
      }
      request.target = seq.logprobTargets.empty() ? -1 : seq.logprobTargets[i];
      request.returnLogits = seq.returnLogits;
      if (request.select || request.target >= 0 || request.returnLogits) batch.logitRequests.push_back(request);
    }
    segment.numLogits = static_cast<int64_t>(batch.logitRequests.size()) - segment.firstLogit;
    batch.segments.push_back(segment);
  }
  return batch;
}

}  // namespace loraserve
