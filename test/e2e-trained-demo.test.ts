// The trained demo (fixtures/trained) through `loraserve serve` as users run it. By behaviour: each adapter
// answers the held-out prompts (words and numbers its training never saw) exactly, greedy, via
// /v1/chat/completions; the base model alone does not; a batch mixing every adapter and the base answers each
// request as it is answered alone; and the README's requests give the README's answers, also through
// `loraserve generate`. A LoRA path that silently applies nothing, or the wrong adapter, fails here. By numbers:
// TGI /generate's greedy tokens and logprobs equal the transformers + peft float32 references.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { projectFixture, TRAINED_DEMO } from "./helpers/fixture-sets.js";
import { greedyIds, logprobAt, postGreedyGenerate } from "./helpers/greedy-reference.js";
import { adapterFlag, runCli, serve, type ServeReady, type Started } from "./helpers/process.js";
import { readRefLogits } from "./helpers/refs.js";

const fixture = projectFixture(TRAINED_DEMO);
const ADAPTERS = ["upper", "reverse", "sql"] as const;
const MIN_ACCURACY = 0.95;
// The base model repeats the user's message, which no adapter's answer is.
const MAX_BASE_MATCHES = 0.05;
// The engine's logprobs against the float32 reference, as test/e2e-generate.test.ts accepts them.
const LOGPROB_TOLERANCE = 1e-4;
// Requests in flight at once: enough to fill decode batches, few enough for a two-core CI machine.
const CONCURRENCY = 16;

interface HeldOut {
  max_new_tokens: number;
  adapters: Record<(typeof ADAPTERS)[number], { prompt: string; answer: string }[]>;
}
const heldOut = JSON.parse(readFileSync(join(fixture.root, "heldout.json"), "utf8")) as HeldOut;

let server: Started<ServeReady>;
/** The id /v1/models gives the base model. */
let baseId: string;

beforeAll(async () => {
  server = await serve(["--model-id", fixture.modelDir, ...adapterFlag(fixture.adaptersDir, [...ADAPTERS])]);
  const models = (await (await fetch(`${server.ready.url}/v1/models`)).json()) as { data: { id: string }[] };
  baseId = models.data.map((m) => m.id).find((id) => !(ADAPTERS as readonly string[]).includes(id))!;
}, 60_000);

afterAll(async () => {
  await server?.stop();
});

/**
 * The greedy answer of `model` (an adapter id or the base model's) to one user message: temperature 0, or none at
 * all (`sampling: "model"`), which takes the model's generation_config.json (do_sample false: greedy).
 */
