// A CUDA slot load from an adapter's bytes in host memory (AdapterWeights.fileBytes, as the host tier hands
// them over) gives exactly the logits of the same adapter loaded from its file (mapped).
//
// Runs only where the CUDA engine can (test/helpers/cuda.ts); elsewhere it skips and says so.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadAdapterFiles } from "../shard/model/adapter.js";
import { cudaAvailable } from "./helpers/cuda.js";
import { openHarness, runStep, TestSequence } from "./helpers/engine-harness.js";
import { fixtureSets } from "./helpers/fixture-sets.js";

const cuda = cudaAvailable();
if (!cuda) console.warn("NOTE: test/cuda-file-bytes.test.ts is SKIPPED: no CUDA backend in the addon or no NVIDIA GPU.");
const set = fixtureSets().find((s) => Object.keys(s.refs.adapters).length > 0);

describe.skipIf(!cuda || set === undefined)("CUDA slot loads from host bytes", () => {
  it("an adapter loaded from its bytes in host memory gives the logits of the same adapter loaded from its file", async () => {
    const h = await openHarness(set!, { device: "cuda" });
    try {
      const id = Object.keys(set!.refs.adapters)[0]!;
      const { weights } = loadAdapterFiles(join(set!.adaptersDir, id), h.spec);
      const files = new Set(weights.pairs.flatMap((p) => [p.a.file, p.b.file]));
      const fileBytes = Object.fromEntries([...files].map((file) => [file, readFileSync(file)]));
      const fromFile = h.slots.get(id)!;
      h.engine.unloadAdapter(fromFile);
      await h.engine.loadAdapter(fromFile, { ...weights, fileBytes });
      // The slot now holds the copy from host memory; the harness loaded the same adapter from the file before.
      const ids = set!.refs.prompts[0]!.ids;
      const run = async () => {
        const seq = new TestSequence(h, fromFile);
        const [result] = await runStep(h.engine, [[seq, seq.step(ids, { returnLogits: true })]]);
        seq.release();
        return result!.logits;
      };
      const fromMemory = await run();
      h.engine.unloadAdapter(fromFile);
      await h.engine.loadAdapter(fromFile, weights);
      expect(Array.from(fromMemory)).toEqual(Array.from(await run()));
    } finally {
      h.engine.close();
    }
  });
});
