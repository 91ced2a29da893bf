// `loraserve serve --api-processes 2` (router/api-processes.ts): the public port served by two router processes,
// requests answered whichever takes the connection, /metrics the sum of both from either (the shard groups' gauges
// taken once), a clean stop, and one process dying taking the server down with exit 1 rather than leaving half.
import { readFileSync } from "node:fs";
import { request } from "node:http";
import { describe, expect, it } from "vitest";
import { projectFixture } from "./helpers/fixture-sets.js";
import { isAlive, serve } from "./helpers/process.js";

/** One request on its own connection (no keep-alive), so the cluster's round robin spreads them over the processes. */
function fresh(port: number, method: string, path: string, body?: unknown): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, method, path, agent: false, headers: body === undefined ? {} : { "content-type": "application/json" } }, (response) => {
      const chunks: Buffer[] = [];
      response.on("data", (chunk: Buffer) => chunks.push(chunk));
      response.on("end", () => resolve({ status: response.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }));
    });
    req.on("error", reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

/** The router processes the primary started: its children. */
const childrenOf = (pid: number): number[] =>
  readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);

describe("loraserve serve --api-processes 2", () => {
  const { modelDir } = projectFixture("demo");

  it("answers on two processes, sums their metrics for whichever a scrape reaches, and stops cleanly", async () => {
    const server = await serve(["--model-id", modelDir, "--api-processes", "2", "--log-level", "warn"]);
    const workers = childrenOf(server.ready.pids.router);
    try {
      expect(workers).toHaveLength(2);
      const answers = await Promise.all(
        Array.from({ length: 8 }, () => fresh(server.ready.port, "POST", "/generate", { inputs: "hello", parameters: { max_new_tokens: 3 } })),
      );
      for (const answer of answers) {
        expect(answer.status, answer.text).toBe(200);
        expect(typeof (JSON.parse(answer.text) as { generated_text?: unknown }).generated_text).toBe("string");
      }
      // Whichever process a scrape reaches, it counts all eight, and the one group is up once, not once per process.
      for (let i = 0; i < 4; i++) {
        const metrics = await fresh(server.ready.port, "GET", "/metrics");
        expect(metrics.status).toBe(200);
        expect(metrics.text).toMatch(/^loraserve_requests_total\{adapter="base",outcome="ok"\} 8$/m);
        expect(metrics.text).toMatch(/^loraserve_shard_group_up\{shard_group="local"\} 1$/m);
      }
    } finally {
      const exit = await server.stop();
      expect(exit.code, server.stderr()).toBe(0);
    }
    expect(workers.filter(isAlive)).toEqual([]);
  }, 60_000);

  it("stops everything with exit 1 when one router process dies", async () => {
    const server = await serve(["--model-id", modelDir, "--api-processes", "2", "--log-level", "warn"]);
    const workers = childrenOf(server.ready.pids.router);
    process.kill(workers[0]!, "SIGKILL");
    const exit = await server.exited;
    expect(exit.code).toBe(1);
    expect(server.stderr()).toMatch(/router process \d+ exited with SIGKILL/);
    expect([server.ready.pids.router, server.ready.pids.shard, ...workers].filter(isAlive)).toEqual([]);
  }, 60_000);
});
