// Admission control through `loraserve serve --max-concurrent-requests 2`: a burst of long requests on every
// protocol at once is partly refused at once, with 429 and `retry-after` on TGI's and OpenAI's routes and
// RESOURCE_EXHAUSTED on gRPC, never another error; the admitted ones finish; afterwards requests are taken again.
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GenerateService } from "../gen/loraserve/v1/generate_pb.js";
import { projectFixture } from "./helpers/fixture-sets.js";
import { serve, type ServeReady, type Started } from "./helpers/process.js";

const set = projectFixture("demo");
const START_TIMEOUT_MS = 60_000;
const TEST_TIMEOUT_MS = 60_000;
/** A greedy run of the demo model that goes on for 205 tokens before its EOS: still running after its first. */
const LONG = { inputs: "hello world", parameters: { max_new_tokens: 400 } };
/** Requests sent at once on each protocol: far more than the limit of 2. */
const BURST = 4;
const SHORT = { inputs: "hello", parameters: { max_new_tokens: 2 } };

describe("admission control through loraserve serve", () => {
  let server: Started<ServeReady>;
  let grpcClient: ReturnType<typeof createClient<typeof GenerateService>>;

  beforeAll(async () => {
    server = await serve(["--model-id", set.modelDir, "--threads", "1", "--max-concurrent-requests", "2"]);
    // Its HTTP/2 session ends with the server.
    grpcClient = createClient(GenerateService, createGrpcTransport({ baseUrl: server.ready.url }));
  }, START_TIMEOUT_MS);

  afterAll(() => server?.stop());

  const post = (path: string, body: unknown): Promise<Response> =>
    fetch(`${server.ready.url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

  const completion = { model: set.modelDir, prompt: "hello world", max_tokens: 400 };

  /** A gRPC Generate: its error, or undefined when it succeeded. */
  function grpcError(): Promise<ConnectError | undefined> {
    return grpcClient.generate({ inputs: LONG.inputs, parameters: { maxNewTokens: LONG.parameters.max_new_tokens } }).then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
  }

  /** Every answer is a success or a refusal with `retry-after` and the protocol's body; returns how many were refused. */
  async function refusedOf(responses: Response[], refusalBody: Record<string, unknown>): Promise<number> {
    let refused = 0;
    for (const response of responses) {
      const body = (await response.json()) as unknown;
      expect([200, 429], JSON.stringify(body)).toContain(response.status);
      if (response.status !== 429) continue;
      refused++;
      expect(Number(response.headers.get("retry-after"))).toBeGreaterThan(0);
      expect(body).toMatchObject(refusalBody);
    }
    return refused;
  }

  it(
    "refuses requests past the limit with 429 and retry-after (RESOURCE_EXHAUSTED on gRPC), finishes the admitted ones, and takes new ones once room frees",
    async () => {
      // Sent at once, the burst arrives within a fraction of one admitted request's run: most of it is refused.
      const [tgi, openai, grpc] = await Promise.all([
        Promise.all(Array.from({ length: BURST }, () => post("/generate", LONG))),
        Promise.all(Array.from({ length: BURST }, () => post("/v1/completions", completion))),
        Promise.all(Array.from({ length: BURST }, grpcError)),
      ]);
      const atLimit = expect.stringMatching(/limit of 2 concurrent requests/);
      expect(await refusedOf(tgi, { error: atLimit, error_type: "overloaded" })).toBeGreaterThan(0);
      expect(await refusedOf(openai, { error: { type: "rate_limit_error", message: atLimit } })).toBeGreaterThan(0);
      const grpcRefused = grpc.filter((error) => error !== undefined);
      expect(grpcRefused.length).toBeGreaterThan(0);
      for (const error of grpcRefused) expect([error.code, error.rawMessage]).toEqual([Code.ResourceExhausted, atLimit]);
      // Some were admitted, and each of those answered whole (refusedOf read every 200 body): none was dropped.
      const admitted = [...tgi, ...openai].filter((r) => r.status === 200).length + grpc.length - grpcRefused.length;
      expect(admitted).toBeGreaterThan(0);

      // The burst is over: every protocol is served again.
      expect((await post("/generate", SHORT)).status).toBe(200);
      expect((await post("/v1/completions", { ...completion, max_tokens: 2 })).status).toBe(200);
      expect(await grpcError()).toBeUndefined();
    },
    TEST_TIMEOUT_MS,
  );
});
