// The engine's steps as the engine loop runs them, each one timed and its batch size counted. A plain wrapper
// of what the loop calls: the steps are timed, the resume from idle passes through.
import { performance } from "node:perf_hooks";
import type { LoopEngine } from "../engine/llm-engine.js";
import type { ShardMetrics } from "./shard-metrics.js";

export function timedSteps(engine: LoopEngine, metrics: ShardMetrics): LoopEngine {
  // The loop starts a step while the one before runs, and the engine runs them one after the other: a step began
  // when it was started or when the one before it ended, whichever is later (as the JS thread saw that end).
  let lastEndedAt = 0;
  return {
    step: async (seqs) => {
      const startedAt = performance.now();
      const results = await engine.step(seqs);
      // Only a step that ran: one refused at once settles before the step ahead of it, and would move that one's start.
      const endedAt = performance.now();
      metrics.stepDuration.observe({}, (endedAt - Math.max(startedAt, lastEndedAt)) / 1000);
      lastEndedAt = Math.max(lastEndedAt, endedAt);
      metrics.batchSize.observe({}, seqs.length);
      return results;
    },
    resumeFromIdle: () => engine.resumeFromIdle(),
  };
}
