// `loraserve shard`: load the model and adapters, serve ShardService, then print one ready line for the
// launcher. A load error is one clear line on stderr and exit code 1; SIGTERM/SIGINT drain it (no new requests,
// running ones finish within --shutdown-grace-seconds, the rest end with an error), then it exits 0.
import { existsSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { readShardToken } from "../common/shard-token.js";
import { createEngine, loadAddon, type NativeEngine } from "../native/addon.js";
import { Logger } from "../telemetry/logger.js";
import { startOpenTelemetry } from "../telemetry/otel.js";
import { NO_PROGRESS, ProgressDisplay, type ProgressSink } from "../telemetry/progress.js";
import { AdapterRegistry } from "./adapters/registry.js";
import { runFollower } from "./follower.js";
import { readGenerationDefaults } from "./model/generation-defaults.js";
import { AdapterRoots } from "./adapters/roots.js";
import { groupSteps } from "./engine/group-steps.js";
import { LlmEngine } from "./engine/llm-engine.js";
import { loadModelFiles, type ModelFiles } from "./model/model-files.js";
import { parseShardArgs, resolveLimits, SHARD_USAGE, withEngineKvBlocks, type ShardArgs, type ShardLimits } from "./options.js";
import { startShardServer, type ShardModelInfo } from "./server.js";
import { ShardTelemetry } from "./telemetry/shard-telemetry.js";
import { ChatTemplates } from "./text/chat-template.js";
import { EncoderPool } from "./text/encoder-pool.js";
import { TextCodec } from "./text/tokenizer.js";

/** The one stdout line the launcher waits for. */
export interface ReadyLine {
  event: "ready";
  port: number;
  /** The engine's Prometheus metrics port (--metrics-port), absent when none was asked for. */
  metricsPort?: number;
}

export interface RunningShard {
  port: number;
  metricsPort: number | null;
  /** Resolves with why, if the shard's tensor-parallel group fails (a rank died or stopped answering); never for one rank. */
  groupFailed: Promise<string>;
  /**
   * Stops admitting, lets running requests finish for `graceMs` (default 0), ends the rest with ShuttingDownError
   * (a final error on their streams), closes the server and the engine.
   */
  stop(graceMs?: number): Promise<void>;
}

/**
 * The native engine for a model, sized by the shard's limits and adapter slots (none loaded yet). In a group of
 * several ranks it returns once every rank has met.
 */
export function createShardEngine(
  model: ModelFiles,
  limits: ShardLimits,
  {
    device,
    dtype,
    threads,
    maxLoras,
    maxCpuLoras,
    adapterMemoryFraction,
    maxLoraRank,
    gpuMemoryFraction,
    group,
  }: Pick<ShardArgs, "device" | "dtype" | "threads" | "maxLoras" | "maxCpuLoras" | "adapterMemoryFraction" | "maxLoraRank" | "gpuMemoryFraction" | "group">,
): NativeEngine {
  return createEngine({
    device,
    rank: group.rank,
    world: group.world,
    masterAddr: group.masterAddr,
    masterPort: group.masterPort,
    ...(group.gpu === null ? {} : { gpu: group.gpu }),
    spec: model.spec,
    weights: model.weights,
    numKvBlocks: limits.numKvBlocks,
    blockSize: limits.blockSize,
    // Unset: the CUDA engine sizes the slots from its memory (-1); on cpu a slot is host memory taken at load, as
    // the host tier's are, so there are as many as the host tier holds.
    maxLoras: maxLoras ?? (device === "cuda" ? -1 : maxCpuLoras),
    adapterMemoryFraction,
    maxLoraRank,
    threads,
    gpuMemoryFraction,
    dtype,
  });
}

/** --device's default: cuda where the addon has the CUDA backend and the machine an NVIDIA GPU. */
function defaultDevice(): "cpu" | "cuda" {
  return loadAddon().hasCuda() && existsSync("/dev/nvidiactl") ? "cuda" : "cpu";
}

const DTYPE_NAMES = { F32: "float32", F16: "float16", BF16: "bfloat16" } as const;

function describeModel(model: ModelFiles, engine: NativeEngine, maxLoraRank: number): ShardModelInfo {
  const { device, maxLoras } = engine.info();
  return { dtype: DTYPE_NAMES[model.weights.embedTokens.dtype], device, vocabSize: model.spec.vocabSize, maxLoras, maxLoraRank };
}

const IDLE_POLL_MS = 50;

/** Resolves once the engine runs and queues nothing, or after `ms`. */
async function idleWithin(llm: LlmEngine, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const { running, waiting } = llm.load();
    if (running + waiting === 0 || Date.now() >= deadline) return;
    await sleep(Math.min(IDLE_POLL_MS, deadline - Date.now()));
  }
}

