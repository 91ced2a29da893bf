// The CPU engine against transformers + peft: prompt logits and 24 greedy steps through the paged KV cache,
// for the base model and every adapter of every fixture set.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fixtureSets } from "./helpers/fixture-sets.js";
import { expectRowClose, openHarness, runStep, TestSequence, type Harness } from "./helpers/engine-harness.js";
import { rowOf } from "./helpers/refs.js";
import { expectAdapterChangesLogits } from "./helpers/adapter-effect.js";

/** float32 on the CPU against float32 transformers: max |diff| <= 1e-4 * max |ref| per row. */
const REF_TOLERANCE = 1e-4;
/** Greedy ids must agree where the reference's top-1/top-2 margin is above this. */
const MARGIN = 1e-3;

const sets = fixtureSets();

describe("engine vs transformers", () => {
  describe.each(sets)("$name", (set) => {
    let h: Harness;
    beforeAll(async () => {
      h = await openHarness(set);
    });
    afterAll(() => h.engine.close());

    it("prompt logits of every variant and prompt", async () => {
      const vocab = h.spec.vocabSize;
      for (const variant of h.variants) {
        for (const [index, prompt] of set.refs.prompts.entries()) {
          const seq = new TestSequence(h, h.slots.get(variant)!);
          const [result] = await runStep(h.engine, [[seq, seq.step(prompt.ids, { returnLogits: true })]]);
          const ref = h.ref.prompt(variant, index);
          expectAdapterChangesLogits(h.ref, variant, index, REF_TOLERANCE);
          expect(result!.logits.length).toBe(prompt.ids.length * vocab);
          for (let row = 0; row < ref.rows; row++) {
            expectRowClose(rowOf(result!.logits, vocab, row), rowOf(ref.data, vocab, row), REF_TOLERANCE, `${variant}/${index} position ${row}`);
          }
          seq.release();
        }
      }
    });

    it("greedy decode through the paged cache, every variant and prompt in one batch", async () => {
      const vocab = h.spec.vocabSize;
      const runs = h.variants.flatMap((variant) =>
        set.refs.variants[variant]!.map((run) => ({
          variant,
          run,
          seq: new TestSequence(h, h.slots.get(variant)!),
          ref: h.ref.steps(variant, run.prompt),
        })),
      );
      for (let step = 0; step < set.refs.steps; step++) {
        // The reference's own greedy token is fed back (teacher forcing), so a near-tie that flipped could not
        // derail the later logits comparisons; the ids themselves are compared where the margin is clear.
        const work = runs.map(({ seq, run }) => {
          const tokens = step === 0 ? set.refs.prompts[run.prompt]!.ids : [run.greedy_ids[step - 1]!];
          return [seq, seq.step(tokens, { sample: true, returnLogits: true })] as [TestSequence, ReturnType<TestSequence["step"]>];
        });
        const results = await runStep(h.engine, work);
        for (const [i, { variant, run, ref }] of runs.entries()) {
          const result = results[i]!;
          const rows = work[i]![1].tokens.length;
          const what = `${variant}/${run.prompt} step ${step}`;
          expectRowClose(rowOf(result.logits, vocab, rows - 1), rowOf(ref.data, vocab, step), REF_TOLERANCE, what);
          if (run.margins[step]! > MARGIN) expect(result.token, what).toBe(run.greedy_ids[step]);
        }
      }
      for (const { seq } of runs) seq.release();
    });
  });
});
