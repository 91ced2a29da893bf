// `npm run bench -- --device cuda [--dtype float16|bfloat16]` (on the GPU machine): the CUDA engine on a
// Llama-3-8B-shaped model of random bf16 weights (converted to --dtype, default float16, on load), next to the
// GPU's measured limits and, with --baseline, transformers + PEFT on the same GPU.
//   limits      device-to-device copy bandwidth and bf16 GEMM rate (native/check/device_limits.cu)
//   batched products  weight read rate of the skinny kernel and of cuBLAS at 2, 4, 8 rows (device_limits.cu)
//   decode      step time at batch 1, 8, 32, 64, 128, 256 with 512-token contexts and at 1, 8, 32, 64 with
//               8155-token ones (the 8B shape's 8192 positions less the steps after the prompt), each against
//               its bound: the bytes it reads (weights without the embedding table, plus every sequence's K/V)
//               over the bandwidth, or its FLOPs over the GEMM rate where that is larger
//   multi-LoRA  batch 32 with 32 distinct rank-16 all-target adapters against the same batch without
//   prefill     2048 tokens in one step: achieved TFLOP/s over the GEMM rate
//   adapter load  a rank-16 all-target adapter loaded into a slot from host memory (the host tier's bytes) while
//                 a batch decodes, and the decode steps that ran meanwhile
//   KV cache    the engine sizes it from --gpu-memory-fraction (0.9)
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { createEngine, LORA_TARGETS, type AdapterWeights, type DeviceDtype, type NativeEngine } from "../native/addon.js";
import { loadAdapterFiles } from "../shard/model/adapter.js";
import { loadModelFiles } from "../shard/model/model-files.js";
import { projectionShape } from "../shard/model/projections.js";
import { stepGreedily, type BenchSeq } from "./greedy-steps.js";
import { adapterPool, writeRandomAdapter, writeRandomModel } from "./random-checkpoint.js";
import { LLAMA3_8B_SHAPE } from "./synthetic-model.js";

const SHAPE = LLAMA3_8B_SHAPE;
const BLOCK_SIZE = 16;
const GPU_MEMORY_FRACTION = 0.9;
const WARMUP_STEPS = 4;
const TIMED_STEPS = 32;
const PROMPT = 512;
/** The 8B shape's 8192 positions, less the steps that follow the prompt. */
const LONG_PROMPT = 8192 - WARMUP_STEPS - TIMED_STEPS - 1;
/** Prompt tokens prefilled in one step: long prompts go a few sequences at a time. */
const PREFILL_STEP_TOKENS = 16384;
const ADAPTERS = 32;
const RANK = 16;
const PREFILL = 2048;
const RELOADS = 8;
const DECODE_BATCHES = [1, 8, 32, 64, 128, 256];
const LONG_DECODE_BATCHES = [1, 8, 32, 64];

interface Limits {
  copyBytesPerSecond: number;
  gemmFlopsPerSecond: number;
  /** The one-row product's weight read rate, by "in x out" shape. */
  matrixVectorBytesPerSecond: Record<string, number>;
  /** Batched decode's products: by "in x out" shape, then by rows, the skinny kernel's and cuBLAS's rates. */
  batchedProductBytesPerSecond: Record<string, Record<string, { skinny: number; cublas: number }>>;
  /** Host-to-device copies: from pinned memory (what an adapter load sends its slot image from), from pageable memory. */
  hostToDeviceBytesPerSecond: { pinned: number; pageable: number };
}

