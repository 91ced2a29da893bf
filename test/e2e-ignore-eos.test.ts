// `ignore_eos` (vLLM's parameter, also taken by TGI's `parameters` and GenerationParameters) through `loraserve
// serve`: the trained demo's base model answers "hello world" and then EOS, well before max_new_tokens. With
// ignore_eos the same greedy request runs on to exactly max_new_tokens (finish reason length) on every API; without
// it, it stops at EOS; a stop sequence still ends it.
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FinishReason, GenerateService } from "../gen/loraserve/v1/generate_pb.js";
import { projectFixture, TRAINED_DEMO } from "./helpers/fixture-sets.js";
import { serve, type ServeReady, type Started } from "./helpers/process.js";

const fixture = projectFixture(TRAINED_DEMO);
// Far more than "hello world" and its EOS take, and within the fixture's 512-token context.
const MAX_NEW_TOKENS = 24;
// The chat template's rendering of one user message, as the README's TGI example sends it.
const PROMPT = "<|user|>hello world<|end|><|assistant|>";

let server: Started<ServeReady>;
/** The id /v1/models gives the base model (no adapters are loaded). */
let baseId: string;

beforeAll(async () => {
  server = await serve(["--model-id", fixture.modelDir]);
  const models = (await (await fetch(`${server.ready.url}/v1/models`)).json()) as { data: { id: string }[] };
  baseId = models.data[0]!.id;
}, 60_000);

afterAll(async () => {
  await server?.stop();
});

async function post(path: string, body: object): Promise<unknown> {
  const res = await fetch(`${server.ready.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  expect(res.status, await res.clone().text()).toBe(200);
  return res.json();
}

interface TgiAnswer {
  generated_text: string;
  details: { finish_reason: string; generated_tokens: number; tokens: { id: number }[] };
}

function tgiGenerate(extra: object): Promise<TgiAnswer> {
  const parameters = { max_new_tokens: MAX_NEW_TOKENS, do_sample: false, details: true, ...extra };
  return post("/generate", { inputs: PROMPT, parameters }) as Promise<TgiAnswer>;
}

interface OpenAiAnswer {
  choices: { finish_reason: string }[];
  usage: { completion_tokens: number };
}

describe("ignore_eos", () => {
  it("TGI /generate: without it the answer ends at EOS; with it, at exactly max_new_tokens", async () => {
    const plain = await tgiGenerate({});
    expect(plain.details.finish_reason).toBe("eos_token");
    expect(plain.generated_text).toBe("hello world");
    expect(plain.details.generated_tokens).toBeLessThan(MAX_NEW_TOKENS);

    const ignoring = await tgiGenerate({ ignore_eos: true });
    expect(ignoring.details.finish_reason).toBe("length");
    expect(ignoring.details.generated_tokens).toBe(MAX_NEW_TOKENS);
    expect(ignoring.details.tokens).toHaveLength(MAX_NEW_TOKENS);
    // Greedy: the tokens up to the EOS are the ones generated without ignore_eos, EOS included.
    expect(ignoring.details.tokens.slice(0, plain.details.generated_tokens).map((t) => t.id)).toEqual(plain.details.tokens.map((t) => t.id));
  });

  it("TGI /generate: a stop sequence still ends a request with ignore_eos", async () => {
    const answer = await tgiGenerate({ ignore_eos: true, stop: ["world"] });
    expect(answer.details.finish_reason).toBe("stop_sequence");
    expect(answer.generated_text).toBe("hello ");
    expect(answer.details.generated_tokens).toBeLessThan(MAX_NEW_TOKENS);
  });

  it("OpenAI /v1/completions and /v1/chat/completions: usage.completion_tokens is max_tokens with it", async () => {
    const completion = { model: baseId, prompt: PROMPT, temperature: 0, max_tokens: MAX_NEW_TOKENS };
    const chat = { model: baseId, messages: [{ role: "user", content: "hello world" }], temperature: 0, max_tokens: MAX_NEW_TOKENS };
    for (const [path, body] of [["/v1/completions", completion], ["/v1/chat/completions", chat]] as const) {
      const plain = (await post(path, body)) as OpenAiAnswer;
      expect(plain.choices[0]!.finish_reason, path).toBe("stop");
      expect(plain.usage.completion_tokens, path).toBeLessThan(MAX_NEW_TOKENS);

      const ignoring = (await post(path, { ...body, ignore_eos: true })) as OpenAiAnswer;
      expect(ignoring.choices[0]!.finish_reason, path).toBe("length");
      expect(ignoring.usage.completion_tokens, path).toBe(MAX_NEW_TOKENS);
    }
  });

  it("gRPC GenerateService.Generate: GenerationParameters.ignore_eos does the same", async () => {
    const client = createClient(GenerateService, createGrpcTransport({ baseUrl: server.ready.url }));
    const parameters = { maxNewTokens: MAX_NEW_TOKENS, details: true };
    const plain = await client.generate({ inputs: PROMPT, parameters });
    expect(plain.details?.finishReason).toBe(FinishReason.EOS_TOKEN);
    expect(plain.details?.generatedTokens).toBeLessThan(MAX_NEW_TOKENS);

    const ignoring = await client.generate({ inputs: PROMPT, parameters: { ...parameters, ignoreEos: true } });
    expect(ignoring.details?.finishReason).toBe(FinishReason.LENGTH);
    expect(ignoring.details?.generatedTokens).toBe(MAX_NEW_TOKENS);
  });
});
