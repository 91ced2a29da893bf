// Starts `loraserve serve` as a user would: the built CLI as a child process, on a free loopback port; resolves
// once its ready line says the router is healthy and GET /health answers 200.
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { profilingFlags } from "../../common/profiling-flags.js";
import type { Checkpoint } from "./checkpoint.js";

/** The end of the server's stderr kept for the error message of a failed start or run. */
const STDERR_TAIL = 16_384;

export interface ServeOptions {
  /** The built dist/client/cli.js: the caller knows where it runs from (dist, or a test's sources). */
  cli: string;
  device: "cpu" | "cuda";
  checkpoint: Checkpoint;
  /** Passed on as they are, after the benchmark's own flags (e.g. --max-loras 32). */
  extraArgs: readonly string[];
}

export interface RunningServer {
  url: string;
  /** The shard's Prometheus metrics (its engine's step time among them). */
  shardMetricsUrl: string;
  pid: number;
  /** The end of what it wrote to stderr. */
  stderrTail(): string;
  /** SIGTERM, then waits for it to exit. */
  stop(): Promise<void>;
}

export function startServer({ cli, device, checkpoint, extraArgs }: ServeOptions): Promise<RunningServer> {
  const args = ["serve", "--port", "0", "--hostname", "127.0.0.1", "--device", device, "--model-id", checkpoint.modelDir, "--log-level", "warn"];
  if (checkpoint.adapters.length > 0) args.push("--lora-adapters", checkpoint.adapters.map(({ id, dir }) => `${id}=${dir}`).join(","));
  const child = spawn(process.execPath, [...profilingFlags(), cli, ...args, ...extraArgs], { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr!.setEncoding("utf8").on("data", (text: string) => (stderr = (stderr + text).slice(-STDERR_TAIL)));
  const exited = new Promise<string>((resolve) => child.once("exit", (code, signal) => resolve(`code ${code}, signal ${signal}`)));
  return new Promise((resolve, reject) => {
    createInterface({ input: child.stdout! }).on("line", (line) => {
      if (!line.startsWith("{")) return;
      const ready = JSON.parse(line) as { event?: string; url?: string; shardMetricsPort?: number };
      if (ready.event !== "ready" || ready.url === undefined) return;
      const url = ready.url;
      const server: RunningServer = {
        url,
        // The launcher puts the shard's metrics on loopback unless told otherwise (--metrics-hostname).
        shardMetricsUrl: `http://127.0.0.1:${ready.shardMetricsPort}/metrics`,
        pid: child.pid!,
        stderrTail: () => stderr,
        stop: async () => {
          child.kill("SIGTERM");
          await exited;
        },
      };
      void fetch(`${url}/health`).then(
        (response) => (response.status === 200 ? resolve(server) : server.stop().then(() => reject(new Error(`${url}/health answered ${response.status} after the ready line`)))),
        (error: unknown) => server.stop().then(() => reject(error)),
      );
    });
    void exited.then((how) => reject(new Error(`loraserve serve exited (${how}) before it was ready:\n${stderr}`)));
  });
}
