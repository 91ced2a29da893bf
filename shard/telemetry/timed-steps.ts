// The engine's steps as the engine loop runs them, each one timed and its batch size counted. A plain wrapper
// of the one method the loop calls.
import { performance } from "node:perf_hooks";
import type { NativeEngine } from "../../native/addon.js";
import type { ShardMetrics } from "./shard-metrics.js";

export function timedSteps(engine: Pick<NativeEngine, "step">, metrics: ShardMetrics): Pick<NativeEngine, "step"> {
  return {
    step: async (seqs) => {
      const startedAt = performance.now();
      try {
        return await engine.step(seqs);
      } finally {
        metrics.stepDuration.observe({}, (performance.now() - startedAt) / 1000);
        metrics.batchSize.observe({}, seqs.length);
      }
    },
  };
}
