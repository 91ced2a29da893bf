// The loaders must accept real checkpoints and refuse broken ones with a message naming the file.
import { copyFileSync, cpSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadAdapterFiles } from "../shard/model/adapter.js";
import { readModelConfig } from "../shard/model/config.js";
import { loadModelFiles } from "../shard/model/model-files.js";
import { readSafetensors } from "../shard/model/safetensors.js";
import { fixtureSets } from "./helpers/fixture-sets.js";

const sets = fixtureSets();
const scratch = mkdtempSync(join(tmpdir(), "loraserve-model-files-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** A copy of a model directory that the test may break. */
function copyModel(modelDir: string, name: string): string {
  const dir = join(scratch, name);
  cpSync(modelDir, dir, { recursive: true });
  return dir;
}

describe.each(sets)("loaders on $name", ({ modelDir, adaptersDir, refs }) => {
  it("maps every base tensor with the config's shapes", () => {
    const files = loadModelFiles(modelDir);
    const config = JSON.parse(readFileSync(join(modelDir, "config.json"), "utf8"));
    expect(files.spec.numLayers).toBe(config.num_hidden_layers);
    expect(files.weights.layers).toHaveLength(config.num_hidden_layers);
    expect(files.weights.embedTokens.shape).toEqual([config.vocab_size, config.hidden_size]);
    expect(files.weights.lmHead === null).toBe(config.tie_word_embeddings === true);
  });

  it("reads every adapter as PEFT wrote it", () => {
    const { spec } = loadModelFiles(modelDir);
    for (const [id, meta] of Object.entries(refs.adapters)) {
      const adapter = loadAdapterFiles(join(adaptersDir, id), spec);
      expect(adapter.config.rank).toBe(meta.r);
      expect(adapter.config.scaling).toBeCloseTo(meta.scaling, 6);
      expect(new Set(adapter.weights.pairs.map((p) => p.target))).toEqual(new Set(meta.targets));
      const layers = meta.layers ?? [...Array(spec.numLayers).keys()];
      expect(new Set(adapter.weights.pairs.map((p) => p.layer))).toEqual(new Set(layers));
    }
  });

  it("refuses a truncated safetensors file, naming it", () => {
    const dir = copyModel(modelDir, "truncated");
    const file = join(dir, "model.safetensors");
    truncateSync(file, Math.floor(readFileSync(file).length / 2));
    expect(() => loadModelFiles(dir)).toThrow(new RegExp(`${file}: .*truncated`));
  });

  it("refuses a header whose offsets lie about the data", () => {
    const dir = copyModel(modelDir, "lying");
    const file = join(dir, "model.safetensors");
    const bytes = readFileSync(file);
    const headerLength = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString("utf8"));
    const name = Object.keys(header).find((k) => k !== "__metadata__")!;
    const [begin] = header[name].data_offsets;
    header[name].data_offsets = [begin, begin + 7];
    const text = Buffer.from(JSON.stringify(header).padEnd(headerLength, " "));
    expect(text.length).toBe(headerLength);
    text.copy(bytes, 8);
    writeFileSync(file, bytes);
    expect(() => readSafetensors(file)).toThrow(new RegExp(`${file}: tensor ${name.replace(/\./g, "\\.")}: data_offsets`));
  });

  it("refuses a config without a required field, naming the field", () => {
    const dir = copyModel(modelDir, "no-hidden");
    const configPath = join(dir, "config.json");
    const config = JSON.parse(readFileSync(configPath, "utf8"));
    delete config.hidden_size;
    writeFileSync(configPath, JSON.stringify(config));
    expect(() => readModelConfig(dir)).toThrow(`${configPath}: missing required field "hidden_size"`);
  });

  it("refuses an adapter whose shapes do not fit the base", () => {
    const { spec } = loadModelFiles(modelDir);
    const id = Object.keys(refs.adapters)[0]!;
    const narrower = { ...spec, hiddenSize: spec.hiddenSize * 2 };
    expect(() => loadAdapterFiles(join(adaptersDir, id), narrower)).toThrow(/adapter_model\.safetensors: tensor .* has shape .* expected/);
  });

  it("refuses an adapter that is not LoRA or uses DoRA", () => {
    const id = Object.keys(refs.adapters)[0]!;
    const dir = join(scratch, `dora-${id}`);
    cpSync(join(adaptersDir, id), dir, { recursive: true });
    const configPath = join(dir, "adapter_config.json");
    writeFileSync(configPath, JSON.stringify({ ...JSON.parse(readFileSync(configPath, "utf8")), use_dora: true }));
    expect(() => loadAdapterFiles(dir, loadModelFiles(modelDir).spec)).toThrow(`${configPath}: use_dora = true is not supported`);
    copyFileSync(join(adaptersDir, id, "adapter_config.json"), configPath);
    expect(loadAdapterFiles(dir, loadModelFiles(modelDir).spec).config.rank).toBe(refs.adapters[id]!.r);
  });
});
