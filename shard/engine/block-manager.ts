// Hands out the engine's KV-cache blocks (ids 0..n-1) to sequences. A sequence's block table is the list
// of ids holding its positions in order; the engine reads and writes only the blocks it is given, so the
// TypeScript side owns which sequence may touch which part of the cache.
//
// With prefix caching, a full block that has been computed keeps its contents under a name (prefix-hash.ts)
// after its sequence is done with it, and a later sequence whose tokens begin the same way, under the same adapter
// version, takes it into its table instead of computing it again. Blocks are reference counted: one shared by
// several sequences is free only when the last lets go. A free block that still holds a named prefix is
// "cached": it counts as free (it is handed out when nothing else is left, least recently released first, and its
// name is forgotten then), so the free count is what a new sequence can have, as without caching.
import { blockHash, prefixRoot } from "./prefix-hash.js";
import type { Sequence } from "./sequence.js";

export class BlockManager {
  /** Free blocks that hold no named prefix: handed out first. */
  private readonly empty: number[];
  /** Free blocks that still hold a named prefix, least recently released first: handed out when `empty` is. */
  private readonly cachedFree = new Set<number>();
  /** Sequences whose tables hold each block; guards against a block being returned twice, which would corrupt two sequences. */
  private readonly refs: Uint32Array;
  /** Each full, computed block's name (null for the rest); kept while a table holds it, as its successor's parent. */
  private readonly hashes: (string | null)[];
  /** Name → the block others may share. A second block computed with the same name stays private to its sequence. */
  private readonly named = new Map<string, number>();

  constructor(
    readonly numBlocks: number,
    readonly blockSize: number,
    /** Keep full blocks for later sequences with the same prefix (off: every sequence computes all its blocks). */
    readonly cachesPrefixes = false,
  ) {
    if (!Number.isInteger(numBlocks) || numBlocks < 1) throw new Error(`numBlocks must be a positive integer, got ${numBlocks}`);
    if (!Number.isInteger(blockSize) || blockSize < 1) throw new Error(`blockSize must be a positive integer, got ${blockSize}`);
    // Popped from the end, so the lowest ids go out first: easier to read in tests and logs.
    this.empty = Array.from({ length: numBlocks }, (_, i) => numBlocks - 1 - i);
    this.refs = new Uint32Array(numBlocks);
    this.hashes = new Array<string | null>(numBlocks).fill(null);
  }

  /** Blocks no sequence holds, cached ones included: what sequences can have. */
  get freeCount(): number {
    return this.empty.length + this.cachedFree.size;
  }

  /** Free blocks that still hold a prefix a later sequence may find. */
  get cachedCount(): number {
    return this.cachedFree.size;
  }

  blocksFor(numTokens: number): number {
    return Math.ceil(numTokens / this.blockSize);
  }

  /** How many more blocks `table` needs to hold `numTokens` positions. */
  missingBlocks(table: readonly number[], numTokens: number): number {
    return Math.max(0, this.blocksFor(numTokens) - table.length);
  }

  canGrow(table: readonly number[], numTokens: number): boolean {
    return this.missingBlocks(table, numTokens) <= this.freeCount;
  }

  /** The most positions `table` can hold with the blocks that are free now. */
  capacityWithFree(table: readonly number[]): number {
    return (table.length + this.freeCount) * this.blockSize;
  }

  /** Appends free block ids to `table` until it holds `numTokens` positions. */
  grow(table: number[], numTokens: number): void {
    const missing = this.missingBlocks(table, numTokens);
    if (missing > this.freeCount) {
      throw new Error(`KV cache: ${missing} blocks needed, ${this.freeCount} free`);
    }
    for (let i = 0; i < missing; i++) table.push(this.take());
  }

  /** Lets go of every block of `table` and empties the table. */
  release(table: number[]): void {
    // Last block first: the end of a prefix is forgotten before its start, which more sequences share.
    for (let i = table.length - 1; i >= 0; i--) {
      const id = table[i] as number;
      const holders = this.refs[id] ?? 0;
      if (holders === 0) throw new Error(`KV cache: block ${id} released while not in use`);
      this.refs[id] = holders - 1;
      if (holders > 1) continue;
      const hash = this.hashes[id] as string | null;
      if (hash !== null && this.named.get(hash) === id) {
        this.cachedFree.add(id);
      } else {
        this.hashes[id] = null;
        this.empty.push(id);
      }
    }
    table.length = 0;
  }

  /**
   * The cached blocks that already hold the start of `seq`, in order. The block of its last token is never among
   * them: that position must be computed to give the logits of the next token.
   */
  cachedPrefix(seq: Sequence): number[] {
    const found: number[] = [];
    const reusable = Math.floor((seq.numTokens - 1) / this.blockSize);
    let hash = prefixRoot(seq.request.adapterId, seq.adapterVersion);
    for (let i = 0; i < reusable; i++) {
      hash = blockHash(hash, seq.tokens(i * this.blockSize, this.blockSize));
      const id = this.named.get(hash);
      if (id === undefined) break;
      found.push(id);
    }
    return found;
  }

  /** Free blocks that admitting a sequence of `numTokens` takes when it starts with `prefix`: its new blocks, and the cached ones it takes off the free list. */
  blocksToAdmit(prefix: readonly number[], numTokens: number): number {
    const idle = prefix.filter((id) => this.refs[id] === 0).length;
    return this.blocksFor(numTokens) - prefix.length + idle;
  }

  /** Puts the cached `prefix` (from cachedPrefix) at the start of an empty table. */
  share(table: number[], prefix: readonly number[]): void {
    if (table.length > 0) throw new Error("KV cache: a cached prefix goes at the start of an empty block table");
    for (const id of prefix) {
      const holders = this.refs[id] as number;
      if (holders === 0) this.cachedFree.delete(id);
      this.refs[id] = holders + 1;
      table.push(id);
    }
  }

  /**
   * Names the blocks of `seq` that positions [start, end) completed, now that the engine computed them, so that
   * later sequences can find them. Positions before `start` were named when they were computed or found.
   */
  cacheComputed(seq: Sequence, start: number, end: number): void {
    if (!this.cachesPrefixes) return;
    const table = seq.blockTable;
    for (let i = Math.floor(start / this.blockSize); i < Math.floor(end / this.blockSize); i++) {
      const parent = i === 0 ? prefixRoot(seq.request.adapterId, seq.adapterVersion) : (this.hashes[table[i - 1] as number] as string);
      const hash = blockHash(parent, seq.tokens(i * this.blockSize, this.blockSize));
      const id = table[i] as number;
      this.hashes[id] = hash;
      // Another sequence may have computed the same prefix at the same time: the first copy is the one shared.
      if (!this.named.has(hash)) this.named.set(hash, id);
    }
  }

  /** A free block: one holding nothing first, else the least recently released cached one, whose name is forgotten. */
  private take(): number {
    let id = this.empty.pop();
    if (id === undefined) {
      id = this.cachedFree.values().next().value as number;
      this.cachedFree.delete(id);
      this.named.delete(this.hashes[id] as string);
      this.hashes[id] = null;
    }
    this.refs[id] = 1;
    return id;
  }
}
