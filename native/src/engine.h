// The backend-independent engine: checks every step and adapter against the spec, keeps the adapter slots'
// life cycle, runs one step at a time through the backend and turns its logits into tokens and logprobs.
//
// Threads: methods marked "JS thread" are called from Node's main thread only, so the bookkeeping they share
// needs no lock; runStep and loadAdapter run on worker threads between their begin and end calls.
// Steps: up to two in flight; they run one at a time in the order begun (step_chain.h), so the scheduler can
// start the next step while one runs.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "adapter_refs.h"
#include "backend.h"
#include "engine_options.h"
#include "step_chain.h"
#include "step_io.h"
#include "step_clock.h"
#include "tensor_parallel.h"
#include "tp/leader_link.h"

namespace loraserve {

struct EngineInfo {
  Device device;
  int numKvBlocks;
  int blockSize;
  int maxLoras;
  size_t weightBytes;
  // This rank's steps so far (a follower's are the leader's, run here), their time, and the part of it spent in
  // the group's collectives (0 where the backend cannot tell).
  uint64_t steps;
  double stepSeconds;
  double collectiveSeconds;
  // Between consecutive steps: all the time, and the part before the JS thread had started the next (step_clock.h).
  double stepGapSeconds;
  double loopWaitSeconds;
};

class Engine {
 public:
  explicit Engine(const EngineOptions& options);

  EngineInfo info() const;

  // JS thread: validates the step and queues it behind the steps in flight; returns its ticket. Throws on bad
  // input or when two steps are in flight already.
  StepTicket beginStep(const std::vector<SeqStep>& seqs);
  // Worker thread, after beginStep: waits for the steps begun before, then runs this one.
  std::vector<SeqResult> runStep(const StepTicket& ticket, std::vector<SeqStep>& seqs);
  // JS thread, once runStep has returned or thrown.
  void endStep(uint64_t ticket);
  // JS thread: the loop had nothing to run since the last step and has work again; that idle time counts as
  // neither gap nor loop wait, here and (the command goes out before the next step) on the followers.
  void resumeFromIdle();

  // JS thread: reserves `slot`, which must be free.
  void beginAdapterLoad(int slot);
  // Worker thread: reads, checks and installs the adapter in the reserved slot.
  void loadAdapter(int slot, const AdapterRefs& refs);
  // JS thread: makes the slot usable by steps, or frees it again when the load failed.
  void endAdapterLoad(int slot, bool loaded);
  // JS thread: frees a loaded slot that the running step (if any) does not use.
  void unloadAdapter(int slot);

  // Worker thread, on a rank other than 0: obeys the leader's commands until it stops the group (returns) or the
  // group fails (throws). Such an engine takes no other call but info() (any time) and its destruction.
  void follow();
  // Worker thread, on the leader of a group: blocks until the group fails (returns why) or is stopped.
  std::string waitUntilGroupFails();
  // JS thread: the leader tells its followers to stop (after the running step); nothing for a single rank.
  void stopGroup();

 private:
  enum class SlotState { Free, Loading, Ready };

  void checkSlotIndex(int slot) const;
  static SeqResult resultFor(const SeqStep& seq, const BatchSegment& segment, const ForwardBatch& batch,
                             std::vector<LogitResult>& answers);

  EngineOptions options_;
  ShardLayout layout_;
  std::unique_ptr<Backend> backend_;
  // Rank 0 of a group of several: declared after backend_, so it is destroyed first and its last command
  // (stop) still has the backend's communicator.
  std::unique_ptr<LeaderLink> leader_;
  std::vector<SlotState> slots_;
  StepChain steps_;
  StepClock stepClock_;
};

}  // namespace loraserve
