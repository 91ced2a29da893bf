// Adapter ids and paths against the adapter roots: ROOT/ID/ and the Hugging Face cache layout are found, and
// every attempt to leave a root is refused with the right kind of error before any file outside is opened.
import { cpSync, mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { promises } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { createEngine, type NativeEngine } from "../native/addon.js";
import { AdapterError, type AdapterErrorKind } from "../shard/adapters/errors.js";
import type { AdapterRegistry } from "../shard/adapters/registry.js";
import { AdapterRoots } from "../shard/adapters/roots.js";
import { loadModelFiles } from "../shard/model/model-files.js";
import { openRegistry } from "./helpers/adapter-registry.js";
import { PROJECT_ROOT } from "./helpers/fixture-sets.js";

const DEMO = join(PROJECT_ROOT, "fixtures", "demo");

describe("adapter roots", () => {
  let base: string;
  let root: string;
  let outside: string;
  let engine: NativeEngine;
  let registry: AdapterRegistry;
  /** Every path the adapter code opened or read whole, while a test ran. */
  let touched: string[];

  const adapterAt = (dir: string, id = "sql"): void => {
    mkdirSync(dir, { recursive: true });
    cpSync(join(DEMO, "adapters", id), dir, { recursive: true });
  };

  beforeAll(async () => {
    base = realpathSync(mkdtempSync(join(tmpdir(), "loraserve-roots-")));
    root = join(base, "root");
    outside = join(base, "outside");
    // A valid adapter outside the root: whatever reaches it would load fine, so only the checks refuse it.
    adapterAt(join(outside, "secret"));
    adapterAt(join(root, "plain"));
    adapterAt(join(root, "org", "nested"), "tone");
    // Hugging Face cache: refs/main names the snapshot; files are symlinks into blobs/ (inside the root).
    const cached = join(root, "models--acme--cached");
    adapterAt(join(cached, "blobs-src"), "tone");
    mkdirSync(join(cached, "blobs"), { recursive: true });
    mkdirSync(join(cached, "snapshots", "0123abcd"), { recursive: true });
    mkdirSync(join(cached, "snapshots", "ffff0000"), { recursive: true });
    mkdirSync(join(cached, "refs"), { recursive: true });
    writeFileSync(join(cached, "refs", "main"), "0123abcd\n");
    for (const file of ["adapter_config.json", "adapter_model.safetensors"]) {
      cpSync(join(cached, "blobs-src", file), join(cached, "blobs", `blob-${file}`));
      symlinkSync(join("..", "..", "blobs", `blob-${file}`), join(cached, "snapshots", "0123abcd", file));
    }
    // No refs/main: the newest snapshot wins.
    adapterAt(join(root, "models--acme--newest", "snapshots", "old"), "tone");
    adapterAt(join(root, "models--acme--newest", "snapshots", "new"), "sql");
    utimesSync(join(root, "models--acme--newest", "snapshots", "old"), new Date(2020, 0, 1), new Date(2020, 0, 1));
    // Ways out.
    symlinkSync(join(outside, "secret"), join(root, "link-out"));
    mkdirSync(join(root, "models--acme--evil", "snapshots"), { recursive: true });
    symlinkSync(join(outside, "secret"), join(root, "models--acme--evil", "snapshots", "r1"));
    adapterAt(join(root, "file-out"));
    rmSync(join(root, "file-out", "adapter_model.safetensors"));
    symlinkSync(join(outside, "secret", "adapter_model.safetensors"), join(root, "file-out", "adapter_model.safetensors"));
    adapterAt(join(root, "template-out"));
    writeFileSync(join(outside, "tokenizer_config.json"), JSON.stringify({ chat_template: "{{ secret }}" }));
    symlinkSync(join(outside, "tokenizer_config.json"), join(root, "template-out", "tokenizer_config.json"));
    mkdirSync(join(root, "models--acme--refout", "refs"), { recursive: true });
    writeFileSync(join(outside, "main"), "0123abcd");
    symlinkSync(join(outside, "main"), join(root, "models--acme--refout", "refs", "main"));

    const model = loadModelFiles(join(DEMO, "model"));
    engine = createEngine({ device: "cpu", rank: 0, world: 1, spec: model.spec, weights: model.weights, numKvBlocks: 8, blockSize: 16, maxLoras: 2, maxLoraRank: 64, threads: 1 });
    registry = await openRegistry(engine, model.spec, [], { maxLoras: 2, roots: new AdapterRoots([root]) });
  });
  afterAll(() => {
    engine?.close();
    if (base) rmSync(base, { recursive: true, force: true });
  });

  beforeAll(() => {
    touched = [];
    const record = (path: unknown): void => {
      touched.push(String(path instanceof URL ? path.pathname : path));
    };
    const open = promises.open.bind(promises);
    const readFile = promises.readFile.bind(promises);
    vi.spyOn(promises, "open").mockImplementation((path, ...rest) => {
      record(path);
      return open(path, ...rest);
    });
    vi.spyOn(promises, "readFile").mockImplementation((path, ...rest) => {
      record(path);
      return readFile(path as string, ...(rest as [never]));
    });
  });
  afterEach(() => {
    touched = [];
  });
  afterAll(() => {
    vi.restoreAllMocks();
  });

  async function refusal(work: Promise<unknown>): Promise<{ kind: AdapterErrorKind; message: string }> {
    const error = await work.then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(AdapterError);
    return { kind: (error as AdapterError).kind, message: (error as AdapterError).message };
  }

  it("finds ROOT/ID, nested ids and the Hugging Face cache layout (refs/main, else the newest snapshot)", async () => {
    const roots = new AdapterRoots([root]);
    expect(await roots.find("plain")).toEqual({ dir: join(root, "plain"), root });
    expect(await roots.find("org/nested")).toEqual({ dir: join(root, "org", "nested"), root });
    expect(await roots.find("acme/cached")).toEqual({ dir: join(root, "models--acme--cached", "snapshots", "0123abcd"), root });
    expect(await roots.find("acme/newest")).toEqual({ dir: join(root, "models--acme--newest", "snapshots", "new"), root });
    expect(await roots.find("nobody/here")).toBeNull();
    // The cached adapter's files are symlinks to blobs inside the root: they load.
    const cached = await registry.get("acme/cached");
    expect(cached.tier).toBe("disk");
    await registry.prepare("acme/cached");
    // The spy sees the adapter code's reads (the refusals below rely on it).
    expect(touched).toContain(join(root, "models--acme--cached", "blobs", "blob-adapter_model.safetensors"));
    expect(registry.list().find((a) => a.id === "acme/cached")).toMatchObject({ tier: "host", config: { rank: 2 } });
  });

  it.each([
    ["../secret", "invalid", /"\.\." segment/],
    ["/etc", "invalid", /absolute path/],
    ["a/../../outside/secret", "invalid", /"\.\." segment/],
    ["./plain", "invalid", /"\." or "\.\." segment/],
    ["bad\0id", "invalid", /NUL/],
    ["back\\slash", "invalid", /backslash/],
    ["a//b", "invalid", /empty path segment/],
    ["link-out", "outside_root", /leads outside the adapter root/],
    ["acme/evil", "outside_root", /leads outside the adapter root/],
    ["acme/refout", "outside_root", /leads outside the adapter root/],
    ["file-out", "outside_root", /adapter_model\.safetensors leads outside the adapter root/],
    ["template-out", "outside_root", /tokenizer_config\.json leads outside the adapter root/],
  ] as const)("refuses adapter id %j (%s) and reads nothing outside the root", async (id, kind, message) => {
    const refused = await refusal(registry.prepare(id));
    expect(refused.kind).toBe(kind);
    expect(refused.message).toMatch(message);
    expect(touched.filter((path) => !path.startsWith(root + "/"))).toEqual([]);
    // A refusal is remembered as nothing: the id is not listed as servable.
    expect(registry.ids()).not.toContain(id);
  });

  it("refuses LoadAdapter paths that leave the root, and reads nothing outside it", async () => {
    for (const [path, kind] of [
      ["../outside/secret", "invalid"],
      [join(outside, "secret"), "invalid"],
      ["plain/../../outside/secret", "invalid"],
      ["link-out", "outside_root"],
      ["models--acme--evil/snapshots/r1", "outside_root"],
    ] as const) {
      expect((await refusal(registry.load("custom", path))).kind, path).toBe(kind);
    }
    expect((await refusal(registry.load("../x", "plain"))).kind).toBe("invalid");
    expect((await refusal(registry.load("", ""))).kind).toBe("invalid");
    expect(touched.filter((path) => !path.startsWith(root + "/"))).toEqual([]);
    expect(registry.ids()).not.toContain("custom");
  });

  it("reads an adapter found in the root into host memory, then loads its slot from memory, not from disk", async () => {
    const loaded = await registry.load("custom", "plain");
    expect(loaded).toMatchObject({ id: "custom", dir: join(root, "plain"), tier: "host", config: { rank: 8 } });
    touched = [];
    registry.acquire("custom");
    await vi.waitFor(() => expect(registry.slotOf("custom")).not.toBeNull());
    registry.release("custom");
    expect(touched).toEqual([]);
    expect((await registry.get("custom")).tier).toBe("device");
  });

  it("refuses a root that is missing or not a directory when the shard starts", () => {
    expect(() => new AdapterRoots([join(base, "no-such-root")])).toThrow(/--adapter-root .*no-such-root: ENOENT/);
    expect(() => new AdapterRoots([join(root, "plain", "adapter_config.json")])).toThrow(/is not a directory/);
  });

  it("names the missing file when a directory in the root is not an adapter", async () => {
    mkdirSync(join(root, "empty-dir"), { recursive: true });
    const refused = await refusal(registry.prepare("empty-dir"));
    expect(refused).toEqual({ kind: "invalid", message: expect.stringMatching(/empty-dir\/adapter_config\.json: missing/) });
    expect((await refusal(registry.prepare("no-such-adapter"))).kind).toBe("not_found");
  });
});
