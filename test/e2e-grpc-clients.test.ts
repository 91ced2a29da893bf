// gRPC clients that carry none of our code, against a real `loraserve serve`: `buf curl` with the schema
// from server reflection only (list services, a streaming GenerateStream), and Debian's python3-grpcio with
// request and answer bytes encoded by hand from the field numbers in generate.proto. Both must stream the
// reference's greedy ids. ModelService.Info and grpc.health.v1 are checked with the Connect client.
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { execFile, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import { dtypeToProto, type DtypeName } from "../common/model-enums.js";
import { Device, ModelService } from "../gen/loraserve/v1/model_pb.js";
import { fixtureSets } from "./helpers/fixture-sets.js";
import { expectAdapterChangesGreedy } from "./helpers/adapter-effect.js";
import { greedyIds } from "./helpers/greedy-reference.js";
import { adapterFlag, serve, type ServeReady, type Started } from "./helpers/process.js";

const START_TIMEOUT_MS = 60_000;
const BUF = new URL("../node_modules/.bin/buf", import.meta.url).pathname;
const SYSTEM_PYTHON = "/usr/bin/python3";
const pythonHasGrpc = spawnSync(SYSTEM_PYTHON, ["-c", "import grpc"]).status === 0;
const set = fixtureSets()[0]!;

// GenerateRequest {1: inputs, 2: adapter_id, 3: parameters {1: max_new_tokens}}; the answers'
// GenerateStreamResponse {1: token {1: id}}; other fields (a float logprob, text) are skipped by wire type.
const PYTHON_CLIENT = `
import grpc, json, sys

def varint(n):
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)

def delimited(number, payload):
    return varint(number << 3 | 2) + varint(len(payload)) + payload

def read_varint(message, pos):
    value, shift = 0, 0
    while True:
        byte = message[pos]; pos += 1
        value |= (byte & 0x7F) << shift; shift += 7
        if byte < 0x80:
            return value, pos

def fields(message):
    pos = 0
    while pos < len(message):
        key, pos = read_varint(message, pos)
        wire = key & 7
        if wire == 0:
            value, pos = read_varint(message, pos)
        elif wire == 2:
            length, pos = read_varint(message, pos)
            value, pos = message[pos:pos + length], pos + length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, pos = message[pos:pos + size], pos + size
        else:
            raise ValueError("unexpected wire type %d" % wire)
        yield key >> 3, value

address, inputs, adapter, max_new_tokens = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
request = delimited(1, inputs.encode()) + (delimited(2, adapter.encode()) if adapter else b"") + delimited(3, varint(1 << 3) + varint(max_new_tokens))
call = grpc.insecure_channel(address).unary_stream("/loraserve.v1.GenerateService/GenerateStream")
ids = []
for message in call(request, timeout=60):
    token = dict(fields(message))[1]
    ids.append(dict(fields(token)).get(1, 0))
print(json.dumps(ids))
`;

async function bufCurl(...args: string[]): Promise<string> {
  const { stdout } = await promisify(execFile)(BUF, ["curl", "--protocol", "grpc", "--http2-prior-knowledge", ...args]);
  return stdout;
}

/** buf curl prints each message as an indented JSON document; only top-level braces start a line. */
function jsonDocuments(stdout: string): unknown[] {
  return JSON.parse(`[${stdout.trim().replace(/\n}\n{/g, "\n},\n{")}]`) as unknown[];
}


describe(`gRPC clients against loraserve serve on ${set.name}`, () => {
  const adapterIds = Object.keys(set.refs.adapters);
  const adapter = adapterIds.at(-1)!;
  const promptIndex = set.refs.prompts.findIndex((p) => p.text !== null);
  const prompt = set.refs.prompts[promptIndex]!.text!;
  const steps = set.refs.steps;
  let server: Started<ServeReady>;
  let session: Http2SessionManager;

  beforeAll(async () => {
    server = await serve(["--model-id", set.modelDir, ...adapterFlag(set.adaptersDir, adapterIds)]);
    session = new Http2SessionManager(server.ready.url);
  }, START_TIMEOUT_MS);

  afterAll(async () => {
    session?.abort();
    await server?.stop();
  });

  it("buf curl lists the services through reflection", async () => {
    const services = (await bufCurl("--list-services", server.ready.url)).trim().split("\n");
    expect(services).toEqual(
      expect.arrayContaining([
        "loraserve.v1.GenerateService",
        "loraserve.v1.ModelService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
      ]),
    );
  });

  it("buf curl streams the reference's greedy tokens from GenerateStream with no proto files", async () => {
    const body = JSON.stringify({ inputs: prompt, adapterId: adapter, parameters: { maxNewTokens: steps } });
    const messages = jsonDocuments(await bufCurl("-d", body, `${server.ready.url}/loraserve.v1.GenerateService/GenerateStream`)) as {
      token: { id?: number };
      text?: string;
      generatedText?: string;
    }[];
    expectAdapterChangesGreedy(set, adapter, promptIndex);
    expect(messages.map((m) => m.token.id ?? 0)).toEqual(greedyIds(set, adapter, promptIndex));
    // The last message carries the whole text: the tokens' texts added up.
    expect(messages.at(-1)!.generatedText).toBe(messages.map((m) => m.text ?? "").join(""));
  });

  it.skipIf(!pythonHasGrpc)(
    `python3-grpcio streams the reference's greedy tokens${pythonHasGrpc ? "" : " (SKIPPED: /usr/bin/python3 cannot import grpc; apt-get install python3-grpcio)"}`,
    async () => {
      for (const variant of ["base", adapter]) {
        const { stdout } = await promisify(execFile)(SYSTEM_PYTHON, [
          "-c",
          PYTHON_CLIENT,
          `127.0.0.1:${server.ready.port}`,
          prompt,
          variant === "base" ? "" : variant,
          String(steps),
        ]);
        expectAdapterChangesGreedy(set, variant, promptIndex);
        expect(JSON.parse(stdout), variant).toEqual(greedyIds(set, variant, promptIndex));
      }
    },
  );

  it("ModelService.Info describes the model from its own files", async () => {
    const config = JSON.parse(readFileSync(join(set.modelDir, "config.json"), "utf8")) as { torch_dtype: string; vocab_size: number };
    const client = createClient(ModelService, createGrpcTransport({ baseUrl: server.ready.url, sessionManager: session }));
    const info = await client.info({});
    expect(info).toMatchObject({
      modelId: set.modelDir,
      modelDtype: dtypeToProto(config.torch_dtype as DtypeName),
      device: Device.CPU,
      vocabSize: config.vocab_size,
    });
    // Room for every adapter it was started with, whatever the slot and rank limits default to.
    expect(info.maxLoras).toBeGreaterThanOrEqual(adapterIds.length);
    expect(info.maxLoraRank).toBeGreaterThanOrEqual(Math.max(...Object.values(set.refs.adapters).map((a) => a.r)));
    expect(info.maxInputTokens).toBeLessThan(info.maxTotalTokens);
    expect(info.version).toBe((JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string }).version);
  });

  it("grpc.health.v1 reports the server and each service SERVING", async () => {
    const health = createClient(Health, createGrpcTransport({ baseUrl: server.ready.url, sessionManager: session }));
    for (const service of ["", "loraserve.v1.GenerateService", "loraserve.v1.ModelService"]) {
      await vi.waitFor(async () => expect((await health.check({ service })).status).toBe(ServingStatus.SERVING), { timeout: 10_000 });
    }
  });
});
