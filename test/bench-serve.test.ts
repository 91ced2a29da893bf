// The serving benchmark (bench/serve.ts): its workload generator against the distributions it claims, its
// percentile and summary maths on known values, and the harness end to end on the CPU against the demo fixture
// through `loraserve serve`, where every request sent must come back counted, at the length asked for.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { RequestOutcome } from "../bench/serving/outcome.js";
import { takeEvents } from "../bench/serving/sse-events.js";
import { renderPng, seriesOf, servingPlotSvg } from "../bench/serving/plot.js";
import { backlog, highestRateHeld, percentile, spread, summarize } from "../bench/serving/summary.js";
import { checkAccounting, progressBar, runSweep } from "../bench/serving/sweep.js";
import { promptText, writeGeneratedTokenizer } from "../bench/serving/tokenizer.js";
import { adapterSampler, gamma, parsePopularity, planWorkload, popularityName, seededRandom, type WorkloadSpec } from "../bench/serving/workload.js";
import { TextCodec } from "../shard/text/tokenizer.js";
import { projectFixture } from "./helpers/fixture-sets.js";
import { CLI } from "./helpers/process.js";

const SPEC: WorkloadSpec = {
  adapters: 100,
  popularity: { kind: "power", alpha: 1 },
  rate: 5,
  cv: 1,
  durationSeconds: 400,
  inputTokens: { lo: 8, hi: 512 },
  outputTokens: { lo: 8, hi: 512 },
  seed: 7,
};

function meanAndCv(values: number[]): { mean: number; cv: number } {
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  const variance = values.reduce((a, v) => a + (v - mean) ** 2, 0) / (values.length - 1);
  return { mean, cv: Math.sqrt(variance) / mean };
}

function gaps(spec: WorkloadSpec): number[] {
  const times = planWorkload(spec).map((r) => r.sendAt);
  return times.map((t, i) => t - (i === 0 ? 0 : times[i - 1]!));
}

