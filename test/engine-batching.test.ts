// Batching must not change anyone's numbers: a mixed batch equals each sequence alone, sequences may join and
// leave a running batch, a prompt may be prefilled in chunks, and decoding through the paged cache equals a
// full recompute. Each side is also held to the transformers reference where one exists.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SeqResult, SeqStep } from "../native/addon.js";
import { fixtureSets } from "./helpers/fixture-sets.js";
import { expectRowClose, openHarness, runStep, TestSequence, type Harness } from "./helpers/engine-harness.js";
import { rowOf } from "./helpers/refs.js";

/**
 * Same arithmetic in another batch shape. OpenBLAS rounds a row's dot products differently depending on how
 * many rows the product has, so the last bits move (up to 1.2e-5 relative measured on fixtures/demo, whose
 * weights amplify rounding most); a mixed-up adapter or attention leaking across sequences is 1e-2 or more.
 */
const BATCH_TOLERANCE = 3e-5;
const REF_TOLERANCE = 1e-4;
const DECODE_STEPS = 4;

const sets = fixtureSets();

interface Plan {
  variant: string;
  prompt: number;
}

describe("engine batching", () => {
  describe.each(sets)("$name", (set) => {
    let h: Harness;
    beforeAll(async () => {
      h = await openHarness(set);
    });
    afterAll(() => h.engine.close());

    const promptIds = (plan: Plan) => set.refs.prompts[plan.prompt]!.ids;
    const greedy = (plan: Plan) => set.refs.variants[plan.variant]![plan.prompt]!.greedy_ids;
    /** Tokens of decode step `step` (1-based): the reference's greedy token before it. */
    const decodeTokens = (plan: Plan, step: number) => [greedy(plan)[step - 1]!];

    /** Prefill and DECODE_STEPS decode steps with every plan in one batch; logits of every step per plan. */
    async function runTogether(plans: Plan[]): Promise<Float32Array[][]> {
      const seqs = plans.map((p) => new TestSequence(h, h.slots.get(p.variant)!));
      const logits: Float32Array[][] = plans.map(() => []);
      for (let step = 0; step <= DECODE_STEPS; step++) {
        const work = plans.map((p, i): [TestSequence, SeqStep] => [
          seqs[i]!,
          seqs[i]!.step(step === 0 ? promptIds(p) : decodeTokens(p, step), { returnLogits: true }),
        ]);
        const results = await runStep(h.engine, work);
        results.forEach((r, i) => logits[i]!.push(r.logits));
      }
      for (const seq of seqs) seq.release();
      return logits;
    }

    it("a mixed batch (base, every adapter, different prompt lengths) equals each sequence alone", async () => {
      const prompts = [0, 2, set.refs.prompts.length - 1];
      const plans = h.variants.flatMap((variant) => prompts.map((prompt) => ({ variant, prompt })));
      const together = await runTogether(plans);
      for (const [i, plan] of plans.entries()) {
        const [alone] = await runTogether([plan]);
        for (let step = 0; step <= DECODE_STEPS; step++) {
          const what = `${plan.variant}/${plan.prompt} step ${step}`;
          expect(together[i]![step]!.length, what).toBe(alone![step]!.length);
          const rows = together[i]![step]!.length / h.spec.vocabSize;
          for (let row = 0; row < rows; row++) {
            expectRowClose(rowOf(together[i]![step]!, h.spec.vocabSize, row), rowOf(alone![step]!, h.spec.vocabSize, row), BATCH_TOLERANCE, `${what} row ${row}`);
          }
        }
      }
    });

    it("sequences joining and leaving a running batch change no one else's numbers", async () => {
      const vocab = h.spec.vocabSize;
      const [stayer, early, late] = [
        { variant: h.variants[h.variants.length - 1]!, prompt: 1 },
        { variant: "base", prompt: 0 },
        { variant: h.variants[1] ?? "base", prompt: 3 },
      ];
      const [alone] = await runTogether([stayer]);
      const seqs = new Map([stayer, early, late].map((p) => [p, new TestSequence(h, h.slots.get(p.variant)!)]));
      // Who runs at each step: `early` joins at step 1 and leaves after step 2, `late` joins at step 3.
      const schedule: Plan[][] = [[stayer], [stayer, early], [stayer, early], [stayer, late], [stayer, late]];
      const progress = new Map<Plan, number>();
      for (const [step, members] of schedule.entries()) {
        const work = members.map((p): [TestSequence, SeqStep] => {
          const done = progress.get(p) ?? 0;
          const tokens = done === 0 ? promptIds(p) : decodeTokens(p, done);
          return [seqs.get(p)!, seqs.get(p)!.step(tokens, { returnLogits: true })];
        });
        const results: SeqResult[] = await runStep(h.engine, work);
        for (const [i, p] of members.entries()) {
          const done = progress.get(p) ?? 0;
          const rows = work[i]![1].tokens.length;
          const last = rowOf(results[i]!.logits, vocab, rows - 1);
          const what = `${p.variant}/${p.prompt} at batch step ${step}`;
          if (p === stayer) expectRowClose(last, rowOf(alone![step]!, vocab, rows - 1), BATCH_TOLERANCE, what);
          expectRowClose(last, rowOf(h.ref.steps(p.variant, p.prompt).data, vocab, done), REF_TOLERANCE, what);
          progress.set(p, done + 1);
        }
      }
      for (const seq of seqs.values()) seq.release();
    });

    it("a prompt prefilled in two chunks equals one-shot prefill", async () => {
      const vocab = h.spec.vocabSize;
      const prompt = set.refs.prompts.reduce((a, b) => (b.ids.length > a.ids.length ? b : a)).ids;
      const split = Math.floor(prompt.length / 2) + 1;
      for (const variant of h.variants) {
        const oneShot = new TestSequence(h, h.slots.get(variant)!);
        const [whole] = await runStep(h.engine, [[oneShot, oneShot.step(prompt, { returnLogits: true })]]);
        const chunked = new TestSequence(h, h.slots.get(variant)!);
        const [first] = await runStep(h.engine, [[chunked, chunked.step(prompt.slice(0, split), { returnLogits: true })]]);
        // The second chunk shares its step with an unrelated prefill, as the scheduler would mix them.
        const other = new TestSequence(h, -1);
        const [second] = await runStep(h.engine, [
          [other, other.step(set.refs.prompts[0]!.ids)],
          [chunked, chunked.step(prompt.slice(split), { returnLogits: true })],
        ].reverse() as [TestSequence, SeqStep][]);
        const rows = Float32Array.from([...first!.logits, ...second!.logits]);
        for (let row = 0; row < prompt.length; row++) {
          expectRowClose(rowOf(rows, vocab, row), rowOf(whole!.logits, vocab, row), BATCH_TOLERANCE, `${variant} chunked row ${row}`);
        }
        for (const seq of [oneShot, chunked, other]) seq.release();
      }
    });

    it("decoding through the paged cache equals a full recompute of the sequence", async () => {
      const vocab = h.spec.vocabSize;
      for (const variant of h.variants) {
        const plan = { variant, prompt: 0 };
        const decoded = new TestSequence(h, h.slots.get(variant)!);
        const stepLogits: Float32Array[] = [];
        const tokens = [...promptIds(plan)];
        for (let step = 0; step < set.refs.steps; step++) {
          const input = step === 0 ? tokens : decodeTokens(plan, step);
          if (step > 0) tokens.push(...input);
          const [r] = await runStep(h.engine, [[decoded, decoded.step(input, { returnLogits: true })]]);
          stepLogits.push(rowOf(r!.logits, vocab, input.length - 1));
        }
        const recomputed = new TestSequence(h, h.slots.get(variant)!);
        const [full] = await runStep(h.engine, [[recomputed, recomputed.step(tokens, { returnLogits: true })]]);
        const firstDecodeRow = promptIds(plan).length - 1;
        for (const [step, logits] of stepLogits.entries()) {
          expectRowClose(logits, rowOf(full!.logits, vocab, firstDecodeRow + step), BATCH_TOLERANCE, `${variant} step ${step}`);
        }
        decoded.release();
        recomputed.release();
      }
    });
  });
});
