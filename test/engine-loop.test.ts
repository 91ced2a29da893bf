// The engine loop's failure paths (shard/engine/llm-engine.ts): a failed step ends its own sequences only, even
// though the step started after it fails too (it names entries that never drew); a bug inside the loop ends every
// request with its error, and the adapters its steps in flight name are released only once the engine is done.
// And when the loop tells the engine that it resumes from having had nothing to run.
import { describe, expect, it } from "vitest";
import type { SeqResult, SeqStep } from "../native/addon.js";
import type { AdapterResidency } from "../shard/engine/adapter-residency.js";
import { LlmEngine, type TokenEvent } from "../shard/engine/llm-engine.js";

/** Lets the loop run what it can (it starts on a microtask, and again after each step). */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** The base model only: always in its slot. */
const BASE_ONLY: AdapterResidency = { acquire: () => undefined, release: () => undefined, versionOf: () => 0, slotOf: () => -1, listen: () => undefined };

/**
 * Steps that settle when the test says, in order, as the native chain does: a step that names entries of a step
 * that failed fails too. Every sampling entry draws token 7.
 */
class ScriptedEngine {
  readonly started: SeqStep[][] = [];
  /** How many steps had started each time the loop said it resumed from having nothing to run. */
  readonly resumedAfter: number[] = [];
  private readonly pending: ((fail: boolean) => void)[] = [];
  private previousFailed = false;

  step(seqs: SeqStep[]): Promise<SeqResult[]> {
    this.started.push(seqs);
    return new Promise((resolve, reject) =>
      this.pending.push((fail) => {
        const chained = seqs.some((s) => s.previousResult !== undefined);
        if (fail || (chained && this.previousFailed)) {
          this.previousFailed = true;
          reject(new Error(fail ? "the step failed" : "the step this one follows failed"));
          return;
        }
        this.previousFailed = false;
        resolve(seqs.map((s) => ({ token: s.sample ? 7 : -1, logprob: 0, topIds: new Int32Array(), topLogprobs: new Float32Array(), targetLogprobs: new Float32Array(), logits: new Float32Array() })));
      }),
    );
  }

  resumeFromIdle(): void {
    this.resumedAfter.push(this.started.length);
  }

  /** Settles the oldest step still running, then lets the loop go on. */
  async settle(fail = false): Promise<void> {
    this.pending.shift()!(fail);
    await settle();
  }
}

const request = (maxNewTokens: number) => ({ promptIds: Int32Array.from([1, 2, 3]), adapterId: "", maxNewTokens, sampling: { temperature: 0, topK: 0, topP: 1, seed: 0 }, topN: 0, promptLogprobs: false });

async function collect(events: AsyncIterable<TokenEvent>): Promise<{ tokens: number; finish: string | null; error: string | null }> {
  let tokens = 0;
  let finish: string | null = null;
  try {
    for await (const event of events) {
      tokens++;
      finish = event.finish?.reason ?? null;
    }
    return { tokens, finish, error: null };
  } catch (error) {
    return { tokens, finish, error: (error as Error).message };
  }
}

describe("the engine loop", () => {
  it("ends a failed step's sequences only: one admitted in the step after it, which fails with it, is computed again", async () => {
    const engine = new ScriptedEngine();
    const llm = new LlmEngine(engine, { numKvBlocks: 16, blockSize: 4, maxBatchPrefillTokens: 64, maxTotalTokens: 64, eosTokenIds: new Set(), adapters: BASE_ONLY });
    const first = collect(llm.submit(request(8)));
    await settle();
    // Step 1 is the first prompt, step 2 its decode of the token step 1 draws: both in flight.
    expect(engine.started).toHaveLength(2);
    const second = collect(llm.submit(request(3)));
    await engine.settle(); // step 1 over; step 3 starts: the first one's next decode and the second one's prompt
    expect(engine.started[2]!.map((s) => s.previousResult !== undefined)).toEqual([true, false]);
    await engine.settle(true); // step 2 fails: the first request ends with its error
    await engine.settle(); // step 3 fails with it (it names step 2's entry), yet the second request goes on
    while ((await Promise.race([second.then(() => true), settle().then(() => false)])) === false) await engine.settle();
    expect(await first).toEqual({ tokens: 1, finish: null, error: "the step failed" });
    expect(await second).toEqual({ tokens: 3, finish: "length", error: null });
    // Computed again from its prompt, in a step that names no failed one.
    expect(engine.started[3]!.map((s) => [s.startPos, s.tokens.length, s.previousResult])).toEqual([[0, 3, undefined]]);
    expect(llm.load()).toEqual({ running: 0, waiting: 0, freeKvBlocks: 16, totalKvBlocks: 16 });
  });

  it("tells the engine when it resumes from having nothing to run, before that run's first step", async () => {
    const engine = new ScriptedEngine();
    const llm = new LlmEngine(engine, { numKvBlocks: 16, blockSize: 4, maxBatchPrefillTokens: 64, maxTotalTokens: 64, eosTokenIds: new Set(), adapters: BASE_ONLY });
    expect(engine.resumedAfter).toEqual([]);
    // Submitted together: one run of two steps (both prompts, then both decodes), busy from its start to its end.
    const together = [collect(llm.submit(request(2))), collect(llm.submit(request(2)))];
    await settle();
    expect(engine.started).toHaveLength(2);
    await engine.settle();
    await engine.settle();
    expect(await Promise.all(together)).toEqual([0, 1].map(() => ({ tokens: 2, finish: "length", error: null })));
    // Idle since: the next request starts another run, which says so first.
    const later = collect(llm.submit(request(1)));
    await settle();
    await engine.settle();
    expect(await later).toEqual({ tokens: 1, finish: "length", error: null });
    expect(engine.resumedAfter).toEqual([0, 2]);
  });

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
      resumeFromIdle: () => undefined,
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
