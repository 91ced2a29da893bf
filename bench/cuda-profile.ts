// `node dist/bench/cuda-profile.js --checkpoint DIR --batch N [--prompt P] [--steps S] [--adapters K] [--prefills R]`
// (on the GPU machine, under ncu): the smallest run that holds the decode steps ncu should look at. It prefills N
// sequences of P tokens (default 512) on the 8B-shaped random checkpoint in DIR (written there first if absent),
// with K distinct rank-16 all-target adapters round-robin over the batch (default 0: the base model), then runs S
// decode steps (default 3) and prints their median time. With R > 0 it first runs the prefill step R more times
// (into the same cache blocks) and prints their median too. bench/ncu_table.py finds the last step's kernels in ncu's output by their repeating order.
//   ncu --clock-control none --page raw --csv --print-kernel-base function --metrics gpu__time_duration.sum,
//       dram__bytes_read.sum,dram__bytes_write.sum node dist/bench/cuda-profile.js ... > ncu.csv
//   python3 bench/ncu_table.py ncu.csv
import { existsSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { createEngine } from "../native/addon.js";
import { loadAdapterFiles } from "../shard/model/adapter.js";
import { loadModelFiles } from "../shard/model/model-files.js";
import { stepGreedily, type BenchSeq } from "./greedy-steps.js";
import { adapterPool, writeRandomAdapter, writeRandomModel } from "./random-checkpoint.js";
import { LLAMA3_8B_SHAPE } from "./synthetic-model.js";

const BLOCK_SIZE = 16;
const RANK = 16;

function positiveInteger(value: string | undefined, name: string, fallback: number, min = 1): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer >= ${min}, got ${JSON.stringify(value)}`);
  return n;
}

const { values } = parseArgs({
  options: {
    checkpoint: { type: "string" },
    batch: { type: "string" },
    prompt: { type: "string" },
    steps: { type: "string" },
    adapters: { type: "string" },
    prefills: { type: "string" },
  },
});
if (values.checkpoint === undefined || values.batch === undefined) throw new Error("cuda-profile: --checkpoint DIR and --batch N are required");
const dir = values.checkpoint;
const batch = positiveInteger(values.batch, "batch", 1);
const prompt = positiveInteger(values.prompt, "prompt", 512);
const steps = positiveInteger(values.steps, "steps", 3);
const adapterCount = positiveInteger(values.adapters, "adapters", 0, 0);
const prefills = positiveInteger(values.prefills, "prefills", 0, 0);

if (!existsSync(join(dir, "model", "config.json"))) writeRandomModel(join(dir, "model"), LLAMA3_8B_SHAPE);
const pool = adapterPool();
for (let a = 0; a < adapterCount; a++) {
  if (!existsSync(join(dir, `adapter-${a}`, "adapter_config.json"))) writeRandomAdapter(join(dir, `adapter-${a}`), LLAMA3_8B_SHAPE, RANK, 11 + a, pool);
}
const model = loadModelFiles(join(dir, "model"));
const blocksPerSeq = Math.ceil((prompt + steps + 1) / BLOCK_SIZE);
const engine = createEngine({
  device: "cuda",
  rank: 0,
  world: 1,
  spec: model.spec,
  weights: model.weights,
  numKvBlocks: batch * blocksPerSeq,
  blockSize: BLOCK_SIZE,
  maxLoras: adapterCount,
  maxLoraRank: RANK,
  threads: 0,
  dtype: "float16",
});
try {
  for (let a = 0; a < adapterCount; a++) await engine.loadAdapter(a, loadAdapterFiles(join(dir, `adapter-${a}`), model.spec).weights);
  const seqs: BenchSeq[] = Array.from({ length: batch }, (_, i) => ({
    slot: adapterCount === 0 ? -1 : i % adapterCount,
    table: Int32Array.from({ length: blocksPerSeq }, (_, b) => i * blocksPerSeq + b),
    position: 0,
    last: 0,
  }));
  const promptTokens = (seq: BenchSeq) => Int32Array.from({ length: prompt }, (_, k) => (seqs.indexOf(seq) * 7919 + k * 31) % model.spec.vocabSize);
  const prefillTimes: number[] = [];
  for (let p = 0; p <= prefills; p++) {
    for (const seq of seqs) seq.position = 0;
    const start = performance.now();
    await stepGreedily(engine, seqs, promptTokens);
    if (p > 0) prefillTimes.push(performance.now() - start);
  }
  const times: number[] = [];
  for (let s = 0; s < steps; s++) {
    const start = performance.now();
    await stepGreedily(engine, seqs, (seq) => Int32Array.of(seq.last));
    times.push(performance.now() - start);
  }
  // Outside ncu, the steps' median (after the first, which captures the graph) is a quick A/B figure for two
  // builds run one after another on one lease.
  const median = (values: number[]) => (values.length === 0 ? NaN : [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!);
  const prefilled = prefills === 0 ? "" : `, prefill median ${median(prefillTimes).toFixed(3)} ms`;
  console.log(`cuda-profile: batch ${batch}, ${prompt}-token prompts, ${adapterCount} adapters, ${steps} decode steps, median ${median(times.slice(1)).toFixed(3)} ms${prefilled}`);
} finally {
  engine.close();
}
