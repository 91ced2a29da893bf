// The HTTP APIs of a real `loraserve serve`, driven by the clients users bring: the `openai` npm client
// (completions, chat, streaming, models.list, logprobs), @huggingface/inference against TGI's /generate and
// /generate_stream with adapter_id, and raw fetch with an independent event-stream parser. Greedy answers are
// checked against the transformers + peft reference (token ids, logprobs), and streamed answers against the
// same request unstreamed.
import { textGeneration, textGenerationStream } from "@huggingface/inference";
import OpenAI from "openai";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fixtureSets } from "./helpers/fixture-sets.js";
import { expectAdapterChangesGreedy } from "./helpers/adapter-effect.js";
import { eosIds, greedyIds, logprobAt } from "./helpers/greedy-reference.js";
import { adapterFlag, serve, type ServeReady, type Started } from "./helpers/process.js";
import { readRefLogits, type RefLogits } from "./helpers/refs.js";
import { readEventData } from "./helpers/sse.js";

const TOLERANCE = 1e-4;
const START_TIMEOUT_MS = 60_000;
const set = fixtureSets()[0]!;

interface TgiToken {
  id: number;
  text: string;
  logprob: number | null;
  special: boolean;
}

interface TgiAnswer {
  generated_text: string;
  details: { finish_reason: string; generated_tokens: number; tokens: TgiToken[] };
}

interface TgiStreamEvent {
  index: number;
  token: TgiToken;
  generated_text: string | null;
  details: { finish_reason: string; generated_tokens: number; seed: number | null; input_length: number } | null;
}


