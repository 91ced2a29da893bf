// Refuses an adapter whose weights hold a NaN or an infinity. The engine would load it and every token it
// touched would come out of a NaN distribution (`<unk>` with a null logprob), so the adapter is refused at load,
// naming the tensor, instead. The check reads the bit patterns: a float of any of the three dtypes is non-finite
// exactly when its exponent bits are all ones.
import type { DType, TensorRef } from "../../native/addon.js";
import { LoadError } from "../model/load-error.js";

/** Per dtype: the element's width and the mask of its exponent bits (sign bit excluded). */
const EXPONENT: Record<DType, { bytes: 2 | 4; mask: number }> = {
  F32: { bytes: 4, mask: 0x7f80_0000 },
  F16: { bytes: 2, mask: 0x7c00 },
  BF16: { bytes: 2, mask: 0x7f80 },
};

/** The index of the first non-finite element of `ref` in `bytes` (the whole file), or -1 when all are finite. */
function firstNonFinite(bytes: Uint8Array, ref: TensorRef): number {
  const { bytes: width, mask } = EXPONENT[ref.dtype];
  let data = bytes.subarray(ref.offset, ref.offset + ref.nbytes);
  // A typed view needs an aligned start; a misaligned tensor is copied (adapters are megabytes, this is rare).
  if ((data.byteOffset % width) !== 0) data = data.slice();
  // Safetensors is little-endian, as is every host the engine runs on.
  const words = width === 4 ? new Uint32Array(data.buffer, data.byteOffset, data.length / 4) : new Uint16Array(data.buffer, data.byteOffset, data.length / 2);
  for (let i = 0; i < words.length; i++) if ((words[i]! & mask) === mask) return i;
  return -1;
}

/** Throws a LoadError naming `path` and the first tensor that holds a NaN or an infinity. */
export function assertFiniteWeights(path: string, bytes: Uint8Array, tensors: ReadonlyMap<string, TensorRef>): void {
  for (const [name, ref] of tensors) {
    const at = firstNonFinite(bytes, ref);
    if (at >= 0) throw new LoadError(path, `tensor ${name} holds a non-finite value (NaN or infinity) at element ${at}`);
  }
}
