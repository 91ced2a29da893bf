// What a tensor-parallel group's leader tells its followers, in the order it happens: run this step, load this
// adapter into this slot, free this slot, the loop resumes from idle, stop. The leader's engine encodes each command as bytes and broadcasts
// them through the communicator; each follower's native loop (follower_loop.h) decodes and obeys, so every rank
// runs the same steps over the same slots with no JavaScript and no reply on the per-step path.
//
// An adapter travels as its tensors' bytes, not as file paths: a follower on another host need not see the
// leader's files or host tier. Each rank then keeps only its slice (checkAdapter with its own layout).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "../adapter_refs.h"
#include "../step_io.h"
#include "../comm/communicator.h"
#include "../host_adapter.h"

namespace loraserve {

// Heartbeat: sent when the leader has been idle a while, so that followers wait for commands with the same
// collective timeout as for everything else, and either side learns within seconds that the other is gone.
// ResumeFromIdle: the leader's loop had nothing to run and has work again (Engine::resumeFromIdle), so the
// followers' step clocks leave that idle time out of their gaps as the leader's does.
enum class RankCommandKind : uint8_t {
  Step = 1,
  LoadAdapter = 2,
  UnloadAdapter = 3,
  Stop = 4,
  Heartbeat = 5,
  ResumeFromIdle = 6
};

// An adapter whose tensors live in `blob` (one borrowed "file"); refs() points into it, so keep this alive and
// unmoved-from while the refs are in use.
struct AdapterPayload {
  int rank = 0;
  double scaling = 1.0;
  std::vector<LoraPairRef> pairs;  // tensor refs into the blob
  std::vector<uint8_t> blob;

  AdapterRefs refs() const;
};

struct RankCommand {
  RankCommandKind kind = RankCommandKind::Stop;
  std::vector<SeqStep> seqs;  // Step: what the leader's step runs (no penalty tokens: only the leader samples)
  int slot = -1;              // LoadAdapter, UnloadAdapter
  AdapterPayload adapter;     // LoadAdapter
};

std::vector<uint8_t> encodeStep(const std::vector<SeqStep>& seqs);
// Copies every tensor of a checked adapter (read from its files or host bytes) into the command.
std::vector<uint8_t> encodeLoadAdapter(int slot, const CheckedAdapter& adapter);
std::vector<uint8_t> encodeUnloadAdapter(int slot);
std::vector<uint8_t> encodeStop();
std::vector<uint8_t> encodeHeartbeat();
std::vector<uint8_t> encodeResumeFromIdle();

// A command as it travels: its size, then its bytes, each broadcast from the leader (rank 0).
void sendRankCommand(Communicator& communicator, std::vector<uint8_t> command);
std::vector<uint8_t> receiveRankCommand(Communicator& communicator);

// Throws on bytes that are not a whole command (a leader of another build, a truncated message).
RankCommand decodeRankCommand(const std::vector<uint8_t>& bytes);

}  // namespace loraserve
