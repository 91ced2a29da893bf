// Sends an OpenAI request's GenerateRequest to the shard and answers in the way the client asked: one JSON
// object, or a stream of chunks ending in `data: [DONE]` (an error after the first chunk is an error event).
import type { GenerateRequest, GenerateResponse, GenerateStreamResponse } from "../../gen/loraserve/v1/generate_pb.js";
import { collectGeneration } from "../collect.js";
import type { Exchange } from "../http-route.js";
import { sendJson } from "../json-response.js";
import { sendEventStream } from "../sse.js";
import { openAiErrorOf } from "./openai-error.js";
import { identity, type Identity } from "./response.js";

export interface PreparedRequest {
  /** As the client named it: answers name it back. */
  model: string;
  generate: GenerateRequest;
  stream: boolean;
}

export interface AnswerShapes {
  idPrefix: "cmpl" | "chatcmpl";
  chunks(meta: Identity, messages: AsyncIterable<GenerateStreamResponse>): AsyncIterable<unknown>;
  whole(meta: Identity, answer: GenerateResponse): unknown;
}

export async function answer({ pool, signal, response }: Exchange, request: PreparedRequest, shapes: AnswerShapes): Promise<void> {
  const meta = identity(shapes.idPrefix, request.model);
  const messages = pool.generate(request.generate, { signal });
  if (request.stream) {
    await sendEventStream(response, shapes.chunks(meta, messages), {
      signal,
      errorEvent: (err) => openAiErrorOf(err).body(),
      trailer: "[DONE]",
    });
  } else {
    sendJson(response, 200, shapes.whole(meta, await collectGeneration(messages)));
  }
}
