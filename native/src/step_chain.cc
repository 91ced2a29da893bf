#include "step_chain.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <utility>

namespace loraserve {

StepTicket StepChain::begin(const std::vector<SeqStep>& seqs) {
  if (inFlight_.size() >= kMaxInFlight) {
    throw std::runtime_error("already " + std::to_string(kMaxInFlight) +
                             " steps in flight: await the oldest before starting another");
  }
  InFlight step{nextTicket_++, {}};
  lastSampled_.assign(seqs.size(), false);
  for (size_t i = 0; i < seqs.size(); ++i) {
    if (seqs[i].adapterSlot >= 0) step.slots.push_back(seqs[i].adapterSlot);
    lastSampled_[i] = seqs[i].sample;
  }
  inFlight_.push_back(std::move(step));
  return {inFlight_.back().ticket, std::chrono::steady_clock::now()};
}

void StepChain::beginFailed() { lastSampled_.clear(); }

void StepChain::end(uint64_t ticket) {
  const auto at = std::find_if(inFlight_.begin(), inFlight_.end(), [&](const InFlight& s) { return s.ticket == ticket; });
  if (at != inFlight_.end()) inFlight_.erase(at);
}

bool StepChain::usesSlot(int slot) const {
  return std::any_of(inFlight_.begin(), inFlight_.end(), [&](const InFlight& step) {
    return std::find(step.slots.begin(), step.slots.end(), slot) != step.slots.end();
  });
}

StepChain::Turn::Turn(StepChain& chain, uint64_t ticket) : chain_(chain), ticket_(ticket) {
  std::unique_lock<std::mutex> lock(chain_.mutex_);
  chain_.turnDone_.wait(lock, [&] { return chain_.lastFinished_ + 1 == ticket_; });
}

StepChain::Turn::~Turn() {
  {
    std::lock_guard<std::mutex> lock(chain_.mutex_);
    chain_.lastFinished_ = ticket_;
    if (!finished_) {
      chain_.previousOk_ = false;
      chain_.previousDrawn_.clear();
    }
  }
  chain_.turnDone_.notify_all();
}

void StepChain::Turn::takePrevious(std::vector<SeqStep>& seqs) const {
  // The previous step has finished (this turn waited for it), so its tokens are settled; the lock orders the read.
  std::lock_guard<std::mutex> lock(chain_.mutex_);
  for (SeqStep& seq : seqs) {
    if (seq.previousResult < 0) continue;
    if (!chain_.previousOk_) throw std::runtime_error("the step this one follows failed, so its tokens are unknown");
    const int32_t token = chain_.previousDrawn_.at(static_cast<size_t>(seq.previousResult));
    seq.tokens.assign(1, token);
    if (!seq.penaltyTokens.empty()) seq.penaltyTokens.push_back(token);
    seq.previousResult = -1;
  }
}

void StepChain::Turn::finish(std::vector<int32_t> drawn) {
  std::lock_guard<std::mutex> lock(chain_.mutex_);
  chain_.previousOk_ = true;
  chain_.previousDrawn_ = std::move(drawn);
  finished_ = true;
}

}  // namespace loraserve
