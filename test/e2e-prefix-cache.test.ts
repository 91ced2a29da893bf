// The prefix cache as a user of `loraserve serve` sees it: a request repeated on the base model or an adapter
// answers the same, and the shard's metrics show the prompt tokens it found cached; with
// --disable-prefix-caching (a shard flag that serve passes on) nothing is found.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { projectFixture } from "./helpers/fixture-sets.js";
import { adapterFlag, serve, type ServeReady, type Started } from "./helpers/process.js";

const START_TIMEOUT_MS = 60_000;
const BLOCK_SIZE = 4;
const set = projectFixture("demo");
const [adapter] = Object.keys(set.refs.adapters) as [string];
const prompt = set.refs.prompts[0]!;
/** Prompt tokens a repeat finds cached: every full block but the one of its last token. */
const cachedTokens = Math.floor((prompt.ids.length - 1) / BLOCK_SIZE) * BLOCK_SIZE;

interface Answer {
  text: string;
  tokens: { id: number; logprob: number }[];
}

/** POST /generate, greedy, with the generated tokens' details (not the prompt's: those are computed whole). */
async function generate(server: Started<ServeReady>, variant: string): Promise<Answer> {
  const response = await fetch(`${server.ready.url}/generate`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      inputs: prompt.text,
      parameters: { ...(variant !== "base" && { adapter_id: variant }), max_new_tokens: 8, do_sample: false, details: true },
    }),
  });
  expect(response.status, await response.clone().text()).toBe(200);
  const body = (await response.json()) as { generated_text: string; details: { tokens: { id: number; logprob: number }[] } };
  return { text: body.generated_text, tokens: body.details.tokens.map(({ id, logprob }) => ({ id, logprob })) };
}

/** One sample of the shard's metrics, by name and labels as written. */
async function metric(server: Started<ServeReady>, series: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${server.ready.shardMetricsPort}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  if (line === undefined) throw new Error(`no ${series} in the shard's metrics:\n${text}`);
  return Number(line.slice(series.length + 1));
}

const hitTokens = (server: Started<ServeReady>): Promise<number> => metric(server, "loraserve_engine_prefix_cache_hit_tokens_total");

function serveDemo(extra: string[]): Promise<Started<ServeReady>> {
  return serve(["--model-id", set.modelDir, ...adapterFlag(set.adaptersDir, [adapter]), "--block-size", String(BLOCK_SIZE), "--threads", "2", ...extra]);
}

describe("loraserve serve with the prefix cache (the default)", () => {
  let server: Started<ServeReady>;
  beforeAll(async () => {
    server = await serveDemo([]);
  }, START_TIMEOUT_MS);
  afterAll(async () => {
    await server?.stop();
  });

  it("answers a repeated request the same, its prompt found cached, per adapter", async () => {
    expect(cachedTokens).toBeGreaterThan(0);
    for (const variant of ["base", adapter]) {
      const before = await hitTokens(server);
      const first = await generate(server, variant);
      // The other variant's blocks hold the same prompt under other weights: nothing to find.
      expect(await hitTokens(server), `${variant} first`).toBe(before);
      const second = await generate(server, variant);
      expect(await hitTokens(server), `${variant} repeated`).toBe(before + cachedTokens);
      expect(second.text, variant).toBe(first.text);
      expect(second.tokens.map((t) => t.id), variant).toEqual(first.tokens.map((t) => t.id));
      second.tokens.forEach((token, i) => expect(Math.abs(token.logprob - first.tokens[i]!.logprob), `${variant} token ${i}`).toBeLessThan(1e-4));
    }
    // Cached blocks are free ones: nothing runs, so every block is free, and some still hold the prompts.
    expect(await metric(server, 'loraserve_engine_kv_blocks{state="used"}')).toBe(0);
    expect(await metric(server, "loraserve_engine_prefix_cache_blocks")).toBeGreaterThan(0);
  });
});

describe("loraserve serve --disable-prefix-caching", () => {
  let server: Started<ServeReady>;
  beforeAll(async () => {
    server = await serveDemo(["--disable-prefix-caching"]);
  }, START_TIMEOUT_MS);
  afterAll(async () => {
    await server?.stop();
  });

  it("computes a repeated prompt whole", async () => {
    const first = await generate(server, adapter);
    const second = await generate(server, adapter);
    expect(second).toEqual(first);
    expect(await hitTokens(server)).toBe(0);
    expect(await metric(server, "loraserve_engine_prefix_cache_queried_tokens_total")).toBe(0);
    expect(await metric(server, "loraserve_engine_prefix_cache_blocks")).toBe(0);
  });
});
