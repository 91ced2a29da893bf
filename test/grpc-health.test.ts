// grpc.health.v1.Health checked with clients that do not share our generated code: @grpc/grpc-js and Debian's
// python3-grpcio calling the methods by path with upstream's wire bytes, plus Connect's own client for List
// and for Watch over the Connect and gRPC-Web protocols.
import { createClient } from "@connectrpc/connect";
import { connectNodeAdapter, createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { execFile, spawnSync } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { HealthStatuses, registerHealth, ServingStatus } from "../router/grpc-health.js";
import { listenOnePort, type OnePortServer } from "../router/one-port-server.js";

/** Counts open watchers, to see a Watch stop listening once its client has gone. */
class CountingStatuses extends HealthStatuses {
  watchers = 0;
  override onChange(listener: () => void): () => void {
    this.watchers += 1;
    const stop = super.onChange(listener);
    return () => {
      this.watchers -= 1;
      stop();
    };
  }
}

const statuses = new CountingStatuses({ "": ServingStatus.SERVING, "loraserve.v1.GenerateService": ServingStatus.SERVING });
const handler = connectNodeAdapter({ routes: (router) => registerHealth(router, statuses) });
let server: OnePortServer;
let address = "";
let grpcClient: grpc.Client;

beforeAll(async () => {
  server = await listenOnePort(handler, 0, "127.0.0.1");
  address = `127.0.0.1:${server.port}`;
  grpcClient = new grpc.Client(address, grpc.credentials.createInsecure());
});

beforeEach(() => statuses.set("", ServingStatus.SERVING));

afterAll(async () => {
  grpcClient.close();
  await server.close();
});

// Upstream wire format: HealthCheckRequest{string service = 1}, HealthCheckResponse{ServingStatus status = 1}.
function checkRequest(service: string): Buffer {
  const name = Buffer.from(service);
  return service === "" ? Buffer.alloc(0) : Buffer.concat([Buffer.from([0x0a, name.length]), name]);
}
const response = (status: number): Buffer => Buffer.from([0x08, status]);
const SERVING = response(1);
const NOT_SERVING = response(2);
const SERVICE_UNKNOWN = response(3);

const identity = (bytes: Buffer): Buffer => bytes;

function check(service: string): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    grpcClient.makeUnaryRequest("/grpc.health.v1.Health/Check", identity, identity, checkRequest(service), (error, value) =>
      error ? reject(error) : resolve(value!),
    ),
  );
}

describe("@grpc/grpc-js", () => {
  it("checks the whole server and follows the status source", async () => {
    expect(await check("")).toEqual(SERVING);
    statuses.set("", ServingStatus.NOT_SERVING);
    expect(await check("")).toEqual(NOT_SERVING);
    expect(await check("loraserve.v1.GenerateService")).toEqual(SERVING);
  });

  it("fails Check of an unknown service with NOT_FOUND", async () => {
    await expect(check("no.such.Service")).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
  });

  it("watches: the current status, every change, and stops listening when the client leaves", async () => {
    const call = grpcClient.makeServerStreamRequest("/grpc.health.v1.Health/Watch", identity, identity, checkRequest(""));
    const messages = call[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
    expect((await messages.next()).value).toEqual(SERVING);
    statuses.set("", ServingStatus.NOT_SERVING);
    expect((await messages.next()).value).toEqual(NOT_SERVING);
    statuses.set("", ServingStatus.SERVING);
    expect((await messages.next()).value).toEqual(SERVING);
    expect(statuses.watchers).toBe(1);
    call.cancel();
    await vi.waitFor(() => expect(statuses.watchers).toBe(0));
  });

  it("watches an unknown service as SERVICE_UNKNOWN and keeps the stream open until it is known", async () => {
    const call = grpcClient.makeServerStreamRequest("/grpc.health.v1.Health/Watch", identity, identity, checkRequest("later.Service"));
    const messages = call[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
    try {
      expect((await messages.next()).value).toEqual(SERVICE_UNKNOWN);
      statuses.set("later.Service", ServingStatus.SERVING);
      expect((await messages.next()).value).toEqual(SERVING);
    } finally {
      call.cancel();
    }
  });
});

describe("Connect client", () => {
  it("lists every service with its status", async () => {
    const client = createClient(Health, createConnectTransport({ baseUrl: `http://${address}`, httpVersion: "2" }));
    statuses.set("", ServingStatus.NOT_SERVING);
    const { statuses: listed } = await client.list({});
    expect(Object.fromEntries(Object.entries(listed).map(([service, { status }]) => [service, status]))).toMatchObject({
      "": ServingStatus.NOT_SERVING,
      "loraserve.v1.GenerateService": ServingStatus.SERVING,
    });
  });

  it.each([
    ["Connect", createConnectTransport],
    ["gRPC-Web", createGrpcWebTransport],
  ])("watches over %s", async (_protocol, createTransport) => {
    const client = createClient(Health, createTransport({ baseUrl: `http://${address}`, httpVersion: "2" }));
    const leave = new AbortController();
    const messages = client.watch({ service: "" }, { signal: leave.signal })[Symbol.asyncIterator]();
    expect((await messages.next()).value?.status).toBe(ServingStatus.SERVING);
    statuses.set("", ServingStatus.NOT_SERVING);
    expect((await messages.next()).value?.status).toBe(ServingStatus.NOT_SERVING);
    leave.abort();
    await vi.waitFor(() => expect(statuses.watchers).toBe(0));
  });
});

// Raw calls by path: Debian's python3-grpcio has no grpc_health stubs, and bytes in/out keep it independent.
const PYTHON_CLIENT = `
import grpc, json, sys
channel = grpc.insecure_channel(sys.argv[1])
check = channel.unary_unary("/grpc.health.v1.Health/Check")
def outcome(request):
    try:
        return check(request, timeout=10).hex()
    except grpc.RpcError as error:
        return error.code().name
watch = channel.unary_stream("/grpc.health.v1.Health/Watch")(b"", timeout=10)
first = next(watch).hex()
watch.cancel()
print(json.dumps({"check": outcome(b""), "unknown": outcome(bytes.fromhex(sys.argv[2])), "watch": first}))
`;
const SYSTEM_PYTHON = "/usr/bin/python3";
const pythonHasGrpc = spawnSync(SYSTEM_PYTHON, ["-c", "import grpc"]).status === 0;

describe("python3-grpcio", () => {
  it.skipIf(!pythonHasGrpc)(
    `checks and watches${pythonHasGrpc ? "" : " (SKIPPED: /usr/bin/python3 cannot import grpc; apt-get install python3-grpcio)"}`,
    async () => {
      statuses.set("", ServingStatus.NOT_SERVING);
      const { stdout } = await promisify(execFile)(SYSTEM_PYTHON, [
        "-c",
        PYTHON_CLIENT,
        address,
        checkRequest("no.such.Service").toString("hex"),
      ]);
      expect(JSON.parse(stdout)).toEqual({ check: NOT_SERVING.toString("hex"), unknown: "NOT_FOUND", watch: NOT_SERVING.toString("hex") });
    },
  );
});
