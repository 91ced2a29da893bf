// TGI's rule for every process: each flag has a same-named environment variable (--max-new-tokens-limit ↔
// MAX_NEW_TOKENS_LIMIT) and the flag wins. The tests walk each parseArgs table, so a flag added without its
// variable (or without a sample value here) fails them.
import { describe, expect, it } from "vitest";
import { envVariableOf } from "../common/flag-or-env.js";
import { SERVE_USAGE, shardDefaults } from "../client/launcher.js";
import { parseRouterOptions, ROUTER_FLAGS } from "../router/options.js";
import { parseShardArgs, SHARD_FLAGS } from "../shard/options.js";

/** Per flag: a value to set it to, and another for the flag when both are set. Each differs from the default. */
type Samples = Record<string, [fromEnv: string, fromFlag: string]>;

const TELEMETRY_SAMPLES: Samples = { "log-level": ["debug", "warn"], "metrics-max-adapters": ["4", "8"] };

const SHARD_SAMPLES: Samples = {
  "model-id": ["/env-model", "/flag-model"],
  "served-model-name": ["env-name", "flag-name"],
  "lora-adapters": ["x=/x", "y=/y"],
  "adapter-root": ["/env-root", "/flag-root"],
  "max-loras": ["3", "5"],
  "max-cpu-loras": ["3", "5"],
  "adapter-memory-fraction": ["0.3", "0.4"],
  "max-lora-rank": ["16", "32"],
  "shard-port": ["7000", "7001"],
  "shard-hostname": ["::1", "localhost"],
  "shard-token-file": ["/env-token", "/flag-token"],
  "max-input-tokens": ["10", "20"],
  "max-total-tokens": ["100", "200"],
  "max-new-tokens-limit": ["10", "20"],
  "max-batch-prefill-tokens": ["100", "200"],
  "max-concurrent-requests": ["3", "7"],
  "max-queued-tokens": ["1000", "2000"],
  "max-top-n-tokens": ["3", "7"],
  "validation-workers": ["1", "3"],
  "num-kv-blocks": ["10", "20"],
  "block-size": ["8", "32"],
  threads: ["2", "4"],
  device: ["cpu", "cuda"],
  dtype: ["bfloat16", "float16"],
  "gpu-memory-fraction": ["0.5", "0.7"],
  "metrics-port": ["9000", "9001"],
  "metrics-hostname": ["0.0.0.0", "::1"],
  "shutdown-grace-seconds": ["5", "10"],
  "num-shard": ["2", "3"],
  rank: ["1", "2"],
  "master-addr": ["10.0.0.2", "10.0.0.3"],
  "master-port": ["29501", "29502"],
  gpu: ["1", "2"],
  ...TELEMETRY_SAMPLES,
};

/** Flags without a value: on when given, else their variable says "true" or "false". */
const SHARD_SWITCHES = ["disable-prefix-caching", "list-adapters-in-errors"];

const ROUTER_SAMPLES: Samples = {
  port: ["8080", "9090"],
  "shard-uri": ["http://env:1", "http://flag:1"],
  "shard-group-name": ["env-group", "flag-group"],
  "max-body-bytes": ["1000", "2000"],
  "admin-token": ["env-token", "flag-token"],
  "shard-token-file": ["/env-token", "/flag-token"],
  "tls-cert": ["/env-cert.pem", "/flag-cert.pem"],
  "tls-key": ["/env-key.pem", "/flag-key.pem"],
  "shutdown-grace-seconds": ["5", "10"],
  "api-processes": ["2", "3"],
  ...TELEMETRY_SAMPLES,
};

/** Not read from HOSTNAME: shells and Docker set it to the machine's name, which is no address to listen on. */
const ROUTER_FLAGS_WITHOUT_ENV = ["hostname"];

function checkEveryFlag(samples: Samples, parse: (flag: string, args: string[], env: NodeJS.ProcessEnv) => unknown): void {
  for (const [flag, [fromEnv, fromFlag]] of Object.entries(samples)) {
    const variable = { [envVariableOf(flag)]: fromEnv };
    expect(parse(flag, [], variable), `${envVariableOf(flag)} is read`).toEqual(parse(flag, [`--${flag}`, fromEnv], {}));
    expect(parse(flag, [`--${flag}`, fromFlag], variable), `--${flag} wins`).toEqual(parse(flag, [`--${flag}`, fromFlag], {}));
    expect(parse(flag, [`--${flag}`, fromFlag], {}), `the sample values of --${flag} differ`).not.toEqual(parse(flag, [], variable));
  }
}

