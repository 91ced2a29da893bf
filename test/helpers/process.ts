// Runs the built `loraserve` CLI (dist/client/cli.js) as real processes for the end-to-end tests: start one,
// wait for its JSON ready line, stop it, or run one to its exit. `npm run build` must have run first.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { PROJECT_ROOT } from "./fixture-sets.js";

export const CLI = join(PROJECT_ROOT, "dist", "client", "cli.js");

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface Started<Ready> {
  ready: Ready;
  pid: number;
  /** Everything the process wrote to stderr so far. */
  stderr(): string;
  exited: Promise<Exit>;
  /** Sends the signal (SIGTERM by default) and resolves with how the process ended. */
  stop(signal?: NodeJS.Signals): Promise<Exit>;
}

/** Processes still running when the test worker exits are killed, so a failed test leaves no server behind. */
const running = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

function spawnCli(args: string[], env?: NodeJS.ProcessEnv, nodeFlags: readonly string[] = []): ChildProcess {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` before the end-to-end tests`);
  const child = spawn(process.execPath, [...nodeFlags, CLI, ...args], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } });
  running.add(child);
  child.once("exit", () => running.delete(child));
  return child;
}

function exitOf(child: ChildProcess): Promise<Exit> {
  return new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
}

/**
 * Starts `loraserve ARGS` (under Node's `nodeFlags`) and resolves once it prints a {"event":"ready",...} line;
 * rejects if it exits first.
 */
export function startCli<Ready extends { event: "ready" }>(args: string[], env?: NodeJS.ProcessEnv, nodeFlags: readonly string[] = []): Promise<Started<Ready>> {
  const child = spawnCli(args, env, nodeFlags);
  const exited = exitOf(child);
  let stderr = "";
  child.stderr!.setEncoding("utf8").on("data", (text: string) => (stderr += text));
  return new Promise((resolve, reject) => {
    createInterface({ input: child.stdout! }).on("line", (line) => {
      if (!line.startsWith("{")) return;
      const event = JSON.parse(line) as Ready;
      if (event.event !== "ready") return;
      resolve({
        ready: event,
        pid: child.pid!,
        stderr: () => stderr,
        exited,
        stop: (signal = "SIGTERM") => {
          child.kill(signal);
          return exited;
        },
      });
    });
    void exited.then(({ code, signal }) =>
      reject(new Error(`loraserve ${args.join(" ")} exited (code ${code}, signal ${signal}) before it was ready:\n${stderr}`)),
    );
  });
}

/** Runs `loraserve ARGS` to its exit. */
export async function runCli(args: string[], env?: NodeJS.ProcessEnv): Promise<Exit & { stdout: string; stderr: string }> {
  const child = spawnCli(args, env);
  const exited = exitOf(child);
  let stdout = "";
  let stderr = "";
  child.stdout!.setEncoding("utf8").on("data", (text: string) => (stdout += text));
  child.stderr!.setEncoding("utf8").on("data", (text: string) => (stderr += text));
  // 'exit' can come before the pipes are drained; 'close' waits for both.
  await new Promise((resolve) => child.once("close", resolve));
  return { ...(await exited), stdout, stderr };
}

/** The ready line of `loraserve serve`. */
export interface ServeReady {
  event: "ready";
  url: string;
  port: number;
  /** The shard's Prometheus metrics port. */
  shardMetricsPort: number;
  /** The shard leader's internal ShardService port (it answers only with the run's token). */
  shardPort: number;
  /** `ranks`: every shard process, the leader (`shard`) first; one unless --num-shard. */
  pids: { shard: number; router: number; ranks: number[] };
}

/**
 * `loraserve serve --port 0 ARGS`, on the CPU engine unless ARGS name a device: the float32 reference tolerances
 * are the CPU engine's, and serve would take the GPU where there is one (test/cuda-serve.test.ts runs that).
 */
export function serve(args: string[]): Promise<Started<ServeReady>> {
  const device = args.includes("--device") ? [] : ["--device", "cpu"];
  return startCli<ServeReady>(["serve", "--port", "0", ...device, ...args]);
}

/** `--lora-adapters` for every adapter of a fixture set. */
export function adapterFlag(adaptersDir: string, ids: string[]): string[] {
  return ids.length === 0 ? [] : ["--lora-adapters", ids.map((id) => `${id}=${join(adaptersDir, id)}`).join(",")];
}

/** True while a process with this pid exists. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A port nothing listens on right now (for a server that must be started later on a known port). */
export async function unusedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
