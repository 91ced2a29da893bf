// A follower rank's whole life after start-up: wait for the leader's next command and obey it, until the
// leader says stop or the group fails. It runs on one worker thread; nothing on its per-step path is
// JavaScript, and it answers nothing (the leader's collectives are the only traffic).
#pragma once

#include "../backend.h"
#include "../comm/communicator.h"
#include "../model_spec.h"
#include "../step_clock.h"
#include "../tensor_parallel.h"

namespace loraserve {

// Returns when the leader stops the group; throws (naming the failure) when the leader or a peer is gone.
// Each step the leader sends is timed on `clock`.
void followLeader(Communicator& communicator, Backend& backend, const ModelSpec& spec, const ShardLayout& layout,
                  int maxLoraRank, StepClock& clock);

}  // namespace loraserve
