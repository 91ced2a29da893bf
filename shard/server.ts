// ShardService (proto/loraserve/v1/shard.proto) over cleartext HTTP/2: Connect, gRPC and gRPC-Web on one port.
// Turns requests into sequences of the shared engine loop and its token events into stream messages; input
// errors become ConnectErrors with the code a client can act on.
import { createServer, type Http2Server, type ServerHttp2Session } from "node:http2";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { listen } from "../common/listen.js";
import { requireShardToken } from "../common/shard-token.js";
import { deviceToProto, dtypeToProto, type DeviceName, type DtypeName } from "../common/model-enums.js";
import { TokenizeResponseSchema, type GenerateRequest, type GenerateStreamResponse } from "../gen/loraserve/v1/generate_pb.js";
import { CancelResponseSchema, ShardService, StatusResponseSchema } from "../gen/loraserve/v1/shard_pb.js";
import { AdapterService } from "../gen/loraserve/v1/adapter_pb.js";
import { adapterConnectError, adapterServiceImpl } from "./adapter-service.js";
import { AdapterError } from "./adapters/errors.js";
import { Cancellations } from "./cancellations.js";
import type { AdapterRegistry, AdapterTier } from "./adapters/registry.js";
import { encodePrompt, InvalidRequestError, prepareRequest, type PromptContext } from "./engine/generate-request.js";
import { OverloadedError } from "./engine/admission.js";
import { GenerateStream } from "./engine/generate-stream.js";
import { ShuttingDownError, type LlmEngine, type TokenEvent } from "./engine/llm-engine.js";
import type { GenerationDefaults } from "./model/generation-defaults.js";
import type { ShardLimits } from "./options.js";
import { pathRedactor, type RedactPaths } from "./redact-paths.js";
import { submitObserved, type ShardTelemetry } from "./telemetry/shard-telemetry.js";
import type { ChatTemplates } from "./text/chat-template.js";
import type { PromptEncoder } from "./text/encoder-pool.js";
import { tokenizeWithSpans } from "./text/tokenize.js";
import type { TextCodec } from "./text/tokenizer.js";

/** What Status reports of the model and the engine beyond the limits (ModelService.Info and TGI /info show it). */
export interface ShardModelInfo {
  dtype: DtypeName;
  device: DeviceName;
  vocabSize: number;
  maxLoras: number;
  maxLoraRank: number;
}

export interface ShardContext {
  modelId: string;
  model: ShardModelInfo;
  llm: LlmEngine;
  codec: TextCodec;
  /** Renders and tokenizes prompts off the event loop (EncoderPool), so that a long one stalls no other request. */
  encoder: PromptEncoder;
  chatTemplates: ChatTemplates;
  adapters: AdapterRegistry;
  limits: ShardLimits;
  /** The model's sampling defaults (generation_config.json); absent: sample at temperature 1 (OpenAI's). */
  generationDefaults?: GenerationDefaults;
  /** Traces and engine metrics; absent, nothing is measured. */
  telemetry?: ShardTelemetry;
  /** The adapter roots' real paths, named "<adapter root N>" in errors that anyone may read (shard/redact-paths.ts). */
  adapterRoots?: readonly string[];
}

export interface RunningShardServer {
  port: number;
  /**
   * The drain's first step: Generate and Tokenize are refused UNAVAILABLE (the router moves them to another
   * group) and Status says not ready, while the requests already running go on.
   */
  stopAdmitting(): void;
  /** Stops accepting, drops open connections (in-flight streams end) and waits for the listener to close. */
  close(): Promise<void>;
}

function toConnectError(error: unknown, redact: RedactPaths): ConnectError {
  if (error instanceof ConnectError) return error;
  if (error instanceof AdapterError) return adapterConnectError(error, redact);
  if (error instanceof InvalidRequestError) return new ConnectError(error.message, Code.InvalidArgument);
  if (error instanceof ShuttingDownError) return new ConnectError(error.message, Code.Unavailable);
  // Not Unavailable: the shard is up, a retry elsewhere or later may be taken (the router answers 429).
  if (error instanceof OverloadedError) return new ConnectError(error.message, Code.ResourceExhausted);
  return new ConnectError(`shard error: ${redact((error as Error).message ?? String(error))}`, Code.Internal, undefined, undefined, error);
}

const NOT_ADMITTING = new ConnectError("the shard is shutting down: it takes no new requests", Code.Unavailable);
const CANCELLED = new ConnectError("cancelled by the router", Code.Canceled);

