// `loraserve router`: serves the public API and forwards every request to the shard groups.
import { parseRouterOptions } from "./options.js";
import { startRouter } from "./server.js";

export async function routerMain(args: string[]): Promise<void> {
  const router = await startRouter(parseRouterOptions(args, process.env));
  // One machine-readable line: the launcher (and tests) learn the port from it, whatever --port was.
  process.stdout.write(`${JSON.stringify({ event: "ready", port: router.port })}\n`);
  await new Promise<void>((resolve) => {
    let stopping = false;
    // Handlers stay installed while closing, so a second signal cannot kill the process half-way.
    const stop = (): void => {
      if (stopping) return;
      stopping = true;
      void router.close().then(resolve);
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
}
