// Server reflection checked with clients that carry their own copy of the reflection protocol: `buf curl`
// (Go, connect-go's reflection client) and @grpc/grpc-js with requests and answers encoded by hand from
// upstream's field numbers, so a wrong number in proto/grpc/reflection would fail here.
import { fromBinary } from "@bufbuild/protobuf";
import { BinaryReader, BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { FileDescriptorProtoSchema, type FileDescriptorProto } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GenerateService } from "../gen/loraserve/v1/generate_pb.js";
import { ShardService } from "../gen/loraserve/v1/shard_pb.js";
import { HealthStatuses, registerHealth, ServingStatus } from "../router/grpc-health.js";
import { listenOnePort, type OnePortServer } from "../router/one-port-server.js";
import { registerReflection } from "../router/reflection.js";

const BUF = new URL("../node_modules/.bin/buf", import.meta.url).pathname;

/** Streams the prompt back one character per message; the last message carries the whole text. */
const echoGenerate: Partial<ServiceImpl<typeof GenerateService>> = {
  generate: (request) => ({ generatedText: request.inputs }),
  async *generateStream(request) {
    const characters = [...request.inputs];
    for (const [i, character] of characters.entries()) {
      yield {
        token: { id: character.codePointAt(0) ?? 0, text: character },
        text: character,
        ...(i === characters.length - 1 && { generatedText: request.inputs }),
      };
    }
  },
};

// ShardService is here because its file imports generate.proto: lookups must return both files.
const EXPECTED_SERVICES = [
  "loraserve.v1.GenerateService",
  "loraserve.v1.ShardService",
  "grpc.health.v1.Health",
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
];

const handler = connectNodeAdapter({
  routes: (router) => {
    router.service(GenerateService, echoGenerate).service(ShardService, {});
    registerHealth(router, new HealthStatuses({ "": ServingStatus.SERVING }));
    registerReflection(router);
  },
});
let server: OnePortServer;
let baseUrl = "";
let grpcClient: grpc.Client;

beforeAll(async () => {
  server = await listenOnePort(handler, 0, "127.0.0.1");
  const { port } = server;
  baseUrl = `http://127.0.0.1:${port}`;
  grpcClient = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
});

afterAll(async () => {
  grpcClient.close();
  await server.close();
});

async function bufCurl(...args: string[]): Promise<string> {
  const { stdout } = await promisify(execFile)(BUF, ["curl", "--http2-prior-knowledge", ...args]);
  return stdout;
}

/** buf curl prints each message as an indented JSON document; only top-level braces start a line. */
function jsonDocuments(stdout: string): unknown[] {
  return JSON.parse(`[${stdout.trim().replace(/\n}\n{/g, "\n},\n{")}]`) as unknown[];
}

describe("buf curl, schema from reflection only", () => {
  it.each(["grpc-v1", "grpc-v1alpha"])("lists every registered service over %s", async (reflectProtocol) => {
    const stdout = await bufCurl("--protocol", "grpc", "--reflect-protocol", reflectProtocol, "--list-services", baseUrl);
    expect(stdout.trim().split("\n").sort()).toEqual([...EXPECTED_SERVICES].sort());
  });

  it("lists every method", async () => {
    const stdout = await bufCurl("--protocol", "grpc", "--list-methods", baseUrl);
    expect(stdout.trim().split("\n").sort()).toEqual(
      [
        "grpc.health.v1.Health/Check",
        "grpc.health.v1.Health/List",
        "grpc.health.v1.Health/Watch",
        "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ...[GenerateService, ShardService].flatMap((service) => service.methods.map((m) => `${service.typeName}/${m.name}`)),
      ].sort(),
    );
  });

  it.each(["grpc", "grpcweb", "connect"])("calls GenerateStream over %s", async (protocol) => {
    const stdout = await bufCurl(
      "--protocol",
      protocol,
      "-d",
      '{"inputs":"hi"}',
      `${baseUrl}/loraserve.v1.GenerateService/GenerateStream`,
    );
    expect(jsonDocuments(stdout)).toEqual([
      { token: { id: 104, text: "h" }, text: "h" },
      { token: { id: 105, text: "i" }, text: "i", generatedText: "hi" },
    ]);
  });
});

// Upstream field numbers of ServerReflectionRequest / ServerReflectionResponse and their parts.
const REQUEST = { fileByFilename: 3, fileContainingSymbol: 4, fileContainingExtension: 5, allExtensionNumbersOfType: 6, listServices: 7 };
const RESPONSE = { fileDescriptors: 4, extensionNumbers: 5, listServices: 6, error: 7 };

function request(field: number, value: string): Buffer {
  return Buffer.from(new BinaryWriter().tag(field, WireType.LengthDelimited).string(value).finish());
}

function extensionRequest(containingType: string, extensionNumber: number): Buffer {
  const inner = new BinaryWriter().tag(1, WireType.LengthDelimited).string(containingType).tag(2, WireType.Varint).int32(extensionNumber);
  const outer = new BinaryWriter().tag(REQUEST.fileContainingExtension, WireType.LengthDelimited).bytes(inner.finish());
  return Buffer.from(outer.finish());
}

