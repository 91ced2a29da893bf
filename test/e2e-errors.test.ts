// Bad requests against a real `loraserve serve`: each is refused with TGI's status and body, OpenAI's status
// and error body, and the matching gRPC code, and the server keeps answering good requests afterwards.
import { mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GenerateService, type GenerateRequestSchema } from "../gen/loraserve/v1/generate_pb.js";
import { fixtureSets } from "./helpers/fixture-sets.js";
import { adapterFlag, serve, type ServeReady, type Started } from "./helpers/process.js";

/** Small enough that a long prompt is easy to write, large enough for the reference's greedy steps. */
const MAX_TOTAL_TOKENS = 96;
/** The router's body limit for HTTP and gRPC alike: small, so that an oversize body is cheap to send. */
const MAX_BODY_BYTES = 16_384;
const START_TIMEOUT_MS = 60_000;
const set = fixtureSets()[0]!;


describe(`bad requests to loraserve serve on ${set.name}`, () => {
  const adapterIds = Object.keys(set.refs.adapters);
  const goodPrompt = set.refs.prompts.findIndex((p) => p.text !== null);
  let server: Started<ServeReady>;
  let session: Http2SessionManager;
  let grpcClient: ReturnType<typeof createClient<typeof GenerateService>>;
  /** An adapter root whose only entry, `escape`, is a symlink to an adapter outside it. */
  let adapterRoot: string;

  beforeAll(async () => {
    adapterRoot = mkdtempSync(join(tmpdir(), "loraserve-errors-root-"));
    symlinkSync(join(set.adaptersDir, adapterIds[0]!), join(adapterRoot, "escape"));
    server = await serve([
      "--adapter-root",
      adapterRoot,
      "--model-id",
      set.modelDir,
      ...adapterFlag(set.adaptersDir, adapterIds),
      "--max-total-tokens",
      String(MAX_TOTAL_TOKENS),
      "--max-body-bytes",
      String(MAX_BODY_BYTES),
      // Naming the known adapters in a not-found error is the operator's choice (off by default: e2e-disclosure).
      "--list-adapters-in-errors",
    ]);
    session = new Http2SessionManager(server.ready.url);
    grpcClient = createClient(GenerateService, createGrpcTransport({ baseUrl: server.ready.url, sessionManager: session }));
  }, START_TIMEOUT_MS);

  afterAll(async () => {
    session?.abort();
    await server?.stop();
    rmSync(adapterRoot, { recursive: true, force: true });
  });

  function post(path: string, body: unknown, contentType = "application/json"): Promise<Response> {
    return fetch(`${server.ready.url}${path}`, {
      method: "POST",
      headers: { "content-type": contentType },
      body: typeof body === "string" ? body : body instanceof Uint8Array ? (body as Uint8Array<ArrayBuffer>) : JSON.stringify(body),
    });
  }

  const postGenerate = (body: unknown): Promise<Response> => post("/generate", body);
  const postCompletion = (body: Record<string, unknown>): Promise<Response> =>
    post("/v1/completions", { model: set.modelDir, prompt: "hello", max_tokens: 4, ...body });

  async function grpcCode(request: MessageInitShape<typeof GenerateRequestSchema>): Promise<{ code: Code; message: string }> {
    const error = await grpcClient.generate(request).then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect(error, "the request should have been refused").toBeInstanceOf(ConnectError);
    return { code: error!.code, message: error!.rawMessage };
  }

  /** A good request after a bad one still gets the reference's greedy tokens. */
  async function expectStillServing(): Promise<void> {
    const steps = 4;
    const res = await postGenerate({
      inputs: set.refs.prompts[goodPrompt]!.text,
      parameters: { max_new_tokens: steps, do_sample: false, details: true },
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { details: { tokens: { id: number }[] } };
    const reference = set.refs.variants.base!.find((v) => v.prompt === goodPrompt)!.greedy_ids;
    expect(body.details.tokens.map((t) => t.id)).toEqual(reference.slice(0, steps));
  }

  async function expectTgiError(res: Response, status: number, message: RegExp): Promise<void> {
    expect(res.status).toBe(status);
    const body = (await res.json()) as { error: string; error_type: string };
    expect(body.error_type).toBe("validation");
    expect(body.error).toMatch(message);
  }

  async function expectOpenAiError(res: Response, status: number, message: RegExp, param: string | null = null, code: string | null = null): Promise<void> {
    expect(res.status).toBe(status);
    const { error } = (await res.json()) as { error: { message: string; type: string; param: string | null; code: string | null } };
    expect(error.message).toMatch(message);
    expect(error).toMatchObject({ type: "invalid_request_error", param, code });
  }

  it("refuses an unknown adapter_id, naming the known ones (HTTP 422, gRPC NOT_FOUND)", async () => {
    const res = await postGenerate({ inputs: "hello", parameters: { adapter_id: "no-such-adapter" } });
    expect(res.status).toBe(422);
    const body = (await res.json()) as { error: string; error_type: string };
    expect(body.error_type).toBe("validation");
    expect(body.error).toContain("no-such-adapter");
    for (const id of adapterIds) expect(body.error).toContain(id);
    const { code, message } = await grpcCode({ inputs: "hello", adapterId: "no-such-adapter" });
    expect(code).toBe(Code.NotFound);
    for (const id of adapterIds) expect(message).toContain(id);
    await expectStillServing();
  });

  it("refuses an empty prompt (HTTP 422, gRPC INVALID_ARGUMENT)", async () => {
    await expectTgiError(await postGenerate({ inputs: "", parameters: { max_new_tokens: 4 } }), 422, /inputs/);
    expect((await grpcCode({ inputs: "", parameters: { maxNewTokens: 4 } })).code).toBe(Code.InvalidArgument);
    await expectStillServing();
  });

  it("refuses max_new_tokens 0 (HTTP 422, gRPC INVALID_ARGUMENT)", async () => {
    await expectTgiError(await postGenerate({ inputs: "hello", parameters: { max_new_tokens: 0 } }), 422, /max_new_tokens/);
    const { code, message } = await grpcCode({ inputs: "hello", parameters: { maxNewTokens: 0 } });
    expect(code).toBe(Code.InvalidArgument);
    expect(message).toMatch(/max_new_tokens/);
    await expectStillServing();
  });

  it("refuses max_new_tokens above the limit (HTTP 422, gRPC INVALID_ARGUMENT)", async () => {
    await expectTgiError(await postGenerate({ inputs: "hello", parameters: { max_new_tokens: MAX_TOTAL_TOKENS } }), 422, /max_new_tokens/);
    const { code, message } = await grpcCode({ inputs: "hello", parameters: { maxNewTokens: MAX_TOTAL_TOKENS } });
    expect(code).toBe(Code.InvalidArgument);
    expect(message).toMatch(/max_new_tokens/);
    await expectStillServing();
  });

  it("refuses a prompt longer than the context (HTTP 422, gRPC INVALID_ARGUMENT)", async () => {
    const long = "the quick brown fox ".repeat(MAX_TOTAL_TOKENS);
    await expectTgiError(await postGenerate({ inputs: long, parameters: { max_new_tokens: 4 } }), 422, /tokens/);
    expect((await grpcCode({ inputs: long, parameters: { maxNewTokens: 4 } })).code).toBe(Code.InvalidArgument);
    await expectStillServing();
  });

  it("answers 400 to malformed JSON", async () => {
    await expectTgiError(await postGenerate('{"inputs": "hello", "parameters": {'), 400, /JSON/);
    await expectStillServing();
  });

  it("refuses an unknown model over OpenAI with 404 model_not_found", async () => {
    await expectOpenAiError(await postCompletion({ model: "no-such-adapter" }), 404, /no-such-adapter/, "model", "model_not_found");
    await expectOpenAiError(
      await post("/v1/chat/completions", { model: "no-such-adapter", messages: [{ role: "user", content: "hi" }] }),
      404,
      /no-such-adapter/,
      "model",
      "model_not_found",
    );
    await expectStillServing();
  });

  it.each([
    ["a negative temperature", { temperature: -1 }, { temperature: -1 }, { doSample: true, temperature: -1 }, /temperature/],
    ["top_p 0", { top_p: 0 }, { top_p: 0 }, { doSample: true, topP: 0 }, /top_p/],
    ["top_p above 1", { top_p: 1.5 }, { top_p: 1.5 }, { doSample: true, topP: 1.5 }, /top_p/],
  ])("refuses %s (TGI 422, OpenAI 400, gRPC INVALID_ARGUMENT)", async (_, tgi, openai, proto, message) => {
    await expectTgiError(await postGenerate({ inputs: "hello", parameters: { max_new_tokens: 4, ...tgi } }), 422, message);
    await expectOpenAiError(await postCompletion(openai), 400, message);
    const { code, message: grpcMessage } = await grpcCode({ inputs: "hello", parameters: { maxNewTokens: 4, ...proto } });
    expect(code).toBe(Code.InvalidArgument);
    expect(grpcMessage).toMatch(message);
    await expectStillServing();
  });

  it("refuses more top tokens than --max-top-n-tokens (TGI's default 5) on every API, and gives 5", async () => {
    const cap = /top_n_tokens .*must be <= 5 \(--max-top-n-tokens\), got 6/;
    await expectTgiError(await postGenerate({ inputs: "hello", parameters: { max_new_tokens: 2, top_n_tokens: 6 } }), 422, cap);
    const chat = { model: set.modelDir, messages: [{ role: "user", content: "hi" }], max_tokens: 2, logprobs: true, top_logprobs: 6 };
    await expectOpenAiError(await post("/v1/chat/completions", chat), 400, cap);
    const { code, message } = await grpcCode({ inputs: "hello", parameters: { maxNewTokens: 2, topNTokens: 6 } });
    expect(code).toBe(Code.InvalidArgument);
    expect(message).toMatch(cap);
    const res = await postGenerate({ inputs: "hello", parameters: { max_new_tokens: 2, top_n_tokens: 5, details: true } });
    expect(res.status).toBe(200);
    const { details } = (await res.json()) as { details: { top_tokens: unknown[][] } };
    expect(details.top_tokens.length).toBeGreaterThan(0);
    expect(new Set(details.top_tokens.map((alternatives) => alternatives.length))).toEqual(new Set([5]));
    await expectStillServing();
  });

  it("refuses an adapter that a symlink leads outside its root (HTTP 403, gRPC PERMISSION_DENIED), never 424", async () => {
    const tgi = await postGenerate({ inputs: "hello", parameters: { adapter_id: "escape", max_new_tokens: 2 } });
    expect(tgi.status).toBe(403);
    expect(await tgi.json()).toEqual({ error: expect.stringMatching(/escape/), error_type: "forbidden" });
    const openai = await postCompletion({ model: "escape" });
    expect(openai.status).toBe(403);
    expect(((await openai.json()) as { error: { type: string } }).error.type).toBe("permission_error");
    expect((await grpcCode({ inputs: "hello", adapterId: "escape", parameters: { maxNewTokens: 2 } })).code).toBe(Code.PermissionDenied);
    await expectStillServing();
  });

  it("refuses a temperature beyond float32's range (TGI 422, OpenAI 400 naming it), never 424", async () => {
    await expectTgiError(await postGenerate({ inputs: "hello", parameters: { temperature: 1e308 } }), 422, /`temperature` .*float32/);
    await expectOpenAiError(await postCompletion({ temperature: 1e308 }), 400, /`temperature` .*float32/, "temperature");
    await expectStillServing();
  });

  it("refuses n > 1 over OpenAI with 400 naming `n`", async () => {
    await expectOpenAiError(await postCompletion({ n: 2 }), 400, /n/, "n");
    await expectStillServing();
  });

  it("answers 400 to a body that is not UTF-8 (TGI, OpenAI) and INTERNAL to such a gRPC string", async () => {
    const notUtf8 = Buffer.concat([Buffer.from('{"inputs": "caf'), Buffer.from([0xe9]), Buffer.from('", "prompt": "x", "model": "m"}')]);
    await expectTgiError(await post("/generate", notUtf8), 400, /UTF-8/);
    await expectOpenAiError(await post("/v1/completions", notUtf8), 400, /UTF-8/);
    // GenerateRequest {1: inputs} whose bytes are Latin-1, not UTF-8.
    const request = Buffer.concat([Buffer.from([0x0a, 4]), Buffer.from("caf"), Buffer.from([0xe9])]);
    const client = new grpc.Client(`127.0.0.1:${server.ready.port}`, grpc.credentials.createInsecure());
    try {
      const error = await new Promise<grpc.ServiceError | null>((resolve) =>
        client.makeUnaryRequest(
          "/loraserve.v1.GenerateService/Generate",
          (bytes: Buffer) => bytes,
          (bytes: Buffer) => bytes,
          request,
          (err) => resolve(err),
        ),
      );
      // A request message that cannot be decoded is INTERNAL in gRPC's own servers (grpc-go: "error
      // unmarshalling request") and in connect-node alike.
      expect(error?.code).toBe(grpc.status.INTERNAL);
      expect(error?.details).toMatch(/UTF-8/i);
    } finally {
      client.close();
    }
    await expectStillServing();
  });

  it("answers 413 to an oversize body (TGI, OpenAI) and RESOURCE_EXHAUSTED to an oversize gRPC message", async () => {
    const long = "x".repeat(MAX_BODY_BYTES);
    await expectTgiError(await postGenerate({ inputs: long }), 413, /exceeds/);
    await expectOpenAiError(await postCompletion({ prompt: long }), 413, /exceeds/);
    expect((await grpcCode({ inputs: long })).code).toBe(Code.ResourceExhausted);
    await expectStillServing();
  });

  it("answers 415 to a body that is not declared as JSON", async () => {
    const body = JSON.stringify({ inputs: "hello", model: set.modelDir, prompt: "hello" });
    await expectTgiError(await post("/generate", body, "text/plain"), 415, /application\/json/);
    await expectOpenAiError(await post("/v1/completions", body, "application/x-www-form-urlencoded"), 415, /application\/json/);
    await expectStillServing();
  });
});
