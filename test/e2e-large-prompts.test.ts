// Prompts near the body limit against a real `loraserve serve`: one that cannot fit max_input_tokens is refused
// from its byte length, before it is tokenized, on every API; tokenizing happens off the shard's event loop; and
// meanwhile small requests are answered and /health stays 200 (a 1.8 MB prompt used to hold the shard's thread
// for seconds, so Status went unanswered and /health said 503; so did rendering a conversation of 40 000 messages).
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GenerateService } from "../gen/loraserve/v1/generate_pb.js";
import { fixtureSets } from "./helpers/fixture-sets.js";
import { serve, type ServeReady, type Started } from "./helpers/process.js";

const START_TIMEOUT_MS = 60_000;
const TEST_TIMEOUT_MS = 60_000;
/** Under the router's default body limit of 2 MB, far over what max_input_tokens lets through. */
const HUGE_PROMPT = "the quick brown fox ".repeat(75_000);
/** Within the byte bound of the fixture tokenizer (12 bytes a token, 511 tokens) but over 511 tokens once tokenized. */
const LONG_PROMPT = "a b c d e f g h ".repeat(375);
/** A conversation whose rendering alone took the shard's thread for about a second. */
const LONG_CONVERSATION = Array.from({ length: 40_000 }, (_, i) => ({ role: i % 2 === 0 ? "user" : "assistant", content: `message ${i}` }));
const set = fixtureSets()[0]!;

describe(`large prompts to loraserve serve on ${set.name}`, () => {
  const goodPrompt = set.refs.prompts.findIndex((p) => p.text !== null);
  let server: Started<ServeReady>;

  beforeAll(async () => {
    server = await serve(["--model-id", set.modelDir]);
  }, START_TIMEOUT_MS);

  afterAll(() => server?.stop());

  const post = (path: string, body: unknown): Promise<Response> =>
    fetch(`${server.ready.url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

  async function errorOf(res: Response): Promise<{ status: number; message: string }> {
    const body = (await res.json()) as { error: string | { message: string } };
    return { status: res.status, message: typeof body.error === "string" ? body.error : body.error.message };
  }

  async function grpcRefusal(inputs: string): Promise<{ status: Code; message: string }> {
    const session = new Http2SessionManager(server.ready.url);
    const client = createClient(GenerateService, createGrpcTransport({ baseUrl: server.ready.url, sessionManager: session }));
    try {
      const error = await client.generate({ inputs, parameters: { maxNewTokens: 2 } }).then(
        () => null,
        (e: unknown) => ConnectError.from(e),
      );
      return { status: error?.code ?? Code.Unknown, message: error?.rawMessage ?? "answered" };
    } finally {
      session.abort();
    }
  }

  /** Small greedy requests, one after another, each checked against the reference, until `done` settles. */
  async function smallRequestsUntil(done: Promise<unknown>): Promise<number> {
    let settled = false;
    void done.finally(() => (settled = true));
    const steps = 2;
    const reference = set.refs.variants.base!.find((v) => v.prompt === goodPrompt)!.greedy_ids.slice(0, steps);
    let answered = 0;
    do {
      const res = await post("/generate", { inputs: set.refs.prompts[goodPrompt]!.text, parameters: { max_new_tokens: steps, details: true } });
      expect(res.status).toBe(200);
      expect(((await res.json()) as { details: { tokens: { id: number }[] } }).details.tokens.map((t) => t.id)).toEqual(reference);
      answered++;
    } while (!settled);
    return answered;
  }

  async function healthUntil(done: Promise<unknown>): Promise<number[]> {
    let settled = false;
    void done.finally(() => (settled = true));
    const statuses: number[] = [];
    do {
      statuses.push((await fetch(`${server.ready.url}/health`)).status);
      await new Promise((resolve) => setTimeout(resolve, 50));
    } while (!settled);
    return statuses;
  }

  it(
    "refuses prompts that cannot fit on every API while small requests are answered and /health stays 200",
    async () => {
      const big = Promise.all([
        post("/generate", { inputs: HUGE_PROMPT, parameters: { max_new_tokens: 2 } }).then(errorOf),
        post("/generate", { inputs: LONG_PROMPT, parameters: { max_new_tokens: 2 } }).then(errorOf),
        post("/v1/completions", { model: set.modelDir, prompt: HUGE_PROMPT, max_tokens: 2 }).then(errorOf),
        post("/v1/chat/completions", { model: set.modelDir, messages: [{ role: "user", content: HUGE_PROMPT }], max_tokens: 2 }).then(errorOf),
        post("/v1/chat/completions", { model: set.modelDir, messages: LONG_CONVERSATION, max_tokens: 2 }).then(errorOf),
        grpcRefusal(HUGE_PROMPT),
        grpcRefusal(LONG_PROMPT),
      ]);
      const [refusals, answered, health] = await Promise.all([big, smallRequestsUntil(big), healthUntil(big)]);
      expect(answered).toBeGreaterThan(0);
      expect(health.length).toBeGreaterThan(0);
      expect(new Set(health)).toEqual(new Set([200]));
      const [tgiHuge, tgiLong, completion, chat, conversation, grpcHuge, grpcLong] = refusals;
      expect(tgiHuge).toEqual({ status: 422, message: expect.stringMatching(/1500000 bytes, so at least \d+ tokens.*max_input_tokens/) });
      expect(tgiLong).toEqual({ status: 422, message: expect.stringMatching(/^inputs is \d+ tokens; at most 511 \(max_input_tokens\)/) });
      expect(completion).toEqual({ status: 400, message: expect.stringMatching(/max_input_tokens/) });
      expect(chat).toEqual({ status: 400, message: expect.stringMatching(/max_input_tokens/) });
      expect(conversation).toEqual({ status: 400, message: expect.stringMatching(/bytes, so at least \d+ tokens.*max_input_tokens/) });
      expect(grpcHuge).toEqual({ status: Code.InvalidArgument, message: expect.stringMatching(/bytes.*max_input_tokens/) });
      expect(grpcLong).toEqual({ status: Code.InvalidArgument, message: expect.stringMatching(/tokens; at most 511/) });
    },
    TEST_TIMEOUT_MS,
  );

  it(
    "refuses /tokenize of a prompt that cannot fit with 422 and a short answer",
    async () => {
      for (const inputs of [HUGE_PROMPT, LONG_PROMPT]) {
        const res = await post("/tokenize", { inputs });
        const text = await res.text();
        expect(res.status).toBe(422);
        expect(JSON.parse(text)).toEqual({ error: expect.stringMatching(/max_input_tokens/), error_type: "validation" });
        expect(text.length).toBeLessThan(1000);
      }
    },
    TEST_TIMEOUT_MS,
  );
});
