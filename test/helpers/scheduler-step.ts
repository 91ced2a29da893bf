// The scheduler tests' engine: one step of the scheduler's plan, without tensors.
import type { Scheduler, ScheduledChunk } from "../../shard/engine/scheduler.js";

/** Plays the engine: the chunks' positions are now cached, and every sampling chunk draws token 7. */
export function runStep(scheduler: Scheduler): ScheduledChunk[] {
  const chunks = scheduler.schedule();
  for (const chunk of chunks) {
    scheduler.computed(chunk);
    if (chunk.sample) chunk.seq.receive({ id: 7, logprob: 0, top: [] });
  }
  return chunks;
}
