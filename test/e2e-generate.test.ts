// `loraserve serve` as users run it (launcher, shard and router processes), checked against the transformers
// + peft reference: TGI /generate with details for the base model and every adapter, GenerateStream through
// a Connect client and through grpc-js, and the `loraserve generate` CLI.
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, Http2SessionManager } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  GenerateRequestSchema,
  GenerateService,
  GenerateStreamResponseSchema,
  type GenerateRequest,
  type GenerateStreamResponse,
} from "../gen/loraserve/v1/generate_pb.js";
import { fixtureSets, type FixtureSet } from "./helpers/fixture-sets.js";
import { eosIds, greedyIds, logprobAt, postGreedyGenerate } from "./helpers/greedy-reference.js";
import { adapterFlag, runCli, serve, type ServeReady, type Started } from "./helpers/process.js";
import { readRefLogits, type RefLogits } from "./helpers/refs.js";
import { expectAdapterChangesGreedy } from "./helpers/adapter-effect.js";

const TOLERANCE = 1e-4;
const START_TIMEOUT_MS = 60_000;
const sets = fixtureSets();

interface TgiToken {
  id: number;
  text: string;
  logprob: number | null;
  special?: boolean;
}

interface TgiResponse {
  generated_text: string;
  details: { finish_reason: string; generated_tokens: number; seed: number | null; prefill: TgiToken[]; tokens: TgiToken[] };
}

/** Ids of the tokenizer's special tokens, which generated text leaves out. */
function specialIds(modelDir: string): Set<number> {
  const tokenizer = JSON.parse(readFileSync(join(modelDir, "tokenizer.json"), "utf8")) as { added_tokens: { id: number; special: boolean }[] };
  return new Set(tokenizer.added_tokens.filter((t) => t.special).map((t) => t.id));
}


describe.each(sets)("loraserve serve on $name", (set: FixtureSet) => {
  const adapterIds = Object.keys(set.refs.adapters);
  const variants = ["base", ...adapterIds];
  const eos = eosIds(set.modelDir);
  const prompts = set.refs.prompts.flatMap((p, index) => (p.text === null ? [] : [{ index, text: p.text, ids: p.ids }]));
  let server: Started<ServeReady>;
  let refs: RefLogits;

  const expectedIds = (variant: string, prompt: number): number[] => greedyIds(set, variant, prompt);

  function request(variant: string, inputs: string): GenerateRequest {
    return create(GenerateRequestSchema, {
      inputs,
      adapterId: variant === "base" ? "" : variant,
      parameters: { maxNewTokens: set.refs.steps, doSample: false },
    });
  }

  beforeAll(async () => {
    refs = readRefLogits(set.root);
    server = await serve(["--model-id", set.modelDir, ...adapterFlag(set.adaptersDir, adapterIds)]);
  }, START_TIMEOUT_MS);

  afterAll(async () => {
    await server?.stop();
  });

  it.each(variants)("POST /generate with details matches the reference for %s", async (variant) => {
    for (const prompt of prompts) {
      const res = await postGreedyGenerate(server.ready.url, set, variant, prompt.text!);
      const where = `${variant}, prompt ${prompt.index}`;
      expect(res.status, where).toBe(200);
      const { details } = (await res.json()) as TgiResponse;
      const expected = expectedIds(variant, prompt.index);
      expectAdapterChangesGreedy(set, variant, prompt.index);

      expect(details.prefill.map((t) => t.id), where).toEqual(prompt.ids);
      expect(details.prefill[0]!.logprob, where).toBeNull();
      const promptLogits = refs.prompt(variant, prompt.index);
      details.prefill.slice(1).forEach((token, i) => {
        expect(Math.abs(token.logprob! - logprobAt(promptLogits, i, token.id)), `${where}, prefill ${i + 1}`).toBeLessThan(TOLERANCE);
      });

      expect(details.tokens.map((t) => t.id), where).toEqual(expected);
      expect(details.generated_tokens, where).toBe(expected.length);
      expect(details.finish_reason, where).toBe(eos.has(expected.at(-1)!) ? "eos_token" : "length");
      expect(details.seed, where).toBeNull();
      const stepLogits = refs.steps(variant, prompt.index);
      details.tokens.forEach((token, step) => {
        expect(Math.abs(token.logprob! - logprobAt(stepLogits, step, token.id)), `${where}, step ${step}`).toBeLessThan(TOLERANCE);
      });
    }
  });

  /** Checks a GenerateStream's messages: one token each, the reference ids, text that adds up. */
  function expectStream(messages: GenerateStreamResponse[], variant: string, prompt: number): void {
    expectAdapterChangesGreedy(set, variant, prompt);
    expect(messages.map((m) => m.token?.id)).toEqual(expectedIds(variant, prompt));
    expect(messages.slice(0, -1).every((m) => m.generatedText === undefined)).toBe(true);
    expect(messages.at(-1)!.generatedText).toBe(messages.map((m) => m.text).join(""));
  }

  it("streams the reference tokens one message at a time over Connect", async () => {
    const variant = variants.at(-1)!;
    const session = new Http2SessionManager(server.ready.url);
    try {
      const client = createClient(GenerateService, createConnectTransport({ baseUrl: server.ready.url, httpVersion: "2", sessionManager: session }));
      const messages: GenerateStreamResponse[] = [];
      for await (const message of client.generateStream(request(variant, prompts[0]!.text))) messages.push(message);
      expectStream(messages, variant, prompts[0]!.index);
    } finally {
      session.abort();
    }
  });

  it("streams the same tokens to a grpc-js client", async () => {
    const variant = variants.at(-1)!;
    const client = new grpc.Client(`127.0.0.1:${server.ready.port}`, grpc.credentials.createInsecure());
    try {
      const call = client.makeServerStreamRequest(
        "/loraserve.v1.GenerateService/GenerateStream",
        (message: GenerateRequest) => Buffer.from(toBinary(GenerateRequestSchema, message)),
        (bytes: Buffer) => fromBinary(GenerateStreamResponseSchema, bytes),
        request(variant, prompts[0]!.text),
      );
      const messages: GenerateStreamResponse[] = [];
      for await (const message of call as AsyncIterable<GenerateStreamResponse>) messages.push(message);
      expectStream(messages, variant, prompts[0]!.index);
    } finally {
      client.close();
    }
  });

  // The CLI prints text, comparable with the reference only where no special token (left out of text) was
  // produced and every byte sequence is whole UTF-8: Hugging Face's byte-fallback decoder replaces a whole
  // invalid run of byte tokens, a streaming UTF-8 decoder only the bytes that are invalid.
  const special = specialIds(set.modelDir);
  const clean = variants
    .flatMap((variant) => set.refs.variants[variant]!.map((ref) => ({ variant, ref })))
    .find(
      ({ ref }) =>
        set.refs.prompts[ref.prompt]!.text !== null && !ref.greedy_text.includes("\uFFFD") && !ref.greedy_ids.some((id) => special.has(id)),
    );
  it.skipIf(clean === undefined)("`loraserve generate` streams the text of a greedy request", async () => {
    const { variant, ref } = clean!;
    const result = await runCli([
      "generate",
      "--raw",
      "--url",
      server.ready.url,
      ...(variant === "base" ? [] : ["--adapter", variant]),
      "--max-new-tokens",
      String(set.refs.steps),
      set.refs.prompts[ref.prompt]!.text!,
    ]);
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(`${ref.greedy_text}\n`);
  });
});
