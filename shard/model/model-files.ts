// A Hugging Face Llama checkpoint directory → the engine's typed weight list. Finds the safetensors files
// (single file or sharded index), maps the Hugging Face tensor names and checks every shape against the config.
import { existsSync, readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import type { BaseWeights, LayerWeights, ModelSpec, TensorRef } from "../../native/addon.js";
import { readJsonFile, readModelConfig } from "./config.js";
import { LoadError } from "./load-error.js";
import { readSafetensors } from "./safetensors.js";
import { expectShape } from "./shape.js";

export interface ModelFiles {
  dir: string;
  spec: ModelSpec;
  weights: BaseWeights;
  tieWordEmbeddings: boolean;
}

function weightFiles(dir: string): string[] {
  const index = join(dir, "model.safetensors.index.json");
  if (existsSync(index)) {
    const weightMap = readJsonFile(index).weight_map;
    if (typeof weightMap !== "object" || weightMap === null) throw new LoadError(index, 'missing "weight_map"');
    return [...new Set(Object.values(weightMap as Record<string, string>))].map((f) => join(dir, f));
  }
  const files = readdirSync(dir).filter((f) => f.endsWith(".safetensors")).sort();
  if (files.length === 0) throw new LoadError(dir, "no .safetensors weights found (pickle .bin checkpoints are not loaded)");
  return files.map((f) => join(dir, f));
}

export function loadModelFiles(modelDir: string): ModelFiles {
  const dir = resolve(modelDir);
  const { spec, tieWordEmbeddings } = readModelConfig(dir);
  const tensors = new Map<string, TensorRef>();
  for (const file of weightFiles(dir)) {
    for (const [name, ref] of readSafetensors(file).tensors) tensors.set(name, ref);
  }
  const take = (name: string, shape: number[]): TensorRef => {
    const ref = tensors.get(name);
    if (!ref) throw new LoadError(dir, `tensor ${name} is missing from the safetensors files`);
    expectShape(ref, name, shape);
    return ref;
  };
  const { hiddenSize: h, intermediateSize: m, numHeads, numKvHeads, headDim, vocabSize } = spec;
  const layers: LayerWeights[] = [];
  for (let i = 0; i < spec.numLayers; i++) {
    const p = `model.layers.${i}.`;
    layers.push({
      inputNorm: take(`${p}input_layernorm.weight`, [h]),
      postAttentionNorm: take(`${p}post_attention_layernorm.weight`, [h]),
      q: take(`${p}self_attn.q_proj.weight`, [numHeads * headDim, h]),
      k: take(`${p}self_attn.k_proj.weight`, [numKvHeads * headDim, h]),
      v: take(`${p}self_attn.v_proj.weight`, [numKvHeads * headDim, h]),
      o: take(`${p}self_attn.o_proj.weight`, [h, numHeads * headDim]),
      gate: take(`${p}mlp.gate_proj.weight`, [m, h]),
      up: take(`${p}mlp.up_proj.weight`, [m, h]),
      down: take(`${p}mlp.down_proj.weight`, [h, m]),
    });
  }
  const embedTokens = take("model.embed_tokens.weight", [vocabSize, h]);
  // Tied checkpoints often still store lm_head; transformers ignores it then, and so do we.
  const lmHead = tieWordEmbeddings ? null : take("lm_head.weight", [vocabSize, h]);
  return { dir, spec, tieWordEmbeddings, weights: { embedTokens, lmHead, finalNorm: take("model.norm.weight", [h]), layers } };
}
