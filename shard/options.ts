// `loraserve shard` flags, each also read from its same-named environment variable (common/flag-or-env.ts),
// → the shard's settings.
// Limits that depend on the model (its context length) are resolved once its config is read.
import { parseArgs } from "node:util";
import { flagOrEnv, flagsOrEnv, switchOrEnv, type Setting } from "../common/flag-or-env.js";
import { parseInteger } from "../common/parse-integer.js";
import type { DeviceDtype, ModelSpec } from "../native/addon.js";
import { parseTelemetryOptions, TELEMETRY_FLAGS, telemetryUsage, type TelemetryOptions } from "../telemetry/options.js";
import type { AdapterSource } from "./adapters/registry.js";
import type { AdmissionLimits } from "./engine/admission.js";

const DEFAULT_ADAPTER_MEMORY_FRACTION = 0.2;
const DEFAULT_MAX_CPU_LORAS = 64;
const DEFAULT_MAX_LORA_RANK = 64;
const DEFAULT_GPU_MEMORY_FRACTION = 0.9;
/** TGI's defaults. */
const DEFAULT_MAX_TOP_N_TOKENS = 5;
const DEFAULT_VALIDATION_WORKERS = 2;
/** TGI's default, and the least a shard takes by default. */
const MIN_DEFAULT_CONCURRENT_REQUESTS = 128;
/** The default --max-queued-tokens, in steps' worth of prompt (--max-batch-prefill-tokens): generous, yet bounded. */
const QUEUED_PREFILL_STEPS = 16;
/** Kubernetes' default terminationGracePeriodSeconds. */
const DEFAULT_SHUTDOWN_GRACE_SECONDS = 30;

