// The prefix cache on the real native engine, through the shard's engine loop: a prompt that finds its blocks
// cached gives the logits it gives computed whole, for the base and every adapter; the same prompt on two adapters
// never shares a block; an adapter unloaded and loaded again starts cold.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createEngine, type NativeEngine, type SeqResult, type SeqStep } from "../native/addon.js";
import type { AdapterRegistry } from "../shard/adapters/registry.js";
import { AdapterRoots } from "../shard/adapters/roots.js";
import { LlmEngine, type TokenEvent } from "../shard/engine/llm-engine.js";
import type { SequenceRequest } from "../shard/engine/sequence.js";
import { loadModelFiles, type ModelFiles } from "../shard/model/model-files.js";
import { expectAdapterChangesLogits } from "./helpers/adapter-effect.js";
import { openRegistry } from "./helpers/adapter-registry.js";
import { expectRowClose } from "./helpers/engine-harness.js";
import { fixtureSets, type FixtureSet } from "./helpers/fixture-sets.js";
import { greedyRequest } from "./helpers/greedy-reference.js";
import { readRefLogits, type RefLogits } from "./helpers/refs.js";

const BLOCK_SIZE = 4;
/**
 * Cached and computed-whole logits agree to float32 rounding, not bit for bit: the CPU matrix products sum in an
 * order that depends on how many rows a step has, and a cached prompt's remaining chunk has fewer.
 */
const SAME_LOGITS = 1e-5;
/** The first test runs every variant and prompt three times over, on two cores that other work shares. */
const TEST_TIMEOUT_MS = 60_000;
const KV_BLOCKS = 512;

/** One sequence's part of a step as the engine saw it, with the logits of its positions. */
interface Seen {
  step: SeqStep;
  result: SeqResult;
}

/** A run of one request: what the engine saw of it, step by step, and the tokens it drew. */
interface Run {
  seen: Seen[];
  tokens: number[];
}

