// `loraserve shard` flags and environment → settings, and the limits derived from the model's context.
import { describe, expect, it } from "vitest";
import type { ModelSpec } from "../native/addon.js";
import { parseShardArgs, resolveLimits, UsageError, withEngineKvBlocks } from "../shard/options.js";

const spec = (maxPositionEmbeddings: number): ModelSpec => ({
  hiddenSize: 64,
  intermediateSize: 128,
  numLayers: 2,
  numHeads: 4,
  numKvHeads: 2,
  headDim: 16,
  vocabSize: 512,
  rmsNormEps: 1e-5,
  ropeTheta: 10000,
  ropeScaling: { type: "none" },
  maxPositionEmbeddings,
});

describe("parseShardArgs", () => {
  it("reads the flags, the adapters in order, and fills the defaults", () => {
    const args = parseShardArgs(["--model-id", "/m", "--lora-adapters", "sql=/a/sql, chat=/a/chat", "--shard-port", "7001", "--block-size", "8"], {});
    expect(args).toEqual({
      modelDir: "/m",
      servedModelName: "/m",
      adapters: [
        { id: "sql", dir: "/a/sql" },
        { id: "chat", dir: "/a/chat" },
      ],
      adapterRoots: [],
      maxLoras: null,
      adapterMemoryFraction: 0.2,
      maxCpuLoras: 64,
      maxLoraRank: 64,
      port: 7001,
      hostname: "127.0.0.1",
      shardTokenFile: null,
      device: "cpu",
      dtype: "float16",
      gpuMemoryFraction: 0.9,
      threads: 0,
      blockSize: 8,
      prefixCaching: true,
      listAdaptersInErrors: false,
      maxBatchPrefillTokens: 4096,
      maxConcurrentRequests: null,
      maxQueuedTokens: null,
      maxTopNTokens: 5,
      validationWorkers: 2,
      maxInputTokens: null,
      maxTotalTokens: null,
      maxNewTokensLimit: null,
      numKvBlocks: null,
      metricsPort: null,
      metricsHostname: "127.0.0.1",
      shutdownGraceMs: 30_000,
      group: { rank: 0, world: 1, masterAddr: "127.0.0.1", masterPort: 29500, gpu: null },
      logLevel: "info",
      metricsMaxAdapters: 32,
    });
  });

  it("listens on loopback unless --shard-hostname says otherwise, which needs the internal API's credential", () => {
    expect(parseShardArgs(["--model-id", "/m", "--shard-hostname", "::1"], {})).toMatchObject({ hostname: "::1", shardTokenFile: null });
    expect(() => parseShardArgs(["--model-id", "/m", "--shard-hostname", "0.0.0.0"], {})).toThrow(/--shard-hostname 0\.0\.0\.0 is beyond loopback: .*--shard-token-file/);
    expect(() => parseShardArgs(["--model-id", "/m"], { SHARD_HOSTNAME: "10.0.0.5" })).toThrow(/SHARD_HOSTNAME 10\.0\.0\.5 is beyond loopback/);
    const open = parseShardArgs(["--model-id", "/m", "--shard-hostname", "0.0.0.0"], { SHARD_TOKEN_FILE: "/run/token" });
    expect(open).toMatchObject({ hostname: "0.0.0.0", shardTokenFile: "/run/token" });
  });

  it("places the shard in its tensor-parallel group, refusing a rank outside it", () => {
    const group = parseShardArgs(["--model-id", "/m", "--num-shard", "4", "--rank", "3", "--master-addr", "10.1.2.3", "--master-port", "29600"], {}).group;
    expect(group).toEqual({ rank: 3, world: 4, masterAddr: "10.1.2.3", masterPort: 29600, gpu: null });
    expect(parseShardArgs(["--model-id", "/m", "--gpu", "3"], {}).group.gpu).toBe(3);
    expect(parseShardArgs(["--model-id", "/m"], { NUM_SHARD: "2", RANK: "1" }).group).toMatchObject({ rank: 1, world: 2 });
    expect(() => parseShardArgs(["--model-id", "/m", "--num-shard", "2", "--rank", "2"], {})).toThrow(/--rank/);
    expect(() => parseShardArgs(["--model-id", "/m", "--num-shard", "0"], {})).toThrow(/--num-shard/);
    expect(() => parseShardArgs(["--model-id", "/m", "--master-port", "0"], {})).toThrow(/--master-port/);
  });

  it("reads --max-top-n-tokens and --validation-workers (TGI's names) or their variables; the cap reaches the limits", () => {
    const args = parseShardArgs(["--model-id", "/m", "--max-top-n-tokens", "20", "--validation-workers", "1"], {});
    expect([args.maxTopNTokens, args.validationWorkers]).toEqual([20, 1]);
    expect(parseShardArgs(["--model-id", "/m"], { MAX_TOP_N_TOKENS: "0", VALIDATION_WORKERS: "4" })).toMatchObject({ maxTopNTokens: 0, validationWorkers: 4 });
    expect(resolveLimits(args, spec(1024)).maxTopNTokens).toBe(20);
    expect(() => parseShardArgs(["--model-id", "/m", "--validation-workers", "0"], {})).toThrow(/--validation-workers/);
    expect(() => parseShardArgs(["--model-id", "/m"], { MAX_TOP_N_TOKENS: "-1" })).toThrow(/MAX_TOP_N_TOKENS/);
  });

  it("takes MODEL_ID and LORA_ADAPTERS from the environment when the flags are absent", () => {
    const args = parseShardArgs([], { MODEL_ID: "/env/model", LORA_ADAPTERS: "x=/env/x" });
    expect([args.modelDir, args.adapters]).toEqual(["/env/model", [{ id: "x", dir: "/env/x" }]]);
    expect(parseShardArgs(["--model-id", "/flag"], { MODEL_ID: "/env" }).modelDir).toBe("/flag");
    expect(parseShardArgs(["--model-id", "/m", "--served-model-name", "llama-demo"], {}).servedModelName).toBe("llama-demo");
  });

  it("takes adapter roots from every --adapter-root, else from ADAPTER_ROOTS split at colons", () => {
    const flags = ["--model-id", "/m", "--adapter-root", "/r1", "--adapter-root", "/r2", "--max-loras", "2", "--max-cpu-loras", "3", "--max-lora-rank", "16"];
    expect(parseShardArgs(flags, { ADAPTER_ROOTS: "/env" })).toMatchObject({ adapterRoots: ["/r1", "/r2"], maxLoras: 2, maxCpuLoras: 3, maxLoraRank: 16 });
    expect(parseShardArgs(["--model-id", "/m"], { ADAPTER_ROOTS: "/e1::/e2:" }).adapterRoots).toEqual(["/e1", "/e2"]);
  });

  it("reads each integer flag's same-named environment variable, and the flag wins", () => {
    const env = { MAX_NEW_TOKENS_LIMIT: "50", MAX_LORAS: "3", SHARD_PORT: "7000", NUM_KV_BLOCKS: "40" };
    expect(parseShardArgs(["--model-id", "/m"], env)).toMatchObject({ maxNewTokensLimit: 50, maxLoras: 3, port: 7000, numKvBlocks: 40 });
    expect(parseShardArgs(["--model-id", "/m", "--max-loras", "5"], env).maxLoras).toBe(5);
    expect(parseShardArgs(["--model-id", "/m", "--adapter-memory-fraction", "0.35"], {}).adapterMemoryFraction).toBe(0.35);
  });

  it("names the environment variable when its integer is bad", () => {
    expect(() => parseShardArgs(["--model-id", "/m"], { MAX_TOTAL_TOKENS: "12x" })).toThrow(UsageError);
    expect(() => parseShardArgs(["--model-id", "/m"], { MAX_TOTAL_TOKENS: "12x" })).toThrow(/^MAX_TOTAL_TOKENS must be an integer >= 2, got "12x"\n/);
  });

  it.each([
    [[], /--model-id \(or MODEL_ID\) is required/],
    [["--model-id", "/m", "--lora-adapters", "/just/a/dir"], /entries are ID=DIR, got "\/just\/a\/dir"/],
    [["--model-id", "/m", "--lora-adapters", "=/dir"], /entries are ID=DIR/],
    [["--model-id", "/m", "--shard-port", "70000"], /--shard-port must be an integer from 0 to 65535, got "70000"/],
    [["--model-id", "/m", "--threads=-1"], /--threads must be an integer >= 0, got "-1"/],
    [["--model-id", "/m", "--max-total-tokens", "12x"], /--max-total-tokens must be an integer >= 2/],
    [["--model-id", "/m", "--device", "tpu"], /--device must be cpu or cuda/],
    [["--model-id", "/m", "--dtype", "float32"], /--dtype must be float16 or bfloat16, got "float32"/],
    [["--model-id", "/m", "--device", "cpu", "--dtype", "bfloat16"], /--dtype applies to --device cuda/],
    [["--model-id", "/m", "--gpu-memory-fraction", "0"], /--gpu-memory-fraction must be a number in \(0, 1\], got "0"/],
    [["--model-id", "/m", "--gpu-memory-fraction", "1.5"], /--gpu-memory-fraction must be a number in \(0, 1\]/],
    [["--model-id", "/m", "--log-level", "loud"], /--log-level must be one of error, warn, info, debug/],
    [["--model-id", "/m", "--metrics-max-adapters", "many"], /--metrics-max-adapters must be a non-negative integer/],
    [["--model-id", "/m", "--metrics-port", "70000"], /--metrics-port must be an integer from 0 to 65535/],
    [["--model-id", "/m", "--max-loras", "0"], /--max-loras must be an integer >= 1, got "0"/],
    [["--model-id", "/m", "--adapter-memory-fraction", "1"], /--adapter-memory-fraction must be a number in \(0, 1\), got "1"/],
    [["--model-id", "/m", "--adapter-memory-fraction", "0"], /--adapter-memory-fraction must be a number in \(0, 1\)/],
    [["--model-id", "/m", "--max-cpu-loras", "x"], /--max-cpu-loras must be an integer >= 1/],
    [["--model-id", "/m", "--max-lora-rank", "0"], /--max-lora-rank must be an integer >= 1/],
    [["--model-id", "/m", "--unknown"], /Unknown option '--unknown'/],
  ])("refuses %j with a usage message", (argv, message) => {
    expect(() => parseShardArgs(argv, {})).toThrow(UsageError);
    expect(() => parseShardArgs(argv, {})).toThrow(message);
  });
});

