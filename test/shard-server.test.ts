// ShardService through a real gRPC client over h2c: streamed tokens against the reference, the error codes
// of bad requests, and that the shard keeps serving after each of them.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { dtypeToProto, type DtypeName } from "../common/model-enums.js";
import { FinishReason, GenerateRequestSchema, type GenerateRequest, type GenerateStreamResponse } from "../gen/loraserve/v1/generate_pb.js";
import { Device } from "../gen/loraserve/v1/model_pb.js";
import { ShardService } from "../gen/loraserve/v1/shard_pb.js";
import type { SeqStep } from "../native/addon.js";
import { LlmEngine } from "../shard/engine/llm-engine.js";
import { createShardEngine, shardMain, startShard, type RunningShard } from "../shard/main.js";
import { loadModelFiles } from "../shard/model/model-files.js";
import { parseShardArgs, resolveLimits } from "../shard/options.js";
import { startShardServer } from "../shard/server.js";
import { ChatTemplates } from "../shard/text/chat-template.js";
import { decodeTokens } from "../shard/text/detokenizer.js";
import { TextCodec } from "../shard/text/tokenizer.js";
import { openRegistry } from "./helpers/adapter-registry.js";
import { expectAdapterChangesGreedy } from "./helpers/adapter-effect.js";
import { fixtureSets, type FixtureSet } from "./helpers/fixture-sets.js";

const sets = fixtureSets();
const MAX_INPUT_TOKENS = 64;
const MAX_TOTAL_TOKENS = 96;
const MAX_NEW_TOKENS_LIMIT = 90;
/** Below TGI's default of 5, so that the flag is seen to set the cap. */
const MAX_TOP_N_TOKENS = 3;

function request(fields: MessageInitShape<typeof GenerateRequestSchema>): GenerateRequest {
  return create(GenerateRequestSchema, fields);
}

async function expectCode(call: Promise<unknown>, code: Code, message: RegExp): Promise<void> {
  const error = await call.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ConnectError);
  expect(Code[(error as ConnectError).code]).toBe(Code[code]);
  expect((error as ConnectError).rawMessage).toMatch(message);
}


