// The engine loop on the real native engine: every variant's greedy tokens and logprobs against the
// transformers + peft reference, alone, in one continuous batch, with chunked prefill and with preemption.
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createEngine, type NativeEngine, type SeqStep } from "../native/addon.js";
import type { AdapterSource } from "../shard/adapters/registry.js";
import { LlmEngine, type LlmEngineOptions, type SequenceFinish, type TokenEvent } from "../shard/engine/llm-engine.js";
import type { SequenceRequest } from "../shard/engine/sequence.js";
import { loadModelFiles, type ModelFiles } from "../shard/model/model-files.js";
import { TextCodec } from "../shard/text/tokenizer.js";
import { expectAdapterChangesGreedy } from "./helpers/adapter-effect.js";
import { openRegistry } from "./helpers/adapter-registry.js";
import { logSoftmax } from "./helpers/engine-harness.js";
import { fixtureSets, type FixtureSet } from "./helpers/fixture-sets.js";
import { greedyRequest } from "./helpers/greedy-reference.js";
import { readRefLogits, rowOf, type LogitRows, type RefLogits } from "./helpers/refs.js";

const TOLERANCE = 1e-4;
const sets = fixtureSets();

function logitRow(logits: LogitRows, row: number): Float32Array {
  return rowOf(logits.data, logits.vocab, row);
}

/**
 * The native engine with every step's plan recorded, to see how the loop batched and chunked, and with how many
 * steps were in flight as each one started.
 */
function recording(engine: NativeEngine): { engine: NativeEngine; steps: SeqStep[][]; inFlightAtStart: number[] } {
  const steps: SeqStep[][] = [];
  const inFlightAtStart: number[] = [];
  let inFlight = 0;
  return {
    steps,
    inFlightAtStart,
    engine: {
      info: () => engine.info(),
      step: (seqs) => {
        steps.push(seqs);
        inFlightAtStart.push(inFlight++);
        return engine.step(seqs).finally(() => inFlight--);
      },
      loadAdapter: (slot, weights) => engine.loadAdapter(slot, weights),
      unloadAdapter: (slot) => engine.unloadAdapter(slot),
      resumeFromIdle: () => engine.resumeFromIdle(),
      follow: () => engine.follow(),
      watchGroup: () => engine.watchGroup(),
      close: () => engine.close(),
    },
  };
}

interface Outcome {
  events: TokenEvent[];
  finish: SequenceFinish | null;
}

async function collect(events: AsyncIterable<TokenEvent>): Promise<Outcome> {
  const out: TokenEvent[] = [];
  for await (const event of events) out.push(event);
  return { events: out, finish: out.at(-1)?.finish ?? null };
}


