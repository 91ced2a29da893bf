// A follower rank of a tensor-parallel group (`loraserve shard --rank R`, R > 0): it loads its slice of the base
// model, meets the group, prints its ready line and hands its life to the native engine, which runs the leader's
// steps and adapter loads until the leader stops the group or the group fails. It serves no API: only the
// leader (rank 0) schedules, tokenizes and talks to the router. With --metrics-port it serves its own engine's
// step and collective times there (shard/telemetry/rank-metrics.ts).
import type { NativeEngine } from "../native/addon.js";
import { Logger } from "../telemetry/logger.js";
import { MetricSet } from "../telemetry/metric-set.js";
import { loadModelFiles } from "./model/model-files.js";
import { resolveLimits, type ShardArgs } from "./options.js";
import { serveMetricSet } from "./telemetry/metrics-server.js";
import { watchRankEngine } from "./telemetry/rank-metrics.js";

/** A follower's ready line: it has met the group (the leader's ready line says the group serves). */
export interface FollowerReadyLine {
  event: "ready";
  rank: number;
  /** No API port: followers serve none; the field keeps the launcher's ready-line shape. */
  port: 0;
  /** The rank's Prometheus metrics port (--metrics-port), absent when none was asked for. */
  metricsPort?: number;
}

/**
 * Runs one follower rank to its end: resolves when the leader stops the group, rejects (naming why) when a rank
 * dies or stops answering. `createEngine` builds the engine as the leader builds its own (shard/main.ts).
 */
export async function runFollower(args: ShardArgs, createEngine: (model: ReturnType<typeof loadModelFiles>, limits: ReturnType<typeof resolveLimits>) => NativeEngine): Promise<void> {
  const model = loadModelFiles(args.modelDir);
  const engine = createEngine(model, resolveLimits(args, model.spec));
  const metrics = new MetricSet("loraserve-shard");
  watchRankEngine(metrics, engine);
  const server = args.metricsPort === null ? null : await serveMetricSet(metrics, args.metricsPort, args.metricsHostname, new Logger("shard", args.logLevel));
  try {
    const ready: FollowerReadyLine = { event: "ready", rank: args.group.rank, port: 0, ...(server ? { metricsPort: server.port } : {}) };
    process.stdout.write(`${JSON.stringify(ready)}\n`);
    await engine.follow();
  } finally {
    await server?.close();
    engine.close();
  }
}
