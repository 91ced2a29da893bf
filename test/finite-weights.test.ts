// shard/adapters/finite-weights.ts on synthetic tensors: every dtype, a non-finite value (both infinities, a NaN)
// at each position of tensors of odd and even lengths, at aligned and unaligned offsets (the native scan reads any
// alignment), and in long tensors across its blocks; the largest finite values of either sign and the largest
// subnormal pass.
import { describe, expect, it } from "vitest";
import type { DType, TensorRef } from "../native/addon.js";
import { assertFiniteWeights } from "../shard/adapters/finite-weights.js";

const WIDTH: Record<DType, number> = { F32: 4, F16: 2, BF16: 2 };
/** Per dtype: +infinity, -infinity, a NaN, the largest finite value, and the largest subnormal, as bits. */
const BITS: Record<DType, { bad: number[]; good: number[] }> = {
  F32: { bad: [0x7f80_0000, 0xff80_0000, 0x7fc0_0001], good: [0x7f7f_ffff, 0x007f_ffff, 0xff7f_ffff] },
  F16: { bad: [0x7c00, 0xfc00, 0x7e01], good: [0x7bff, 0x03ff, 0xfbff] },
  BF16: { bad: [0x7f80, 0xff80, 0x7fc1], good: [0x7f7f, 0x007f, 0xff7f] },
};

/** A file of `lead` bytes then a tensor of `values`, each `fill` but `poison` at `at`. */
function tensorFile(dtype: DType, count: number, lead: number, fill: number, at = -1, poison = 0): { bytes: Uint8Array; ref: TensorRef } {
  const width = WIDTH[dtype];
  const bytes = new Uint8Array(lead + count * width);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < count; i++) {
    const value = i === at ? poison : fill;
    if (width === 4) view.setUint32(lead + 4 * i, value, true);
    else view.setUint16(lead + 2 * i, value, true);
  }
  return { bytes, ref: { file: "/a.safetensors", dtype, shape: [count], offset: lead, nbytes: count * width } };
}

describe("assertFiniteWeights", () => {
  for (const dtype of ["F32", "F16", "BF16"] as const) {
    it(`${dtype}: finds a NaN or an infinity at every position, and passes the largest finite values`, async () => {
      for (const count of [1, 2, 5, 6]) {
        for (const lead of [0, 2, 8]) {
          for (const good of BITS[dtype].good) {
            const clean = tensorFile(dtype, count, lead, good);
            await expect(assertFiniteWeights("/a.safetensors", clean.bytes, new Map([["t", clean.ref]]))).resolves.toBeUndefined();
            for (let at = 0; at < count; at++) {
              for (const bad of BITS[dtype].bad) {
                const { bytes, ref } = tensorFile(dtype, count, lead, good, at, bad);
                await expect(assertFiniteWeights("/a.safetensors", bytes, new Map([["t", ref]])), `${count} values at +${lead}, ${bad.toString(16)} at ${at}`).rejects.toThrow(
                  `/a.safetensors: tensor t holds a non-finite value (NaN or infinity) at element ${at}`,
                );
              }
            }
          }
        }
      }
    });

    it(`${dtype}: in a long tensor, names the first of several, on either side of the scan's 4096-element blocks`, async () => {
      const count = 10_000;
      const good = BITS[dtype].good[0]!;
      const bad = BITS[dtype].bad[0]!;
      for (const at of [0, 4095, 4096, 9999]) {
        const { bytes, ref } = tensorFile(dtype, count, 2, good, at, bad);
        // A second bad value later in the tensor, past another block: the first is the one named.
        const later = at + 5000;
        const view = new DataView(bytes.buffer, bytes.byteOffset);
        if (later < count && WIDTH[dtype] === 4) view.setUint32(ref.offset + later * 4, bad, true);
        else if (later < count) view.setUint16(ref.offset + later * 2, bad, true);
        await expect(assertFiniteWeights("/a.safetensors", bytes, new Map([["clean", { ...ref, nbytes: 0 }], ["t", ref]]))).rejects.toThrow(`tensor t holds a non-finite value (NaN or infinity) at element ${at}`);
      }
    });
  }
});
