// `node dist/bench/loop-overhead.js` (in `npm run bench`, any machine): what the shard's engine loop
// (shard/engine/llm-engine.ts: schedule, build each sequence's SeqStep, apply the results, stream the tokens to
// their consumers) costs per decode step at batch 1 to 256, with an engine that computes nothing and answers at
// once. On a GPU that time sits between two steps unless it overlaps one (issue 15 item 2), so it is reported
// beside the H200's measured step times (docs/performance.md) as the share of the step it would add. Then the
// step's N-API crossing on the JS thread (native/src/js_values.cc): the last decode step the loop built, given
// to a CPU engine that converts it whole and refuses it (its entries name a previous step the engine never ran).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { createEngine, type SeqResult, type SeqStep } from "../native/addon.js";
import type { AdapterResidency } from "../shard/engine/adapter-residency.js";
import { LlmEngine, type TokenEvent } from "../shard/engine/llm-engine.js";
import { loadModelFiles } from "../shard/model/model-files.js";
import { CPU_BENCH_SHAPE, writeSyntheticModel } from "./synthetic-model.js";

const BLOCK_SIZE = 16;
const PROMPT = 512;
const DECODE_STEPS = 200;
const BATCHES = [1, 8, 32, 64, 128, 256];
/** The H200's decode step at 512-token contexts, ms (docs/performance.md, 389e4e8), for the share column. */
const H200_STEP_MS: Record<number, number> = { 1: 4.67, 8: 5.89, 32: 7.58, 64: 9.69, 128: 13.24, 256: 22.68 };

const BASE_ONLY: AdapterResidency = { acquire: () => undefined, release: () => undefined, versionOf: () => 0, slotOf: () => -1, listen: () => undefined };

/** Answers every step at once with token 7 for each sampled row, counting the decode steps (one row each). */
class InstantEngine {
  decodeStepAt: number[] = [];
  lastDecodeStep: SeqStep[] = [];
  async step(steps: SeqStep[]): Promise<SeqResult[]> {
    // A decode entry runs one token: its own, or the one the step before draws (previousResult).
    if (steps.every((s) => s.tokens.length + (s.previousResult === undefined ? 0 : 1) === 1)) {
      this.decodeStepAt.push(performance.now());
      this.lastDecodeStep = steps;
    }
    return steps.map((s) => ({ token: s.sample ? 7 : -1, logprob: -0.5, topIds: new Int32Array(), topLogprobs: new Float32Array(), targetLogprobs: new Float32Array(), logits: new Float32Array() }));
  }

  // No clock to keep: the loop's cost is measured here, between the decode steps.
  resumeFromIdle(): void {}
}

async function drain(events: AsyncIterable<TokenEvent>): Promise<void> {
  for await (const _ of events);
}

async function perStepMs(batch: number, engine = new InstantEngine()): Promise<number> {
  const blocksPerSeq = Math.ceil((PROMPT + DECODE_STEPS + 1) / BLOCK_SIZE);
  const llm = new LlmEngine(engine, {
    numKvBlocks: batch * blocksPerSeq,
    blockSize: BLOCK_SIZE,
    maxBatchPrefillTokens: batch * PROMPT,
    maxTotalTokens: PROMPT + DECODE_STEPS + 1,
    eosTokenIds: new Set(),
    adapters: BASE_ONLY,
  });
  const request = (i: number) => ({
    promptIds: Int32Array.from({ length: PROMPT }, (_, k) => (i * 7919 + k) % 32000),
    adapterId: "",
    maxNewTokens: DECODE_STEPS,
    sampling: { temperature: 0, topK: 0, topP: 1, seed: 0 },
    topN: 0,
    promptLogprobs: false,
  });
  await Promise.all(Array.from({ length: batch }, (_, i) => drain(llm.submit(request(i)))));
  await llm.close();
  // Between the first and the last decode step: the loop's own time per step, the consumers' included.
  const at = engine.decodeStepAt;
  return (at.at(-1)! - at[0]!) / (at.length - 1);
}

/** Milliseconds per N-API crossing of `steps` (converted whole, then refused), the median of 3 runs of 200. */
async function crossingMs(native: ReturnType<typeof createEngine>, steps: SeqStep[]): Promise<number> {
  const runs: number[] = [];
  for (let run = 0; run < 4; run++) {
    const startedAt = performance.now();
    for (let i = 0; i < 200; i++) await native.step(steps).then(() => Promise.reject(new Error("the step was not refused")), () => undefined);
    runs.push((performance.now() - startedAt) / 200);
  }
  return runs.slice(1).sort((a, b) => a - b)[1]!; // the first run warms up
}

const dir = mkdtempSync(join(tmpdir(), "loraserve-loop-overhead-"));
try {
  writeSyntheticModel(dir, CPU_BENCH_SHAPE);
  const model = loadModelFiles(dir);
  const native = createEngine({ device: "cpu", rank: 0, world: 1, spec: model.spec, weights: model.weights, numKvBlocks: 64, blockSize: BLOCK_SIZE, maxLoras: 0, maxLoraRank: 0, threads: 1 });
  console.log("| batch | engine loop per decode step (ms) | share of the H200's step at 512-token contexts | the step's N-API crossing (ms) | its share |\n| --- | --- | --- | --- | --- |");
  for (const batch of BATCHES) {
    await perStepMs(batch); // warm-up: the JIT
    // The median of 3 runs: one run moves by tens of per cent on a busy machine.
    const engine = new InstantEngine();
    const runs = [await perStepMs(batch, engine), await perStepMs(batch), await perStepMs(batch)].sort((a, b) => a - b);
    const ms = runs[1]!;
    const crossing = await crossingMs(native, engine.lastDecodeStep);
    const share = (value: number): string => (value / H200_STEP_MS[batch]!).toFixed(3);
    console.log(`| ${batch} | ${ms.toFixed(3)} | ${share(ms)} | ${crossing.toFixed(3)} | ${share(crossing)} |`);
  }
  native.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