describe("shard flags", () => {
  it("each has a sample here, so that the walk below covers every one", () => {
    expect(Object.keys(SHARD_FLAGS).sort()).toEqual([...Object.keys(SHARD_SAMPLES), ...SHARD_SWITCHES].sort());
  });

  it("reads --disable-prefix-caching as a switch, or DISABLE_PREFIX_CACHING as true or false, and refuses other values naming the variable", () => {
    const caching = (args: string[], env: NodeJS.ProcessEnv): boolean => parseShardArgs(["--model-id", "/m", ...args], env).prefixCaching;
    expect(caching([], {})).toBe(true);
    expect(caching(["--disable-prefix-caching"], {})).toBe(false);
    expect(caching([], { DISABLE_PREFIX_CACHING: "true" })).toBe(false);
    expect(caching([], { DISABLE_PREFIX_CACHING: "false" })).toBe(true);
    expect(caching(["--disable-prefix-caching"], { DISABLE_PREFIX_CACHING: "false" })).toBe(false);
    expect(() => caching([], { DISABLE_PREFIX_CACHING: "yes" })).toThrow('DISABLE_PREFIX_CACHING must be true or false, got "yes"');
    expect(() => caching(["--disable-prefix-caching=1"], {})).toThrow(/disable-prefix-caching/);
  });

  it("each is read from its environment variable when absent, and wins over it when given", () => {
    // Every parse but --model-id's own names the model; on cuda, so that --dtype applies.
    // A rank needs a group that has it.
    const group = (flag: string) => (flag === "rank" ? ["--num-shard", "4"] : []);
    checkEveryFlag(SHARD_SAMPLES, (flag, args, env) => parseShardArgs(flag === "model-id" ? args : ["--model-id", "/m", ...group(flag), ...args], env, "cuda"));
  });

  it("refuses --shard-port -1 with a message that names the flag", () => {
    expect(() => parseShardArgs(["--model-id", "/m", "--shard-port", "-1"], {})).toThrow(/--shard-port/);
    expect(() => parseShardArgs(["--model-id", "/m", "--shard-port=-1"], {})).toThrow('--shard-port must be an integer from 0 to 65535, got "-1"');
    expect(() => parseShardArgs(["--model-id", "/m"], { SHARD_PORT: "-1" })).toThrow('SHARD_PORT must be an integer from 0 to 65535, got "-1"');
  });

  it("names the variable when its value is bad, not only when it is an integer", () => {
    expect(() => parseShardArgs(["--model-id", "/m"], { GPU_MEMORY_FRACTION: "2" })).toThrow('GPU_MEMORY_FRACTION must be a number in (0, 1], got "2"');
    expect(() => parseShardArgs(["--model-id", "/m"], { LOG_LEVEL: "loud" })).toThrow('LOG_LEVEL must be one of error, warn, info, debug, got "loud"');
    expect(() => parseShardArgs(["--model-id", "/m"], { METRICS_MAX_ADAPTERS: "-3" })).toThrow('METRICS_MAX_ADAPTERS must be a non-negative integer, got "-3"');
  });

  it("splits ADAPTER_ROOT at colons, and still reads the former ADAPTER_ROOTS after it", () => {
    expect(parseShardArgs(["--model-id", "/m"], { ADAPTER_ROOT: "/a:/b" }).adapterRoots).toEqual(["/a", "/b"]);
    expect(parseShardArgs(["--model-id", "/m"], { ADAPTER_ROOT: "/new", ADAPTER_ROOTS: "/old" }).adapterRoots).toEqual(["/new"]);
  });
});

describe("router flags", () => {
  it("each but --hostname has a sample here, so that the walk below covers every one", () => {
    expect(Object.keys(ROUTER_FLAGS).filter((flag) => !ROUTER_FLAGS_WITHOUT_ENV.includes(flag)).sort()).toEqual(Object.keys(ROUTER_SAMPLES).sort());
  });

  it("each is read from its environment variable when absent, and wins over it when given", () => {
    // TLS takes a certificate and its key: each is walked with the other given.
    const pair: Record<string, string[]> = { "tls-cert": ["--tls-key", "/k.pem"], "tls-key": ["--tls-cert", "/c.pem"] };
    checkEveryFlag(ROUTER_SAMPLES, (flag, args, env) =>
      parseRouterOptions(flag === "shard-uri" ? args : ["--shard-uri", "http://127.0.0.1:1", ...(pair[flag] ?? []), ...args], env),
    );
  });

  it("takes --hostname from the flag only, splits SHARD_URI at commas, and reads ADMIN_TOKEN before the former LORASERVE_ADMIN_TOKEN", () => {
    expect(parseRouterOptions(["--shard-uri", "http://127.0.0.1:1"], { HOSTNAME: "box" }).hostname).toBe("0.0.0.0");
    expect(parseRouterOptions([], { SHARD_URI: "http://a:1,http://b:1" }).shardUris).toEqual(["http://a:1", "http://b:1"]);
    const both = { ADMIN_TOKEN: "new", LORASERVE_ADMIN_TOKEN: "old" };
    expect(parseRouterOptions(["--shard-uri", "http://127.0.0.1:1"], both).adminToken).toBe("new");
    expect(parseRouterOptions(["--shard-uri", "http://127.0.0.1:1"], { LORASERVE_ADMIN_TOKEN: "old" }).adminToken).toBe("old");
  });

  it("refuses --port -1 with a message that names the flag", () => {
    const shard = ["--shard-uri", "http://127.0.0.1:1"];
    expect(() => parseRouterOptions([...shard, "--port", "-1"], {})).toThrow(/--port/);
    expect(() => parseRouterOptions([...shard, "--port=-1"], {})).toThrow('--port must be an integer from 0 to 65535, got "-1"');
  });
});

describe("serve flags", () => {
  it("are the router's and the shard's, which read their variables from the environment both processes inherit", () => {
    const listed = [...SERVE_USAGE.matchAll(/^ {2}--([a-z-]+)/gm)].map((match) => match[1]!);
    expect(listed.length).toBeGreaterThan(5);
    for (const flag of listed) expect(Object.keys({ ...ROUTER_FLAGS, ...SHARD_FLAGS }), flag).toContain(flag);
  });

  it("sets the shard's ports only where neither a flag nor its variable does, and leaves its metrics on loopback", () => {
    expect(shardDefaults([], {})).toEqual(["--shard-port", "0", "--metrics-port", "0"]);
    expect(shardDefaults(["--metrics-port=9000"], { SHARD_PORT: "7000", METRICS_HOSTNAME: "127.0.0.1" })).toEqual([]);
  });
});
