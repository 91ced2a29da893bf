// The reference logits of a fixture set (refs.safetensors, written by transformers + peft in float32), read
// with the project's own safetensors reader. refs.json itself is read by fixture-sets.ts.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { readSafetensors } from "../../shard/model/safetensors.js";

/** A [rows, vocab] float32 matrix of logits. */
export interface LogitRows {
  rows: number;
  vocab: number;
  data: Float32Array;
}

/** Row `row` of a row-major [rows * vocab] logits array. */
export function rowOf(logits: Float32Array, vocab: number, row: number): Float32Array {
  return logits.subarray(row * vocab, (row + 1) * vocab);
}

export interface RefLogits {
  /** Logits at every prompt position: [prompt length, vocab]. */
  prompt(variant: string, promptIndex: number): LogitRows;
  /** Logits at each greedy step: row 0 is the last prompt position, row i follows i greedy tokens. */
  steps(variant: string, promptIndex: number): LogitRows;
}

export function readRefLogits(fixtureRoot: string): RefLogits {
  const path = join(fixtureRoot, "refs.safetensors");
  const { tensors } = readSafetensors(path);
  const bytes = readFileSync(path);
  const read = (key: string): LogitRows => {
    const ref = tensors.get(key);
    if (!ref) throw new Error(`${path}: no tensor ${key}`);
    if (ref.dtype !== "F32" || ref.shape.length !== 2) throw new Error(`${path}: ${key} is not a 2-D F32 tensor`);
    const [rows, vocab] = ref.shape as [number, number];
    // Copy: the tensor's byte offset need not be 4-aligned inside the file.
    const data = new Float32Array(bytes.buffer.slice(bytes.byteOffset + ref.offset, bytes.byteOffset + ref.offset + ref.nbytes));
    return { rows, vocab, data };
  };
  return {
    prompt: (variant, promptIndex) => read(`${variant}/${promptIndex}/prompt`),
    steps: (variant, promptIndex) => read(`${variant}/${promptIndex}`),
  };
}
