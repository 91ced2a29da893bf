#include "follower_loop.h"

#include "../forward_batch.h"
#include "../host_adapter.h"
#include "rank_commands.h"

namespace loraserve {

void followLeader(Communicator& communicator, Backend& backend, const ModelSpec& spec, const ShardLayout& layout,
                  int maxLoraRank, StepClock& clock) {
  for (;;) {
    RankCommand command = decodeRankCommand(receiveRankCommand(communicator));
    switch (command.kind) {
      case RankCommandKind::Step: {
        // The same batch as the leader's, so every collective inside matches; the leader alone reads the answers.
        const StepClock::Timing timing = clock.start();
        backend.forward(buildForwardBatch(command.seqs));
        break;
      }
      case RankCommandKind::LoadAdapter: {
        // The leader checked the same bytes against the same spec before sending them.
        const AdapterRefs refs = command.adapter.refs();
        backend.loadAdapter(command.slot, checkAdapter(refs, spec, layout, maxLoraRank));
        break;
      }
      case RankCommandKind::UnloadAdapter:
        backend.unloadAdapter(command.slot);
        break;
      case RankCommandKind::Heartbeat:
        break;
      case RankCommandKind::ResumeFromIdle:
        clock.resume();
        break;
      case RankCommandKind::Stop:
        return;
    }
  }
}

}  // namespace loraserve
