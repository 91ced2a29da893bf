#!/usr/bin/env node
// The `loraserve` command: one binary for the launcher, the two server processes and a small client.
// Each subcommand is imported only when chosen, so `generate` never loads the native engine.
import { Code, ConnectError } from "@connectrpc/connect";

const USAGE = `loraserve <command> [options]

Commands:
  serve      start a shard and a router on this host (the usual way to run loraserve)
  router     run the public API alone, in front of shards started elsewhere
  shard      run one shard (model, adapters, engine) alone
  generate   stream a completion from a running server

Run \`loraserve <command> --help\` for a command's options.`;

type Main = (args: string[]) => Promise<void>;

/** A command without `usage` here reads --help itself. */
const COMMANDS: Record<string, () => Promise<{ main: Main; usage?: string }>> = {
  serve: async () => {
    const m = await import("./launcher.js");
    return { main: m.launcherMain, usage: m.SERVE_USAGE };
  },
  router: async () => {
    const m = await import("../router/main.js");
    const { ROUTER_USAGE } = await import("../router/options.js");
    return { main: m.routerMain, usage: ROUTER_USAGE };
  },
  shard: async () => {
    const m = await import("../shard/main.js");
    return { main: m.shardMain };
  },
  generate: async () => {
    const m = await import("./generate.js");
    return { main: m.generateMain, usage: m.GENERATE_USAGE };
  },
};

async function run(argv: string[]): Promise<void> {
  const [name, ...args] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const load = COMMANDS[name];
  if (!load) throw new Error(`unknown command "${name}"\n\n${USAGE}`);
  const command = await load();
  if (command.usage !== undefined && (args.includes("--help") || args.includes("-h"))) {
    process.stdout.write(`${command.usage}\n`);
    return;
  }
  await command.main(args);
}

try {
  await run(process.argv.slice(2));
} catch (err) {
  const message = err instanceof ConnectError ? `${Code[err.code]}: ${err.rawMessage}` : err instanceof Error ? err.message : String(err);
  process.stderr.write(`loraserve: ${message}\n`);
  process.exitCode = 1;
}
