// gRPC server reflection (grpc.reflection.v1 and the older v1alpha, which grpcurl asks for first): lets grpcurl,
// buf curl and Postman list, describe and call our services with no .proto files. No npm package implements it
// for connect-node; the descriptors it serves are the ones protoc-gen-es embeds in gen/.
import {
  create,
  fromBinary,
  toBinary,
  type DescExtension,
  type DescFile,
  type DescMessage,
  type DescService,
  type MessageShape,
  type MessageInitShape,
} from "@bufbuild/protobuf";
import { nestedTypes } from "@bufbuild/protobuf/reflect";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import {
  ServerReflection,
  ServerReflectionRequestSchema,
  ServerReflectionResponseSchema,
  type ServerReflectionRequest,
  type ServerReflectionResponse,
} from "../gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../gen/grpc/reflection/v1alpha/reflection_pb.js";

/** The services a router serves and every file they need, indexed by the names reflection clients ask for. */
class DescriptorIndex {
  readonly serviceNames: string[];
  private readonly filesByPath = new Map<string, DescFile>();
  private readonly filesBySymbol = new Map<string, DescFile>();
  /** Every known message, with the extensions that extend it (usually none). */
  private readonly extensionsByMessage = new Map<string, DescExtension[]>();

  constructor(services: DescService[]) {
    this.serviceNames = services.map((service) => service.typeName);
    for (const service of services) this.addFile(service.file);
  }

  fileByPath(path: string): DescFile | undefined {
    return this.filesByPath.get(path);
  }

  fileBySymbol(fullName: string): DescFile | undefined {
    return this.filesBySymbol.get(fullName);
  }

  /** undefined when no message of that name is known. */
  extensionsOf(messageName: string): DescExtension[] | undefined {
    return this.extensionsByMessage.get(messageName);
  }

  private addFile(file: DescFile): void {
    // file.proto.name is the path clients ask for ("loraserve/v1/generate.proto"); file.name lacks ".proto".
    if (this.filesByPath.has(file.proto.name)) return;
    this.filesByPath.set(file.proto.name, file);
    for (const dependency of file.dependencies) this.addFile(dependency);
    for (const type of nestedTypes(file)) {
      this.filesBySymbol.set(type.typeName, file);
      switch (type.kind) {
        case "message":
          this.addMessage(type);
          break;
        case "enum": {
          // Enum values are scoped like C++ enumerators: siblings of their enum, not children.
          const scope = type.typeName.slice(0, type.typeName.length - type.name.length);
          for (const value of type.values) this.filesBySymbol.set(scope + value.name, file);
          break;
        }
        case "service":
          for (const method of type.methods) this.filesBySymbol.set(`${type.typeName}.${method.name}`, file);
          break;
        case "extension":
          this.extensionsByMessage.set(type.extendee.typeName, [...(this.extensionsOf(type.extendee.typeName) ?? []), type]);
          break;
      }
    }
  }

  private addMessage(message: DescMessage): void {
    if (!this.extensionsByMessage.has(message.typeName)) this.extensionsByMessage.set(message.typeName, []);
    for (const member of [...message.fields, ...message.oneofs]) {
      this.filesBySymbol.set(`${message.typeName}.${member.name}`, message.file);
    }
  }
}

/** The file first, then everything it imports, each once: a client needs all of them to build the file. */
function withDependencies(file: DescFile, seen = new Set<DescFile>()): DescFile[] {
  if (seen.has(file)) return [];
  seen.add(file);
  return [file, ...file.dependencies.flatMap((dependency) => withDependencies(dependency, seen))];
}

function answer(index: DescriptorIndex, request: ServerReflectionRequest): ServerReflectionResponse {
  const reply = (messageResponse: MessageInitShape<typeof ServerReflectionResponseSchema>["messageResponse"]): ServerReflectionResponse =>
    create(ServerReflectionResponseSchema, { validHost: request.host, originalRequest: request, messageResponse });
  const notFound = (what: string): ServerReflectionResponse =>
    reply({ case: "errorResponse", value: { errorCode: Code.NotFound, errorMessage: `${what} not found` } });
  const files = (file: DescFile | undefined, what: string): ServerReflectionResponse =>
    file === undefined
      ? notFound(what)
      : reply({
          case: "fileDescriptorResponse",
          value: { fileDescriptorProto: withDependencies(file).map((f) => toBinary(FileDescriptorProtoSchema, f.proto)) },
        });

  const lookup = request.messageRequest;
  switch (lookup.case) {
    case "listServices":
      return reply({
        case: "listServicesResponse",
        value: { service: index.serviceNames.map((name) => ({ name })) },
      });
    case "fileByFilename":
      return files(index.fileByPath(lookup.value), `file "${lookup.value}"`);
    case "fileContainingSymbol":
      return files(index.fileBySymbol(lookup.value), `symbol "${lookup.value}"`);
    case "fileContainingExtension": {
      const { containingType, extensionNumber } = lookup.value;
      const extension = index.extensionsOf(containingType)?.find((e) => e.number === extensionNumber);
      return files(extension?.file, `extension ${extensionNumber} of "${containingType}"`);
    }
    case "allExtensionNumbersOfType": {
      const extensions = index.extensionsOf(lookup.value);
      if (extensions === undefined) return notFound(`message "${lookup.value}"`);
      return reply({
        case: "allExtensionNumbersResponse",
        value: { baseTypeName: lookup.value, extensionNumber: extensions.map((e) => e.number) },
      });
    }
    case undefined:
      throw new ConnectError("the reflection request asks for nothing (message_request is unset)", Code.InvalidArgument);
  }
}

/** Every service registered on the router, once each, in registration order. */
function servicesOf(router: ConnectRouter): DescService[] {
  return [...new Set(router.handlers.map((handler) => handler.service))];
}

async function* reflect(
  router: ConnectRouter,
  requests: AsyncIterable<ServerReflectionRequest>,
): AsyncIterable<ServerReflectionResponse> {
  // Indexed when the stream opens, so services registered after registerReflection are included.
  const index = new DescriptorIndex(servicesOf(router));
  for await (const request of requests) yield answer(index, request);
}

/** v1alpha and v1 messages have identical fields and numbers: the bytes of one are a valid other. */
function translate<From extends DescMessage, To extends DescMessage>(
  from: From,
  to: To,
): (message: MessageShape<From>) => MessageShape<To> {
  return (message) => fromBinary(to, toBinary(from, message));
}

const toV1Request = translate(v1alpha.ServerReflectionRequestSchema, ServerReflectionRequestSchema);
const toV1alphaResponse = translate(ServerReflectionResponseSchema, v1alpha.ServerReflectionResponseSchema);

async function* reflectV1alpha(
  router: ConnectRouter,
  requests: AsyncIterable<v1alpha.ServerReflectionRequest>,
): AsyncIterable<v1alpha.ServerReflectionResponse> {
  async function* asV1(): AsyncIterable<ServerReflectionRequest> {
    for await (const request of requests) yield toV1Request(request);
  }
  for await (const response of reflect(router, asV1())) yield toV1alphaResponse(response);
}

/**
 * Serves grpc.reflection.v1 and grpc.reflection.v1alpha ServerReflection on the router. They describe every
 * service registered on the same router, before or after this call (the reflection services included), with
 * the descriptors protoc-gen-es generated.
 */
export function registerReflection(router: ConnectRouter): ConnectRouter {
  return router
    .service(ServerReflection, { serverReflectionInfo: (requests) => reflect(router, requests) })
    .service(v1alpha.ServerReflection, { serverReflectionInfo: (requests) => reflectV1alpha(router, requests) });
}
