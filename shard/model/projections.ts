// Where each LoRA-targetable projection sits in a Llama layer and how wide it is: shared by the adapter
// loader (to check shapes) and by anything that writes adapters.
import type { LoraTarget, ModelSpec } from "../../native/addon.js";

export const MODULE_GROUP: Record<LoraTarget, "self_attn" | "mlp"> = {
  q_proj: "self_attn",
  k_proj: "self_attn",
  v_proj: "self_attn",
  o_proj: "self_attn",
  gate_proj: "mlp",
  up_proj: "mlp",
  down_proj: "mlp",
};

export type ProjectionDims = Pick<ModelSpec, "hiddenSize" | "intermediateSize" | "numHeads" | "numKvHeads" | "headDim">;

/** Input and output width of a projection in the base model. */
export function projectionShape(spec: ProjectionDims, target: LoraTarget): { in: number; out: number } {
  const { hiddenSize: h, intermediateSize: m, numHeads, numKvHeads, headDim } = spec;
  switch (target) {
    case "q_proj": return { in: h, out: numHeads * headDim };
    case "k_proj":
    case "v_proj": return { in: h, out: numKvHeads * headDim };
    case "o_proj": return { in: numHeads * headDim, out: h };
    case "gate_proj":
    case "up_proj": return { in: h, out: m };
    case "down_proj": return { in: m, out: h };
  }
}
