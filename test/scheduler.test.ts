// The scheduler and block manager on their own: who runs each step, how many tokens, which blocks.
import { describe, expect, it } from "vitest";
import { BlockManager } from "../shard/engine/block-manager.js";
import { Scheduler, type ScheduledChunk } from "../shard/engine/scheduler.js";
import { Sequence } from "../shard/engine/sequence.js";
import { runStep } from "./helpers/scheduler-step.js";

function sequence(promptLength: number, maxNewTokens = 8, adapterId = ""): Sequence {
  return new Sequence({
    promptIds: Int32Array.from({ length: promptLength }, (_, i) => i + 1),
    adapterId,
    maxNewTokens,
    sampling: { temperature: 0, topK: 0, topP: 1, seed: 0 },
    topN: 0,
    promptLogprobs: false,
  });
}

/** Every chunk's positions must lie inside its block table, and no block may belong to two sequences. */
function expectBlocksConsistent(chunks: ScheduledChunk[], blockSize: number): void {
  const owners = new Map<number, number>();
  for (const { seq, startPos, numTokens } of chunks) {
    expect(seq.blockTable.length * blockSize).toBeGreaterThanOrEqual(startPos + numTokens);
    for (const id of seq.blockTable) {
      expect(owners.get(id) ?? seq.id).toBe(seq.id);
      owners.set(id, seq.id);
    }
  }
}

describe("BlockManager", () => {
  it("grows a table block by block and takes them back", () => {
    const blocks = new BlockManager(4, 16);
    const table: number[] = [];
    blocks.grow(table, 1);
    expect(table).toEqual([0]);
    blocks.grow(table, 16);
    expect(table).toEqual([0]);
    blocks.grow(table, 17);
    expect(table).toEqual([0, 1]);
    expect(blocks.freeCount).toBe(2);
    expect(blocks.canGrow(table, 64)).toBe(true);
    expect(blocks.canGrow(table, 65)).toBe(false);
    expect(blocks.capacityWithFree(table)).toBe(64);
    blocks.release(table);
    expect(table).toEqual([]);
    expect(blocks.freeCount).toBe(4);
  });

  it("refuses to hand out more blocks than are free, and a block returned twice", () => {
    const blocks = new BlockManager(2, 4);
    const table: number[] = [];
    expect(() => blocks.grow(table, 9)).toThrow(/3 blocks needed, 2 free/);
    expect(table).toEqual([]);
    blocks.grow(table, 4);
    const copy = [...table];
    blocks.release(table);
    expect(() => blocks.release(copy)).toThrow(/released while not in use/);
  });
});

