// Bad requests against a real `loraserve serve`: each is refused with TGI's status and body over HTTP and with
// the matching code over gRPC, and the server keeps answering good requests afterwards.
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GenerateService, type GenerateRequestSchema } from "../gen/loraserve/v1/generate_pb.js";
import { fixtureSets } from "./helpers/fixture-sets.js";
import { adapterFlag, serve, type ServeReady, type Started } from "./helpers/process.js";

/** Small enough that a long prompt is easy to write, large enough for the reference's greedy steps. */
const MAX_TOTAL_TOKENS = 96;
const START_TIMEOUT_MS = 60_000;
const set = fixtureSets()[0];

if (!set) it.skip("e2e errors: needs a fixture set; neither fixtures/*/ nor ../shared/fixtures/tiny-llama is present", () => {});

describe.runIf(set)(`bad requests to loraserve serve on ${set?.name}`, () => {
  const adapterIds = Object.keys(set!.refs.adapters);
  const goodPrompt = set!.refs.prompts.findIndex((p) => p.text !== null);
  let server: Started<ServeReady>;
  let session: Http2SessionManager;
  let grpcClient: ReturnType<typeof createClient<typeof GenerateService>>;

  beforeAll(async () => {
    server = await serve([
      "--model-id",
      set!.modelDir,
      ...adapterFlag(set!.adaptersDir, adapterIds),
      "--max-total-tokens",
      String(MAX_TOTAL_TOKENS),
    ]);
    session = new Http2SessionManager(server.ready.url);
    grpcClient = createClient(GenerateService, createGrpcTransport({ baseUrl: server.ready.url, sessionManager: session }));
  }, START_TIMEOUT_MS);

  afterAll(async () => {
    session?.abort();
    await server?.stop();
  });

  function postGenerate(body: unknown): Promise<Response> {
    return fetch(`${server.ready.url}/generate`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: typeof body === "string" ? body : JSON.stringify(body),
    });
  }

  async function grpcCode(request: MessageInitShape<typeof GenerateRequestSchema>): Promise<{ code: Code; message: string }> {
    const error = await grpcClient.generate(request).then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect(error, "the request should have been refused").toBeDefined();
    return { code: error!.code, message: error!.rawMessage };
  }

  /** A good request after a bad one still gets the reference's greedy tokens. */
  async function expectStillServing(): Promise<void> {
    const steps = 4;
    const res = await postGenerate({
      inputs: set!.refs.prompts[goodPrompt]!.text,
      parameters: { max_new_tokens: steps, do_sample: false, details: true },
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { details: { tokens: { id: number }[] } };
    const reference = set!.refs.variants.base!.find((v) => v.prompt === goodPrompt)!.greedy_ids;
    expect(body.details.tokens.map((t) => t.id)).toEqual(reference.slice(0, steps));
  }

  async function expectTgiError(res: Response, status: number, message: RegExp): Promise<void> {
    expect(res.status).toBe(status);
    const body = (await res.json()) as { error: string; error_type: string };
    expect(body.error_type).toBe("validation");
    expect(body.error).toMatch(message);
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
});
