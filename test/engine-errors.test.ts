// Bad input is refused with a message and never crashes the process or poisons the engine; adapter slots and
// concurrent calls follow the contract in native/addon.ts.
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createEngine, loadAddon, type EngineOptions, type SeqStep, type TensorRef } from "../native/addon.js";
import { loadAdapterFiles } from "../shard/model/adapter.js";
import { loadModelFiles } from "../shard/model/model-files.js";
import { fixtureSets } from "./helpers/fixture-sets.js";
import { expectRowClose, openHarness, runStep, TestSequence, type Harness } from "./helpers/engine-harness.js";
import { rowOf } from "./helpers/refs.js";

const REF_TOLERANCE = 1e-4;

const sets = fixtureSets();

describe("engine errors and life cycle", () => {
  describe.each(sets)("$name", (set) => {
    let h: Harness;
    const model = () => loadModelFiles(set.modelDir);
    const adapterIds = Object.keys(set.refs.adapters);
    const options = (overrides: Partial<EngineOptions> = {}): EngineOptions => {
      const { spec, weights } = model();
      return { device: "cpu", rank: 0, world: 1, spec, weights, numKvBlocks: 64, blockSize: 4, maxLoras: 2, maxLoraRank: 64, threads: 1, ...overrides };
    };

    beforeAll(async () => {
      h = await openHarness(set);
    });
    afterAll(() => h.engine.close());

    /** Prefill of prompt 0 with `variant` gives the reference's prompt logits: the engine still works. */
    async function expectWorking(variant: string) {
      const ids = set.refs.prompts[0]!.ids;
      const seq = new TestSequence(h, h.slots.get(variant)!);
      const [result] = await runStep(h.engine, [[seq, seq.step(ids, { returnLogits: true })]]);
      seq.release();
      const ref = h.ref.prompt(variant, 0);
      const vocab = h.spec.vocabSize;
      expectRowClose(rowOf(result!.logits, vocab, ids.length - 1), rowOf(ref.data, vocab, ids.length - 1), REF_TOLERANCE, `${variant} after errors`);
    }

    it("refuses a bad step with a message and keeps working", async () => {
      const ids = set.refs.prompts[0]!.ids;
      const seq = new TestSequence(h, -1);
      const good = seq.step(ids);
      const vocab = h.spec.vocabSize;
      const freeSlot = adapterIds.length; // openHarness fills slots [0, adapters)
      const bad: [Partial<SeqStep> | Record<string, unknown>, RegExp][] = [
        [{ blockTable: good.blockTable.subarray(0, 1) }, /block table has 1 blocks/],
        [{ blockTable: Int32Array.from(good.blockTable, () => 100000) }, /outside the cache/],
        [{ tokens: Int32Array.from([...ids.slice(0, -1), vocab]) }, /outside the vocabulary/],
        [{ tokens: Int32Array.from([-1]) }, /outside the vocabulary/],
        [{ startPos: h.spec.maxPositionEmbeddings - 1 }, /max_position_embeddings/],
        [{ adapterSlot: 99 }, /adapter slot 99 is outside/],
        [{ tokens: new Int32Array(0) }, /no tokens/],
        [{ logprobTargets: Int32Array.from([1]) }, /logprobTargets/],
        [{ tokens: [1, 2, 3] }, /tokens must be an Int32Array/],
        [{ sampling: { temperature: -1, topK: 0, topP: 1, seed: 0, draw: 0 } }, /temperature/],
        [{ sampling: { temperature: 1, topK: 0, topP: 0, seed: 0, draw: 0 } }, /topP/],
      ];
      if (freeSlot < h.engine.info().maxLoras) bad.push([{ adapterSlot: freeSlot }, /holds no loaded adapter/]);
      for (const [change, message] of bad) {
        await expect(h.engine.step([good, { ...good, ...change } as SeqStep]), String(message)).rejects.toThrow(message);
      }
      await expect(h.engine.step("nope" as unknown as SeqStep[])).rejects.toThrow(/seqs must be an array/);
      seq.release();
      await expectWorking("base");
    });

    it("runs two steps in flight in the order started, the second running the token the first draws, and refuses a third", async () => {
      const ids = set.refs.prompts[0]!.ids;
      const neighbour = set.refs.prompts[1]!.ids;
      // The penalty looks at the prompt and the drawn token: the engine must append the token it passes on.
      const penalised = { sampling: { temperature: 0, topK: 0, topP: 1, seed: 0, draw: 1, repetitionPenalty: 1.5 }, penaltyPromptLength: ids.length };
      // One step after the other, the JS side passing the drawn token on.
      const serial = new TestSequence(h, -1);
      const [drawnSerially] = await runStep(h.engine, [[serial, serial.step(ids, { sample: true })]]);
      const token = drawnSerially!.token;
      const [nextSerially] = await runStep(h.engine, [[serial, serial.step([token], { sample: true, returnLogits: true, ...penalised, penaltyTokens: Int32Array.from([...ids, token]) })]]);
      serial.release();

      // Chained: the decode starts before the prompt's step is over and names the entry that draws its token.
      const other = new TestSequence(h, -1);
      const seq = new TestSequence(h, -1);
      const first = h.engine.step([other.step(neighbour), seq.step(ids, { sample: true })]);
      seq.advance(ids.length);
      // The block table is sized for the one token the step runs; tokens itself stays empty.
      const taking = (previousResult: number, options: Partial<SeqStep> = {}): SeqStep => ({ ...seq.step([0], { sample: true, ...options }), tokens: new Int32Array(0), previousResult });
      const decode = taking(1, { returnLogits: true, ...penalised, penaltyTokens: Int32Array.from(ids) });
      const second = h.engine.step([decode]);
      const spare = new TestSequence(h, -1);
      await expect(h.engine.step([spare.step(neighbour)])).rejects.toThrow(/already 2 steps in flight/);
      const [firstResults, [chained]] = await Promise.all([first, second]);
      expect(firstResults[1]!.token).toBe(token);
      expect(chained!.token).toBe(nextSerially!.token);
      // The neighbour's rows change the order of the CPU's sums, not the numbers beyond float32 rounding.
      expectRowClose(chained!.logits, nextSerially!.logits, 1e-5, "chained decode");

      for (const s of [other, seq, spare]) s.release();

      // After a step of two entries, only entry 1 draws: entry 0 and entry 5 name nothing.
      const [neighbourAgain, again] = [new TestSequence(h, -1), new TestSequence(h, -1)];
      const takingAfter = (previousResult: number): SeqStep => ({ ...again.step([0], { sample: true }), tokens: new Int32Array(0), previousResult });
      const refusedAfterTwo = async (previousResult: number, message: RegExp): Promise<void> => {
        await h.engine.step([neighbourAgain.step(neighbour), again.step(ids, { sample: true })]);
        neighbourAgain.advance(neighbour.length);
        again.advance(ids.length);
        await expect(h.engine.step([takingAfter(previousResult)])).rejects.toThrow(message);
        // The refused step ran nothing: both sequences start over.
        neighbourAgain.release();
        again.release();
        neighbourAgain.position = 0;
        again.position = 0;
      };
      await refusedAfterTwo(0, /previousResult 0 names no token/);
      await refusedAfterTwo(5, /previousResult 5 names no token/);
      // An entry of its own tokens and the previous step's token at once is refused.
      await h.engine.step([neighbourAgain.step(neighbour), again.step(ids, { sample: true })]);
      neighbourAgain.advance(neighbour.length);
      again.advance(ids.length);
      await expect(h.engine.step([{ ...takingAfter(1), tokens: Int32Array.from([1]) }])).rejects.toThrow(/has no tokens of its own/);
      // And after a refused step, even entry 1 of the step before that names nothing: the refused one came between.
      await expect(h.engine.step([takingAfter(1)])).rejects.toThrow(/previousResult 1 names no token/);
      neighbourAgain.release();
      again.release();
      await expectWorking("base");
    });

    it("counts the time between steps, and the part of it before the next step was started", async () => {
      const ids = set.refs.prompts[0]!.ids;
      const run = async (chained: boolean): Promise<{ gap: number; wait: number }> => {
        const before = h.engine.info();
        const a = new TestSequence(h, -1);
        const b = new TestSequence(h, -1);
        const first = h.engine.step([a.step(ids)]);
        // Serially, the JS thread starts the second step 50 ms after the first is over: the device waited for it.
        if (!chained) await first.then(() => new Promise((resolve) => setTimeout(resolve, 50)));
        await Promise.all([first, h.engine.step([b.step(ids)])]);
        a.release();
        b.release();
        const after = h.engine.info();
        return { gap: after.stepGapSeconds - before.stepGapSeconds, wait: after.loopWaitSeconds - before.loopWaitSeconds };
      };
      const serial = await run(false);
      expect(serial.wait).toBeGreaterThanOrEqual(0.045); // Node's timers may fire a little early by this clock
      expect(serial.wait).toBeLessThanOrEqual(serial.gap);
      // Started while the first ran: the device waits for nobody (the gap since the previous run's step aside).
      const chained = await run(true);
      expect(chained.wait).toBeLessThanOrEqual(chained.gap);
      expect(chained.gap - chained.wait).toBeLessThan(0.05);
      expect(chained.wait).toBeLessThan(serial.wait - 0.035);
    });

    it("leaves an idle time out of the gap and the wait once the loop says it resumes from it", async () => {
      const ids = set.refs.prompts[0]!.ids;
      const pauseMs = 100;
      // A step, then nothing to run for the pause, then the next step: what the second one adds.
      const afterPause = async (resumed: boolean): Promise<{ gap: number; wait: number }> => {
        const first = new TestSequence(h, -1);
        await h.engine.step([first.step(ids)]);
        first.release();
        const before = h.engine.info();
        await new Promise((resolve) => setTimeout(resolve, pauseMs));
        if (resumed) h.engine.resumeFromIdle();
        const next = new TestSequence(h, -1);
        await h.engine.step([next.step(ids)]);
        next.release();
        const after = h.engine.info();
        return { gap: after.stepGapSeconds - before.stepGapSeconds, wait: after.loopWaitSeconds - before.loopWaitSeconds };
      };
      // Not told: the pause is time the device waited for the loop.
      const untold = await afterPause(false);
      expect(untold.wait).toBeGreaterThanOrEqual(0.095); // Node's timers may fire a little early by this clock
      // Told: the gap starts at the resume, so only the step's own start-up is left of it.
      const resumed = await afterPause(true);
      expect(resumed.gap).toBeLessThan(0.05);
      expect(resumed.wait).toBeLessThanOrEqual(resumed.gap);
    });

    it("keeps adapter slots consistent: busy slots, unload during a step, reload", async () => {
      const variant = adapterIds[0]!;
      const slot = h.slots.get(variant)!;
      const weights = loadAdapterFiles(join(set.adaptersDir, variant), h.spec).weights;
      await expect(h.engine.loadAdapter(slot, weights)).rejects.toThrow(/is not free/);
      await expect(h.engine.loadAdapter(h.engine.info().maxLoras, weights)).rejects.toThrow(/outside/);

      const seq = new TestSequence(h, slot);
      const running = h.engine.step([seq.step(set.refs.prompts[0]!.ids)]);
      expect(() => h.engine.unloadAdapter(slot)).toThrow(/used by a step in flight/);
      await running;
      seq.release();
      h.engine.unloadAdapter(slot);
      expect(() => h.engine.unloadAdapter(slot)).toThrow(/is free/);
      const user = new TestSequence(h, slot);
      await expect(h.engine.step([user.step(set.refs.prompts[0]!.ids)])).rejects.toThrow(/holds no loaded adapter/);
      user.release();

      // Reload while a base step runs: the load may overlap the step; the slot is usable once it resolves.
      const base = new TestSequence(h, -1);
      const [, loaded] = await Promise.all([h.engine.step([base.step(set.refs.prompts[1]!.ids)]), h.engine.loadAdapter(slot, weights)]);
      expect(loaded).toBeUndefined();
      base.release();
      await expectWorking(variant);
    });

    it("refuses an adapter that does not fit and frees the slot again", async () => {
      const engine = createEngine(options({ maxLoraRank: 1 }));
      try {
        const weights = loadAdapterFiles(join(set.adaptersDir, adapterIds[0]!), h.spec).weights;
        await expect(engine.loadAdapter(0, weights)).rejects.toThrow(/maxLoraRank/);
        const first = weights.pairs[0]!;
        const transposed = { ...weights, rank: 1, pairs: [{ ...first, a: { ...first.a, shape: [...first.a.shape].reverse() } }] };
        await expect(engine.loadAdapter(0, transposed)).rejects.toThrow(new RegExp(`${first.a.file}.*lora_A has shape`));
        const outOfFile = { ...weights, rank: 1, pairs: [{ ...first, a: { ...first.a, shape: [1, first.a.shape[1]!], nbytes: first.a.nbytes / weights.rank, offset: 1e12 } }] };
        await expect(engine.loadAdapter(0, outOfFile)).rejects.toThrow(/outside the file/);
        const badLayer = { ...weights, rank: 1, pairs: [{ ...first, layer: h.spec.numLayers }] };
        await expect(engine.loadAdapter(0, badLayer)).rejects.toThrow(/names a layer the base .* does not have/);
        expect(() => engine.unloadAdapter(0)).toThrow(/is free/);
      } finally {
        engine.close();
      }
    });

    it("refuses bad engine options with messages naming the file", () => {
      const { weights } = model();
      const gate = weights.layers[0]!.gate;
      expect(gate.shape[0], "a transposed gate_proj must differ").not.toBe(gate.shape[1]);
      const wrongShape = { ...weights, layers: [{ ...weights.layers[0]!, gate: { ...gate, shape: [...gate.shape].reverse() } }, ...weights.layers.slice(1)] };
      expect(() => createEngine(options({ weights: wrongShape }))).toThrow(new RegExp(`${gate.file}: layer 0 gate_proj has shape`));
      const outOfFile = { ...weights, finalNorm: { ...weights.finalNorm, offset: 1e12 } };
      expect(() => createEngine(options({ weights: outOfFile }))).toThrow(/norm: bytes .* lie outside the file/);
      const missingFile = { ...weights, embedTokens: { ...weights.embedTokens, file: "/nonexistent/model.safetensors" } };
      expect(() => createEngine(options({ weights: missingFile }))).toThrow(/\/nonexistent\/model.safetensors: cannot open/);
      // More ranks than query heads cannot split them: refused before any rank waits for the others.
      const world = model().spec.numHeads + 1;
      expect(() => createEngine(options({ world, rank: 0 }))).toThrow(
        new RegExp(`cannot be split over ${world} ranks \\(num_attention_heads ${world - 1} does not divide by it.*group sizes that work: 1(, \\d+)*$`),
      );
      expect(() => createEngine(options({ world: 2, rank: 2 }))).toThrow(/rank 2 is not in a group of 2/);
      expect(() => createEngine(options({ blockSize: 0 }))).toThrow(/blockSize/);
      expect(() => createEngine(options({ numKvBlocks: 0 }))).toThrow(/numKvBlocks 0 \(size the cache from GPU memory\) needs device "cuda"/);
      expect(() => createEngine(options({ gpuMemoryFraction: 0 }))).toThrow(/gpuMemoryFraction must be in \(0, 1\]/);
      expect(() => createEngine(options({ maxLoras: -1 }))).toThrow(/maxLoras -1 \(size the adapter slots from GPU memory\) needs device "cuda"/);
      expect(() => createEngine(options({ maxLoras: -2 }))).toThrow(/maxLoras/);
      expect(() => createEngine(options({ adapterMemoryFraction: 1 }))).toThrow(/adapterMemoryFraction must be in \(0, 1\)/);
      // A build without the CUDA backend says so (a CUDA build runs test/cuda-engine.test.ts instead).
      if (!loadAddon().hasCuda()) expect(() => createEngine(options({ device: "cuda" }))).toThrow(/no CUDA backend/);
    });

    it("reports what it holds and refuses calls once closed", async () => {
      const engine = createEngine(options());
      const { weights } = model();
      const tensors = [weights.embedTokens, weights.finalNorm, ...(weights.lmHead ? [weights.lmHead] : []), ...weights.layers.flatMap((l): TensorRef[] => Object.values(l))];
      const floats = tensors.reduce((sum, t) => sum + t.shape.reduce((a, d) => a * d, 1), 0);
      // A new engine has run no step and spent nothing in collectives.
      expect(engine.info()).toEqual({ device: "cpu", numKvBlocks: 64, blockSize: 4, maxLoras: 2, weightBytes: 4 * floats, steps: 0, stepSeconds: 0, collectiveSeconds: 0, stepGapSeconds: 0, loopWaitSeconds: 0 });
      engine.close();
      expect(() => engine.info()).toThrow(/closed/);
      await expect(engine.step([])).rejects.toThrow(/closed/);
    });
  });
});
