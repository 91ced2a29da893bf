// Health across real processes: a router whose shard is not up yet answers GET /health 503 and reports
// NOT_SERVING over grpc.health.v1; once the shard has loaded its model, 200 and SERVING; when the shard goes
// away, NOT_SERVING again.
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { afterAll, expect, it, vi } from "vitest";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import { fixtureSets } from "./helpers/fixture-sets.js";
import { startCli, unusedPort, type Started } from "./helpers/process.js";

const START_TIMEOUT_MS = 60_000;
/** Room for a few of the router's Status polls. */
const HEALTH_CHANGE_TIMEOUT_MS = 10_000;
const set = fixtureSets()[0]!;
const started: Started<{ event: "ready"; port: number }>[] = [];

afterAll(async () => {
  await Promise.all(started.map((p) => p.stop()));
});

it(
  "is 503 and NOT_SERVING before the shard is ready, 200 and SERVING after, NOT_SERVING once it stops",
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
    const url = `http://127.0.0.1:${router.ready.port}`;
    const session = new Http2SessionManager(url);
    const health = createClient(Health, createGrpcTransport({ baseUrl: url, sessionManager: session }));
    const expectStatus = (status: ServingStatus) =>
      vi.waitFor(async () => {
        for (const service of ["", "loraserve.v1.GenerateService"]) expect((await health.check({ service })).status).toBe(status);
      }, HEALTH_CHANGE_TIMEOUT_MS);
    try {
      const before = await fetch(`${url}/health`);
      expect(before.status).toBe(503);
      expect(((await before.json()) as { error_type: string }).error_type).toBe("healthcheck");
      await expectStatus(ServingStatus.NOT_SERVING);

      const shard = await startCli<{ event: "ready"; port: number }>(["shard", "--model-id", set.modelDir, "--shard-port", String(shardPort)]);
      // /health reads the router's status view, which follows the shard within a poll (backing off to 4 s).
      const expectHealth = (code: number) => vi.waitFor(async () => expect((await fetch(`${url}/health`)).status).toBe(code), HEALTH_CHANGE_TIMEOUT_MS);
      await expectHealth(200);
      await expectStatus(ServingStatus.SERVING);

      await shard.stop();
      await expectStatus(ServingStatus.NOT_SERVING);
      await expectHealth(503);
    } finally {
      session.abort();
    }
  },
  START_TIMEOUT_MS,
);
