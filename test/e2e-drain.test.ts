// SIGTERM drains instead of cutting: with a real `loraserve router` and `loraserve shard` apart, a request in
// flight when the signal comes completes; new requests meanwhile get 503 with `retry-after` (and gRPC health
// NOT_SERVING); a stream that outlasts the grace period ends with a final error event; every process exits 0.
// `loraserve serve` passes the signal on and waits: its stream in flight completes too.
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { request as httpRequest, type IncomingMessage } from "node:http";
import { afterEach, describe, expect, it, vi } from "vitest";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import { projectFixture } from "./helpers/fixture-sets.js";
import { isAlive, serve, startCli, type Started } from "./helpers/process.js";
import { readEventData } from "./helpers/sse.js";

const set = projectFixture("demo");
const START_TIMEOUT_MS = 60_000;
const TEST_TIMEOUT_MS = 90_000;
/** A greedy run of the demo model that goes on for 205 tokens before its EOS: still running after its first. */
const LONG_STREAM = { inputs: "hello world", parameters: { max_new_tokens: 400 } };

type Ready = { event: "ready"; port: number };
const started: Started<Ready>[] = [];

afterEach(async () => {
  await Promise.all(started.splice(0).map((p) => p.stop("SIGKILL")));
});

async function startShard(graceSeconds: number): Promise<Started<Ready>> {
  const args = ["shard", "--model-id", set.modelDir, "--device", "cpu", "--threads", "1", "--shutdown-grace-seconds", String(graceSeconds)];
  const shard = await startCli<Ready>(args);
  started.push(shard);
  return shard;
}

async function startRouter(shard: Started<Ready>, graceSeconds: number): Promise<Started<Ready> & { url: string }> {
  const uri = `http://127.0.0.1:${shard.ready.port}`;
  const router = await startCli<Ready>(["router", "--port", "0", "--hostname", "127.0.0.1", "--shard-uri", uri, "--shutdown-grace-seconds", String(graceSeconds)]);
  started.push(router);
  const url = `http://127.0.0.1:${router.ready.port}`;
  await vi.waitFor(async () => expect((await fetch(`${url}/health`)).status).toBe(200), { timeout: 10_000 });
  return { ...router, url };
}

interface StreamEvent {
  token?: { id: number };
  generated_text?: string | null;
  details?: { finish_reason: string } | null;
  error?: string;
  error_type?: string;
}

/** Opens /generate_stream, waits for its first event, calls `signal`, and returns every event of the stream. */
async function streamAcross(url: string, signal: () => void): Promise<StreamEvent[]> {
  const response = await fetch(`${url}/generate_stream`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(LONG_STREAM) });
  expect(response.status).toBe(200);
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let text = "";
  const first = await reader.read();
  text += decoder.decode(first.value, { stream: true });
  signal();
  for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) text += decoder.decode(chunk.value, { stream: true });
  return (await readEventData(new Response(text))).map((data) => JSON.parse(data) as StreamEvent);
}

describe("SIGTERM drains", () => {
  it(
    "the router: a request in flight completes, new ones get 503 with retry-after and health NOT_SERVING, then it exits 0",
    async () => {
      const shard = await startShard(30);
      const router = await startRouter(shard, 30);
      // In flight for as long as this test holds its body back: a request the drain must wait for.
      const body = JSON.stringify({ inputs: "hello world", parameters: { max_new_tokens: 3 } });
      const held = httpRequest(`${router.url}/generate`, { method: "POST", headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) } });
      const answered = new Promise<IncomingMessage>((resolve, reject) => held.once("response", resolve).once("error", reject));
      held.write(body.slice(0, 10));
      await vi.waitFor(() => expect(held.socket?.bytesWritten ?? 0).toBeGreaterThan(0));

      const exited = router.stop("SIGTERM");
      await vi.waitFor(async () => expect((await fetch(`${router.url}/health`)).status).toBe(503), { timeout: 10_000 });
      const refused = await fetch(`${router.url}/generate`, { method: "POST", headers: { "content-type": "application/json" }, body });
      expect(refused.status).toBe(503);
      expect(Number(refused.headers.get("retry-after"))).toBeGreaterThan(0);
      expect(await refused.json()).toMatchObject({ error_type: "unavailable" });
      const health = createClient(Health, createGrpcTransport({ baseUrl: router.url }));
      expect((await health.check({ service: "" })).status).toBe(ServingStatus.NOT_SERVING);

      held.end(body.slice(10));
      const response = await answered;
      expect(response.statusCode).toBe(200);
      const chunks: Buffer[] = [];
      for await (const chunk of response) chunks.push(chunk as Buffer);
      expect((JSON.parse(Buffer.concat(chunks).toString("utf8")) as { generated_text: string }).generated_text).toEqual(expect.any(String));
      expect(await exited).toEqual({ code: 0, signal: null });
    },
    TEST_TIMEOUT_MS,
  );

  it(
    "the router: a stream that outlasts the grace period ends with a final error event, then it exits 0",
    async () => {
      const shard = await startShard(30);
      const router = await startRouter(shard, 0);
      let exited: Promise<unknown> = Promise.resolve();
      const events = await streamAcross(router.url, () => (exited = router.stop("SIGTERM")));
      const last = events.at(-1)!;
      expect(last).toMatchObject({ error: expect.stringMatching(/shutting down/), error_type: expect.any(String) });
      expect(events.slice(0, -1).every((event) => event.token !== undefined && event.error === undefined)).toBe(true);
      expect(await exited).toEqual({ code: 0, signal: null });
    },
    TEST_TIMEOUT_MS,
  );

  it(
    "the shard: a stream running when it is signalled completes within the grace period, then it exits 0",
    async () => {
      const shard = await startShard(30);
      const router = await startRouter(shard, 30);
      let exited: Promise<unknown> = Promise.resolve();
      const events = await streamAcross(router.url, () => (exited = shard.stop("SIGTERM")));
      const last = events.at(-1)!;
      expect(last.error).toBeUndefined();
      expect(typeof last.generated_text).toBe("string");
      expect(await exited).toEqual({ code: 0, signal: null });
      // Drained, the shard is gone: the router now refuses with 503 and retry-after, it does not hang.
      const after = await fetch(`${router.url}/generate`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(LONG_STREAM) });
      expect(after.status).toBe(503);
      expect(after.headers.get("retry-after")).not.toBeNull();
    },
    TEST_TIMEOUT_MS,
  );

  it(
    "the shard: a stream that outlasts its grace period ends with a final error event, then it exits 0",
    async () => {
      const shard = await startShard(0);
      const router = await startRouter(shard, 30);
      let exited: Promise<unknown> = Promise.resolve();
      const events = await streamAcross(router.url, () => (exited = shard.stop("SIGTERM")));
      expect(events.at(-1)).toMatchObject({ error: expect.stringMatching(/shutting down/) });
      expect(await exited).toEqual({ code: 0, signal: null });
    },
    TEST_TIMEOUT_MS,
  );

  it(
    "loraserve serve: a stream in flight when serve is signalled completes, then serve and its processes exit 0",
    async () => {
      const server = await serve(["--model-id", set.modelDir, "--threads", "1"]);
      const events = await streamAcross(server.ready.url, () => void server.stop("SIGTERM"));
      const last = events.at(-1)!;
      expect(last.error).toBeUndefined();
      expect(typeof last.generated_text).toBe("string");
      expect(await server.exited).toEqual({ code: 0, signal: null });
      for (const pid of server.ready.pids.ranks.concat(server.ready.pids.router)) expect(isAlive(pid)).toBe(false);
    },
    TEST_TIMEOUT_MS,
  );
});
