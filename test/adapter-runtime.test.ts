// Adapters at run time on the real engine: 200 generated adapters found in one root on first use, served
// through 8 engine slots and 32 host-memory places. Every request succeeds with the tokens its own adapter
// gives alone, no more than 8 adapters are ever in slots, an adapter in use is never evicted, and loading a
// cold adapter does not pause the sequences already decoding.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeSyntheticAdapter, writeSyntheticModel, type SyntheticModelShape } from "../bench/synthetic-model.js";
import { createEngine, type AdapterWeights, type NativeEngine } from "../native/addon.js";
import type { AdapterRegistry } from "../shard/adapters/registry.js";
import { AdapterRoots } from "../shard/adapters/roots.js";
import { LlmEngine, type TokenEvent } from "../shard/engine/llm-engine.js";
import type { SequenceRequest } from "../shard/engine/sequence.js";
import { loadAdapterFiles } from "../shard/model/adapter.js";
import { loadModelFiles, type ModelFiles } from "../shard/model/model-files.js";
import { openRegistry } from "./helpers/adapter-registry.js";

const SHAPE: SyntheticModelShape = {
  hiddenSize: 32,
  intermediateSize: 64,
  numLayers: 2,
  numHeads: 4,
  numKvHeads: 2,
  headDim: 8,
  vocabSize: 96,
  maxPositionEmbeddings: 2048,
};
const ADAPTERS = 200;
const MAX_LORAS = 8;
const MAX_CPU_LORAS = 32;
const NEW_TOKENS = 5;
const PROMPT = Int32Array.from([1, 17, 42, 5, 63, 8]);
/** The cold adapter of the stall check: large enough that its load spans hundreds of decode steps. */
const COLD_RANK = 16384;
const LOGPROB_TOLERANCE = 1e-4;
const KV_BLOCKS = 1024;
const BLOCK_SIZE = 8;

const idOf = (i: number): string => `tenant-${String(i).padStart(3, "0")}`;

function greedy(adapterId: string, maxNewTokens = NEW_TOKENS): SequenceRequest {
  return { promptIds: PROMPT, adapterId, maxNewTokens, sampling: { temperature: 0, topK: 0, topP: 1, seed: 0 }, topN: 0, promptLogprobs: false };
}

async function tokens(events: AsyncIterable<TokenEvent>): Promise<TokenEvent[]> {
  const out: TokenEvent[] = [];
  for await (const event of events) out.push(event);
  return out;
}

/** The adapter a load names: its files' directory is the id's directory in the root. */
function adapterOf(weights: AdapterWeights): string {
  const file = weights.pairs[0]!.a.file;
  return file.split("/").at(-2)!;
}

interface Watched {
  engine: NativeEngine;
  /** Slot → adapter id, as the engine holds them now. */
  slots: Map<number, string>;
  maxResident: number;
  /** Evictions of an adapter that sequences still used (must stay empty). */
  evictedInUse: string[];
  loads: { id: string; start: number; end: number }[];
  stepEnds: number[];
}

/** The native engine, watched: what each slot holds, and when loads and steps happen. */
function watch(native: NativeEngine, registry: () => AdapterRegistry): Watched {
  const watched: Watched = { engine: native, slots: new Map(), maxResident: 0, evictedInUse: [], loads: [], stepEnds: [] };
  watched.engine = {
    info: () => native.info(),
    step: async (seqs) => {
      const results = await native.step(seqs);
      watched.stepEnds.push(performance.now());
      return results;
    },
    resumeFromIdle: () => native.resumeFromIdle(),
    loadAdapter: async (slot, weights) => {
      const load = { id: adapterOf(weights), start: performance.now(), end: Number.NaN };
      await native.loadAdapter(slot, weights);
      load.end = performance.now();
      watched.loads.push(load);
      watched.slots.set(slot, load.id);
      watched.maxResident = Math.max(watched.maxResident, watched.slots.size);
    },
    unloadAdapter: (slot) => {
      const id = watched.slots.get(slot)!;
      const active = registry()
        .list()
        .find((a) => a.id === id)!.activeSequences;
      if (active > 0) watched.evictedInUse.push(`${id} (${active} sequences)`);
      native.unloadAdapter(slot);
      watched.slots.delete(slot);
    },
    follow: () => native.follow(),
    watchGroup: () => native.watchGroup(),
    close: () => native.close(),
  };
  return watched;
}

