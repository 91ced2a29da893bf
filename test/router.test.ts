// The router on its own, in front of a stand-in shard whose answers the test controls: protocol handling on
// one port, TGI's JSON shapes and status codes, and cancellation reaching the shard. The real shard and the
// reference numbers are checked end to end in e2e-*.test.ts.
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type ServiceImpl } from "@connectrpc/connect";
import { connectNodeAdapter, createConnectTransport, createGrpcTransport, createGrpcWebTransport, Http2SessionManager } from "@connectrpc/connect-node";
import http2 from "node:http2";
import type { AddressInfo, Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import {
  FinishReason,
  GenerateService,
  GenerateStreamResponseSchema,
  type GenerateRequest,
  type GenerateStreamResponse,
} from "../gen/loraserve/v1/generate_pb.js";
import { Device, Dtype, ModelService } from "../gen/loraserve/v1/model_pb.js";
import { ShardService } from "../gen/loraserve/v1/shard_pb.js";
import type { OnePortServer } from "../router/one-port-server.js";
import { VERSION } from "../router/version.js";
import { startRouter } from "../router/server.js";
import { STATUS_POLL } from "../router/status-watcher.js";
import { readEventData } from "./helpers/sse.js";

const MAX_BODY_BYTES = 4096;
/** Long enough for the router's status watcher to poll the shard twice. */
const STATUS_POLL_WAIT = { timeout: 3 * STATUS_POLL.periodMs, interval: 100 };

/** What the stand-in shard streams for an ordinary request: three tokens, then the final details. */
function answer(request: GenerateRequest): GenerateStreamResponse[] {
  const topN = request.parameters?.topNTokens ?? 0;
  const tokens = [
    { id: 5, text: "a", logprob: -0.5 },
    { id: 6, text: "b", logprob: -1 },
    { id: 7, text: "c", logprob: -1.5 },
  ].map((t) => ({ ...t, special: false, topTokens: topN > 0 ? [{ id: t.id, text: t.text, logprob: t.logprob, special: false }] : [] }));
  return tokens.map((token, i) =>
    create(GenerateStreamResponseSchema, {
      token,
      text: token.text,
      ...(i === tokens.length - 1 && {
        generatedText: "abc",
        details: {
          finishReason: FinishReason.LENGTH,
          generatedTokens: 3,
          promptTokens: 2,
          tokens: request.parameters?.details ? tokens : [],
          prefill: request.parameters?.decoderInputDetails
            ? [
                { id: 0, text: "<s>" },
                { id: 9, text: "x", logprob: -2.25 },
              ]
            : [],
        },
      }),
    }),
  );
}

/** Promise.withResolvers, which Node 20 lacks. */
function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

class FakeShard {
  ready = true;
  /** Resolve when a "hang" request arrives, and when its caller cancels it. */
  hanging = deferred();
  cancelled = deferred();
  private server = http2.createServer(
    connectNodeAdapter({ routes: (router) => router.service(ShardService, this.implementation()) }),
  );
  port = 0;
  private readonly sessions = new Set<http2.ServerHttp2Session>();
  private readonly sockets = new Set<Socket>();

  constructor() {
    this.server.on("session", (session) => this.sessions.add(session.once("close", () => this.sessions.delete(session))));
    this.server.on("connection", (socket: Socket) => this.sockets.add(socket.once("close", () => this.sockets.delete(socket))));
  }

  /** Ends every session: with a GOAWAY as a shard going away does, or by cutting the TCP connection without a word. */
  dropSessions(how: "goaway" | "cut"): void {
    if (how === "goaway") for (const session of this.sessions) session.goaway(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
    else for (const socket of this.sockets) socket.destroy();
  }

  private implementation(): Partial<ServiceImpl<typeof ShardService>> {
    const shard = this;
    return {
      status: () => ({
        ready: shard.ready,
        modelId: "org/base",
        adapterIds: ["sql"],
        maxTotalTokens: 64,
        maxInputTokens: 60,
        maxNewTokensLimit: 32,
        modelDtype: Dtype.BFLOAT16,
        device: Device.CPU,
        vocabSize: 512,
        maxLoras: 4,
        maxLoraRank: 16,
      }),
      async *generate(request, context) {
        if (request.adapterId === "outside") {
          throw new ConnectError('adapter "outside" leads outside every adapter root', Code.PermissionDenied);
        }
        if (request.adapterId !== "" && request.adapterId !== "sql") {
          throw new ConnectError(`adapter "${request.adapterId}" is not loaded; known adapters: sql`, Code.NotFound);
        }
        if (request.inputs === "" && request.messages.length === 0) throw new ConnectError("the prompt is empty", Code.InvalidArgument);
        if (request.inputs === "fail") {
          yield answer(request)[0]!;
          throw new ConnectError("the engine failed", Code.Internal);
        }
        if (request.inputs === "hang" || request.messages[0]?.content === "x") {
          shard.hanging.resolve();
          yield answer(request)[0]!;
          await new Promise<void>((resolve) => context.signal.addEventListener("abort", () => resolve()));
          shard.cancelled.resolve();
          return;
        }
        yield* answer(request);
      },
    };
  }

  async listen(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.port = (this.server.address() as AddressInfo).port;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

const shard = new FakeShard();
let router: OnePortServer;
let base: string;

beforeAll(async () => {
  await shard.listen();
  router = await startRouter({ port: 0, hostname: "127.0.0.1", shardUris: [`http://127.0.0.1:${shard.port}`], maxBodyBytes: MAX_BODY_BYTES });
  base = `http://127.0.0.1:${router.port}`;
});

afterAll(async () => {
  await router.close();
  await shard.close();
});

/** A JSON POST to the router under test, or to another one at `to`. */
function post(path: string, body: unknown, to = base): Promise<Response> {
  return fetch(`${to}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
}

function postGenerate(body: unknown): Promise<Response> {
  return fetch(`${base}/generate`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

describe("TGI /generate", () => {
  it("answers TGI's JSON with details, prefill and top tokens", async () => {
    const res = await postGenerate({
      inputs: "x",
      parameters: { adapter_id: "sql", details: true, decoder_input_details: true, top_n_tokens: 1, do_sample: false },
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      generated_text: "abc",
      details: {
        finish_reason: "length",
        generated_tokens: 3,
        seed: null,
        prefill: [
          { id: 0, text: "<s>", logprob: null },
          { id: 9, text: "x", logprob: -2.25 },
        ],
        tokens: [
          { id: 5, text: "a", logprob: -0.5, special: false },
          { id: 6, text: "b", logprob: -1, special: false },
          { id: 7, text: "c", logprob: -1.5, special: false },
        ],
        top_tokens: [
          [{ id: 5, text: "a", logprob: -0.5, special: false }],
          [{ id: 6, text: "b", logprob: -1, special: false }],
          [{ id: 7, text: "c", logprob: -1.5, special: false }],
        ],
      },
    });
  });

  it("leaves details out unless asked", async () => {
    const res = await postGenerate({ inputs: "x" });
    expect(await res.json()).toEqual({ generated_text: "abc" });
  });

  it("passes the shard's refusals on as 422 with TGI's body", async () => {
    const unknown = await postGenerate({ inputs: "x", parameters: { adapter_id: "nope" } });
    expect(unknown.status).toBe(422);
    expect(await unknown.json()).toEqual({ error: 'adapter "nope" is not loaded; known adapters: sql', error_type: "validation" });
    const empty = await postGenerate({ inputs: "" });
    expect(empty.status).toBe(422);
  });

  it.each([
    ["a negative top_k", { top_k: -1 }, /top_k/],
    ["a fractional seed", { seed: 1.5 }, /seed/],
    ["a string where a number goes", { temperature: "hot" }, /temperature/],
    ["an unsupported parameter", { watermark: true }, /watermark/],
    ["a stop that is not a list of strings", { stop: "\n" }, /stop/],
    ["an ignore_eos that is not a boolean", { ignore_eos: "yes" }, /^`ignore_eos` must be a boolean$/],
    // Valid JSON that a proto float cannot carry: it used to fail in the serializer and come back 424 "generation".
    ["a temperature beyond float32's range", { temperature: 1e308 }, /^`temperature` must be a number of at most 3.4028234663852886e\+38 in magnitude \(a float32\)$/],
    ["a top_p beyond float32's range", { top_p: -1e39 }, /`top_p` must be a number of at most/],
    ["a repetition_penalty beyond float32's range", { repetition_penalty: 3.5e38 }, /`repetition_penalty` must be a number of at most/],
  ])("refuses %s with 422", async (_, parameters, message) => {
    const res = await postGenerate({ inputs: "x", parameters });
    expect(res.status).toBe(422);
    const body = (await res.json()) as { error: string; error_type: string };
    expect(body.error_type).toBe("validation");
    expect(body.error).toMatch(message);
  });

  it("answers 400 to a lone UTF-16 surrogate escape, which UTF-8 cannot carry, and takes an escaped pair", async () => {
    const lone = await postGenerate('{"inputs": "caf\\ud800"}');
    expect(lone.status).toBe(400);
    expect(await lone.json()).toEqual({ error: expect.stringMatching(/lone UTF-16 surrogate/), error_type: "validation" });
    expect((await postGenerate('{"inputs": "ok \\ud83d\\ude42"}')).status).toBe(200);
  });

  it("answers 403 to an adapter outside every adapter root, over TGI and OpenAI alike", async () => {
    const tgi = await postGenerate({ inputs: "x", parameters: { adapter_id: "outside" } });
    expect(tgi.status).toBe(403);
    expect(await tgi.json()).toEqual({ error: 'adapter "outside" leads outside every adapter root', error_type: "forbidden" });
    const openai = await post("/v1/completions", { model: "outside", prompt: "x" });
    expect(openai.status).toBe(403);
    expect(((await openai.json()) as { error: { type: string } }).error.type).toBe("permission_error");
  });

  it("answers OpenAI's 400 naming the field to a number beyond float32's range", async () => {
    for (const field of ["temperature", "top_p", "presence_penalty", "frequency_penalty"]) {
      const res = await post("/v1/completions", { model: "org/base", prompt: "x", [field]: 1e308 });
      expect(res.status, field).toBe(400);
      const { error } = (await res.json()) as { error: { message: string; type: string; param: string } };
      expect(error, field).toEqual({ message: expect.stringMatching(/a float32/), type: "invalid_request_error", param: field, code: null });
    }
  });

  it("accepts parameters it does not implement when they ask for nothing", async () => {
    const res = await postGenerate({ inputs: "x", parameters: { stop: [], watermark: false, truncate: null } });
    expect(res.status).toBe(200);
  });

  it("answers 400 to malformed JSON and 413 to an oversize body", async () => {
    const malformed = await postGenerate('{"inputs": "x",');
    expect(malformed.status).toBe(400);
    expect(((await malformed.json()) as { error_type: string }).error_type).toBe("validation");
    const oversize = await postGenerate({ inputs: "x".repeat(MAX_BODY_BYTES) });
    expect(oversize.status).toBe(413);
    expect(await oversize.json()).toEqual({ error: `the request body exceeds ${MAX_BODY_BYTES} bytes`, error_type: "validation" });
  });

  it("answers 415 on every route that takes a JSON body when the body is declared as something else", async () => {
    for (const path of ["/", "/generate", "/generate_stream", "/tokenize", "/v1/completions", "/v1/chat/completions"]) {
      const refused = await fetch(`${base}${path}`, { method: "POST", headers: { "content-type": "text/plain" }, body: '{"inputs": "x"}' });
      expect(refused.status, path).toBe(415);
      expect(JSON.stringify(await refused.json()), path).toMatch(/Content-Type: application\/json/);
    }
  });

  it("cancels the shard's work when the HTTP client goes away", async () => {
    shard.hanging = deferred();
    shard.cancelled = deferred();
    const abort = new AbortController();
    const request = fetch(`${base}/generate`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ inputs: "hang" }),
      signal: abort.signal,
    });
    await shard.hanging.promise;
    abort.abort();
    await expect(request).rejects.toThrow(/abort/);
    await shard.cancelled.promise;
  });
});

describe("streams that fail after their first token", () => {
  it("ends TGI's /generate_stream with TGI's error event", async () => {
    const res = await post("/generate_stream", { inputs: "fail" });
    expect(res.status).toBe(200);
    const events = (await readEventData(res)).map((data) => JSON.parse(data) as unknown);
    expect(events).toEqual([
      { index: 1, token: { id: 5, text: "a", logprob: -0.5, special: false }, generated_text: null, details: null },
      { error: "the engine failed", error_type: "generation" },
    ]);
  });

  it("cancels the shard's work when a client leaves an event stream", async () => {
    shard.hanging = deferred();
    shard.cancelled = deferred();
    const abort = new AbortController();
    const res = await fetch(`${base}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "org/base", messages: [{ role: "user", content: "x" }], stream: true }),
      signal: abort.signal,
    });
    expect(res.status).toBe(200);
    await shard.hanging.promise;
    abort.abort();
    await shard.cancelled.promise;
  });

  it("ends an OpenAI stream with OpenAI's error event and [DONE]", async () => {
    const res = await post("/v1/completions", { model: "org/base", prompt: "fail", stream: true });
    const data = await readEventData(res);
    expect(data).toHaveLength(3);
    expect((JSON.parse(data[0]!) as { choices: { text: string }[] }).choices[0]!.text).toBe("a");
    expect(JSON.parse(data[1]!)).toEqual({ error: { message: "the engine failed", type: "server_error", param: null, code: null } });
    expect(data[2]).toBe("[DONE]");
  });
});

