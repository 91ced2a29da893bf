// The model's own sampling defaults, from generation_config.json: what an OpenAI request that leaves temperature
// unset gets (vLLM does the same). `do_sample: false` makes such requests greedy (the trained demo's config
// says so, and its adapters' answers are meant to be exact); otherwise the file's temperature, top_p and top_k
// fill what the request leaves unset, and with none of them it samples at temperature 1, OpenAI's default.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { LoadError } from "./load-error.js";

export interface GenerationDefaults {
  greedy: boolean;
  temperature?: number;
  topP?: number;
  topK?: number;
}

function numberField(config: Record<string, unknown>, key: string, path: string): number | undefined {
  const value = config[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "number" || !Number.isFinite(value)) throw new LoadError(path, `${key} must be a number, got ${JSON.stringify(value)}`);
  return value;
}

export function readGenerationDefaults(modelDir: string): GenerationDefaults {
  const path = join(modelDir, "generation_config.json");
  if (!existsSync(path)) return { greedy: false };
  let config: Record<string, unknown>;
  try {
    config = JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;
  } catch (error) {
    throw new LoadError(path, (error as Error).message);
  }
  const defaults: GenerationDefaults = { greedy: config.do_sample === false };
  const temperature = numberField(config, "temperature", path);
  const topP = numberField(config, "top_p", path);
  const topK = numberField(config, "top_k", path);
  if (temperature !== undefined) defaults.temperature = temperature;
  if (topP !== undefined) defaults.topP = topP;
  if (topK !== undefined) defaults.topK = topK;
  return defaults;
}