/** `admitting` false: the shard is draining (RunningShardServer.stopAdmitting). */
export function shardServiceImpl(shard: ShardContext, admitting: () => boolean = () => true): ServiceImpl<typeof ShardService> {
  const { llm, codec, adapters, limits } = shard;
  const redact = pathRedactor(shard.adapterRoots ?? []);
  const prompts: PromptContext = {
    encode: (text, options) => shard.encoder.encode(text, options),
    render: (template, messages) => shard.encoder.render(template, messages),
    chatTemplate: (id) => shard.chatTemplates.forAdapter(id === "" ? null : adapters.dirOf(id)),
    limits,
    maxBytesPerToken: codec.maxBytesPerToken,
  };
  /** One Generate call's messages; `signal` aborts when the router cancels it or its stream ends. */
  async function* generateUntil(request: GenerateRequest, context: HandlerContext, signal: AbortSignal): AsyncGenerator<GenerateStreamResponse> {
    let stream: GenerateStream;
    let events: AsyncIterable<TokenEvent>;
    try {
      // First use of an adapter from a root reads and validates it here; its slot load happens in the queue.
      await adapters.prepare(request.adapterId);
      const prepared = await prepareRequest(request, { ...prompts, limits, vocabSize: codec.vocabSize, generationDefaults: shard.generationDefaults ?? { greedy: false } });
      stream = new GenerateStream(codec, prepared);
      events = submitObserved(shard.telemetry, request, prepared.sequence, context, (observer) =>
        // Only stop sequences need the text inside the engine loop; without them it is spelled as it is streamed.
        llm.submit({ ...prepared.sequence, ...(prepared.stop.length > 0 ? { stopCheck: stream } : {}) }, signal, observer),
      );
    } catch (error) {
      throw toConnectError(error, redact);
    }
    try {
      for await (const event of events) yield stream.message(event);
    } catch (error) {
      throw toConnectError(error, redact);
    }
  }
  const cancellations = new Cancellations();
  return {
    async *generate(request, context) {
      if (!admitting()) throw NOT_ADMITTING;
      const cancellation = cancellations.register(context.requestHeader);
      try {
        yield* generateUntil(request, context, AbortSignal.any([context.signal, cancellation.signal]));
      } finally {
        cancellation.done();
      }
      // Its sequence has ended as a cancelled one (llm.submit): the stream says so rather than ending as done.
      if (cancellation.signal.aborted) throw CANCELLED;
    },

    cancel(request) {
      return create(CancelResponseSchema, { cancelled: cancellations.cancel(request.callIds) });
    },

    async tokenize(request) {
      if (!admitting()) throw NOT_ADMITTING;
      try {
        // Only a conversation needs the adapter (its chat template); plain text tokenizes the same for every adapter.
        if (request.messages.length > 0) await adapters.prepare(request.adapterId);
        return create(TokenizeResponseSchema, { tokens: tokenizeWithSpans(codec, (await encodePrompt(request, prompts)).ids) });
      } catch (error) {
        throw toConnectError(error, redact);
      }
    },

    status() {
      const load = llm.load();
      const listed = adapters.list();
      const inTier = (tier: AdapterTier): string[] => listed.filter((adapter) => adapter.tier === tier).map((adapter) => adapter.id);
      return create(StatusResponseSchema, {
        ready: admitting(),
        modelId: shard.modelId,
        adapterIds: adapters.ids(),
        runningSequences: load.running,
        waitingSequences: load.waiting,
        freeKvBlocks: load.freeKvBlocks,
        totalKvBlocks: load.totalKvBlocks,
        maxTotalTokens: limits.maxTotalTokens,
        maxNewTokensLimit: limits.maxNewTokensLimit,
        maxInputTokens: limits.maxInputTokens,
        modelDtype: dtypeToProto(shard.model.dtype),
        device: deviceToProto(shard.model.device),
        vocabSize: shard.model.vocabSize,
        maxLoras: shard.model.maxLoras,
        maxLoraRank: shard.model.maxLoraRank,
        deviceAdapterIds: inTier("device"),
        hostAdapterIds: inTier("host"),
      });
    },
  };
}

/**
 * Serves ShardService on `host:port` (0 picks a free port) over h2c; with a `token`, only to callers that send it
 * (common/shard-token.ts).
 */
/** How long a closing shard lets each HTTP/2 session send what its ended streams still owe before destroying it. */
const SESSION_CLOSE_GRACE_MS = 2000;

export async function startShardServer(shard: ShardContext, port: number, host = "127.0.0.1", token: string | null = null): Promise<RunningShardServer> {
  let admitting = true;
  const handler = connectNodeAdapter({
    interceptors: token === null ? [] : [requireShardToken(token)],
    routes: (router: ConnectRouter) =>
      router
        .service(ShardService, shardServiceImpl(shard, () => admitting))
        .service(AdapterService, adapterServiceImpl(shard.adapters, pathRedactor(shard.adapterRoots ?? []))),
  });
  const server: Http2Server = createServer(handler);
  // An HTTP/2 server only finishes closing when its sessions are gone; clients keep theirs open.
  const sessions = new Set<ServerHttp2Session>();
  server.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  });
  const boundPort = await listen(server, port, host);
  return {
    port: boundPort,
    stopAdmitting: () => {
      admitting = false;
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        // Gracefully first: the streams that the engine's close just ended still have their final status (the
        // trailers) to send, and a destroyed session drops them ("missing status" instead of UNAVAILABLE, which
        // the router fails over on). A session still open after the grace is destroyed.
        for (const session of sessions) {
          session.close();
          setTimeout(() => session.destroy(), SESSION_CLOSE_GRACE_MS).unref();
        }
      }),
  };
}
