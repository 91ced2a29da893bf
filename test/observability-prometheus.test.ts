// Prometheus metrics as an operator gets them: Debian's real `prometheus` scrapes `loraserve serve` (the
// router's /metrics on the public port and the shard's metrics port) every second during a mixed-adapter load,
// and its HTTP API must report per-adapter request and token counts equal to what this test sent, filled
// time-to-first-token buckets, engine series, and no more adapter labels than --metrics-max-adapters allows.
// Every query of the Grafana dashboard (deploy/grafana/loraserve.json) must run on what was scraped.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { fixtureSets, PROJECT_ROOT } from "./helpers/fixture-sets.js";
import { eosIds } from "./helpers/greedy-reference.js";
import { adapterFlag, serve, unusedPort, type ServeReady, type Started } from "./helpers/process.js";

const START_TIMEOUT_MS = 60_000;
const PROMETHEUS = "/usr/bin/prometheus";
const hasPrometheus = spawnSync(PROMETHEUS, ["--version"]).status === 0;
const set = fixtureSets()[0]!;
const MAX_ADAPTERS = 2;

interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

/** One request as sent: the adapter ("" for the base model), the prompt and how many tokens it may generate. */
interface Sent {
  adapter: string;
  prompt: number;
  maxNewTokens: number;
}

