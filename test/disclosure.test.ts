// What the shard's errors may say to anyone who can generate: the known adapter ids only with
// --list-adapters-in-errors, and no absolute path (adapter roots by their number, other paths as "<path>").
import { describe, expect, it } from "vitest";
import { AdapterCatalog } from "../shard/adapters/catalog.js";
import { AdapterRoots } from "../shard/adapters/roots.js";
import { parseShardArgs } from "../shard/options.js";
import { pathRedactor } from "../shard/redact-paths.js";

function notFoundMessage(listIds: boolean, known: number): string {
  const catalog = new AdapterCatalog(new AdapterRoots([]), listIds);
  for (let i = 0; i < known; i++) catalog.add(`a${i}`, `/srv/adapters/a${i}`, null);
  try {
    catalog.known("nope");
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error("an unknown id was found");
}

describe("not-found errors", () => {
  it("name no known adapter by default, and up to 20 with --list-adapters-in-errors (LIST_ADAPTERS_IN_ERRORS=true)", () => {
    expect(notFoundMessage(false, 3)).toBe('adapter "nope" is not served here');
    expect(notFoundMessage(true, 2)).toBe('adapter "nope" is not served here; known adapters: "a0", "a1"');
    expect(notFoundMessage(true, 22)).toMatch(/"a19", and 2 more$/);
    expect(parseShardArgs(["--model-id", "/m"], {}).listAdaptersInErrors).toBe(false);
    expect(parseShardArgs(["--model-id", "/m", "--list-adapters-in-errors"], {}).listAdaptersInErrors).toBe(true);
    expect(parseShardArgs(["--model-id", "/m"], { LIST_ADAPTERS_IN_ERRORS: "true" }).listAdaptersInErrors).toBe(true);
  });
});

describe("pathRedactor", () => {
  const redact = pathRedactor(["/srv/roots/a", "/srv/roots/a/nested"]);

  it("names each adapter root by its number, keeping what follows it, the longest root first", () => {
    expect(redact('"x" leads outside the adapter root /srv/roots/a (a symlink or path out of it)')).toBe(
      '"x" leads outside the adapter root <adapter root 1> (a symlink or path out of it)',
    );
    expect(redact("/srv/roots/a/nested/y/adapter_config.json: bad")).toBe("<adapter root 2>/y/adapter_config.json: bad");
  });

  it("hides every other absolute path, and leaves ids with slashes alone", () => {
    expect(redact('adapter "acme/tone" cannot be read: ENOENT: open "/home/op/tone/adapter_config.json"')).toBe(
      'adapter "acme/tone" cannot be read: ENOENT: open "<path>"',
    );
    expect(redact("a/b and ./c/d stay")).toBe("a/b and ./c/d stay");
  });
});
