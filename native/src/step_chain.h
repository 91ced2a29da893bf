// The order of steps that are in flight together. The scheduler starts step k+1 while step k runs (so that the
// GPU never waits for the JS thread between them); each step's worker waits here for the one started before it,
// so steps run one at a time in the order they were started, and a step may take the token the one before it
// drew for a sequence (SeqStep::previousResult) before the JS thread has even seen that token.
//
// Threads: begin, beginFailed, end, usesSlot and lastSampled are called on the JS thread only; Turn lives on the
// worker thread that runs its step.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <vector>

#include "step_io.h"

namespace loraserve {

// A step's place in the chain, and when the JS thread started it.
struct StepTicket {
  uint64_t id;
  std::chrono::steady_clock::time_point startedAt;
};

class StepChain {
 public:
  // More would only hold libuv worker threads waiting: two is what overlapping one step with the next needs.
  static constexpr size_t kMaxInFlight = 2;

  // JS thread: a step passed validation and is queued; returns its ticket. Throws past kMaxInFlight.
  StepTicket begin(const std::vector<SeqStep>& seqs);
  // JS thread: a step was refused before it was queued. The next step cannot take tokens from it: there are none.
  void beginFailed();
  // JS thread: the step's promise settles.
  void end(uint64_t ticket);
  // JS thread: whether a step in flight names the adapter slot.
  bool usesSlot(int slot) const;
  // JS thread: for each entry of the step started last, whether it draws a token (what previousResult may name).
  const std::vector<bool>& lastSampled() const { return lastSampled_; }

  // The running of one step, on its worker thread: constructed, it waits until every step started before it has
  // finished; destroyed, it lets the next one go. A step that does not reach finish() counts as failed.
  class Turn {
   public:
    Turn(StepChain& chain, uint64_t ticket);
    ~Turn();
    Turn(const Turn&) = delete;
    Turn& operator=(const Turn&) = delete;

    // Replaces every previousResult entry by the token the step before drew there (appended to its penalty tokens
    // too). Throws when that step failed.
    void takePrevious(std::vector<SeqStep>& seqs) const;
    // The step succeeded: what it drew, one entry per sequence (-1 where it drew nothing).
    void finish(std::vector<int32_t> drawn);

   private:
    StepChain& chain_;
    uint64_t ticket_;
    bool finished_ = false;
  };

 private:
  struct InFlight {
    uint64_t ticket;
    std::vector<int> slots;
  };

  // JS thread only.
  uint64_t nextTicket_ = 1;
  std::deque<InFlight> inFlight_;
  std::vector<bool> lastSampled_;

  // Shared by the workers.
  std::mutex mutex_;
  std::condition_variable turnDone_;
  uint64_t lastFinished_ = 0;
  bool previousOk_ = false;
  std::vector<int32_t> previousDrawn_;
};

}  // namespace loraserve
