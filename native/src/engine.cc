#include "engine.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "forward_batch.h"
#include "host_adapter.h"
#include "step_validation.h"
#include "tp/follower_loop.h"
#include "tp/rank_commands.h"

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
  require(options.numKvBlocks >= 0 && options.blockSize > 0, "numKvBlocks must be >= 0 and blockSize positive");
  require(options.numKvBlocks > 0 || options.device == Device::Cuda,
          "numKvBlocks 0 (size the cache from GPU memory) needs device \"cuda\"");
  require(options.gpuMemoryFraction > 0 && options.gpuMemoryFraction <= 1, "gpuMemoryFraction must be in (0, 1]");
  require(options.maxLoras >= -1 && options.maxLoraRank >= 0, "maxLoras must be >= -1 and maxLoraRank >= 0");
  require(options.maxLoras >= 0 || options.device == Device::Cuda,
          "maxLoras -1 (size the adapter slots from GPU memory) needs device \"cuda\"");
  require(options.adapterMemoryFraction > 0 && options.adapterMemoryFraction < 1,
          "adapterMemoryFraction must be in (0, 1)");
  require(options.threads >= 0, "threads must be >= 0");
  return options;
}

// Sent when a group has been idle this long: well inside the followers' collective timeout (comm_config.h).
constexpr std::chrono::milliseconds kHeartbeatInterval{1000};

}  // namespace

Engine::Engine(const EngineOptions& options)
    : options_(validated(options)),
      layout_(options.spec, options.rank, options.world),
      backend_(createBackend(options)),
      slots_(static_cast<size_t>(std::max(options.maxLoras, 0)), SlotState::Free) {
  if (options.world > 1 && options.rank == 0) {
    leader_ = std::make_unique<LeaderLink>(backend_->communicator(), kHeartbeatInterval);
  }
  // The file references are only needed while the backend reads the weights.
  options_.weights = BaseWeightRefs{};
  if (options_.numKvBlocks == 0) options_.numKvBlocks = backend_->sizedKvBlocks();
  if (options_.maxLoras < 0) {
    options_.maxLoras = backend_->sizedMaxLoras();
    slots_.assign(static_cast<size_t>(options_.maxLoras), SlotState::Free);
  }
}

EngineInfo Engine::info() const {
  return {options_.device,      options_.numKvBlocks,     options_.blockSize,          options_.maxLoras,
          backend_->weightBytes(), stepClock_.steps(), stepClock_.seconds(), backend_->collectiveSeconds(),
          stepClock_.gapSeconds(), stepClock_.loopWaitSeconds()};
}

StepTicket Engine::beginStep(const std::vector<SeqStep>& seqs) {
  const StepLimits limits{options_.spec, options_.numKvBlocks, options_.blockSize, options_.maxLoras,
                          [this](int slot) { return slots_[static_cast<size_t>(slot)] == SlotState::Ready; },
                          steps_.lastSampled()};
  try {
    validateStep(seqs, limits);
    return steps_.begin(seqs);
  } catch (...) {
    steps_.beginFailed();
    throw;
  }
}

std::vector<SeqResult> Engine::runStep(const StepTicket& ticket, std::vector<SeqStep>& seqs) {
  StepChain::Turn turn(steps_, ticket.id);
  turn.takePrevious(seqs);
  std::vector<SeqResult> results;
  std::vector<int32_t> drawn;
  if (!seqs.empty()) {
    const ForwardBatch batch = buildForwardBatch(seqs);
    const StepClock::Timing timing = stepClock_.start(ticket.startedAt);
    std::vector<LogitResult> answers =
        leader_ ? leader_->runStep<std::vector<LogitResult>>(encodeStep(seqs), [&] { return backend_->forward(batch); })
                : backend_->forward(batch);
    results.reserve(seqs.size());
    for (size_t i = 0; i < seqs.size(); ++i) {
      results.push_back(resultFor(seqs[i], batch.segments[i], batch, answers));
      drawn.push_back(results.back().token);
    }
  }
  turn.finish(std::move(drawn));
  return results;
}

void Engine::endStep(uint64_t ticket) { steps_.end(ticket); }

void Engine::resumeFromIdle() {
  stepClock_.resume();
  if (leader_) leader_->enqueue(encodeResumeFromIdle());
}

SeqResult Engine::resultFor(const SeqStep& seq, const BatchSegment& segment, const ForwardBatch& batch,
                            std::vector<LogitResult>& answers) {
  SeqResult result;
  result.logprob = std::numeric_limits<float>::quiet_NaN();
  if (!seq.logprobTargets.empty()) {
    result.targetLogprobs.assign(seq.tokens.size(), std::numeric_limits<float>::quiet_NaN());
  }
  for (int64_t k = segment.firstLogit; k < segment.firstLogit + segment.numLogits; ++k) {
    const LogitRequest& request = batch.logitRequests[static_cast<size_t>(k)];
    LogitResult& answer = answers[static_cast<size_t>(k)];
    if (request.select) {
      result.token = answer.token;
      result.logprob = answer.tokenLogprob;
      result.topIds = std::move(answer.topIds);
      result.topLogprobs = std::move(answer.topLogprobs);
    }
    if (request.target >= 0) {
      result.targetLogprobs[static_cast<size_t>(request.row - segment.firstRow)] = answer.targetLogprob;
    }
    // Requests are in row order and every row has one when returnLogits is set, so appending fills the rows.
    if (request.returnLogits) result.logits.insert(result.logits.end(), answer.logits.begin(), answer.logits.end());
  }
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
  const CheckedAdapter checked = checkAdapter(refs, options_.spec, layout_, options_.maxLoraRank);
  backend_->loadAdapter(slot, checked);
  // The followers load the same bytes before the first step that can name the slot (it is not ready yet).
  if (leader_) leader_->enqueue(encodeLoadAdapter(slot, checked));
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
  if (steps_.usesSlot(slot)) {
    throw std::invalid_argument("adapter slot " + std::to_string(slot) + " is used by a step in flight");
  }
  backend_->unloadAdapter(slot);
  if (leader_) leader_->enqueue(encodeUnloadAdapter(slot));
  slots_[static_cast<size_t>(slot)] = SlotState::Free;
}

void Engine::follow() {
  if (options_.rank == 0) throw std::logic_error("rank 0 leads its group; only the other ranks follow");
  followLeader(backend_->communicator(), *backend_, options_.spec, layout_, options_.maxLoraRank, stepClock_);
}

void Engine::stopGroup() {
  if (leader_) leader_->stop();
}

std::string Engine::waitUntilGroupFails() {
  if (!leader_) throw std::logic_error("only the leader of a group of several ranks watches it");
  return leader_->waitUntilBroken();
}

}  // namespace loraserve
