// Turns a shard's token stream into the one-message answer of a unary Generate (and of TGI's /generate).
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  GenerateDetailsSchema,
  GenerateResponseSchema,
  type GenerateRequest,
  type GenerateResponse,
  type GenerateStreamResponse,
  type Token,
} from "../gen/loraserve/v1/generate_pb.js";

export async function collectGeneration(
  request: GenerateRequest,
  stream: AsyncIterable<GenerateStreamResponse>,
): Promise<GenerateResponse> {
  const streamed: Token[] = [];
  for await (const message of stream) {
    if (message.token) streamed.push(message.token);
    if (message.generatedText === undefined) continue;
    const details = message.details ?? create(GenerateDetailsSchema);
    // Each streamed message already carries its token, so the shard need not repeat them all at the end.
    if (request.parameters?.details && details.tokens.length === 0) details.tokens = streamed;
    return create(GenerateResponseSchema, { generatedText: message.generatedText, details });
  }
  throw new ConnectError("the shard ended the stream without its final message", Code.Internal);
}
