// A storm of cancellations beside innocent requests, through `loraserve serve`: 2500 streams, each cancelled by
// its client after its first token, within a few seconds. Every one of them must not cost the router's shared
// HTTP/2 session to the shard an RST_STREAM: nghttp2 answers more than 1000 resets in a burst (its
// CVE-2023-44487 mitigation) with GOAWAY, which failed the innocent requests on that session. So the router
// cancels with a Cancel call and lets the stream end by itself; here every innocent request must succeed, the
// router must have lost no session, and the shard must free every cancelled request's KV blocks.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { projectFixture } from "./helpers/fixture-sets.js";
import { serve, type ServeReady, type Started } from "./helpers/process.js";

const set = projectFixture("demo");
const START_TIMEOUT_MS = 60_000;
const TEST_TIMEOUT_MS = 150_000;
/** More than nghttp2's burst of 1000 resets, so one RST_STREAM per cancel is refused with GOAWAY. */
const CANCELLED = 2500;
/** Cancelling clients at once: each opens a stream, reads its first event, cancels, and opens the next. */
const STORM_CLIENTS = 400;
const INNOCENT = 40;
/** Long enough that every cancelled stream is still running when its client goes. */
const LONG = { inputs: "hello world", parameters: { max_new_tokens: 200, ignore_eos: true } };
const INNOCENT_REQUEST = { inputs: "hello world", parameters: { max_new_tokens: 24, ignore_eos: true } };

describe("a cancellation storm through loraserve serve", () => {
  let server: Started<ServeReady>;

  beforeAll(async () => {
    server = await serve(["--model-id", set.modelDir, "--threads", "1", "--max-concurrent-requests", "1000", "--disable-prefix-caching"]);
  }, START_TIMEOUT_MS);

  afterAll(() => server?.stop());

  const post = (path: string, body: unknown, signal?: AbortSignal): Promise<Response> =>
    fetch(`${server.ready.url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body), signal });

  /** Opens a stream, waits for its first token event, then cancels it: "cancelled", or what went wrong first. */
  async function cancelAfterFirstToken(): Promise<string> {
    const abort = new AbortController();
    const response = await post("/generate_stream", LONG, abort.signal);
    if (response.status !== 200) return `status ${response.status}: ${await response.text()}`;
    const reader = response.body!.getReader();
    let text = "";
    while (!text.includes("data:")) {
      const { done, value } = await reader.read();
      if (done) return `ended before a token: ${text}`;
      text += Buffer.from(value).toString("utf8");
    }
    abort.abort();
    await reader.cancel().catch(() => undefined);
    return text.includes('"token"') ? "cancelled" : `first event not a token: ${text}`;
  }

  /** Every stream's outcome, by kind. */
  async function storm(): Promise<Map<string, number>> {
    let started = 0;
    const outcomes = new Map<string, number>();
    await Promise.all(
      Array.from({ length: STORM_CLIENTS }, async () => {
        while (started < CANCELLED) {
          started++;
          const outcome = await cancelAfterFirstToken();
          outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
        }
      }),
    );
    return outcomes;
  }

  /** The sum of a metric's series whose line starts with `series`, on the router's or the shard's /metrics. */
  async function metric(series: string, from: "router" | "shard"): Promise<number> {
    const url = from === "router" ? server.ready.url : `http://127.0.0.1:${server.ready.shardMetricsPort}`;
    const text = await (await fetch(`${url}/metrics`)).text();
    return text
      .split("\n")
      .filter((line) => line.startsWith(series))
      .reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(" ") + 1)), 0);
  }
  const freeBlocks = (): Promise<number> => metric('loraserve_engine_kv_blocks{state="free"}', "shard");

  it(
    "fails no innocent request beside 2500 streams cancelled after their first token, loses no session and frees every KV block",
    async () => {
      const freeBefore = await freeBlocks();
      const started = Date.now();
      const [outcomes, innocent] = await Promise.all([
        storm(),
        Promise.all(
          Array.from({ length: INNOCENT }, async (_, i) => {
            // Spread over the storm, so that some run while the most cancels are in flight.
            await new Promise((resolve) => setTimeout(resolve, i * 50));
            const response = await post("/generate", INNOCENT_REQUEST);
            return { status: response.status, body: (await response.json()) as { generated_text?: string; details?: unknown } };
          }),
        ),
      ]);
      console.log(`${CANCELLED} streams cancelled in ${((Date.now() - started) / 1000).toFixed(1)} s`);
      expect([...outcomes]).toEqual([["cancelled", CANCELLED]]);
      const failed = innocent.filter(({ status, body }) => status !== 200 || typeof body.generated_text !== "string");
      expect(failed, JSON.stringify(failed.slice(0, 3))).toEqual([]);
      expect(await metric("loraserve_router_shard_sessions_lost_total", "router")).toBe(0);
      // Every cancelled request's blocks come back once the shard has heard the cancels.
      const deadline = Date.now() + 20_000;
      while ((await freeBlocks()) < freeBefore && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      expect(await freeBlocks()).toBe(freeBefore);
    },
    TEST_TIMEOUT_MS,
  );
});
