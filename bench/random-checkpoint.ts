// Writes a Llama checkpoint and PEFT adapters of random bf16 weights at 8B scale in seconds: every tensor is
// cut from one 64 MiB pool of random values at its own offset, so 16 GB cost one pass of file writes instead
// of a random-number draw per weight (bench/synthetic-model.ts draws each value, fine for small models). The
// values only have to be non-zero and in range: the GPU's timing must not see zeros.
import { closeSync, mkdirSync, openSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { LORA_TARGETS } from "../native/addon.js";
import { MODULE_GROUP, projectionShape } from "../shard/model/projections.js";
import type { SyntheticModelShape } from "./synthetic-model.js";

const POOL_ELEMENTS = 32 << 20;

/** Uniform bf16 in [-scale, scale] from xorshift32. */
function randomPool(seed: number, scale: number): Uint16Array {
  const pool = new Uint16Array(POOL_ELEMENTS);
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < pool.length; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    f32[0] = ((s / 4294967296) * 2 - 1) * scale;
    pool[i] = u32[0]! >>> 16;
  }
  return pool;
}

interface Tensor {
  name: string;
  shape: number[];
  /** 1-D norm weights are ones; matrices come from the pool. */
  ones?: boolean;
}

function writeSafetensors(path: string, tensors: Tensor[], pool: Uint16Array, seed: number): void {
  const header: Record<string, unknown> = { __metadata__: { format: "pt" } };
  let offset = 0;
  for (const t of tensors) {
    const bytes = t.shape.reduce((a, d) => a * d, 1) * 2;
    header[t.name] = { dtype: "BF16", shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const json = JSON.stringify(header).padEnd(Math.ceil(JSON.stringify(header).length / 8) * 8, " ");
  const poolBytes = new Uint8Array(pool.buffer);
  const ones = new Uint16Array(1 << 16).fill(0x3f80);
  const fd = openSync(path, "w");
  try {
    const length = Buffer.alloc(8);
    length.writeBigUInt64LE(BigInt(json.length));
    writeSync(fd, length);
    writeSync(fd, Buffer.from(json));
    tensors.forEach((t, index) => {
      let remaining = t.shape.reduce((a, d) => a * d, 1) * 2;
      if (t.ones) {
        writeSync(fd, new Uint8Array(ones.buffer, 0, remaining));
        return;
      }
      // Each tensor starts at its own (even) place in the pool and wraps around.
      let at = (((seed * 7919 + index * 104729) % POOL_ELEMENTS) * 2) % poolBytes.length;
      while (remaining > 0) {
        const n = Math.min(remaining, poolBytes.length - at);
        writeSync(fd, poolBytes, at, n);
        remaining -= n;
        at = 0;
      }
    });
  } finally {
    closeSync(fd);
  }
}

export function writeRandomModel(dir: string, shape: SyntheticModelShape): void {
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
  const tensors: Tensor[] = [{ name: "model.embed_tokens.weight", shape: [v, h] }];
  for (let i = 0; i < shape.numLayers; i++) {
    const p = `model.layers.${i}.`;
    tensors.push(
      { name: `${p}input_layernorm.weight`, shape: [h], ones: true },
      { name: `${p}post_attention_layernorm.weight`, shape: [h], ones: true },
      { name: `${p}self_attn.q_proj.weight`, shape: [numHeads * d, h] },
      { name: `${p}self_attn.k_proj.weight`, shape: [numKvHeads * d, h] },
      { name: `${p}self_attn.v_proj.weight`, shape: [numKvHeads * d, h] },
      { name: `${p}self_attn.o_proj.weight`, shape: [h, numHeads * d] },
      { name: `${p}mlp.gate_proj.weight`, shape: [m, h] },
      { name: `${p}mlp.up_proj.weight`, shape: [m, h] },
      { name: `${p}mlp.down_proj.weight`, shape: [h, m] },
    );
  }
  tensors.push({ name: "model.norm.weight", shape: [h], ones: true }, { name: "lm_head.weight", shape: [v, h] });
  writeSafetensors(join(dir, "model.safetensors"), tensors, randomPool(1, Math.sqrt(3 / h)), 1);
}

/** A rank-`rank` PEFT adapter on all seven projections; `seed` picks where its tensors start in the pool. */
export function writeRandomAdapter(dir: string, shape: SyntheticModelShape, rank: number, seed: number, pool: Uint16Array): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, "adapter_config.json"),
    JSON.stringify({ peft_type: "LORA", r: rank, lora_alpha: 2 * rank, target_modules: LORA_TARGETS, bias: "none", task_type: "CAUSAL_LM" }),
  );
  const tensors: Tensor[] = [];
  for (let i = 0; i < shape.numLayers; i++) {
    for (const t of LORA_TARGETS) {
      const dims = projectionShape(shape, t);
      const p = `base_model.model.model.layers.${i}.${MODULE_GROUP[t]}.${t}`;
      tensors.push({ name: `${p}.lora_A.weight`, shape: [rank, dims.in] }, { name: `${p}.lora_B.weight`, shape: [dims.out, rank] });
    }
  }
  writeSafetensors(join(dir, "adapter_model.safetensors"), tensors, pool, seed);
}

export function adapterPool(): Uint16Array {
  return randomPool(2, 0.01);
}
