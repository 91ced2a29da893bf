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

// Whether params asks for any penalty (repetition != 1, frequency or presence != 0).
bool hasPenalties(const SamplingParams& params);

// The penalties, in place, in transformers' processor order: first the repetition penalty on every distinct id
// of the whole history (a positive logit is divided by it, any other multiplied: RepetitionPenaltyLogitsProcessor),
// then the frequency and presence penalties on the generated part only, OpenAI's definition:
// logit -= frequencyPenalty * count + presencePenalty * (count > 0). Logits stay float32, as in torch.
// The history's ids are within the row (checked with the step).
void applyPenalties(float* logits, const SamplingParams& params, const TokenHistory& history);

// Temperature 0: greedy. Otherwise, over the candidates (every id, in id order): temperature, then top-k (the k
// most likely), then top-p (the smallest set of most likely tokens whose probability reaches topP), then
// typical-p (transformers' TypicalLogitsWarper: the candidates closest to the distribution's entropy in
// surprise, -log p, until their probability reaches typicalP, keeping ties with the last), then one draw keyed
// by (seed, draw) walking the candidates left. A top-k or top-p cut leaves them in (logit desc, id asc) order,
// otherwise they stay in id order; typical-p only removes.
int32_t sampleToken(const float* logits, int64_t vocab, const SamplingParams& params);

// Answers one LogitRequest from its row of raw logits on the host. With select, the token is drawn from the
// penalised logits (applyPenalties, then sampleToken); every reported logprob (the drawn token's, the top-N,
// the target's) is the log-softmax of the RAW logits, whatever the sampling parameters.
LogitResult evaluateLogits(const float* logits, int64_t vocab, const LogitRequest& request);

// The n most likely tokens by raw log-probability, most likely first (lowest id among equals).
void topLogprobs(const float* logits, int64_t vocab, double logSumExp, int n, std::vector<int32_t>& ids,
                 std::vector<float>& logprobs);

}  // namespace loraserve
