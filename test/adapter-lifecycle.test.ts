// An adapter's life after it is found: weights that are not finite are refused at load, naming the tensor.
import { cpSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createEngine, type NativeEngine } from "../native/addon.js";
import { AdapterError } from "../shard/adapters/errors.js";
import type { AdapterRegistry } from "../shard/adapters/registry.js";
import { AdapterRoots } from "../shard/adapters/roots.js";
import { loadModelFiles } from "../shard/model/model-files.js";
import { openRegistry } from "./helpers/adapter-registry.js";
import { PROJECT_ROOT } from "./helpers/fixture-sets.js";

const DEMO = join(PROJECT_ROOT, "fixtures", "demo");
const WEIGHTS = "adapter_model.safetensors";

/** Copies the demo's `sql` adapter to `dir`. */
function copyAdapter(dir: string): void {
  cpSync(join(DEMO, "adapters", "sql"), dir, { recursive: true });
}

/** Overwrites element `index` of tensor `name` in `dir`'s weights with `bits` (a BF16 bit pattern). */
function poison(dir: string, name: string, index: number, bits: number): void {
  const path = join(dir, WEIGHTS);
  const bytes = readFileSync(path);
  const headerBytes = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerBytes).toString("utf8")) as Record<string, { dtype: string; data_offsets: [number, number] }>;
  const tensor = header[name]!;
  expect(tensor.dtype).toBe("BF16");
  bytes.writeUInt16LE(bits, 8 + headerBytes + tensor.data_offsets[0] + 2 * index);
  writeFileSync(path, bytes);
}

describe("adapter lifecycle", () => {
  let base: string;
  let root: string;
  let engine: NativeEngine;
  let registry: AdapterRegistry;

  beforeAll(async () => {
    base = realpathSync(mkdtempSync(join(tmpdir(), "loraserve-lifecycle-")));
    root = join(base, "root");
    const model = loadModelFiles(join(DEMO, "model"));
    engine = createEngine({ device: "cpu", rank: 0, world: 1, spec: model.spec, weights: model.weights, numKvBlocks: 8, blockSize: 16, maxLoras: 2, maxLoraRank: 64, threads: 1 });
    copyAdapter(join(root, "placeholder"));
    registry = await openRegistry(engine, model.spec, [], { maxLoras: 2, roots: new AdapterRoots([root]) });
  });
  afterAll(() => {
    engine?.close();
    if (base) rmSync(base, { recursive: true, force: true });
  });

  async function refusal(work: Promise<unknown>): Promise<AdapterError> {
    const error = await work.then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(AdapterError);
    return error as AdapterError;
  }

  it.each([
    ["NaN", 0x7fc0],
    ["+infinity", 0x7f80],
    ["-infinity", 0xff80],
  ])("refuses an adapter whose weights hold %s, naming the tensor", async (what, bits) => {
    const id = `bad-${what.replace(/\W/g, "")}`;
    const tensor = "base_model.model.model.layers.0.mlp.down_proj.lora_B.weight";
    copyAdapter(join(root, id));
    poison(join(root, id), tensor, 5, bits);
    const refused = await refusal(registry.prepare(id));
    expect(refused.kind).toBe("invalid");
    expect(refused.message).toContain(`tensor ${tensor} holds a non-finite value (NaN or infinity) at element 5`);
    expect(registry.ids()).not.toContain(id);
  });

  it("accepts the largest finite weights", async () => {
    copyAdapter(join(root, "large"));
    // BF16 0x7f7f: exponent 0xfe, the largest finite exponent.
    poison(join(root, "large"), "base_model.model.model.layers.0.mlp.down_proj.lora_A.weight", 3, 0x7f7f);
    await registry.prepare("large");
    expect((await registry.get("large")).tier).not.toBe("disk");
  });
});
