// OpenTelemetry traces end to end, against a real OTLP/HTTP receiver that decodes with OpenTelemetry's own
// protobuf types: a request sent to `loraserve serve` with a client's `traceparent` (an HTTP header, and gRPC
// metadata) yields the router's `route` span as the client span's child and the shard's `queue`, `prefill`
// and `decode` spans as its children, with the adapter and GenAI attributes; adapter loads are `adapter.load`
// spans, and the per-adapter metrics go out over OTLP too. A dead collector costs nothing but failed exports,
// and with nothing configured nothing is sent to the default OTLP ports.
import { randomBytes } from "node:crypto";
import { createServer, type Server } from "node:net";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GenerateService } from "../gen/loraserve/v1/generate_pb.js";
import { fixtureSets } from "./helpers/fixture-sets.js";
import { greedyIds } from "./helpers/greedy-reference.js";
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from "./helpers/otlp-receiver.js";
import { adapterFlag, startCli, unusedPort, type ServeReady, type Started } from "./helpers/process.js";

const START_TIMEOUT_MS = 60_000;
const set = fixtureSets()[0]!;
/** Every OTEL_* variable a run could inherit, emptied: each test states its own configuration. */
const NO_OTEL = Object.fromEntries(Object.keys(process.env).filter((key) => key.startsWith("OTEL_")).map((key) => [key, ""]));

interface TgiAnswer {
  details: { generated_tokens: number; tokens: { id: number }[] };
}

function newTraceparent(): { traceparent: string; traceId: string; spanId: string } {
  const traceId = randomBytes(16).toString("hex");
  const spanId = randomBytes(8).toString("hex");
  return { traceparent: `00-${traceId}-${spanId}-01`, traceId, spanId };
}

function serveWith(env: NodeJS.ProcessEnv, adapters: string[]): Promise<Started<ServeReady>> {
  return startCli<ServeReady>(["serve", "--port", "0", "--model-id", set.modelDir, ...adapterFlag(set.adaptersDir, adapters), "--threads", "2"], {
    ...NO_OTEL,
    ...env,
  });
}

async function tgiGenerate(url: string, body: object, headers: Record<string, string> = {}): Promise<TgiAnswer> {
  const response = await fetch(`${url}/generate`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });
  expect(response.status).toBe(200);
  return (await response.json()) as TgiAnswer;
}

function only(spans: ReceivedSpan[], name: string): ReceivedSpan {
  const named = spans.filter((span) => span.name === name);
  expect(named.map((span) => span.name), `one "${name}" span`).toEqual([name]);
  return named[0]!;
}