/** The values of one field in a wire-format message: bytes for length-delimited fields, numbers for varints. */
function wireField(message: Uint8Array, field: number): (Uint8Array | number)[] {
  const reader = new BinaryReader(message);
  const values: (Uint8Array | number)[] = [];
  while (reader.pos < reader.len) {
    const [number, wireType] = reader.tag();
    if (wireType !== WireType.LengthDelimited && wireType !== WireType.Varint) throw new Error(`wire type ${wireType}`);
    const value = wireType === WireType.Varint ? reader.int32() : reader.bytes();
    if (number === field) values.push(value);
  }
  return values;
}

function onlyMessage(message: Uint8Array, field: number): Uint8Array {
  const values = wireField(message, field);
  expect(values).toHaveLength(1);
  return values[0] as Uint8Array;
}

const text = (bytes: Uint8Array | number): string => new TextDecoder().decode(bytes as Uint8Array);

function fileDescriptors(response: Uint8Array): FileDescriptorProto[] {
  return wireField(onlyMessage(response, RESPONSE.fileDescriptors), 1).map((bytes) =>
    fromBinary(FileDescriptorProtoSchema, bytes as Uint8Array),
  );
}

function errorCode(response: Uint8Array): number | Uint8Array | undefined {
  return wireField(onlyMessage(response, RESPONSE.error), 1)[0];
}

/** One reflection stream through @grpc/grpc-js: all requests, then the answers in order. */
function reflect(version: "v1" | "v1alpha", requests: Buffer[]): Promise<Buffer[]> {
  const call = grpcClient.makeBidiStreamRequest(
    `/grpc.reflection.${version}.ServerReflection/ServerReflectionInfo`,
    (bytes: Buffer) => bytes,
    (bytes: Buffer) => bytes,
  );
  const responses: Buffer[] = [];
  return new Promise((resolve, reject) => {
    call.on("data", (response: Buffer) => responses.push(response));
    call.on("error", reject);
    call.on("end", () => resolve(responses));
    for (const message of requests) call.write(message);
    call.end();
  });
}

describe("@grpc/grpc-js, hand-encoded reflection", () => {
  it.each(["v1", "v1alpha"] as const)("lists every registered service over %s", async (version) => {
    const [response] = await reflect(version, [request(REQUEST.listServices, "")]);
    const services = wireField(onlyMessage(response!, RESPONSE.listServices), 1);
    expect(services.map((service) => text(onlyMessage(service as Uint8Array, 1)))).toEqual(EXPECTED_SERVICES);
  });

  it("returns the file of a symbol with the files it imports", async () => {
    const responses = await reflect("v1", [
      request(REQUEST.fileContainingSymbol, "loraserve.v1.ShardService.Status"),
      request(REQUEST.fileContainingSymbol, "grpc.health.v1.HealthCheckResponse.ServingStatus"),
      request(REQUEST.fileContainingSymbol, "loraserve.v1.FINISH_REASON_LENGTH"),
      request(REQUEST.fileContainingSymbol, "loraserve.v1.GenerationParameters.top_p"),
      request(REQUEST.fileByFilename, "grpc/reflection/v1alpha/reflection.proto"),
    ]);
    const names = responses.map((response) => fileDescriptors(response).map((file) => file.name));
    expect(names).toEqual([
      ["loraserve/v1/shard.proto", "loraserve/v1/generate.proto", "loraserve/v1/model.proto"],
      ["grpc/health/v1/health.proto"],
      ["loraserve/v1/generate.proto"],
      ["loraserve/v1/generate.proto"],
      ["grpc/reflection/v1alpha/reflection.proto"],
    ]);
    const [shard] = fileDescriptors(responses[0]!);
    expect(shard!.dependency).toEqual(["loraserve/v1/generate.proto", "loraserve/v1/model.proto"]);
    expect(shard!.service.map((service) => [service.name, service.method.map((method) => method.name)])).toEqual([
      ["ShardService", ShardService.methods.map((m) => m.name)],
    ]);
  });

  it("answers lookups of unknown names and of extensions with NOT_FOUND or an empty list", async () => {
    const responses = await reflect("v1alpha", [
      request(REQUEST.fileContainingSymbol, "loraserve.v1.NoSuchThing"),
      request(REQUEST.fileByFilename, "no/such.proto"),
      extensionRequest("loraserve.v1.GenerateRequest", 100),
      request(REQUEST.allExtensionNumbersOfType, "loraserve.v1.NoSuchMessage"),
      request(REQUEST.allExtensionNumbersOfType, "loraserve.v1.GenerateRequest"),
    ]);
    const NOT_FOUND = 5;
    expect(responses.slice(0, 4).map(errorCode)).toEqual([NOT_FOUND, NOT_FOUND, NOT_FOUND, NOT_FOUND]);
    const extensionNumbers = onlyMessage(responses[4]!, RESPONSE.extensionNumbers);
    expect(text(onlyMessage(extensionNumbers, 1))).toBe("loraserve.v1.GenerateRequest");
    expect(wireField(extensionNumbers, 2)).toEqual([]);
  });
});
