// One server process started by the launcher: `loraserve <command>` under the same Node binary. It is ready
// when it prints its {"event":"ready","port":N} line (a shard adds "metricsPort" when it serves metrics; a
// follower rank, which serves nothing, says port 0); every other line of its stdout is passed on, and its
// stderr goes straight to ours.
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { flagOrEnv } from "../common/flag-or-env.js";
import { parseInteger } from "../common/parse-integer.js";
import { profilingFlags } from "../common/profiling-flags.js";
import { youngGenerationFlags } from "../common/young-generation.js";
import { DEFAULT_SHUTDOWN_GRACE_SECONDS } from "../router/options.js";

const CLI = fileURLToPath(new URL("./cli.js", import.meta.url));
/** Beyond its drain's grace period: how long a stopped process may take to end what is left and close. */
const STOP_MARGIN_MS = 10_000;

/** How long a stopped process may take before it is killed: its own grace period (flag or variable) and the margin. */
function stopGraceMs(args: readonly string[], env: NodeJS.ProcessEnv): number {
  const flag = "shutdown-grace-seconds";
  const at = args.findIndex((arg) => arg === `--${flag}` || arg.startsWith(`--${flag}=`));
  const given = at < 0 ? undefined : args[at]!.includes("=") ? args[at]!.split("=")[1] : args[at + 1];
  const seconds = parseInteger(flagOrEnv(flag, given, env), 0) ?? DEFAULT_SHUTDOWN_GRACE_SECONDS;
  return seconds * 1000 + STOP_MARGIN_MS;
}

export interface ServerProcess {
  name: string;
  pid: number;
  /** The ready line; rejects if the process exits first. */
  ready: Promise<ReadyLine>;
  /** Resolves with a description of how the process ended. */
  exited: Promise<string>;
  stop(): Promise<void>;
}

export interface ReadyLine {
  port: number;
  metricsPort?: number;
}

function readyLine(line: string): ReadyLine | undefined {
  try {
    const event = JSON.parse(line) as { event?: unknown; port?: unknown; metricsPort?: unknown };
    if (event.event !== "ready" || typeof event.port !== "number") return undefined;
    return typeof event.metricsPort === "number" ? { port: event.port, metricsPort: event.metricsPort } : { port: event.port };
  } catch {
    return undefined;
  }
}

export function startServerProcess(name: string, args: string[]): ServerProcess {
  // Its own process group: a terminal's Ctrl-C reaches the launcher alone, which then stops each child once.
  // libuv's pool (4 threads by default) runs the engine's steps, and with two steps in flight one of them waits
  // there for the other; adapter reads, their non-finite scans and slot loads share it. 8 keeps a step from
  // queueing behind them. A size the user set wins.
  const env = { ...process.env, UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE ?? "8" };
  const child: ChildProcess = spawn(process.execPath, [...youngGenerationFlags(), ...profilingFlags(), CLI, ...args], { stdio: ["ignore", "pipe", "inherit"], detached: true, env });
  const exited = new Promise<string>((resolve) =>
    child.once("exit", (code, signal) => resolve(signal ? `${name} was killed by ${signal}` : `${name} exited with code ${code}`)),
  );
  const ready = new Promise<ReadyLine>((resolve, reject) => {
    let isReady = false;
    createInterface({ input: child.stdout! }).on("line", (line) => {
      const event = isReady ? undefined : readyLine(line);
      if (event === undefined) {
        process.stdout.write(`${line}\n`);
      } else {
        isReady = true;
        resolve(event);
      }
    });
    void exited.then((how) => reject(new Error(`${how} before it was ready`)));
  });
  // A failure to start is reported through `ready`; this keeps it from also counting as unhandled.
  ready.catch(() => undefined);
  return {
    name,
    pid: child.pid!,
    ready,
    exited,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), stopGraceMs(args, process.env));
      await exited;
      clearTimeout(timer);
    },
  };
}
