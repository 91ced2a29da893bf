// `--api-processes N`: the router as N processes on one port (node:cluster), for when one JS thread cannot carry the
// streams (in the n = 1000 serve bench on the H200 the router's thread was busy 0.81 of the load at 32 requests/s,
// the next limit after the engine). The router keeps no request state, so any process may take any connection.
// This primary process serves nothing: it starts the N (each one `loraserve router` with the same arguments), prints
// the ready line once all of them listen, passes SIGTERM and SIGINT on (each drains as a lone router would), sums
// their metrics for whichever one a scrape reaches, and if one dies stops the others and exits 1.
import cluster, { type Worker } from "node:cluster";
import { serveClusterMetrics } from "../telemetry/cluster-metrics.js";

/** What a process sends the primary once it listens. */
export interface ApiProcessReady {
  event: "api-process-ready";
  port: number;
}

const isReady = (message: unknown): message is ApiProcessReady =>
  typeof message === "object" && message !== null && (message as { event?: unknown }).event === "api-process-ready";

/** In a process the primary started: tells it the port this one listens on. */
export function reportReady(port: number): void {
  process.send!({ event: "api-process-ready", port } satisfies ApiProcessReady);
}

/** What a process still running this long after SIGTERM has beyond its grace period: it is killed. */
const KILL_AFTER_GRACE_MS = 5000;

/**
 * Runs the primary until every process has exited; sets process.exitCode 1 when one died on its own. A process
 * still draining `graceMs` + 5 s after the SIGTERM is killed, before the launcher's own SIGKILL of this one (10 s
 * past the grace) could leave it behind.
 */
export async function superviseApiProcesses(count: number, graceMs: number): Promise<void> {
  serveClusterMetrics();
  const workers: Worker[] = Array.from({ length: count }, () => cluster.fork());
  const alive = new Set(workers);
  const ports = new Set<number>();
  let readyCount = 0;
  let stopping = false;
  let failure: string | null = null;
  let killTimer: NodeJS.Timeout | undefined;
  const stopAll = (): void => {
    if (stopping) return;
    stopping = true;
    for (const worker of alive) worker.process.kill("SIGTERM");
    killTimer = setTimeout(() => {
      for (const worker of alive) worker.process.kill("SIGKILL");
    }, graceMs + KILL_AFTER_GRACE_MS);
  };
  // Installed for the whole run, so a second signal cannot kill the primary while the processes drain.
  process.on("SIGINT", stopAll);
  process.on("SIGTERM", stopAll);
  await new Promise<void>((resolve) => {
    for (const worker of workers) {
      worker.on("message", (message: unknown) => {
        if (!isReady(message)) return;
        ports.add(message.port);
        // One line, as a lone router prints it: every process shares the port (cluster hands out one listener).
        if (++readyCount === count && !stopping) {
          process.stdout.write(`${JSON.stringify({ event: "ready", port: message.port, pids: workers.map((w) => w.process.pid) })}\n`);
        }
      });
      worker.on("exit", (code, signal) => {
        alive.delete(worker);
        // Stopping, a clean exit is 0, or the SIGTERM itself when it came before the process could handle it.
        const clean = stopping && (code === 0 || signal === "SIGTERM");
        if (!clean) failure ??= `router process ${worker.process.pid} exited with ${signal ?? `code ${code}`}`;
        stopAll();
        if (alive.size === 0) {
          clearTimeout(killTimer);
          resolve();
        }
      });
    }
  });
  if (ports.size > 1) failure ??= `the router processes listened on different ports: ${[...ports].join(", ")}`;
  if (failure !== null) {
    process.stderr.write(`loraserve router: ${failure}\n`);
    process.exitCode = 1;
  }
}
