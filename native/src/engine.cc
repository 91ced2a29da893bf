#include "engine.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "forward_batch.h"
#include "host_adapter.h"
#include "sampler.h"
#include "step_validation.h"

namespace loraserve {

namespace {

const EngineOptions& validated(const EngineOptions& options) {
  const ModelSpec& spec = options.spec;
  auto require = [](bool ok, const std::string& message) {
    if (!ok) throw std::invalid_argument("engine options: " + message);
  };
  require(spec.hiddenSize > 0 && spec.intermediateSize > 0 && spec.numLayers > 0 && spec.vocabSize > 0 &&
              spec.maxPositionEmbeddings > 0,
          "model sizes must be positive");
  require(spec.numHeads > 0 && spec.numKvHeads > 0 && spec.numHeads % spec.numKvHeads == 0,
          "num_attention_heads must be a positive multiple of num_key_value_heads");
  require(spec.headDim > 0 && spec.headDim % 2 == 0, "head_dim must be positive and even");
  require(spec.rmsNormEps > 0 && spec.ropeTheta > 0, "rms_norm_eps and rope_theta must be positive");
  require(spec.vocabSize <= std::numeric_limits<int32_t>::max(), "vocab_size does not fit token ids");
  require(options.numKvBlocks > 0 && options.blockSize > 0, "numKvBlocks and blockSize must be positive");
  require(options.maxLoras >= 0 && options.maxLoraRank >= 0, "maxLoras and maxLoraRank must be >= 0");
  require(options.threads >= 0, "threads must be >= 0");
  return options;
}

}  // namespace

Engine::Engine(const EngineOptions& options)
    : options_(validated(options)),
      layout_(options.spec, options.rank, options.world),
      backend_(createBackend(options)),
      slots_(static_cast<size_t>(options.maxLoras), SlotState::Free) {
  // The file references are only needed while the backend reads the weights.
  options_.weights = BaseWeightRefs{};
}

EngineInfo Engine::info() const {
  return {options_.device, options_.numKvBlocks, options_.blockSize, options_.maxLoras, backend_->weightBytes()};
}

void Engine::beginStep(const std::vector<SeqStep>& seqs) {
  if (stepRunning_) throw std::runtime_error("a step is already running: await it before starting the next");
  const StepLimits limits{options_.spec, options_.numKvBlocks, options_.blockSize, options_.maxLoras,
                          [this](int slot) { return slots_[static_cast<size_t>(slot)] == SlotState::Ready; }};
  validateStep(seqs, limits);
  slotsOfRunningStep_.clear();
  for (const SeqStep& seq : seqs) {
    if (seq.adapterSlot >= 0) slotsOfRunningStep_.push_back(seq.adapterSlot);
  }
  stepRunning_ = true;
}

std::vector<SeqResult> Engine::runStep(const std::vector<SeqStep>& seqs) {
  std::vector<SeqResult> results;
  if (seqs.empty()) return results;
  const ForwardBatch batch = buildForwardBatch(seqs);
  const std::vector<float> logits = backend_->forward(batch);
  results.reserve(seqs.size());
  for (size_t i = 0; i < seqs.size(); ++i) {
    const BatchSegment& segment = batch.segments[i];
    results.push_back(resultFor(seqs[i], segment, logits.data() + segment.firstLogit * options_.spec.vocabSize));
  }
  return results;
}

void Engine::endStep() {
  stepRunning_ = false;
  slotsOfRunningStep_.clear();
}

SeqResult Engine::resultFor(const SeqStep& seq, const BatchSegment& segment, const float* logits) const {
  const int64_t vocab = options_.spec.vocabSize;
  const size_t count = seq.tokens.size();
  // logits holds the segment's logit rows in position order; find each position's row.
  std::vector<const float*> rowOf(count, nullptr);
  for (size_t i = 0, next = 0; i < count && next < static_cast<size_t>(segment.numLogits); ++i) {
    if (needsLogits(seq, i)) rowOf[i] = logits + static_cast<int64_t>(next++) * vocab;
  }

  SeqResult result;
  result.logprob = std::numeric_limits<float>::quiet_NaN();
  if (seq.sample) {
    const float* row = rowOf[count - 1];
    const double lse = logSumExp(row, vocab);
    result.token = sampleToken(row, vocab, seq.sampling);
    result.logprob = static_cast<float>(row[result.token] - lse);
    if (seq.topN > 0) topLogprobs(row, vocab, lse, seq.topN, result.topIds, result.topLogprobs);
  }
  if (!seq.logprobTargets.empty()) {
    result.targetLogprobs.assign(count, std::numeric_limits<float>::quiet_NaN());
    for (size_t i = 0; i < count; ++i) {
      const int32_t target = seq.logprobTargets[i];
      if (target >= 0) result.targetLogprobs[i] = static_cast<float>(rowOf[i][target] - logSumExp(rowOf[i], vocab));
    }
  }
  if (seq.returnLogits) result.logits.assign(logits, logits + static_cast<int64_t>(count) * vocab);
  return result;
}

void Engine::checkSlotIndex(int slot) const {
  if (slot < 0 || slot >= options_.maxLoras) {
    throw std::invalid_argument("adapter slot " + std::to_string(slot) + " is outside [0, " +
                                std::to_string(options_.maxLoras) + ")");
  }
}

void Engine::beginAdapterLoad(int slot) {
  checkSlotIndex(slot);
  if (slots_[static_cast<size_t>(slot)] != SlotState::Free) {
    throw std::invalid_argument("adapter slot " + std::to_string(slot) + " is not free");
  }
  slots_[static_cast<size_t>(slot)] = SlotState::Loading;
}

void Engine::loadAdapter(int slot, const AdapterRefs& refs) {
  backend_->loadAdapter(slot, loadHostAdapter(refs, options_.spec, layout_, options_.maxLoraRank));
}

void Engine::endAdapterLoad(int slot, bool loaded) {
  slots_[static_cast<size_t>(slot)] = loaded ? SlotState::Ready : SlotState::Free;
}

void Engine::unloadAdapter(int slot) {
  checkSlotIndex(slot);
  const SlotState state = slots_[static_cast<size_t>(slot)];
  if (state == SlotState::Loading) {
    throw std::invalid_argument("adapter slot " + std::to_string(slot) + " is still loading");
  }
  if (state == SlotState::Free) throw std::invalid_argument("adapter slot " + std::to_string(slot) + " is free");
  if (stepRunning_ &&
      std::find(slotsOfRunningStep_.begin(), slotsOfRunningStep_.end(), slot) != slotsOfRunningStep_.end()) {
    throw std::invalid_argument("adapter slot " + std::to_string(slot) + " is used by the running step");
  }
  backend_->unloadAdapter(slot);
  slots_[static_cast<size_t>(slot)] = SlotState::Free;
}

}  // namespace loraserve
