// Admission control (shard/engine/admission.ts): past --max-concurrent-requests requests queued or running, or
// past --max-queued-tokens prompt tokens not yet scheduled, a new request is refused at once; one admitted is
// never dropped, and once room frees new requests are taken again.
import { describe, expect, it } from "vitest";
import type { SeqResult, SeqStep } from "../native/addon.js";
import type { AdapterResidency } from "../shard/engine/adapter-residency.js";
import { belowFairShare, checkAdmission, fairnessHeadroom, OverloadedError } from "../shard/engine/admission.js";
import { LlmEngine, type LoopEngine, type TokenEvent } from "../shard/engine/llm-engine.js";
import type { SequenceRequest } from "../shard/engine/sequence.js";

const BLOCK_SIZE = 4;

/** The base model only: always in its slot. */
const BASE_ONLY: AdapterResidency = {
  acquire: () => undefined,
  release: () => undefined,
  versionOf: () => 0,
  slotOf: () => -1,
  listen: () => undefined,
};

/** An engine whose steps wait until the test lets them through, each sampling chunk drawing token 7. */
function gatedEngine(): LoopEngine & { release: () => void } {
  const pending: (() => void)[] = [];
  return {
    step: (steps: SeqStep[]) =>
      new Promise((resolve) =>
        pending.push(() =>
          resolve(steps.map((s) => ({ token: s.sample ? 7 : -1, logprob: 0, topIds: new Int32Array(), topLogprobs: new Float32Array(), targetLogprobs: new Float32Array(), logits: new Float32Array() }))),
        ),
      ),
    resumeFromIdle: () => undefined,
    release: () => pending.splice(0).forEach((go) => go()),
  };
}

function request(promptTokens: number, maxNewTokens: number, adapterId = ""): SequenceRequest {
  return { promptIds: new Int32Array(promptTokens).fill(3), adapterId, maxNewTokens, sampling: { temperature: 0, topK: 0, topP: 1, seed: 0 }, topN: 0, promptLogprobs: false };
}

async function drain(events: AsyncIterable<TokenEvent>): Promise<TokenEvent[]> {
  const seen: TokenEvent[] = [];
  for await (const event of events) seen.push(event);
  return seen;
}

/** Lets the loop schedule what is queued (it starts on a microtask, and again after each step). */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe("checkAdmission", () => {
  const limits = { maxConcurrentRequests: 2, maxQueuedTokens: 10 };
  /** `count` requests of one adapter, "a". */
  const byA = (count: number) => new Map([["a", count]]);

  it("admits below both limits, up to the queued-token bound exactly", () => {
    expect(() => checkAdmission(limits, { admitted: 0, queuedTokens: 0, admittedByAdapter: byA(0) }, "a", 10)).not.toThrow();
    expect(() => checkAdmission(limits, { admitted: 1, queuedTokens: 4, admittedByAdapter: byA(1) }, "a", 6)).not.toThrow();
  });

  it("refuses at the concurrency limit, and past the queued-token bound, an adapter that holds them alone", () => {
    expect(() => checkAdmission(limits, { admitted: 2, queuedTokens: 0, admittedByAdapter: byA(2) }, "a", 1)).toThrow(OverloadedError);
    expect(() => checkAdmission(limits, { admitted: 2, queuedTokens: 0, admittedByAdapter: byA(2) }, "a", 1)).toThrow(/limit of 2 concurrent requests; try/);
    expect(() => checkAdmission(limits, { admitted: 1, queuedTokens: 5, admittedByAdapter: byA(1) }, "a", 6)).toThrow(OverloadedError);
    expect(() => checkAdmission(limits, { admitted: 1, queuedTokens: 5, admittedByAdapter: byA(1) }, "a", 6)).toThrow(/limit of 10; try/);
  });

  it("lets an adapter below its fair share past a bound flooded by another, by an eighth of the bound and no more", () => {
    const wide = { maxConcurrentRequests: 16, maxQueuedTokens: 80 };
    const flood = { admitted: 16, queuedTokens: 80, admittedByAdapter: new Map([["a", 16]]) };
    // The flooding adapter is refused at both bounds; another gets in (2 of 16 requests, 10 of 80 tokens).
    expect(() => checkAdmission(wide, flood, "a", 1)).toThrow(/limit of 16 concurrent requests; try/);
    expect(() => checkAdmission(wide, flood, "b", 10)).not.toThrow();
    expect(() => checkAdmission(wide, flood, "b", 11)).toThrow(/limit of 80 and the headroom of 10 for adapters below their fair share/);
    const withB = { admitted: 18, queuedTokens: 80, admittedByAdapter: new Map([["a", 16], ["b", 2]]) };
    expect(() => checkAdmission(wide, withB, "b", 1)).toThrow(/limit of 16 concurrent requests and the headroom of 2/);
    expect(() => checkAdmission(wide, withB, "c", 1)).toThrow(OverloadedError);
    // An adapter alone never has headroom: the bounds are all its own.
    expect(belowFairShare(wide, { admitted: 3, queuedTokens: 0, admittedByAdapter: new Map([["a", 3], ["idle", 0]]) }, "a")).toBe(false);
    expect(() => checkAdmission(wide, { admitted: 3, queuedTokens: 80, admittedByAdapter: new Map([["a", 3]]) }, "a", 1)).toThrow(/limit of 80; try/);
  });

  it("the fair share is the request bound over the adapters holding requests, the asking one counted", () => {
    const wide = { maxConcurrentRequests: 12, maxQueuedTokens: 80 };
    const load = { admitted: 9, queuedTokens: 0, admittedByAdapter: new Map([["a", 5], ["b", 4], ["idle", 0]]) };
    expect(belowFairShare(wide, load, "a")).toBe(true); // 5 < 12 / 2
    expect(belowFairShare(wide, load, "c")).toBe(true); // 0 < 12 / 3
    expect(belowFairShare(wide, { ...load, admittedByAdapter: new Map([["a", 5]]) }, "c")).toBe(true); // 0 < 12 / 2
    expect(belowFairShare(wide, { ...load, admittedByAdapter: new Map([["a", 6], ["b", 3]]) }, "a")).toBe(false); // 6 = 12 / 2
    expect(fairnessHeadroom(12)).toBe(2);
    expect(fairnessHeadroom(3)).toBe(1);
  });
});

