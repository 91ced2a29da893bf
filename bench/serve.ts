// `npm run bench -- --serve [--device cpu|cuda] [options]`: the serving benchmark (issue 15). It starts `loraserve
// serve` on a random Llama checkpoint (cuda: Llama-3-8B's shape with a generated tokenizer spelling all 128256
// ids; cpu: a tiny one) and n PEFT adapters, drives the public API open-loop with streaming clients (gRPC
// GenerateStream and OpenAI SSE) under S-LoRA's workload (bench/serving/workload.ts), and prints per offered rate
// TTFT, time per output token and end-to-end latency p50/p99, throughput, the share under 1 s and 6 s TTFT and
// every failure, the requests in flight halfway through and at the end of the sending (a growing backlog means
// the server fell behind), the engine's busy share of the wall time (the rest is the stack's), then the highest
// rate held (p99 TTFT within the objective, no failure, backlog seen steady) for each n. `--help` lists the flags.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { LORA_TARGETS, type LoraTarget } from "../native/addon.js";
import { parseAdapterList } from "../shard/options.js";
import { adapterSpecOf, makeCheckpoint, S1_TARGETS, TINY_SERVE_SHAPE, type Checkpoint } from "./serving/checkpoint.js";
import { LLAMA3_8B_SHAPE } from "./synthetic-model.js";
import { markdownReport, writeJsonReport } from "./serving/report.js";
import { runSweep, type SweepOptions } from "./serving/sweep.js";
import { parsePopularity, type LengthRange } from "./serving/workload.js";

const USAGE = `npm run bench -- --serve [options]   (node dist/bench/serve.js [options])
  --device cpu|cuda        where the server runs (default cpu); cuda: the Llama-3-8B-shaped model
  --adapters LIST          adapter counts n to serve, one server each (default cpu 3, cuda 5,100)
  --ranks LIST             adapter ranks, adapter i taking rank i mod the list: 8 is S-LoRA's S1, 8,16,32,64 its
                           S2 (default 8)
  --targets LIST           projections the adapters adapt (default q_proj,k_proj,v_proj,o_proj; "all": all seven)
  --popularity LIST        power:ALPHA (S-LoRA: 1 uniform, 0.3 skewed), zipf:EXPONENT (Punica: 1.5) or
                           flood:SHARE (adapter 0 takes SHARE of the requests; the report compares the others'
                           TTFT with the lowest rate's) (default power:1)
  --cv LIST                coefficient of variation of the gamma inter-arrival times: 1 Poisson, 4 bursty (default 1)
  --rates LIST             offered requests per second, swept in turn (default cpu 1,2, cuda 2,4,8,16)
  --duration SECONDS       how long each rate sends requests (default cpu 10, cuda 60)
  --input-lengths LO:HI    prompt tokens, uniform on [LO, HI) (default cpu 8:64, cuda 8:512)
  --output-lengths LO:HI   output tokens, uniform on [LO, HI), enforced with ignore_eos (default cpu 8:32, cuda 8:512)
  --protocol P             grpc, openai or alternate (default alternate: even requests gRPC, odd OpenAI)
  --seed N                 seeds the trace and the prompts (default 1)
  --ttft-slo SECONDS       the p99 TTFT a rate must meet to count as held (default 1); a rate must also send
                           for twice its p99 end-to-end latency or more, to show that its backlog is steady
  --request-timeout SECONDS  a request still running after this long is aborted and counted failed (default 600)
  --work-dir DIR           make the checkpoint here and keep it; a later run reuses what matches (default: a
                           temporary directory, removed at the end)
  --model-id DIR           serve this model instead of a generated one, with --lora-adapters ID=DIR,... (its
                           adapters; --adapters then defaults to their count)
  --lora-adapters LIST     with --model-id
  --dtype float16|bfloat16 on cuda, passed to serve
  --serve-arg ARG          one more argument for loraserve serve, repeatable (--serve-arg=--max-loras=32)
  --out PATH               also write every result and request outcome as JSON`;