describe(`HTTP clients against loraserve serve on ${set.name}`, () => {
  const adapterIds = Object.keys(set.refs.adapters);
  const variants = ["base", ...adapterIds];
  const eos = eosIds(set.modelDir);
  const prompts = set.refs.prompts.flatMap((p, index) => (p.text === null ? [] : [{ index, text: p.text, ids: p.ids }]));
  const steps = set.refs.steps;
  let server: Started<ServeReady>;
  let openai: OpenAI;
  let refs: RefLogits;

  /** The base model's API id, given with --served-model-name (without it, the --model-id path). */
  const SERVED_NAME = "loraserve-test-base";
  /** OpenAI's `model`: the base model's id (what /v1/models lists for it) or the adapter id. */
  const modelName = (variant: string): string => (variant === "base" ? SERVED_NAME : variant);

  beforeAll(async () => {
    refs = readRefLogits(set.root);
    // Without the prefix cache: these tests send the same request twice and compare the answers exactly, and a
    // cached prompt computes its last block on its own, which moves float32 logprobs in the 7th digit.
    server = await serve(["--model-id", set.modelDir, "--served-model-name", SERVED_NAME, "--disable-prefix-caching", ...adapterFlag(set.adaptersDir, adapterIds)]);
    openai = new OpenAI({ baseURL: `${server.ready.url}/v1`, apiKey: "unused", maxRetries: 0 });
  }, START_TIMEOUT_MS);

  afterAll(async () => {
    await server?.stop();
  });

  function post(path: string, body: unknown): Promise<Response> {
    return fetch(`${server.ready.url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  }

  async function tgiGreedy(variant: string, inputs: string): Promise<TgiAnswer> {
    const res = await post("/generate", {
      inputs,
      parameters: { ...(variant !== "base" && { adapter_id: variant }), max_new_tokens: steps, details: true },
    });
    expect(res.status).toBe(200);
    return (await res.json()) as TgiAnswer;
  }

  describe("the openai client", () => {
    it("lists the base model and every adapter with models.list", async () => {
      const models = [];
      for await (const model of openai.models.list()) models.push(model);
      expect(models.map((m) => m.id).sort()).toEqual([SERVED_NAME, ...adapterIds].sort());
      for (const model of models) expect(model.object).toBe("model");
      expect((await openai.models.retrieve(adapterIds[0]!)).id).toBe(adapterIds[0]);
    });

    it.each(variants)("answers greedy completions with the reference's tokens and logprobs for %s", async (variant) => {
      for (const prompt of prompts) {
        const where = `${variant}, prompt ${prompt.index}`;
        const expected = greedyIds(set, variant, prompt.index);
        expectAdapterChangesGreedy(set, variant, prompt.index);
        const completion = await openai.completions.create({
          model: modelName(variant),
          prompt: prompt.text,
          max_tokens: steps,
          temperature: 0,
          logprobs: 2,
        });
        expect(completion.model, where).toBe(modelName(variant));
        const choice = completion.choices[0]!;
        const logprobs = choice.logprobs!;
        const stepLogits = refs.steps(variant, prompt.index);
        expect(logprobs.token_logprobs!.length, where).toBe(expected.length);
        logprobs.token_logprobs!.forEach((logprob, step) => {
          expect(Math.abs(logprob - logprobAt(stepLogits, step, expected[step]!)), `${where}, step ${step}`).toBeLessThan(TOLERANCE);
          // Greedy: the drawn token is the most likely of the alternatives listed with it.
          expect(Math.max(...Object.values(logprobs.top_logprobs![step]!)), `${where}, step ${step}`).toBe(logprob);
        });
        expect(choice.finish_reason, where).toBe(eos.has(expected.at(-1)!) ? "stop" : "length");
        expect(completion.usage, where).toEqual({ prompt_tokens: prompt.ids.length, completion_tokens: expected.length, total_tokens: prompt.ids.length + expected.length });
        // The same text TGI's /generate gives for the reference's ids.
        const tgi = await tgiGreedy(variant, prompt.text);
        expect(tgi.details.tokens.map((t) => t.id), where).toEqual(expected);
        expect(choice.text, where).toBe(tgi.generated_text);
      }
    });

    it("streams completions that add up to the unstreamed answer, with usage last", async () => {
      const variant = variants.at(-1)!;
      const request = { model: modelName(variant), prompt: prompts[0]!.text, max_tokens: steps, temperature: 0, logprobs: 1 };
      const whole = await openai.completions.create(request);
      const chunks = [];
      for await (const chunk of await openai.completions.create({ ...request, stream: true, stream_options: { include_usage: true } })) chunks.push(chunk);
      const withChoices = chunks.filter((c) => c.choices.length > 0);
      expect(withChoices.map((c) => c.choices[0]!.text).join("")).toBe(whole.choices[0]!.text);
      expect(withChoices.flatMap((c) => c.choices[0]!.logprobs!.token_logprobs)).toEqual(whole.choices[0]!.logprobs!.token_logprobs);
      expect(withChoices.flatMap((c) => c.choices[0]!.logprobs!.text_offset)).toEqual(whole.choices[0]!.logprobs!.text_offset);
      expect(withChoices.at(-1)!.choices[0]!.finish_reason).toBe(whole.choices[0]!.finish_reason);
      expect(chunks.at(-1)!.choices).toEqual([]);
      expect(chunks.at(-1)!.usage).toEqual(whole.usage);
    });

    it("answers chat completions, streamed and not, with the same greedy tokens and logprobs", async () => {
      const variant = variants.at(-1)!;
      const request = {
        model: modelName(variant),
        messages: [
          { role: "system" as const, content: "You answer briefly." },
          { role: "user" as const, content: prompts[0]!.text },
        ],
        max_completion_tokens: steps,
        temperature: 0,
        logprobs: true,
        top_logprobs: 3,
      };
      const whole = await openai.chat.completions.create(request);
      const choice = whole.choices[0]!;
      expect(choice.message.role).toBe("assistant");
      const content = choice.logprobs!.content!;
      expect(content.length).toBe(whole.usage!.completion_tokens);
      expect(whole.usage!.prompt_tokens).toBeGreaterThan(0);
      for (const token of content) {
        expect(token.top_logprobs.length).toBe(3);
        expect(token.top_logprobs[0]!.logprob).toBe(token.logprob);
        expect(token.bytes).toEqual([...Buffer.from(token.token, "utf8")]);
      }
      const chunks = [];
      for await (const chunk of await openai.chat.completions.create({ ...request, stream: true })) chunks.push(chunk);
      expect(chunks[0]!.choices[0]!.delta.role).toBe("assistant");
      expect(chunks.map((c) => c.choices[0]?.delta.content ?? "").join("")).toBe(choice.message.content);
      expect(chunks.flatMap((c) => c.choices[0]?.logprobs?.content ?? [])).toEqual(content);
      expect(chunks.at(-1)!.choices[0]!.finish_reason).toBe(choice.finish_reason);
    });

    it("refuses an unknown model with 404 model_not_found and n > 1 with 400", async () => {
      const unknown = await openai.completions.create({ model: "no-such-adapter", prompt: "hello", max_tokens: 2 }).catch((e: unknown) => e);
      expect(unknown).toBeInstanceOf(OpenAI.NotFoundError);
      expect((unknown as InstanceType<typeof OpenAI.NotFoundError>).code).toBe("model_not_found");
      const many = await openai.chat.completions
        .create({ model: modelName("base"), messages: [{ role: "user", content: "hi" }], n: 2 })
        .catch((e: unknown) => e);
      expect(many).toBeInstanceOf(OpenAI.BadRequestError);
      expect((many as InstanceType<typeof OpenAI.BadRequestError>).param).toBe("n");
    });
  });

  describe("parameters on their way to the shard", () => {
    /** A stop sequence inside a greedy answer: three characters of whole text, found first where they stand. */
    function stopInside(text: string): { stop: string; before: string } {
      for (let at = 2; at + 3 <= text.length; at++) {
        const stop = text.slice(at, at + 3);
        if (!stop.includes("\uFFFD") && stop.trim() === stop && text.indexOf(stop) === at) return { stop, before: text.slice(0, at) };
      }
      throw new Error(`no usable stop sequence in ${JSON.stringify(text)}`);
    }

    it("cuts the text at `stop` given as a string or a list (OpenAI) and in TGI's parameters", async () => {
      const prompt = prompts[0]!;
      const request = { model: modelName("base"), prompt: prompt.text, max_tokens: steps, temperature: 0 };
      const whole = (await openai.completions.create(request)).choices[0]!.text;
      const { stop, before } = stopInside(whole);
      for (const given of [stop, [stop, "\u0000never"]]) {
        const cut = (await openai.completions.create({ ...request, stop: given })).choices[0]!;
        expect(cut.text).toBe(before);
        expect(cut.finish_reason).toBe("stop");
      }
      const tgi = (await (await post("/generate", { inputs: prompt.text, parameters: { max_new_tokens: steps, stop: [stop], details: true } })).json()) as TgiAnswer;
      expect(tgi.generated_text).toBe(before);
      expect(tgi.details.finish_reason).toBe("stop_sequence");
    });

    it("samples the same text for the same seed over OpenAI and TGI, and reports the seed", async () => {
      const prompt = prompts[0]!;
      const seed = 1234;
      const openAiText = async () =>
        (await openai.completions.create({ model: modelName("base"), prompt: prompt.text, max_tokens: steps, temperature: 1, seed })).choices[0]!.text;
      const first = await openAiText();
      expect(await openAiText()).toBe(first);
      const tgi = (await (
        await post("/generate", { inputs: prompt.text, parameters: { max_new_tokens: steps, do_sample: true, seed, details: true } })
      ).json()) as TgiAnswer & { details: { seed: number } };
      expect(tgi.generated_text).toBe(first);
      expect(tgi.details.seed).toBe(seed);
    });

    it("prepends the prompt with return_full_text", async () => {
      const prompt = prompts[0]!;
      const plain = await tgiGreedy("base", prompt.text);
      const full = (await (await post("/generate", { inputs: prompt.text, parameters: { max_new_tokens: steps, return_full_text: true } })).json()) as TgiAnswer;
      expect(full.generated_text).toBe(prompt.text + plain.generated_text);
    });

    it("passes the penalties on: a strong frequency_penalty changes a greedy answer", async () => {
      const prompt = prompts[0]!;
      const request = { model: modelName("base"), prompt: prompt.text, max_tokens: steps, temperature: 0, logprobs: 0 };
      const plain = (await openai.completions.create(request)).choices[0]!;
      for (const penalty of [{ frequency_penalty: 2 }, { presence_penalty: 2 }]) {
        const penalized = (await openai.completions.create({ ...request, ...penalty })).choices[0]!;
        expect(penalized.logprobs!.tokens, JSON.stringify(penalty)).not.toEqual(plain.logprobs!.tokens);
      }
    });
  });

  describe("event streams read with fetch", () => {
    it("/generate_stream sends TGI's events with the tokens of /generate", async () => {
      for (const variant of variants) {
        const prompt = prompts[0]!;
        const expected = greedyIds(set, variant, prompt.index);
        expectAdapterChangesGreedy(set, variant, prompt.index);
        const res = await post("/generate_stream", {
          inputs: prompt.text,
          parameters: { ...(variant !== "base" && { adapter_id: variant }), max_new_tokens: steps },
        });
        expect(res.status).toBe(200);
        expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
        const events = (await readEventData(res)).map((data) => JSON.parse(data) as TgiStreamEvent);
        const whole = await tgiGreedy(variant, prompt.text);
        expect(events.map((e) => e.token.id)).toEqual(expected);
        expect(events.map((e) => e.token)).toEqual(whole.details.tokens);
        expect(events.map((e) => e.index)).toEqual(expected.map((_, i) => i + 1));
        expect(events.slice(0, -1).every((e) => e.generated_text === null && e.details === null)).toBe(true);
        const last = events.at(-1)!;
        expect(last.generated_text).toBe(whole.generated_text);
        expect(last.details).toEqual({
          finish_reason: whole.details.finish_reason,
          generated_tokens: expected.length,
          seed: null,
          input_length: prompt.ids.length,
        });
      }
    });

    it("/v1/chat/completions streams chunks that end in [DONE] and add up to the unstreamed answer", async () => {
      const request = { model: modelName(variants.at(-1)!), messages: [{ role: "user", content: prompts[0]!.text }], max_tokens: steps, temperature: 0 };
      const whole = (await (await post("/v1/chat/completions", request)).json()) as { choices: { message: { content: string }; finish_reason: string }[] };
      const res = await post("/v1/chat/completions", { ...request, stream: true });
      expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
      const data = await readEventData(res);
      expect(data.at(-1)).toBe("[DONE]");
      const chunks = data.slice(0, -1).map((d) => JSON.parse(d) as { object: string; choices: { delta: { content?: string }; finish_reason: string | null }[] });
      expect(chunks.every((c) => c.object === "chat.completion.chunk")).toBe(true);
      expect(chunks.map((c) => c.choices[0]!.delta.content ?? "").join("")).toBe(whole.choices[0]!.message.content);
      expect(chunks.at(-1)!.choices[0]!.finish_reason).toBe(whole.choices[0]!.finish_reason);
    });
  });

  describe("@huggingface/inference", () => {
    it.each(adapterIds)("generates with adapter_id %s through /generate and /generate_stream", async (adapter) => {
      const prompt = prompts[0]!;
      const expected = greedyIds(set, adapter, prompt.index);
      expectAdapterChangesGreedy(set, adapter, prompt.index);
      const parameters = { adapter_id: adapter, max_new_tokens: steps, do_sample: false, details: true };
      const answer = await textGeneration({ endpointUrl: `${server.ready.url}/generate`, inputs: prompt.text, parameters });
      expect(answer.details!.tokens.map((t) => t.id)).toEqual(expected);
      const streamed = [];
      for await (const event of textGenerationStream({ endpointUrl: `${server.ready.url}/generate_stream`, inputs: prompt.text, parameters })) {
        streamed.push(event);
      }
      expect(streamed.map((e) => e.token.id)).toEqual(expected);
      expect(streamed.at(-1)!.generated_text).toBe(answer.generated_text);
    });
  });

  describe("TGI's other routes", () => {
    it("/info describes the model and its limits", async () => {
      const config = JSON.parse(readFileSync(join(set.modelDir, "config.json"), "utf8")) as { torch_dtype: string };
      const info = (await (await fetch(`${server.ready.url}/info`)).json()) as Record<string, unknown>;
      expect(info).toMatchObject({ model_id: SERVED_NAME, model_dtype: config.torch_dtype, model_device_type: "cpu", max_best_of: 1, router: "loraserve" });
      expect(info.max_input_tokens).toBeLessThan(info.max_total_tokens as number);
    });

    it("/tokenize gives the reference's prompt ids with back-to-back spans", async () => {
      for (const prompt of prompts) {
        const tokens = (await (await post("/tokenize", { inputs: prompt.text })).json()) as { id: number; text: string; start: number; stop: number }[];
        expect(tokens.map((t) => t.id)).toEqual(prompt.ids);
        tokens.forEach((token, i) => {
          expect(token.start).toBe(i === 0 ? 0 : tokens[i - 1]!.stop);
          expect(token.stop).toBeGreaterThanOrEqual(token.start);
        });
      }
    });

    it("POST / answers like /generate, or like /generate_stream with stream: true", async () => {
      const body = { inputs: prompts[0]!.text, parameters: { max_new_tokens: 4, details: true } };
      const whole = (await (await post("/", body)).json()) as TgiAnswer;
      expect(whole.details.tokens.map((t) => t.id)).toEqual(greedyIds(set, "base", prompts[0]!.index).slice(0, 4));
      const events = (await readEventData(await post("/", { ...body, stream: true }))).map((d) => JSON.parse(d) as TgiStreamEvent);
      expect(events.map((e) => e.token.id)).toEqual(whole.details.tokens.map((t) => t.id));
    });
  });
});