/** Loads everything and starts serving; throws (naming the file) when the model or an adapter cannot be used. */
export async function startShard(args: ShardArgs, progress: ProgressSink = NO_PROGRESS): Promise<RunningShard> {
  // Before the model loads: a missing or empty token file fails at once.
  const token = args.shardTokenFile === null ? null : readShardToken(args.shardTokenFile);
  const telemetry = new ShardTelemetry(new Logger("shard", args.logLevel), args.metricsMaxAdapters, args.servedModelName, progress, args.group);
  const model = loadModelFiles(args.modelDir);
  const codec = TextCodec.load(model.dir);
  const chatTemplates = new ChatTemplates(model.dir);
  const requested = resolveLimits(args, model.spec);
  const roots = new AdapterRoots(args.adapterRoots);
  const engine = telemetry.loadingModel(() => createShardEngine(model, requested, args));
  const encoder = EncoderPool.start(model.dir, args.validationWorkers);
  try {
    const limits = requested.numKvBlocks === 0 ? withEngineKvBlocks(requested, args, engine.info().numKvBlocks) : requested;
    const { maxCpuLoras, maxLoraRank, listAdaptersInErrors } = args;
    const { maxLoras } = engine.info();
    const adapters = await AdapterRegistry.open(engine, { spec: model.spec, maxLoraRank, maxLoras, maxCpuLoras, roots, listAdaptersInErrors }, args.adapters, {
      listeners: [telemetry.slotListener],
      progress,
    });
    const steps = args.group.world > 1 ? groupSteps(engine) : engine;
    const llm = new LlmEngine(telemetry.timeSteps(steps), { ...limits, eosTokenIds: codec.eosTokenIds, adapters, prefixCaching: args.prefixCaching });
    telemetry.watch(llm, adapters, maxLoras, engine);
    const server = await startShardServer(
      {
        modelId: args.servedModelName,
        model: describeModel(model, engine, maxLoraRank),
        llm,
        codec,
        encoder,
        chatTemplates,
        adapters,
        limits,
        generationDefaults: readGenerationDefaults(model.dir),
        telemetry,
        adapterRoots: roots.dirs,
      },
      args.port,
      args.hostname,
      token,
    );
    const metrics = args.metricsPort === null ? null : await telemetry.serveMetrics(args.metricsPort, args.metricsHostname);
    let stopping = false;
    const groupFailed =
      args.group.world > 1 ? engine.watchGroup().then((why) => (stopping ? new Promise<string>(() => undefined) : why)) : new Promise<string>(() => undefined);
    return {
      port: server.port,
      metricsPort: metrics?.port ?? null,
      groupFailed,
      async stop(graceMs = 0) {
        stopping = true;
        server.stopAdmitting();
        await idleWithin(llm, graceMs);
        await llm.close();
        await server.close();
        await metrics?.close();
        await encoder.close();
        engine.close();
      },
    };
  } catch (error) {
    await encoder.close();
    engine.close();
    throw error;
  }
}

/** Entry point of `loraserve shard ARGS`: resolves once the shard has stopped. */
export async function shardMain(args: string[]): Promise<void> {
  if (args.includes("--help") || args.includes("-h")) {
    process.stdout.write(`${SHARD_USAGE}\n`);
    return;
  }
  let shard: RunningShard;
  let shardArgs: ShardArgs;
  let openTelemetry: ReturnType<typeof startOpenTelemetry> = null;
  const progress = new ProgressDisplay();
  try {
    shardArgs = parseShardArgs(args, process.env, defaultDevice());
    if (shardArgs.group.rank > 0) {
      progress.close();
      const followerArgs = shardArgs;
      await runFollower(followerArgs, (model, limits) => createShardEngine(model, limits, followerArgs));
      process.exitCode = 0;
      return;
    }
    // Before the shard exists: its tracer and meters are taken from the SDK this starts.
    openTelemetry = startOpenTelemetry("loraserve-shard", new Logger("shard", shardArgs.logLevel));
    shard = await startShard(shardArgs, progress);
  } catch (error) {
    progress.close();
    process.stderr.write(`loraserve shard: ${(error as Error).message}\n`);
    await openTelemetry?.shutdown();
    process.exitCode = 1;
    return;
  }
  const ready: ReadyLine = { event: "ready", port: shard.port, ...(shard.metricsPort === null ? {} : { metricsPort: shard.metricsPort }) };
  process.stdout.write(JSON.stringify(ready) + "\n");
  const groupFailure = await new Promise<string | null>((resolve) => {
    const onSignal = (): void => {
      process.off("SIGTERM", onSignal);
      process.off("SIGINT", onSignal);
      resolve(null);
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
    void shard.groupFailed.then(resolve);
  });
  if (groupFailure !== null) process.stderr.write(`loraserve shard: tensor-parallel group failed: ${groupFailure}\n`);
  // A signal drains: running requests may finish. A failed group cannot step: they end at once.
  await shard.stop(groupFailure === null ? shardArgs.shutdownGraceMs : 0);
  await openTelemetry?.shutdown();
  process.exitCode = groupFailure === null ? 0 : 1;
}