export const SHARD_USAGE = `usage: loraserve shard --model-id DIR [options]
Each flag may instead be set by its environment variable, named after it: --max-new-tokens-limit N is
MAX_NEW_TOKENS_LIMIT=N. The flag wins when both are set.
  --model-id DIR                 base model directory
  --served-model-name NAME       the base model's id in the API (OpenAI "model", TGI /info); default: --model-id
  --lora-adapters ID=DIR,...     PEFT LoRA adapters to serve
  --adapter-root DIR             where adapters not named above are found by id, as DIR/ID/ or in the Hugging Face
                                 cache layout DIR/models--ORG--NAME/snapshots/REV/; repeatable (ADAPTER_ROOT:
                                 colon-separated; the former ADAPTER_ROOTS is still read)
  --max-loras N                  engine adapter slots (default on cuda: as many as fit in --adapter-memory-fraction
                                 of what the weights leave, at most 1024; on cpu: --max-cpu-loras)
  --adapter-memory-fraction F    without --max-loras, on cuda: the share of the memory left after the weights that
                                 adapter slots take, the KV cache taking the rest (default ${DEFAULT_ADAPTER_MEMORY_FRACTION})
  --max-cpu-loras N              adapters held validated in host memory (default ${DEFAULT_MAX_CPU_LORAS})
  --max-lora-rank N              largest adapter rank accepted (default ${DEFAULT_MAX_LORA_RANK})
  --shard-port N                 internal ShardService port; 0 picks a free one (default 0)
  --shard-hostname H             address of the internal port (default 127.0.0.1); another needs --shard-token-file
  --shard-token-file PATH        the internal API's shared secret: every call must carry \`authorization: Bearer\`
                                 and the file's token (the router's --shard-token-file names the same file);
                                 absent: calls are not checked, so the port must stay on loopback
  --max-input-tokens N           longest prompt (default: max total tokens - 1)
  --max-total-tokens N           longest prompt + generated tokens (default: min(model context, 2048))
  --max-new-tokens-limit N       most tokens one request may generate (default: max total tokens - 1)
  --max-batch-prefill-tokens N   prompt tokens computed per step; longer prompts are chunked (default 4096)
  --max-concurrent-requests N    most requests queued or running at once; past it a request is refused
                                 RESOURCE_EXHAUSTED (HTTP 429 with retry-after) (default: as many sequences as the
                                 KV cache holds at --max-total-tokens each, at least ${MIN_DEFAULT_CONCURRENT_REQUESTS}); an
                                 adapter below its fair share while others hold requests may go an eighth past
                                 this and --max-queued-tokens
  --max-queued-tokens N          most prompt tokens waiting to be scheduled; past it a request is refused the same
                                 way (default ${QUEUED_PREFILL_STEPS} * --max-batch-prefill-tokens; at least --max-input-tokens)
  --max-top-n-tokens N           most alternatives a request may ask for per token: TGI's top_n_tokens, OpenAI's
                                 logprobs and top_logprobs (default ${DEFAULT_MAX_TOP_N_TOKENS})
  --validation-workers N         threads that render chat templates and tokenize prompts, off the event loop
                                 (default ${DEFAULT_VALIDATION_WORKERS})
  --block-size N                 tokens per KV-cache block (default 16)
  --list-adapters-in-errors      name the known adapter ids (up to 20) when a request names an unknown one; off by
                                 default, since anyone who may generate reads that error (LIST_ADAPTERS_IN_ERRORS=true)
  --disable-prefix-caching       compute every prompt whole; by default the full KV blocks of a prompt are kept
                                 and reused by a later prompt that starts with the same tokens on the same adapter
                                 (DISABLE_PREFIX_CACHING=true)
  --num-kv-blocks N              KV-cache blocks (default on cpu: room for 4 full-context sequences; on cuda:
                                 what --gpu-memory-fraction leaves)
  --threads N                    CPU worker threads, 0 for every core (default 0)
  --device cpu|cuda              engine backend (default cuda when the addon has the CUDA backend and a GPU is
                                 present, else cpu)
  --dtype float16|bfloat16       on cuda: the 16-bit type of weights, activations and KV cache (default float16,
                                 the closer to the float32 reference; bfloat16 has float32's range)
  --gpu-memory-fraction F        share of the GPU's memory the engine may take; the KV cache fills what the
                                 weights, adapter slots and activations leave (default ${DEFAULT_GPU_MEMORY_FRACTION})
  --metrics-port N               serve the engine's Prometheus metrics on GET /metrics here; 0 picks a free one
                                 (printed in the ready line as metricsPort); absent: no metrics port
  --metrics-hostname H           address of the metrics port (default 127.0.0.1)
  --shutdown-grace-seconds N     on SIGTERM: take no new requests, let running ones finish for N seconds, end the rest
                                 with a final error, exit 0 (default ${DEFAULT_SHUTDOWN_GRACE_SECONDS})
Tensor parallelism (torchrun's names; \`loraserve serve --num-shard N\` starts every rank on this host):
  --num-shard N                  ranks in this shard's group, each holding 1/N of every projection (default 1)
  --rank R                       this process's rank, 0 to N-1; rank 0 leads: it schedules, tokenizes and serves
                                 ShardService, the others follow it and serve nothing (default 0)
  --master-addr H                where the group meets: rank 0 listens, the others connect (default 127.0.0.1)
  --master-port N                the port there (default 29500)
  --gpu N                        on cuda: the GPU this rank uses, among those CUDA_VISIBLE_DEVICES shows (default: GPU
                                 R for rank R)
${telemetryUsage(33)}`;

export class UsageError extends Error {
  constructor(message: string) {
    super(`${message}\n${SHARD_USAGE}`);
    this.name = "UsageError";
  }
}

/** This shard's place in its tensor-parallel group; a group of one is a plain shard. */
export interface TensorParallelGroup {
  rank: number;
  world: number;
  masterAddr: string;
  masterPort: number;
  /** On cuda: the GPU this rank uses; null: GPU `rank`. */
  gpu: number | null;
}