describe("what the router knows of the model", () => {
  it("answers ModelService.Info and TGI's /info from the shard's Status", async () => {
    const info = await createClient(ModelService, createGrpcTransport({ baseUrl: base })).info({});
    expect(info).toMatchObject({
      modelId: "org/base",
      modelDtype: Dtype.BFLOAT16,
      device: Device.CPU,
      maxInputTokens: 60,
      maxTotalTokens: 64,
      maxNewTokensLimit: 32,
      maxLoras: 4,
      maxLoraRank: 16,
      vocabSize: 512,
      version: VERSION,
    });
    expect(await (await fetch(`${base}/info`)).json()).toMatchObject({
      model_id: "org/base",
      model_dtype: "bfloat16",
      model_device_type: "cpu",
      max_input_tokens: 60,
      max_total_tokens: 64,
      version: VERSION,
    });
  });

  it("lists the base model and its adapters on /v1/models and maps `model` to the adapter", async () => {
    const models = (await (await fetch(`${base}/v1/models`)).json()) as { object: string; data: { id: string; object: string }[] };
    expect(models.object).toBe("list");
    expect(models.data.map((m) => [m.id, m.object])).toEqual([
      ["org/base", "model"],
      ["sql", "model"],
    ]);
    const post = (model: string) =>
      fetch(`${base}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model, prompt: "x" }) });
    expect((await post("org/base")).status).toBe(200);
    expect((await post("sql")).status).toBe(200);
    expect((await post("nope")).status).toBe(404);
    // TGI's own name for its one model: the base, on completions and chat alike (the fake shard refuses any other adapter).
    expect((await post("tgi")).status).toBe(200);
    const chat = await fetch(`${base}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "tgi", messages: [{ role: "user", content: "hello" }] }),
    });
    expect(chat.status).toBe(200);
    expect(await (await fetch(`${base}/v1/models/org/base`)).json()).toMatchObject({ id: "org/base", object: "model" });
    const missing = await fetch(`${base}/v1/models/nope`);
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { error: { code: string } }).error.code).toBe("model_not_found");
  });

  it("answers 405 with Allow to a route asked with the wrong method, 404 to an unknown one", async () => {
    const wrong = await fetch(`${base}/v1/completions`);
    expect(wrong.status).toBe(405);
    expect(wrong.headers.get("allow")).toBe("POST");
    expect(((await wrong.json()) as { error: { type: string } }).error.type).toBe("invalid_request_error");
    expect((await fetch(`${base}/nowhere`)).status).toBe(404);
  });
});

