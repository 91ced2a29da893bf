// `loraserve serve`: starts a shard (with --num-shard N, every rank of its tensor-parallel group) and a router as
// separate processes, waits until the router is healthy, and stops them all on SIGINT/SIGTERM (or stops the rest
// when one dies). It holds no serving logic. Unless told one, it makes the internal link's token (run-token.ts).
import { createServer, type AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { isSet } from "../common/flag-or-env.js";
import { parseRouterOptions, ROUTER_FLAGS } from "../router/options.js";
import { DEFAULT_TELEMETRY, TELEMETRY_FLAGS } from "../telemetry/options.js";
import { startServerProcess, type ServerProcess } from "./child.js";
import { routerHealth } from "./router-health.js";
import { makeRunToken } from "./run-token.js";
import { planShardGroup } from "./shard-group.js";

export const SERVE_USAGE = `loraserve serve --model-id DIR [--lora-adapters ID=DIR,...] [--port N] [options]

  Each flag but --hostname may instead be set by its environment variable, named after it: --max-total-tokens N
  is MAX_TOTAL_TOKENS=N. The flag wins when both are set; both processes inherit the environment.

  --model-id DIR         the base model: config.json, *.safetensors, tokenizer.json
  --lora-adapters LIST   PEFT adapters as id=dir, comma-separated
  --adapter-root DIR     where adapters are found by id on first use; repeatable (ADAPTER_ROOT: colon-separated)
  --admin-token TOKEN    lets callers with \`authorization: Bearer TOKEN\` load and unload adapters
                         (ADMIN_TOKEN; the former LORASERVE_ADMIN_TOKEN is still read)
  --port N               public port (default 3000; 0 picks a free one)
  --hostname H           address to listen on (default 0.0.0.0; not read from HOSTNAME, the machine's name)
  --max-body-bytes N     largest request body the router accepts
  --api-processes N      router processes serving --port (default 1): more when one thread cannot carry the
                         streams; /metrics sums them all whichever one answers
  --metrics-port N       the shard's Prometheus metrics port (default 0: a free one; the ready line's
                         shardMetricsPort), on --metrics-hostname (default 127.0.0.1). The router's metrics are
                         GET /metrics on --port.
  --tls-cert PATH        with --tls-key: the public port serves HTTPS only (h2 and HTTP/1.1 by ALPN)
  --tls-key PATH         the certificate's PEM private key
  --shard-token-file PATH  the internal link's token (default: a random one made for this run)
  --shutdown-grace-seconds N  on SIGTERM, how long requests in flight may finish before they end with an
                         error event (default 30); serve passes the signal on and waits
  --log-level L          error, warn, info or debug, for both processes (default info)
  --metrics-max-adapters N  busiest adapters with their own metrics label in both processes (default ${DEFAULT_TELEMETRY.metricsMaxAdapters})
  --num-shard N          tensor parallelism: N shard processes on this host, each holding 1/N of the model
                         (default 1). Rank 0 serves the router; the ready line's pids.ranks lists every rank.
  --master-addr H        where the ranks meet (default 127.0.0.1)
  --master-port N        the port there (default: a free one)

Every other option goes to the shard (\`loraserve shard --help\`), e.g. --max-total-tokens.
OpenTelemetry export is configured by the standard OTEL_* variables, which both processes inherit.`;

/** Options that both processes take. */
const SHARED_FLAGS = new Set([...Object.keys(TELEMETRY_FLAGS), "shard-token-file", "shutdown-grace-seconds"].map((flag) => `--${flag}`));
/** The launcher's options that belong to the router (serve names the shard itself); everything else is the shard's. */
const ROUTER_ONLY_FLAGS = new Set(
  Object.keys(ROUTER_FLAGS)
    .filter((flag) => flag !== "shard-uri" && flag !== "shard-group-name")
    .map((flag) => `--${flag}`)
    .filter((flag) => !SHARED_FLAGS.has(flag)),
);
const HEALTH_POLL_MS = 100;
/** The `shard_group` label of serve's one group. */
export const SERVE_GROUP_NAME = "local";

/** A port nothing listens on now, for the group's meeting point (rank 0 listens there a moment later). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => server.once("error", reject).listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function splitArgs(args: string[]): { routerArgs: string[]; shardArgs: string[] } {
  const routerArgs: string[] = [];
  const shardArgs: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const flag = arg.split("=")[0]!;
    if (!ROUTER_ONLY_FLAGS.has(flag) && !SHARED_FLAGS.has(flag)) {
      shardArgs.push(arg);
      continue;
    }
    const option = !arg.includes("=") && i + 1 < args.length ? [arg, args[++i]!] : [arg];
    if (ROUTER_ONLY_FLAGS.has(flag)) routerArgs.push(...option);
    else {
      routerArgs.push(...option);
      shardArgs.push(...option);
    }
  }
  return { routerArgs, shardArgs };
}

/**
 * What serve sets for the shard unless the user did, by flag or variable: a free internal port and a free metrics
 * port (on the shard's default address, loopback: metrics are no business of the public port's audience).
 */
export function shardDefaults(shardArgs: readonly string[], env: NodeJS.ProcessEnv): string[] {
  const defaults: [string, string][] = [
    ["shard-port", "0"],
    ["metrics-port", "0"],
  ];
  return defaults.filter(([flag]) => !isSet(flag, shardArgs, env)).flatMap(([flag, value]) => [`--${flag}`, value]);
}

/** Where this host reaches the router, whatever address it listens on. */
function localUrl(hostname: string, port: number, tls: boolean): string {
  const host = hostname === "0.0.0.0" || hostname === "::" ? "127.0.0.1" : hostname.includes(":") ? `[${hostname}]` : hostname;
  return `${tls ? "https" : "http"}://${host}:${port}`;
}

async function waitHealthy(url: string, children: ServerProcess[]): Promise<void> {
  let died: string | undefined;
  for (const child of children) void child.exited.then((how) => (died ??= how));
  for (;;) {
    if (died !== undefined) throw new Error(`${died} before the router was healthy`);
    const status = await routerHealth(url);
    if (status === 200) return;
    await sleep(HEALTH_POLL_MS);
  }
}

function nextSignal(): { received: Promise<string>; dispose(): void } {
  let dispose = (): void => undefined;
  const received = new Promise<string>((resolve) => {
    const onSignal = (signal: string): void => resolve(signal);
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
    dispose = () => {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
    };
  });
  return { received, dispose };
}

/**
 * The router first, so that it stops taking requests, closes its HTTP/2 sessions and flushes its telemetry while
 * the shard still answers. Stopped together, the shard's GOAWAY could reach a session the router was closing,
 * which connect-node then reports as an unhandled 'error' event that kills the router before its last spans and
 * metrics are exported. But once a shard rank has died, the leader goes first: it ends its requests in flight
 * with an error, which the router, still running, passes on to their clients (stopping, the router would cut
 * their connections without a word). The followers come last: the leader, closing, stops the group, so they end
 * cleanly instead of seeing the group fail.
 */
function stopOrder(children: readonly ServerProcess[], shardDied: boolean): ServerProcess[] {
  const router = children.filter((child) => child.name === "router");
  const [leader, ...followers] = children.filter((child) => child.name !== "router");
  const shard = leader === undefined ? [] : [leader];
  return shardDied ? [...shard, ...router, ...followers] : [...router, ...shard, ...followers];
}

export async function launcherMain(args: string[]): Promise<void> {
  const { routerArgs, shardArgs } = splitArgs(args);
  // Checked before the shard loads a model for nothing; the URI is a placeholder for the check.
  const { hostname, tls } = parseRouterOptions([...routerArgs, "--shard-uri", "http://127.0.0.1:1"], process.env);
  // The user's token file (flag or variable) reaches both children as it is; else this run makes one.
  const token = isSet("shard-token-file", args, process.env) ? null : makeRunToken();
  const signal = nextSignal();
  const children: ServerProcess[] = [];
  let stopping = false;
  const start = (name: string, args: string[]): ServerProcess => {
    // A signal may come while a child starts: nothing new is started once stopping has begun.
    if (stopping) throw new Error(`stopped before the ${name} started`);
    const child = startServerProcess(name, args);
    children.push(child);
    return child;
  };
  const serve = async (): Promise<{ child: ServerProcess; how: string }> => {
    const plan = await planShardGroup(shardArgs, [...shardDefaults(shardArgs, process.env), ...(token?.args ?? [])], process.env, freePort);
    // Together: the leader's engine waits for every rank to meet before the leader is ready.
    const ranks = plan.rankArgs.map((args, rank) => start(plan.world === 1 ? "shard" : `shard rank ${rank}`, ["shard", ...args]));
    const shard = ranks[0]!;
    const [shardReady] = await Promise.all(ranks.map((rank) => rank.ready));
    // Named: the shard's port is a new one at every start, and would make the metrics' group label new too.
    const shardUri = `http://127.0.0.1:${shardReady!.port}`;
    const router = start("router", ["router", "--shard-uri", shardUri, "--shard-group-name", SERVE_GROUP_NAME, ...(token?.args ?? []), ...routerArgs]);
    const url = localUrl(hostname, (await router.ready).port, Boolean(tls));
    await waitHealthy(url, children);
    const port = Number(new URL(url).port);
    const pids = { shard: shard.pid, router: router.pid, ranks: ranks.map((rank) => rank.pid) };
    const ready = { event: "ready", url, port, shardPort: shardReady!.port, shardMetricsPort: shardReady!.metricsPort, pids };
    process.stdout.write(`${JSON.stringify(ready)}\n`);
    return Promise.race([...ranks, router].map((child) => child.exited.then((how) => ({ child, how }))));
  };
  const serving = serve();
  // After a signal the start-up may still fail (its children are being stopped): that is not an error.
  serving.catch(() => undefined);
  let shardDied = false;
  try {
    const outcome = await Promise.race([signal.received.then(() => undefined), serving]);
    if (outcome !== undefined) {
      shardDied = outcome.child.name !== "router";
      throw new Error(outcome.how);
    }
  } finally {
    stopping = true;
    for (const child of stopOrder(children, shardDied)) await child.stop();
    token?.remove();
    signal.dispose();
  }
}