export interface ShardArgs extends TelemetryOptions {
  modelDir: string;
  /** What the API calls the base model. */
  servedModelName: string;
  adapters: AdapterSource[];
  adapterRoots: string[];
  /** Engine adapter slots; null: sized by the engine (cuda, --adapter-memory-fraction) or --max-cpu-loras (cpu). */
  maxLoras: number | null;
  adapterMemoryFraction: number;
  maxCpuLoras: number;
  maxLoraRank: number;
  port: number;
  /** Where ShardService listens. */
  hostname: string;
  /** The file of the internal API's token (common/shard-token.ts); null: calls are not checked. */
  shardTokenFile: string | null;
  device: "cpu" | "cuda";
  /** On cuda; the CPU backend computes in float32. */
  dtype: DeviceDtype;
  gpuMemoryFraction: number;
  threads: number;
  blockSize: number;
  /** Whether a not-found error lists the known adapter ids (--list-adapters-in-errors). */
  listAdaptersInErrors: boolean;
  /** Reuse cached KV blocks of prompt prefixes (--disable-prefix-caching turns it off). */
  prefixCaching: boolean;
  maxBatchPrefillTokens: number;
  /** Unset: sized from the KV cache (defaultConcurrentRequests). */
  maxConcurrentRequests: number | null;
  /** Unset means QUEUED_PREFILL_STEPS steps' worth of prompt (see resolveLimits). */
  maxQueuedTokens: number | null;
  maxTopNTokens: number;
  /** Threads that render and tokenize prompts (EncoderPool). */
  validationWorkers: number;
  /** Unset means the default derived from the model (see resolveLimits). */
  maxInputTokens: number | null;
  maxTotalTokens: number | null;
  maxNewTokensLimit: number | null;
  numKvBlocks: number | null;
  metricsPort: number | null;
  metricsHostname: string;
  /** On SIGTERM, how long running requests may take to finish (--shutdown-grace-seconds). */
  shutdownGraceMs: number;
  group: TensorParallelGroup;
}

export interface ShardLimits extends AdmissionLimits {
  maxInputTokens: number;
  maxTotalTokens: number;
  maxNewTokensLimit: number;
  maxBatchPrefillTokens: number;
  /** The most top_n_tokens a request may ask for: each generated token carries that many alternatives. */
  maxTopNTokens: number;
  blockSize: number;
  numKvBlocks: number;
}

const DEFAULT_CONTEXT_CAP = 2048;
/** Full-context sequences the default KV cache holds at once. */
const DEFAULT_FULL_SEQUENCES = 4;

