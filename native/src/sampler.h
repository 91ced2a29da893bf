// Backend-independent token selection and log-probabilities from one row of raw float32 logits.
#pragma once

#include <cstdint>
#include <vector>

#include "forward_batch.h"
#include "step_io.h"

namespace loraserve {

// log(sum(exp(logits))), max-subtracted and accumulated in double.
double logSumExp(const float* logits, int64_t vocab);

// The highest logit; the lowest id among equals, like torch.argmax.
int32_t greedyToken(const float* logits, int64_t vocab);

// Temperature 0: greedy. Otherwise temperature, then top-k, then top-p (the smallest set of most likely tokens
// whose probability reaches topP), then one draw keyed by (seed, draw).
int32_t sampleToken(const float* logits, int64_t vocab, const SamplingParams& params);

// Answers one LogitRequest from its row of raw logits on the host.
LogitResult evaluateLogits(const float* logits, int64_t vocab, const LogitRequest& request);

// The n most likely tokens by raw log-probability, most likely first (lowest id among equals).
void topLogprobs(const float* logits, int64_t vocab, double logSumExp, int n, std::vector<int32_t>& ids,
                 std::vector<float>& logprobs);

}  // namespace loraserve
