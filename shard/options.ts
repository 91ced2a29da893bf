// `loraserve shard` flags (with MODEL_ID / LORA_ADAPTERS / ADAPTER_ROOTS from the environment) → the shard's settings.
// Limits that depend on the model (its context length) are resolved once its config is read.
import { parseArgs } from "node:util";
import { flagOrEnv, type Setting } from "../common/flag-or-env.js";
import { parseInteger } from "../common/parse-integer.js";
import type { DeviceDtype, ModelSpec } from "../native/addon.js";
import { parseTelemetryOptions, TELEMETRY_FLAGS, telemetryUsage, type TelemetryOptions } from "../telemetry/options.js";
import type { AdapterSource } from "./adapters/registry.js";

const DEFAULT_MAX_LORAS = 8;
const DEFAULT_MAX_CPU_LORAS = 64;
const DEFAULT_MAX_LORA_RANK = 64;
const DEFAULT_GPU_MEMORY_FRACTION = 0.9;

export const SHARD_USAGE = `usage: loraserve shard --model-id DIR [options]
  --model-id DIR                 base model directory (env MODEL_ID)
  --served-model-name NAME       the base model's id in the API (OpenAI "model", TGI /info); default: --model-id
  --lora-adapters ID=DIR,...     PEFT LoRA adapters to serve (env LORA_ADAPTERS)
  --adapter-root DIR             where adapters not named above are found by id, as DIR/ID/ or in the Hugging Face
                                 cache layout DIR/models--ORG--NAME/snapshots/REV/; repeatable (env ADAPTER_ROOTS,
                                 colon-separated)
  --max-loras N                  engine adapter slots (default ${DEFAULT_MAX_LORAS})
  --max-cpu-loras N              adapters held validated in host memory (default ${DEFAULT_MAX_CPU_LORAS})
  --max-lora-rank N              largest adapter rank accepted (default ${DEFAULT_MAX_LORA_RANK})
  --shard-port N                 internal ShardService port; 0 picks a free one (default 0)
  --max-input-tokens N           longest prompt (default: max total tokens - 1)
  --max-total-tokens N           longest prompt + generated tokens (default: min(model context, 2048))
  --max-new-tokens-limit N       most tokens one request may generate (default: max total tokens - 1)
  --max-batch-prefill-tokens N   prompt tokens computed per step; longer prompts are chunked (default 4096)
  --block-size N                 tokens per KV-cache block (default 16)
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
${telemetryUsage(33)}`;

export class UsageError extends Error {
  constructor(message: string) {
    super(`${message}\n${SHARD_USAGE}`);
    this.name = "UsageError";
  }
}

export interface ShardArgs extends TelemetryOptions {
  modelDir: string;
  /** What the API calls the base model. */
  servedModelName: string;
  adapters: AdapterSource[];
  adapterRoots: string[];
  maxLoras: number;
  maxCpuLoras: number;
  maxLoraRank: number;
  port: number;
  device: "cpu" | "cuda";
  /** On cuda; the CPU backend computes in float32. */
  dtype: DeviceDtype;
  gpuMemoryFraction: number;
  threads: number;
  blockSize: number;
  maxBatchPrefillTokens: number;
  /** Unset means the default derived from the model (see resolveLimits). */
  maxInputTokens: number | null;
  maxTotalTokens: number | null;
  maxNewTokensLimit: number | null;
  numKvBlocks: number | null;
  metricsPort: number | null;
  metricsHostname: string;
}

