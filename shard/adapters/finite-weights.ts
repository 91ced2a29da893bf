// Refuses an adapter whose weights hold a NaN or an infinity. The engine would load it and every token it
// touched would come out of a NaN distribution (`<unk>` with a null logprob), so the adapter is refused at load,
// naming the tensor, instead. The scan (native/src/finite_scan.cc) reads bit patterns on a worker thread: in JS it
// took about 14 s of the shard's JS thread for the thousand adapters the n = 1000 serve bench reads at start-up, and
// an adapter read under load held the engine loop for its 5-7 ms.
import { findNonFinite, type TensorRef } from "../../native/addon.js";
import { LoadError } from "../model/load-error.js";

/** Rejects with a LoadError naming `path` and the first tensor that holds a NaN or an infinity. */
export async function assertFiniteWeights(path: string, bytes: Uint8Array, tensors: ReadonlyMap<string, TensorRef>): Promise<void> {
  const names = [...tensors.keys()];
  const found = await findNonFinite(bytes, [...tensors.values()]);
  const first = found.findIndex((at) => at >= 0);
  if (first >= 0) throw new LoadError(path, `tensor ${names[first]} holds a non-finite value (NaN or infinity) at element ${found[first]}`);
}
