// Token selection and logprobs against the transformers reference logits: greedy ids, raw log-softmax values,
// top-N alternatives, per-position target logprobs, and seeded draws that follow the tempered distribution
// and do not depend on the batch they ran in.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SamplingParams, SeqStep } from "../native/addon.js";
import { fixtureSets } from "./helpers/fixture-sets.js";
import { logSoftmax, openHarness, runStep, TestSequence, type Harness } from "./helpers/engine-harness.js";
import { rowOf } from "./helpers/refs.js";

const REF_TOLERANCE = 1e-4;

const sets = fixtureSets();

/** Token ids ordered by probability under `temperature`, with their probabilities (float64). */
function distribution(logits: Float32Array, temperature: number): { order: number[]; probs: Float64Array } {
  const scaled = Float32Array.from(logits, (v) => v / temperature);
  const probs = logSoftmax(scaled).map(Math.exp);
  const order = [...probs.keys()].sort((a, b) => probs[b]! - probs[a]! || a - b);
  return { order, probs };
}

/** The smallest set of most likely tokens whose probability reaches topP. */
function nucleus(order: number[], probs: Float64Array, topP: number): Set<number> {
  const kept = new Set<number>();
  let mass = 0;
  for (const id of order) {
    kept.add(id);
    mass += probs[id]!;
    if (mass >= topP) break;
  }
  return kept;
}

