// What a real `loraserve serve` tells callers without the admin token about its files and adapters: no
// directory in GET /adapters (the admin sees them), no absolute path in the errors of a bad adapter, and no
// list of the known adapter ids when a request names an unknown one (unless --list-adapters-in-errors).
import { mkdtempSync, realpathSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fixtureSets } from "./helpers/fixture-sets.js";
import { adapterFlag, serve, type ServeReady, type Started } from "./helpers/process.js";

const START_TIMEOUT_MS = 60_000;
const TOKEN = "disclosure-admin-token";
const set = fixtureSets()[0]!;

interface AdapterJson {
  id: string;
  path?: string;
}

describe("what loraserve serve discloses to callers without the admin token", () => {
  const adapterIds = Object.keys(set.refs.adapters);
  let server: Started<ServeReady>;
  /** An adapter root whose only entry, `escape`, is a symlink to an adapter outside it. */
  let adapterRoot: string;

  beforeAll(async () => {
    adapterRoot = mkdtempSync(join(tmpdir(), "loraserve-disclosure-root-"));
    symlinkSync(join(set.adaptersDir, adapterIds[0]!), join(adapterRoot, "escape"));
    server = await serve(["--model-id", set.modelDir, "--adapter-root", adapterRoot, "--admin-token", TOKEN, ...adapterFlag(set.adaptersDir, adapterIds)]);
  }, START_TIMEOUT_MS);

  afterAll(async () => {
    await server?.stop();
    rmSync(adapterRoot, { recursive: true, force: true });
  });

  const get = (path: string, token?: string): Promise<Response> =>
    fetch(`${server.ready.url}${path}`, { headers: token === undefined ? {} : { authorization: `Bearer ${token}` } });
  const generate = (adapterId: string): Promise<Response> =>
    fetch(`${server.ready.url}/generate`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ inputs: "hello", parameters: { adapter_id: adapterId, max_new_tokens: 2 } }),
    });

  it("lists adapters without their directories, which the admin sees", async () => {
    const open = (await (await get("/adapters")).json()) as { adapters: AdapterJson[] };
    expect(open.adapters.map((a) => a.id).sort()).toEqual([...adapterIds].sort());
    expect(open.adapters.filter((a) => "path" in a)).toEqual([]);
    expect(await (await get(`/adapters/${adapterIds[0]}`)).json()).not.toHaveProperty("path");
    // A wrong token is no admin either.
    expect(((await (await get("/adapters", "wrong")).json()) as { adapters: AdapterJson[] }).adapters.filter((a) => "path" in a)).toEqual([]);
    const admin = (await (await get("/adapters", TOKEN)).json()) as { adapters: AdapterJson[] };
    expect(admin.adapters.map((a) => a.path).sort()).toEqual(adapterIds.map((id) => join(set.adaptersDir, id)).sort());
  });

  it("names no known adapter when a request names an unknown one", async () => {
    const unknown = await generate("no-such-adapter");
    expect(unknown.status).toBe(422);
    const { error } = (await unknown.json()) as { error: string };
    expect(error).toMatch(/"no-such-adapter" is not served here/);
    for (const id of adapterIds) expect(error).not.toContain(`"${id}"`);
  });

  it("refuses an adapter that leads outside its root without saying where the root or the adapter is", async () => {
    const escape = await generate("escape");
    expect(escape.status).toBe(403);
    const { error } = (await escape.json()) as { error: string };
    expect(error).toMatch(/"escape" leads outside the adapter root <adapter root 1>/);
    expect(error).not.toContain(realpathSync(adapterRoot));
    expect(error).not.toContain(tmpdir());
    expect(error).not.toMatch(/(^|\s)\//);
  });
});