describe("workload", () => {
  it("Poisson arrivals (cv 1): mean inter-arrival within 10 % of 1/rate, cv within 10 % of 1, over about 2000 draws", () => {
    const drawn = gaps(SPEC);
    expect(drawn.length).toBeGreaterThan(1800);
    expect(drawn.length).toBeLessThan(2200);
    const { mean, cv } = meanAndCv(drawn);
    expect(Math.abs(mean - 1 / SPEC.rate) / (1 / SPEC.rate)).toBeLessThan(0.1);
    expect(Math.abs(cv - 1)).toBeLessThan(0.1);
  });

  it("bursty arrivals (cv 4): mean within 10 % of 1/rate and cv within 25 % of 4", () => {
    const random = seededRandom(3);
    const rate = 8;
    const shape = 1 / 16;
    const drawn = Array.from({ length: 40_000 }, () => gamma(random, shape, 1 / (rate * shape)));
    const { mean, cv } = meanAndCv(drawn);
    expect(Math.abs(mean - 1 / rate) / (1 / rate)).toBeLessThan(0.1);
    expect(Math.abs(cv - 4) / 4).toBeLessThan(0.25);
    // The same through the trace: about rate x duration requests.
    expect(planWorkload({ ...SPEC, cv: 4, rate, durationSeconds: 2000 }).length / (rate * 2000)).toBeGreaterThan(0.9);
  });

  it("alpha 0.3 puts half the requests on the lowest tenth of the adapters, alpha 1 a tenth", () => {
    const lowShare = (alpha: number): number => {
      const pick = adapterSampler(100, { kind: "power", alpha }, seededRandom(11));
      const draws = Array.from({ length: 5000 }, pick);
      expect(Math.min(...draws)).toBeGreaterThanOrEqual(0);
      expect(Math.max(...draws)).toBeLessThan(100);
      return draws.filter((a) => a < 10).length / draws.length;
    };
    // P(X < 0.1) = 0.1^alpha.
    expect(lowShare(1)).toBeGreaterThan(0.08);
    expect(lowShare(1)).toBeLessThan(0.12);
    expect(lowShare(0.3)).toBeGreaterThan(0.45);
    expect(lowShare(0.3)).toBeLessThan(0.56);
  });

  it("Zipf 1.5 gives adapter 0 its share 1 / H(n, 1.5) and ranks the rest by index", () => {
    const pick = adapterSampler(100, { kind: "zipf", exponent: 1.5 }, seededRandom(5));
    const counts = new Array<number>(100).fill(0);
    for (let i = 0; i < 20_000; i++) counts[pick()]!++;
    let h = 0;
    for (let i = 1; i <= 100; i++) h += i ** -1.5;
    expect(Math.abs(counts[0]! / 20_000 - 1 / h)).toBeLessThan(0.02);
    expect(counts[0]!).toBeGreaterThan(counts[1]!);
    expect(counts[1]!).toBeGreaterThan(counts[9]!);
  });

  it("a flood gives adapter 0 its share and spreads the rest evenly over the others", () => {
    const pick = adapterSampler(5, { kind: "flood", share: 0.9 }, seededRandom(9));
    const counts = new Array<number>(5).fill(0);
    for (let i = 0; i < 20_000; i++) counts[pick()]!++;
    expect(Math.abs(counts[0]! / 20_000 - 0.9)).toBeLessThan(0.01);
    for (let a = 1; a < 5; a++) expect(Math.abs(counts[a]! / 20_000 - 0.025)).toBeLessThan(0.005);
    expect(() => adapterSampler(1, { kind: "flood", share: 0.9 }, seededRandom(9))).toThrow(/2 adapters or more/);
    expect(parsePopularity("flood:0.9")).toEqual({ kind: "flood", share: 0.9 });
    expect(() => parsePopularity("flood:1")).toThrow(/flood:SHARE with a share in \(0, 1\)/);
    expect(popularityName({ kind: "flood", share: 0.9 })).toBe("flood:0.9");
  });

  it("lengths stay in [lo, hi) and reach both ends; arrivals are ordered within the duration", () => {
    const trace = planWorkload({ ...SPEC, inputTokens: { lo: 8, hi: 12 }, outputTokens: { lo: 1, hi: 3 } });
    const inputs = new Set(trace.map((r) => r.inputTokens));
    const outputs = new Set(trace.map((r) => r.outputTokens));
    expect([...inputs].sort((a, b) => a - b)).toEqual([8, 9, 10, 11]);
    expect([...outputs].sort((a, b) => a - b)).toEqual([1, 2]);
    trace.forEach((r, i) => {
      expect(r.index).toBe(i);
      expect(r.sendAt).toBeLessThan(SPEC.durationSeconds);
      if (i > 0) expect(r.sendAt).toBeGreaterThanOrEqual(trace[i - 1]!.sendAt);
    });
  });

  it("repeats with its seed and changes with another", () => {
    expect(planWorkload(SPEC)).toEqual(planWorkload(SPEC));
    expect(planWorkload({ ...SPEC, seed: 8 })).not.toEqual(planWorkload(SPEC));
  });

  it("the generated tokenizer encodes a prompt of n characters as n tokens and spells every id", () => {
    const dir = mkdtempSync(join(tmpdir(), "bench-serve-tokenizer-"));
    try {
      writeGeneratedTokenizer(dir, 1024);
      const codec = TextCodec.load(dir);
      expect(codec.vocabSize).toBe(1024);
      for (const n of [1, 8, 300]) expect(codec.encode(promptText(1, n, n))).toHaveLength(n);
      expect(codec.tokenText(1023)).toBe(" w1023");
      expect(promptText(1, 2, 50)).not.toBe(promptText(1, 3, 50));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

function outcome(sentAt: number, firstTokenAt: number | null, endedAt: number, tokens: number, failure: string | null = null): RequestOutcome {
  return { index: 0, adapter: 0, protocol: "grpc", expectedTokens: tokens, sentAt, firstTokenAt, endedAt, tokens, failure, detail: "" };
}

describe("summary maths", () => {
  it("percentiles interpolate linearly, as numpy's default", () => {
    const values = [1, 2, 3, 4, 5];
    expect(percentile(values, 0)).toBe(1);
    expect(percentile(values, 50)).toBe(3);
    expect(percentile(values, 100)).toBe(5);
    expect(percentile(values, 99)).toBeCloseTo(4.96, 12);
    expect(percentile(values, 25)).toBe(2);
    expect(percentile([10, 20], 50)).toBe(15);
    expect(percentile([7], 99)).toBe(7);
    expect(percentile([], 50)).toBeNaN();
    expect(spread([3, 1, 2])).toEqual({ p50: 2, p99: percentile([1, 2, 3], 99), mean: 2 });
  });

  it("summarises latencies, throughput, the TTFT shares and failures by kind", () => {
    const summary = summarize(2, [
      outcome(0, 500, 1500, 11),
      outcome(1000, 3000, 4000, 3),
      outcome(2000, null, 2500, 0, "http 429"),
      outcome(2500, 2600, 3000, 2, "stream error"),
    ]);
    expect(summary).toMatchObject({ offeredRate: 2, sent: 4, finished: 2, failed: 2, failures: { "http 429": 1, "stream error": 1 }, wallSeconds: 4 });
    expect(summary.ttft.p50).toBeCloseTo(1.25, 12);
    // All four outcomes name adapter 0: no other adapter's TTFT.
    expect(summary.ttftOthers.p99).toBeNaN();
    const mixed = summarize(2, [outcome(0, 1000, 2000, 4), { ...outcome(0, 200, 900, 4), adapter: 2 }, { ...outcome(100, 400, 900, 4), adapter: 1 }]);
    expect(mixed.ttftOthers).toMatchObject({ p50: 0.25, mean: 0.25 });
    expect(summary.tpot.mean).toBeCloseTo((0.1 + 0.5) / 2, 12);
    expect(summary.e2e.p50).toBeCloseTo(2.25, 12);
    expect(summary.outputTokensPerSecond).toBeCloseTo(14 / 4, 12);
    expect(summary.requestsPerSecond).toBeCloseTo(0.5, 12);
    // Shares of the requests sent: a failed one is never fast.
    expect(summary.ttftUnder1s).toBe(0.25);
    expect(summary.ttftUnder6s).toBe(0.5);
    // Halfway through the sending (1250 ms) the first two are in flight; at the last send (2500 ms), the second
    // and the one sent then (the third ended at that instant).
    expect(summary.inFlightAtHalf).toBe(2);
    expect(summary.inFlightAtEnd).toBe(2);
    expect(() => checkAccounting(summary, 4)).not.toThrow();
    expect(() => checkAccounting(summary, 5)).toThrow(/vanished/);
  });

  it("the highest rate held is the last of an unbroken run of held rates from the lowest", () => {
    // 40 requests a second apart, each 2 s long: a steady backlog.
    const at = (rate: number, ttftP99: number, failed = 0) => ({
      ...summarize(rate, Array.from({ length: 40 }, (_, i) => outcome(i * 1000, i * 1000 + ttftP99 * 1000, i * 1000 + 2000, 4))),
      failed,
    });
    expect(highestRateHeld([at(4, 0.5), at(2, 0.2), at(8, 1.5), at(16, 0.9)], 1)).toBe(4);
    expect(highestRateHeld([at(2, 0.2), at(4, 0.3, 1)], 1)).toBe(2);
    expect(highestRateHeld([at(2, 1.2)], 1)).toBeNull();
  });

  it("a rate whose requests in flight keep growing through the sending is not held, however fast its first tokens", () => {
    // One request a second for 100 s, each taking 5 s: 5 in flight from then on (Little's law).
    const steady = Array.from({ length: 100 }, (_, i) => outcome(i * 1000, i * 1000 + 100, i * 1000 + 5000, 8));
    // 200 such arrivals, each taking 0.3 s longer than the one before: the backlog grows.
    const growing = Array.from({ length: 200 }, (_, i) => outcome(i * 1000, i * 1000 + 100, i * 1000 + 2000 + i * 300, 8));
    expect(summarize(1, steady)).toMatchObject({ inFlightAtHalf: 5, inFlightAtEnd: 5, sendSeconds: 99 });
    expect(backlog(summarize(1, steady))).toBe("steady");
    // Past Poisson noise: 48 > 24 + 3 sqrt(24) + 2.
    expect(summarize(1, growing)).toMatchObject({ inFlightAtHalf: 24, inFlightAtEnd: 48 });
    expect(backlog(summarize(1, growing))).toBe("growing");
    expect(highestRateHeld([summarize(1, steady), summarize(2, growing)], 1)).toBe(1);
    // Sending for less than twice the slowest requests' time cannot show a steady state.
    expect(backlog(summarize(1, steady.slice(0, 8)))).toBe("too short to tell");
  });

  it("draws the progress bar of the requests ended", () => {
    expect(progressBar(0)).toBe(`[${"-".repeat(20)}]`);
    expect(progressBar(0.5)).toBe(`[${"#".repeat(10)}${"-".repeat(10)}]`);
    expect(progressBar(1.7)).toBe(`[${"#".repeat(20)}]`);
  });

  it("reads server-sent events split anywhere", () => {
    expect(takeEvents('data: {"a":1}\n\ndata: [DO')).toEqual({ events: ['{"a":1}'], rest: "data: [DO" });
    expect(takeEvents("data: [DONE]\r\n\r\n")).toEqual({ events: ["[DONE]"], rest: "" });
  });
});

describe("the plot", () => {
  const point = (adapters: number, offeredRate: number, tokens: number, p99: number, failed = 0) => ({ adapters, popularity: "power:1", cv: 1, offeredRate, outputTokensPerSecond: tokens, ttft: { p99 }, failed });

  it("draws a line per adapter count and workload, its points in rate order, in both panels, as a PNG", () => {
    const series = seriesOf([point(100, 32, 4800, 0.138, 137), point(100, 16, 3300, 0.088), point(1000, 24, 4700, 0.147)]);
    expect(series.map((s) => s.label)).toEqual(["n = 100, power:1, cv 1", "n = 1000, power:1, cv 1"]);
    expect(series[0]!.points).toEqual([
      { x: 16, throughput: 3300, ttftMs: 88, failed: false },
      { x: 32, throughput: 4800, ttftMs: 138, failed: true },
    ]);
    const svg = servingPlotSvg(series);
    const polylines = [...svg.matchAll(/<polyline points="([^"]*)"/g)].map((m) => m[1]!.split(" ").length);
    expect(polylines).toEqual([2, 1, 2, 1]); // throughput panel, then TTFT panel
    expect(svg.match(/fill="white" stroke=/g)).toHaveLength(2); // the failed point, hollow in each panel
    const png = renderPng(svg);
    expect(png.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
    expect([png.readUInt32BE(16), png.readUInt32BE(20)]).toEqual([1200, 480]); // IHDR width, height
  });

  it("keeps two runs of one workload apart", () => {
    const series = seriesOf([{ ...point(1000, 40, 6689, 0.244), run: "389e4e8, 20 s per rate" }, { ...point(1000, 40, 6129, 0.518, 833), run: "1c98f47, 60 s per rate" }]);
    expect(series.map((s) => [s.label, s.points.length])).toEqual([
      ["n = 1000, power:1, cv 1 (389e4e8, 20 s per rate)", 1],
      ["n = 1000, power:1, cv 1 (1c98f47, 60 s per rate)", 1],
    ]);
  });
});

describe("the harness end to end on the CPU (demo fixture, loraserve serve)", () => {
  it("counts every request sent, each at the output length asked for, over gRPC and OpenAI SSE", async () => {
    const demo = projectFixture("demo");
    const ids = ["sql", "tone", "wide"];
    const options = {
      cli: CLI,
      device: "cpu" as const,
      checkpoint: { modelDir: demo.modelDir, adapters: ids.map((id) => ({ id, dir: join(demo.adaptersDir, id) })) },
      adapterCounts: [3],
      popularities: [{ kind: "power" as const, alpha: 0.3 }],
      cvs: [1],
      rates: [4],
      durationSeconds: 5,
      inputTokens: { lo: 8, hi: 32 },
      outputTokens: { lo: 4, hi: 16 },
      protocol: "alternate" as const,
      seed: 3,
      ttftSloSeconds: 1,
      requestTimeoutMs: 60_000,
      serveArgs: [],
    };
    const lines: string[] = [];
    const { results, capacity } = await runSweep({ ...options, progress: (line) => lines.push(line) });
    const planned = planWorkload({ ...options, adapters: 3, popularity: options.popularities[0]!, rate: 4, cv: 1 });
    expect(planned.length).toBeGreaterThan(10);
    expect(results).toHaveLength(1);
    const result = results[0]!;
    expect(result.sent).toBe(planned.length);
    expect(result.finished + result.failed).toBe(result.sent);
    expect(result.failed, JSON.stringify(result.failures)).toBe(0);
    expect(new Set(result.outcomes.map((o) => o.protocol))).toEqual(new Set(["grpc", "openai"]));
    for (const o of result.outcomes) {
      expect(o.failure, o.detail).toBeNull();
      expect(o.tokens).toBe(planned[o.index]!.outputTokens);
      expect(o.firstTokenAt!).toBeGreaterThanOrEqual(o.sentAt);
      expect(o.firstTokenAt!).toBeLessThanOrEqual(o.endedAt);
    }
    // The engine stepped for part of the load's wall time, never more than all of it.
    expect(result.engineBusyShare).toBeGreaterThan(0);
    expect(result.engineBusyShare).toBeLessThanOrEqual(1);
    // The time the engine waited for its loop is part of the rest. The idle time before the load's first step is
    // not waiting (the loop tells the engine when it resumes from idle), so it is not booked inside the load; the
    // 1 % leaves room for a step that the first read of the counters fell inside, booked whole when it ends.
    expect(result.loopWaitShare).toBeGreaterThanOrEqual(0);
    expect(result.engineBusyShare + result.loopWaitShare).toBeLessThanOrEqual(1.01);
    expect(capacity).toHaveLength(1);
    expect(lines.at(-1)).toBe(`n=3 power:0.3 cv=1 rate=4/s: sent ${result.sent} = finished ${result.sent} + failed 0`);
  }, 30_000);
});