describe("OpenTelemetry traces through loraserve serve", () => {
  const adapterIds = Object.keys(set.refs.adapters);
  const adapter = adapterIds[0]!;
  const prompt = set.refs.prompts.findIndex((p) => p.text !== null);
  const promptText = set.refs.prompts[prompt]!.text!;
  const promptTokens = set.refs.prompts[prompt]!.ids.length;
  const expected = greedyIds(set, adapter, prompt).slice(0, 6);
  let receiver: OtlpReceiver;
  let spans: ReceivedSpan[];
  const http = newTraceparent();
  const grpc = newTraceparent();
  let httpAnswer: TgiAnswer;
  let grpcTokens: number[];
  /** What the processes logged, shown when an export is missing. */
  let serverLog = "";

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    const server = await serveWith(
      { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf", OTEL_METRICS_EXPORTER: "otlp" },
      adapterIds,
    );
    try {
      httpAnswer = await tgiGenerate(
        server.ready.url,
        { inputs: promptText, parameters: { adapter_id: adapter, max_new_tokens: expected.length, details: true } },
        { traceparent: http.traceparent },
      );
      const session = new Http2SessionManager(server.ready.url);
      const client = createClient(GenerateService, createGrpcTransport({ baseUrl: server.ready.url, sessionManager: session }));
      grpcTokens = [];
      const stream = client.generateStream(
        { inputs: promptText, adapterId: adapter, parameters: { maxNewTokens: expected.length } },
        { headers: { traceparent: grpc.traceparent } },
      );
      for await (const message of stream) grpcTokens.push(message.token!.id);
      session.abort();
    } finally {
      // Stopping flushes both processes' span exporters: no waiting on export timers.
      await server.stop();
      serverLog = server.stderr().slice(-4000);
    }
    spans = receiver.spans;
  }, START_TIMEOUT_MS);
  afterAll(async () => {
    await receiver?.close();
  });

  it("answers with the reference's greedy tokens while traced", () => {
    expect(httpAnswer.details.tokens.map((t) => t.id)).toEqual(expected);
    expect(grpcTokens).toEqual(expected);
  });

  it.each([
    ["an HTTP header", () => http],
    ["gRPC metadata", () => grpc],
  ])("continues the client's trace from %s: route under the client span, queue/prefill/decode under route", (_how, client) => {
    const { traceId, spanId } = client();
    const trace = spans.filter((span) => span.traceId === traceId);
    expect(trace.map((span) => span.name).sort(), `spans received: ${spans.length}; the processes' log:\n${serverLog}`).toEqual(["decode", "prefill", "queue", "route"]);
    const route = only(trace, "route");
    expect(route.parentSpanId).toBe(spanId);
    expect(route.service).toBe("loraserve-router");
    for (const name of ["queue", "prefill", "decode"]) {
      const span = only(trace, name);
      expect(span.parentSpanId, `${name}'s parent`).toBe(route.spanId);
      expect(span.service).toBe("loraserve-shard");
      expect(span.attributes["loraserve.adapter.id"]).toBe(adapter);
      expect(span.attributes["loraserve.adapter.resident"]).toBe(true);
      expect(span.attributes["gen_ai.request.model"]).toBe(set.modelDir);
      expect(span.attributes["gen_ai.request.max_tokens"]).toBe(expected.length);
      expect([span.attributes["shard.rank"], span.attributes["shard.world_size"]], `${name}: the tensor-parallel rank and group size`).toEqual([0, 1]);
    }
    expect(route.attributes).toMatchObject({
      "loraserve.adapter.id": adapter,
      "loraserve.adapter.resident": true,
      "loraserve.route.reason": "only_group",
      "gen_ai.operation.name": "text_completion",
      "gen_ai.request.max_tokens": expected.length,
      "gen_ai.usage.input_tokens": promptTokens,
      "gen_ai.usage.output_tokens": expected.length,
      "loraserve.outcome": "ok",
    });
    expect(String(route.attributes["loraserve.shard_group"])).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const decode = only(trace, "decode");
    expect(decode.attributes["gen_ai.usage.input_tokens"]).toBe(promptTokens);
    expect(decode.attributes["gen_ai.usage.output_tokens"]).toBe(expected.length);
    // The first token comes from prefill; decode steps make the rest, one sequence in each batch.
    expect(decode.attributes["loraserve.decode.steps"]).toBe(expected.length - 1);
    expect(decode.attributes["loraserve.batch_size"]).toBe(1);
    expect(only(trace, "prefill").attributes["loraserve.batch_size"]).toBe(1);
  });

  it("exports the same per-adapter metrics over OTLP", () => {
    const points = [...receiver.sums.values()].filter((p) => p.service === "loraserve-router");
    const requests = points.find((p) => p.metric === "loraserve_requests" && p.attributes.adapter === adapter && p.attributes.outcome === "ok");
    const output = points.find((p) => p.metric === "loraserve_output_tokens" && p.attributes.adapter === adapter);
    // Two requests (HTTP and gRPC), each generating the expected tokens.
    expect(requests?.value, `the processes' log:\n${serverLog}`).toBe(2);
    expect(output?.value).toBe(2 * expected.length);
  });

  it("traces each start-up adapter load as adapter.load", () => {
    const loads = spans.filter((span) => span.name === "adapter.load");
    expect(loads.map((span) => span.attributes["loraserve.adapter.id"]).sort()).toEqual([...adapterIds].sort());
  });
});

describe("OpenTelemetry off or unreachable", () => {
  it("serves normally when the collector is down (gRPC exporter to a closed port)", async () => {
    const server = await serveWith({ OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${await unusedPort()}`, OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" }, []);
    try {
      const answer = await tgiGenerate(server.ready.url, { inputs: "Hello", parameters: { max_new_tokens: 3, details: true } });
      expect(answer.details.generated_tokens).toBe(3);
    } finally {
      expect((await server.stop()).code).toBe(0);
    }
  }, START_TIMEOUT_MS);

  it("sends nothing to the default OTLP ports when no OTEL_* variable is set", async () => {
    // The SDK's defaults: OTLP/HTTP on 4318, OTLP/gRPC on 4317. Listen on both and count any connection.
    const http = await startOtlpReceiver(4318);
    let grpcConnections = 0;
    const grpc: Server = createServer((socket) => {
      grpcConnections++;
      socket.destroy();
    });
    await new Promise<void>((resolve) => grpc.listen(4317, "127.0.0.1", resolve));
    try {
      const server = await serveWith({}, []);
      const answer = await tgiGenerate(server.ready.url, { inputs: "Hello", parameters: { max_new_tokens: 3, details: true } }, { traceparent: newTraceparent().traceparent });
      expect(answer.details.generated_tokens).toBe(3);
      // A running SDK would flush its spans at shutdown.
      await server.stop();
      expect([...http.requests.keys()]).toEqual([]);
      expect(grpcConnections).toBe(0);
    } finally {
      await http.close();
      await new Promise((resolve) => grpc.close(resolve));
    }
  }, START_TIMEOUT_MS);
});
