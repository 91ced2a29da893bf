// POST /v1/chat/completions: the conversation goes to the shard as `messages`, which renders it with the
// chat template (the adapter's own when it ships one); the answer comes back whole or streamed.
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import {
  GenerateRequestSchema,
  type ChatMessageSchema,
  type GenerateResponse,
  type GenerateStreamResponse,
} from "../../gen/loraserve/v1/generate_pb.js";
import type { Exchange } from "../http-route.js";
import { isJsonObject, JsonFields, UINT32_MAX } from "../json-fields.js";
import { answer, type PreparedRequest } from "./answer.js";
import { chatLogprobs } from "./logprobs.js";
import { adapterOf } from "./model-name.js";
import { invalidField, openAiRoute } from "./openai-error.js";
import { readOpenAiRequest } from "./request.js";
import { finishReason, usage, type Identity } from "./response.js";

/** OpenAI's upper bound of `top_logprobs`. */
const MAX_TOP_LOGPROBS = 20;

type ChatMessageInit = MessageInitShape<typeof ChatMessageSchema>;

interface ChatRequest extends PreparedRequest {
  includeUsage: boolean;
  logprobs: boolean;
}

/** A message's content: a string, or a list of text parts (joined, as TGI does); null for an empty turn. */
function contentOf(content: unknown, param: string): string {
  if (content === null || content === undefined) return "";
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    return content
      .map((part: unknown) => {
        if (isJsonObject(part) && part.type === "text" && typeof part.text === "string") return part.text;
        throw invalidField(param, "only text content parts ({type: \"text\", text}) are supported");
      })
      .join("");
  }
  throw invalidField(param, "a message's `content` must be a string or a list of text parts");
}

function messagesOf(value: unknown): ChatMessageInit[] {
  if (!Array.isArray(value) || value.length === 0) throw invalidField("messages", "`messages` must be a non-empty list of messages");
  return value.map((message: unknown, i) => {
    const param = `messages[${i}]`;
    if (!isJsonObject(message)) throw invalidField(param, "each message must be an object with `role` and `content`");
    const fields = new JsonFields(message, (_, text) => invalidField(param, text));
    const role = fields.string("role");
    if (!role) throw invalidField(`${param}.role`, "each message needs a `role`");
    const toolCalls = fields.raw("tool_calls");
    if (Array.isArray(toolCalls) && toolCalls.length > 0) throw invalidField(`${param}.tool_calls`, "tool calls are not supported");
    return { role, content: contentOf(fields.raw("content"), `${param}.content`) };
  });
}

async function readRequest({ body, pool }: Exchange): Promise<ChatRequest> {
  const request = readOpenAiRequest(await body(), ["messages", "max_completion_tokens", "top_logprobs", "response_format"]);
  const { fields } = request;
  const responseType = fields.object("response_format")?.string("type");
  if (responseType !== undefined && responseType !== "text") {
    throw invalidField("response_format", `response_format ${JSON.stringify(responseType)} is not supported; only "text" is`);
  }
  const logprobs = fields.boolean("logprobs") ?? false;
  const topLogprobs = fields.integer("top_logprobs", 0, MAX_TOP_LOGPROBS);
  if (topLogprobs !== undefined && !logprobs) throw invalidField("top_logprobs", "`top_logprobs` needs `logprobs: true`");
  const generate = create(GenerateRequestSchema, {
    messages: messagesOf(fields.raw("messages")),
    adapterId: await adapterOf(request.model, pool),
    parameters: {
      ...request.parameters,
      maxNewTokens: fields.integer("max_completion_tokens", 0, UINT32_MAX) ?? request.parameters.maxNewTokens,
      details: logprobs,
      topNTokens: topLogprobs ?? 0,
    },
  });
  return { model: request.model, generate, stream: request.stream, includeUsage: request.includeUsage, logprobs };
}

async function* chatChunks(meta: Identity, request: ChatRequest, messages: AsyncIterable<GenerateStreamResponse>) {
  const base = { ...meta, object: "chat.completion.chunk" as const, ...(request.includeUsage && { usage: null }) };
  const chunk = (delta: { role?: "assistant"; content?: string }, logprobs: unknown, finish: string | null) => ({
    ...base,
    choices: [{ index: 0, delta, logprobs, finish_reason: finish }],
  });
  let first = true;
  for await (const message of messages) {
    // The role opens the answer once the shard has accepted the request (its refusals come before a token).
    if (first) yield chunk({ role: "assistant", content: "" }, null, null);
    first = false;
    if (message.text !== "" || request.logprobs) {
      yield chunk({ content: message.text }, request.logprobs ? chatLogprobs([message.token!]) : null, null);
    }
    if (message.generatedText !== undefined) {
      yield chunk({}, null, finishReason(message.details));
      if (request.includeUsage) yield { ...base, choices: [], usage: usage(message.details) };
    }
  }
}

function whole(meta: Identity, request: ChatRequest, { generatedText, details }: GenerateResponse) {
  return {
    ...meta,
    object: "chat.completion",
    choices: [
      {
        index: 0,
        message: { role: "assistant", content: generatedText },
        logprobs: request.logprobs ? chatLogprobs(details?.tokens ?? []) : null,
        finish_reason: finishReason(details),
      },
    ],
    usage: usage(details),
  };
}

export const chatCompletionsRoute = openAiRoute(async (exchange) => {
  const request = await readRequest(exchange);
  await answer(exchange, request, {
    idPrefix: "chatcmpl",
    chunks: (meta, messages) => chatChunks(meta, request, messages),
    whole: (meta, response) => whole(meta, request, response),
  });
});