function integer(setting: Setting | undefined, min: number, max?: number): number | null {
  try {
    return parseInteger(setting, min, max);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

/** A share in (0, 1], or (0, 1) with belowOne (a share that must leave some memory to the rest). */
function fraction(setting: Setting | undefined, { belowOne = false } = {}): number | null {
  if (setting === undefined) return null;
  const { text, source } = setting;
  const value = Number(text);
  if (text.trim() === "" || !(value > 0 && (belowOne ? value < 1 : value <= 1))) {
    throw new UsageError(`${source} must be a number in (0, 1${belowOne ? ")" : "]"}, got ${JSON.stringify(text)}`);
  }
  return value;
}

/** `id=DIR,id=DIR` → adapter sources, in order (the order gives the engine slots). */
export function parseAdapterList(text: string): AdapterSource[] {
  return text
    .split(",")
    .map((part) => part.trim())
    .filter((part) => part !== "")
    .map((part) => {
      const eq = part.indexOf("=");
      const id = part.slice(0, eq).trim();
      const dir = part.slice(eq + 1).trim();
      if (eq < 0 || id === "" || dir === "") throw new UsageError(`--lora-adapters entries are ID=DIR, got ${JSON.stringify(part)}`);
      return { id, dir };
    });
}

/** parseArgs option specs of the shard's flags; every one is also read from its environment variable. */
export const SHARD_FLAGS = {
  "model-id": { type: "string" },
  "served-model-name": { type: "string" },
  "lora-adapters": { type: "string", multiple: true },
  "adapter-root": { type: "string", multiple: true },
  "max-loras": { type: "string" },
  "max-cpu-loras": { type: "string" },
  "adapter-memory-fraction": { type: "string" },
  "max-lora-rank": { type: "string" },
  "shard-port": { type: "string" },
  "shard-hostname": { type: "string" },
  "shard-token-file": { type: "string" },
  "max-input-tokens": { type: "string" },
  "max-total-tokens": { type: "string" },
  "max-new-tokens-limit": { type: "string" },
  "max-batch-prefill-tokens": { type: "string" },
  "max-concurrent-requests": { type: "string" },
  "max-queued-tokens": { type: "string" },
  "max-top-n-tokens": { type: "string" },
  "validation-workers": { type: "string" },
  "num-kv-blocks": { type: "string" },
  "block-size": { type: "string" },
  "disable-prefix-caching": { type: "boolean" },
  "list-adapters-in-errors": { type: "boolean" },
  threads: { type: "string" },
  device: { type: "string" },
  dtype: { type: "string" },
  "gpu-memory-fraction": { type: "string" },
  "metrics-port": { type: "string" },
  "metrics-hostname": { type: "string" },
  "shutdown-grace-seconds": { type: "string" },
  "num-shard": { type: "string" },
  rank: { type: "string" },
  "master-addr": { type: "string" },
  "master-port": { type: "string" },
  gpu: { type: "string" },
  ...TELEMETRY_FLAGS,
} as const;

/** `defaultDevice` is what --device means when absent (shard/main.ts asks the addon and the machine). */
export function parseShardArgs(args: readonly string[], env: NodeJS.ProcessEnv = process.env, defaultDevice: "cpu" | "cuda" = "cpu"): ShardArgs {
  let values;
  try {
    ({ values } = parseArgs({ args: [...args], strict: true, allowPositionals: false, options: SHARD_FLAGS }));
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const setting = (flag: Exclude<keyof typeof SHARD_FLAGS, "lora-adapters" | "adapter-root" | "disable-prefix-caching" | "list-adapters-in-errors">): Setting | undefined =>
    flagOrEnv(flag, values[flag], env);
  const modelDir = setting("model-id")?.text;
  if (!modelDir) throw new UsageError("--model-id (or MODEL_ID) is required");
  const device = setting("device")?.text ?? defaultDevice;
  if (device !== "cpu" && device !== "cuda") throw new UsageError(`--device must be cpu or cuda, got ${JSON.stringify(device)}`);
  const dtypeSetting = setting("dtype");
  const dtype = dtypeSetting?.text ?? "float16";
  if (dtype !== "float16" && dtype !== "bfloat16") throw new UsageError(`--dtype must be float16 or bfloat16, got ${JSON.stringify(dtype)}`);
  if (dtypeSetting !== undefined && device !== "cuda") throw new UsageError("--dtype applies to --device cuda; the CPU backend computes in float32");
  return {
    modelDir,
    servedModelName: setting("served-model-name")?.text ?? modelDir,
    adapters: parseAdapterList(flagOrEnv("lora-adapters", values["lora-adapters"]?.join(","), env)?.text ?? ""),
    adapterRoots: flagsOrEnv("adapter-root", values["adapter-root"], env, ":") ?? [],
    maxLoras: integer(setting("max-loras"), 1),
    adapterMemoryFraction: fraction(setting("adapter-memory-fraction"), { belowOne: true }) ?? DEFAULT_ADAPTER_MEMORY_FRACTION,
    maxCpuLoras: integer(setting("max-cpu-loras"), 1) ?? DEFAULT_MAX_CPU_LORAS,
    maxLoraRank: integer(setting("max-lora-rank"), 1) ?? DEFAULT_MAX_LORA_RANK,
    port: integer(setting("shard-port"), 0, 65535) ?? 0,
    ...internalPort(setting("shard-hostname"), setting("shard-token-file")),
    device,
    dtype,
    gpuMemoryFraction: fraction(setting("gpu-memory-fraction")) ?? DEFAULT_GPU_MEMORY_FRACTION,
    threads: integer(setting("threads"), 0) ?? 0,
    blockSize: integer(setting("block-size"), 1) ?? 16,
    prefixCaching: !shardSwitch("disable-prefix-caching", values["disable-prefix-caching"], env),
    listAdaptersInErrors: shardSwitch("list-adapters-in-errors", values["list-adapters-in-errors"], env),
    maxBatchPrefillTokens: integer(setting("max-batch-prefill-tokens"), 1) ?? 4096,
    maxConcurrentRequests: integer(setting("max-concurrent-requests"), 1),
    maxQueuedTokens: integer(setting("max-queued-tokens"), 1),
    maxTopNTokens: integer(setting("max-top-n-tokens"), 0) ?? DEFAULT_MAX_TOP_N_TOKENS,
    validationWorkers: integer(setting("validation-workers"), 1) ?? DEFAULT_VALIDATION_WORKERS,
    maxInputTokens: integer(setting("max-input-tokens"), 1),
    maxTotalTokens: integer(setting("max-total-tokens"), 2),
    maxNewTokensLimit: integer(setting("max-new-tokens-limit"), 1),
    numKvBlocks: integer(setting("num-kv-blocks"), 1),
    metricsPort: integer(setting("metrics-port"), 0, 65535),
    metricsHostname: setting("metrics-hostname")?.text ?? "127.0.0.1",
    shutdownGraceMs: 1000 * (integer(setting("shutdown-grace-seconds"), 0) ?? DEFAULT_SHUTDOWN_GRACE_SECONDS),
    group: parseGroup(setting),
    ...telemetryOptions(values, env),
  };
}

const LOOPBACK = new Set(["127.0.0.1", "::1", "localhost"]);

/** The internal port's address and credential: beyond loopback, an unchecked port would serve anyone on the network. */
function internalPort(hostname: Setting | undefined, tokenFile: Setting | undefined): Pick<ShardArgs, "hostname" | "shardTokenFile"> {
  const host = hostname?.text ?? "127.0.0.1";
  if (host.trim() === "") throw new UsageError(`${hostname!.source} must not be empty`);
  if (tokenFile !== undefined && tokenFile.text.trim() === "") throw new UsageError(`${tokenFile.source} must not be empty`);
  if (!LOOPBACK.has(host) && tokenFile === undefined) {
    throw new UsageError(`${hostname!.source} ${host} is beyond loopback: give the internal API a credential with --shard-token-file (or SHARD_TOKEN_FILE)`);
  }
  return { hostname: host, shardTokenFile: tokenFile?.text ?? null };
}

function shardSwitch(flag: "disable-prefix-caching" | "list-adapters-in-errors", given: boolean | undefined, env: NodeJS.ProcessEnv): boolean {
  try {
    return switchOrEnv(flag, given, env);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

function parseGroup(setting: (flag: "num-shard" | "rank" | "master-addr" | "master-port" | "gpu") => Setting | undefined): TensorParallelGroup {
  const world = integer(setting("num-shard"), 1) ?? 1;
  const rank = integer(setting("rank"), 0, world - 1) ?? 0;
  const masterAddr = setting("master-addr")?.text ?? "127.0.0.1";
  if (masterAddr.trim() === "") throw new UsageError("--master-addr must not be empty");
  return { rank, world, masterAddr, masterPort: integer(setting("master-port"), 1, 65535) ?? 29500, gpu: integer(setting("gpu"), 0) };
}

function telemetryOptions(values: Parameters<typeof parseTelemetryOptions>[0], env: NodeJS.ProcessEnv): TelemetryOptions {
  try {
    return parseTelemetryOptions(values, env);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

/** Fills the model-dependent defaults and checks that the limits fit together and fit the model. */
export function resolveLimits(args: ShardArgs, spec: ModelSpec): ShardLimits {
  const context = spec.maxPositionEmbeddings;
  const maxTotalTokens = args.maxTotalTokens ?? Math.min(context, DEFAULT_CONTEXT_CAP);
  if (maxTotalTokens > context) throw new UsageError(`--max-total-tokens ${maxTotalTokens} exceeds the model's context of ${context} tokens`);
  const maxInputTokens = args.maxInputTokens ?? maxTotalTokens - 1;
  if (maxInputTokens >= maxTotalTokens) {
    throw new UsageError(`--max-input-tokens ${maxInputTokens} must be below --max-total-tokens ${maxTotalTokens}`);
  }
  const maxNewTokensLimit = args.maxNewTokensLimit ?? maxTotalTokens - 1;
  const { blockSize } = args;
  // On cuda the engine sizes the cache from GPU memory (numKvBlocks 0); withEngineKvBlocks takes its count.
  const numKvBlocks = args.numKvBlocks ?? (args.device === "cuda" ? 0 : DEFAULT_FULL_SEQUENCES * Math.ceil(maxTotalTokens / blockSize));
  const { maxBatchPrefillTokens, maxTopNTokens } = args;
  const maxConcurrentRequests = args.maxConcurrentRequests ?? defaultConcurrentRequests(numKvBlocks, maxTotalTokens, blockSize);
  const maxQueuedTokens = args.maxQueuedTokens ?? Math.max(QUEUED_PREFILL_STEPS * maxBatchPrefillTokens, maxInputTokens);
  // A bound below the longest prompt would refuse that prompt even on an idle shard.
  if (maxQueuedTokens < maxInputTokens) throw new UsageError(`--max-queued-tokens ${maxQueuedTokens} must be at least --max-input-tokens ${maxInputTokens}`);
  const limits = { maxInputTokens, maxTotalTokens, maxNewTokensLimit, maxBatchPrefillTokens, maxTopNTokens, blockSize, numKvBlocks, maxConcurrentRequests, maxQueuedTokens };
  if (numKvBlocks > 0) checkKvBlocks(limits, `--num-kv-blocks ${numKvBlocks}`);
  return limits;
}

/**
 * --max-concurrent-requests' default: as many sequences as the cache holds at their longest, so that admission
 * refuses what could not run together anyway, not what a large cache could (the H200's held 425 of 2048 tokens
 * for an 8B model, where TGI's 128 refused a load it could serve); at least 128.
 */
function defaultConcurrentRequests(numKvBlocks: number, maxTotalTokens: number, blockSize: number): number {
  return Math.max(MIN_DEFAULT_CONCURRENT_REQUESTS, Math.floor(numKvBlocks / Math.ceil(maxTotalTokens / blockSize)));
}

/** The limits with the block count the engine chose for numKvBlocks 0 (--gpu-memory-fraction), and what follows from it. */
export function withEngineKvBlocks(limits: ShardLimits, args: Pick<ShardArgs, "gpuMemoryFraction" | "maxConcurrentRequests">, numKvBlocks: number): ShardLimits {
  const maxConcurrentRequests = args.maxConcurrentRequests ?? defaultConcurrentRequests(numKvBlocks, limits.maxTotalTokens, limits.blockSize);
  const sized = { ...limits, numKvBlocks, maxConcurrentRequests };
  checkKvBlocks(sized, `the ${numKvBlocks} KV blocks that fit --gpu-memory-fraction ${args.gpuMemoryFraction}`);
  return sized;
}

function checkKvBlocks({ numKvBlocks, blockSize, maxTotalTokens }: ShardLimits, what: string): void {
  const blocksPerSequence = Math.ceil(maxTotalTokens / blockSize);
  if (numKvBlocks < blocksPerSequence) {
    throw new UsageError(`${what} of ${blockSize} tokens cannot hold one sequence of --max-total-tokens ${maxTotalTokens} (${blocksPerSequence} blocks needed)`);
  }
}
