// The launcher owns its two processes: SIGTERM stops both and exits 0, and when one of them dies the launcher
// stops the other and exits non-zero. Either way no process is left behind.
import { describe, expect, it } from "vitest";
import { fixtureSets } from "./helpers/fixture-sets.js";
import { isAlive, serve } from "./helpers/process.js";

const START_TIMEOUT_MS = 60_000;
const set = fixtureSets()[0]!;


describe("loraserve serve shutdown", () => {
  it(
    "stops the shard and the router on SIGTERM and exits 0",
    async () => {
      const server = await serve(["--model-id", set.modelDir]);
      const { shard, router } = server.ready.pids;
      expect((await fetch(`${server.ready.url}/health`)).status).toBe(200);
      expect(await server.stop("SIGTERM")).toEqual({ code: 0, signal: null });
      expect(isAlive(shard)).toBe(false);
      expect(isAlive(router)).toBe(false);
    },
    START_TIMEOUT_MS,
  );

  it(
    "stops the router and exits non-zero when the shard dies",
    async () => {
      const server = await serve(["--model-id", set.modelDir]);
      const { shard, router } = server.ready.pids;
      process.kill(shard, "SIGKILL");
      const exit = await server.exited;
      expect(exit.signal).toBeNull();
      expect(exit.code).toBe(1);
      expect(server.stderr()).toContain("shard was killed by SIGKILL");
      expect(isAlive(router)).toBe(false);
    },
    START_TIMEOUT_MS,
  );
});