describe("adapters loaded at run time from a root", () => {
  let dir: string;
  let root: string;
  let model: ModelFiles;
  const natives: NativeEngine[] = [];

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "loraserve-runtime-"));
    root = join(dir, "root");
    writeSyntheticModel(join(dir, "model"), SHAPE, 7);
    for (let i = 0; i < ADAPTERS; i++) writeSyntheticAdapter(join(root, idOf(i)), SHAPE, { rank: 4 + (i % 3) * 4, seed: 1000 + i });
    writeSyntheticAdapter(join(root, "cold"), SHAPE, { rank: COLD_RANK, seed: 99 });
    model = loadModelFiles(join(dir, "model"));
  });
  afterAll(() => {
    for (const native of natives) native.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function nativeEngine(maxLoras: number, maxLoraRank: number): NativeEngine {
    const native = createEngine({ device: "cpu", rank: 0, world: 1, spec: model.spec, weights: model.weights, numKvBlocks: KV_BLOCKS, blockSize: BLOCK_SIZE, maxLoras, maxLoraRank, threads: 1 });
    natives.push(native);
    return native;
  }

  async function shard(maxLoraRank = 16) {
    let registry: AdapterRegistry | null = null;
    const watched = watch(nativeEngine(MAX_LORAS, maxLoraRank), () => registry!);
    registry = await openRegistry(watched.engine, model.spec, [], { maxLoras: MAX_LORAS, maxCpuLoras: MAX_CPU_LORAS, maxLoraRank, roots: new AdapterRoots([root]) });
    const llm = new LlmEngine(watched.engine, {
      numKvBlocks: KV_BLOCKS,
      blockSize: BLOCK_SIZE,
      maxBatchPrefillTokens: 256,
      maxTotalTokens: SHAPE.maxPositionEmbeddings,
      eosTokenIds: new Set(),
      adapters: registry,
    });
    /** As the shard's Generate does: find and validate the adapter, then queue the sequence. */
    const generate = async (request: SequenceRequest, signal?: AbortSignal): Promise<AsyncIterable<TokenEvent>> => {
      await registry!.prepare(request.adapterId);
      return llm.submit(request, signal);
    };
    return { registry, llm, watched, generate };
  }

  /** Each adapter's tokens when it runs alone on an engine that mapped its files from disk. */
  async function alone(id: string): Promise<TokenEvent[]> {
    const native = nativeEngine(1, 16);
    await native.loadAdapter(0, loadAdapterFiles(join(root, id), model.spec).weights);
    const llm = new LlmEngine(native, {
      numKvBlocks: 64,
      blockSize: BLOCK_SIZE,
      maxBatchPrefillTokens: 256,
      maxTotalTokens: 256,
      eosTokenIds: new Set(),
      adapters: { acquire: () => undefined, release: () => undefined, versionOf: () => 0, slotOf: (adapterId) => (adapterId === "" ? -1 : 0), listen: () => undefined },
    });
    return tokens(llm.submit(greedy(id)));
  }

  it("serves requests across 200 adapters through 8 slots, never evicting one in use", async () => {
    const { registry, llm, watched, generate } = await shard();
    let maxDevice = 0;
    let maxHost = 0;
    let maxWaiting = 0;
    const sample = (): void => {
      const tiers = registry.list().map((a) => a.tier);
      maxDevice = Math.max(maxDevice, tiers.filter((t) => t === "device").length);
      maxHost = Math.max(maxHost, tiers.filter((t) => t === "host").length);
      maxWaiting = Math.max(maxWaiting, llm.load().waiting);
    };
    const sampler = setInterval(sample, 1);
    // Every request at once: most find every slot taken by adapters in use and wait in the queue.
    const outcomes = await Promise.all(
      Array.from({ length: ADAPTERS }, async (_, i) => {
        const events = await generate(greedy(idOf(i)));
        sample();
        return tokens(events);
      }),
    );
    clearInterval(sampler);
    sample();

    for (const events of outcomes) {
      expect(events).toHaveLength(NEW_TOKENS);
      expect(events.at(-1)!.finish?.reason).toBe("length");
    }
    expect(watched.maxResident).toBeLessThanOrEqual(MAX_LORAS);
    expect(maxDevice).toBeLessThanOrEqual(MAX_LORAS);
    expect(maxHost).toBeLessThanOrEqual(MAX_CPU_LORAS);
    expect(maxWaiting).toBeGreaterThan(MAX_LORAS);
    expect(watched.evictedInUse).toEqual([]);
    // Every adapter went through a slot (200 loads into 8 slots: the LRU evicted what was done with).
    expect(new Set(watched.loads.map((l) => l.id)).size).toBe(ADAPTERS);
    expect(registry.list().every((a) => a.activeSequences === 0)).toBe(true);

    // Each request got its own adapter's answer, as if that adapter ran alone (a mixed-up slot would not).
    const signatures = new Set(outcomes.map((events) => events.map((e) => e.token.logprob.toFixed(3)).join(",")));
    expect(signatures.size, "adapters whose logprobs differ by more than the tolerance").toBeGreaterThan(0.9 * ADAPTERS);
    for (let i = 0; i < ADAPTERS; i += 4) {
      const reference = await alone(idOf(i));
      expect(outcomes[i]!.map((e) => e.token.id), idOf(i)).toEqual(reference.map((e) => e.token.id));
      outcomes[i]!.forEach((e, step) => expect(Math.abs(e.token.logprob - reference[step]!.token.logprob)).toBeLessThan(LOGPROB_TOLERANCE));
    }
  });

  it("keeps decoding while a cold adapter's slot load is held back, and runs the cold request once it is in", async () => {
    const { registry, watched, generate } = await shard();
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    const loadAdapter = watched.engine.loadAdapter;
    watched.engine.loadAdapter = async (slot, weights) => {
      if (adapterOf(weights) === idOf(1)) await held;
      return loadAdapter(slot, weights);
    };
    const running = (await generate(greedy(idOf(0), 200)))[Symbol.asyncIterator]();
    expect((await running.next()).done).toBe(false);
    const cold = tokens(await generate(greedy(idOf(1))));
    let coldDone = false;
    void cold.then(() => (coldDone = true));
    // While the load is held, the running sequence keeps getting tokens and the cold one waits in the queue.
    for (let i = 0; i < 20; i++) expect((await running.next()).done).toBe(false);
    expect(coldDone).toBe(false);
    expect(registry.slotOf(idOf(1))).toBeNull();
    release();
    expect(await cold).toHaveLength(NEW_TOKENS);
    expect((await running.return!(undefined)).done).toBe(true);
  });

  it("does not pause running sequences while a large cold adapter loads in the background", async () => {
    const { watched, generate } = await shard(COLD_RANK);
    const stop = new AbortController();
    const longRun = 1500;
    const running = await Promise.all(Array.from({ length: 3 }, (_, i) => generate(greedy(idOf(10 + i), longRun), stop.signal)));
    const decoded = running.map(tokens);
    // Let them reach steady decoding first.
    while (watched.stepEnds.length < 20) await new Promise((resolve) => setTimeout(resolve, 1));
    const start = performance.now();
    const cold = await tokens(await generate(greedy("cold")));
    stop.abort();
    expect(cold).toHaveLength(NEW_TOKENS);
    // The running sequences were still decoding when the cold one was done: every step of the window was theirs to take.
    for (const events of await Promise.all(decoded)) expect(events.length).toBeLessThan(longRun);
    const load = watched.loads.find((l) => l.id === "cold")!;

    const before = watched.stepEnds.filter((t) => t < start);
    const gaps = before.slice(1).map((t, i) => t - before[i]!);
    const median = gaps.sort((a, b) => a - b)[Math.floor(gaps.length / 2)]!;
    // From the request (its host read and validation included) to the end of its slot load.
    const during = watched.stepEnds.filter((t) => t > start && t < load.end);
    const window = [start, ...during, load.end];
    const longestGap = Math.max(...window.slice(1).map((t, i) => t - window[i]!));
    // Had the loop waited for the load, decoding would have paused for the whole load: half of it is the bound.
    const bound = (load.end - load.start) / 2;
    const what = `${during.length} steps in the ${(load.end - start).toFixed(1)} ms from request to loaded slot (the load itself ${(load.end - load.start).toFixed(1)} ms), median step ${median.toFixed(2)} ms`;
    expect(during.length, what).toBeGreaterThan(2);
    expect(longestGap, `longest pause of decoding: ${what}`).toBeLessThan(bound);
  });
});
