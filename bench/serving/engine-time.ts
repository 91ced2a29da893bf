// The engine's own share of a load's wall time, from the shard's Prometheus metrics read before and after the
// load: the leader rank's loraserve_rank_step_seconds_total (the wall time of its engine steps), and of the time
// between steps, loraserve_rank_loop_wait_seconds_total (before the engine loop had started the next step). What
// is left of the wall time is the engine's own host work between steps, and the time when the loop had nothing
// to run (which the engine counts as neither: the loop tells it when it resumes from idle).
import { performance } from "node:perf_hooks";

const STEP_SECONDS = "loraserve_rank_step_seconds_total";
const LOOP_WAIT_SECONDS = "loraserve_rank_loop_wait_seconds_total";

/** Each counter's sum over its label sets, as the shard reports it now. */
export async function readCounters(metricsUrl: string, names: readonly string[]): Promise<number[]> {
  const response = await fetch(metricsUrl);
  if (response.status !== 200) throw new Error(`${metricsUrl} answered ${response.status}`);
  const lines = (await response.text()).split("\n");
  return names.map((name) => {
    // The name alone or with labels: never a longer name that starts with this one.
    const mine = lines.filter((line) => line.startsWith(`${name} `) || line.startsWith(`${name}{`));
    if (mine.length === 0) throw new Error(`${metricsUrl} has no ${name}`);
    return mine.reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(" ") + 1)), 0);
  });
}

/** Shares of a load's wall time: the engine stepping, and the engine waiting for its loop to start a step. */
export interface EngineShares {
  /** The shard's engine in steps. */
  engineBusyShare: number;
  /** Between steps, before the engine loop had started the next one (the rest is host work, or nothing to run). */
  loopWaitShare: number;
}

/** Measures `load` and the engine's time over it. */
export async function withEngineShares<T>(metricsUrl: string, load: () => Promise<T>): Promise<{ result: T } & EngineShares> {
  const names = [STEP_SECONDS, LOOP_WAIT_SECONDS];
  const before = await readCounters(metricsUrl, names);
  const startedAt = performance.now();
  const result = await load();
  const wallSeconds = (performance.now() - startedAt) / 1000;
  const [steps, loopWait] = (await readCounters(metricsUrl, names)).map((value, i) => value - before[i]!) as [number, number];
  const share = (seconds: number): number => (wallSeconds > 0 ? seconds / wallSeconds : 0);
  return { result, engineBusyShare: share(steps), loopWaitShare: share(loopWait) };
}
