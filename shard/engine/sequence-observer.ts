// What the engine loop tells an observer about one sequence beyond its tokens: when it runs and when it loses
// its cache. The shard's tracing (shard/telemetry/sequence-trace.ts) turns these into the queue and prefill spans.
import type { ScheduledChunk } from "./scheduler.js";

export interface SequenceObserver {
  /** A chunk of the sequence is in the step about to run, which holds `batchSize` sequences in all. */
  scheduled(chunk: ScheduledChunk, batchSize: number): void;
  /** The sequence was preempted: its KV cache is gone and it waits to be computed again. */
  preempted(): void;
}
