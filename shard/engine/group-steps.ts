// The engine's steps in a tensor-parallel group of several ranks. There a failed step has broken the group for
// good: the leader's link to its followers breaks on any failure inside a step (native/src/tp/leader_link.h),
// and the shard then stops (shard/main.ts). So the step's requests end as the shard's going down ends them,
// UNAVAILABLE, not as one request's fault: the router moves a request that had streamed nothing to another
// group, and tells one that had that its group failed.
import { ShuttingDownError, type LoopEngine } from "./llm-engine.js";

export function groupSteps(engine: LoopEngine): LoopEngine {
  return {
    step: async (seqs) => {
      try {
        return await engine.step(seqs);
      } catch (error) {
        throw new ShuttingDownError(`the tensor-parallel group failed: ${(error as Error).message}`);
      }
    },
    resumeFromIdle: () => engine.resumeFromIdle(),
  };
}
