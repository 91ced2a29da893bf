// Turns a shard's token stream into the one-message answer of a unary Generate (and of TGI's /generate):
// the last message carries the whole text and the details (tokens included when they were asked for).
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { GenerateResponseSchema, type GenerateResponse, type GenerateStreamResponse } from "../gen/loraserve/v1/generate_pb.js";

export async function collectGeneration(stream: AsyncIterable<GenerateStreamResponse>): Promise<GenerateResponse> {
  for await (const message of stream) {
    if (message.generatedText !== undefined) {
      return create(GenerateResponseSchema, { generatedText: message.generatedText, details: message.details });
    }
  }
  throw new ConnectError("the shard ended the stream without its final message", Code.Internal);
}
