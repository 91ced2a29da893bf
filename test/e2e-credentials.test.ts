// The internal link's credential and the public port's TLS, with a real `loraserve shard` and `loraserve router`
// apart: the shard refuses every call that lacks its token (the router's admin token does not protect a shard
// anyone can reach), the router holding the token serves; and the router's TLS port answers the `openai` client
// (HTTP/1.1, trusting the test certificate through NODE_EXTRA_CA_CERTS) and grpc-js (HTTP/2 by ALPN).
// `loraserve serve` makes a token of its own for each run, in a 0600 file, off every command line, and keeps
// the shard's metrics on loopback.
import { fromBinary, toBinary, create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { networkInterfaces, tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AdapterService } from "../gen/loraserve/v1/adapter_pb.js";
import { GenerateRequestSchema, GenerateStreamResponseSchema, type GenerateStreamResponse } from "../gen/loraserve/v1/generate_pb.js";
import { ShardService } from "../gen/loraserve/v1/shard_pb.js";
import { fixtureSets, PROJECT_ROOT } from "./helpers/fixture-sets.js";
import { greedyIds } from "./helpers/greedy-reference.js";
import { adapterFlag, serve, startCli, type Started } from "./helpers/process.js";

const START_TIMEOUT_MS = 60_000;
const TLS_DIR = join(PROJECT_ROOT, "test", "fixtures", "tls");
const CERT = join(TLS_DIR, "cert.pem");
const KEY = join(TLS_DIR, "key.pem");
const SERVED_NAME = "credentials-test-base";
const set = fixtureSets()[0]!;

/** The openai client in its own Node process, so that NODE_EXTRA_CA_CERTS (read at start) makes it trust the cert. */
const OPENAI_CLIENT = `
import OpenAI from "openai";
const [baseURL, model, prompt, maxTokens] = process.argv.slice(1);
const openai = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0 });
const completion = await openai.completions.create({ model, prompt, max_tokens: Number(maxTokens), temperature: 0 });
process.stdout.write(JSON.stringify(completion));
`;

async function openaiCompletion(baseURL: string, model: string, prompt: string, maxTokens: number): Promise<{ model: string; usage: { completion_tokens: number } }> {
  const { stdout } = await promisify(execFile)(process.execPath, ["--input-type=module", "-e", OPENAI_CLIENT, baseURL, model, prompt, String(maxTokens)], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, NODE_EXTRA_CA_CERTS: CERT },
  });
  return JSON.parse(stdout) as { model: string; usage: { completion_tokens: number } };
}

function bearer(token: string): Interceptor {
  return (next) => (request) => {
    request.header.set("authorization", `Bearer ${token}`);
    return next(request);
  };
}

async function codeOf(call: Promise<unknown>): Promise<string> {
  const error = await call.then(
    () => null,
    (e: unknown) => e,
  );
  return error instanceof ConnectError ? Code[error.code] : `no error (${String(error)})`;
}