describe("LlmEngine admission", () => {
  it("refuses a request past --max-concurrent-requests, and takes one again once a request ends", async () => {
    const gate = gatedEngine();
    const llm = new LlmEngine(gate, { numKvBlocks: 64, blockSize: BLOCK_SIZE, maxBatchPrefillTokens: 64, maxTotalTokens: 64, eosTokenIds: new Set(), adapters: BASE_ONLY, maxConcurrentRequests: 2 });
    const first = new AbortController();
    const running = [llm.submit(request(3, 2), first.signal), llm.submit(request(3, 2))];
    expect(() => llm.submit(request(3, 2))).toThrow(OverloadedError);
    expect(llm.load()).toMatchObject({ running: 0, waiting: 2 });

    first.abort();
    const third = llm.submit(request(3, 2));
    const outcomes = Promise.all([drain(running[1]!), drain(third)]);
    await settle();
    gate.release();
    await settle();
    gate.release();
    const [second, last] = await outcomes;
    // Both admitted requests ran to their length: none was dropped to make room.
    expect(second.map((e) => e.finish?.reason ?? null)).toEqual([null, "length"]);
    expect(last.map((e) => e.finish?.reason ?? null)).toEqual([null, "length"]);
    await expect(drain(running[0]!)).resolves.toEqual([]);
    await llm.close();
  });

  it("refuses a request whose prompt would take the queued tokens past --max-queued-tokens; the queued ones all finish", async () => {
    const gate = gatedEngine();
    // Two blocks of four: room for one sequence of 5 + 3 tokens, so the others wait in the queue.
    const llm = new LlmEngine(gate, { numKvBlocks: 2, blockSize: BLOCK_SIZE, maxBatchPrefillTokens: 64, maxTotalTokens: 8, eosTokenIds: new Set(), adapters: BASE_ONLY, maxQueuedTokens: 10 });
    const admitted = [llm.submit(request(5, 3))];
    await settle(); // the first is scheduled: its prompt no longer counts as queued
    admitted.push(llm.submit(request(5, 3)), llm.submit(request(5, 3)));
    expect(llm.load()).toMatchObject({ running: 1, waiting: 2 });
    expect(() => llm.submit(request(1, 3))).toThrow(/queue holds 10 prompt tokens; 1 more would pass its limit of 10/);

    const outcomes = Promise.all(admitted.map(drain));
    for (let step = 0; step < 9; step++) {
      await settle();
      gate.release();
    }
    for (const events of await outcomes) expect(events.map((e) => e.finish?.reason ?? null)).toEqual([null, null, "length"]);
    // Room again: a new request is taken.
    const later = drain(llm.submit(request(5, 1)));
    await settle();
    gate.release();
    expect((await later).map((e) => e.finish?.reason)).toEqual(["length"]);
    await llm.close();
  });
  it("a flood on one adapter fills the bound; another adapter's request is still taken and scheduled ahead of the flood's backlog", async () => {
    const gate = gatedEngine();
    // KV room for 2 sequences of 3 + 1 tokens (a block each) at once: the rest wait in the queue.
    const llm = new LlmEngine(gate, { numKvBlocks: 2, blockSize: BLOCK_SIZE, maxBatchPrefillTokens: 64, maxTotalTokens: 8, eosTokenIds: new Set(), adapters: BASE_ONLY, maxConcurrentRequests: 8 });
    const flood = Array.from({ length: 8 }, () => llm.submit(request(3, 1, "sql")));
    expect(() => llm.submit(request(3, 1, "sql"))).toThrow(/limit of 8 concurrent requests; try/);
    const scheduledFirst: string[] = [];
    const other = llm.submit(request(3, 1, "tone"), undefined, { scheduled: () => scheduledFirst.push("tone"), preempted: () => undefined });
    expect(() => llm.submit(request(3, 1, "tone"))).toThrow(/headroom of 1/);
    const outcomes = Promise.all([...flood, other].map(drain));
    await settle();
    // The first step took the flood's first request and, next in the fair queue, the other adapter's.
    expect(scheduledFirst).toEqual(["tone"]);
    expect(llm.load()).toMatchObject({ running: 2, waiting: 7 });
    for (let step = 0; step < 20; step++) {
      gate.release();
      await settle();
    }
    // Every request admitted finished: none was dropped for the other's sake.
    for (const events of await outcomes) expect(events.at(-1)?.finish?.reason).toBe("length");
    await llm.close();
  });
});
