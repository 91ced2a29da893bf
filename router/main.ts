// `loraserve router`: serves the public API and forwards every request to the shard groups.
import { Logger } from "../telemetry/logger.js";
import { DEFAULT_TELEMETRY } from "../telemetry/options.js";
import { startOpenTelemetry } from "../telemetry/otel.js";
import { parseRouterOptions } from "./options.js";
import { startRouter } from "./server.js";

export async function routerMain(args: string[]): Promise<void> {
  const options = parseRouterOptions(args, process.env);
  // Before the router exists: its tracer and meters are taken from the SDK this starts.
  const openTelemetry = startOpenTelemetry("loraserve-router", new Logger("router", options.logLevel ?? DEFAULT_TELEMETRY.logLevel));
  const router = await startRouter(options);
  // One machine-readable line: the launcher (and tests) learn the port from it, whatever --port was.
  process.stdout.write(`${JSON.stringify({ event: "ready", port: router.port })}\n`);
  await new Promise<void>((resolve) => {
    let stopping = false;
    // Handlers stay installed while closing, so a second signal cannot kill the process half-way.
    const stop = (): void => {
      if (stopping) return;
      stopping = true;
      void router
        .close()
        .then(() => openTelemetry?.shutdown())
        .then(resolve);
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
}
