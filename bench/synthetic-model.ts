// Writes a Llama checkpoint and PEFT adapters of random bf16 weights in the real on-disk formats, so the
// benchmark (and tests that need many or large models) can make any shape without a hub or Python.
// The layout (config, tensor names and shapes, the safetensors framing) lives here once; how the values are
// made is the caller's: `writeSyntheticModel` draws every value (fine up to some hundred MB), and
// bench/random-checkpoint.ts cuts 8B-scale tensors from one random pool.
import { closeSync, mkdirSync, openSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { LORA_TARGETS, type LoraTarget, type ModelSpec } from "../native/addon.js";
import { MODULE_GROUP, projectionShape } from "../shard/model/projections.js";

/** The dimensions a checkpoint's layout depends on (the rest of ModelSpec is written as fixed config values). */
export type SyntheticModelShape = Pick<
  ModelSpec,
  "hiddenSize" | "intermediateSize" | "numLayers" | "numHeads" | "numKvHeads" | "headDim" | "vocabSize" | "maxPositionEmbeddings"
>;

/** The CPU benchmarks' model: Llama-shaped, a few tens of MB, big enough that weights stream from memory. */
export const CPU_BENCH_SHAPE: SyntheticModelShape = {
  hiddenSize: 512,
  intermediateSize: 1536,
  numLayers: 8,
  numHeads: 8,
  numKvHeads: 4,
  headDim: 64,
  vocabSize: 8192,
  maxPositionEmbeddings: 1024,
};

/** Llama-3-8B's shape (the GPU benchmarks'): its 128256-id vocabulary makes the LM head cost what it really costs. */
export const LLAMA3_8B_SHAPE: SyntheticModelShape = {
  hiddenSize: 4096,
  intermediateSize: 14336,
  numLayers: 32,
  numHeads: 32,
  numKvHeads: 8,
  headDim: 128,
  vocabSize: 128256,
  maxPositionEmbeddings: 8192,
};

export interface SyntheticTensor {
  name: string;
  shape: number[];
}

/** The bytes of one tensor, in one or more chunks, given its place in the file's tensor list. */
export type TensorBytes = (tensor: SyntheticTensor, index: number) => Iterable<Uint8Array>;

export function elementCount(tensor: SyntheticTensor): number {
  return tensor.shape.reduce((a, d) => a * d, 1);
}

/** Deterministic xorshift32 stream → uniform bf16 values in [-scale, scale]. */
export function randomBf16(count: number, seed: number, scale: number): Uint16Array {
  const out = new Uint16Array(count);
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
  return out;
}

/** Writes a safetensors file of bf16 tensors, streaming each tensor's bytes as `bytesOf` yields them. */
export function writeBf16Safetensors(path: string, tensors: SyntheticTensor[], bytesOf: TensorBytes): number {
  const header: Record<string, unknown> = { __metadata__: { format: "pt" } };
  let offset = 0;
  for (const t of tensors) {
    const bytes = elementCount(t) * 2;
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
      for (const chunk of bytesOf(t, i)) writeSync(fd, chunk);
    });
  } finally {
    closeSync(fd);
  }
  return offset;
}

/** config.json and the tensor list of a Llama checkpoint of this shape (untied embeddings). */
export function writeModelConfig(dir: string, shape: SyntheticModelShape): SyntheticTensor[] {
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
  const tensors: SyntheticTensor[] = [{ name: "model.embed_tokens.weight", shape: [v, h] }];
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
  return tensors;
}

/** adapter_config.json and the tensor list of a PEFT LoRA adapter of this rank on these targets. */
export function writeAdapterConfig(dir: string, shape: SyntheticModelShape, rank: number, targets: readonly LoraTarget[]): SyntheticTensor[] {
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, "adapter_config.json"),
    JSON.stringify({ peft_type: "LORA", r: rank, lora_alpha: rank * 2, target_modules: targets, bias: "none", task_type: "CAUSAL_LM" }),
  );
  const tensors: SyntheticTensor[] = [];
  for (let i = 0; i < shape.numLayers; i++) {
    for (const t of targets) {
      const dims = projectionShape(shape, t);
      const p = `base_model.model.model.layers.${i}.${MODULE_GROUP[t]}.${t}`;
      tensors.push({ name: `${p}.lora_A.weight`, shape: [rank, dims.in] }, { name: `${p}.lora_B.weight`, shape: [dims.out, rank] });
    }
  }
  return tensors;
}

/** Writes config.json and model.safetensors; returns the bytes of weights written. */
export function writeSyntheticModel(dir: string, shape: SyntheticModelShape, seed = 1): number {
  const tensors = writeModelConfig(dir, shape);
  // Norm weights near 1 and projections scaled by fan-in keep activations in range through the layers.
  return writeBf16Safetensors(join(dir, "model.safetensors"), tensors, (t, i) => {
    const scale = t.shape.length === 1 ? 1 : Math.sqrt(3 / t.shape[1]!);
    return [new Uint8Array(randomBf16(elementCount(t), seed * 7919 + i + 1, scale).buffer)];
  });
}

/** Writes a PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors) of random bf16 weights. */
export function writeSyntheticAdapter(
  dir: string,
  shape: SyntheticModelShape,
  options: { rank: number; targets?: readonly LoraTarget[]; seed: number },
): void {
  const tensors = writeAdapterConfig(dir, shape, options.rank, options.targets ?? LORA_TARGETS);
  writeBf16Safetensors(join(dir, "adapter_model.safetensors"), tensors, (t, i) => [
    new Uint8Array(randomBf16(elementCount(t), options.seed * 7919 + i + 1, 0.5 / Math.sqrt(t.shape[1]!)).buffer),
  ]);
}
