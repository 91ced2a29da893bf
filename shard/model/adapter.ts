// A PEFT LoRA adapter directory → the engine's typed adapter weights. Validates the config against what the
// engine computes and every tensor against the base model's shapes, so a bad adapter is refused by name.
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { LORA_TARGETS, type AdapterWeights, type LoraTarget, type LoraTensorPair, type ModelSpec, type TensorRef } from "../../native/addon.js";
import { readJsonFile, type Json } from "./config.js";
import { LoadError } from "./load-error.js";
import { readSafetensors, type SafetensorsFile } from "./safetensors.js";
import { MODULE_GROUP, projectionShape } from "./projections.js";
import { expectShape } from "./shape.js";

export interface AdapterConfig {
  rank: number;
  alpha: number;
  scaling: number;
  useRslora: boolean;
  targets: LoraTarget[];
  /** Layers the adapter touches; null means every layer. */
  layers: number[] | null;
}

export interface AdapterFiles {
  dir: string;
  config: AdapterConfig;
  weights: AdapterWeights;
}

const TENSOR_NAME = /^(?:base_model\.model\.)?model\.layers\.(\d+)\.(?:self_attn|mlp)\.([a-z_]+)\.lora_([AB])(?:\.[A-Za-z0-9_-]+)?\.weight$/;

function isTarget(name: string): name is LoraTarget {
  return (LORA_TARGETS as readonly string[]).includes(name);
}

function parseTargets(path: string, raw: unknown): LoraTarget[] {
  if (raw === "all-linear") return [...LORA_TARGETS];
  if (typeof raw === "string") {
    // PEFT treats a string as a regex over full module names; match it against each projection's name.
    const re = new RegExp(raw);
    const hits = LORA_TARGETS.filter((t) => re.test(`model.layers.0.${MODULE_GROUP[t]}.${t}`));
    if (hits.length === 0) throw new LoadError(path, `target_modules regex ${JSON.stringify(raw)} matches none of ${LORA_TARGETS.join(", ")}`);
    return hits;
  }
  if (!Array.isArray(raw) || raw.length === 0) throw new LoadError(path, `target_modules must be a non-empty list, got ${JSON.stringify(raw)}`);
  return raw.map((t) => {
    if (typeof t !== "string" || !isTarget(t)) {
      throw new LoadError(path, `target module ${JSON.stringify(t)} is not supported (supported: ${LORA_TARGETS.join(", ")})`);
    }
    return t;
  });
}

function parseConfig(path: string, json: Json, numLayers: number): AdapterConfig {
  if (json.peft_type !== "LORA") throw new LoadError(path, `peft_type ${JSON.stringify(json.peft_type)} is not supported (LORA)`);
  const unsupported: [string, boolean][] = [
    ["use_dora", json.use_dora === true],
    ["fan_in_fan_out", json.fan_in_fan_out === true],
    ["bias", json.bias !== undefined && json.bias !== "none"],
    ["modules_to_save", Array.isArray(json.modules_to_save) && json.modules_to_save.length > 0],
    ["rank_pattern", Object.keys((json.rank_pattern as object | null) ?? {}).length > 0],
    ["alpha_pattern", Object.keys((json.alpha_pattern as object | null) ?? {}).length > 0],
  ];
  for (const [key, bad] of unsupported) if (bad) throw new LoadError(path, `${key} = ${JSON.stringify(json[key])} is not supported`);
  const rank = json.r;
  const alpha = json.lora_alpha ?? rank;
  if (!Number.isSafeInteger(rank) || (rank as number) <= 0) throw new LoadError(path, `"r" must be a positive integer, got ${JSON.stringify(rank)}`);
  if (typeof alpha !== "number" || !Number.isFinite(alpha)) throw new LoadError(path, `"lora_alpha" must be a number, got ${JSON.stringify(alpha)}`);
  const useRslora = json.use_rslora === true;
  const rawLayers = json.layers_to_transform;
  let layers: number[] | null = null;
  if (rawLayers !== null && rawLayers !== undefined) {
    layers = Array.isArray(rawLayers) ? rawLayers : [rawLayers];
    for (const l of layers) {
      if (!Number.isSafeInteger(l) || l < 0 || l >= numLayers) throw new LoadError(path, `layers_to_transform holds ${JSON.stringify(l)}; the base has ${numLayers} layers`);
    }
  }
  return {
    rank: rank as number,
    alpha,
    useRslora,
    scaling: useRslora ? alpha / Math.sqrt(rank as number) : alpha / (rank as number),
    targets: parseTargets(path, json.target_modules),
    layers,
  };
}

export const ADAPTER_CONFIG_FILE = "adapter_config.json";
export const ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors";

export function loadAdapterFiles(adapterDir: string, spec: ModelSpec): AdapterFiles {
  const dir = resolve(adapterDir);
  const configPath = join(dir, ADAPTER_CONFIG_FILE);
  const weightsPath = join(dir, ADAPTER_WEIGHTS_FILE);
  const configJson = readJsonFile(configPath);
  if (!existsSync(weightsPath)) {
    throw new LoadError(weightsPath, existsSync(join(dir, "adapter_model.bin")) ? "missing; pickle adapter_model.bin is not loaded, convert it to safetensors" : "missing");
  }
  return adapterFromFiles(dir, configPath, configJson, readSafetensors(weightsPath), spec);
}

/** Validates an adapter whose config and safetensors header are already read (from disk or from memory). */
export function adapterFromFiles(dir: string, configPath: string, configJson: Json, file: SafetensorsFile, spec: ModelSpec): AdapterFiles {
  const config = parseConfig(configPath, configJson, spec.numLayers);
  const weightsPath = file.path;
  const halves = new Map<string, { layer: number; target: LoraTarget; a?: TensorRef; b?: TensorRef }>();
  for (const [name, ref] of file.tensors) {
    const match = TENSOR_NAME.exec(name);
    if (!match) throw new LoadError(weightsPath, `tensor ${name} is not a LoRA A/B weight of a Llama projection`);
    const [, layerText, target, half] = match as unknown as [string, string, string, "A" | "B"];
    const layer = Number(layerText);
    if (!isTarget(target)) throw new LoadError(weightsPath, `tensor ${name} targets ${target}, which is not supported`);
    if (layer >= spec.numLayers) throw new LoadError(weightsPath, `tensor ${name} is for layer ${layer}; the base has ${spec.numLayers} layers`);
    if (config.layers && !config.layers.includes(layer)) continue;
    const { in: inDim, out: outDim } = projectionShape(spec, target);
    expectShape(ref, name, half === "A" ? [config.rank, inDim] : [outDim, config.rank]);
    const key = `${layer}.${target}`;
    const entry = halves.get(key) ?? { layer, target };
    if (half === "A") entry.a = ref;
    else entry.b = ref;
    halves.set(key, entry);
  }
  const pairs: LoraTensorPair[] = [];
  for (const { layer, target, a, b } of halves.values()) {
    if (!a || !b) throw new LoadError(weightsPath, `layer ${layer} ${target} has lora_${a ? "A" : "B"} but not lora_${a ? "B" : "A"}`);
    pairs.push({ layer, target, a, b });
  }
  if (pairs.length === 0) throw new LoadError(weightsPath, "holds no LoRA weights");
  pairs.sort((x, y) => x.layer - y.layer || LORA_TARGETS.indexOf(x.target) - LORA_TARGETS.indexOf(y.target));
  return { dir, config, weights: { rank: config.rank, scaling: config.scaling, pairs } };
}
