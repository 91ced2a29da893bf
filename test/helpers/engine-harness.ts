// What the engine tests share: an engine built from a fixture set with every adapter loaded, a KV block
// allocator, sequences that keep their own position and block table, and a relative logits comparison.
import { join } from "node:path";
import { expect } from "vitest";
import { createEngine, type EngineOptions, type ModelSpec, type NativeEngine, type SeqStep } from "../../native/addon.js";
import { loadAdapterFiles } from "../../shard/model/adapter.js";
import { loadModelFiles } from "../../shard/model/model-files.js";
import type { FixtureSet } from "./fixture-sets.js";
import { readRefLogits, type RefLogits } from "./refs.js";

export const BASE = "base";

export interface Harness {
  engine: NativeEngine;
  spec: ModelSpec;
  /** Variant name ("base" or an adapter id) → adapter slot (-1 for base). */
  slots: Map<string, number>;
  variants: string[];
  ref: RefLogits;
  blocks: BlockAllocator;
  blockSize: number;
}

/** Hands out KV block ids in a scrambled order, so block tables are never contiguous runs by accident. */
export class BlockAllocator {
  private free: number[];
  constructor(count: number) {
    this.free = Array.from({ length: count }, (_, i) => (i * 7919) % count);
    if (new Set(this.free).size !== count) throw new Error("block count must be prime to 7919");
  }
  take(n: number): number[] {
    if (n > this.free.length) throw new Error(`out of KV blocks: want ${n}, have ${this.free.length}`);
    return this.free.splice(0, n);
  }
  give(ids: number[]): void {
    this.free.push(...ids);
  }
}

export async function openHarness(set: FixtureSet, overrides: Partial<EngineOptions> = {}): Promise<Harness> {
  const model = loadModelFiles(set.modelDir);
  const adapterIds = Object.keys(set.refs.adapters);
  const blockSize = overrides.blockSize ?? 4;
  const numKvBlocks = overrides.numKvBlocks ?? 1021;
  const engine = createEngine({
    device: "cpu",
    rank: 0,
    world: 1,
    spec: model.spec,
    weights: model.weights,
    numKvBlocks,
    blockSize,
    maxLoras: Math.max(1, adapterIds.length),
    maxLoraRank: 64,
    threads: 2,
    ...overrides,
  });
  const slots = new Map<string, number>([[BASE, -1]]);
  for (const [slot, id] of adapterIds.entries()) {
    await engine.loadAdapter(slot, loadAdapterFiles(join(set.adaptersDir, id), model.spec).weights);
    slots.set(id, slot);
  }
  return {
    engine,
    spec: model.spec,
    slots,
    variants: [BASE, ...adapterIds],
    ref: readRefLogits(set.root),
    blocks: new BlockAllocator(numKvBlocks),
    blockSize,
  };
}

type StepOptions = Partial<Omit<SeqStep, "tokens" | "startPos" | "blockTable" | "adapterSlot">>;

/** One sequence as the scheduler would keep it: its position, its blocks and its adapter. */
export class TestSequence {
  position = 0;
  readonly table: number[] = [];
  constructor(
    private readonly harness: Harness,
    readonly adapterSlot: number,
  ) {}

  /** The step that runs `tokens` next; call advance() once that step has run. */
  step(tokens: number[], options: StepOptions = {}): SeqStep {
    const needed = Math.ceil((this.position + tokens.length) / this.harness.blockSize);
    if (needed > this.table.length) this.table.push(...this.harness.blocks.take(needed - this.table.length));
    return {
      tokens: Int32Array.from(tokens),
      startPos: this.position,
      blockTable: Int32Array.from(this.table),
      adapterSlot: this.adapterSlot,
      sample: false,
      sampling: { temperature: 0, topK: 0, topP: 1, seed: 0, draw: 0 },
      topN: 0,
      logprobTargets: null,
      returnLogits: false,
      ...options,
    };
  }

  advance(count: number): void {
    this.position += count;
  }

  release(): void {
    this.harness.blocks.give(this.table.splice(0));
  }
}

/** Runs one step for the given sequences and advances each by the tokens it ran. */
export async function runStep(engine: NativeEngine, work: [TestSequence, SeqStep][]) {
  const results = await engine.step(work.map(([, s]) => s));
  for (const [seq, s] of work) seq.advance(s.tokens.length);
  return results;
}

/** max |ours - expected| <= rel * max |expected| over the row. */
export function expectRowClose(ours: Float32Array, expected: Float32Array, rel: number, what: string): void {
  expect(ours.length, `${what}: length`).toBe(expected.length);
  let maxDiff = 0;
  let maxRef = 0;
  for (let i = 0; i < expected.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(ours[i]! - expected[i]!));
    maxRef = Math.max(maxRef, Math.abs(expected[i]!));
  }
  expect(maxDiff, `${what}: max |diff| ${maxDiff} vs max |ref| ${maxRef}`).toBeLessThanOrEqual(rel * maxRef);
}

/** log_softmax of a row, in float64. */
export function logSoftmax(row: Float32Array): Float64Array {
  let max = -Infinity;
  for (const v of row) max = Math.max(max, v);
  let sum = 0;
  for (const v of row) sum += Math.exp(v - max);
  const lse = max + Math.log(sum);
  return Float64Array.from(row, (v) => v - lse);
}
