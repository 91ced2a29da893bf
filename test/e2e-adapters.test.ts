// `loraserve serve --adapter-root DIR --admin-token T` as users run it: the launcher hands the root to the shard
// and the token to the router (from the flag or LORASERVE_ADMIN_TOKEN); an adapter nobody registered answers
// TGI's /generate on first use like the reference, and /adapters loads and unloads with the token only.
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { projectFixture } from "./helpers/fixture-sets.js";
import { greedyIds } from "./helpers/greedy-reference.js";
import { serve, startCli, type ServeReady, type Started } from "./helpers/process.js";

const set = projectFixture("demo");
const TOKEN = "e2e-admin-token";

describe("loraserve serve with an adapter root", () => {
  const fixture = set;
  let dir: string;
  let server: Started<ServeReady>;
  const prompt = fixture.refs.prompts[0]!;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "loraserve-e2e-adapters-"));
    cpSync(fixture.adaptersDir, join(dir, "root"), { recursive: true });
    server = await serve(["--model-id", fixture.modelDir, "--adapter-root", join(dir, "root"), "--max-loras", "1", "--admin-token", TOKEN]);
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const post = (path: string, body: unknown, token?: string): Promise<Response> =>
    fetch(`${server.ready.url}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify(body),
    });

  it("serves an adapter found in the root on its first request", async () => {
    for (const id of Object.keys(fixture.refs.adapters)) {
      const response = await post("/generate", { inputs: prompt.text, parameters: { adapter_id: id, max_new_tokens: fixture.refs.steps, details: true } });
      expect(response.status, id).toBe(200);
      const body = (await response.json()) as { details: { tokens: { id: number }[] } };
      expect(body.details.tokens.map((t) => t.id), id).toEqual(greedyIds(fixture, id, 0));
    }
  });

  it("loads and unloads through /adapters with the router's admin token only", async () => {
    expect((await post("/adapters", { id: "sql" })).status).toBe(401);
    expect((await post("/adapters", { id: "sql" }, "wrong")).status).toBe(403);
    const loaded = await post("/adapters", { id: "sql" }, TOKEN);
    expect(loaded.status).toBe(200);
    expect(await loaded.json()).toMatchObject({ id: "sql", rank: fixture.refs.adapters.sql!.r });
    const unloaded = await fetch(`${server.ready.url}/adapters/sql`, { method: "DELETE", headers: { authorization: `Bearer ${TOKEN}` } });
    expect(unloaded.status).toBe(200);
  });

  it("takes the token from LORASERVE_ADMIN_TOKEN", async () => {
    const other = await startCli<ServeReady>(["serve", "--port", "0", "--model-id", fixture.modelDir, "--adapter-root", join(dir, "root")], {
      LORASERVE_ADMIN_TOKEN: "from-env",
    });
    try {
      const load = (token: string) =>
        fetch(`${other.ready.url}/adapters`, {
          method: "POST",
          headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
          body: JSON.stringify({ id: "tone" }),
        });
      expect((await load(TOKEN)).status).toBe(403);
      expect((await load("from-env")).status).toBe(200);
    } finally {
      await other.stop();
    }
  }, 60_000);
});