describe("Scheduler", () => {
  it("keeps the prompt tokens of a step within the budget, splitting the prompt that does not fit", () => {
    const scheduler = new Scheduler(new BlockManager(64, 4), 16);
    const [a, b, c] = [sequence(10), sequence(10), sequence(10)];
    for (const s of [a, b, c]) scheduler.add(s);
    const first = scheduler.schedule();
    expect(first.map((ch) => [ch.seq, ch.startPos, ch.numTokens, ch.sample])).toEqual([
      [a, 0, 10, true],
      [b, 0, 6, false],
    ]);
    expect(scheduler.numWaiting).toBe(1);
    expect(c.status).toBe("waiting");
  });

  it("computes a long prompt in chunks across steps, sampling only when the prompt is complete", () => {
    const scheduler = new Scheduler(new BlockManager(64, 4), 16);
    const seq = sequence(40);
    scheduler.add(seq);
    const steps = [runStep(scheduler), runStep(scheduler), runStep(scheduler), runStep(scheduler)];
    expect(steps.map((chunks) => chunks.map((ch) => [ch.startPos, ch.numTokens, ch.sample]))).toEqual([
      [[0, 16, false]],
      [[16, 16, false]],
      [[32, 8, true]],
      [[40, 1, true]],
    ]);
    expect(seq.blockTable).toHaveLength(11);
  });

  it("runs every decode token whatever the budget, and mixes new prompt chunks in", () => {
    const blockSize = 4;
    const scheduler = new Scheduler(new BlockManager(64, blockSize), 4);
    const decoders = [sequence(2), sequence(2), sequence(2), sequence(2), sequence(2), sequence(2)];
    for (const s of decoders) scheduler.add(s);
    for (let i = 0; i < 3; i++) runStep(scheduler); // 2 prompts per step under a budget of 4
    expect(decoders.every((s) => s.generated.length > 0)).toBe(true);
    const late = sequence(9);
    scheduler.add(late);
    const chunks = runStep(scheduler);
    expectBlocksConsistent(chunks, blockSize);
    const decodes = chunks.filter((ch) => ch.seq !== late);
    expect(decodes).toHaveLength(6);
    expect(decodes.every((ch) => ch.numTokens === 1 && ch.sample)).toBe(true);
    expect(chunks.find((ch) => ch.seq === late)).toMatchObject({ startPos: 0, numTokens: 4, sample: false });
  });

  it("frees a sequence's blocks at once when it finishes or is cancelled, waiting or running", () => {
    const blocks = new BlockManager(16, 4);
    const scheduler = new Scheduler(blocks, 64);
    const [done, cancelled, queued] = [sequence(9), sequence(30), sequence(40)];
    for (const s of [done, cancelled, queued]) scheduler.add(s);
    runStep(scheduler);
    expect(queued.status).toBe("waiting"); // 40 more tokens do not fit the 6 blocks left
    expect(blocks.freeCount).toBe(16 - 3 - 8);
    scheduler.finish(done, "eos_token");
    scheduler.finish(cancelled, "cancelled");
    expect(blocks.freeCount).toBe(16);
    expect([done.status, done.finishReason, cancelled.finishReason]).toEqual(["finished", "eos_token", "cancelled"]);
    scheduler.finish(queued, "cancelled");
    expect(scheduler.hasWork()).toBe(false);
    expect(scheduler.schedule()).toEqual([]);
  });

  it("admits a prompt only when the free blocks hold all of it", () => {
    const blocks = new BlockManager(4, 4);
    const scheduler = new Scheduler(blocks, 64);
    const [first, second] = [sequence(12, 4), sequence(8, 4)];
    scheduler.add(first);
    scheduler.add(second);
    expect(runStep(scheduler).map((ch) => ch.seq)).toEqual([first]);
    expect(second.status).toBe("waiting");
    scheduler.finish(first, "length");
    expect(runStep(scheduler).map((ch) => [ch.seq, ch.numTokens])).toEqual([[second, 8]]);
  });

  it("preempts the newest sequence when decoding runs out of blocks, and recomputes it from the start", () => {
    const blockSize = 4;
    const blocks = new BlockManager(4, blockSize);
    const scheduler = new Scheduler(blocks, 64);
    const [older, newer] = [sequence(4, 12), sequence(4, 12)];
    scheduler.add(older);
    scheduler.add(newer);
    runStep(scheduler); // both prompts: 1 block each, first token drawn
    runStep(scheduler); // both grow into a second block
    for (let i = 0; i < 3; i++) runStep(scheduler);
    // Both hold 8 tokens in 2 blocks each and the cache is full: the next decode needs a fifth block.
    expect([older.numTokens, newer.numTokens, blocks.freeCount]).toEqual([9, 9, 0]);
    const chunks = runStep(scheduler);
    expect(chunks.map((ch) => ch.seq)).toEqual([older]);
    expect(newer.status).toBe("waiting");
    expect(newer.blockTable).toEqual([]);
    expect(newer.numCachedTokens).toBe(0);
    expect(older.blockTable).toHaveLength(3);
    // When the older one ends, the preempted one comes back and computes prompt + generated tokens again.
    scheduler.finish(older, "length");
    const resumed = scheduler.schedule();
    expect(resumed.map((ch) => [ch.seq, ch.startPos, ch.numTokens, ch.sample])).toEqual([[newer, 0, 9, true]]);
    expect(Array.from(newer.tokens(0, 9))).toEqual([1, 2, 3, 4, 7, 7, 7, 7, 7]);
  });

  it("plans a step while the one before is in flight: the token being drawn is run next, the last one is not", () => {
    const blocks = new BlockManager(8, 4);
    const scheduler = new Scheduler(blocks, 64);
    const seq = sequence(4, 2);
    scheduler.add(seq);
    // The prompt's step, not yet over: its positions count as cached and its token as awaited.
    const [prompt] = scheduler.schedule();
    expect([prompt!.startPos, prompt!.numTokens, prompt!.sample]).toEqual([0, 4, true]);
    expect([seq.numCachedTokens, seq.awaitedTokens, seq.numTokens, seq.knownTokens]).toEqual([4, 1, 5, 4]);
    // The next step runs the awaited token (position 4) and draws the second and last one.
    const [decode] = scheduler.schedule();
    expect([decode!.seq, decode!.startPos, decode!.numTokens, decode!.sample]).toEqual([seq, 4, 1, true]);
    expect(seq.awaitedTokens).toBe(2);
    // Both of its tokens are being drawn: nothing more is planned for it, though it is still running.
    expect(seq.allDrawn).toBe(true);
    expect(scheduler.schedule()).toEqual([]);
    seq.receive({ id: 7, logprob: 0, top: [] });
    expect(scheduler.schedule()).toEqual([]);
    expect(() => seq.receive({ id: 7, logprob: 0, top: [] })).not.toThrow();
    expect(() => seq.receive({ id: 7, logprob: 0, top: [] })).toThrow(/not awaiting/);
  });

  it("readmits a sequence preempted in flight only once the token it was drawing has arrived", () => {
    const blockSize = 4;
    const blocks = new BlockManager(3, blockSize, true);
    const scheduler = new Scheduler(blocks, 64);
    // Different prompts: each one's full block is its own prefix.
    const [older, newer] = [sequence(4, 8), sequence(4, 8, "other")];
    scheduler.add(older);
    scheduler.add(newer);
    const first = scheduler.schedule(); // both prompts, one block each; both tokens still being drawn
    expect(first.map((ch) => ch.seq)).toEqual([older, newer]);
    // Planned before the first step is over: the older one takes the last free block, the newer one is preempted.
    expect(scheduler.schedule().map((ch) => ch.seq)).toEqual([older]);
    expect([newer.status, newer.awaitedTokens, newer.numCachedTokens, newer.preemptions]).toEqual(["waiting", 1, 0, 1]);
    // The first step is over: the older one's full prompt block is now findable, and the preempted one holds no
    // blocks for its chunk to name (the next test has it readmitted first).
    scheduler.computed(first[0]!);
    scheduler.computed(first[1]!);
    // Room is free again, but the newer one's token is not known yet: it cannot recompute without it.
    scheduler.finish(older, "length");
    expect(blocks.cachedCount).toBe(1);
    expect(scheduler.schedule()).toEqual([]);
    // Its token arrives (kept: it was drawn before the blocks were taken); it comes back, prompt and token computed again.
    newer.receive({ id: 7, logprob: 0, top: [] });
    expect(scheduler.schedule().map((ch) => [ch.seq, ch.startPos, ch.numTokens, ch.sample])).toEqual([[newer, 0, 5, true]]);
  });

  it("names no block for a prompt chunk whose sequence was preempted and readmitted before that chunk's step was over", () => {
    const blocks = new BlockManager(3, 4, true);
    const scheduler = new Scheduler(blocks, 8);
    const older = sequence(4, 8);
    const long = sequence(8, 4, "long");
    scheduler.add(older);
    scheduler.add(long);
    const first = scheduler.schedule(); // the older prompt, and the first half of the long one (no token drawn)
    expect(first.map((ch) => [ch.seq, ch.startPos, ch.numTokens, ch.sample])).toEqual([[older, 0, 4, true], [long, 0, 4, false]]);
    // Planned while the first step runs: the older one's decode takes the last block, the long one is preempted.
    expect(scheduler.schedule().map((ch) => ch.seq)).toEqual([older]);
    expect([long.status, long.awaitedTokens]).toEqual(["waiting", 0]);
    // Nothing of its is awaited, so once there is room it is readmitted at once, its whole prompt in one chunk.
    scheduler.finish(older, "length");
    expect(scheduler.schedule().map((ch) => [ch.seq, ch.startPos, ch.numTokens])).toEqual([[long, 0, 8]]);
    // The first step ends now: its chunk of the long prompt computed into blocks the sequence no longer holds. The
    // blocks it holds now are being computed by the step in flight: none may be found by a later prompt yet.
    scheduler.computed(first[1]!);
    expect(blocks.cachedPrefix(sequence(8, 4, "long"))).toEqual([]);
  });

  it("under a random load on a small cache, keeps every rule and finishes every sequence", () => {
    const blockSize = 4;
    const budget = 12;
    const blocks = new BlockManager(16, blockSize);
    const scheduler = new Scheduler(blocks, budget);
    let state = 12345;
    const random = (n: number): number => {
      state = (state * 1103515245 + 12345) % 2 ** 31;
      return (state >> 16) % n;
    };
    const all: Sequence[] = [];
    let preemptions = 0;
    for (let step = 0; step < 2000 && (all.length < 40 || scheduler.hasWork()); step++) {
      if (all.length < 40 && random(2) === 0) {
        const seq = sequence(1 + random(24), 1 + random(32));
        all.push(seq);
        scheduler.add(seq);
      }
      const before = new Map(all.map((s) => [s, { pending: s.pendingTokens, running: s.status === "running", generated: s.generated.length }]));
      const chunks = runStep(scheduler);
      if (scheduler.hasWork()) expect(chunks.length).toBeGreaterThan(0);
      expectBlocksConsistent(chunks, blockSize);
      let promptTokens = 0;
      for (const chunk of chunks) {
        const was = before.get(chunk.seq)!;
        if (!(was.running && was.pending === 1)) promptTokens += chunk.numTokens;
        if (chunk.startPos === 0 && was.generated > 0) preemptions++;
      }
      expect(promptTokens).toBeLessThanOrEqual(budget);
      for (const { seq } of chunks) {
        if (seq.status === "running" && seq.generated.length === seq.request.maxNewTokens) scheduler.finish(seq, "length");
      }
    }
    expect(all).toHaveLength(40);
    expect(all.every((s) => s.status === "finished" && s.generated.length === s.request.maxNewTokens)).toBe(true);
    expect(preemptions).toBeGreaterThan(0);
    expect(blocks.freeCount).toBe(16);
  });

  it("refuses a sequence that could never fit in the cache", () => {
    const scheduler = new Scheduler(new BlockManager(2, 4), 64);
    expect(() => scheduler.add(sequence(6, 3))).toThrow(/up to 9 tokens of KV cache, the cache holds 8/);
  });
});

