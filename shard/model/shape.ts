import type { TensorRef } from "../../native/addon.js";
import { LoadError } from "./load-error.js";

export function expectShape(ref: TensorRef, name: string, shape: number[]): void {
  if (ref.shape.length !== shape.length || ref.shape.some((d, i) => d !== shape[i])) {
    throw new LoadError(ref.file, `tensor ${name} has shape [${ref.shape.join(", ")}], expected [${shape.join(", ")}]`);
  }
}
