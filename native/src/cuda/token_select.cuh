// Token selection and log-probabilities on the GPU, with the CPU sampler's semantics (sampler.h): greedy is
// the highest logit (lowest id among equals); sampling applies temperature, then top-k, then top-p over the
// candidates ordered by (logit desc, id asc), then one draw with the counter-based uniform number, walking
// the candidates in that order (or in id order when neither cut applies). Only the results cross to the host.
//
// The sorted cuts never sort: a radix descent over a 64-bit order key (the logit's order-preserving bits,
// then the inverted id) finds the k-th candidate by count (top-k) and the candidate where the running weight
// crosses a threshold (top-p cut, the draw), 8 passes of 8-bit digits over the row each.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace loraserve::cuda {

constexpr int kMaxTopN = 32;

struct TokenRequest {
  int draw = 0;            // 1: select a token for this row; 0: only the target logprob
  double temperature = 0;  // 0: greedy
  int64_t topK = 0;        // 0: no top-k cut
  double topP = 1.0;       // 1: no nucleus cut
  double uniform = 0;      // the counter-based draw in [0, 1) (counter_rng.h uniformDraw(seed, draw))
  int topN = 0;            // alternatives to report with the token, at most kMaxTopN
  int target = -1;         // a token id whose logprob is wanted at this row, -1 for none
};

struct TokenResult {
  int token = -1;
  float tokenLogprob = 0;
  float targetLogprob = 0;  // NaN without a target
  int numTop = 0;
  int topIds[kMaxTopN];
  float topLogprobs[kMaxTopN];
};

// logits: [rows, vocab] float32; one request and one result per row.
void selectTokens(const float* logits, int rows, int vocab, const TokenRequest* requests, TokenResult* results,
                  cudaStream_t stream);

}  // namespace loraserve::cuda
