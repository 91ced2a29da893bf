// The serving benchmark's model and adapters: a random Llama checkpoint with the generated tokenizer and n PEFT
// adapters (S-LoRA's S1: rank 8 on q/k/v/o; a rank list such as 8,16,32,64 gives its S2 mix, adapter i taking
// rank i mod the list). Written into a directory that a later run may reuse: each part carries a stamp of what it
// was made as, and only a missing or different part is written again (the 8B model is 16 GB).
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { LoraTarget } from "../../native/addon.js";
import { adapterPool, writeRandomAdapter, writeRandomModel } from "../random-checkpoint.js";
import type { SyntheticModelShape } from "../synthetic-model.js";
import { writeGeneratedTokenizer } from "./tokenizer.js";

/** Small enough that the 2-core CPU machine serves a few requests a second. */
export const TINY_SERVE_SHAPE: SyntheticModelShape = {
  hiddenSize: 128,
  intermediateSize: 384,
  numLayers: 2,
  numHeads: 4,
  numKvHeads: 2,
  headDim: 32,
  vocabSize: 4096,
  maxPositionEmbeddings: 1024,
};

export const S1_TARGETS: readonly LoraTarget[] = ["q_proj", "k_proj", "v_proj", "o_proj"];

export interface AdapterSpec {
  rank: number;
  targets: readonly LoraTarget[];
}

/** A model directory and the adapters served on it, as `--lora-adapters` names them. */
export interface Checkpoint {
  modelDir: string;
  adapters: { id: string; dir: string }[];
}

const STAMP = ".loraserve-bench.json";

function stamped(dir: string, made: unknown): boolean {
  const path = join(dir, STAMP);
  return existsSync(path) && readFileSync(path, "utf8") === JSON.stringify(made);
}

function stamp(dir: string, made: unknown): void {
  writeFileSync(join(dir, STAMP), JSON.stringify(made));
}

export function adapterSpecOf(index: number, ranks: readonly number[], targets: readonly LoraTarget[]): AdapterSpec {
  return { rank: ranks[index % ranks.length]!, targets };
}

/**
 * Makes (or finds already made) the model and `count` adapters under `root`; `log` hears what is being written.
 * Adapter i is `adapter-i`, so a run with fewer adapters reuses the first ones of a larger run.
 */
export function makeCheckpoint(
  root: string,
  shape: SyntheticModelShape,
  count: number,
  adapterSpec: (index: number) => AdapterSpec,
  log: (line: string) => void,
): Checkpoint {
  const modelDir = join(root, "model");
  if (!stamped(modelDir, shape)) {
    log(`writing a random ${shape.numLayers}-layer, hidden ${shape.hiddenSize}, vocab ${shape.vocabSize} model into ${modelDir}`);
    writeRandomModel(modelDir, shape);
    writeGeneratedTokenizer(modelDir, shape.vocabSize);
    stamp(modelDir, shape);
  }
  let pool: Uint16Array | null = null;
  const adapters: Checkpoint["adapters"] = [];
  for (let i = 0; i < count; i++) {
    const id = `adapter-${i}`;
    const dir = join(root, "adapters", id);
    const spec = adapterSpec(i);
    const made = { shape, ...spec };
    if (!stamped(dir, made)) {
      if (pool === null) log(`writing adapters from ${id} on into ${join(root, "adapters")}`);
      pool ??= adapterPool();
      mkdirSync(dir, { recursive: true });
      writeRandomAdapter(dir, shape, spec.rank, 11 + i, pool, spec.targets);
      stamp(dir, made);
    }
    adapters.push({ id, dir });
  }
  return { modelDir, adapters };
}