const DEFAULTS = {
  cpu: { adapters: "3", rates: "1,2", duration: "10", input: "8:64", output: "8:32" },
  cuda: { adapters: "5,100", rates: "2,4,8,16", duration: "60", input: "8:512", output: "8:512" },
} as const;

const CLI = fileURLToPath(new URL("../client/cli.js", import.meta.url));

class UsageError extends Error {}

function positiveNumbers(flag: string, text: string, integer: boolean): number[] {
  const values = text.split(",").map((part) => Number(part.trim()));
  if (values.length === 0 || values.some((v) => !(v > 0) || !Number.isFinite(v) || (integer && !Number.isInteger(v)))) {
    throw new UsageError(`--${flag} must be a comma-separated list of positive ${integer ? "integers" : "numbers"}, got ${JSON.stringify(text)}`);
  }
  return values;
}

function positive(flag: string, text: string): number {
  const values = positiveNumbers(flag, text, false);
  if (values.length !== 1) throw new UsageError(`--${flag} takes one number, got ${JSON.stringify(text)}`);
  return values[0]!;
}

function lengthRange(flag: string, text: string): LengthRange {
  const [lo, hi] = text.split(":").map(Number);
  if (lo === undefined || hi === undefined || !Number.isInteger(lo) || !Number.isInteger(hi) || lo < 1 || hi <= lo) {
    throw new UsageError(`--${flag} must be LO:HI with integers 1 <= LO < HI, got ${JSON.stringify(text)}`);
  }
  return { lo, hi };
}

function targetsOf(text: string): readonly LoraTarget[] {
  if (text === "all") return LORA_TARGETS;
  const names = text.split(",").map((t) => t.trim());
  const unknown = names.filter((t) => !(LORA_TARGETS as readonly string[]).includes(t));
  if (unknown.length > 0) throw new UsageError(`--targets: unknown projection(s) ${unknown.join(", ")}; known: ${LORA_TARGETS.join(", ")}`);
  return names as LoraTarget[];
}

/** The sweep's options, and where the checkpoint comes from and the results go. */
interface BenchOptions extends Omit<SweepOptions, "cli" | "checkpoint" | "progress"> {
  /** --model-id with --lora-adapters: serve these instead of a generated checkpoint. */
  given: Checkpoint | null;
  ranks: number[];
  targets: readonly LoraTarget[];
  workDir: string | null;
  out: string | null;
}

