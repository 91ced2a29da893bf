// `loraserve serve --num-shard N` as users run it (launcher, N shard ranks, router) on the CPU engine: TGI
// /generate with details for the base model and every adapter, all sent at once so that batches mix adapters,
// answers the transformers + peft reference's greedy ids and the same requests on a single-shard serve; an
// adapter loaded at run time through /adapters reaches every rank; and a KV cache too small for the requests
// sent together preempts and recomputes through the group with the same answers.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fixtureSets, projectFixture, type FixtureSet } from "./helpers/fixture-sets.js";
import { greedyIds, logprobAt, postGreedyGenerate } from "./helpers/greedy-reference.js";
import { adapterFlag, isAlive, serve, type ServeReady, type Started } from "./helpers/process.js";
import { readRefLogits, type RefLogits } from "./helpers/refs.js";

/** Greedy ids must agree where the reference's top-1/top-2 margin is above this (as test/engine.test.ts). */
const MARGIN = 1e-3;
/**
 * Logprobs against float32 transformers, as test/e2e-generate.test.ts, and against one shard as well: the
 * group's sums are added in another order (test/tensor-parallel.test.ts bounds that at 2e-5 of a logits row),
 * which after a score of greedy steps over the cached keys and values moves a logprob by up to about 5e-5 here.
 */
const TOLERANCE = 1e-4;
const START_TIMEOUT_MS = 90_000;
const TEST_TIMEOUT_MS = 120_000;
const TOKEN = "e2e-tensor-parallel-token";
/** Two cores are shared by every rank: one thread each. */
const THREADS = ["--threads", "1"];

interface TgiToken {
  id: number;
  logprob: number | null;
}

interface TgiDetails {
  finish_reason: string;
  prefill: TgiToken[];
  tokens: TgiToken[];
}

interface Case {
  variant: string;
  prompt: number;
  text: string;
}

/** The base and every adapter on every prompt that has a text. */
function casesOf(set: FixtureSet): Case[] {
  const variants = ["base", ...Object.keys(set.refs.adapters)];
  return variants.flatMap((variant) => set.refs.prompts.flatMap((p, prompt) => (p.text === null ? [] : [{ variant, prompt, text: p.text }])));
}

/** How many of the reference's greedy ids are clear of a near tie, which float32 noise may break either way. */
function clearSteps(set: FixtureSet, { variant, prompt }: Case): number {
  const expected = greedyIds(set, variant, prompt);
  const margins = set.refs.variants[variant]!.find((v) => v.prompt === prompt)!.margins;
  const tie = margins.slice(0, expected.length).findIndex((margin) => margin <= MARGIN);
  return tie < 0 ? expected.length : tie;
}

async function generate(url: string, set: FixtureSet, { variant, text }: Case): Promise<TgiDetails> {
  const response = await postGreedyGenerate(url, set, variant, text);
  expect(response.status, `${variant}: ${await response.clone().text()}`).toBe(200);
  return ((await response.json()) as { details: TgiDetails }).details;
}

/** The group's answer is the reference's greedy run and the single shard's, id for id, logprobs within bounds. */
function expectSameAnswer(set: FixtureSet, refs: RefLogits, c: Case, group: TgiDetails, single: TgiDetails): void {
  const where = `${set.name} ${c.variant}/${c.prompt}`;
  const expected = greedyIds(set, c.variant, c.prompt);
  const clear = clearSteps(set, c);
  expect(clear, `${where}: the reference has a near tie at its first step`).toBeGreaterThan(0);
  expect(group.prefill.map((t) => t.id), where).toEqual(set.refs.prompts[c.prompt]!.ids);
  const ids = group.tokens.map((t) => t.id);
  if (clear === expected.length) {
    expect(ids, where).toEqual(expected);
    expect(single.tokens.map((t) => t.id), `${where}, one shard`).toEqual(expected);
  } else {
    expect(ids.slice(0, clear), where).toEqual(expected.slice(0, clear));
  }
  const steps = refs.steps(c.variant, c.prompt);
  group.tokens.slice(0, clear).forEach((token, step) => {
    expect(Math.abs(token.logprob! - logprobAt(steps, step, token.id)), `${where}, step ${step} vs reference`).toBeLessThan(TOLERANCE);
    expect(Math.abs(token.logprob! - single.tokens[step]!.logprob!), `${where}, step ${step} vs one shard`).toBeLessThan(TOLERANCE);
  });
}

/**
 * Each adapter's reference differs from the base's on at least one of the prompts checked, so the checks fail if
 * the group drops an adapter (on some prompt an adapter may rightly answer as the base does, e.g. EOS at once).
 */
function expectEachAdapterShows(set: FixtureSet, cases: Case[]): void {
  for (const adapter of Object.keys(set.refs.adapters)) {
    const prompts = cases.filter((c) => c.variant === adapter).map((c) => c.prompt);
    const differs = prompts.some((prompt) => JSON.stringify(greedyIds(set, adapter, prompt)) !== JSON.stringify(greedyIds(set, "base", prompt)));
    expect(differs, `${set.name} ${adapter}: its greedy reference must differ from the base's on some prompt`).toBe(true);
  }
}

/** Groups of 2 on every fixture set, and of 4 (more ranks than its 2 KV heads) on demo alone, to keep time down. */
function worldsOf(set: FixtureSet): number[] {
  return set.name === "demo" ? [2, 4] : [2];
}

