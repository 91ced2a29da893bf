#include "step_validation.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace loraserve {

namespace {

void validateSequence(const SeqStep& seq, const StepLimits& limits, const std::string& name) {
  auto fail = [&](const std::string& message) { throw std::invalid_argument(name + ": " + message); };
  const bool takesPrevious = seq.previousResult >= 0;
  if (takesPrevious) {
    if (!seq.tokens.empty()) fail("a step that takes the previous step's token has no tokens of its own");
    if (!seq.logprobTargets.empty()) fail("a step that takes the previous step's token asks for no logprob targets");
    if (static_cast<size_t>(seq.previousResult) >= limits.previousSampled.size() ||
        !limits.previousSampled[static_cast<size_t>(seq.previousResult)]) {
      fail("previousResult " + std::to_string(seq.previousResult) +
           " names no token that the step started before this one draws");
    }
  }
  const int64_t count = static_cast<int64_t>(seq.tokens.size()) + (takesPrevious ? 1 : 0);
  if (count == 0) fail("no tokens");
  if (seq.startPos < 0) fail("startPos " + std::to_string(seq.startPos) + " is negative");
  const int64_t end = seq.startPos + count;
  if (end > limits.spec.maxPositionEmbeddings) {
    fail("position " + std::to_string(end - 1) + " is beyond max_position_embeddings (" +
         std::to_string(limits.spec.maxPositionEmbeddings) + ")");
  }
  for (int32_t token : seq.tokens) {
    if (token < 0 || token >= limits.spec.vocabSize) {
      fail("token id " + std::to_string(token) + " is outside the vocabulary [0, " +
           std::to_string(limits.spec.vocabSize) + ")");
    }
  }
  const int64_t blocksNeeded = (end + limits.blockSize - 1) / limits.blockSize;
  if (static_cast<int64_t>(seq.blockTable.size()) < blocksNeeded) {
    fail("block table has " + std::to_string(seq.blockTable.size()) + " blocks, positions up to " +
         std::to_string(end - 1) + " need " + std::to_string(blocksNeeded));
  }
  for (int64_t i = 0; i < blocksNeeded; ++i) {
    const int32_t block = seq.blockTable[static_cast<size_t>(i)];
    if (block < 0 || block >= limits.numKvBlocks) {
      fail("block table entry " + std::to_string(i) + " is block " + std::to_string(block) +
           ", outside the cache [0, " + std::to_string(limits.numKvBlocks) + ")");
    }
  }
  if (seq.adapterSlot < -1 || seq.adapterSlot >= limits.maxLoras) {
    fail("adapter slot " + std::to_string(seq.adapterSlot) + " is outside [-1, " + std::to_string(limits.maxLoras) +
         ")");
  }
  if (seq.adapterSlot >= 0 && !limits.slotReady(seq.adapterSlot)) {
    fail("adapter slot " + std::to_string(seq.adapterSlot) + " holds no loaded adapter");
  }
  const SamplingParams& sampling = seq.sampling;
  if (!(sampling.temperature >= 0.0) || !std::isfinite(sampling.temperature)) {
    fail("temperature must be a finite number >= 0");
  }
  if (sampling.topK < 0) fail("topK must be >= 0");
  if (!(sampling.topP > 0.0 && sampling.topP <= 1.0)) fail("topP must be in (0, 1]");
  if (!(sampling.typicalP > 0.0 && sampling.typicalP <= 1.0)) fail("typicalP must be in (0, 1]");
  if (!(sampling.repetitionPenalty > 0.0) || !std::isfinite(sampling.repetitionPenalty)) {
    fail("repetitionPenalty must be a finite number > 0");
  }
  if (!std::isfinite(sampling.frequencyPenalty) || !std::isfinite(sampling.presencePenalty)) {
    fail("frequencyPenalty and presencePenalty must be finite");
  }
  for (int32_t token : seq.penaltyTokens) {
    if (token < 0 || token >= limits.spec.vocabSize) {
      fail("penalty token id " + std::to_string(token) + " is outside the vocabulary [0, " +
           std::to_string(limits.spec.vocabSize) + ")");
    }
  }
  if (seq.penaltyPromptLength < 0 || seq.penaltyPromptLength > static_cast<int64_t>(seq.penaltyTokens.size())) {
    fail("penaltyPromptLength " + std::to_string(seq.penaltyPromptLength) + " is outside [0, " +
         std::to_string(seq.penaltyTokens.size()) + "] (the penalty tokens)");
  }
  if (seq.topN < 0) fail("topN must be >= 0");
  if (!seq.logprobTargets.empty()) {
    if (seq.logprobTargets.size() != seq.tokens.size()) {
      fail("logprobTargets has " + std::to_string(seq.logprobTargets.size()) + " entries for " +
           std::to_string(count) + " tokens");
    }
    for (int32_t target : seq.logprobTargets) {
      if (target < -1 || target >= limits.spec.vocabSize) {
        fail("logprob target " + std::to_string(target) + " is neither -1 nor a token id");
      }
    }
  }
}

}  // namespace

void validateStep(const std::vector<SeqStep>& seqs, const StepLimits& limits) {
  for (size_t i = 0; i < seqs.size(); ++i) validateSequence(seqs[i], limits, "step sequence " + std::to_string(i));
}

}  // namespace loraserve
