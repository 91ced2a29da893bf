// What observability costs in generated tokens per second: `loraserve serve` on a generated model of a few
// tens of MB under a mixed-adapter streaming load, alternately with OpenTelemetry off (no OTEL_* variable,
// nothing scraped) and on (traces and metrics exported over OTLP/HTTP to a local receiver every second, and
// both /metrics endpoints scraped every second), several rounds in one run, the order flipped each round
// so that drift in the machine's speed falls on both sides. Tokens/s moves with whatever else the machine
// runs, so the CPU time the router and the shard spend per generated token (from /proc, Linux) is reported
// too: it counts only their own work. Prometheus metrics are recorded in both: they are per request and per
// step, never per token, and cannot be turned off.
// Run: npm run build && node dist/bench/observability-cost.js
import { spawn } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { GenerateService } from "../gen/loraserve/v1/generate_pb.js";
import { ProgressDisplay } from "../telemetry/progress.js";
import { CPU_BENCH_SHAPE, writeSyntheticAdapter, writeSyntheticModel, type SyntheticModelShape } from "./synthetic-model.js";

const SHAPE: SyntheticModelShape = {
  ...CPU_BENCH_SHAPE,
  // The tokenizer comes from fixtures/demo (512 tokens): every id the model draws must be one it can spell.
  vocabSize: 512,
};
const ADAPTERS = 4;
const CLIENTS = 8;
const REQUESTS_PER_CLIENT = 4;
const NEW_TOKENS = 64;
const ROUNDS = 4;
const CLI = fileURLToPath(new URL("../client/cli.js", import.meta.url));
const DEMO_TOKENIZER = fileURLToPath(new URL("../../fixtures/demo/model/", import.meta.url));

type Mode = "off" | "on";

interface Serving {
  url: string;
  shardMetricsPort: number;
  pids: { shard: number; router: number };
  stop(): Promise<void>;
}

interface Run {
  tokensPerSecond: number;
  /** CPU milliseconds (user + system) per generated token, of each server process. */
  cpuMsPerToken: { router: number; shard: number };
}

