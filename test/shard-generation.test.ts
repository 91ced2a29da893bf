// Generation features through ShardService with a real gRPC client: seeded sampling, top_k 1 as greedy,
// penalties wired to the engine (checked against the reference's greedy steps), stop sequences cut across
// token boundaries, return_full_text, chat messages rendered with the model's or the adapter's own template
// (one BOS), Tokenize of messages, and INVALID_ARGUMENT for every bad value while the shard keeps serving.
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { FinishReason, GenerateRequestSchema, GenerationParametersSchema, type GenerateStreamResponse } from "../gen/loraserve/v1/generate_pb.js";
import { ShardService } from "../gen/loraserve/v1/shard_pb.js";
import { startShard, type RunningShard } from "../shard/main.js";
import { parseShardArgs } from "../shard/options.js";
import { ChatTemplate } from "../shard/text/chat-template.js";
import { IncrementalDetokenizer } from "../shard/text/detokenizer.js";
import { TextCodec } from "../shard/text/tokenizer.js";
import { fixtureSets, type FixtureSet } from "./helpers/fixture-sets.js";

const sets = fixtureSets();
const TEMPLATED = "templated";
/** The adapter's own template: a layout no fixture model uses, so the output shows which one rendered. */
const ADAPTER_TEMPLATE = "{{ bos_token }}{% for m in messages %}### {{ m['role'] }}: {{ m['content'] }}\n{% endfor %}### assistant:";

type RequestFields = MessageInitShape<typeof GenerateRequestSchema>;