describe("Scheduler admission across adapters", () => {
  /** Runs steps until nothing waits (the cache is large enough); returns the sequences in admission order. */
  function admissionOrder(scheduler: Scheduler): Sequence[] {
    const admitted: Sequence[] = [];
    for (let step = 0; step < 1000 && scheduler.numWaiting > 0; step++) {
      for (const chunk of runStep(scheduler)) {
        if (chunk.startPos === 0) admitted.push(chunk.seq);
      }
    }
    return admitted;
  }

  it("admits one request of another adapter right after the first of a flood, and the flood in its own order", () => {
    const scheduler = new Scheduler(new BlockManager(256, 4), 4);
    const flood = Array.from({ length: 10 }, () => sequence(4, 8, "sql"));
    const trickle = sequence(4, 8, "chat");
    for (const s of [...flood, trickle]) scheduler.add(s);
    expect(runStep(scheduler).map((ch) => ch.seq)).toEqual([flood[0]]);
    // The next step's budget goes to the other adapter, while the admitted one keeps decoding.
    expect(runStep(scheduler).map((ch) => [ch.seq, ch.numTokens])).toEqual([
      [flood[0], 1],
      [trickle, 4],
    ]);
    expect(admissionOrder(scheduler)).toEqual(flood.slice(1));
  });

  it("alternates between adapters with equal load, the base model being one more", () => {
    const scheduler = new Scheduler(new BlockManager(256, 4), 8);
    const [sql, chat, base] = ["sql", "chat", ""].map((id) => Array.from({ length: 4 }, () => sequence(4, 8, id))) as [Sequence[], Sequence[], Sequence[]];
    for (const s of [...sql, ...chat, ...base]) scheduler.add(s);
    expect(admissionOrder(scheduler)).toEqual([0, 1, 2, 3].flatMap((i) => [sql[i], chat[i], base[i]]));
  });

  it("shares prompt tokens, not request counts: four short prompts for each long one", () => {
    const scheduler = new Scheduler(new BlockManager(256, 4), 16);
    const long = Array.from({ length: 3 }, () => sequence(16, 4, "sql"));
    const short = Array.from({ length: 8 }, () => sequence(4, 4, "chat"));
    for (const s of [...long, ...short]) scheduler.add(s);
    expect(admissionOrder(scheduler)).toEqual([long[0], ...short.slice(0, 4), long[1], ...short.slice(4), long[2]]);
  });

  it("gives an adapter that was idle no credit for the time it was away: it joins the alternation", () => {
    const scheduler = new Scheduler(new BlockManager(256, 4), 4);
    const busy = Array.from({ length: 8 }, () => sequence(4, 8, "sql"));
    for (const s of busy) scheduler.add(s);
    for (let i = 0; i < 4; i++) runStep(scheduler); // one prompt a step: sql has been given 16 tokens
    const late = Array.from({ length: 3 }, () => sequence(4, 8, "chat"));
    for (const s of late) scheduler.add(s);
    expect(admissionOrder(scheduler)).toEqual([late[0], busy[4], late[1], busy[5], late[2], busy[6], busy[7]]);
  });

  it("skips an adapter that is not resident yet, and admits its requests once it is", () => {
    const resident = new Set(["sql"]);
    const scheduler = new Scheduler(new BlockManager(256, 4), 8, undefined, (seq) => resident.has(seq.request.adapterId));
    const [loading, ready] = [sequence(4, 8, "code"), sequence(4, 8, "sql")];
    scheduler.add(loading);
    scheduler.add(ready);
    expect(runStep(scheduler).map((ch) => ch.seq)).toEqual([ready]);
    expect(loading.status).toBe("waiting");
    resident.add("code");
    expect(runStep(scheduler).map((ch) => [ch.seq, ch.startPos])).toEqual([
      [ready, 4],
      [loading, 0],
    ]);
  });

  it("under a random flood, admits FCFS per adapter and serves no other adapter more than 2 × the longest prompt ahead of a waiting head", () => {
    const maxPrompt = 24;
    const budget = 12;
    // A cache large enough that nothing is preempted: only the admission order is under test.
    const blocks = new BlockManager(1024, 4);
    let preemptions = 0;
    const scheduler = new Scheduler(blocks, budget, () => preemptions++);
    let state = 777;
    const random = (n: number): number => {
      state = (state * 1103515245 + 12345) % 2 ** 31;
      return (state >> 16) % n;
    };
    const adapters = ["sql", "sql", "sql", "sql", "sql", "sql", "chat", "code", ""]; // sql floods
    const notAdmitted = new Map<string, Sequence[]>();
    /** For each sequence, the prompt tokens admitted for each other adapter while it was first in its queue. */
    const servedAhead = new Map<Sequence, Map<string, number>>();
    const all: Sequence[] = [];
    let deepestFlood = 0;
    for (let step = 0; step < 5000 && (all.length < 200 || scheduler.hasWork()); step++) {
      for (let i = random(3); i > 0 && all.length < 200; i--) {
        const seq = sequence(1 + random(maxPrompt), 1 + random(16), adapters[random(adapters.length)]);
        all.push(seq);
        scheduler.add(seq);
        const queue = notAdmitted.get(seq.request.adapterId) ?? [];
        queue.push(seq);
        notAdmitted.set(seq.request.adapterId, queue);
        servedAhead.set(seq, new Map());
      }
      deepestFlood = Math.max(deepestFlood, notAdmitted.get("sql")?.length ?? 0);
      for (const chunk of runStep(scheduler)) {
        if (chunk.startPos !== 0) continue;
        const adapterId = chunk.seq.request.adapterId;
        const queue = notAdmitted.get(adapterId)!;
        expect(queue[0]).toBe(chunk.seq);
        queue.shift();
        for (const [other, waiting] of notAdmitted) {
          const head = waiting[0];
          if (other === adapterId || head === undefined) continue;
          const ahead = servedAhead.get(head)!;
          ahead.set(adapterId, (ahead.get(adapterId) ?? 0) + chunk.seq.promptLength);
        }
      }
      for (const seq of all) {
        if (seq.status === "running" && seq.generated.length === seq.request.maxNewTokens) scheduler.finish(seq, "length");
      }
    }
    expect(preemptions).toBe(0);
    expect(all.every((s) => s.status === "finished")).toBe(true);
    const worst = Math.max(...[...servedAhead.values()].flatMap((ahead) => [...ahead.values()]));
    expect(worst).toBeLessThanOrEqual(2 * maxPrompt);
    // The flood did queue up, so FCFS would have kept the other adapters' heads behind far more than that.
    expect(deepestFlood).toBeGreaterThan(20);
  });
});
