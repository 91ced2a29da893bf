// One step's input and output per sequence (native/addon.ts SeqStep and SeqResult).
#pragma once

#include <cstdint>
#include <vector>

namespace loraserve {

struct SamplingParams {
  double temperature = 0.0;  // 0: greedy
  int64_t topK = 0;          // 0: no top-k cut
  double topP = 1.0;         // 1: no nucleus cut
  uint64_t seed = 0;
  uint64_t draw = 0;
  double typicalP = 1.0;           // 1: no typical cut
  double repetitionPenalty = 1.0;  // 1: none
  double frequencyPenalty = 0.0;   // 0: none
  double presencePenalty = 0.0;    // 0: none
};

struct SeqStep {
  std::vector<int32_t> tokens;
  // >= 0: tokens is empty, and the one token this step runs is the one the step started just before it drew for
  // its entry previousResult (step_chain.h); the engine puts it in tokens (and penaltyTokens) before running.
  int previousResult = -1;
  int64_t startPos = 0;
  std::vector<int32_t> blockTable;
  int adapterSlot = -1;
  bool sample = false;
  SamplingParams sampling;
  // The sequence's prompt then generated ids, which the penalties look at; empty when none applies.
  std::vector<int32_t> penaltyTokens;
  int64_t penaltyPromptLength = 0;  // penaltyTokens[0, penaltyPromptLength) are the prompt
  int topN = 0;
  std::vector<int32_t> logprobTargets;  // one per token, -1 for none; empty when none were requested
  bool returnLogits = false;
};

struct SeqResult {
  int32_t token = -1;
  float logprob = 0.0f;
  std::vector<int32_t> topIds;
  std::vector<float> topLogprobs;
  std::vector<float> targetLogprobs;
  std::vector<float> logits;
};

}  // namespace loraserve
