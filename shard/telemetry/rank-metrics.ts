// What every rank of a tensor-parallel group reports about its own engine, read from the engine when scraped:
// its steps, their time, and the time spent in the group's collectives (the all-reduces and gathers a step
// waits on). The leader adds them to the shard's metrics; a follower serves them alone (shard/follower.ts).
import type { NativeEngine } from "../../native/addon.js";
import type { MetricSet } from "../../telemetry/metric-set.js";

export function watchRankEngine(set: MetricSet, engine: Pick<NativeEngine, "info">): void {
  set.observedCounter("loraserve_rank_steps_total", "Engine steps this rank has run (a follower runs its leader's)", () => engine.info().steps);
  set.observedCounter("loraserve_rank_step_seconds_total", "Wall time of this rank's engine steps", () => engine.info().stepSeconds);
  set.observedCounter(
    "loraserve_rank_collective_seconds_total",
    "Time this rank's steps spent in the group's all-reduces and all-gathers (0 on CUDA, whose NCCL calls are asynchronous)",
    () => engine.info().collectiveSeconds,
  );
  set.observedCounter(
    "loraserve_rank_step_gap_seconds_total",
    "Time between this rank's consecutive engine steps, from one's end to the next one's start (a time when the engine loop had nothing to run is left out)",
    () => engine.info().stepGapSeconds,
  );
  set.observedCounter(
    "loraserve_rank_loop_wait_seconds_total",
    "Of the time between steps, the part before the engine loop had started the next step (waiting for the loop)",
    () => engine.info().loopWaitSeconds,
  );
}