describe.each(sets)("ShardService on $name", (set: FixtureSet) => {
  let shard: RunningShard;
  let client: Client<typeof ShardService>;
  let codec: TextCodec;
  const adapterIds = Object.keys(set.refs.adapters);
  const adapter = adapterIds[0]!;
  const maxLoraRank = Math.max(...Object.values(set.refs.adapters).map((a) => a.r));
  // A prompt given as text whose tokens are the reference's (so the reference tokens apply).
  const promptIndex = set.refs.prompts.findIndex((p) => p.text !== null && p.ids.length < MAX_INPUT_TOKENS);
  const prompt = set.refs.prompts[promptIndex]!;

  const collect = async (req: GenerateRequest): Promise<GenerateStreamResponse[]> => {
    const out: GenerateStreamResponse[] = [];
    for await (const message of client.generate(req)) out.push(message);
    return out;
  };

  /** The reference's greedy ids for a variant, cut after the first EOS (the reference runs past it; we stop). */
  const expectedIds = (variant: string): number[] => {
    expectAdapterChangesGreedy(set, variant, promptIndex);
    const ids = set.refs.variants[variant]!.find((v) => v.prompt === promptIndex)!.greedy_ids;
    const eos = ids.findIndex((id) => codec.eosTokenIds.has(id));
    return eos < 0 ? ids : ids.slice(0, eos + 1);
  };

  const expectGoodRequestWorks = async (): Promise<void> => {
    const messages = await collect(request({ inputs: prompt.text!, adapterId: adapter, parameters: { maxNewTokens: set.refs.steps } }));
    expect(messages.map((m) => m.token!.id)).toEqual(expectedIds(adapter));
  };

  beforeAll(async () => {
    codec = TextCodec.load(set.modelDir);
    const adapterList = adapterIds.map((id) => `${id}=${join(set.adaptersDir, id)}`).join(",");
    shard = await startShard(
      parseShardArgs(
        [
          "--model-id",
          set.modelDir,
          "--lora-adapters",
          adapterList,
          "--max-loras",
          String(adapterIds.length),
          "--max-lora-rank",
          String(maxLoraRank),
          "--max-input-tokens",
          String(MAX_INPUT_TOKENS),
          "--max-total-tokens",
          String(MAX_TOTAL_TOKENS),
          "--max-new-tokens-limit",
          String(MAX_NEW_TOKENS_LIMIT),
          "--max-top-n-tokens",
          String(MAX_TOP_N_TOKENS),
          // So that a not-found error names the known adapters (off by default: test/disclosure.test.ts).
          "--list-adapters-in-errors",
          "--threads",
          "2",
        ],
        {},
      ),
    );
    client = createClient(ShardService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${shard.port}` }));
  });
  afterAll(async () => {
    await shard?.stop();
  });

  it("encodes the prompt text to the reference's ids", () => {
    expect(Array.from(codec.encode(prompt.text!))).toEqual(prompt.ids);
  });

  it("streams one message per token, the last with the generated text and details", async () => {
    for (const variant of ["base", ...adapterIds]) {
      const messages = await collect(
        request({
          inputs: prompt.text!,
          adapterId: variant === "base" ? "" : variant,
          parameters: { maxNewTokens: set.refs.steps, details: true, decoderInputDetails: true, topNTokens: 2 },
        }),
      );
      const ids = expectedIds(variant);
      expect(messages.map((m) => m.token!.id), variant).toEqual(ids);
      expect(messages.slice(0, -1).every((m) => m.generatedText === undefined && m.details === undefined)).toBe(true);
      const last = messages.at(-1)!;
      const eos = codec.eosTokenIds.has(ids.at(-1)!);
      expect(last.details!.finishReason).toBe(eos ? FinishReason.EOS_TOKEN : FinishReason.LENGTH);
      expect(last.details!.generatedTokens).toBe(ids.length);
      expect(last.details!.promptTokens).toBe(prompt.ids.length);
      expect(last.details!.seed).toBeUndefined();
      expect(last.details!.tokens.map((t) => t.id)).toEqual(ids);
      expect(last.details!.prefill.map((t) => t.id)).toEqual(prompt.ids);
      expect(last.details!.prefill[0]!.logprob).toBeUndefined();
      expect(last.details!.prefill.slice(1).every((t) => t.logprob !== undefined && t.logprob <= 0)).toBe(true);
      expect(messages.every((m) => m.token!.topTokens.length === 2 && m.token!.topTokens[0]!.id === m.token!.id)).toBe(true);
      // The pieces add up to the whole text, which is the ids decoded at once without special tokens.
      expect(messages.map((m) => m.text).join("")).toBe(last.generatedText);
      expect(last.generatedText).toBe(decodeTokens(codec, ids, { skipSpecialTokens: true, continuation: true }));
      // The reference decodes the generated ids on their own, so a Metaspace tokenizer strips the first token's
      // leading space there; ours continues the prompt and keeps it (as TGI does).
      const ref = set.refs.variants[variant]!.find((v) => v.prompt === promptIndex)!;
      if (!ref.greedy_ids.some((id) => codec.isSpecial(id))) {
        const text = last.generatedText!;
        const stripped = codec.leadingStrip !== null && text.startsWith(" ") ? text.slice(1) : text;
        expect(stripped, variant).toBe(ref.greedy_text);
      }
      if (eos) expect(last.token!.special).toBe(true);
    }
  });

  it("reports the sampler's seed, and the same seed gives the same tokens", async () => {
    const sampled = request({ inputs: prompt.text!, parameters: { maxNewTokens: 8, doSample: true, seed: 77n } });
    const [first, second] = [await collect(sampled), await collect(sampled)];
    expect(first.at(-1)!.details!.seed).toBe(77n);
    expect(second.map((m) => m.token!.id)).toEqual(first.map((m) => m.token!.id));
    const unseeded = await collect(request({ inputs: prompt.text!, parameters: { maxNewTokens: 2, doSample: true } }));
    expect(unseeded.at(-1)!.details!.seed).toBeTypeOf("bigint");
  });

  it("answers NOT_FOUND for an unknown adapter, naming the known ones", async () => {
    await expectCode(collect(request({ inputs: prompt.text!, adapterId: "nope" })), Code.NotFound, new RegExp(`"nope".*${adapterIds.map((id) => `"${id}"`).join(", ")}`));
    await expectGoodRequestWorks();
  });

  it.each([
    ["empty inputs", { inputs: "" }, /inputs must not be empty/],
    ["max_new_tokens 0", { parameters: { maxNewTokens: 0 } }, /max_new_tokens must be at least 1/],
    ["max_new_tokens over the limit", { parameters: { maxNewTokens: MAX_NEW_TOKENS_LIMIT + 1 } }, /max_new_tokens must be <= 90, got 91/],
    ["a prompt over max_input_tokens", { inputs: "word ".repeat(4 * MAX_INPUT_TOKENS) }, /at most 64 \(max_input_tokens\)/],
    ["prompt + max_new_tokens over max_total_tokens", { parameters: { maxNewTokens: MAX_NEW_TOKENS_LIMIT } }, /must be <= 96 \(max_total_tokens\)/],
    ["a negative temperature", { parameters: { doSample: true, temperature: -0.5 } }, /temperature must be >= 0 \(0 is greedy\), got -0.5/],
    ["top_p above 1", { parameters: { doSample: true, topP: 1.5 } }, /top_p must be in \(0, 1\]/],
    ["top_n_tokens over --max-top-n-tokens", { parameters: { topNTokens: MAX_TOP_N_TOKENS + 1 } }, /top_n_tokens .*must be <= 3 \(--max-top-n-tokens\), got 4/],
  ] as const)("answers INVALID_ARGUMENT for %s, and keeps serving", async (_, fields, message) => {
    const req = request({ inputs: prompt.text!, ...fields });
    await expectCode(collect(req), Code.InvalidArgument, message);
    await expectGoodRequestWorks();
  });

  it("gives each token as many alternatives as --max-top-n-tokens allows", async () => {
    const messages = await collect(request({ inputs: prompt.text!, parameters: { maxNewTokens: 2, topNTokens: MAX_TOP_N_TOKENS } }));
    expect(messages.length).toBeGreaterThan(0);
    expect(new Set(messages.map((m) => m.token!.topTokens.length))).toEqual(new Set([MAX_TOP_N_TOKENS]));
  });

  it("fills an unset max_new_tokens with what the context leaves, up to the limit", async () => {
    const messages = await collect(request({ inputs: prompt.text!, adapterId: adapter }));
    const ids = expectedIds(adapter);
    if (codec.eosTokenIds.has(ids.at(-1)!)) expect(messages.map((m) => m.token!.id)).toEqual(ids);
    else expect(messages.length).toBe(Math.min(MAX_NEW_TOKENS_LIMIT, MAX_TOTAL_TOKENS - prompt.ids.length));
  });

  it("reports what it serves in Status", async () => {
    const config = JSON.parse(readFileSync(join(set.modelDir, "config.json"), "utf8")) as { torch_dtype: string; vocab_size: number };
    const status = await client.status({});
    expect(status).toMatchObject({
      ready: true,
      modelId: set.modelDir,
      adapterIds,
      runningSequences: 0,
      waitingSequences: 0,
      maxTotalTokens: MAX_TOTAL_TOKENS,
      maxNewTokensLimit: MAX_NEW_TOKENS_LIMIT,
      maxInputTokens: MAX_INPUT_TOKENS,
      modelDtype: dtypeToProto(config.torch_dtype as DtypeName),
      device: Device.CPU,
      vocabSize: config.vocab_size,
      maxLoras: adapterIds.length,
      maxLoraRank,
    });
    expect(status.totalKvBlocks).toBeGreaterThan(0);
    expect(status.freeKvBlocks).toBe(status.totalKvBlocks);
  });
});

describe("the shard's engine", () => {
  it("has --max-loras slots, and without it on cpu as many as --max-cpu-loras (a cpu slot is host memory taken at load)", () => {
    const set = sets[0]!;
    const model = loadModelFiles(set.modelDir);
    for (const [flags, slots] of [[["--max-loras", "2"], 2], [["--max-cpu-loras", "5"], 5], [[], 64]] as const) {
      const args = parseShardArgs(["--model-id", set.modelDir, "--device", "cpu", "--threads", "1", ...flags], {});
      const native = createShardEngine(model, resolveLimits(args, model.spec), args);
      expect(native.info().maxLoras).toBe(slots);
      native.close();
    }
  });
});

describe("ShardService when a client goes away", () => {
  it("cancels the stream's sequence and frees its KV blocks while the engine is still busy", async () => {
    const set = sets[0]!;
    const model = loadModelFiles(set.modelDir);
    const codec = TextCodec.load(set.modelDir);
    const args = parseShardArgs(["--model-id", set.modelDir, "--max-loras", "1", "--max-lora-rank", "1", "--threads", "1"], {});
    const limits = resolveLimits(args, model.spec);
    const native = createShardEngine(model, limits, args);
    const adapters = await openRegistry(native, model.spec, [], { maxLoras: 1, maxLoraRank: 1 });
    // Steps run only when the test lets them, in the order the loop started them (it starts the next step before
    // the one in flight is over): whatever changes while a step is held back is the shard's doing.
    let allowed = 0;
    const held: (() => void)[] = [];
    const allowStep = (): void => {
      const next = held.shift();
      if (next) next();
      else allowed++;
    };
    const gated = new Proxy(native, {
      get(target, key) {
        if (key !== "step") return Reflect.get(target, key).bind(target);
        return async (seqs: SeqStep[]) => {
          if (allowed > 0) allowed--;
          else await new Promise<void>((resolve) => held.push(resolve));
          return target.step(seqs);
        };
      },
    });
    const llm = new LlmEngine(gated, { ...limits, eosTokenIds: new Set<number>(), adapters });
    const server = await startShardServer(
      {
        modelId: set.modelDir,
        model: { dtype: "float32", device: "cpu", vocabSize: model.spec.vocabSize, maxLoras: 1, maxLoraRank: 1 },
        llm,
        codec,
        encoder: { encode: async (text, options) => codec.encode(text, options), render: async (template, messages) => template.render(messages) },
        chatTemplates: new ChatTemplates(set.modelDir),
        adapters,
        limits,
      },
      0,
    );
    const client = createClient(ShardService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${server.port}` }));
    try {
      const abort = new AbortController();
      const stream = client.generate(request({ inputs: "Hello", parameters: { maxNewTokens: 50 } }), { signal: abort.signal })[Symbol.asyncIterator]();
      const first = stream.next();
      allowStep();
      expect((await first).done).toBe(false);
      const busy = await client.status({});
      expect(busy.runningSequences).toBe(1);
      expect(busy.freeKvBlocks).toBeLessThan(busy.totalKvBlocks);
      // The loop is now waiting for its second step; the client leaves.
      abort.abort();
      await expectCode(stream.next(), Code.Canceled, /./);
      await vi.waitFor(async () => {
        const status = await client.status({});
        expect([status.runningSequences, status.waitingSequences, status.freeKvBlocks]).toEqual([0, 0, status.totalKvBlocks]);
      });
    } finally {
      // Every step from here on runs: the loop may have started one more behind the one held back.
      allowed = Infinity;
      for (const go of held.splice(0)) go();
      await llm.close();
      await server.close();
      native.close();
    }
  });
});