describe.each(sets)("generation features on $name", (set: FixtureSet) => {
  let shard: RunningShard;
  let client: Client<typeof ShardService>;
  let codec: TextCodec;
  const scratch = mkdtempSync(join(tmpdir(), "loraserve-generation-"));
  const adapterId = Object.keys(set.refs.adapters)[0]!;
  const promptIndex = set.refs.prompts.findIndex((p) => p.text !== null && p.ids.length < 48);
  const prompt = set.refs.prompts[promptIndex]!;
  const baseTemplate = ChatTemplate.load(set.modelDir);

  const collect = async (fields: RequestFields): Promise<GenerateStreamResponse[]> => {
    const out: GenerateStreamResponse[] = [];
    for await (const message of client.generate(create(GenerateRequestSchema, fields))) out.push(message);
    return out;
  };
  const ids = (messages: GenerateStreamResponse[]) => messages.map((m) => m.token!.id);
  const last = (messages: GenerateStreamResponse[]) => messages.at(-1)!;
  const greedy = (maxNewTokens: number, extra: { parameters?: MessageInitShape<typeof GenerationParametersSchema> } = {}) =>
    collect({ inputs: prompt.text!, parameters: { maxNewTokens }, ...extra });

  /** The reference's greedy ids for the base model, cut after the first EOS. */
  const referenceGreedy = (): number[] => {
    const all = set.refs.variants.base!.find((v) => v.prompt === promptIndex)!.greedy_ids;
    const eos = all.findIndex((id) => codec.eosTokenIds.has(id));
    return eos < 0 ? all : all.slice(0, eos + 1);
  };

  const expectInvalid = async (call: Promise<unknown>, message: RegExp): Promise<void> => {
    const error = await call.then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ConnectError);
    expect(Code[(error as ConnectError).code]).toBe(Code[Code.InvalidArgument]);
    expect((error as ConnectError).rawMessage).toMatch(message);
  };

  beforeAll(async () => {
    codec = TextCodec.load(set.modelDir);
    // A copy of a fixture adapter that ships its own chat template.
    const templated = join(scratch, TEMPLATED);
    mkdirSync(templated);
    for (const file of ["adapter_config.json", "adapter_model.safetensors"]) copyFileSync(join(set.adaptersDir, adapterId, file), join(templated, file));
    writeFileSync(join(templated, "tokenizer_config.json"), JSON.stringify({ chat_template: ADAPTER_TEMPLATE }));
    shard = await startShard(
      parseShardArgs(
        ["--model-id", set.modelDir, "--lora-adapters", `${adapterId}=${join(set.adaptersDir, adapterId)},${TEMPLATED}=${templated}`, "--threads", "2"],
        {},
      ),
    );
    client = createClient(ShardService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${shard.port}` }));
  });
  afterAll(async () => {
    await shard?.stop();
    rmSync(scratch, { recursive: true, force: true });
  });

  it("gives the same tokens for the same seed, different ones for different seeds, and greedy for top_k 1", async () => {
    const sampled = (seed: bigint, extra = {}) => collect({ inputs: prompt.text!, parameters: { maxNewTokens: 8, doSample: true, seed, ...extra } });
    const first = await sampled(11n);
    expect(ids(await sampled(11n))).toEqual(ids(first));
    expect(last(await sampled(11n)).generatedText).toBe(last(first).generatedText);
    const others = [ids(first), ids(await sampled(12n)), ids(await sampled(13n))].map((t) => t.join(","));
    expect(new Set(others).size, "three seeds, at least two different outputs").toBeGreaterThan(1);
    const expected = referenceGreedy().slice(0, 8);
    expect(ids(await sampled(99n, { topK: 1, temperature: 1.5 })).slice(0, expected.length)).toEqual(expected);
    // Temperature 0 under do_sample is greedy too, and reports no seed.
    const cold = await sampled(5n, { temperature: 0 });
    expect(ids(cold).slice(0, expected.length)).toEqual(expected);
    expect(last(cold).details!.seed).toBeUndefined();
  });

  it("passes prompt and generated ids to the repetition penalty and generated ids only to the frequency penalty", async () => {
    const reference = referenceGreedy();
    const promptIds = new Set(prompt.ids);
    // The first greedy step whose token was seen before (prompt or generated), and before in the generated part.
    const seenAt = reference.findIndex((id, k) => promptIds.has(id) || reference.slice(0, k).includes(id));
    const repeatAt = reference.findIndex((id, k) => reference.slice(0, k).includes(id));
    const margins = set.refs.variants.base!.find((v) => v.prompt === promptIndex)!.margins;
    if (seenAt >= 0) {
      // Until then only other tokens lose logit, so greedy holds; there the seen token drops to about 0.
      const out = ids(await greedy(seenAt + 1, { parameters: { maxNewTokens: seenAt + 1, repetitionPenalty: 1e6 } }));
      expect(out.slice(0, seenAt)).toEqual(reference.slice(0, seenAt));
      expect(out[seenAt], `step ${seenAt} repeats ${reference[seenAt]}`).not.toBe(reference[seenAt]);
    }
    if (repeatAt >= 0 && margins[repeatAt]! < 2) {
      // Tokens seen only in the prompt keep their logits, so greedy holds until the first generated repeat.
      const out = ids(await greedy(repeatAt + 1, { parameters: { maxNewTokens: repeatAt + 1, frequencyPenalty: 2 } }));
      expect(out.slice(0, repeatAt)).toEqual(reference.slice(0, repeatAt));
      expect(out[repeatAt]).not.toBe(reference[repeatAt]);
    }
    expect(seenAt >= 0 || repeatAt >= 0, "the reference repeats a token within its steps").toBe(true);
  });

  /** The greedy run's text per token, as the stream decodes it. */
  async function greedyPieces(): Promise<{ tokens: number[]; pieces: string[]; full: string; starts: number[] }> {
    const tokens = ids(await greedy(set.refs.steps));
    const detokenizer = new IncrementalDetokenizer(codec, { skipSpecialTokens: true, continuation: true });
    const pieces = tokens.map((id) => detokenizer.push(id));
    const starts: number[] = [];
    let offset = 0;
    for (const piece of pieces) {
      starts.push(offset);
      offset += piece.length;
    }
    return { tokens, pieces, full: pieces.join(""), starts };
  }

  it("stops at a stop sequence split over two tokens, cuts it, and never streams what it cuts", async () => {
    const { pieces, full, starts } = await greedyPieces();
    // The end of token i and the start of token i+1, first seen at their boundary.
    let found: { i: number; stop: string; at: number } | null = null;
    for (let i = 0; i + 2 < pieces.length && found === null; i++) {
      const left = pieces[i]!.slice(-2);
      const right = pieces[i + 1]!.slice(0, 2);
      const at = starts[i + 1]! - left.length;
      if (left.length > 0 && right.length > 0 && full.indexOf(left + right) === at) found = { i, stop: left + right, at };
    }
    expect(found, "the greedy text has a token boundary to split a stop over").not.toBeNull();
    const { i, stop, at } = found!;
    const messages = await greedy(set.refs.steps, { parameters: { maxNewTokens: set.refs.steps, stop: ["never-generated-stop", stop], details: true } });
    const end = last(messages);
    expect(end.details!.finishReason).toBe(FinishReason.STOP_SEQUENCE);
    expect(end.details!.generatedTokens).toBe(i + 2);
    expect(end.generatedText).toBe(full.slice(0, at));
    // Every streamed piece is final: together they are exactly the cut text.
    expect(messages.map((m) => m.text).join("")).toBe(end.generatedText);
  });

  it("drops the rest of the token that completes a stop sequence, and prepends the prompt with return_full_text", async () => {
    const { pieces, full, starts } = await greedyPieces();
    const j = pieces.findIndex((piece, k) => k + 1 < pieces.length && piece.length >= 3 && full.indexOf(piece.slice(0, 2)) === starts[k]);
    expect(j, "a greedy token of three characters or more whose start is new").toBeGreaterThanOrEqual(0);
    const messages = await greedy(set.refs.steps, { parameters: { maxNewTokens: set.refs.steps, stop: [pieces[j]!.slice(0, 2)], returnFullText: true } });
    expect(last(messages).details!.finishReason).toBe(FinishReason.STOP_SEQUENCE);
    expect(last(messages).details!.generatedTokens).toBe(j + 1);
    expect(last(messages).generatedText).toBe(prompt.text! + full.slice(0, starts[j]));
    expect(messages.map((m) => m.text).join("")).toBe(full.slice(0, starts[j]));
  });

  const conversation = [
    { role: "system", content: "Answer briefly." },
    { role: "user", content: "Name a colour." },
  ];

  it.runIf(baseTemplate !== null)("renders messages with the model's template and encodes them with the one BOS the template writes", async () => {
    const rendered = baseTemplate!.render(conversation);
    const expectedIds = Array.from(codec.encode(rendered, { addSpecialTokens: false }));
    expect(expectedIds[0]).toBe(codec.bosTokenId);
    expect(expectedIds[1]).not.toBe(codec.bosTokenId);
    const tokenized = await client.tokenize({ messages: conversation });
    expect(tokenized.tokens.map((t) => t.id)).toEqual(expectedIds);
    const chat = await collect({ messages: conversation, parameters: { maxNewTokens: 6, decoderInputDetails: true } });
    expect(last(chat).details!.prefill.map((t) => t.id)).toEqual(expectedIds);
    // The same prompt given as text: without the template's BOS, which encoding adds back.
    const bos = codec.tokenText(codec.bosTokenId!);
    expect(rendered.startsWith(bos)).toBe(true);
    const asText = rendered.slice(bos.length);
    if (Array.from(codec.encode(asText)).join(",") === expectedIds.join(",")) {
      const plain = await collect({ inputs: asText, parameters: { maxNewTokens: 6 } });
      expect(ids(chat)).toEqual(ids(plain));
      expect(last(chat).generatedText).toBe(last(plain).generatedText);
    }
  });

  it("uses an adapter's own template for requests naming it, the model's for the others", async () => {
    const bos = codec.tokenText(codec.bosTokenId!);
    const own = `${bos}### system: Answer briefly.\n### user: Name a colour.\n### assistant:`;
    const ownIds = Array.from(codec.encode(own, { addSpecialTokens: false }));
    expect((await client.tokenize({ messages: conversation, adapterId: TEMPLATED })).tokens.map((t) => t.id)).toEqual(ownIds);
    const chat = await collect({ messages: conversation, adapterId: TEMPLATED, parameters: { maxNewTokens: 6, decoderInputDetails: true } });
    expect(last(chat).details!.prefill.map((t) => t.id)).toEqual(ownIds);
    const plain = await collect({ inputs: own.slice(bos.length), adapterId: TEMPLATED, parameters: { maxNewTokens: 6 } });
    if (Array.from(codec.encode(own.slice(bos.length))).join(",") === ownIds.join(",")) expect(ids(chat)).toEqual(ids(plain));
    if (baseTemplate === null) {
      await expectInvalid(client.tokenize({ messages: conversation, adapterId }), /has no chat template/);
    } else {
      const fromBase = Array.from(codec.encode(baseTemplate.render(conversation), { addSpecialTokens: false }));
      expect((await client.tokenize({ messages: conversation, adapterId })).tokens.map((t) => t.id)).toEqual(fromBase);
    }
  });

  it.runIf(baseTemplate === null)("refuses messages for a model without a chat template, naming the reason", async () => {
    await expectInvalid(collect({ messages: conversation }), /the model has no chat template/);
    await expectInvalid(client.tokenize({ messages: conversation }), /the model has no chat template/);
    expect(ids(await greedy(4))).toEqual(referenceGreedy().slice(0, 4));
  });

  it.each([
    ["a negative temperature", { doSample: true, temperature: -1 }, /temperature must be >= 0 \(0 is greedy\), got -1/],
    ["a NaN temperature", { doSample: true, temperature: Number.NaN }, /temperature must be >= 0 .*got NaN/],
    ["top_p 0", { doSample: true, topP: 0 }, /top_p must be in \(0, 1\], got 0/],
    ["top_p above 1", { doSample: true, topP: 1.5 }, /top_p must be in \(0, 1\], got 1.5/],
    ["typical_p 0", { doSample: true, typicalP: 0 }, /typical_p must be in \(0, 1\] \(1 is no cut\), got 0/],
    ["typical_p above 1", { doSample: true, typicalP: 1.5 }, /typical_p must be in \(0, 1\]/],
    ["repetition_penalty 0", { repetitionPenalty: 0 }, /repetition_penalty must be > 0 \(1 is none\), got 0/],
    ["a negative repetition_penalty", { repetitionPenalty: -1 }, /repetition_penalty must be > 0/],
    ["frequency_penalty above 2", { frequencyPenalty: 2.5 }, /frequency_penalty must be in \[-2, 2\], got 2.5/],
    ["presence_penalty below -2", { presencePenalty: -3 }, /presence_penalty must be in \[-2, 2\], got -3/],
    ["nine stop sequences", { stop: Array.from({ length: 9 }, (_, i) => `s${i}`) }, /at most 8 stop sequences are accepted, got 9/],
    ["an empty stop sequence", { stop: ["ok", ""] }, /stop\[1\] must not be empty/],
    ["an overlong stop sequence", { stop: ["x".repeat(257)] }, /stop\[0\] is 257 characters; at most 256/],
  ] as [string, MessageInitShape<typeof GenerationParametersSchema>, RegExp][])("answers INVALID_ARGUMENT for %s, and keeps serving", async (_, parameters, message) => {
    await expectInvalid(collect({ inputs: prompt.text!, parameters: { maxNewTokens: 2, ...parameters } }), message);
    expect(ids(await greedy(4))).toEqual(referenceGreedy().slice(0, 4));
  });

  it.each([
    ["both inputs and messages", { inputs: "hi", messages: [{ role: "user", content: "hi" }] }, /either inputs or messages, not both/],
    ["a message without a role", { messages: [{ role: "", content: "hi" }] }, /messages\[0\]\.role must not be empty/],
  ] as [string, { inputs?: string; messages?: { role: string; content: string }[] }, RegExp][])("answers INVALID_ARGUMENT for %s in Generate and Tokenize", async (_, fields, message) => {
    await expectInvalid(collect(fields), message);
    await expectInvalid(client.tokenize(fields), message);
    expect(ids(await greedy(4))).toEqual(referenceGreedy().slice(0, 4));
  });
});