describe("resolveLimits", () => {
  it("defaults to the model's context capped at 2048, with room for four full sequences", () => {
    expect(resolveLimits(parseShardArgs(["--model-id", "/m"], {}), spec(1024))).toEqual({
      maxTotalTokens: 1024,
      maxInputTokens: 1023,
      maxNewTokensLimit: 1023,
      maxBatchPrefillTokens: 4096,
      maxTopNTokens: 5,
      blockSize: 16,
      numKvBlocks: 256,
      maxConcurrentRequests: 128,
      maxQueuedTokens: 16 * 4096,
    });
    expect(resolveLimits(parseShardArgs(["--model-id", "/m"], {}), spec(131072)).maxTotalTokens).toBe(2048);
  });

  it("bounds admission: --max-concurrent-requests, and --max-queued-tokens (16 prefill steps by default) no lower than the longest prompt", () => {
    const limits = resolveLimits(parseShardArgs(["--model-id", "/m", "--max-batch-prefill-tokens", "10", "--max-concurrent-requests", "3"], {}), spec(1024));
    expect([limits.maxConcurrentRequests, limits.maxQueuedTokens]).toEqual([3, 1023]);
    expect(resolveLimits(parseShardArgs(["--model-id", "/m"], { MAX_QUEUED_TOKENS: "2000" }), spec(1024)).maxQueuedTokens).toBe(2000);
    expect(() => resolveLimits(parseShardArgs(["--model-id", "/m", "--max-queued-tokens", "100"], {}), spec(1024))).toThrow(/--max-queued-tokens 100 must be at least --max-input-tokens 1023/);
    expect(() => parseShardArgs(["--model-id", "/m", "--max-concurrent-requests", "0"], {})).toThrow(UsageError);
  });

  it("takes as many concurrent requests as the KV cache holds sequences at --max-total-tokens, at least 128, unless told", () => {
    // 1024 tokens are 64 blocks of 16: 200 sequences in 12800 blocks.
    expect(resolveLimits(parseShardArgs(["--model-id", "/m", "--num-kv-blocks", "12800"], {}), spec(1024)).maxConcurrentRequests).toBe(200);
    expect(resolveLimits(parseShardArgs(["--model-id", "/m", "--num-kv-blocks", "640"], {}), spec(1024)).maxConcurrentRequests).toBe(128);
    const cuda = parseShardArgs(["--model-id", "/m"], {}, "cuda");
    const limits = resolveLimits(cuda, spec(1024));
    expect(limits.maxConcurrentRequests).toBe(128); // the cache is not sized yet
    expect(withEngineKvBlocks(limits, cuda, 64 * 425).maxConcurrentRequests).toBe(425);
    const told = parseShardArgs(["--model-id", "/m", "--max-concurrent-requests", "50"], {}, "cuda");
    expect(withEngineKvBlocks(resolveLimits(told, spec(1024)), told, 64 * 425).maxConcurrentRequests).toBe(50);
  });

  it("on cuda leaves the block count to the engine (0) unless --num-kv-blocks names one, then checks the engine's", () => {
    const cuda = parseShardArgs(["--model-id", "/m", "--gpu-memory-fraction", "0.5"], {}, "cuda");
    expect([cuda.device, cuda.gpuMemoryFraction, cuda.dtype]).toEqual(["cuda", 0.5, "float16"]);
    expect(parseShardArgs(["--model-id", "/m", "--dtype", "bfloat16"], {}, "cuda").dtype).toBe("bfloat16");
    const limits = resolveLimits(cuda, spec(1024));
    expect(limits.numKvBlocks).toBe(0);
    expect(resolveLimits(parseShardArgs(["--model-id", "/m", "--num-kv-blocks", "100"], {}, "cuda"), spec(1024)).numKvBlocks).toBe(100);
    expect(withEngineKvBlocks(limits, cuda, 5000).numKvBlocks).toBe(5000);
    expect(() => withEngineKvBlocks(limits, cuda, 63)).toThrow(/the 63 KV blocks that fit --gpu-memory-fraction 0.5 of 16 tokens cannot hold one sequence of --max-total-tokens 1024 \(64 blocks needed\)/);
  });

  it.each([
    [["--max-total-tokens", "600"], /--max-total-tokens 600 exceeds the model's context of 512 tokens/],
    [["--max-total-tokens", "100", "--max-input-tokens", "100"], /--max-input-tokens 100 must be below --max-total-tokens 100/],
    [["--max-total-tokens", "100", "--num-kv-blocks", "6"], /--num-kv-blocks 6 of 16 tokens cannot hold one sequence of --max-total-tokens 100 \(7 blocks needed\)/],
  ])("refuses limits that do not fit together: %j", (argv, message) => {
    expect(() => resolveLimits(parseShardArgs(["--model-id", "/m", ...argv], {}), spec(512))).toThrow(message);
  });
});
