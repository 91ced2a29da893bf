// POST /v1/completions: OpenAI's (legacy) text completion of one prompt, whole or streamed.
import { create } from "@bufbuild/protobuf";
import { GenerateRequestSchema, type GenerateResponse, type GenerateStreamResponse } from "../../gen/loraserve/v1/generate_pb.js";
import type { Exchange } from "../http-route.js";
import { answer, type PreparedRequest } from "./answer.js";
import { completionLogprobs } from "./logprobs.js";
import { adapterOf } from "./model-name.js";
import { invalidField, openAiRoute } from "./openai-error.js";
import { readOpenAiRequest } from "./request.js";
import { finishReason, usage, type Identity } from "./response.js";

/** OpenAI's default for completions (chat has none: there the server's limit applies). */
const DEFAULT_MAX_TOKENS = 16;
/** OpenAI's upper bound of `logprobs` for completions. */
const MAX_LOGPROBS = 5;

interface CompletionRequest extends PreparedRequest {
  includeUsage: boolean;
  /** Legacy `logprobs`: undefined for none, else the number of alternatives per token. */
  logprobs: number | undefined;
}

function promptOf(value: unknown): string {
  // A list of one prompt is the same request; several prompts would be several choices (n > 1).
  const prompts = Array.isArray(value) ? value : [value];
  if (prompts.length !== 1 || typeof prompts[0] !== "string") {
    throw invalidField("prompt", "`prompt` must be one string (or a list of one string)");
  }
  return prompts[0];
}

async function readRequest({ body, pool }: Exchange): Promise<CompletionRequest> {
  const request = readOpenAiRequest(await body(), ["prompt", "best_of"]);
  const { fields } = request;
  // One sequence is generated: best_of may only ask for that.
  fields.integer("best_of", 1, 1);
  const logprobs = fields.integer("logprobs", 0, MAX_LOGPROBS);
  const generate = create(GenerateRequestSchema, {
    inputs: promptOf(fields.raw("prompt")),
    adapterId: await adapterOf(request.model, pool),
    parameters: {
      ...request.parameters,
      maxNewTokens: request.parameters.maxNewTokens ?? DEFAULT_MAX_TOKENS,
      details: logprobs !== undefined,
      topNTokens: logprobs ?? 0,
    },
  });
  return { model: request.model, generate, stream: request.stream, includeUsage: request.includeUsage, logprobs };
}

async function* completionChunks(meta: Identity, request: CompletionRequest, messages: AsyncIterable<GenerateStreamResponse>) {
  const base = { ...meta, object: "text_completion" as const, ...(request.includeUsage && { usage: null }) };
  let offset = 0;
  for await (const message of messages) {
    const last = message.generatedText !== undefined;
    yield {
      ...base,
      choices: [
        {
          index: 0,
          text: message.text,
          logprobs: request.logprobs === undefined ? null : completionLogprobs([message.token!], offset),
          finish_reason: last ? finishReason(message.details) : null,
        },
      ],
    };
    offset += message.token?.text.length ?? 0;
    if (last && request.includeUsage) yield { ...base, choices: [], usage: usage(message.details) };
  }
}

function whole(meta: Identity, request: CompletionRequest, { generatedText, details }: GenerateResponse) {
  return {
    ...meta,
    object: "text_completion",
    choices: [
      {
        index: 0,
        text: generatedText,
        logprobs: request.logprobs === undefined ? null : completionLogprobs(details?.tokens ?? [], 0),
        finish_reason: finishReason(details),
      },
    ],
    usage: usage(details),
  };
}

export const completionsRoute = openAiRoute(async (exchange) => {
  const request = await readRequest(exchange);
  await answer(exchange, request, {
    idPrefix: "cmpl",
    chunks: (meta, messages) => completionChunks(meta, request, messages),
    whole: (meta, response) => whole(meta, request, response),
  });
});
