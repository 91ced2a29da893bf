// GenerateStreamResponse messages → TGI's /generate_stream events (text-generation-inference
// router/src/lib.rs: StreamResponse, StreamDetails): one per token, the last with the whole text and details.
import type { GenerateStreamResponse } from "../../gen/loraserve/v1/generate_pb.js";
import { tgiFinishReason, tgiToken, type TgiFinishReason, type TgiToken } from "./response.js";

interface TgiStreamDetails {
  finish_reason: TgiFinishReason;
  generated_tokens: number;
  seed: number | null;
  input_length: number;
}

export interface TgiStreamResponse {
  index: number;
  token: TgiToken;
  top_tokens?: TgiToken[];
  generated_text: string | null;
  details: TgiStreamDetails | null;
}

export async function* tgiStreamEvents(messages: AsyncIterable<GenerateStreamResponse>): AsyncIterable<TgiStreamResponse> {
  let index = 0;
  for await (const { token, generatedText, details } of messages) {
    if (!token) throw new Error("the shard sent a stream message without a token");
    index += 1;
    const last = generatedText !== undefined && details !== undefined;
    yield {
      index,
      token: tgiToken(token),
      ...(token.topTokens.length > 0 && { top_tokens: token.topTokens.map(tgiToken) }),
      generated_text: generatedText ?? null,
      details: last
        ? {
            finish_reason: tgiFinishReason(details.finishReason),
            generated_tokens: details.generatedTokens,
            seed: details.seed === undefined ? null : Number(details.seed),
            input_length: details.promptTokens,
          }
        : null,
    };
  }
}