function measureLimits(): Limits {
  const program = join("native", "build", "Release", "loraserve_device_limits");
  return JSON.parse(execFileSync(program, { encoding: "utf8" })) as Limits;
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

/** Hands out KV blocks (the first `count` of the engine's); sequences give theirs back when a measurement ends. */
class Blocks {
  private free: number[];
  constructor(count: number) {
    this.free = Array.from({ length: count }, (_, i) => i);
  }
  get available(): number {
    return this.free.length;
  }
  take(n: number): Int32Array {
    if (n > this.free.length) throw new Error(`bench: out of KV blocks (${n} wanted)`);
    return Int32Array.from(this.free.splice(0, n));
  }
  give(table: Int32Array): void {
    this.free.push(...table);
  }
}

/** When a step or a load ran, in performance.now() milliseconds. */
interface Interval {
  start: number;
  end: number;
}

const ms = ({ start, end }: Interval) => end - start;

async function runStep(engine: NativeEngine, seqs: BenchSeq[], tokens: (s: BenchSeq) => Int32Array): Promise<Interval> {
  const start = performance.now();
  await stepGreedily(engine, seqs, tokens);
  return { start, end: performance.now() };
}

const blocksPerSeq = (steps: number, prompt = PROMPT) => Math.ceil((prompt + WARMUP_STEPS + steps + 1) / BLOCK_SIZE);

interface DecodeRun {
  steps?: number;
  prompt?: number;
  /** Called once the warm-up steps ran, before the timed ones. */
  during?: () => void;
}

/** Prefills one `prompt`-token sequence per slot, then decodes; returns each timed step's interval. */
async function decodeSteps(engine: NativeEngine, blocks: Blocks, slots: number[], { steps = TIMED_STEPS, prompt = PROMPT, during }: DecodeRun = {}): Promise<Interval[]> {
  const seqs: BenchSeq[] = slots.map((slot) => ({
    slot,
    table: blocks.take(blocksPerSeq(steps, prompt)),
    position: 0,
    last: 0,
  }));
  try {
    const perPrefill = Math.max(1, Math.floor(PREFILL_STEP_TOKENS / prompt));
    for (let first = 0; first < seqs.length; first += perPrefill) {
      const group = seqs.slice(first, first + perPrefill);
      await runStep(engine, group, (s) => Int32Array.from({ length: prompt }, (_, k) => (seqs.indexOf(s) * 7919 + k * 31) % SHAPE.vocabSize));
    }
    for (let i = 0; i < WARMUP_STEPS; i++) await runStep(engine, seqs, (s) => Int32Array.of(s.last));
    during?.();
    const intervals: Interval[] = [];
    for (let i = 0; i < steps; i++) intervals.push(await runStep(engine, seqs, (s) => Int32Array.of(s.last)));
    return intervals;
  } finally {
    for (const s of seqs) blocks.give(s.table);
  }
}

/** The same, as each timed step's milliseconds. */
async function decode(engine: NativeEngine, blocks: Blocks, slots: number[], prompt = PROMPT): Promise<number[]> {
  return (await decodeSteps(engine, blocks, slots, { prompt })).map(ms);
}

/** The adapter with its files' bytes in host memory, as the shard's host tier hands it to a slot load. */
function inHostMemory(weights: AdapterWeights): AdapterWeights {
  const files = new Set(weights.pairs.flatMap((p) => [p.a.file, p.b.file]));
  return { ...weights, fileBytes: Object.fromEntries([...files].map((file) => [file, readFileSync(file)])) };
}

/** Milliseconds of one PREFILL-token prompt in one step (median of 3, after one warm-up). */
async function prefill(engine: NativeEngine, blocks: Blocks): Promise<number> {
  const times: number[] = [];
  for (let run = 0; run < 4; run++) {
    const seq: BenchSeq = { slot: -1, table: blocks.take(PREFILL / BLOCK_SIZE + 1), position: 0, last: 0 };
    const step = await runStep(engine, [seq], () => Int32Array.from({ length: PREFILL }, (_, k) => (k * 131 + run) % SHAPE.vocabSize));
    blocks.give(seq.table);
    if (run > 0) times.push(ms(step));
  }
  return median(times);
}

/** FLOPs of a PREFILL-token prompt: every projection per token, causal attention, the output row. */
function prefillFlops(): number {
  const { hiddenSize: h, intermediateSize: m, numLayers, numHeads, numKvHeads, headDim: d, vocabSize: v } = SHAPE;
  const perLayer = h * (numHeads * d + 2 * numKvHeads * d) + numHeads * d * h + 3 * h * m;
  const linear = 2 * PREFILL * perLayer * numLayers + 2 * h * v;
  const attention = numLayers * 2 * 2 * numHeads * d * ((PREFILL * (PREFILL + 1)) / 2);
  return linear + attention;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { baseline: { type: "boolean", default: false }, dtype: { type: "string", default: "float16" } } });
  const withBaseline = values.baseline!;
  if (values.dtype !== "float16" && values.dtype !== "bfloat16") throw new Error(`--dtype must be float16 or bfloat16, got ${values.dtype}`);
  const dtype: DeviceDtype = values.dtype;
  const dir = mkdtempSync(join(tmpdir(), "loraserve-cuda-bench-"));
  const rows: [string, string][] = [];
  const report = (name: string, value: string) => {
    rows.push([name, value]);
    console.log(`${name}: ${value}`);
  };
  try {
    const limits = measureLimits();
    report("measured copy bandwidth (read + write)", `${(limits.copyBytesPerSecond / 1e12).toFixed(2)} TB/s`);
    report("measured bf16 GEMM rate (8192^3, cuBLAS)", `${(limits.gemmFlopsPerSecond / 1e12).toFixed(0)} TFLOP/s`);
    for (const [shape, rate] of Object.entries(limits.matrixVectorBytesPerSecond)) {
      report(`one-row product (matrix_vector.cu) ${shape}: weight read rate`, `${(rate / 1e12).toFixed(2)} TB/s`);
    }
    for (const [shape, byRows] of Object.entries(limits.batchedProductBytesPerSecond)) {
      for (const [rows, { skinny, cublas }] of Object.entries(byRows)) {
        report(
          `${rows}-row product ${shape}: weight read rate, skinny_gemm.cu / cuBLAS`,
          `${(skinny / 1e12).toFixed(2)} / ${(cublas / 1e12).toFixed(2)} TB/s (${(skinny / limits.copyBytesPerSecond).toFixed(2)} of the copy bandwidth)`,
        );
      }
    }
    const h2d = limits.hostToDeviceBytesPerSecond;
    report(
      "host to device, 96 MiB: pinned / pageable",
      `${(h2d.pinned / 1e9).toFixed(1)} / ${(h2d.pageable / 1e9).toFixed(1)} GB/s`,
    );

    let t0 = performance.now();
    writeRandomModel(join(dir, "model"), SHAPE);
    const pool = adapterPool();
    for (let a = 0; a < ADAPTERS; a++) writeRandomAdapter(join(dir, `adapter-${a}`), SHAPE, RANK, 11 + a, pool);
    console.log(`wrote the random checkpoint and ${ADAPTERS} adapters in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

    const model = loadModelFiles(join(dir, "model"));
    // The plain path, and (below, once it is closed) the tensor-parallel path at world 1 on the same model.
    const openEngine = (tensorParallelPath: boolean) =>
      createEngine({
        device: "cuda",
        rank: 0,
        world: 1,
        spec: model.spec,
        weights: model.weights,
        numKvBlocks: 0,
        gpuMemoryFraction: GPU_MEMORY_FRACTION,
        blockSize: BLOCK_SIZE,
        maxLoras: ADAPTERS,
        maxLoraRank: RANK,
        threads: 0,
        dtype,
        tensorParallelPath,
      });
    t0 = performance.now();
    const engine = openEngine(false);
    report("engine dtype (weights, activations, KV cache)", dtype);
    report("engine start (weights file -> GPU)", `${((performance.now() - t0) / 1000).toFixed(1)} s`);
    const { numKvBlocks } = engine.info();
    report(`KV cache sized for gpuMemoryFraction ${GPU_MEMORY_FRACTION}`, `${numKvBlocks} blocks of ${BLOCK_SIZE} = ${numKvBlocks * BLOCK_SIZE} tokens`);
    const adapters = Array.from({ length: ADAPTERS }, (_, a) => loadAdapterFiles(join(dir, `adapter-${a}`), model.spec).weights);
    for (let a = 0; a < ADAPTERS; a++) await engine.loadAdapter(a, adapters[a]!);
    const blocks = new Blocks(numKvBlocks);

    // A decode step reads every weight once except the embedding table (one row per token).
    const stepBytes = engine.info().weightBytes - SHAPE.vocabSize * SHAPE.hiddenSize * 2;
    const boundMs = (stepBytes / limits.copyBytesPerSecond) * 1000;
    report("weights read per decode step", `${(stepBytes / 1e9).toFixed(2)} GB -> bound ${boundMs.toFixed(2)} ms/step`);
    // Each sequence's K/V (16-bit) at the timed steps' mean context, read once per step by attention; two FLOPs
    // per weight element (stepBytes / 2 of them) per row, and attention's scores and weighted sum.
    const { numLayers, numHeads, numKvHeads, headDim } = SHAPE;
    const stepMs = new Map<number, number>();
    for (const [prompt, batches] of [[PROMPT, DECODE_BATCHES], [LONG_PROMPT, LONG_DECODE_BATCHES]] as const) {
      const context = prompt + WARMUP_STEPS + TIMED_STEPS / 2;
      const kvBytesPerSeq = numLayers * 2 * numKvHeads * headDim * 2 * context;
      const flopsPerSeq = stepBytes + numLayers * 4 * numHeads * headDim * context;
      for (const batch of batches) {
        const name = `decode batch ${batch}, ${prompt}-token contexts`;
        if (batch * blocksPerSeq(TIMED_STEPS, prompt) > blocks.available) {
          report(name, `skipped: ${blocks.available} KV blocks, ${batch * blocksPerSeq(TIMED_STEPS, prompt)} needed`);
          continue;
        }
        const batchMs = median(await decode(engine, blocks, Array.from({ length: batch }, () => -1), prompt));
        if (prompt === PROMPT) stepMs.set(batch, batchMs);
        const bytesMs = ((stepBytes + batch * kvBytesPerSeq) / limits.copyBytesPerSecond) * 1000;
        const flopsMs = ((batch * flopsPerSeq) / limits.gemmFlopsPerSecond) * 1000;
        const bound = Math.max(bytesMs, flopsMs);
        report(
          name,
          `${batchMs.toFixed(2)} ms/step, ${((batch * 1000) / batchMs).toFixed(0)} tokens/s; bound ${bound.toFixed(2)} ms (${bytesMs >= flopsMs ? "bytes" : "FLOPs"}), bound / measured ${(bound / batchMs).toFixed(3)}`,
        );
      }
    }

    const plain = median(await decode(engine, blocks, Array.from({ length: 32 }, () => -1)));
    const mixed = median(await decode(engine, blocks, Array.from({ length: 32 }, (_, i) => i)));
    // Each distinct adapter's A and B (16-bit) are read once per step, on top of the base weights.
    const adapterBytes = ADAPTERS * SHAPE.numLayers * LORA_TARGETS.reduce((sum, t) => {
      const dims = projectionShape(SHAPE, t);
      return sum + 2 * RANK * (dims.in + dims.out);
    }, 0);
    report("batch 32, 32 distinct rank-16 adapters", `${mixed.toFixed(2)} ms/step vs ${plain.toFixed(2)} without`);
    report("throughput with / without adapters (goal >= 0.97)", `${(plain / mixed).toFixed(3)} (bytes bound: ${(stepBytes / (stepBytes + adapterBytes)).toFixed(3)})`);

    const prefillMs = await prefill(engine, blocks);
    const tflops = prefillFlops() / (prefillMs / 1000) / 1e12;
    report(`prefill ${PREFILL} tokens`, `${prefillMs.toFixed(1)} ms, ${tflops.toFixed(0)} TFLOP/s`);
    report("prefill TFLOP/s / GEMM rate (goal >= 0.60)", (tflops / (limits.gemmFlopsPerSecond / 1e12)).toFixed(3));

    // Reload one slot RELOADS times, one after another, while 31 adapters decode: each load runs on its own
    // stream and worker thread from the adapter's bytes in host memory.
    const reloaded = inHostMemory(adapters[ADAPTERS - 1]!);
    const reload = async (): Promise<Interval> => {
      engine.unloadAdapter(ADAPTERS - 1);
      const start = performance.now();
      await engine.loadAdapter(ADAPTERS - 1, reloaded);
      return { start, end: performance.now() };
    };
    const idle: Interval[] = [];
    for (let k = 0; k < RELOADS; k++) idle.push(await reload());
    const describeLoads = (loads: Interval[]) => `median ${median(loads.map(ms)).toFixed(2)} ms, max ${Math.max(...loads.map(ms)).toFixed(2)} ms`;
    report(`adapter load into a slot, engine idle (host memory -> GPU), ${RELOADS} loads`, describeLoads(idle));
    // The load cannot beat its bytes over the bus: the stored tensors at the pinned host-to-device rate.
    const storedBytes = Object.values(reloaded.fileBytes ?? {}).reduce((sum, bytes) => sum + bytes.byteLength, 0);
    report("adapter bytes / pinned host-to-device rate (the bus bound)", `${(storedBytes / 1e6).toFixed(1)} MB -> ${((storedBytes / h2d.pinned) * 1000).toFixed(2)} ms`);
    const loads: Interval[] = [];
    let reloading: Promise<void> = Promise.resolve();
    const during = await decodeSteps(engine, blocks, Array.from({ length: 32 }, (_, i) => i % (ADAPTERS - 1)), {
      steps: 48,
      during: () => {
        reloading = (async () => {
          for (let k = 0; k < RELOADS; k++) loads.push(await reload());
        })();
      },
    });
    await reloading;
    const overlaps = (step: Interval) => loads.some((load) => load.start < step.end && step.start < load.end);
    const loadSteps = during.filter(overlaps).map(ms);
    const otherSteps = during.filter((step) => !overlaps(step)).map(ms);
    report(`adapter load into a slot during decode (host memory -> GPU), ${RELOADS} loads`, describeLoads(loads));
    report(
      "decode steps overlapping a load: median / max (others' median)",
      loadSteps.length === 0 || otherSteps.length === 0
        ? `${loadSteps.length} of ${during.length} steps overlapped a load: no comparison`
        : `${median(loadSteps).toFixed(2)} / ${Math.max(...loadSteps).toFixed(2)} ms (${median(otherSteps).toFixed(2)} ms)`,
    );
    engine.close();

    // The tensor-parallel path at world 1: the same model through a one-rank NCCL communicator, whose all-reduce
    // follows every o_proj and down_proj inside the decode graphs. What it adds is the cost of the path itself.
    const tpEngine = openEngine(true);
    const tpBlocks = new Blocks(tpEngine.info().numKvBlocks);
    for (const batch of [1, 32]) {
      const tpMs = median(await decode(tpEngine, tpBlocks, Array.from({ length: batch }, () => -1)));
      report(`decode batch ${batch}, tensor-parallel path at world 1 (goal <= 1.01x)`, `${tpMs.toFixed(2)} ms/step, ${(tpMs / stepMs.get(batch)!).toFixed(3)}x the plain path`);
    }
    tpEngine.close();

    if (withBaseline) {
      // After engine.close(), so the GPU's memory is free for the second model.
      const out = execFileSync("python3", ["bench/transformers_baseline.py"], {
        encoding: "utf8",
        stdio: ["ignore", "pipe", "inherit"],
        env: { ...process.env, PYTHONUNBUFFERED: "1" },
        timeout: 480_000,
      });
      const baseline = JSON.parse(out.trim().split("\n").pop()!) as Record<string, number | null>;
      const ratio = (ours: number, name: string) => {
        const theirs = baseline[name];
        return theirs ? `${(ours / theirs).toFixed(2)}x` : "n/a (baseline failed)";
      };
      for (const [name, value] of Object.entries(baseline)) report(`transformers+PEFT: ${name}`, value === null ? "failed" : value.toFixed(1));
      report("loraserve / transformers static+compile, batch 1 tokens/s", ratio(1000 / stepMs.get(1)!, "static+compile batch 1 tokens/s"));
      report("loraserve / PEFT, batch 32 mixed adapters tokens/s", ratio((32 * 1000) / mixed, "PEFT batch 32 mixed adapters tokens/s"));
    }
    console.log("\n| measurement | value |\n| --- | --- |");
    for (const [k, v] of rows) console.log(`| ${k} | ${v} |`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
