// The engine's own share of a load's wall time, from the shard's Prometheus metrics: the leader rank's
// loraserve_rank_step_seconds_total (the wall time of its engine steps) read before and after the load. What is
// left of the wall time is the stack's: scheduling, tokenizing, streaming and the gaps between steps.
import { performance } from "node:perf_hooks";

const STEP_SECONDS = "loraserve_rank_step_seconds_total";

/** Seconds the shard's engine has spent in steps since it started: the metric's sum over its label sets. */
export async function readEngineStepSeconds(metricsUrl: string): Promise<number> {
  const response = await fetch(metricsUrl);
  if (response.status !== 200) throw new Error(`${metricsUrl} answered ${response.status}`);
  const lines = (await response.text()).split("\n").filter((line) => line.startsWith(STEP_SECONDS));
  if (lines.length === 0) throw new Error(`${metricsUrl} has no ${STEP_SECONDS}`);
  return lines.reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(" ") + 1)), 0);
}

/** Measures `load` and the engine's step seconds over it: the share of its wall time the engine was busy. */
export async function withEngineBusyShare<T>(metricsUrl: string, load: () => Promise<T>): Promise<{ result: T; engineBusyShare: number }> {
  const stepsBefore = await readEngineStepSeconds(metricsUrl);
  const startedAt = performance.now();
  const result = await load();
  const wallSeconds = (performance.now() - startedAt) / 1000;
  const stepSeconds = (await readEngineStepSeconds(metricsUrl)) - stepsBefore;
  return { result, engineBusyShare: wallSeconds > 0 ? stepSeconds / wallSeconds : 0 };
}
