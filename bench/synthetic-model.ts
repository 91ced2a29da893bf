// Writes a Llama checkpoint and PEFT adapters of random bf16 weights in the real on-disk formats, so the
// benchmark (and tests that need many or large models) can make any shape without a hub or Python.
import { mkdirSync, openSync, closeSync, writeSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { LORA_TARGETS, type LoraTarget } from "../native/addon.js";
import { MODULE_GROUP, projectionShape } from "../shard/model/projections.js";

export interface SyntheticModelShape {
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  vocabSize: number;
  maxPositionEmbeddings: number;
}

interface PendingTensor {
  name: string;
  shape: number[];
}

/** Deterministic xorshift32 stream → uniform bf16 values in [-scale, scale]. */
function fillBf16(out: Uint16Array, seed: number, scale: number): void {
  let s = seed >>> 0 || 1;
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  for (let i = 0; i < out.length; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    f32[0] = ((s / 4294967296) * 2 - 1) * scale;
    out[i] = u32[0]! >>> 16;
  }
}

/** Streams a safetensors file of bf16 tensors; values are drawn per tensor from the seed. */
function writeSafetensors(path: string, tensors: PendingTensor[], seed: number, scaleOf: (t: PendingTensor) => number): number {
  const header: Record<string, unknown> = { __metadata__: { format: "pt" } };
  let offset = 0;
  for (const t of tensors) {
    const bytes = t.shape.reduce((a, d) => a * d, 1) * 2;
    header[t.name] = { dtype: "BF16", shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json = json.padEnd(Math.ceil(json.length / 8) * 8, " ");
  const fd = openSync(path, "w");
  try {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    writeSync(fd, len);
    writeSync(fd, Buffer.from(json));
    tensors.forEach((t, i) => {
      const values = new Uint16Array(t.shape.reduce((a, d) => a * d, 1));
      fillBf16(values, seed * 7919 + i + 1, scaleOf(t));
      writeSync(fd, new Uint8Array(values.buffer));
    });
  } finally {
    closeSync(fd);
  }
  return offset;
}

/** Writes config.json and model.safetensors; returns the bytes of weights written. */
export function writeSyntheticModel(dir: string, shape: SyntheticModelShape, seed = 1): number {
  mkdirSync(dir, { recursive: true });
  const { hiddenSize: h, intermediateSize: m, numHeads, numKvHeads, headDim: d, vocabSize: v } = shape;
  writeFileSync(
    join(dir, "config.json"),
    JSON.stringify({
      architectures: ["LlamaForCausalLM"],
      model_type: "llama",
      hidden_size: h,
      intermediate_size: m,
      num_hidden_layers: shape.numLayers,
      num_attention_heads: numHeads,
      num_key_value_heads: numKvHeads,
      head_dim: d,
      vocab_size: v,
      max_position_embeddings: shape.maxPositionEmbeddings,
      rms_norm_eps: 1e-5,
      rope_theta: 500000,
      tie_word_embeddings: false,
      hidden_act: "silu",
      torch_dtype: "bfloat16",
    }),
  );
  const tensors: PendingTensor[] = [{ name: "model.embed_tokens.weight", shape: [v, h] }];
  for (let i = 0; i < shape.numLayers; i++) {
    const p = `model.layers.${i}.`;
    tensors.push(
      { name: `${p}input_layernorm.weight`, shape: [h] },
      { name: `${p}post_attention_layernorm.weight`, shape: [h] },
      { name: `${p}self_attn.q_proj.weight`, shape: [numHeads * d, h] },
      { name: `${p}self_attn.k_proj.weight`, shape: [numKvHeads * d, h] },
      { name: `${p}self_attn.v_proj.weight`, shape: [numKvHeads * d, h] },
      { name: `${p}self_attn.o_proj.weight`, shape: [h, numHeads * d] },
      { name: `${p}mlp.gate_proj.weight`, shape: [m, h] },
      { name: `${p}mlp.up_proj.weight`, shape: [m, h] },
      { name: `${p}mlp.down_proj.weight`, shape: [h, m] },
    );
  }
  tensors.push({ name: "model.norm.weight", shape: [h] }, { name: "lm_head.weight", shape: [v, h] });
  // Norm weights near 1 and projections scaled by fan-in keep activations in range through the layers.
  return writeSafetensors(join(dir, "model.safetensors"), tensors, seed, (t) =>
    t.shape.length === 1 ? 1 : Math.sqrt(3 / t.shape[1]!),
  );
}

/** Writes a PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors) of random bf16 weights. */
export function writeSyntheticAdapter(
  dir: string,
  shape: SyntheticModelShape,
  options: { rank: number; targets?: readonly LoraTarget[]; seed: number },
): void {
  mkdirSync(dir, { recursive: true });
  const targets = options.targets ?? LORA_TARGETS;
  writeFileSync(
    join(dir, "adapter_config.json"),
    JSON.stringify({ peft_type: "LORA", r: options.rank, lora_alpha: options.rank * 2, target_modules: targets, bias: "none", task_type: "CAUSAL_LM" }),
  );
  const tensors: PendingTensor[] = [];
  for (let i = 0; i < shape.numLayers; i++) {
    for (const t of targets) {
      const dims = projectionShape(shape, t);
      const p = `base_model.model.model.layers.${i}.${MODULE_GROUP[t]}.${t}`;
      tensors.push({ name: `${p}.lora_A.weight`, shape: [options.rank, dims.in] }, { name: `${p}.lora_B.weight`, shape: [dims.out, options.rank] });
    }
  }
  writeSafetensors(join(dir, "adapter_model.safetensors"), tensors, options.seed, (t) => 0.5 / Math.sqrt(t.shape[1]!));
}