describe("the internal credential and the public port's TLS", () => {
  const adapterIds = Object.keys(set.refs.adapters);
  const promptIndex = set.refs.prompts.findIndex((p) => p.text !== null);
  const prompt = set.refs.prompts[promptIndex]!.text!;
  const steps = set.refs.steps;
  const dir = mkdtempSync(join(tmpdir(), "loraserve-credentials-"));
  const tokenFile = join(dir, "shard-token");
  const token = "a-test-token-of-the-internal-link";
  let shard: Started<{ event: "ready"; port: number }>;
  let router: Started<{ event: "ready"; port: number }>;

  beforeAll(async () => {
    writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
    shard = await startCli(["shard", "--model-id", set.modelDir, "--device", "cpu", "--served-model-name", SERVED_NAME, ...adapterFlag(set.adaptersDir, adapterIds)], {
      SHARD_TOKEN_FILE: tokenFile,
    });
    const shardUri = `http://127.0.0.1:${shard.ready.port}`;
    const tls = ["--tls-cert", CERT, "--tls-key", KEY];
    router = await startCli(["router", "--port", "0", "--hostname", "127.0.0.1", "--shard-uri", shardUri, "--shard-token-file", tokenFile, ...tls]);
  }, START_TIMEOUT_MS);

  afterAll(async () => {
    await router?.stop();
    await shard?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const shardClients = (interceptors: Interceptor[]) => {
    const transport = createGrpcTransport({ baseUrl: `http://127.0.0.1:${shard.ready.port}`, interceptors });
    return { shard: createClient(ShardService, transport), adapters: createClient(AdapterService, transport) };
  };

  it("the shard refuses every call without its token, or with another, UNAUTHENTICATED; with it, it answers", async () => {
    for (const [what, interceptors] of [
      ["no token", []],
      ["another token", [bearer("not-the-token")]],
    ] as const) {
      const clients = shardClients([...interceptors]);
      expect(await codeOf(clients.shard.status({})), what).toBe("Unauthenticated");
      expect(await codeOf(clients.shard.tokenize({ inputs: "hello" })), what).toBe("Unauthenticated");
      const stream = clients.shard.generate(create(GenerateRequestSchema, { inputs: prompt, parameters: { maxNewTokens: 1 } }));
      expect(await codeOf(stream[Symbol.asyncIterator]().next()), what).toBe("Unauthenticated");
      expect(await codeOf(clients.adapters.listAdapters({})), what).toBe("Unauthenticated");
      // The call the admin token guards on the router: never past the shard without its own credential.
      expect(await codeOf(clients.adapters.unloadAdapter({ id: adapterIds[0] ?? "x" })), what).toBe("Unauthenticated");
      expect(await codeOf(clients.adapters.loadAdapter({ id: "elsewhere", path: "/tmp" })), what).toBe("Unauthenticated");
    }
    const trusted = shardClients([bearer(token)]);
    expect((await trusted.shard.status({})).modelId).toBe(SERVED_NAME);
  });

  it("the openai client completes over HTTPS (HTTP/1.1) through the router, which holds the shard's token", async () => {
    const completion = await openaiCompletion(`https://localhost:${router.ready.port}/v1`, SERVED_NAME, prompt, steps);
    expect(completion.model).toBe(SERVED_NAME);
    expect(completion.usage.completion_tokens).toBe(greedyIds(set, "base", promptIndex).length);
  });

  it("grpc-js streams the reference's greedy tokens over TLS (HTTP/2 by ALPN), trusting the test certificate", async () => {
    const client = new grpc.Client(`localhost:${router.ready.port}`, grpc.credentials.createSsl(readFileSync(CERT)));
    try {
      const request = create(GenerateRequestSchema, { inputs: prompt, parameters: { maxNewTokens: steps } });
      const call = client.makeServerStreamRequest(
        "/loraserve.v1.GenerateService/GenerateStream",
        (message: typeof request) => Buffer.from(toBinary(GenerateRequestSchema, message)),
        (bytes: Buffer) => fromBinary(GenerateStreamResponseSchema, bytes),
        request,
      );
      const messages: GenerateStreamResponse[] = [];
      for await (const message of call) messages.push(message as GenerateStreamResponse);
      expect(messages.map((m) => m.token?.id)).toEqual(greedyIds(set, "base", promptIndex));
    } finally {
      client.close();
    }
  });

  it("the TLS port refuses cleartext", async () => {
    const answered = await fetch(`http://127.0.0.1:${router.ready.port}/health`).then(
      (response) => response.status,
      () => "refused",
    );
    expect(answered).toBe("refused");
  });
});

describe("loraserve serve's own token and TLS", () => {
  const promptIndex = set.refs.prompts.findIndex((p) => p.text !== null);
  const prompt = set.refs.prompts[promptIndex]!.text!;

  it(
    "makes a random token in a 0600 file named on no command line but its children's, refuses calls without it, serves HTTPS, keeps metrics on loopback",
    async () => {
      const server = await serve(["--model-id", set.modelDir, "--served-model-name", SERVED_NAME, "--tls-cert", CERT, "--tls-key", KEY]);
      let tokenFile: string;
      try {
        expect(server.ready.url).toMatch(/^https:\/\//);
        const shardCommand = readFileSync(`/proc/${server.ready.pids.shard}/cmdline`, "utf8").split("\0");
        tokenFile = shardCommand[shardCommand.indexOf("--shard-token-file") + 1]!;
        expect(statSync(tokenFile).mode & 0o777).toBe(0o600);
        const token = readFileSync(tokenFile, "utf8").trim();
        expect(token.length).toBeGreaterThanOrEqual(32);
        for (const pid of [server.ready.pids.shard, server.ready.pids.router]) {
          expect(readFileSync(`/proc/${pid}/cmdline`, "utf8"), `pid ${pid}`).not.toContain(token);
        }
        const shardUrl = `http://127.0.0.1:${server.ready.shardPort}`;
        const open = createClient(ShardService, createGrpcTransport({ baseUrl: shardUrl }));
        expect(await codeOf(open.status({}))).toBe("Unauthenticated");
        const trusted = createClient(ShardService, createGrpcTransport({ baseUrl: shardUrl, interceptors: [bearer(token)] }));
        expect((await trusted.status({})).ready).toBe(true);

        const completion = await openaiCompletion(`https://localhost:${server.ready.port}/v1`, SERVED_NAME, prompt, set.refs.steps);
        expect(completion.usage.completion_tokens).toBe(greedyIds(set, "base", promptIndex).length);

        expect((await fetch(`http://127.0.0.1:${server.ready.shardMetricsPort}/metrics`)).status).toBe(200);
        // Not on another address of this host: metrics are bound to loopback.
        const elsewhere = Object.values(networkInterfaces())
          .flat()
          .find((address) => address?.family === "IPv4" && !address.internal);
        if (elsewhere) {
          const reached = await fetch(`http://${elsewhere.address}:${server.ready.shardMetricsPort}/metrics`).then(
            () => true,
            () => false,
          );
          expect(reached).toBe(false);
        }
      } finally {
        expect(await server.stop()).toEqual({ code: 0, signal: null });
      }
      expect(existsSync(tokenFile)).toBe(false);
    },
    START_TIMEOUT_MS,
  );
});
