// config.json → the engine's ModelSpec. Accepts both the transformers 4 form (`rope_theta`, `rope_scaling`)
// and the transformers 5 form (`rope_parameters`), and refuses what the engine does not compute.
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { ModelSpec, RopeScaling } from "../../native/addon.js";
import { LoadError } from "./load-error.js";

export interface ModelConfig {
  spec: ModelSpec;
  tieWordEmbeddings: boolean;
}

export type Json = Record<string, unknown>;

export function readJsonFile(path: string): Json {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new LoadError(path, `cannot read: ${(err as Error).message}`);
  }
  return parseJsonObject(path, text);
}

/** A JSON object read from `path` (named in errors). */
export function parseJsonObject(path: string, text: string): Json {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new LoadError(path, `not valid JSON: ${(err as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new LoadError(path, "not a JSON object");
  return value as Json;
}

function positiveInt(path: string, json: Json, key: string, fallback?: number): number {
  const value = json[key] ?? fallback;
  if (value === undefined || value === null) throw new LoadError(path, `missing required field "${key}"`);
  if (!Number.isSafeInteger(value) || (value as number) <= 0) {
    throw new LoadError(path, `"${key}" must be a positive integer, got ${JSON.stringify(value)}`);
  }
  return value as number;
}

function positiveNumber(path: string, json: Json, key: string, fallback: number): number {
  const value = json[key] ?? fallback;
  if (typeof value !== "number" || !(value > 0)) throw new LoadError(path, `"${key}" must be a positive number, got ${JSON.stringify(value)}`);
  return value;
}

function ropeScaling(path: string, raw: unknown): RopeScaling {
  if (raw === null || raw === undefined) return { type: "none" };
  if (typeof raw !== "object") throw new LoadError(path, `rope scaling must be an object, got ${JSON.stringify(raw)}`);
  const json = raw as Json;
  const type = json.rope_type ?? json.type ?? "default";
  switch (type) {
    case "default":
      return { type: "none" };
    case "linear":
      return { type: "linear", factor: positiveNumber(path, json, "factor", NaN) };
    case "llama3":
      return {
        type: "llama3",
        factor: positiveNumber(path, json, "factor", NaN),
        lowFreqFactor: positiveNumber(path, json, "low_freq_factor", NaN),
        highFreqFactor: positiveNumber(path, json, "high_freq_factor", NaN),
        originalMaxPositionEmbeddings: positiveInt(path, json, "original_max_position_embeddings"),
      };
    default:
      throw new LoadError(path, `rope scaling type "${String(type)}" is not supported (supported: default, linear, llama3)`);
  }
}

export function readModelConfig(modelDir: string): ModelConfig {
  const path = join(resolve(modelDir), "config.json");
  const json = readJsonFile(path);
  const modelType = json.model_type;
  if (modelType !== "llama" && modelType !== "mistral") {
    throw new LoadError(path, `model_type ${JSON.stringify(modelType)} is not supported (llama, mistral)`);
  }
  if (modelType === "mistral" && json.sliding_window != null) {
    throw new LoadError(path, "sliding_window attention is not supported; set it to null");
  }
  if (json.hidden_act !== undefined && json.hidden_act !== "silu") {
    throw new LoadError(path, `hidden_act ${JSON.stringify(json.hidden_act)} is not supported (silu)`);
  }
  for (const bias of ["attention_bias", "mlp_bias"]) {
    if (json[bias] === true) throw new LoadError(path, `${bias}: true is not supported`);
  }
  const hiddenSize = positiveInt(path, json, "hidden_size");
  const numHeads = positiveInt(path, json, "num_attention_heads");
  const numKvHeads = positiveInt(path, json, "num_key_value_heads", numHeads);
  if (numHeads % numKvHeads !== 0) {
    throw new LoadError(path, `num_attention_heads (${numHeads}) must be a multiple of num_key_value_heads (${numKvHeads})`);
  }
  const defaultHeadDim = hiddenSize % numHeads === 0 ? hiddenSize / numHeads : undefined;
  // transformers 5 moved rope_theta and the scaling into rope_parameters; either place is valid.
  const rope = (json.rope_parameters ?? {}) as Json;
  const ropeTheta = positiveNumber(path, { rope_theta: json.rope_theta ?? rope.rope_theta }, "rope_theta", 10000);
  const scaling = ropeScaling(path, json.rope_scaling ?? (json.rope_parameters === undefined ? null : rope));
  return {
    spec: {
      hiddenSize,
      intermediateSize: positiveInt(path, json, "intermediate_size"),
      numLayers: positiveInt(path, json, "num_hidden_layers"),
      numHeads,
      numKvHeads,
      headDim: positiveInt(path, json, "head_dim", defaultHeadDim),
      vocabSize: positiveInt(path, json, "vocab_size"),
      rmsNormEps: positiveNumber(path, json, "rms_norm_eps", 1e-6),
      ropeTheta,
      ropeScaling: scaling,
      maxPositionEmbeddings: positiveInt(path, json, "max_position_embeddings", 2048),
    },
    tieWordEmbeddings: json.tie_word_embeddings === true,
  };
}
