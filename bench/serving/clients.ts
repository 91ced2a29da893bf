// The benchmark's streaming clients on the public API, one call per request: gRPC GenerateStream through the
// generated Connect client, and OpenAI's /v1/completions with stream: true read as server-sent events through
// fetch. Both ask for the output length with max tokens and ignore_eos, report each streamed token as it
// arrives, and turn every way a request can go wrong into a ClientFailure of a named kind.
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { GenerateService } from "../../gen/loraserve/v1/generate_pb.js";
import type { Protocol } from "./outcome.js";
import { takeEvents } from "./sse-events.js";

export interface StreamRequest {
  prompt: string;
  adapterId: string;
  maxNewTokens: number;
  /** Aborts the request (the per-request timeout). */
  signal: AbortSignal;
}

/** A request that did not finish; `kind` groups failures in the report. */
export class ClientFailure extends Error {
  constructor(
    readonly kind: string,
    message: string,
  ) {
    super(message);
    this.name = "ClientFailure";
  }
}

/** Streams one request, calling `onToken` per token; resolves when the stream ended well, else throws a ClientFailure. */
export type Streamer = (request: StreamRequest, onToken: () => void) => Promise<void>;

export interface Clients {
  streamers: Record<Protocol, Streamer>;
  close(): void;
}

/**
 * One HTTP/2 connection carries at most the server's stream limit (Node's default: 100) at once; past it the
 * client would queue requests itself and the wait would count as the server's TTFT. Requests spread over
 * this many connections.
 */
const GRPC_CONNECTIONS = 16;

function grpcStreamer(url: string): { stream: Streamer; close(): void } {
  const sessions = Array.from({ length: GRPC_CONNECTIONS }, () => new Http2SessionManager(url));
  const clients: Client<typeof GenerateService>[] = sessions.map((sessionManager) =>
    createClient(GenerateService, createGrpcTransport({ baseUrl: url, sessionManager })),
  );
  let next = 0;
  const stream: Streamer = async ({ prompt, adapterId, maxNewTokens, signal }, onToken) => {
    const client = clients[next++ % clients.length]!;
    try {
      for await (const message of client.generateStream({ inputs: prompt, adapterId, parameters: { maxNewTokens, ignoreEos: true } }, { signal })) {
        if (message.token) onToken();
      }
    } catch (error) {
      const failure = ConnectError.from(error);
      throw new ClientFailure(signal.aborted ? "timeout" : `grpc ${Code[failure.code]}`, failure.rawMessage);
    }
  };
  return { stream, close: () => sessions.forEach((session) => session.abort()) };
}

function openAiStreamer(url: string): Streamer {
  return async ({ prompt, adapterId, maxNewTokens, signal }, onToken) => {
    let response: Response;
    try {
      response = await fetch(`${url}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: adapterId, prompt, max_tokens: maxNewTokens, ignore_eos: true, stream: true }),
        signal,
      });
    } catch (error) {
      throw new ClientFailure(signal.aborted ? "timeout" : "connection", (error as Error).message);
    }
    if (response.status !== 200) throw new ClientFailure(`http ${response.status}`, (await response.text()).slice(0, 300));
    let buffer = "";
    let done = false;
    try {
      for await (const chunk of response.body!.pipeThrough(new TextDecoderStream())) {
        const { events, rest } = takeEvents(buffer + chunk);
        buffer = rest;
        for (const data of events) {
          if (data === "[DONE]") {
            done = true;
            continue;
          }
          const event = JSON.parse(data) as { error?: { message?: string }; choices?: unknown[] };
          if (event.error) throw new ClientFailure("stream error", event.error.message ?? data);
          if (event.choices && event.choices.length > 0) onToken();
        }
      }
    } catch (error) {
      if (error instanceof ClientFailure) throw error;
      throw new ClientFailure(signal.aborted ? "timeout" : "connection", (error as Error).message);
    }
    if (!done) throw new ClientFailure("stream cut", "the event stream ended without [DONE]");
  };
}

export function openClients(url: string): Clients {
  const grpc = grpcStreamer(url);
  return { streamers: { grpc: grpc.stream, openai: openAiStreamer(url) }, close: grpc.close };
}
