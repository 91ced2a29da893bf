// Hands out the engine's KV-cache blocks (ids 0..n-1) to sequences. A sequence's block table is the list
// of ids holding its positions in order; the engine reads and writes only the blocks it is given, so the
// TypeScript side owns which sequence may touch which part of the cache.

export class BlockManager {
  private readonly free: number[];
  /** Guards against a block id being handed out twice or returned twice: either would corrupt two sequences. */
  private readonly inUse: Uint8Array;

  constructor(
    readonly numBlocks: number,
    readonly blockSize: number,
  ) {
    if (!Number.isInteger(numBlocks) || numBlocks < 1) throw new Error(`numBlocks must be a positive integer, got ${numBlocks}`);
    if (!Number.isInteger(blockSize) || blockSize < 1) throw new Error(`blockSize must be a positive integer, got ${blockSize}`);
    // Popped from the end, so the lowest ids go out first: easier to read in tests and logs.
    this.free = Array.from({ length: numBlocks }, (_, i) => numBlocks - 1 - i);
    this.inUse = new Uint8Array(numBlocks);
  }

  get freeCount(): number {
    return this.free.length;
  }

  blocksFor(numTokens: number): number {
    return Math.ceil(numTokens / this.blockSize);
  }

  /** How many more blocks `table` needs to hold `numTokens` positions. */
  missingBlocks(table: readonly number[], numTokens: number): number {
    return Math.max(0, this.blocksFor(numTokens) - table.length);
  }

  canGrow(table: readonly number[], numTokens: number): boolean {
    return this.missingBlocks(table, numTokens) <= this.free.length;
  }

  /** The most positions `table` can hold with the blocks that are free now. */
  capacityWithFree(table: readonly number[]): number {
    return (table.length + this.free.length) * this.blockSize;
  }

  /** Appends free block ids to `table` until it holds `numTokens` positions. */
  grow(table: number[], numTokens: number): void {
    const missing = this.missingBlocks(table, numTokens);
    if (missing > this.free.length) {
      throw new Error(`KV cache: ${missing} blocks needed, ${this.free.length} free`);
    }
    for (let i = 0; i < missing; i++) {
      const id = this.free.pop() as number;
      this.inUse[id] = 1;
      table.push(id);
    }
  }

  /** Returns every block of `table` to the free list and empties the table. */
  release(table: number[]): void {
    for (const id of table) {
      if (this.inUse[id] !== 1) throw new Error(`KV cache: block ${id} released while not in use`);
      this.inUse[id] = 0;
      this.free.push(id);
    }
    table.length = 0;
  }
}