describe.each(fixtureSets())("serve --num-shard on $name", (set) => {
  const adapterIds = Object.keys(set.refs.adapters);
  // The last adapter is left for the run-time load; the others are named at start-up.
  const lateAdapter = adapterIds.at(-1);
  const startupAdapters = adapterIds.slice(0, -1);
  const cases = casesOf(set);
  let refs: RefLogits;
  let single: Started<ServeReady>;
  const singleAnswers = new Map<Case, TgiDetails>();

  beforeAll(async () => {
    refs = readRefLogits(set.root);
    single = await serve(["--model-id", set.modelDir, ...adapterFlag(set.adaptersDir, adapterIds), ...THREADS]);
    for (const [c, details] of await Promise.all(cases.map(async (c) => [c, await generate(single.ready.url, set, c)] as const))) {
      singleAnswers.set(c, details);
    }
  }, START_TIMEOUT_MS);
  afterAll(async () => {
    await single?.stop();
  });

  describe.each(worldsOf(set))("%i ranks", (world) => {
    let group: Started<ServeReady>;

    beforeAll(async () => {
      const adapters = [...adapterFlag(set.adaptersDir, startupAdapters), "--adapter-root", set.adaptersDir, "--admin-token", TOKEN];
      group = await serve(["--model-id", set.modelDir, "--num-shard", String(world), ...adapters, ...THREADS]);
    }, START_TIMEOUT_MS);
    afterAll(async () => {
      await group?.stop();
    });

    it("runs one process per rank, the leader first", () => {
      const { shard, ranks } = group.ready.pids;
      expect(ranks).toHaveLength(world);
      expect(ranks[0]).toBe(shard);
      expect(new Set(ranks).size).toBe(world);
      expect(ranks.every(isAlive)).toBe(true);
    });

    it.skipIf(lateAdapter === undefined)("loads an adapter at run time through /adapters and serves it through the group", async () => {
      const loaded = await fetch(`${group.ready.url}/adapters`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${TOKEN}` },
        body: JSON.stringify({ id: lateAdapter }),
      });
      expect(loaded.status, await loaded.clone().text()).toBe(200);
      for (const c of cases.filter((c) => c.variant === lateAdapter)) {
        expectSameAnswer(set, refs, c, await generate(group.ready.url, set, c), singleAnswers.get(c)!);
      }
    }, TEST_TIMEOUT_MS);

    it("answers the base and every adapter, sent at once, as the reference and one shard do", async () => {
      expectEachAdapterShows(set, cases);
      const answers = await Promise.all(cases.map((c) => generate(group.ready.url, set, c)));
      cases.forEach((c, i) => expectSameAnswer(set, refs, c, answers[i]!, singleAnswers.get(c)!));
    }, TEST_TIMEOUT_MS);
  });
});

describe("serve --num-shard 2 with a KV cache too small for the requests sent together", () => {
  const set = projectFixture("demo");
  const blockSize = 4;
  const longest = Math.max(...set.refs.prompts.map((p) => p.ids.length)) + set.refs.steps;
  // Room for the longest request and a little more: requests sent together must take turns.
  const numKvBlocks = Math.ceil(longest / blockSize) + 2;
  const cases = casesOf(set);
  let refs: RefLogits;
  let group: Started<ServeReady>;

  beforeAll(async () => {
    refs = readRefLogits(set.root);
    const cache = ["--num-kv-blocks", String(numKvBlocks), "--block-size", String(blockSize), "--max-total-tokens", String(longest)];
    group = await serve(["--model-id", set.modelDir, "--num-shard", "2", ...adapterFlag(set.adaptersDir, Object.keys(set.refs.adapters)), ...cache, ...THREADS]);
  }, START_TIMEOUT_MS);
  afterAll(async () => {
    await group?.stop();
  });

  /** loraserve_engine_preemptions_total on the leader's metrics port. */
  async function preemptions(): Promise<number> {
    const text = await (await fetch(`http://127.0.0.1:${group.ready.shardMetricsPort}/metrics`)).text();
    const match = /^loraserve_engine_preemptions_total(?:\{[^}]*\})? (\d+)/m.exec(text);
    return Number(match?.[1] ?? Number.NaN);
  }

  it("preempts, recomputes through the group, and still answers as the reference", async () => {
    expectEachAdapterShows(set, cases);
    expect(await preemptions()).toBe(0);
    const answers = await Promise.all(cases.map((c) => generate(group.ready.url, set, c)));
    cases.forEach((c, i) => {
      const where = `${c.variant}/${c.prompt}`;
      const expected = greedyIds(set, c.variant, c.prompt);
      const clear = clearSteps(set, c);
      expect(answers[i]!.tokens.map((t) => t.id).slice(0, clear), where).toEqual(expected.slice(0, clear));
      const steps = refs.steps(c.variant, c.prompt);
      answers[i]!.tokens.slice(0, clear).forEach((token, step) => {
        expect(Math.abs(token.logprob! - logprobAt(steps, step, token.id)), `${where}, step ${step}`).toBeLessThan(TOLERANCE);
      });
    });
    expect(await preemptions()).toBeGreaterThan(0);
  }, TEST_TIMEOUT_MS);
});
