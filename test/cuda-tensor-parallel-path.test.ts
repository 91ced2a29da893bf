// The CUDA engine's tensor-parallel path at world 1 (EngineOptions.tensorParallelPath: a one-rank NCCL
// communicator whose all-reduce runs after every o_proj and down_proj, inside the decode graphs) gives the
// plain path's logits exactly, for the base and every adapter in one mixed batch, at prefill and through
// decode steps. Runs only on a machine with the CUDA backend and a GPU (test/helpers/cuda.ts).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cudaAvailable } from "./helpers/cuda.js";
import { fixtureSets } from "./helpers/fixture-sets.js";
import { openHarness, runStep, TestSequence, type Harness } from "./helpers/engine-harness.js";

const cuda = cudaAvailable();
if (!cuda) console.warn("NOTE: test/cuda-tensor-parallel-path.test.ts is SKIPPED: no CUDA backend or no NVIDIA GPU here.");

describe.skipIf(!cuda).each(fixtureSets())("CUDA tensor-parallel path at world 1 on $name", (set) => {
  let plain: Harness;
  let group: Harness;
  beforeAll(async () => {
    plain = await openHarness(set, { device: "cuda" });
    group = await openHarness(set, { device: "cuda", tensorParallelPath: true });
  });
  afterAll(() => {
    plain.engine.close();
    group.engine.close();
  });

  /** Every variant and prompt in one batch: the prompts, then greedy decode steps of their own tokens. */
  async function run(h: Harness): Promise<Float32Array[]> {
    const seqs = h.variants.flatMap((variant) => set.refs.prompts.map((prompt) => ({ seq: new TestSequence(h, h.slots.get(variant)!), prompt })));
    const logits: Float32Array[] = [];
    let results = await runStep(h.engine, seqs.map(({ seq, prompt }) => [seq, seq.step(prompt.ids, { sample: true, returnLogits: true })]));
    logits.push(...results.map((r) => r.logits));
    for (let step = 0; step < 4; step++) {
      const tokens = results.map((r) => r.token);
      results = await runStep(h.engine, seqs.map(({ seq }, i) => [seq, seq.step([tokens[i]!], { sample: true, returnLogits: true })]));
      logits.push(...results.map((r) => r.logits));
    }
    for (const { seq } of seqs) seq.release();
    return logits;
  }

  it("equals the plain path's logits", async () => {
    const ours = await run(group);
    const theirs = await run(plain);
    expect(ours.length).toBe(theirs.length);
    for (const [i, row] of ours.entries()) expect(Array.from(row), `logits ${i}`).toEqual(Array.from(theirs[i]!));
  });
});
