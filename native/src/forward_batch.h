// One batched forward pass as a backend receives it, and what it hands back. Every sequence's tokens are
// concatenated into one list of rows, so each base projection is a single matrix product over the whole
// batch. Only the rows with a LogitRequest reach the output projection, and the backend answers each request
// (token selection, logprobs, raw logits) itself: on the host with sampler.h, or on its device with the same
// semantics.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "step_io.h"

namespace loraserve {

// One sequence's contiguous rows of the batch.
struct BatchSegment {
  int64_t firstRow = 0;
  int64_t numRows = 0;
  int64_t startPos = 0;                 // position of the first row; KV of [0, startPos) is already cached
  const int32_t* blockTable = nullptr;  // borrowed from the step's SeqStep
  int adapterSlot = -1;
  // The segment's requests are logitRequests[firstLogit, firstLogit + numLogits), in row order.
  int64_t firstLogit = 0;
  int64_t numLogits = 0;
};

// The ids a row's penalties look at, borrowed from the step's SeqStep: the prompt, then the generated tokens.
struct TokenHistory {
  const int32_t* ids = nullptr;
  size_t size = 0;
  size_t promptLength = 0;  // ids[0, promptLength) are the prompt
};

// What the engine wants from one row's logits.
struct LogitRequest {
  int64_t row = 0;            // batch row
  bool select = false;        // choose a token here (the last row of a sequence that samples)
  SamplingParams sampling;    // with select
  TokenHistory history;       // with select
  int topN = 0;               // with select: most likely alternatives to report
  int32_t target = -1;        // a token whose raw logprob is wanted at this row, -1 for none
  bool returnLogits = false;  // hand the raw row back
};

struct LogitResult {
  int32_t token = -1;  // with select
  float tokenLogprob = std::numeric_limits<float>::quiet_NaN();
  float targetLogprob = std::numeric_limits<float>::quiet_NaN();
  std::vector<int32_t> topIds;
  std::vector<float> topLogprobs;
  std::vector<float> logits;  // [vocab] with returnLogits
};

struct ForwardBatch {
  std::vector<int32_t> tokens;     // [rows]
  std::vector<int32_t> positions;  // [rows], absolute position of each token in its sequence
  std::vector<BatchSegment> segments;
  std::vector<LogitRequest> logitRequests;  // ascending rows
};

// Borrows the block tables and penalty tokens of `seqs`, which must outlive the batch.
ForwardBatch buildForwardBatch(const std::vector<SeqStep>& seqs);

}  // namespace loraserve