function parse(argv: string[]): BenchOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      device: { type: "string", default: "cpu" },
      adapters: { type: "string" },
      ranks: { type: "string", default: "8" },
      targets: { type: "string", default: S1_TARGETS.join(",") },
      popularity: { type: "string", default: "power:1" },
      cv: { type: "string", default: "1" },
      rates: { type: "string" },
      duration: { type: "string" },
      "input-lengths": { type: "string" },
      "output-lengths": { type: "string" },
      protocol: { type: "string", default: "alternate" },
      seed: { type: "string", default: "1" },
      "ttft-slo": { type: "string", default: "1" },
      "request-timeout": { type: "string", default: "600" },
      "work-dir": { type: "string" },
      "model-id": { type: "string" },
      "lora-adapters": { type: "string" },
      dtype: { type: "string" },
      "serve-arg": { type: "string", multiple: true, default: [] },
      out: { type: "string" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const device = values.device as BenchOptions["device"];
  if (device !== "cpu" && device !== "cuda") throw new UsageError(`--device must be cpu or cuda, got ${JSON.stringify(device)}`);
  const defaults = DEFAULTS[device];
  const protocol = values.protocol;
  if (protocol !== "grpc" && protocol !== "openai" && protocol !== "alternate") throw new UsageError(`--protocol must be grpc, openai or alternate, got ${JSON.stringify(protocol)}`);
  if ((values["model-id"] === undefined) !== (values["lora-adapters"] === undefined)) throw new UsageError("--model-id and --lora-adapters go together");
  if (values.dtype !== undefined && (device !== "cuda" || (values.dtype !== "float16" && values.dtype !== "bfloat16"))) {
    throw new UsageError("--dtype is float16 or bfloat16, with --device cuda");
  }
  const given = values["lora-adapters"] === undefined ? null : parseAdapterList(values["lora-adapters"]);
  const adapterCounts = positiveNumbers("adapters", values.adapters ?? (given ? String(given.length) : defaults.adapters), true);
  if (given && Math.max(...adapterCounts) > given.length) throw new UsageError(`--adapters asks for ${Math.max(...adapterCounts)} adapters; --lora-adapters names ${given.length}`);
  const seed = Number(values.seed);
  if (!Number.isSafeInteger(seed) || seed < 0) throw new UsageError(`--seed must be a non-negative integer, got ${JSON.stringify(values.seed)}`);
  let popularities;
  try {
    popularities = values.popularity.split(",").map((p) => parsePopularity(p.trim()));
  } catch (error) {
    throw new UsageError(`--popularity: ${(error as Error).message}`);
  }
  return {
    device,
    given: given && values["model-id"] !== undefined ? { modelDir: values["model-id"], adapters: given } : null,
    adapterCounts,
    ranks: positiveNumbers("ranks", values.ranks, true),
    targets: targetsOf(values.targets),
    popularities,
    cvs: positiveNumbers("cv", values.cv, false),
    rates: positiveNumbers("rates", values.rates ?? defaults.rates, false),
    durationSeconds: positive("duration", values.duration ?? defaults.duration),
    inputTokens: lengthRange("input-lengths", values["input-lengths"] ?? defaults.input),
    outputTokens: lengthRange("output-lengths", values["output-lengths"] ?? defaults.output),
    protocol,
    seed,
    ttftSloSeconds: positive("ttft-slo", values["ttft-slo"]),
    requestTimeoutMs: positive("request-timeout", values["request-timeout"]) * 1000,
    workDir: values["work-dir"] ?? null,
    serveArgs: [...(values.dtype === undefined ? [] : ["--dtype", values.dtype]), ...values["serve-arg"]],
    out: values.out ?? null,
  };
}

/** On a terminal one line redrawn in place; elsewhere (CI, a log) the line as it is, about once a second. */
function progressLine(line: string): void {
  if (process.stderr.isTTY) process.stderr.write(`\r\x1b[2K${line}`);
  else process.stderr.write(`${line}\n`);
}

async function main(): Promise<void> {
  let options: BenchOptions;
  try {
    options = parse(process.argv.slice(2));
  } catch (error) {
    console.error(`bench --serve: ${(error as Error).message}\n\n${USAGE}`);
    process.exit(2);
  }
  const root = options.workDir ?? mkdtempSync(join(tmpdir(), "loraserve-serve-bench-"));
  try {
    const shape = options.device === "cuda" ? LLAMA3_8B_SHAPE : TINY_SERVE_SHAPE;
    const checkpoint: Checkpoint =
      options.given ??
      makeCheckpoint(root, shape, Math.max(...options.adapterCounts), (i) => adapterSpecOf(i, options.ranks, options.targets), (line) => console.error(line));
    const result = await runSweep({ ...options, cli: CLI, checkpoint, progress: progressLine });
    if (process.stderr.isTTY) process.stderr.write("\n");
    console.log(`\nloraserve serve --device ${options.device}, ${options.given ? checkpoint.modelDir : `random ${shape.numLayers}-layer hidden-${shape.hiddenSize} model`}; ${options.durationSeconds} s per rate, input ${options.inputTokens.lo}:${options.inputTokens.hi}, output ${options.outputTokens.lo}:${options.outputTokens.hi} tokens, protocol ${options.protocol}, seed ${options.seed}; latencies in ms\n`);
    console.log(markdownReport(result, options.ttftSloSeconds));
    if (options.out !== null) writeJsonReport(options.out, { ...options, checkpoint }, result);
  } finally {
    if (options.workDir === null) rmSync(root, { recursive: true, force: true });
  }
}

await main();