describe.runIf(hasPrometheus)("Prometheus scraping loraserve serve", () => {
  const adapterIds = Object.keys(set.refs.adapters);
  // Requests per adapter, busiest first: with two labels the two busiest keep theirs, the third is `other`.
  const perAdapter = new Map<string, number>([
    [adapterIds[0]!, 6],
    [adapterIds[1]!, 4],
    [adapterIds[2]!, 2],
    ["", 1],
  ]);
  const labelOf = (adapter: string): string => (adapter === "" ? "base" : [...perAdapter.keys()].indexOf(adapter) < MAX_ADAPTERS ? adapter : "other");
  const prompts = set.refs.prompts.flatMap((p, index) => (p.text === null ? [] : [index]));
  const eos = eosIds(set.modelDir);
  const sent: Sent[] = [];
  let server: Started<ServeReady>;
  let prometheus: ChildProcess;
  let prometheusUrl: string;
  let dir: string;

  /** Tokens the model generates: max_new_tokens, or fewer when the reference's greedy text reaches EOS first. */
  function outputTokens({ adapter, prompt, maxNewTokens }: Sent): number {
    const ids = set.refs.variants[adapter === "" ? "base" : adapter]!.find((v) => v.prompt === prompt)!.greedy_ids.slice(0, maxNewTokens);
    const eosAt = ids.findIndex((id) => eos.has(id));
    return eosAt < 0 ? ids.length : eosAt + 1;
  }

  async function query(promql: string): Promise<Sample[]> {
    const response = await fetch(`${prometheusUrl}/api/v1/query?query=${encodeURIComponent(promql)}`);
    const body = (await response.json()) as { status: string; data: { result: Sample[] } };
    expect(body.status).toBe("success");
    return body.data.result;
  }

  /** label value → number, for a query whose series differ by `label`. */
  async function byLabel(promql: string, label: string): Promise<Record<string, number>> {
    return Object.fromEntries((await query(promql)).map((s) => [s.metric[label] ?? "", Number(s.value[1])]));
  }

  async function generate(request: Sent): Promise<void> {
    const response = await fetch(`${server.ready.url}/generate`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ inputs: set.refs.prompts[request.prompt]!.text, parameters: { adapter_id: request.adapter, max_new_tokens: request.maxNewTokens } }),
    });
    expect(response.status).toBe(200);
    sent.push(request);
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "loraserve-prometheus-"));
    server = await serve(["--model-id", set.modelDir, ...adapterFlag(set.adaptersDir, adapterIds), "--threads", "2", "--metrics-max-adapters", String(MAX_ADAPTERS)]);
    const port = await unusedPort();
    prometheusUrl = `http://127.0.0.1:${port}`;
    writeFileSync(
      join(dir, "prometheus.yml"),
      [
        "global: {scrape_interval: 1s, scrape_timeout: 900ms}",
        "scrape_configs:",
        `  - {job_name: router, static_configs: [{targets: ['127.0.0.1:${server.ready.port}']}]}`,
        `  - {job_name: shard, static_configs: [{targets: ['127.0.0.1:${server.ready.shardMetricsPort}']}]}`,
      ].join("\n"),
    );
    prometheus = spawn(
      PROMETHEUS,
      [`--config.file=${join(dir, "prometheus.yml")}`, `--storage.tsdb.path=${join(dir, "data")}`, `--web.listen-address=127.0.0.1:${port}`],
      { stdio: "ignore" },
    );
    await vi.waitFor(async () => expect((await fetch(`${prometheusUrl}/-/ready`)).status).toBe(200), { timeout: 20_000, interval: 200 });

    // The first request of each adapter goes alone, busiest first, so that the labels are handed out in that
    // order; the rest run concurrently, mixed in one batch.
    const plan: Sent[] = [...perAdapter].flatMap(([adapter, count]) =>
      Array.from({ length: count }, (_, i) => ({ adapter, prompt: prompts[i % prompts.length]!, maxNewTokens: 3 + (i % 4) })),
    );
    const firsts = [...perAdapter.keys()].map((adapter) => plan.find((r) => r.adapter === adapter)!);
    for (const request of firsts) await generate(request);
    await Promise.all(plan.filter((r) => !firsts.includes(r)).map(generate));
    const total = plan.length;
    await vi.waitFor(async () => expect(Number((await query("sum(loraserve_requests_total)"))[0]?.value[1])).toBe(total), { timeout: 20_000, interval: 250 });
    await vi.waitFor(async () => expect(Number((await query("sum(loraserve_engine_batch_size_count)"))[0]?.value[1])).toBeGreaterThan(0), {
      timeout: 20_000,
      interval: 250,
    });
  }, START_TIMEOUT_MS);

  afterAll(async () => {
    prometheus?.kill("SIGTERM");
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("scrapes both targets", async () => {
    expect(await byLabel("up", "job")).toEqual({ router: 1, shard: 1 });
  });

  it("counts requests, prompt tokens and generated tokens per adapter label as sent", async () => {
    const expected = { requests: {} as Record<string, number>, input: {} as Record<string, number>, output: {} as Record<string, number> };
    for (const request of sent) {
      const label = labelOf(request.adapter);
      expected.requests[label] = (expected.requests[label] ?? 0) + 1;
      expected.input[label] = (expected.input[label] ?? 0) + set.refs.prompts[request.prompt]!.ids.length;
      expected.output[label] = (expected.output[label] ?? 0) + outputTokens(request);
    }
    expect(await byLabel('sum by (adapter) (loraserve_requests_total{outcome="ok"})', "adapter")).toEqual(expected.requests);
    expect(await byLabel("sum by (adapter) (loraserve_input_tokens_total)", "adapter")).toEqual(expected.input);
    expect(await byLabel("sum by (adapter) (loraserve_output_tokens_total)", "adapter")).toEqual(expected.output);
  });

  it("fills the time-to-first-token histogram of every label", async () => {
    const counts = await byLabel("sum by (adapter) (loraserve_time_to_first_token_seconds_count)", "adapter");
    expect(counts).toEqual(await byLabel("sum by (adapter) (loraserve_requests_total)", "adapter"));
    // Every request's first token came within the largest finite bucket (120 s), and it is cumulative.
    expect(await byLabel('sum by (adapter) (loraserve_time_to_first_token_seconds_bucket{le="120"})', "adapter")).toEqual(counts);
    const quantiles = await byLabel("histogram_quantile(0.5, sum by (adapter, le) (loraserve_time_to_first_token_seconds_bucket))", "adapter");
    for (const [adapter, seconds] of Object.entries(quantiles)) expect(seconds, adapter).toBeGreaterThan(0);
  });

  it("keeps the adapter label to the busiest --metrics-max-adapters plus base and other", async () => {
    const labels = (await query("count by (adapter) (loraserve_requests_total)")).map((s) => s.metric.adapter).sort();
    expect(labels).toEqual([...[...perAdapter.keys()].slice(0, MAX_ADAPTERS), "base", "other"].sort());
    const resident = await byLabel("loraserve_adapter_resident", "adapter");
    expect(Object.keys(resident).length).toBeLessThanOrEqual(MAX_ADAPTERS + 1);
    expect(Object.values(resident).reduce((a, b) => a + b, 0)).toBe(adapterIds.length);
  });

  it("reports the engine: steps, batch sizes and a KV cache whose used and free blocks add up", async () => {
    const blocks = await byLabel("loraserve_engine_kv_blocks", "state");
    const groupBlocks = await byLabel("loraserve_shard_group_kv_blocks", "state");
    expect(blocks.used! + blocks.free!).toBe(groupBlocks.used! + groupBlocks.free!);
    const steps = Number((await query("loraserve_engine_step_duration_seconds_count"))[0]!.value[1]);
    const batched = Number((await query("loraserve_engine_batch_size_sum"))[0]!.value[1]);
    // Every generated token came out of one sequence's slot in some step.
    const generated = sent.reduce((sum, request) => sum + outputTokens(request), 0);
    expect(batched).toBeGreaterThanOrEqual(generated);
    expect(steps).toBeGreaterThan(0);
  });

  it("answers every query of the Grafana dashboard, on metrics it scraped", async () => {
    const dashboard = JSON.parse(readFileSync(join(PROJECT_ROOT, "deploy", "grafana", "loraserve.json"), "utf8")) as {
      panels: { targets?: { expr: string }[] }[];
    };
    const exprs = dashboard.panels.flatMap((panel) => panel.targets ?? []).map((target) => target.expr);
    expect(exprs.length).toBeGreaterThan(10);
    const scraped = new Set(((await (await fetch(`${prometheusUrl}/api/v1/label/__name__/values`)).json()) as { data: string[] }).data);
    // No adapter was evicted in this run, so that counter has no series yet.
    const notYet = new Set(["loraserve_adapter_evictions_total"]);
    for (const expr of exprs) {
      await query(expr.replaceAll("$adapter", ".*").replaceAll("$__rate_interval", "1m"));
      for (const name of expr.match(/loraserve_[a-z_]+/g) ?? []) {
        if (!notYet.has(name)) expect(scraped.has(name), `${name} in ${expr}`).toBe(true);
      }
    }
  });
});

if (!hasPrometheus) {
  it.skip(`Prometheus scraping (SKIPPED: ${PROMETHEUS} missing; apt-get install prometheus)`, () => {});
}
