// `node dist/bench/loop-overhead.js` (in `npm run bench`, any machine): what the shard's engine loop
// (shard/engine/llm-engine.ts: schedule, build each sequence's SeqStep, apply the results, stream the tokens to
// their consumers) costs per decode step at batch 1 to 256, with an engine that computes nothing and answers at
// once. On a GPU that time sits between two steps unless it overlaps one (issue 15 item 2), so it is reported
// beside the H200's measured step times (docs/performance.md) as the share of the step it would add.
import { performance } from "node:perf_hooks";
import type { SeqResult, SeqStep } from "../native/addon.js";
import type { AdapterResidency } from "../shard/engine/adapter-residency.js";
import { LlmEngine, type TokenEvent } from "../shard/engine/llm-engine.js";

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
  async step(steps: SeqStep[]): Promise<SeqResult[]> {
    // A decode entry runs one token: its own, or the one the step before draws (previousResult).
    if (steps.every((s) => s.tokens.length + (s.previousResult === undefined ? 0 : 1) === 1)) this.decodeStepAt.push(performance.now());
    return steps.map((s) => ({ token: s.sample ? 7 : -1, logprob: -0.5, topIds: new Int32Array(), topLogprobs: new Float32Array(), targetLogprobs: new Float32Array(), logits: new Float32Array() }));
  }
}

async function drain(events: AsyncIterable<TokenEvent>): Promise<void> {
  for await (const _ of events);
}

async function perStepMs(batch: number): Promise<number> {
  const engine = new InstantEngine();
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

console.log("| batch | engine loop per decode step (ms) | share of the H200's step at 512-token contexts |\n| --- | --- | --- |");
for (const batch of BATCHES) {
  await perStepMs(batch); // warm-up: the JIT
  // The median of 3 runs: one run moves by tens of per cent on a busy machine.
  const runs = [await perStepMs(batch), await perStepMs(batch), await perStepMs(batch)].sort((a, b) => a - b);
  const ms = runs[1]!;
  console.log(`| ${batch} | ${ms.toFixed(3)} | ${(ms / H200_STEP_MS[batch]!).toFixed(3)} |`);
}
