// The CUDA engine against transformers + peft and against itself in other batch shapes, for every fixture set.
// Logits are compared per row as ‖ours − ref‖₂ / ‖ref‖₂ (the largest single-logit deviation is logged too).
//
// Every test runs in each 16-bit type the engine offers (EngineOptions dtype). Against the float32 reference:
// the type's bound of test/helpers/cuda.ts (float16: the 2e-2 and 0.1 margin; bfloat16: a sanity bound).
//
// Against itself in another batch shape or path (mixed batch vs alone, decode vs prefill, chunked vs whole,
// a step over the row budget vs its sequences alone) the bound is 2e-2.
//
// Runs only where the addon has the CUDA backend and an NVIDIA GPU is present (the GPU machine:
// shared/device/README.md); elsewhere it skips and says so.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SeqStep } from "../native/addon.js";
import { cudaAvailable, DTYPE_BOUNDS, DTYPES } from "./helpers/cuda.js";
import { fixtureSets } from "./helpers/fixture-sets.js";
import { logSoftmax, openHarness, runStep, TestSequence, type Harness } from "./helpers/engine-harness.js";
import { rowOf } from "./helpers/refs.js";

const TOLERANCE = 2e-2;
const DECODE_STEPS = 4;

/** Worst errors seen per fixture set and type, printed after each for docs/performance.md. */
const worst = new Map<string, { l2: number; maxAbs: number; flippedMargin: number }>();

/** ‖ours − expected‖₂ <= rel ‖expected‖₂ over the row; records the worst L2 and max-abs relative errors. */
function expectRowClose(ours: Float32Array, expected: Float32Array, rel: number, what: string, set = "all"): void {
  expect(ours.length, `${what}: length`).toBe(expected.length);
  let diff2 = 0, ref2 = 0, maxDiff = 0, maxRef = 0;
  for (let i = 0; i < expected.length; i++) {
    const d = ours[i]! - expected[i]!;
    diff2 += d * d;
    ref2 += expected[i]! * expected[i]!;
    maxDiff = Math.max(maxDiff, Math.abs(d));
    maxRef = Math.max(maxRef, Math.abs(expected[i]!));
  }
  const l2 = Math.sqrt(diff2 / ref2);
  const seen = worst.get(set) ?? { l2: 0, maxAbs: 0, flippedMargin: 0 };
  worst.set(set, { ...seen, l2: Math.max(seen.l2, l2), maxAbs: Math.max(seen.maxAbs, maxDiff / maxRef) });
  expect.soft(l2, `${what}: ‖diff‖/‖ref‖ = ${l2} (max |diff| ${maxDiff} vs max |ref| ${maxRef})`).toBeLessThanOrEqual(rel);
}

const sets = fixtureSets();
const cuda = cudaAvailable();
if (!cuda) {
  console.warn("NOTE: test/cuda-engine.test.ts is SKIPPED: the native addon was built without the CUDA backend or no NVIDIA GPU is present.");
}

const cases = DTYPES.flatMap((dtype) => sets.map((set) => ({ dtype, set, name: `${set.name} in ${dtype}` })));

