// What every OpenAI answer carries, streamed or not: an id, the creation time, the model as the client named
// it, the finish reason and the token counts.
import { randomUUID } from "node:crypto";
import { FinishReason, type GenerateDetails } from "../../gen/loraserve/v1/generate_pb.js";

export interface Identity {
  id: string;
  created: number;
  model: string;
}

export function identity(prefix: "cmpl" | "chatcmpl", model: string): Identity {
  return { id: `${prefix}-${randomUUID()}`, created: Math.floor(Date.now() / 1000), model };
}

/** OpenAI knows two endings: the length limit, or a natural stop (end of sequence or a stop sequence). */
export function finishReason(details: GenerateDetails | undefined): "stop" | "length" {
  return details?.finishReason === FinishReason.LENGTH ? "length" : "stop";
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export function usage(details: GenerateDetails | undefined): Usage {
  const prompt = details?.promptTokens ?? 0;
  const completion = details?.generatedTokens ?? 0;
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}