/** CPU seconds a process has used: utime + stime from /proc/PID/stat, in clock ticks of 1/100 s. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** An OTLP/HTTP endpoint that reads and accepts every export (a collector's cost stays out of the measurement). */
async function startSink(): Promise<{ url: string; close(): void }> {
  const server: Server = createServer((request, response) => {
    request.resume();
    request.on("end", () => response.end());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}`, close: () => server.close() };
}

function startServe(modelDir: string, adapters: string, env: NodeJS.ProcessEnv): Promise<Serving> {
  const child = spawn(process.execPath, [CLI, "serve", "--port", "0", "--model-id", modelDir, "--lora-adapters", adapters, "--log-level", "warn"], {
    // Start-up progress and logs would bury the table; a failed start shows as "exited before it was ready".
    stdio: ["ignore", "pipe", "ignore"],
    env,
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return new Promise((resolve, reject) => {
    createInterface({ input: child.stdout! }).on("line", (line) => {
      const ready = JSON.parse(line) as { event?: string; url: string; shardMetricsPort: number; pids: Serving["pids"] };
      if (ready.event !== "ready") return;
      resolve({
        url: ready.url,
        shardMetricsPort: ready.shardMetricsPort,
        pids: ready.pids,
        stop: async () => {
          child.kill("SIGTERM");
          await exited;
        },
      });
    });
    void exited.then(() => reject(new Error("loraserve serve exited before it was ready")));
  });
}

/** CLIENTS concurrent streams, each running REQUESTS_PER_CLIENT requests in turn: tokens/s and CPU per token. */
async function load(serving: Serving, adapterIds: string[]): Promise<Run> {
  const { url, pids } = serving;
  const session = new Http2SessionManager(url);
  const client = createClient(GenerateService, createGrpcTransport({ baseUrl: url, sessionManager: session }));
  const stream = async (adapterId: string, prompt: string): Promise<number> => {
    let tokens = 0;
    for await (const message of client.generateStream({ inputs: prompt, adapterId, parameters: { maxNewTokens: NEW_TOKENS } })) {
      if (message.token) tokens++;
    }
    return tokens;
  };
  // One request first: the engine's thread pools and the pages of the weights are warm before timing.
  await stream("", "warm up");
  const startedAt = performance.now();
  const cpuBefore = { router: cpuSeconds(pids.router), shard: cpuSeconds(pids.shard) };
  const counts = await Promise.all(
    Array.from({ length: CLIENTS }, async (_, c) => {
      let tokens = 0;
      for (let r = 0; r < REQUESTS_PER_CLIENT; r++) tokens += await stream(["", ...adapterIds][(c + r) % (adapterIds.length + 1)]!, `request ${c} ${r}: tell me`);
      return tokens;
    }),
  );
  const seconds = (performance.now() - startedAt) / 1000;
  const tokens = counts.reduce((a, b) => a + b, 0);
  const cpuMsPerToken = {
    router: ((cpuSeconds(pids.router) - cpuBefore.router) * 1000) / tokens,
    shard: ((cpuSeconds(pids.shard) - cpuBefore.shard) * 1000) / tokens,
  };
  session.abort();
  return { tokensPerSecond: tokens / seconds, cpuMsPerToken };
}

/** Scrapes both /metrics endpoints every second, as a Prometheus would. */
function scrapeEverySecond(serving: Serving): () => void {
  const urls = [`${serving.url}/metrics`, `http://127.0.0.1:${serving.shardMetricsPort}/metrics`];
  const timer = setInterval(() => {
    for (const url of urls) void fetch(url).then((r) => r.text(), () => "");
  }, 1000);
  return () => clearInterval(timer);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "loraserve-obs-bench-"));
  const sink = await startSink();
  const progress = new ProgressDisplay();
  try {
    const modelDir = join(dir, "model");
    const fileBytes = writeSyntheticModel(modelDir, SHAPE);
    for (const file of ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]) copyFileSync(join(DEMO_TOKENIZER, file), join(modelDir, file));
    const adapterIds = Array.from({ length: ADAPTERS }, (_, i) => `adapter-${i}`);
    for (const [i, id] of adapterIds.entries()) writeSyntheticAdapter(join(dir, id), SHAPE, { rank: i % 2 === 0 ? 8 : 16, seed: 100 + i });
    const adapters = adapterIds.map((id) => `${id}=${join(dir, id)}`).join(",");
    const base = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("OTEL_")));
    const envs: Record<Mode, NodeJS.ProcessEnv> = {
      off: base,
      on: { ...base, OTEL_EXPORTER_OTLP_ENDPOINT: sink.url, OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf", OTEL_METRIC_EXPORT_INTERVAL: "1000" },
    };
    const results: Record<Mode, Run[]> = { off: [], on: [] };
    const runs = ROUNDS * 2;
    progress.update("benchmark runs", 0, runs);
    for (let round = 0; round < ROUNDS; round++) {
      const order: Mode[] = round % 2 === 0 ? ["off", "on"] : ["on", "off"];
      for (const mode of order) {
        const serving = await startServe(modelDir, adapters, envs[mode]);
        const stopScraping = mode === "on" ? scrapeEverySecond(serving) : () => undefined;
        try {
          results[mode].push(await load(serving, adapterIds));
        } finally {
          stopScraping();
          await serving.stop();
        }
        progress.update("benchmark runs", results.off.length + results.on.length, runs);
      }
    }
    const rate = (mode: Mode): number[] => results[mode].map((run) => run.tokensPerSecond);
    const cpu = (mode: Mode, process: "router" | "shard"): number => median(results[mode].map((run) => run.cpuMsPerToken[process]));
    const off = median(rate("off"));
    const on = median(rate("on"));
    // Each round's two runs are neighbours in time: their ratio is the least disturbed by the machine's drift.
    const pairedLoss = median(rate("off").map((v, i) => (v - rate("on")[i]!) / v));
    const cpuOff = cpu("off", "router") + cpu("off", "shard");
    const cpuOn = cpu("on", "router") + cpu("on", "shard");
    const rows: [string, string][] = [
      ["machine", `${availableParallelism()} cores`],
      ["model", `${SHAPE.numLayers} layers, hidden ${SHAPE.hiddenSize}, ${(fileBytes / 2 ** 20).toFixed(1)} MiB bf16; ${ADAPTERS} adapters`],
      ["load", `${CLIENTS} concurrent streams (base + adapters mixed), ${REQUESTS_PER_CLIENT} x ${NEW_TOKENS} tokens each`],
      ["off: tokens/s per round", rate("off").map((v) => v.toFixed(1)).join(", ")],
      ["on: tokens/s per round", rate("on").map((v) => v.toFixed(1)).join(", ")],
      ["median off / on", `${off.toFixed(1)} / ${on.toFixed(1)} tokens/s`],
      ["cost of observability", `${(pairedLoss * 100).toFixed(2)} % of tokens/s, median of the rounds' (off - on) / off (goal: under 1 %)`],
      ["CPU ms per token off", `router ${cpu("off", "router").toFixed(3)}, shard ${cpu("off", "shard").toFixed(3)}`],
      ["CPU ms per token on", `router ${cpu("on", "router").toFixed(3)}, shard ${cpu("on", "shard").toFixed(3)}`],
      ["cost in CPU time", `${(((cpuOn - cpuOff) / cpuOff) * 100).toFixed(2)} % more CPU per token (router + shard, medians)`],
    ];
    const width = Math.max(...rows.map(([k]) => k.length));
    for (const [k, v] of rows) console.log(`${k.padEnd(width)}  ${v}`);
  } finally {
    progress.close();
    sink.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
