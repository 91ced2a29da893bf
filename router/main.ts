// `loraserve router`: serves the public API and forwards every request to the shard groups. SIGTERM or SIGINT
// drains it (router/drain.ts: requests in flight finish within --shutdown-grace-seconds), then it exits 0. With
// --api-processes N this process only supervises N that serve (router/api-processes.ts).
import cluster from "node:cluster";
import { Logger } from "../telemetry/logger.js";
import { DEFAULT_TELEMETRY } from "../telemetry/options.js";
import { startOpenTelemetry } from "../telemetry/otel.js";
import { reportReady, superviseApiProcesses } from "./api-processes.js";
import { DEFAULT_SHUTDOWN_GRACE_SECONDS, parseRouterOptions } from "./options.js";
import { startRouter } from "./server.js";

export async function routerMain(args: string[]): Promise<void> {
  const options = parseRouterOptions(args, process.env);
  const oneOfSeveral = (options.apiProcesses ?? 1) > 1;
  if (oneOfSeveral && cluster.isPrimary) {
    return superviseApiProcesses(options.apiProcesses!, options.shutdownGraceMs ?? DEFAULT_SHUTDOWN_GRACE_SECONDS * 1000);
  }
  // Before the router exists: its tracer and meters are taken from the SDK this starts.
  const openTelemetry = startOpenTelemetry("loraserve-router", new Logger("router", options.logLevel ?? DEFAULT_TELEMETRY.logLevel));
  const router = await startRouter(options);
  // One machine-readable line: the launcher (and tests) learn the port from it, whatever --port was. One of several
  // processes tells the primary, which prints the line once all of them listen.
  if (oneOfSeveral) reportReady(router.port);
  else process.stdout.write(`${JSON.stringify({ event: "ready", port: router.port })}\n`);
  await new Promise<void>((resolve) => {
    let stopping = false;
    // Handlers stay installed while draining and closing, so a second signal cannot kill the process half-way.
    const stop = (): void => {
      if (stopping) return;
      stopping = true;
      void router
        .drain(options.shutdownGraceMs ?? DEFAULT_SHUTDOWN_GRACE_SECONDS * 1000)
        .then(() => router.close())
        .then(() => openTelemetry?.shutdown())
        .then(resolve);
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
    // The primary gone (killed), nothing would stop this process: it drains as if signalled.
    if (oneOfSeveral) process.on("disconnect", stop);
  });
  // The channel to the primary would keep this process alive once it has stopped serving.
  if (oneOfSeveral && process.connected) process.disconnect();
}
