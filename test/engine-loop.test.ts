// The engine loop's own failure path (shard/engine/llm-engine.ts): a bug inside the loop ends every request with
// its error, and the adapters its steps in flight name are released only once the engine is done with them.
import { describe, expect, it } from "vitest";
import type { SeqResult, SeqStep } from "../native/addon.js";
import type { AdapterResidency } from "../shard/engine/adapter-residency.js";
import { LlmEngine, type TokenEvent } from "../shard/engine/llm-engine.js";

/** Lets the loop run what it can (it starts on a microtask, and again after each step). */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe("the engine loop", () => {
  it("ends every request when the loop itself fails, and releases the adapter once the step in flight is over", async () => {
    // The adapter is in slot 0 until the prompt's step has started and in none when the next is planned: a residency
    // that contradicts itself, which the loop reports as a bug of its own.
    const held: (() => void)[] = [];
    let releases = 0;
    const residency: AdapterResidency = {
      acquire: () => undefined,
      release: () => void releases++,
      versionOf: () => 0,
      slotOf: () => (held.length === 0 ? 0 : null),
      listen: () => undefined,
    };
    const engine = {
      step: (steps: SeqStep[]) =>
        new Promise<SeqResult[]>((resolve) =>
          held.push(() => resolve(steps.map(() => ({ token: 7, logprob: 0, topIds: new Int32Array(), topLogprobs: new Float32Array(), targetLogprobs: new Float32Array(), logits: new Float32Array() })))),
        ),
    };
    const llm = new LlmEngine(engine, { numKvBlocks: 16, blockSize: 4, maxBatchPrefillTokens: 64, maxTotalTokens: 64, eosTokenIds: new Set(), adapters: residency });
    const events: TokenEvent[] = [];
    const outcome = (async () => {
      for await (const event of llm.submit({ promptIds: Int32Array.from([1, 2, 3]), adapterId: "a", maxNewTokens: 4, sampling: { temperature: 0, topK: 0, topP: 1, seed: 0 }, topN: 0, promptLogprobs: false })) events.push(event);
    })();
    await expect(outcome).rejects.toThrow(/scheduled before its adapter "a" was in a slot/);
    expect(events).toEqual([]);
    // The prompt's step still holds slot 0 in the engine: the adapter stays acquired until that step is over.
    expect(held).toHaveLength(1);
    expect(releases).toBe(0);
    held[0]!();
    await settle();
    expect(releases).toBe(1);
    expect(llm.load()).toEqual({ running: 0, waiting: 0, freeKvBlocks: 16, totalKvBlocks: 16 });
  });
});