export interface ShardLimits {
  maxInputTokens: number;
  maxTotalTokens: number;
  maxNewTokensLimit: number;
  maxBatchPrefillTokens: number;
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

function fraction(flag: string, text: string | undefined): number | null {
  if (text === undefined) return null;
  const value = Number(text);
  if (text.trim() === "" || !(value > 0 && value <= 1)) throw new UsageError(`--${flag} must be a number in (0, 1], got ${JSON.stringify(text)}`);
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

/** `defaultDevice` is what --device means when absent (shard/main.ts asks the addon and the machine). */
export function parseShardArgs(args: readonly string[], env: NodeJS.ProcessEnv = process.env, defaultDevice: "cpu" | "cuda" = "cpu"): ShardArgs {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...args],
      strict: true,
      allowPositionals: false,
      options: {
        "model-id": { type: "string" },
        "served-model-name": { type: "string" },
        "lora-adapters": { type: "string", multiple: true },
        "adapter-root": { type: "string", multiple: true },
        "max-loras": { type: "string" },
        "max-cpu-loras": { type: "string" },
        "max-lora-rank": { type: "string" },
        "shard-port": { type: "string" },
        "max-input-tokens": { type: "string" },
        "max-total-tokens": { type: "string" },
        "max-new-tokens-limit": { type: "string" },
        "max-batch-prefill-tokens": { type: "string" },
        "num-kv-blocks": { type: "string" },
        "block-size": { type: "string" },
        threads: { type: "string" },
        device: { type: "string" },
        dtype: { type: "string" },
        "gpu-memory-fraction": { type: "string" },
        "metrics-port": { type: "string" },
        "metrics-hostname": { type: "string" },
        ...TELEMETRY_FLAGS,
      },
    }));
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const modelDir = values["model-id"] ?? env.MODEL_ID;
  if (!modelDir) throw new UsageError("--model-id (or MODEL_ID) is required");
  const device = values.device ?? defaultDevice;
  if (device !== "cpu" && device !== "cuda") throw new UsageError(`--device must be cpu or cuda, got ${JSON.stringify(device)}`);
  const dtype = values.dtype ?? "float16";
  if (dtype !== "float16" && dtype !== "bfloat16") throw new UsageError(`--dtype must be float16 or bfloat16, got ${JSON.stringify(dtype)}`);
  if (values.dtype !== undefined && device !== "cuda") throw new UsageError("--dtype applies to --device cuda; the CPU backend computes in float32");
  const adapterText = values["lora-adapters"]?.join(",") ?? env.LORA_ADAPTERS ?? "";
  return {
    modelDir,
    servedModelName: values["served-model-name"] ?? modelDir,
    adapters: parseAdapterList(adapterText),
    adapterRoots: values["adapter-root"] ?? (env.ADAPTER_ROOTS ?? "").split(":").filter((dir) => dir !== ""),
    maxLoras: integer(flagOrEnv("max-loras", values["max-loras"], env), 1) ?? DEFAULT_MAX_LORAS,
    maxCpuLoras: integer(flagOrEnv("max-cpu-loras", values["max-cpu-loras"], env), 1) ?? DEFAULT_MAX_CPU_LORAS,
    maxLoraRank: integer(flagOrEnv("max-lora-rank", values["max-lora-rank"], env), 1) ?? DEFAULT_MAX_LORA_RANK,
    port: integer(flagOrEnv("shard-port", values["shard-port"], env), 0, 65535) ?? 0,
    device,
    dtype,
    gpuMemoryFraction: fraction("gpu-memory-fraction", values["gpu-memory-fraction"]) ?? DEFAULT_GPU_MEMORY_FRACTION,
    threads: integer(flagOrEnv("threads", values.threads, env), 0) ?? 0,
    blockSize: integer(flagOrEnv("block-size", values["block-size"], env), 1) ?? 16,
    maxBatchPrefillTokens: integer(flagOrEnv("max-batch-prefill-tokens", values["max-batch-prefill-tokens"], env), 1) ?? 4096,
    maxInputTokens: integer(flagOrEnv("max-input-tokens", values["max-input-tokens"], env), 1),
    maxTotalTokens: integer(flagOrEnv("max-total-tokens", values["max-total-tokens"], env), 2),
    maxNewTokensLimit: integer(flagOrEnv("max-new-tokens-limit", values["max-new-tokens-limit"], env), 1),
    numKvBlocks: integer(flagOrEnv("num-kv-blocks", values["num-kv-blocks"], env), 1),
    metricsPort: integer(flagOrEnv("metrics-port", values["metrics-port"], env), 0, 65535),
    metricsHostname: values["metrics-hostname"] ?? "127.0.0.1",
    ...telemetryOptions(values),
  };
}

function telemetryOptions(values: Parameters<typeof parseTelemetryOptions>[0]): TelemetryOptions {
  try {
    return parseTelemetryOptions(values);
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
  const limits = { maxInputTokens, maxTotalTokens, maxNewTokensLimit, maxBatchPrefillTokens: args.maxBatchPrefillTokens, blockSize, numKvBlocks };
  if (numKvBlocks > 0) checkKvBlocks(limits, `--num-kv-blocks ${numKvBlocks}`);
  return limits;
}

/** The limits with the block count the engine chose for numKvBlocks 0 (--gpu-memory-fraction). */
export function withEngineKvBlocks(limits: ShardLimits, numKvBlocks: number, gpuMemoryFraction: number): ShardLimits {
  const sized = { ...limits, numKvBlocks };
  checkKvBlocks(sized, `the ${numKvBlocks} KV blocks that fit --gpu-memory-fraction ${gpuMemoryFraction}`);
  return sized;
}

function checkKvBlocks({ numKvBlocks, blockSize, maxTotalTokens }: ShardLimits, what: string): void {
  const blocksPerSequence = Math.ceil(maxTotalTokens / blockSize);
  if (numKvBlocks < blocksPerSequence) {
    throw new UsageError(`${what} of ${blockSize} tokens cannot hold one sequence of --max-total-tokens ${maxTotalTokens} (${blocksPerSequence} blocks needed)`);
  }
}
