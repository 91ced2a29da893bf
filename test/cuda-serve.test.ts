// `loraserve serve --device cuda` end to end (launcher, shard and router processes, the KV cache sized from GPU
// memory): TGI /generate with details and decoder_input_details for the base model and every adapter, against
// the transformers + peft reference within the bound of the engine's default type, float16 (test/helpers/cuda.ts).
// Serving runs greedy without teacher forcing, so once a token's reference margin is within the bound a run may
// pick the other token and go on from there: ids and logprobs are compared up to that step.
//
// Runs only where the CUDA engine can (test/helpers/cuda.ts); elsewhere it skips and says so.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cudaAvailable, DTYPE_BOUNDS } from "./helpers/cuda.js";
import { fixtureSets, type FixtureSet } from "./helpers/fixture-sets.js";
import { greedyIds, postGreedyGenerate } from "./helpers/greedy-reference.js";
import { logSoftmax } from "./helpers/engine-harness.js";
import { adapterFlag, serve, type ServeReady, type Started } from "./helpers/process.js";
import { readRefLogits, rowOf, type LogitRows, type RefLogits } from "./helpers/refs.js";

const START_TIMEOUT_MS = 120_000;
// Far more than these models need, far less than the card: the cache is sized from it, not given a count.
const GPU_MEMORY_FRACTION = "0.05";

interface TgiToken {
  id: number;
  logprob: number | null;
}

const cuda = cudaAvailable();
if (!cuda) console.warn("NOTE: test/cuda-serve.test.ts is SKIPPED: no CUDA backend in the addon or no NVIDIA GPU.");
const sets = fixtureSets();

describe.skipIf(!cuda)("loraserve serve --device cuda", () => {
  describe.each(sets)("$name", (set: FixtureSet) => {
    const adapterIds = Object.keys(set.refs.adapters);
    const bound = DTYPE_BOUNDS.float16;
    let server: Started<ServeReady>;
    let refs: RefLogits;

    beforeAll(async () => {
      refs = readRefLogits(set.root);
      server = await serve(["--device", "cuda", "--gpu-memory-fraction", GPU_MEMORY_FRACTION, "--model-id", set.modelDir, ...adapterFlag(set.adaptersDir, adapterIds)]);
    }, START_TIMEOUT_MS);

    afterAll(async () => {
      await server?.stop();
    });

    /** A logprob against the reference row's log-softmax: both differ by at most twice the largest logit error. */
    function expectLogprob(ours: number, ref: LogitRows, row: number, id: number, what: string): void {
      const logits = rowOf(ref.data, ref.vocab, row);
      const maxRef = logits.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      expect(Math.abs(ours - logSoftmax(logits)[id]!), what).toBeLessThanOrEqual(2 * bound.maxAbs * maxRef);
    }

    it.each(["base", ...adapterIds])("POST /generate with details for %s matches the reference within the float16 bounds", async (variant) => {
      let compared = 0;
      for (const [index, prompt] of set.refs.prompts.entries()) {
        if (prompt.text === null) continue;
        const res = await postGreedyGenerate(server.ready.url, set, variant, prompt.text!);
        const where = `${variant}, prompt ${index}`;
        expect(res.status, where).toBe(200);
        const { details } = (await res.json()) as { details: { prefill: TgiToken[]; tokens: TgiToken[] } };

        expect(details.prefill.map((t) => t.id), where).toEqual(prompt.ids);
        const promptLogits = refs.prompt(variant, index);
        details.prefill.slice(1).forEach((token, i) => expectLogprob(token.logprob!, promptLogits, i, token.id, `${where}, prefill ${i + 1}`));
      compared += details.prefill.length - 1;

        const expected = greedyIds(set, variant, index);
        const margins = set.refs.variants[variant]!.find((v) => v.prompt === index)!.margins;
        const stepLogits = refs.steps(variant, index);
        for (let step = 0; step < expected.length; step++) {
          // From a near tie on, the engine may pick the other token and the run goes on from there.
          if (margins[step]! <= bound.margin) break;
          expect(details.tokens[step]?.id, `${where}, step ${step} (margin ${margins[step]})`).toBe(expected[step]);
          expectLogprob(details.tokens[step]!.logprob!, stepLogits, step, expected[step]!, `${where}, step ${step}`);
          compared++;
        }
      }
      expect(compared, `${variant}: some logprobs were compared`).toBeGreaterThan(0);
    });
  });
});