describe("the shard_group label", () => {
  it("is the group's --shard-group-name on every group series, the same however the shard's port changes", async () => {
    const named = await startRouter({ port: 0, hostname: "127.0.0.1", shardUris: [`http://127.0.0.1:${shard.port}`], shardGroupNames: ["blue"], maxBodyBytes: MAX_BODY_BYTES });
    try {
      const to = `http://127.0.0.1:${named.port}`;
      expect((await post("/generate", { inputs: "hello" }, to)).status).toBe(200);
      const text = await vi.waitFor(async () => {
        const scraped = await (await fetch(`${to}/metrics`)).text();
        expect(scraped).toMatch(/^loraserve_shard_group_up\{shard_group="blue"\} 1$/m);
        return scraped;
      });
      const groups = new Set([...text.matchAll(/shard_group="([^"]*)"/g)].map((match) => match[1]));
      expect([...groups]).toEqual(["blue"]);
    } finally {
      await named.close();
    }
  });
});

describe("lost shard sessions", () => {
  it("are counted by group and reason: a GOAWAY from the shard, a connection cut under an open stream", async () => {
    const lossy = new FakeShard();
    await lossy.listen();
    const named = await startRouter({ port: 0, hostname: "127.0.0.1", shardUris: [`http://127.0.0.1:${lossy.port}`], shardGroupNames: ["lossy"], maxBodyBytes: MAX_BODY_BYTES });
    const to = `http://127.0.0.1:${named.port}`;
    const lost = async (): Promise<Record<string, number>> => {
      const text = await (await fetch(`${to}/metrics`)).text();
      return Object.fromEntries([...text.matchAll(/^loraserve_router_shard_sessions_lost_total\{shard_group="lossy",reason="(\w+)"\} (\d+)$/gm)].map((m) => [m[1]!, Number(m[2])]));
    };
    try {
      expect((await post("/generate", { inputs: "hello" }, to)).status).toBe(200);
      expect(await lost()).toEqual({});

      const hung = post("/generate", { inputs: "hang" }, to);
      await lossy.hanging.promise;
      lossy.dropSessions("cut");
      expect((await hung).status).not.toBe(200);
      await vi.waitFor(async () => expect(Object.values(await lost()).reduce((a, b) => a + b, 0)).toBe(1));
      expect(Object.keys(await lost())).toEqual([expect.stringMatching(/^(closed|error)$/)]);

      expect((await post("/generate", { inputs: "hello" }, to)).status).toBe(200);
      lossy.dropSessions("goaway");
      await vi.waitFor(async () => expect((await lost()).goaway).toBe(1));
      expect(Object.values(await lost()).reduce((a, b) => a + b, 0)).toBe(2);
    } finally {
      await named.close();
      // A session that had a GOAWAY may stay open on the server's side: cut, so that the server can close.
      lossy.dropSessions("cut");
      await lossy.close();
    }
  });
});

describe("one port, every protocol", () => {
  const expected = { generatedText: "abc", tokens: [5, 6, 7] };

  it.each([
    ["Connect over HTTP/1.1", () => createConnectTransport({ baseUrl: base, httpVersion: "1.1" })],
    ["Connect over HTTP/2", () => createConnectTransport({ baseUrl: base, httpVersion: "2" })],
    ["gRPC", () => createGrpcTransport({ baseUrl: base })],
    ["gRPC-Web over HTTP/1.1", () => createGrpcWebTransport({ baseUrl: base, httpVersion: "1.1" })],
  ])("serves Generate and GenerateStream to %s", async (_, transport) => {
    const client = createClient(GenerateService, transport());
    const unary = await client.generate({ inputs: "x", parameters: { details: true } });
    expect({ generatedText: unary.generatedText, tokens: unary.details?.tokens.map((t) => t.id) }).toEqual(expected);
    const streamed: number[] = [];
    for await (const message of client.generateStream({ inputs: "x" })) streamed.push(message.token!.id);
    expect(streamed).toEqual(expected.tokens);
  });

  it("passes shard error codes through to gRPC clients", async () => {
    const client = createClient(GenerateService, createGrpcTransport({ baseUrl: base }));
    const failure = await client.generate({ inputs: "x", adapterId: "nope" }).catch((e: unknown) => ConnectError.from(e));
    expect(failure).toBeInstanceOf(ConnectError);
    expect((failure as ConnectError).code).toBe(Code.NotFound);
    expect((failure as ConnectError).rawMessage).toMatch(/known adapters: sql/);
  });

  it("answers /health over HTTP/2 with prior knowledge", async () => {
    const session = http2.connect(base);
    try {
      const status = await new Promise<number>((resolve, reject) => {
        const stream = session.request({ ":path": "/health" });
        stream.once("response", (headers) => resolve(Number(headers[":status"])));
        stream.once("error", reject);
        stream.resume();
      });
      expect(status).toBe(200);
    } finally {
      session.close();
    }
  });

  it("stops the shard's stream when a streaming client goes away", async () => {
    shard.cancelled = deferred();
    const session = new Http2SessionManager(base);
    const client = createClient(GenerateService, createGrpcTransport({ baseUrl: base, sessionManager: session }));
    const abort = new AbortController();
    const consume = async (): Promise<void> => {
      for await (const message of client.generateStream({ inputs: "hang" }, { signal: abort.signal })) {
        expect(message.token?.id).toBe(5);
        abort.abort();
      }
    };
    await expect(consume()).rejects.toThrow(/canceled/);
    await shard.cancelled.promise;
    session.abort();
  });
});

describe("/health", () => {
  it("is 503 while the shard is not ready and 200 once it is", async () => {
    // /health answers from the router's view of the shard, which follows it within a Status poll.
    shard.ready = false;
    await vi.waitFor(async () => {
      const before = await fetch(`${base}/health`);
      expect(before.status).toBe(503);
      expect(await before.json()).toEqual({ error: "the shard is not ready", error_type: "healthcheck" });
    }, STATUS_POLL_WAIT);
    shard.ready = true;
    await vi.waitFor(async () => expect((await fetch(`${base}/health`)).status).toBe(200), STATUS_POLL_WAIT);
  });
});

describe("a shard that does not answer", () => {
  it("makes /health 503, /generate 503 and gRPC UNAVAILABLE", async () => {
    const unreachable = await startRouter({ port: 0, hostname: "127.0.0.1", shardUris: ["http://127.0.0.1:1"], maxBodyBytes: MAX_BODY_BYTES });
    const url = `http://127.0.0.1:${unreachable.port}`;
    try {
      expect((await fetch(`${url}/health`)).status).toBe(503);
      const res = await fetch(`${url}/generate`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ inputs: "x" }) });
      expect(res.status).toBe(503);
      expect(((await res.json()) as { error_type: string }).error_type).toBe("unavailable");
      const client = createClient(GenerateService, createGrpcTransport({ baseUrl: url }));
      const failure = await client.generate({ inputs: "x" }).catch((e: unknown) => ConnectError.from(e));
      expect((failure as ConnectError).code).toBe(Code.Unavailable);
    } finally {
      await unreachable.close();
    }
  });
});