describe.each(fixtureSets())("prefix cache on $name", (set: FixtureSet) => {
  let model: ModelFiles;
  let refs: RefLogits;
  const natives: NativeEngine[] = [];
  const adapterIds = Object.keys(set.refs.adapters);
  const variants = ["base", ...adapterIds];
  // A prompt of one block or less has nothing to reuse: its last token's block is always computed.
  const prompts = set.refs.prompts.flatMap((prompt, index) => (prompt.ids.length > BLOCK_SIZE ? [index] : []));

  beforeAll(() => {
    model = loadModelFiles(set.modelDir);
    refs = readRefLogits(set.root);
  });
  afterAll(() => {
    for (const native of natives) native.close();
  });

  /** An engine loop whose steps ask for the logits of every position and record them with the step. */
  async function start(prefixCaching: boolean) {
    const { spec, weights } = model;
    const native = createEngine({ device: "cpu", rank: 0, world: 1, spec, weights, numKvBlocks: KV_BLOCKS, blockSize: BLOCK_SIZE, maxLoras: adapterIds.length, maxLoraRank: 64, threads: 2 });
    natives.push(native);
    // Found by id in the fixture's adapter directory, so that an unloaded adapter can be loaded again.
    const registry = await openRegistry(native, model.spec, [], { maxLoras: adapterIds.length, roots: new AdapterRoots([set.adaptersDir]) });
    const steps: Seen[][] = [];
    const step = async (seqs: SeqStep[]): Promise<SeqResult[]> => {
      const asked = seqs.map((s) => ({ ...s, returnLogits: true }));
      // Recorded in the order started: the loop has two steps in flight, whose promises may settle in either order.
      const seen: Seen[] = [];
      steps.push(seen);
      const results = await native.step(asked);
      seen.push(...asked.map((s, i) => ({ step: s, result: results[i]! })));
      return results;
    };
    const llm = new LlmEngine({ step, resumeFromIdle: () => native.resumeFromIdle() }, { numKvBlocks: KV_BLOCKS, blockSize: BLOCK_SIZE, maxBatchPrefillTokens: 4096, maxTotalTokens: 256, eosTokenIds: new Set(), adapters: registry, prefixCaching });
    return { llm, registry, steps };
  }

  /** Runs requests side by side and returns, per request, the engine's view of it (its steps, by prompt identity). */
  async function run(engine: Awaited<ReturnType<typeof start>>, requests: SequenceRequest[]): Promise<Run[]> {
    const from = engine.steps.length;
    const events = await Promise.all(
      requests.map(async (request) => {
        if (request.adapterId !== "") await engine.registry.prepare(request.adapterId);
        const out: TokenEvent[] = [];
        for await (const event of engine.llm.submit(request)) out.push(event);
        return out;
      }),
    );
    const steps = engine.steps.slice(from);
    return requests.map((request, i) => ({
      // A sequence's steps are the ones whose adapter slot and tokens belong to it; each request here differs in one of them.
      seen: steps.flatMap((step) => step.filter((s) => belongsTo(engine.registry, s.step, request))),
      tokens: events[i]!.map((e) => e.token.id),
    }));
  }

  function belongsTo(registry: AdapterRegistry, step: SeqStep, request: SequenceRequest): boolean {
    if (step.adapterSlot !== registry.slotOf(request.adapterId)) return false;
    const prompt = request.promptIds;
    // A prompt chunk is a slice of the prompt at its position; a decode step's token follows the prompt.
    if (step.startPos >= prompt.length) return true;
    return step.tokens.every((id, i) => step.startPos + i >= prompt.length || prompt[step.startPos + i] === id);
  }

  /** The logits of each drawn token's position, in order: what the tokens and their logprobs come from. */
  function drawnLogits(run: Run): Float32Array[] {
    const vocab = model.spec.vocabSize;
    return run.seen.filter((s) => s.step.sample).map((s) => s.result.logits.slice((s.step.tokens.length - 1) * vocab));
  }

  function expectSameLogits(ours: Run, expected: Run, what: string): void {
    const want = drawnLogits(expected);
    const got = drawnLogits(ours);
    expect(got, what).toHaveLength(want.length);
    got.forEach((row, step) => expectRowClose(row, want[step]!, SAME_LOGITS, `${what} step ${step}`));
  }

  /** Where a prompt found cached starts: after every full block but the one of its last token. */
  const cachedStart = (promptIndex: number): number => Math.floor((set.refs.prompts[promptIndex]!.ids.length - 1) / BLOCK_SIZE) * BLOCK_SIZE;

  it("gives the same logits with the prompt's blocks found cached as computed whole, for the base and every adapter", async () => {
    const cold = await start(false);
    const warm = await start(true);
    for (const variant of variants) {
      for (const prompt of prompts) {
        // The comparison below holds logits to SAME_LOGITS: the adapter must move them further than that.
        expectAdapterChangesLogits(refs, variant, prompt, SAME_LOGITS);
        const [uncached] = await run(cold, [greedyRequest(set, variant, prompt)]);
        // The reference's greedy run (no EOS stops this loop): the adapter really is applied.
        expect(uncached!.tokens).toEqual(set.refs.variants[variant]!.find((v) => v.prompt === prompt)!.greedy_ids);
        await run(warm, [greedyRequest(set, variant, prompt)]);
        const [cached] = await run(warm, [greedyRequest(set, variant, prompt)]);
        const where = `${variant}/${prompt}`;
        expect(uncached!.seen[0]!.step.startPos, where).toBe(0);
        expect(cached!.seen[0]!.step.startPos, where).toBe(cachedStart(prompt));
        expect(cached!.tokens, where).toEqual(uncached!.tokens);
        expectSameLogits(cached!, uncached!, where);
      }
    }
    expect(cold.llm.prefixCache()).toEqual({ queriedTokens: 0, hitTokens: 0, cachedBlocks: 0 });
    const found = variants.length * prompts.reduce((sum, prompt) => sum + cachedStart(prompt), 0);
    expect(warm.llm.prefixCache().hitTokens).toBeGreaterThanOrEqual(found);
    expect(warm.llm.load().freeKvBlocks).toBe(KV_BLOCKS);
  }, TEST_TIMEOUT_MS);

  it("computes the whole prompt of a request that asks for its prompt logprobs, even when it is cached", async () => {
    const warm = await start(true);
    const prompt = prompts[0]!;
    await run(warm, [greedyRequest(set, "base", prompt)]);
    let logprobs: Float32Array | null = null;
    for await (const event of warm.llm.submit(greedyRequest(set, "base", prompt, { promptLogprobs: true }))) logprobs = event.finish?.promptLogprobs ?? logprobs;
    expect(warm.steps.at(-set.refs.steps)![0]!.step.startPos).toBe(0);
    expect(logprobs!.slice(1).every((logprob) => Number.isFinite(logprob))).toBe(true);
  }, TEST_TIMEOUT_MS);

  it("never shares a block between adapters given the same prompt, alone or in one batch", async () => {
    const warm = await start(true);
    const prompt = prompts[0]!;
    // One after the other: each variant finds nothing of the others'.
    const first: Run[] = [];
    for (const variant of variants) first.push(...(await run(warm, [greedyRequest(set, variant, prompt)])));
    for (const [i, r] of first.entries()) expect(r.seen[0]!.step.startPos, variants[i]).toBe(0);
    // Together: each finds its own blocks, and no block is in two variants' tables.
    const together = await run(warm, variants.map((variant) => greedyRequest(set, variant, prompt)));
    const owner = new Map<number, string>();
    together.forEach((r, i) => {
      const variant = variants[i]!;
      const table = r.seen[0]!.step.blockTable;
      expect(r.seen[0]!.step.startPos, variant).toBe(cachedStart(prompt));
      expect(Array.from(table.slice(0, cachedStart(prompt) / BLOCK_SIZE)), variant).toEqual(Array.from(first[i]!.seen[0]!.step.blockTable.slice(0, cachedStart(prompt) / BLOCK_SIZE)));
      for (const id of table) {
        expect(owner.get(id) ?? variant, `block ${id}`).toBe(variant);
        owner.set(id, variant);
      }
      expect(r.tokens, variant).toEqual(first[i]!.tokens);
      expectSameLogits(r, first[i]!, variant);
    });
  }, TEST_TIMEOUT_MS);

  it.skipIf(adapterIds.length === 0)("starts an adapter cold once it was unloaded and loaded again", async () => {
    const warm = await start(true);
    const [adapter] = adapterIds as [string];
    const prompt = prompts[0]!;
    const [before] = await run(warm, [greedyRequest(set, adapter, prompt)]);
    const [again] = await run(warm, [greedyRequest(set, adapter, prompt)]);
    expect(again!.seen[0]!.step.startPos).toBe(cachedStart(prompt));
    const version = warm.registry.versionOf(adapter);
    await warm.registry.unload(adapter);
    await warm.registry.load(adapter, "");
    expect(warm.registry.versionOf(adapter)).not.toBe(version);
    const [reloaded] = await run(warm, [greedyRequest(set, adapter, prompt)]);
    expect(reloaded!.seen[0]!.step.startPos).toBe(0);
    expect(reloaded!.tokens).toEqual(before!.tokens);
    // Cached again, under the new version.
    const [rewarmed] = await run(warm, [greedyRequest(set, adapter, prompt)]);
    expect(rewarmed!.seen[0]!.step.startPos).toBe(cachedStart(prompt));
    expectSameLogits(rewarmed!, before!, adapter);
  }, TEST_TIMEOUT_MS);
});
