// The serving benchmark's markdown: a row per workload and offered rate, then the highest rate held per
// adapter count, and for flood workloads the other adapters' TTFT against the lowest rate's; and the JSON
// written by --out, from which a plot can be drawn later.
import { writeFileSync } from "node:fs";
import { backlog, type Spread } from "./summary.js";
import type { SweepResult } from "./sweep.js";

const ms = (seconds: number): string => (Number.isNaN(seconds) ? "-" : `${(seconds * 1000).toFixed(0)}`);
const pair = (s: Spread): string => `${ms(s.p50)} / ${ms(s.p99)}`;
const percent = (share: number): string => `${(share * 100).toFixed(1)} %`;

export function markdownReport({ results, capacity }: SweepResult, ttftSloSeconds: number): string {
  const lines = [
    "| n | popularity | cv | offered req/s | sent | finished | failed | TTFT p50 / p99 ms | TPOT p50 / p99 ms | e2e p50 / p99 ms | output tok/s | req/s | TTFT < 1 s | TTFT < 6 s | in flight, half / end of sending (backlog) | engine busy (waiting for the loop) |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
  ];
  for (const r of results) {
    const failed = r.failed === 0 ? "0" : `${r.failed} (${Object.entries(r.failures).map(([kind, count]) => `${kind}: ${count}`).join(", ")})`;
    lines.push(
      `| ${r.adapters} | ${r.popularity} | ${r.cv} | ${r.offeredRate} | ${r.sent} | ${r.finished} | ${failed} | ${pair(r.ttft)} | ${pair(r.tpot)} | ${pair(r.e2e)} | ${r.outputTokensPerSecond.toFixed(1)} | ${r.requestsPerSecond.toFixed(2)} | ${percent(r.ttftUnder1s)} | ${percent(r.ttftUnder6s)} | ${r.inFlightAtHalf} / ${r.inFlightAtEnd} (${backlog(r)}) | ${r.engineBusyShare.toFixed(3)} (${r.loopWaitShare.toFixed(3)}) |`,
    );
  }
  lines.push("", `| n | popularity | cv | highest offered req/s held (p99 TTFT <= ${ttftSloSeconds} s, no failure, backlog steady) |`, "| --- | --- | --- | --- |");
  for (const c of capacity) lines.push(`| ${c.adapters} | ${c.popularity} | ${c.cv} | ${c.highestRateHeld ?? "none of the rates swept"} |`);
  const floods = results.filter((r) => r.popularity.startsWith("flood:"));
  if (floods.length > 0) {
    // Issue 15's fairness goal: the flood keeps the other adapters' p99 TTFT within 2x of the lowest rate's.
    lines.push("", "| n | popularity | cv | offered req/s | others' TTFT p50 / p99 ms | others' p99 / at the lowest rate (goal <= 2) |", "| --- | --- | --- | --- | --- | --- |");
    for (const r of floods) {
      const lowest = floods
        .filter((q) => q.adapters === r.adapters && q.popularity === r.popularity && q.cv === r.cv)
        .reduce((a, b) => (b.offeredRate < a.offeredRate ? b : a));
      lines.push(`| ${r.adapters} | ${r.popularity} | ${r.cv} | ${r.offeredRate} | ${pair(r.ttftOthers)} | ${(r.ttftOthers.p99 / lowest.ttftOthers.p99).toFixed(2)} |`);
    }
  }
  // The first message of each failure kind: what to look at when a row shows failures.
  const examples = new Map<string, string>();
  for (const r of results) for (const o of r.outcomes) if (o.failure !== null && !examples.has(o.failure)) examples.set(o.failure, o.detail);
  if (examples.size > 0) lines.push("", "Failures, first of each kind:", ...[...examples].map(([kind, detail]) => `- ${kind}: ${detail}`));
  return lines.join("\n");
}

/** The options and every result, each request's outcome included. */
export function writeJsonReport(path: string, options: object, result: SweepResult): void {
  writeFileSync(path, JSON.stringify({ options, ...result }, null, 1));
}