describe("engine sampling", () => {
  describe.each(sets)("$name", (set) => {
    let h: Harness;
    beforeAll(async () => {
      h = await openHarness(set);
    });
    afterAll(() => h.engine.close());

    const shortest = () => set.refs.prompts.reduce((best, p, i) => (p.ids.length < set.refs.prompts[best]!.ids.length ? i : best), 0);

    /** One step of `count` copies of a prompt, each with its own sampling parameters; the drawn tokens. */
    async function drawMany(variant: string, prompt: number, sampling: (i: number) => Partial<SamplingParams>, count: number) {
      const ids = set.refs.prompts[prompt]!.ids;
      const work = Array.from({ length: count }, (_, i): [TestSequence, SeqStep] => {
        const seq = new TestSequence(h, h.slots.get(variant)!);
        return [seq, seq.step(ids, { sample: true, sampling: { temperature: 1, topK: 0, topP: 1, seed: 0, draw: 0, ...sampling(i) } })];
      });
      const results = await runStep(h.engine, work);
      for (const [seq] of work) seq.release();
      return results.map((r) => r.token);
    }

    it("greedy token, its logprob, the top-N and the target logprobs are the reference's", async () => {
      const vocab = h.spec.vocabSize;
      for (const variant of h.variants) {
        const run = set.refs.variants[variant]![0]!;
        const ids = set.refs.prompts[run.prompt]!.ids;
        const ref = h.ref.prompt(variant, run.prompt);
        const seq = new TestSequence(h, h.slots.get(variant)!);
        const targets = Int32Array.from([...ids.slice(1), -1]);
        const [result] = await runStep(h.engine, [[seq, seq.step(ids, { sample: true, topN: 5, logprobTargets: targets })]]);
        seq.release();
        expect(result!.logits.length, "no logits unless asked").toBe(0);

        const last = rowOf(ref.data, vocab, ref.rows - 1);
        const lastLogprobs = logSoftmax(last);
        const tolerance = 2 * REF_TOLERANCE * Math.max(...last.map(Math.abs));
        if (run.margins[0]! > 1e-3) expect(result!.token).toBe(run.greedy_ids[0]);
        expect(result!.logprob).toBeCloseTo(lastLogprobs[result!.token]!, -Math.log10(tolerance));

        const refTop = [...lastLogprobs.keys()].sort((a, b) => lastLogprobs[b]! - lastLogprobs[a]! || a - b);
        expect(result!.topIds.length).toBe(5);
        for (let i = 0; i < 5; i++) {
          const clear = lastLogprobs[refTop[i]!]! - lastLogprobs[refTop[i + 1]!]! > 2 * tolerance;
          const prevClear = i === 0 || lastLogprobs[refTop[i - 1]!]! - lastLogprobs[refTop[i]!]! > 2 * tolerance;
          if (clear && prevClear) expect(result!.topIds[i], `${variant} top ${i}`).toBe(refTop[i]);
          expect(Math.abs(result!.topLogprobs[i]! - lastLogprobs[result!.topIds[i]!]!)).toBeLessThanOrEqual(tolerance);
        }

        expect(result!.targetLogprobs.length).toBe(ids.length);
        expect(result!.targetLogprobs[ids.length - 1]).toBeNaN();
        for (let i = 0; i + 1 < ids.length; i++) {
          const row = rowOf(ref.data, vocab, i);
          const expected = logSoftmax(row)[ids[i + 1]!]!;
          const rowTolerance = 2 * REF_TOLERANCE * Math.max(...row.map(Math.abs));
          expect(Math.abs(result!.targetLogprobs[i]! - expected), `${variant} target ${i}`).toBeLessThanOrEqual(rowTolerance);
        }
      }
    });

    it("draws follow the tempered softmax of the reference logits", async () => {
      const prompt = shortest();
      const temperature = 0.7;
      const count = 600;
      const tokens = await drawMany("base", prompt, (i) => ({ temperature, seed: 99, draw: i }), count);
      const { probs } = distribution(rowOf(h.ref.steps("base", prompt).data, h.spec.vocabSize, 0), temperature);
      // Pearson chi-square over tokens expected at least 5 times, the rest pooled into one bin.
      const counts = new Map<number, number>();
      for (const t of tokens) counts.set(t, (counts.get(t) ?? 0) + 1);
      let chi2 = 0;
      let bins = 0;
      let restExpected = 0;
      let restObserved = 0;
      probs.forEach((p, id) => {
        const expected = p * count;
        const observed = counts.get(id) ?? 0;
        if (expected >= 5) {
          chi2 += (observed - expected) ** 2 / expected;
          bins++;
        } else {
          restExpected += expected;
          restObserved += observed;
        }
      });
      chi2 += (restObserved - restExpected) ** 2 / restExpected;
      const df = bins;
      expect(df).toBeGreaterThan(3);
      // About five standard deviations above the mean of chi-square(df).
      expect(chi2).toBeLessThan(df + 5 * Math.sqrt(2 * df));
    });

    it("top-k and top-p keep only the reference's most likely tokens", async () => {
      const prompt = shortest();
      const temperature = 1.5;
      const { order, probs } = distribution(rowOf(h.ref.steps("base", prompt).data, h.spec.vocabSize, 0), temperature);
      const topK = await drawMany("base", prompt, (i) => ({ temperature, topK: 3, seed: 5, draw: i }), 300);
      expect(new Set(topK)).toEqual(new Set(order.slice(0, 3)));
      const topP = 0.5;
      const drawn = new Set(await drawMany("base", prompt, (i) => ({ temperature, topP, seed: 6, draw: i }), 300));
      // Slack on the cut keeps a token right at the boundary (rounding) from failing the test.
      for (const id of drawn) expect(nucleus(order, probs, topP + 1e-3).has(id), `token ${id} is outside the nucleus`).toBe(true);
      expect(drawn.size, "the nucleus is sampled, not its top token alone").toBeGreaterThan(3);
      const greedy = set.refs.variants.base![prompt]!.greedy_ids[0];
      expect(new Set(await drawMany("base", prompt, (i) => ({ temperature, topK: 1, seed: i, draw: i }), 20))).toEqual(new Set([greedy]));
      expect(new Set(await drawMany("base", prompt, (i) => ({ temperature, topP: 1e-9, seed: i, draw: i }), 20))).toEqual(new Set([greedy]));
    });

    it("a seeded draw depends on (seed, draw) alone, not on the batch it runs in", async () => {
      const variant = h.variants[h.variants.length - 1]!;
      const pairs = Array.from({ length: 24 }, (_, i) => ({ seed: 1000 + (i % 3), draw: i }));
      const alone: number[] = [];
      for (const pair of pairs) alone.push(...(await drawMany(variant, 1, () => ({ ...pair, temperature: 1.2 }), 1)));
      // The same draws in one batch, in reverse order, behind unrelated sequences of other adapters.
      const ids = set.refs.prompts[1]!.ids;
      const work: [TestSequence, SeqStep][] = [];
      for (const other of h.variants) {
        const seq = new TestSequence(h, h.slots.get(other)!);
        work.push([seq, seq.step(set.refs.prompts[0]!.ids, { sample: true, sampling: { temperature: 1, topK: 0, topP: 1, seed: 1000, draw: 0 } })]);
      }
      for (const pair of [...pairs].reverse()) {
        const seq = new TestSequence(h, h.slots.get(variant)!);
        work.push([seq, seq.step(ids, { sample: true, sampling: { temperature: 1.2, topK: 0, topP: 1, ...pair } })]);
      }
      const results = await runStep(h.engine, work);
      for (const [seq] of work) seq.release();
      const batched = results.slice(h.variants.length).map((r) => r.token).reverse();
      expect(batched).toEqual(alone);
      expect(new Set(alone).size, "different draws give different tokens").toBeGreaterThan(3);
    });
  });
});
