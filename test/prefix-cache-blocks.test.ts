// The prefix cache inside the block manager and the scheduler, without an engine: which blocks get a name, who
// finds them (the same tokens under the same adapter version only), reference counts, and the order in which
// cached blocks are given up.
import { describe, expect, it } from "vitest";
import { BlockManager } from "../shard/engine/block-manager.js";
import { blockHash, prefixRoot } from "../shard/engine/prefix-hash.js";
import { Scheduler } from "../shard/engine/scheduler.js";
import { Sequence } from "../shard/engine/sequence.js";
import { runStep } from "./helpers/scheduler-step.js";

function sequence(tokens: number[], adapterId = "", adapterVersion = 0, maxNewTokens = 4, promptLogprobs = false): Sequence {
  return new Sequence(
    {
      promptIds: Int32Array.from(tokens),
      adapterId,
      maxNewTokens,
      sampling: { temperature: 0, topK: 0, topP: 1, seed: 0 },
      topN: 0,
      promptLogprobs,
    },
    adapterVersion,
  );
}

const range = (from: number, count: number): number[] => Array.from({ length: count }, (_, i) => from + i);

/** What the scheduler does for a sequence that computes all its tokens in one step: blocks, then names. */
function computeWhole(blocks: BlockManager, seq: Sequence): number[] {
  blocks.grow(seq.blockTable, seq.numTokens);
  blocks.cacheComputed(seq, 0, seq.numTokens);
  return [...seq.blockTable];
}

describe("prefix hashes", () => {
  it("start from a root that names the adapter and its version, and chain each block to its parent", () => {
    const roots = [prefixRoot("", 0), prefixRoot("a", 1), prefixRoot("a", 2), prefixRoot("b", 1), prefixRoot("a1", 2), prefixRoot("a", 12)];
    expect(new Set(roots).size).toBe(roots.length);
    const tokens = Int32Array.from([1, 2, 3, 4]);
    expect(blockHash(prefixRoot("a", 1), tokens)).toBe(blockHash(prefixRoot("a", 1), Int32Array.from([1, 2, 3, 4])));
    expect(blockHash(prefixRoot("a", 1), tokens)).not.toBe(blockHash(prefixRoot("a", 2), tokens));
    expect(blockHash(prefixRoot("a", 1), tokens)).not.toBe(blockHash(prefixRoot("a", 1), Int32Array.from([1, 2, 3, 5])));
    const first = blockHash(prefixRoot("a", 1), tokens);
    expect(blockHash(first, tokens)).not.toBe(first);
  });
});

