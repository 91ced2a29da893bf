// `npm run bench`: what the prefix cache saves. Requests that share a 2000-token system prompt, each with its own
// question, go one at a time through the shard's engine loop (scheduler, block manager, native engine) on a
// generated model; the time to first token of a request that finds the system prompt cached is set against one
// that computes it (the first request, the same requests with --disable-prefix-caching, and the same prompt on
// an adapter, which must never use the base model's blocks).
import { mkdtempSync, rmSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { createEngine, type NativeEngine } from "../native/addon.js";
import type { AdapterResidency } from "../shard/engine/adapter-residency.js";
import { LlmEngine } from "../shard/engine/llm-engine.js";
import type { SequenceRequest } from "../shard/engine/sequence.js";
import { loadAdapterFiles } from "../shard/model/adapter.js";
import { loadModelFiles } from "../shard/model/model-files.js";
import { CPU_BENCH_SHAPE, writeSyntheticAdapter, writeSyntheticModel } from "./synthetic-model.js";

const SHAPE = { ...CPU_BENCH_SHAPE, maxPositionEmbeddings: 4096 };
const SYSTEM_TOKENS = 2000;
const QUESTION_TOKENS = 32;
const REQUESTS = 3;
const BLOCK_SIZE = 16;
const ADAPTER = "tuned";

/** The base model and one adapter in slot 0, never evicted: the registry's part without its tiers. */
const RESIDENCY: AdapterResidency = {
  acquire: () => undefined,
  release: () => undefined,
  versionOf: () => 1,
  slotOf: (adapterId) => (adapterId === "" ? -1 : 0),
  listen: () => undefined,
};

function request(adapterId: string, question: number): SequenceRequest {
  const system = Array.from({ length: SYSTEM_TOKENS }, (_, i) => (i * 7 + 3) % SHAPE.vocabSize);
  const asked = Array.from({ length: QUESTION_TOKENS }, (_, i) => (question * 977 + i * 13 + 1) % SHAPE.vocabSize);
  return {
    promptIds: Int32Array.from([...system, ...asked]),
    adapterId,
    maxNewTokens: 1,
    sampling: { temperature: 0, topK: 0, topP: 1, seed: 0 },
    topN: 0,
    promptLogprobs: false,
  };
}

/** Seconds from submitting to the first (and only) token. */
async function timeToFirstToken(llm: LlmEngine, req: SequenceRequest): Promise<number> {
  const start = performance.now();
  const first = await llm.submit(req)[Symbol.asyncIterator]().next();
  if (first.done) throw new Error("the request ended without a token");
  return (performance.now() - start) / 1000;
}

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

function loop(engine: NativeEngine, numKvBlocks: number, prefixCaching: boolean): LlmEngine {
  return new LlmEngine(engine, {
    numKvBlocks,
    blockSize: BLOCK_SIZE,
    maxBatchPrefillTokens: 4096,
    maxTotalTokens: SHAPE.maxPositionEmbeddings,
    eosTokenIds: new Set(),
    adapters: RESIDENCY,
    prefixCaching,
  });
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "loraserve-bench-"));
  try {
    writeSyntheticModel(join(dir, "model"), SHAPE);
    writeSyntheticAdapter(join(dir, ADAPTER), SHAPE, { rank: 16, seed: 7 });
    const model = loadModelFiles(join(dir, "model"));
    const numKvBlocks = 4 * Math.ceil(SHAPE.maxPositionEmbeddings / BLOCK_SIZE);
    const open = async (): Promise<NativeEngine> => {
      const engine = createEngine({ device: "cpu", rank: 0, world: 1, spec: model.spec, weights: model.weights, numKvBlocks, blockSize: BLOCK_SIZE, maxLoras: 1, maxLoraRank: 16, threads: 0 });
      await engine.loadAdapter(0, loadAdapterFiles(join(dir, ADAPTER), model.spec).weights);
      return engine;
    };
    const uncachedEngine = await open();
    const uncached = loop(uncachedEngine, numKvBlocks, false);
    await timeToFirstToken(uncached, request("", 0)); // warm-up: page in the weights, spin up the thread pools
    const off: number[] = [];
    for (let q = 1; q <= REQUESTS; q++) off.push(await timeToFirstToken(uncached, request("", q)));
    uncachedEngine.close();

    const cachedEngine = await open();
    const cached = loop(cachedEngine, numKvBlocks, true);
    await timeToFirstToken(cached, request(ADAPTER, 0)); // the same warm-up, on the adapter: it leaves the base cold
    const first = await timeToFirstToken(cached, request("", 1));
    const warm: number[] = [];
    for (let q = 2; q <= REQUESTS + 1; q++) warm.push(await timeToFirstToken(cached, request("", q)));
    const { queriedTokens, hitTokens } = cached.prefixCache();
    cachedEngine.close();

    const ms = (seconds: number): string => `${(seconds * 1000).toFixed(1)} ms`;
    const rows: [string, string][] = [
      ["machine", `${availableParallelism()} cores`],
      ["model", `${SHAPE.numLayers} layers, hidden ${SHAPE.hiddenSize}, vocab ${SHAPE.vocabSize}; prompt ${SYSTEM_TOKENS} shared + ${QUESTION_TOKENS} own tokens`],
      ["TTFT, --disable-prefix-caching (median)", ms(median(off))],
      ["TTFT, first request on the base (the adapter's blocks are not its own)", ms(first)],
      ["TTFT, system prompt cached (median)", `${ms(median(warm))}  (${(median(off) / median(warm)).toFixed(1)}x faster)`],
      ["prompt tokens found cached", `${hitTokens} of ${queriedTokens}`],
    ];
    const width = Math.max(...rows.map(([k]) => k.length));
    for (const [k, v] of rows) console.log(`${k.padEnd(width)}  ${v}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
