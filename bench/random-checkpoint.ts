// Writes a Llama checkpoint and PEFT adapters of random bf16 weights at 8B scale in seconds: every tensor is
// cut from one 64 MiB pool of random values at its own offset, so 16 GB cost one pass of file writes instead
// of a random-number draw per weight (bench/synthetic-model.ts draws each value, fine for small models). The
// values only have to be non-zero and in range: the GPU's timing must not see zeros.
import { join } from "node:path";
import { LORA_TARGETS, type LoraTarget } from "../native/addon.js";
import {
  elementCount,
  randomBf16,
  writeAdapterConfig,
  writeBf16Safetensors,
  writeModelConfig,
  type SyntheticModelShape,
  type TensorBytes,
} from "./synthetic-model.js";

const POOL_ELEMENTS = 32 << 20;
/** bf16 1.0, for norm weights. */
const BF16_ONE = 0x3f80;

/** Each tensor starts at its own (even) place in the pool and wraps around; 1-D tensors (norms) are ones. */
function poolSlices(pool: Uint16Array, seed: number): TensorBytes {
  const poolBytes = new Uint8Array(pool.buffer);
  const ones = new Uint16Array(1 << 16).fill(BF16_ONE);
  return function* (tensor, index) {
    let remaining = elementCount(tensor) * 2;
    if (tensor.shape.length === 1) {
      yield new Uint8Array(ones.buffer, 0, remaining);
      return;
    }
    let at = (((seed * 7919 + index * 104729) % POOL_ELEMENTS) * 2) % poolBytes.length;
    while (remaining > 0) {
      const n = Math.min(remaining, poolBytes.length - at);
      yield poolBytes.subarray(at, at + n);
      remaining -= n;
      at = 0;
    }
  };
}

export function writeRandomModel(dir: string, shape: SyntheticModelShape): void {
  const tensors = writeModelConfig(dir, shape);
  writeBf16Safetensors(join(dir, "model.safetensors"), tensors, poolSlices(randomBf16(POOL_ELEMENTS, 1, Math.sqrt(3 / shape.hiddenSize)), 1));
}

/** A rank-`rank` PEFT adapter on `targets` (all seven by default); `seed` picks where its tensors start in the pool. */
export function writeRandomAdapter(
  dir: string,
  shape: SyntheticModelShape,
  rank: number,
  seed: number,
  pool: Uint16Array,
  targets: readonly LoraTarget[] = LORA_TARGETS,
): void {
  const tensors = writeAdapterConfig(dir, shape, rank, targets);
  writeBf16Safetensors(join(dir, "adapter_model.safetensors"), tensors, poolSlices(pool, seed));
}

export function adapterPool(): Uint16Array {
  return randomBf16(POOL_ELEMENTS, 2, 0.01);
}