describe("every 503", () => {
  it("carries retry-after: /health, TGI, OpenAI and Connect's HTTP form of UNAVAILABLE", async () => {
    const unreachable = await startRouter({ port: 0, hostname: "127.0.0.1", shardUris: ["http://127.0.0.1:1"], maxBodyBytes: MAX_BODY_BYTES });
    const url = `http://127.0.0.1:${unreachable.port}`;
    try {
      const answers = {
        health: await fetch(`${url}/health`),
        tgi: await post("/generate", { inputs: "x" }, url),
        openai: await post("/v1/completions", { model: "m", prompt: "x" }, url),
        connect: await post(`/${ModelService.typeName}/Info`, {}, url),
      };
      for (const [name, res] of Object.entries(answers)) {
        expect(res.status, name).toBe(503);
        expect(res.headers.get("retry-after"), name).toBe("1");
        await res.arrayBuffer();
      }
      // Any other status has none.
      expect((await post("/generate", { inputs: 1 }, url)).headers.get("retry-after")).toBeNull();
    } finally {
      await unreachable.close();
    }
  });
});

describe("shutdown", () => {
  it("ends streams in flight instead of waiting for them", async () => {
    shard.hanging = deferred();
    const closing = await startRouter({ port: 0, hostname: "127.0.0.1", shardUris: [`http://127.0.0.1:${shard.port}`], maxBodyBytes: MAX_BODY_BYTES });
    const session = new Http2SessionManager(`http://127.0.0.1:${closing.port}`);
    const client = createClient(GenerateService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${closing.port}`, sessionManager: session }));
    const consume = async (): Promise<void> => {
      for await (const message of client.generateStream({ inputs: "hang" })) expect(message.token?.id).toBe(5);
    };
    const consumed = consume();
    await shard.hanging.promise;
    await closing.close();
    await expect(consumed).rejects.toThrow(ConnectError);
    session.abort();
  });
});
