// GET /health keeps TGI's meaning across real processes: a router whose shard is not up yet answers 503, and
// the same router answers 200 once the shard has loaded its model.
import { afterAll, expect, it } from "vitest";
import { fixtureSets } from "./helpers/fixture-sets.js";
import { startCli, unusedPort, type Started } from "./helpers/process.js";

const START_TIMEOUT_MS = 60_000;
const set = fixtureSets()[0];
const started: Started<{ event: "ready"; port: number }>[] = [];

afterAll(async () => {
  await Promise.all(started.map((p) => p.stop()));
});

it.skipIf(!set)(
  "is 503 before the shard is ready and 200 after",
  async () => {
    const shardPort = await unusedPort();
    const router = await startCli<{ event: "ready"; port: number }>([
      "router",
      "--port",
      "0",
      "--hostname",
      "127.0.0.1",
      "--shard-uri",
      `http://127.0.0.1:${shardPort}`,
    ]);
    started.push(router);
    const health = `http://127.0.0.1:${router.ready.port}/health`;
    const before = await fetch(health);
    expect(before.status).toBe(503);
    expect(((await before.json()) as { error_type: string }).error_type).toBe("healthcheck");

    started.push(await startCli(["shard", "--model-id", set!.modelDir, "--shard-port", String(shardPort)]));
    expect((await fetch(health)).status).toBe(200);
  },
  START_TIMEOUT_MS,
);