describe.each(sets)("shard engine on $name", (set: FixtureSet) => {
  let model: ModelFiles;
  let codec: TextCodec;
  let refs: RefLogits;
  const engines: NativeEngine[] = [];
  const variants = ["base", ...Object.keys(set.refs.adapters)];
  const sources: AdapterSource[] = Object.keys(set.refs.adapters).map((id) => ({ id, dir: join(set.adaptersDir, id) }));

  beforeAll(() => {
    model = loadModelFiles(set.modelDir);
    codec = TextCodec.load(set.modelDir);
    refs = readRefLogits(set.root);
  });
  afterAll(() => {
    for (const engine of engines) engine.close();
  });

  /** A fresh engine and loop: the cache size and prefill budget are what the tests vary. */
  async function start(options: Partial<LlmEngineOptions> = {}) {
    const numKvBlocks = options.numKvBlocks ?? 64;
    const blockSize = options.blockSize ?? 16;
    const native = createEngine({
      device: "cpu",
      rank: 0,
      world: 1,
      spec: model.spec,
      weights: model.weights,
      numKvBlocks,
      blockSize,
      maxLoras: sources.length,
      maxLoraRank: 64,
      threads: 2,
    });
    engines.push(native);
    const adapters = await openRegistry(native, model.spec, sources, { maxLoras: sources.length });
    const { engine, steps, inFlightAtStart } = recording(native);
    const llm = new LlmEngine(engine, {
      numKvBlocks,
      blockSize,
      maxBatchPrefillTokens: options.maxBatchPrefillTokens ?? 4096,
      maxTotalTokens: options.maxTotalTokens ?? Math.min(model.spec.maxPositionEmbeddings, 1024),
      eosTokenIds: codec.eosTokenIds,
      adapters,
    });
    return { llm, steps, inFlightAtStart };
  }

  function greedy(variant: string, promptIndex: number, extra: Partial<SequenceRequest> = {}): SequenceRequest {
    return greedyRequest(set, variant, promptIndex, extra);
  }

  const cases = variants.flatMap((variant) => set.refs.variants[variant]!.map(({ prompt }) => ({ variant, prompt })));

  /** Checks a generation against the reference: ids up to the first EOS, and each token's logprob. */
  function expectMatchesReference(variant: string, promptIndex: number, outcome: Outcome): void {
    const ref = set.refs.variants[variant]!.find((r) => r.prompt === promptIndex)!;
    const eosAt = ref.greedy_ids.findIndex((id) => codec.eosTokenIds.has(id));
    const expected = eosAt < 0 ? ref.greedy_ids : ref.greedy_ids.slice(0, eosAt + 1);
    const where = `${variant}/${promptIndex}`;
    expectAdapterChangesGreedy(set, variant, promptIndex);
    expect(outcome.events.map((e) => e.token.id), where).toEqual(expected);
    expect(outcome.finish?.reason, where).toBe(eosAt < 0 ? "length" : "eos_token");
    const stepLogits = refs.steps(variant, promptIndex);
    outcome.events.forEach(({ token }, step) => {
      const want = logSoftmax(logitRow(stepLogits, step))[token.id]!;
      expect(Math.abs(token.logprob - want), `${where} step ${step}`).toBeLessThan(TOLERANCE);
    });
  }

  it("generates every variant's greedy tokens with the reference logprobs, alone", async () => {
    const { llm, steps } = await start();
    for (const { variant, prompt } of cases) expectMatchesReference(variant, prompt, await collect(llm.submit(greedy(variant, prompt))));
    expect(Math.max(...steps.map((s) => s.length))).toBe(1);
    expect(llm.load().freeKvBlocks).toBe(64);
  });

  it("reports the prompt's logprobs and the top alternatives of each token", async () => {
    const { llm } = await start();
    for (const { variant, prompt } of cases) {
      const outcome = await collect(llm.submit(greedy(variant, prompt, { promptLogprobs: true, topN: 3 })));
      const ids = set.refs.prompts[prompt]!.ids;
      const promptLogits = refs.prompt(variant, prompt);
      const got = outcome.finish!.promptLogprobs!;
      expect(got).toHaveLength(ids.length);
      expect(got[0]).toBeNaN();
      for (let i = 1; i < ids.length; i++) {
        const want = logSoftmax(logitRow(promptLogits, i - 1))[ids[i]!]!;
        expect(Math.abs(got[i]! - want), `${variant}/${prompt} prompt token ${i}`).toBeLessThan(TOLERANCE);
      }
      const stepLogits = refs.steps(variant, prompt);
      outcome.events.forEach(({ token }, step) => {
        const ref = logSoftmax(logitRow(stepLogits, step));
        expect(token.top).toHaveLength(3);
        expect(token.top[0]!.id).toBe(token.id);
        for (const alt of token.top) expect(Math.abs(alt.logprob - ref[alt.id]!)).toBeLessThan(TOLERANCE);
      });
    }
  });

  it("gives every variant the same results when all run in one continuous batch", async () => {
    const { llm, steps } = await start({ numKvBlocks: 256 });
    const outcomes = await Promise.all(cases.map(({ variant, prompt }) => collect(llm.submit(greedy(variant, prompt)))));
    cases.forEach(({ variant, prompt }, i) => expectMatchesReference(variant, prompt, outcomes[i]!));
    // Every request was in the first step: the prompts of all adapters and the base computed together.
    expect(steps[0]).toHaveLength(cases.length);
    expect(new Set(steps[0]!.map((s) => s.adapterSlot)).size).toBe(variants.length);
    expect(llm.load()).toEqual({ running: 0, waiting: 0, freeKvBlocks: 256, totalKvBlocks: 256 });
  });

  it("starts each step while the one before runs, a decode there naming the entry that draws its token", async () => {
    const { llm, steps, inFlightAtStart } = await start();
    const outcomes = await Promise.all(cases.map(({ variant, prompt }) => collect(llm.submit(greedy(variant, prompt)))));
    cases.forEach(({ variant, prompt }, i) => expectMatchesReference(variant, prompt, outcomes[i]!));
    // Every step after the first started with one in flight; never more than one.
    expect(inFlightAtStart[0]).toBe(0);
    expect(Math.max(...inFlightAtStart)).toBe(1);
    expect(inFlightAtStart.filter((n) => n === 1).length).toBeGreaterThan(steps.length / 2);
    // A decode whose token was still being drawn carries no tokens, only the previous step's entry, which samples.
    const chained = steps.flatMap((step, k) => step.filter((s) => s.previousResult !== undefined).map((s) => ({ s, previous: steps[k - 1]! })));
    expect(chained.length).toBeGreaterThan(0);
    for (const { s, previous } of chained) {
      expect(s.tokens).toHaveLength(0);
      expect(previous[s.previousResult!]!.sample).toBe(true);
    }
    expect(llm.load().freeKvBlocks).toBe(64);
  });

  it("computes long prompts in chunks under a small prefill budget and still matches", async () => {
    const budget = 5;
    const { llm, steps } = await start({ maxBatchPrefillTokens: budget });
    const chosen = cases.filter(({ prompt }) => set.refs.prompts[prompt]!.ids.length > 3 * budget);
    expect(chosen.length).toBeGreaterThan(0);
    const outcomes = await Promise.all(chosen.map(({ variant, prompt }) => collect(llm.submit(greedy(variant, prompt, { promptLogprobs: true })))));
    chosen.forEach(({ variant, prompt }, i) => {
      expectMatchesReference(variant, prompt, outcomes[i]!);
      const ids = set.refs.prompts[prompt]!.ids;
      const promptLogits = refs.prompt(variant, prompt);
      const got = outcomes[i]!.finish!.promptLogprobs!;
      for (let t = 1; t < ids.length; t++) {
        expect(Math.abs(got[t]! - logSoftmax(logitRow(promptLogits, t - 1))[ids[t]!]!)).toBeLessThan(TOLERANCE);
      }
    });
    for (const step of steps) {
      const promptTokens = step.filter((s) => s.tokens.length > 1 || !s.sample).reduce((n, s) => n + s.tokens.length, 0);
      expect(promptTokens).toBeLessThanOrEqual(budget);
    }
    // A prompt went through the engine in pieces: a chunk that starts inside it and does not sample.
    expect(steps.some((step) => step.some((s) => s.startPos > 0 && !s.sample))).toBe(true);
  });

  it("preempts when the cache is short, recomputes, and still matches", async () => {
    const blockSize = 4;
    const longest = Math.max(...set.refs.prompts.map((p) => p.ids.length)) + set.refs.steps;
    const numKvBlocks = Math.ceil(longest / blockSize) + 2;
    const { llm, steps } = await start({ numKvBlocks, blockSize, maxTotalTokens: longest });
    const base = cases.filter(({ variant }) => variant === variants[0]);
    const outcomes = await Promise.all(base.map(({ variant, prompt }) => collect(llm.submit(greedy(variant, prompt)))));
    base.forEach(({ variant, prompt }, i) => expectMatchesReference(variant, prompt, outcomes[i]!));
    // A recomputation: a chunk from position 0 that holds more than its prompt (prompt + generated tokens).
    const promptLengths = new Set(set.refs.prompts.map((p) => p.ids.length));
    expect(steps.some((step) => step.some((s) => s.startPos === 0 && s.sample && !promptLengths.has(s.tokens.length)))).toBe(true);
    expect(llm.load().freeKvBlocks).toBe(numKvBlocks);
  });

  it("frees a request's blocks as soon as it is cancelled, running or waiting", async () => {
    const { llm } = await start({ numKvBlocks: 16, blockSize: 16 });
    const running = new AbortController();
    const events = llm.submit(greedy("base", 0, { maxNewTokens: 100 }), running.signal);
    const seen: TokenEvent[] = [];
    for await (const event of events) {
      seen.push(event);
      if (seen.length === 3) {
        expect(llm.load().freeKvBlocks).toBeLessThan(16);
        running.abort();
      }
    }
    expect(seen).toHaveLength(3);
    expect(llm.load()).toEqual({ running: 0, waiting: 0, freeKvBlocks: 16, totalKvBlocks: 16 });

    // Leaving the iteration early cancels too.
    for await (const event of llm.submit(greedy("base", 1, { maxNewTokens: 100 }))) {
      expect(event.token.id).toBe(set.refs.variants.base![1]!.greedy_ids[0]);
      break;
    }
    expect(llm.load().freeKvBlocks).toBe(16);

    // Cancelled before its first step: it never runs, and another request still does.
    const early = new AbortController();
    const dropped = collect(llm.submit(greedy("base", 2), early.signal));
    early.abort();
    expect((await dropped).events).toEqual([]);
    expectMatchesReference("base", 0, await collect(llm.submit(greedy("base", 0))));
    expect(llm.load().freeKvBlocks).toBe(16);
  });

  it("draws the same sampled tokens for a seed, alone or sharing the batch", async () => {
    const { llm } = await start({ numKvBlocks: 128 });
    const sampled = (variant: string): SequenceRequest =>
      greedy(variant, 1, { sampling: { temperature: 1, topK: 0, topP: 1, seed: 1234 }, maxNewTokens: 12 });
    const alone = await collect(llm.submit(sampled("base")));
    const shared = await Promise.all([
      collect(llm.submit(sampled("base"))),
      ...variants.slice(1).map((v) => collect(llm.submit(greedy(v, 0)))),
    ]);
    expect(shared[0]!.events.map((e) => e.token.id)).toEqual(alone.events.map((e) => e.token.id));
    // With a temperature of 1 the draws are not the greedy ones everywhere: sampling is really on.
    expect(alone.events.map((e) => e.token.id)).not.toEqual(set.refs.variants.base![1]!.greedy_ids.slice(0, alone.events.length));
  });
});