describe("shardMain", () => {
  it("prints its usage for --help without loading anything", async () => {
    const stdout = vi.spyOn(process.stdout, "write").mockImplementation(() => true);
    try {
      await shardMain(["--help"]);
      expect(String(stdout.mock.calls[0]?.[0])).toMatch(/^usage: loraserve shard --model-id DIR/);
    } finally {
      stdout.mockRestore();
    }
  });

  it("prints one clear line naming the missing file and exits 1 when the model cannot be loaded", async () => {
    const stderr = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
    try {
      await shardMain(["--model-id", "/nonexistent/model"]);
      expect(process.exitCode).toBe(1);
      const written = stderr.mock.calls.map((c) => String(c[0])).join("");
      expect(written).toMatch(/^loraserve shard: \/nonexistent\/model\/config\.json: cannot read/);
      expect(written.trim().split("\n")).toHaveLength(1);
    } finally {
      stderr.mockRestore();
      process.exitCode = 0;
    }
  });

  it("prints the ready line with the bound port and stops on SIGTERM", async () => {
    const writes: string[] = [];
    const stdout = vi.spyOn(process.stdout, "write").mockImplementation((chunk) => {
      writes.push(String(chunk));
      return true;
    });
    try {
      const done = shardMain(["--model-id", sets[0]!.modelDir, "--threads", "1"]);
      await vi.waitFor(() => expect(writes.join("")).toContain("\n"));
      const ready = JSON.parse(writes.join("")) as { event: string; port: number };
      expect(ready.event).toBe("ready");
      const status = await createClient(ShardService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${ready.port}` })).status({});
      expect(status.ready).toBe(true);
      process.emit("SIGTERM");
      await done;
      expect(process.exitCode).toBe(0);
    } finally {
      stdout.mockRestore();
    }
  });
});
