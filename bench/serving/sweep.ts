// The serving benchmark's run: for each adapter count n, `loraserve serve` on the first n adapters, one warm-up
// request per API, then every workload (popularity x arrival cv) at every offered rate in turn, each summarised
// and checked to account for every request sent.
import type { Checkpoint } from "./checkpoint.js";
import { openClients } from "./clients.js";
import { withEngineShares, type EngineShares } from "./engine-time.js";
import { runLoad, type LoadCounts, type ProtocolChoice } from "./load.js";
import type { RequestOutcome } from "./outcome.js";
import { startServer } from "./server.js";
import { highestRateHeld, summarize, type RateSummary } from "./summary.js";
import { planWorkload, popularityName, type LengthRange, type Popularity } from "./workload.js";

export interface SweepOptions {
  /** The built dist/client/cli.js. */
  cli: string;
  device: "cpu" | "cuda";
  /** Holds at least max(adapterCounts) adapters. */
  checkpoint: Checkpoint;
  adapterCounts: readonly number[];
  popularities: readonly Popularity[];
  cvs: readonly number[];
  rates: readonly number[];
  durationSeconds: number;
  inputTokens: LengthRange;
  outputTokens: LengthRange;
  protocol: ProtocolChoice;
  seed: number;
  ttftSloSeconds: number;
  requestTimeoutMs: number;
  serveArgs: readonly string[];
  /** One line about the run's state, about once a second (stderr in the CLI). */
  progress(line: string): void;
}

/** One workload at one rate on one adapter count, with every request's outcome. */
export interface RateResult extends RateSummary, EngineShares {
  adapters: number;
  popularity: string;
  cv: number;
  outcomes: RequestOutcome[];
}

/** The highest rate held for one adapter count and workload. */
export interface Capacity {
  adapters: number;
  popularity: string;
  cv: number;
  highestRateHeld: number | null;
}

export interface SweepResult {
  results: RateResult[];
  capacity: Capacity[];
}

const BAR_WIDTH = 20;

/** The share of a rate's requests that ended, as a bar: [#######-------------]. */
export function progressBar(share: number): string {
  const filled = Math.round(BAR_WIDTH * Math.min(1, Math.max(0, share)));
  return `[${"#".repeat(filled)}${"-".repeat(BAR_WIDTH - filled)}]`;
}

/** Throws unless every request sent ended as exactly one outcome, finished or failed. */
export function checkAccounting(summary: RateSummary, sent: number): void {
  if (summary.sent !== sent || summary.finished + summary.failed !== sent) {
    throw new Error(`requests vanished: sent ${sent}, outcomes ${summary.sent} (finished ${summary.finished} + failed ${summary.failed})`);
  }
}

export async function runSweep(options: SweepOptions): Promise<SweepResult> {
  const results: RateResult[] = [];
  const capacity: Capacity[] = [];
  for (const n of options.adapterCounts) {
    const checkpoint = { ...options.checkpoint, adapters: options.checkpoint.adapters.slice(0, n) };
    const adapterIds = checkpoint.adapters.map((a) => a.id);
    options.progress(`n=${n}: starting loraserve serve`);
    const server = await startServer({ cli: options.cli, device: options.device, checkpoint, extraArgs: options.serveArgs });
    const clients = openClients(server.url);
    try {
      // Warm-up, not counted: the thread pools, the CUDA graphs and the first connections of each API.
      const warmUp = [{ index: 0, sendAt: 0, adapter: 0, inputTokens: options.inputTokens.lo, outputTokens: options.outputTokens.lo }];
      for (const protocol of ["grpc", "openai"] as const) {
        const [outcome] = await runLoad({ clients, requests: warmUp, adapterIds, protocol, seed: options.seed, requestTimeoutMs: options.requestTimeoutMs, progress: () => undefined });
        if (!outcome || outcome.failure !== null) throw new Error(`the warm-up request over ${protocol} failed (${outcome?.failure}): ${outcome?.detail}\n${server.stderrTail()}`);
      }
      for (const popularity of options.popularities) {
        for (const cv of options.cvs) {
          const workload = `n=${n} ${popularityName(popularity)} cv=${cv}`;
          const summaries: RateSummary[] = [];
          for (const rate of options.rates) {
            const requests = planWorkload({
              adapters: n,
              popularity,
              rate,
              cv,
              durationSeconds: options.durationSeconds,
              inputTokens: options.inputTokens,
              outputTokens: options.outputTokens,
              seed: options.seed,
            });
            const line = (c: LoadCounts): string =>
              `${workload} rate=${rate}/s ${progressBar((c.finished + c.failed) / Math.max(1, c.planned))} sent ${c.sent}/${c.planned}, finished ${c.finished}, failed ${c.failed}, in flight ${c.sent - c.finished - c.failed}`;
            const { result: outcomes, ...shares } = await withEngineShares(server.shardMetricsUrl, () =>
              runLoad({
                clients,
                requests,
                adapterIds,
                protocol: options.protocol,
                seed: options.seed,
                requestTimeoutMs: options.requestTimeoutMs,
                progress: (c) => options.progress(line(c)),
              }),
            );
            const summary = summarize(rate, outcomes);
            checkAccounting(summary, requests.length);
            options.progress(`${workload} rate=${rate}/s: sent ${summary.sent} = finished ${summary.finished} + failed ${summary.failed}`);
            summaries.push(summary);
            results.push({ ...summary, adapters: n, popularity: popularityName(popularity), cv, ...shares, outcomes });
          }
          capacity.push({ adapters: n, popularity: popularityName(popularity), cv, highestRateHeld: highestRateHeld(summaries, options.ttftSloSeconds) });
        }
      }
    } finally {
      clients.close();
      await server.stop();
    }
  }
  return { results, capacity };
}