describe("BlockManager prefix cache", () => {
  it("finds a finished sequence's full blocks for the same tokens under the same adapter version only", () => {
    const blocks = new BlockManager(8, 4, true);
    const first = sequence(range(1, 10), "a", 1);
    const table = computeWhole(blocks, first);
    blocks.release(first.blockTable);
    // Two full blocks are kept; the third held only positions 8-9 and is empty again.
    expect(blocks.cachedCount).toBe(2);
    expect(blocks.freeCount).toBe(8);
    expect(blocks.cachedPrefix(sequence(range(1, 10), "a", 1))).toEqual(table.slice(0, 2));
    expect(blocks.cachedPrefix(sequence(range(1, 12), "a", 1))).toEqual(table.slice(0, 2));
    expect(blocks.cachedPrefix(sequence(range(1, 10), "b", 1))).toEqual([]);
    expect(blocks.cachedPrefix(sequence(range(1, 10), "a", 2))).toEqual([]);
    expect(blocks.cachedPrefix(sequence(range(1, 10), "", 0))).toEqual([]);
    // The chain stops at the first block that differs.
    expect(blocks.cachedPrefix(sequence([1, 2, 3, 4, 5, 6, 0, 8, 9, 10], "a", 1))).toEqual(table.slice(0, 1));
    expect(blocks.cachedPrefix(sequence([0, 2, 3, 4, 5, 6, 7, 8, 9, 10], "a", 1))).toEqual([]);
  });

  it("never offers the block of a sequence's last token, which must be computed for its logits", () => {
    const blocks = new BlockManager(8, 4, true);
    const first = sequence(range(1, 12), "a", 1);
    const table = computeWhole(blocks, first);
    blocks.release(first.blockTable);
    expect(blocks.cachedCount).toBe(3);
    expect(blocks.cachedPrefix(sequence(range(1, 8), "a", 1))).toEqual(table.slice(0, 1));
    expect(blocks.cachedPrefix(sequence(range(1, 9), "a", 1))).toEqual(table.slice(0, 2));
    expect(blocks.cachedPrefix(sequence(range(1, 12), "a", 1))).toEqual(table.slice(0, 2));
    expect(blocks.cachedPrefix(sequence(range(1, 13), "a", 1))).toEqual(table);
  });

  it("names a block only once the positions that fill it are computed, chunk by chunk", () => {
    const blocks = new BlockManager(8, 4, true);
    const seq = sequence(range(1, 10), "a", 1);
    const twin = (): number[] => blocks.cachedPrefix(sequence(range(1, 10), "a", 1));
    blocks.grow(seq.blockTable, 3);
    blocks.cacheComputed(seq, 0, 3);
    expect(twin()).toEqual([]);
    blocks.grow(seq.blockTable, 6);
    blocks.cacheComputed(seq, 3, 6);
    expect(twin()).toEqual(seq.blockTable.slice(0, 1));
    blocks.grow(seq.blockTable, 10);
    blocks.cacheComputed(seq, 6, 10);
    expect(twin()).toEqual(seq.blockTable.slice(0, 2));
    // Not cached while a sequence holds them: nothing is free-but-cached yet.
    expect(blocks.cachedCount).toBe(0);
  });

  it("counts references: a shared block is free only once every table let go of it", () => {
    const blocks = new BlockManager(8, 4, true);
    const owner = sequence(range(1, 10), "a", 1);
    const table = computeWhole(blocks, owner);
    const sharer = sequence(range(1, 10), "a", 1);
    const prefix = blocks.cachedPrefix(sharer);
    // Held by the owner: sharing them takes only the sharer's third block from the free list.
    expect(blocks.blocksToAdmit(prefix, sharer.numTokens)).toBe(1);
    blocks.share(sharer.blockTable, prefix);
    blocks.grow(sharer.blockTable, sharer.numTokens);
    expect(sharer.blockTable.slice(0, 2)).toEqual(table.slice(0, 2));
    expect(sharer.blockTable[2]).not.toBe(table[2]);
    expect(blocks.freeCount).toBe(4);
    blocks.release(owner.blockTable);
    expect(blocks.freeCount).toBe(5);
    expect(blocks.cachedCount).toBe(0);
    blocks.release(sharer.blockTable);
    expect(blocks.freeCount).toBe(8);
    expect(blocks.cachedCount).toBe(2);
    // Cached but free: taking them back costs free blocks.
    expect(blocks.blocksToAdmit(blocks.cachedPrefix(sharer), sharer.numTokens)).toBe(3);
    expect(() => blocks.release([...table.slice(0, 1)])).toThrow(/released while not in use/);
  });

  it("hands out empty blocks first, then cached ones least recently released first, the end of a prefix before its start", () => {
    const blocks = new BlockManager(4, 2, true);
    const x = sequence(range(1, 5), "a", 1);
    const xTable = computeWhole(blocks, x);
    blocks.release(x.blockTable);
    expect(blocks.cachedCount).toBe(2);
    // One block, taken from the empty ones: the cached ones stay.
    const small = sequence([50], "a", 1);
    computeWhole(blocks, small);
    expect(blocks.cachedPrefix(sequence(range(1, 5), "a", 1))).toEqual(xTable.slice(0, 2));
    blocks.release(small.blockTable);
    // Three blocks, two of them empty: the least recently released cached one goes, x's second block.
    const y = sequence(range(11, 5), "a", 1);
    computeWhole(blocks, y);
    expect(blocks.cachedPrefix(sequence(range(1, 5), "a", 1))).toEqual(xTable.slice(0, 1));
    expect(blocks.cachedCount).toBe(1);
    blocks.release(y.blockTable);
    // A block found and let go again is recent again: x's first block outlives y's blocks.
    const again = sequence(range(1, 5), "a", 1);
    blocks.share(again.blockTable, blocks.cachedPrefix(again));
    blocks.release(again.blockTable);
    // Three blocks again, one of them empty: y's two cached blocks go, released before x's first.
    const z = sequence(range(21, 5), "a", 1);
    computeWhole(blocks, z);
    expect(blocks.cachedPrefix(sequence(range(1, 5), "a", 1))).toEqual(xTable.slice(0, 1));
    expect(blocks.cachedPrefix(sequence(range(11, 5), "a", 1))).toEqual([]);
    blocks.release(z.blockTable);
    expect(blocks.freeCount).toBe(4);
  });

  it("keeps nothing when prefix caching is off", () => {
    const blocks = new BlockManager(8, 4);
    const first = sequence(range(1, 10), "a", 1);
    computeWhole(blocks, first);
    blocks.release(first.blockTable);
    expect(blocks.cachedCount).toBe(0);
    expect(blocks.cachedPrefix(sequence(range(1, 10), "a", 1))).toEqual([]);
  });
});

