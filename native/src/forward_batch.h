// One batched forward pass, as a backend receives it: every sequence's tokens concatenated into one list of
// rows, so each base projection is a single matrix product over the whole batch.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "step_io.h"

namespace loraserve {

// One sequence's contiguous rows of the batch.
struct BatchSegment {
  int64_t firstRow = 0;
  int64_t numRows = 0;
  int64_t startPos = 0;  // position of the first row; KV of [0, startPos) is already cached
  const int32_t* blockTable = nullptr;  // borrowed from the step's SeqStep
  int adapterSlot = -1;
  // The segment's rows that need logits are logitRows[firstLogit, firstLogit + numLogits).
  int64_t firstLogit = 0;
  int64_t numLogits = 0;
};

struct ForwardBatch {
  std::vector<int32_t> tokens;     // [rows]
  std::vector<int32_t> positions;  // [rows], absolute position of each token in its sequence
  std::vector<BatchSegment> segments;
  // Batch rows whose logits are computed, ascending: the last row of a sampled sequence, rows with a logprob
  // target, or every row of a sequence that asked for its logits. No other row reaches the output projection.
  std::vector<int64_t> logitRows;
};

// Whether row i of the sequence needs logits (see ForwardBatch::logitRows).
bool needsLogits(const SeqStep& seq, size_t i);

// Borrows the block tables of `seqs`, which must outlive the batch.
ForwardBatch buildForwardBatch(const std::vector<SeqStep>& seqs);

}  // namespace loraserve
