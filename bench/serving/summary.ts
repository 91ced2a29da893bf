// The serving benchmark's figures from its request outcomes: latency percentiles, throughput, the share under
// S-LoRA's TTFT limits, failures by kind, the backlog, and the highest offered rate that met the TTFT objective
// and was kept up with. Pure.
import type { RequestOutcome } from "./outcome.js";

/** The p-th percentile (0..100) of ascending values, interpolated linearly as numpy's default does. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const at = (p / 100) * (sorted.length - 1);
  const below = Math.floor(at);
  const above = Math.min(sorted.length - 1, below + 1);
  return sorted[below]! + (sorted[above]! - sorted[below]!) * (at - below);
}

export interface Spread {
  p50: number;
  p99: number;
  mean: number;
}

export function spread(values: readonly number[]): Spread {
  const sorted = [...values].sort((a, b) => a - b);
  const mean = sorted.length === 0 ? Number.NaN : sorted.reduce((a, b) => a + b, 0) / sorted.length;
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99), mean };
}

export interface RateSummary {
  offeredRate: number;
  sent: number;
  finished: number;
  failed: number;
  /** Failed requests by kind. */
  failures: Record<string, number>;
  /** Seconds, over finished requests. */
  ttft: Spread;
  /** The same over the finished requests on adapters other than adapter 0 (the flood's, in a flood workload). */
  ttftOthers: Spread;
  /** Seconds per output token after the first, over finished requests of two tokens or more. */
  tpot: Spread;
  e2e: Spread;
  /** Output tokens and finished requests per second of the run's wall time (first send to last end). */
  outputTokensPerSecond: number;
  requestsPerSecond: number;
  /** Shares of the requests sent (a failed one never counts as fast) with TTFT under 1 s and under 6 s. */
  ttftUnder1s: number;
  ttftUnder6s: number;
  wallSeconds: number;
  /**
   * Requests sent and not yet ended halfway through the sending and at its end. A server that keeps up holds
   * this steady (Little's law: rate x latency); one that falls behind lets it grow all through the window, even
   * while its first tokens still come fast (the scheduler admits prompts ahead of decoding the backlog).
   */
  inFlightAtHalf: number;
  inFlightAtEnd: number;
  /** First send to last. */
  sendSeconds: number;
}

export function summarize(offeredRate: number, outcomes: readonly RequestOutcome[]): RateSummary {
  const finished = outcomes.filter((o) => o.failure === null);
  const failures: Record<string, number> = {};
  for (const o of outcomes) if (o.failure !== null) failures[o.failure] = (failures[o.failure] ?? 0) + 1;
  const ttfts = finished.map((o) => (o.firstTokenAt! - o.sentAt) / 1000);
  const start = Math.min(...outcomes.map((o) => o.sentAt));
  const end = Math.max(...outcomes.map((o) => o.endedAt));
  const wallSeconds = outcomes.length === 0 ? 0 : (end - start) / 1000;
  const perSecond = (count: number): number => (wallSeconds > 0 ? count / wallSeconds : 0);
  const share = (limit: number): number => (outcomes.length === 0 ? 0 : ttfts.filter((t) => t < limit).length / outcomes.length);
  const lastSend = Math.max(...outcomes.map((o) => o.sentAt));
  const inFlightAt = (t: number): number => outcomes.filter((o) => o.sentAt <= t && t < o.endedAt).length;
  return {
    offeredRate,
    sent: outcomes.length,
    finished: finished.length,
    failed: outcomes.length - finished.length,
    failures,
    ttft: spread(ttfts),
    ttftOthers: spread(finished.filter((o) => o.adapter !== 0).map((o) => (o.firstTokenAt! - o.sentAt) / 1000)),
    tpot: spread(finished.filter((o) => o.tokens > 1).map((o) => (o.endedAt - o.firstTokenAt!) / 1000 / (o.tokens - 1))),
    e2e: spread(finished.map((o) => (o.endedAt - o.sentAt) / 1000)),
    outputTokensPerSecond: perSecond(finished.reduce((sum, o) => sum + o.tokens, 0)),
    requestsPerSecond: perSecond(finished.length),
    ttftUnder1s: share(1),
    ttftUnder6s: share(6),
    wallSeconds,
    inFlightAtHalf: outcomes.length === 0 ? 0 : inFlightAt((start + lastSend) / 2),
    inFlightAtEnd: outcomes.length === 0 ? 0 : inFlightAt(lastSend),
    sendSeconds: outcomes.length === 0 ? 0 : (lastSend - start) / 1000,
  };
}

/**
 * How far the requests in flight may grow over the second half of the sending and still be noise: with
 * random arrivals and no queueing (M/G/inf) their count is Poisson, its spread the square root of its mean.
 */
const BACKLOG_SPREADS = 3;
const BACKLOG_SLACK = 2;

export type Backlog = "steady" | "growing" | "too short to tell";

/**
 * Whether the server kept up: the requests in flight did not keep growing through the second half of the
 * sending. That half only shows it once it starts at a steady state, after the slowest requests' time: a
 * sending shorter than twice the p99 end-to-end latency cannot tell (run longer: --duration).
 */
export function backlog(summary: RateSummary): Backlog {
  if (summary.finished === 0 || summary.sendSeconds < 2 * summary.e2e.p99) return "too short to tell";
  const noise = BACKLOG_SPREADS * Math.sqrt(summary.inFlightAtHalf) + BACKLOG_SLACK;
  return summary.inFlightAtEnd <= summary.inFlightAtHalf + noise ? "steady" : "growing";
}

/** Whether a rate met the objective: p99 TTFT within it, no request failed, and the server seen to keep up. */
export function held(summary: RateSummary, ttftSloSeconds: number): boolean {
  return summary.failed === 0 && summary.finished > 0 && summary.ttft.p99 <= ttftSloSeconds && backlog(summary) === "steady";
}

/**
 * The highest offered rate held such that every lower rate swept was held too (a lucky pass above a miss is
 * noise, not capacity); null when the lowest rate already missed.
 */
export function highestRateHeld(summaries: readonly RateSummary[], ttftSloSeconds: number): number | null {
  let best: number | null = null;
  for (const summary of [...summaries].sort((a, b) => a.offeredRate - b.offeredRate)) {
    if (!held(summary, ttftSloSeconds)) break;
    best = summary.offeredRate;
  }
  return best;
}
