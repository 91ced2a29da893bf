// The router's command line and environment, checked before anything starts. Each flag is also read from its
// same-named environment variable (common/flag-or-env.ts), except --hostname (see below).
import { parseArgs } from "node:util";
import { flagOrEnv, flagsOrEnv, type Setting } from "../common/flag-or-env.js";
import { parseInteger } from "../common/parse-integer.js";
import { parseTelemetryOptions, TELEMETRY_FLAGS, telemetryUsage, type TelemetryOptions } from "../telemetry/options.js";

export interface RouterOptions extends Partial<TelemetryOptions> {
  port: number;
  hostname: string;
  shardUris: string[];
  /**
   * Each group's name in metrics (the `shard_group` label), in --shard-uri order; absent: the URIs. `serve` names
   * its one group, whose port is new at every start, so that a restart does not begin new series.
   */
  shardGroupNames?: string[];
  maxBodyBytes: number;
  /** Guards loading and unloading adapters; absent or null: those calls are refused. */
  adminToken?: string | null;
  /** The file of the token every call to a shard carries (common/shard-token.ts); absent or null: none. */
  shardTokenFile?: string | null;
  /** PEM files of the public port's certificate chain and key: with both, it serves HTTPS (h2 and HTTP/1.1 over ALPN). */
  tls?: { certFile: string; keyFile: string } | null;
  /** On SIGTERM, how long requests in flight may take to finish (--shutdown-grace-seconds). */
  shutdownGraceMs?: number;
  /** Processes serving the public port (--api-processes, router/api-processes.ts); absent: 1. */
  apiProcesses?: number;
}

/** Kubernetes' default terminationGracePeriodSeconds. */
export const DEFAULT_SHUTDOWN_GRACE_SECONDS = 30;
/** More processes than this would be more than any machine here has cores for the rest. */
const MAX_API_PROCESSES = 64;
/** TGI's default payload limit. */
const DEFAULT_MAX_BODY_BYTES = 2_000_000;

export const ROUTER_USAGE = `loraserve router --shard-uri URL [--shard-uri URL ...] [options]

  Each flag but --hostname may instead be set by its environment variable, named after it: --max-body-bytes N
  is MAX_BODY_BYTES=N. The flag wins when both are set.

  --shard-uri URL        a shard group leader's ShardService (h2c), e.g. http://127.0.0.1:50051; repeatable
                         (SHARD_URI: comma-separated)
  --shard-group-name NAME  the group's \`shard_group\` label in metrics, one per --shard-uri in order (default: the
                         URI; SHARD_GROUP_NAME: comma-separated)
  --port N               public port for HTTP/1.1 and HTTP/2 (default 3000; 0 picks a free one)
  --hostname H           address to listen on (default 0.0.0.0; not read from HOSTNAME, the machine's name)
  --max-body-bytes N     largest request body accepted (default ${DEFAULT_MAX_BODY_BYTES})
  --admin-token TOKEN    allows loading and unloading adapters to callers that send \`authorization: Bearer TOKEN\`
                         (ADMIN_TOKEN keeps it out of the process list; the former LORASERVE_ADMIN_TOKEN is still
                         read); without it they are refused
  --shard-token-file PATH  the shards' internal API token (the shard's --shard-token-file), sent on every call
  --tls-cert PATH        PEM certificate chain: with --tls-key, the public port serves TLS only, HTTP/2 and
                         HTTP/1.1 chosen by ALPN
  --tls-key PATH         PEM private key of --tls-cert
  --shutdown-grace-seconds N  on SIGTERM: stop admitting (503 with retry-after, health NOT_SERVING), let requests in
                         flight finish for N seconds, end the rest with a final error event, exit 0 (default ${DEFAULT_SHUTDOWN_GRACE_SECONDS})
  --api-processes N      serve the public port from N processes, for when one thread cannot carry the streams;
                         /metrics answers their sum from whichever one a scrape reaches (default 1, at most ${MAX_API_PROCESSES})
${telemetryUsage(25)}

  GET /metrics on the same port serves Prometheus metrics; OTEL_* variables configure OpenTelemetry export.`;

/** parseArgs option specs of the router's flags. */
export const ROUTER_FLAGS = {
  port: { type: "string" },
  hostname: { type: "string" },
  "shard-uri": { type: "string", multiple: true },
  "shard-group-name": { type: "string", multiple: true },
  "max-body-bytes": { type: "string" },
  "admin-token": { type: "string" },
  "shard-token-file": { type: "string" },
  "tls-cert": { type: "string" },
  "tls-key": { type: "string" },
  "shutdown-grace-seconds": { type: "string" },
  "api-processes": { type: "string" },
  ...TELEMETRY_FLAGS,
} as const;

function tlsFiles(cert: Setting | undefined, key: Setting | undefined): RouterOptions["tls"] {
  if (cert === undefined && key === undefined) return null;
  if (cert === undefined || key === undefined) throw new Error(`${(cert ?? key)!.source} needs its pair: TLS takes both --tls-cert and --tls-key`);
  return { certFile: cert.text, keyFile: key.text };
}

/** One name per URI, each once; none given: the URIs themselves. */
function groupNames(names: string[] | undefined, uris: string[]): string[] {
  if (names === undefined) return uris;
  if (names.length !== uris.length) throw new Error(`${names.length} --shard-group-name for ${uris.length} --shard-uri: give one name per URI, in order`);
  for (const [i, name] of names.entries()) {
    if (name === "") throw new Error("--shard-group-name may not be empty");
    if (names.indexOf(name) !== i) throw new Error(`--shard-group-name ${JSON.stringify(name)} is given twice: each group needs its own`);
  }
  return names;
}

export function parseRouterOptions(args: string[], env: NodeJS.ProcessEnv): RouterOptions {
  const { values } = parseArgs({ args, options: ROUTER_FLAGS, strict: true, allowPositionals: false });
  const shardUris = flagsOrEnv("shard-uri", values["shard-uri"], env, ",") ?? [];
  if (shardUris.length === 0) throw new Error(`at least one --shard-uri is required\n\n${ROUTER_USAGE}`);
  for (const uri of shardUris) {
    if (!URL.canParse(uri)) throw new Error(`--shard-uri ${uri} is not a URL`);
  }
  const port = parseInteger(flagOrEnv("port", values.port, env), 0, 65535) ?? 3000;
  return {
    port,
    // Not from HOSTNAME: Docker and shells set it to the machine's name, which is no address to listen on.
    hostname: values.hostname ?? "0.0.0.0",
    shardUris,
    shardGroupNames: groupNames(flagsOrEnv("shard-group-name", values["shard-group-name"], env, ","), shardUris),
    maxBodyBytes: parseInteger(flagOrEnv("max-body-bytes", values["max-body-bytes"], env), 0) ?? DEFAULT_MAX_BODY_BYTES,
    adminToken: flagOrEnv("admin-token", values["admin-token"], env)?.text || null,
    shardTokenFile: flagOrEnv("shard-token-file", values["shard-token-file"], env)?.text || null,
    shutdownGraceMs: 1000 * (parseInteger(flagOrEnv("shutdown-grace-seconds", values["shutdown-grace-seconds"], env), 0) ?? DEFAULT_SHUTDOWN_GRACE_SECONDS),
    tls: tlsFiles(flagOrEnv("tls-cert", values["tls-cert"], env), flagOrEnv("tls-key", values["tls-key"], env)),
    apiProcesses: parseInteger(flagOrEnv("api-processes", values["api-processes"], env), 1, MAX_API_PROCESSES) ?? 1,
    ...parseTelemetryOptions(values, env),
  };
}