describe.skipIf(!cuda)("CUDA engine", () => {
  describe.each(cases)("$name", ({ dtype, set, name }) => {
    let h: Harness;
    beforeAll(async () => {
      h = await openHarness(set, { device: "cuda", dtype });
    });
    afterAll(() => {
      h.engine.close();
      const seen = worst.get(name);
      if (seen) {
        console.log(`${name}: worst logits error vs transformers: L2 ${seen.l2.toExponential(2)}, max-abs/max-ref ${seen.maxAbs.toExponential(2)}, largest margin of a flipped greedy id ${seen.flippedMargin.toFixed(3)} (bound: L2 ${bound.l2}, margin ${bound.margin})`);
      }
    });

    const vocab = () => h.spec.vocabSize;
    const bound = DTYPE_BOUNDS[dtype];
    const greedy = (variant: string, prompt: number) => set.refs.variants[variant]![prompt]!.greedy_ids;

    it("prompt logits of every variant and prompt match transformers", async () => {
      for (const variant of h.variants) {
        for (const [index, prompt] of set.refs.prompts.entries()) {
          const seq = new TestSequence(h, h.slots.get(variant)!);
          const [result] = await runStep(h.engine, [[seq, seq.step(prompt.ids, { returnLogits: true })]]);
          const ref = h.ref.prompt(variant, index);
          for (let row = 0; row < ref.rows; row++) {
            expectRowClose(rowOf(result!.logits, vocab(), row), rowOf(ref.data, vocab(), row), bound.l2, `${variant}/${index} position ${row}`, name);
          }
          seq.release();
        }
      }
    });

    it("greedy decode of every variant and prompt in one mixed batch matches transformers, with GPU-selected tokens and logprobs", async () => {
      const runs = h.variants.flatMap((variant) =>
        set.refs.variants[variant]!.map((run) => ({ variant, run, seq: new TestSequence(h, h.slots.get(variant)!), ref: h.ref.steps(variant, run.prompt) })),
      );
      for (let step = 0; step < set.refs.steps; step++) {
        // Teacher forcing: the reference's own token goes back in, so a near-tie cannot derail later steps.
        const work = runs.map(({ seq, run }) => {
          const tokens = step === 0 ? set.refs.prompts[run.prompt]!.ids : [run.greedy_ids[step - 1]!];
          const targets = Int32Array.from(tokens, () => -1);
          targets[targets.length - 1] = run.greedy_ids[step]!;
          return [seq, seq.step(tokens, { sample: true, topN: 3, logprobTargets: targets, returnLogits: true })] as [TestSequence, SeqStep];
        });
        const results = await runStep(h.engine, work);
        for (const [i, { variant, run, ref }] of runs.entries()) {
          const result = results[i]!;
          const rows = work[i]![1].tokens.length;
          const what = `${variant}/${run.prompt} step ${step}`;
          const logits = rowOf(result.logits, vocab(), rows - 1);
          if (result.token !== run.greedy_ids[step]) {
            const seen = worst.get(name) ?? { l2: 0, maxAbs: 0, flippedMargin: 0 };
            worst.set(name, { ...seen, flippedMargin: Math.max(seen.flippedMargin, run.margins[step]!) });
          }
          if (run.margins[step]! > bound.margin) expect.soft(result.token, `${what}: greedy id (margin ${run.margins[step]})`).toBe(run.greedy_ids[step]);
          expectRowClose(logits, rowOf(ref.data, vocab(), step), bound.l2, what, name);
          // The GPU's selection must agree with the logits it returned.
          const logprobs = logSoftmax(logits);
          expect(result.logprob, what).toBeCloseTo(logprobs[result.token]!, 4);
          expect(result.targetLogprobs[rows - 1], what).toBeCloseTo(logprobs[run.greedy_ids[step]!]!, 4);
          expect(result.topIds[0], what).toBe(result.token);
          expect(result.topLogprobs.length, what).toBe(3);
          for (const [n, id] of result.topIds.entries()) expect(result.topLogprobs[n], what).toBeCloseTo(logprobs[id]!, 4);
        }
      }
      for (const { seq } of runs) seq.release();
    });

    /** Prefill then DECODE_STEPS decode steps of the given variants on prompt 0, together; logits of every step. */
    async function decodeLogits(variants: string[]): Promise<Float32Array[][]> {
      const seqs = variants.map((v) => new TestSequence(h, h.slots.get(v)!));
      const logits: Float32Array[][] = variants.map(() => []);
      for (let step = 0; step <= DECODE_STEPS; step++) {
        const work = seqs.map((seq, i): [TestSequence, SeqStep] => {
          const tokens = step === 0 ? set.refs.prompts[0]!.ids : [greedy(variants[i]!, 0)[step - 1]!];
          return [seq, seq.step(tokens, { sample: true, returnLogits: true })];
        });
        const results = await runStep(h.engine, work);
        results.forEach((r, i) => logits[i]!.push(rowOf(r.logits, vocab(), work[i]![1].tokens.length - 1).slice()));
      }
      for (const seq of seqs) seq.release();
      return logits;
    }

    it("a mixed-adapter batch gives each sequence the numbers it gets alone", async () => {
      const together = await decodeLogits(h.variants);
      for (const [i, variant] of h.variants.entries()) {
        const [alone] = await decodeLogits([variant]);
        for (let step = 0; step <= DECODE_STEPS; step++) {
          expectRowClose(together[i]![step]!, alone![step]!, TOLERANCE, `${variant} step ${step}: batch vs alone`);
        }
      }
    });

    it("a step longer than the engine's 2048-row budget runs in parts and gives each sequence its numbers alone", async () => {
      // 9 prompts of 240 tokens: 2160 rows, so the fifth prompt is cut between the two parts.
      const prompts = Array.from({ length: 9 }, (_, s) => Array.from({ length: 240 }, (_, k) => (s * 7919 + k * 31) % vocab()));
      const seqs = prompts.map((_, s) => new TestSequence(h, h.variants.length > 1 ? h.slots.get(h.variants[s % h.variants.length]!)! : -1));
      const together = await runStep(h.engine, seqs.map((seq, s): [TestSequence, SeqStep] => [seq, seq.step(prompts[s]!, { returnLogits: true })]));
      for (const [s, seq] of seqs.entries()) {
        seq.release();
        const alone = new TestSequence(h, seq.adapterSlot);
        const [result] = await runStep(h.engine, [[alone, alone.step(prompts[s]!, { returnLogits: true })]]);
        alone.release();
        for (const row of [0, 120, 239]) {
          expectRowClose(rowOf(together[s]!.logits, vocab(), row), rowOf(result!.logits, vocab(), row), TOLERANCE, `prompt ${s} position ${row}: long step vs alone`);
        }
      }
    });

    it("decoding through the paged cache equals prefilling the whole sequence, and chunked prefill equals whole", async () => {
      for (const variant of h.variants) {
        const [decoded] = await decodeLogits([variant]);
        const ids = [...set.refs.prompts[0]!.ids, ...greedy(variant, 0).slice(0, DECODE_STEPS)];
        const whole = new TestSequence(h, h.slots.get(variant)!);
        const [full] = await runStep(h.engine, [[whole, whole.step(ids, { returnLogits: true })]]);
        whole.release();
        const promptLength = set.refs.prompts[0]!.ids.length;
        for (let step = 0; step <= DECODE_STEPS; step++) {
          expectRowClose(decoded![step]!, rowOf(full!.logits, vocab(), promptLength - 1 + step), TOLERANCE, `${variant} step ${step}: decode vs prefill`);
        }
        const chunked = new TestSequence(h, h.slots.get(variant)!);
        for (let start = 0; start < ids.length; start += 3) {
          const chunk = ids.slice(start, start + 3);
          const [part] = await runStep(h.engine, [[chunked, chunked.step(chunk, { returnLogits: true })]]);
          for (let row = 0; row < chunk.length; row++) {
            expectRowClose(rowOf(part!.logits, vocab(), row), rowOf(full!.logits, vocab(), start + row), TOLERANCE, `${variant} position ${start + row}: chunked vs whole`);
          }
        }
        chunked.release();
      }
    });
  });
});