describe("Scheduler with the prefix cache", () => {
  it("starts a sequence after its cached blocks and counts the tokens it found", () => {
    const blocks = new BlockManager(16, 4, true);
    const scheduler = new Scheduler(blocks, 64);
    const first = sequence(range(1, 10), "a", 1);
    scheduler.add(first);
    while (first.status !== "finished") {
      runStep(scheduler);
      if (first.generated.length === first.request.maxNewTokens) scheduler.finish(first, "length");
    }
    // 10 prompt + 4 generated tokens, of which the KV of 13 was computed: three full blocks are cached.
    expect(blocks.cachedCount).toBe(3);
    const second = sequence(range(1, 10), "a", 1);
    scheduler.add(second);
    const [chunk] = runStep(scheduler);
    expect(chunk).toMatchObject({ seq: second, startPos: 8, numTokens: 2, sample: true });
    expect(scheduler.prefixCache).toEqual({ queriedTokens: 20, hitTokens: 8 });
    // Another adapter with the same prompt computes everything, on blocks of its own.
    const other = sequence(range(1, 10), "b", 1);
    scheduler.add(other);
    expect(runStep(scheduler).find((c) => c.seq === other)).toMatchObject({ startPos: 0, numTokens: 10 });
    expect(other.blockTable.filter((id) => second.blockTable.includes(id))).toEqual([]);
    scheduler.finish(second, "cancelled");
    scheduler.finish(other, "cancelled");
    expect(blocks.freeCount).toBe(16);
  });

  it("computes the whole prompt of a sequence that wants its prompt logprobs", () => {
    const blocks = new BlockManager(16, 4, true);
    const scheduler = new Scheduler(blocks, 64);
    const first = sequence(range(1, 10), "a", 1);
    scheduler.add(first);
    runStep(scheduler);
    const withLogprobs = sequence(range(1, 10), "a", 1, 4, true);
    scheduler.add(withLogprobs);
    const chunks = runStep(scheduler);
    expect(chunks.find((c) => c.seq === withLogprobs)).toMatchObject({ startPos: 0, numTokens: 10 });
  });

  it("lets a preempted sequence go of its shared blocks and find them again; everything is free at the end", () => {
    const blockSize = 4;
    const blocks = new BlockManager(7, blockSize, true);
    let preemptions = 0;
    const scheduler = new Scheduler(blocks, 64, () => preemptions++);
    const prompt = range(1, 9);
    const older = sequence(prompt, "a", 1, 12);
    scheduler.add(older);
    runStep(scheduler);
    // Shares older's first two blocks, then both grow until the cache is short and the newer is preempted.
    const newer = sequence(prompt, "a", 1, 12);
    scheduler.add(newer);
    const [, newerChunk] = runStep(scheduler);
    expect(newerChunk).toMatchObject({ seq: newer, startPos: 8, numTokens: 1 });
    expect(newer.blockTable.slice(0, 2)).toEqual(older.blockTable.slice(0, 2));
    while (older.status !== "finished") {
      runStep(scheduler);
      if (older.generated.length === 12) scheduler.finish(older, "length");
    }
    expect(preemptions).toBeGreaterThan(0);
    while (newer.status !== "finished") {
      runStep(scheduler);
      if (newer.generated.length === 12) scheduler.finish(newer, "length");
    }
    expect(blocks.freeCount).toBe(7);
    // Readmitted, it found its blocks (its own cached ones, or those the older still held) beyond the first 8 tokens.
    expect(scheduler.prefixCache.hitTokens).toBeGreaterThan(8);
  });
});