async function chat(model: string, content: string, sampling: "greedy" | "model" = "greedy"): Promise<string> {
  const temperature = sampling === "greedy" ? { temperature: 0 } : {};
  const res = await fetch(`${server.ready.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model, messages: [{ role: "user", content }], ...temperature, max_tokens: heldOut.max_new_tokens }),
  });
  expect(res.status, await res.clone().text()).toBe(200);
  const body = (await res.json()) as { choices: { message: { content: string } }[] };
  return body.choices[0]!.message.content;
}

/** Answers to every request, CONCURRENCY of them in flight at a time, in request order. */
async function chatAll(requests: { model: string; content: string }[]): Promise<string[]> {
  const answers: string[] = new Array(requests.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < requests.length) {
      const index = next++;
      answers[index] = await chat(requests[index]!.model, requests[index]!.content);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return answers;
}

function exactShare(answers: string[], pairs: { answer: string }[]): number {
  return answers.filter((answer, i) => answer === pairs[i]!.answer).length / pairs.length;
}

describe("the trained demo through loraserve serve", () => {
  it("answers the README's requests as the README shows", async () => {
    expect(await chat("upper", "hello world")).toBe("HELLO WORLD");
    expect(await chat("reverse", "one two three")).toBe("three two one");
    expect(await chat("sql", "How many users live in Paris?")).toBe("SELECT COUNT(*) FROM users WHERE city = 'Paris';");
    expect(await chat(baseId, "hello world")).toBe("hello world");
  });

  it("answers them the same without a temperature: the model's generation_config.json says do_sample false", async () => {
    // OpenAI's default temperature is 1; the model's own default wins, as in vLLM, so every try is the same.
    for (let attempt = 0; attempt < 8; attempt++) expect(await chat("upper", "hello world", "model")).toBe("HELLO WORLD");
    expect(await chat("reverse", "one two three", "model")).toBe("three two one");
  });

  it("`loraserve generate --adapter upper` applies the chat template", async () => {
    const result = await runCli(["generate", "--url", server.ready.url, "--adapter", "upper", "hello world"]);
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(result.stdout).toBe("HELLO WORLD\n");
  });

  it.each(ADAPTERS)(
    "%s answers at least 0.95 of its held-out prompts exactly, and the base model alone does not",
    async (adapter) => {
      const pairs = heldOut.adapters[adapter];
      expect(pairs.length).toBeGreaterThanOrEqual(200);
      const answers = await chatAll(pairs.map((p) => ({ model: adapter, content: p.prompt })));
      const wrong = pairs.flatMap((p, i) => (answers[i] === p.answer ? [] : [`${p.prompt} -> ${answers[i]} (expected ${p.answer})`]));
      expect(exactShare(answers, pairs), wrong.slice(0, 5).join("\n")).toBeGreaterThanOrEqual(MIN_ACCURACY);

      const baseAnswers = await chatAll(pairs.map((p) => ({ model: baseId, content: p.prompt })));
      expect(exactShare(baseAnswers, pairs)).toBeLessThanOrEqual(MAX_BASE_MATCHES);
    },
    120_000,
  );

  it("a batch mixing all three adapters and the base gives each request its answer alone", async () => {
    // The same prompts to every variant, interleaved, so that each decode step holds all four.
    const prompts = heldOut.adapters.reverse.slice(0, 6).map((p) => p.prompt);
    const models = [baseId, ...ADAPTERS];
    const requests = prompts.flatMap((content) => models.map((model) => ({ model, content })));
    const alone: string[] = [];
    for (const request of requests) alone.push(await chat(request.model, request.content));
    const together = await Promise.all(requests.map((r) => chat(r.model, r.content)));
    const label = (answers: string[]) => requests.map((r, i) => `${r.model} <- ${r.content}: ${answers[i]}`);
    expect(label(together)).toEqual(label(alone));
    // Four behaviours: each prompt's four answers all differ.
    for (let p = 0; p < prompts.length; p++) expect(new Set(alone.slice(p * 4, p * 4 + 4)).size, prompts[p]).toBe(4);
  }, 60_000);

  it.each(["base", ...ADAPTERS])("/generate's greedy tokens and logprobs for %s are the transformers + peft reference's", async (variant) => {
    const refs = readRefLogits(fixture.root);
    for (const [index, prompt] of fixture.refs.prompts.entries()) {
      const where = `${variant}, prompt ${index}`;
      const res = await postGreedyGenerate(server.ready.url, fixture, variant, prompt.text!);
      expect(res.status, where).toBe(200);
      const { details } = (await res.json()) as { details: { prefill: { id: number; logprob: number | null }[]; tokens: { id: number; logprob: number }[] } };
      expect(details.prefill.map((t) => t.id), where).toEqual(prompt.ids);
      details.prefill.slice(1).forEach((t, i) => expect(Math.abs(t.logprob! - logprobAt(refs.prompt(variant, index), i, t.id)), `${where}, prefill ${i + 1}`).toBeLessThan(LOGPROB_TOLERANCE));
      expect(details.tokens.map((t) => t.id), where).toEqual(greedyIds(fixture, variant, index));
      details.tokens.forEach((t, step) => expect(Math.abs(t.logprob - logprobAt(refs.steps(variant, index), step, t.id)), `${where}, step ${step}`).toBeLessThan(LOGPROB_TOLERANCE));
    }
  });
});
