// An adapter's life after it is found: weights that are not finite are refused at load, naming the tensor; files
// changed on disk are read again once the sequences on the old copy finish, under a new registration; a draining
// unload refuses new requests and waits for the running ones.
import { cpSync, mkdtempSync, readFileSync, realpathSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
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

/**
 * Writes a file the way a deployment does, into a new file renamed over the old one: a new inode, so that the
 * change shows however soon after the last read it comes (an in-place rewrite within the file system's clock tick
 * keeps size, mtime and inode, and is found only by the next change).
 */
function replaceFile(path: string, bytes: Buffer | string): void {
  writeFileSync(`${path}.new`, bytes);
  renameSync(`${path}.new`, path);
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
  replaceFile(path, bytes);
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
    // Files are compared at every request here, so that the tests need no clock.
    registry = await openRegistry(engine, model.spec, [], { maxLoras: 2, roots: new AdapterRoots([root]), filesCheckIntervalMs: 0 });
  });
  afterAll(() => {
    engine?.close();
    if (base) rmSync(base, { recursive: true, force: true });
  });

  /** Whether `work` has settled after the event loop has run everything ready. */
  async function settled(work: Promise<unknown>): Promise<boolean> {
    let done = false;
    void work.then(
      () => (done = true),
      () => (done = true),
    );
    for (let i = 0; i < 20; i++) await new Promise<void>((resolve) => setImmediate(resolve));
    return done;
  }

  /** Rewrites the adapter's config with another lora_alpha: a change the registry's description shows. */
  function setAlpha(dir: string, alpha: number): void {
    const path = join(dir, "adapter_config.json");
    replaceFile(path, JSON.stringify({ ...JSON.parse(readFileSync(path, "utf8")), lora_alpha: alpha }));
  }

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

  it("keeps an adapter whose files did not change: same registration, same bytes", async () => {
    copyAdapter(join(root, "steady"));
    await registry.prepare("steady");
    const version = registry.versionOf("steady");
    await registry.prepare("steady");
    await registry.prepare("steady");
    expect(registry.versionOf("steady")).toBe(version);
    expect((await registry.get("steady")).tier).toBe("host");
  });

  it("reads an adapter changed on disk again once its running sequences finish, under a new registration", async () => {
    copyAdapter(join(root, "swap"));
    await registry.prepare("swap");
    const oldAlpha = (await registry.get("swap")).config!.alpha;
    const oldVersion = registry.versionOf("swap");
    registry.acquire("swap");
    await vi.waitFor(() => expect(registry.slotOf("swap")).not.toBeNull());

    setAlpha(join(root, "swap"), oldAlpha * 2);
    const next = registry.prepare("swap");
    // The running sequence keeps the copy it started with; the new request waits instead of mixing copies.
    expect(await settled(next)).toBe(false);
    expect(registry.versionOf("swap")).toBe(oldVersion);
    expect((await registry.get("swap")).config!.alpha).toBe(oldAlpha);
    expect(registry.slotOf("swap")).not.toBeNull();

    registry.release("swap");
    await next;
    expect(registry.versionOf("swap")).toBeGreaterThan(oldVersion);
    expect((await registry.get("swap")).config!.alpha).toBe(oldAlpha * 2);
    // The new copy runs like any other.
    registry.acquire("swap");
    await vi.waitFor(() => expect(registry.slotOf("swap")).not.toBeNull());
    registry.release("swap");
  });

  it("looks at the files of an adapter whose bytes were evicted before reading them again, whatever the interval", async () => {
    const model = loadModelFiles(join(DEMO, "model"));
    // One adapter in host memory, and an interval no test reaches.
    const small = await openRegistry(engine, model.spec, [], { maxLoras: 2, maxCpuLoras: 1, roots: new AdapterRoots([root]), filesCheckIntervalMs: 3_600_000 });
    copyAdapter(join(root, "evicted"));
    copyAdapter(join(root, "evictor"));
    await small.prepare("evicted");
    const oldVersion = small.versionOf("evicted");
    const oldAlpha = (await small.get("evicted")).config!.alpha;
    await small.prepare("evictor");
    expect((await small.get("evicted")).tier).toBe("disk");

    setAlpha(join(root, "evicted"), oldAlpha * 4);
    await small.prepare("evicted");
    expect(small.versionOf("evicted")).toBeGreaterThan(oldVersion);
    expect((await small.get("evicted")).config!.alpha).toBe(oldAlpha * 4);
  });

  it("refuses an adapter whose files change into invalid ones, and serves them again once fixed", async () => {
    const dir = join(root, "broken-later");
    copyAdapter(dir);
    await registry.prepare("broken-later");
    poison(dir, "base_model.model.model.layers.0.mlp.down_proj.lora_A.weight", 0, 0x7fc0);
    const refused = await refusal(registry.prepare("broken-later"));
    expect(refused.kind).toBe("invalid");
    expect(refused.message).toMatch(/non-finite/);
    replaceFile(join(dir, WEIGHTS), readFileSync(join(DEMO, "adapters", "sql", WEIGHTS)));
    await registry.prepare("broken-later");
    expect((await registry.get("broken-later")).tier).toBe("host");
  });

  it("unloads with drain once the running sequences finish, refusing new requests meanwhile", async () => {
    copyAdapter(join(root, "drained"));
    await registry.prepare("drained");
    registry.acquire("drained");
    expect((await refusal(registry.unload("drained"))).kind).toBe("in_use");

    const unloaded = registry.unload("drained", { drain: true });
    expect(await settled(unloaded)).toBe(false);
    const refused = await refusal(registry.prepare("drained"));
    expect(refused).toMatchObject({ kind: "unloading", message: 'adapter "drained" is being unloaded: it takes no new requests' });
    expect(registry.ids()).toContain("drained");

    registry.release("drained");
    await unloaded;
    expect(registry.ids()).not.toContain("drained");
    // Found in its root again by the next request, as after any unload.
    await registry.prepare("drained");
    expect(registry.ids()).toContain("drained");
  });

  it("lets a draining unload win over a reload waiting on the same sequences", async () => {
    copyAdapter(join(root, "both"));
    await registry.prepare("both");
    registry.acquire("both");
    setAlpha(join(root, "both"), 3);
    const reloaded = registry.prepare("both");
    // The reload waits for the sequence before the unload begins.
    expect(await settled(reloaded)).toBe(false);
    const unloaded = registry.unload("both", { drain: true });
    expect(await settled(unloaded)).toBe(false);
    registry.release("both");
    await unloaded;
    expect((await refusal(reloaded)).kind).toBe("unloading");
    expect(registry.ids()).not.toContain("both");
  });

  it("unloads with drain at once when nothing uses the adapter", async () => {
    copyAdapter(join(root, "idle"));
    await registry.prepare("idle");
    await registry.unload("idle", { drain: true });
    expect(registry.ids()).not.toContain("idle");
  });
});
