// The one path-containment check (shard/adapters/path-containment.ts) against every way out of a root.
import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AdapterError } from "../shard/adapters/errors.js";
import { assertInside, isInside, realpathInside } from "../shard/adapters/path-containment.js";

describe("path containment", () => {
  let base: string;
  let root: string;

  beforeAll(() => {
    base = realpathSync(mkdtempSync(join(tmpdir(), "loraserve-containment-")));
    root = join(base, "roots", "a");
    mkdirSync(join(root, "inner"), { recursive: true });
    mkdirSync(join(base, "roots", "ab"), { recursive: true });
    mkdirSync(join(base, "outside"));
    writeFileSync(join(root, "inner", "file"), "in");
    writeFileSync(join(base, "outside", "secret"), "out");
    writeFileSync(join(base, "roots", "ab", "file"), "sibling");
    symlinkSync(join(base, "outside", "secret"), join(root, "file-out"));
    symlinkSync(join(base, "outside"), join(root, "dir-out"));
    symlinkSync(join(root, "inner", "file"), join(root, "file-in"));
    symlinkSync(root, join(base, "root-link"));
  });
  afterAll(() => rmSync(base, { recursive: true, force: true }));

  async function refusal(path: string, against = root): Promise<AdapterError> {
    const error: unknown = await realpathInside(path, against, "x").then(() => null, (e: unknown) => e);
    expect(error).toBeInstanceOf(AdapterError);
    return error as AdapterError;
  }

  it("accepts the root itself, paths below it and symlinks that stay inside", async () => {
    expect(await realpathInside(root, root, "x")).toBe(root);
    expect(await realpathInside(join(root, "inner", "file"), root, "x")).toBe(join(root, "inner", "file"));
    expect(await realpathInside(join(root, "file-in"), root, "x")).toBe(join(root, "inner", "file"));
  });

  it("answers null for a path that does not exist", async () => {
    expect(await realpathInside(join(root, "missing"), root, "x")).toBeNull();
    expect(await realpathInside(join(root, "inner", "file", "below-a-file"), root, "x")).toBeNull();
  });

  it('refuses ".." out of the root', async () => {
    expect((await refusal(join(root, "..", "..", "outside", "secret"))).kind).toBe("outside_root");
    expect((await refusal(join(root, "inner", "..", ".."))).kind).toBe("outside_root");
  });

  it("refuses an absolute path outside the root", async () => {
    expect((await refusal(join(base, "outside", "secret"))).kind).toBe("outside_root");
  });

  it("refuses a symlink to a file outside", async () => {
    const error = await refusal(join(root, "file-out"));
    expect(error.kind).toBe("outside_root");
    expect(error.message).toMatch(/^x leads outside the adapter root /);
  });

  it("refuses a symlinked directory leading outside, and files reached through it", async () => {
    expect((await refusal(join(root, "dir-out"))).kind).toBe("outside_root");
    expect((await refusal(join(root, "dir-out", "secret"))).kind).toBe("outside_root");
  });

  it("accepts a root reached through a symlink (its real path is what counts)", async () => {
    expect(await realpathInside(join(base, "root-link", "inner", "file"), root, "x")).toBe(join(root, "inner", "file"));
  });

  it("refuses a sibling whose name starts with the root's (/roots/a vs /roots/ab)", async () => {
    expect(isInside(join(base, "roots", "ab"), root)).toBe(false);
    expect(isInside(join(base, "roots", "ab", "file"), root)).toBe(false);
    expect(isInside(join(root, "inner"), `${root}/`)).toBe(true);
    expect((await refusal(join(base, "roots", "ab", "file"))).kind).toBe("outside_root");
  });

  it("checks nothing when the operator named the directory (no root)", async () => {
    expect(await realpathInside(join(base, "outside", "secret"), null, "x")).toBe(join(base, "outside", "secret"));
    expect(() => assertInside(join(base, "outside"), null, "x")).not.toThrow();
    expect(() => assertInside(join(base, "outside"), root, "x")).toThrow(AdapterError);
  });
});
