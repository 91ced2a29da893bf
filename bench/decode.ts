// `npm run bench`: CPU decode throughput at batch 1 and batch 8 (mixed adapters) on a generated model of a
// few tens of MB, next to the bound that memory bandwidth sets: every decode step must read all weights once,
// so steps/s can be at most bandwidth / weight bytes. The bandwidth is measured in the same run.
import { mkdtempSync, rmSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { createEngine, type NativeEngine, type SeqStep } from "../native/addon.js";
import { loadAdapterFiles } from "../shard/model/adapter.js";
import { loadModelFiles } from "../shard/model/model-files.js";
import { CPU_BENCH_SHAPE, writeSyntheticAdapter, writeSyntheticModel } from "./synthetic-model.js";

const SHAPE = CPU_BENCH_SHAPE;
const PROMPT_TOKENS = 32;
const DECODE_STEPS = 64;
const BLOCK_SIZE = 16;
const ADAPTERS = 8;

/** Copy bandwidth of this machine (bytes read + bytes written per second), best of several passes. */
function measureBandwidth(): number {
  const bytes = 256 * 1024 * 1024;
  const src = new Float32Array(bytes / 4).fill(1);
  const dst = new Float32Array(bytes / 4);
  let best = Infinity;
  for (let i = 0; i < 6; i++) {
    const t0 = performance.now();
    dst.set(src);
    best = Math.min(best, performance.now() - t0);
  }
  return (2 * bytes) / (best / 1000);
}

interface RunResult {
  tokensPerSecond: number;
  stepsPerSecond: number;
}

/** Prefills `batch` sequences (sequence i uses adapter slot slots[i]), then times DECODE_STEPS decode steps. */
async function decodeRun(engine: NativeEngine, slots: number[]): Promise<RunResult> {
  const blocksPerSeq = Math.ceil((PROMPT_TOKENS + DECODE_STEPS + 1) / BLOCK_SIZE);
  const seqs = slots.map((slot, i) => ({
    slot,
    blockTable: Int32Array.from({ length: blocksPerSeq }, (_, b) => i * blocksPerSeq + b),
    last: 1 + i,
    pos: 0,
  }));
  const plan = (tokens: (s: (typeof seqs)[number]) => Int32Array): SeqStep[] =>
    seqs.map((s) => ({
      tokens: tokens(s),
      startPos: s.pos,
      blockTable: s.blockTable,
      adapterSlot: s.slot,
      sample: true,
      sampling: { temperature: 0, topK: 0, topP: 1, seed: 0, draw: s.pos },
      topN: 0,
      logprobTargets: null,
      returnLogits: false,
    }));
  const advance = (results: { token: number }[], by: number) =>
    results.forEach((r, i) => {
      seqs[i]!.last = r.token;
      seqs[i]!.pos += by;
    });
  advance(await engine.step(plan((s) => Int32Array.from({ length: PROMPT_TOKENS }, (_, k) => (s.last * 31 + k) % SHAPE.vocabSize))), PROMPT_TOKENS);
  const t0 = performance.now();
  for (let step = 0; step < DECODE_STEPS; step++) advance(await engine.step(plan((s) => Int32Array.of(s.last))), 1);
  const seconds = (performance.now() - t0) / 1000;
  return { stepsPerSecond: DECODE_STEPS / seconds, tokensPerSecond: (DECODE_STEPS * slots.length) / seconds };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "loraserve-bench-"));
  try {
    const fileBytes = writeSyntheticModel(join(dir, "model"), SHAPE);
    const model = loadModelFiles(join(dir, "model"));
    const engine = createEngine({
      device: "cpu",
      rank: 0,
      world: 1,
      spec: model.spec,
      weights: model.weights,
      numKvBlocks: 8 * Math.ceil((PROMPT_TOKENS + DECODE_STEPS + 1) / BLOCK_SIZE),
      blockSize: BLOCK_SIZE,
      maxLoras: ADAPTERS,
      maxLoraRank: 16,
      threads: 0,
    });
    for (let slot = 0; slot < ADAPTERS; slot++) {
      const adapterDir = join(dir, `adapter-${slot}`);
      writeSyntheticAdapter(adapterDir, SHAPE, { rank: slot % 2 === 0 ? 8 : 16, seed: 100 + slot });
      await engine.loadAdapter(slot, loadAdapterFiles(adapterDir, model.spec).weights);
    }
    const bandwidth = measureBandwidth();
    // A decode step reads every weight once, except the embedding table, of which it reads one row per token.
    const weightBytes = engine.info().weightBytes - SHAPE.vocabSize * SHAPE.hiddenSize * 4;
    const boundSteps = bandwidth / weightBytes;
    await decodeRun(engine, [-1]); // warm-up: page in the weights, spin up the thread pools
    const single = await decodeRun(engine, [-1]);
    const plain = await decodeRun(engine, Array.from({ length: 8 }, () => -1));
    const mixed = await decodeRun(engine, [-1, 0, 1, 2, 3, 4, 5, 6]);
    engine.close();
    const rows: [string, string][] = [
      ["machine", `${availableParallelism()} cores`],
      ["model", `${SHAPE.numLayers} layers, hidden ${SHAPE.hiddenSize}, vocab ${SHAPE.vocabSize}, ${(fileBytes / 2 ** 20).toFixed(1)} MiB bf16 on disk`],
      ["weights read per step", `${(weightBytes / 2 ** 20).toFixed(1)} MiB (float32 in the CPU engine, embedding table excluded)`],
      ["measured copy bandwidth", `${(bandwidth / 1e9).toFixed(2)} GB/s`],
      ["bound: steps/s", boundSteps.toFixed(1)],
      ["batch 1: tokens/s", `${single.tokensPerSecond.toFixed(1)}  (${(single.stepsPerSecond / boundSteps).toFixed(2)} of the bound)`],
      ["batch 8 (base only): tokens/s", `${plain.tokensPerSecond.toFixed(1)}  (steps at ${(plain.stepsPerSecond / boundSteps).toFixed(2)} of the bound)`],
      ["batch 8 (base + 7 adapters): tokens/s", `${mixed.tokensPerSecond.toFixed(1)}  (steps at ${(mixed.stepsPerSecond / boundSteps).toFixed(2)} of the bound)`],
    ];
    const width = Math.max(...rows.map(([k]) => k.length));
    for (const [k, v] of rows) console.log(`${k.padEnd(width)}  ${v}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
