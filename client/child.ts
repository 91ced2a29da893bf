// One server process started by the launcher: `loraserve <command>` under the same Node binary. It is ready
// when it prints its {"event":"ready","port":N} line (a shard adds "metricsPort" when it serves metrics; a
// follower rank, which serves nothing, says port 0); every other line of its stdout is passed on, and its
// stderr goes straight to ours.
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const CLI = fileURLToPath(new URL("./cli.js", import.meta.url));
/** How long a stopped process may take to close its connections before it is killed. */
const STOP_GRACE_MS = 10_000;

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
  const child: ChildProcess = spawn(process.execPath, [CLI, ...args], { stdio: ["ignore", "pipe", "inherit"], detached: true });
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
      const timer = setTimeout(() => child.kill("SIGKILL"), STOP_GRACE_MS);
      await exited;
      clearTimeout(timer);
    },
  };
}
