// GenerateResponse → TGI's /generate JSON (text-generation-inference router/src/lib.rs: GenerateResponse,
// Details, PrefillToken, Token).
import {
  FinishReason,
  type GenerateRequest,
  type GenerateResponse,
  type Token,
  type TopToken,
} from "../../gen/loraserve/v1/generate_pb.js";

export interface TgiToken {
  id: number;
  text: string;
  logprob: number | null;
  special: boolean;
}

type TgiPrefillToken = Omit<TgiToken, "special">;

export type TgiFinishReason = "length" | "eos_token" | "stop_sequence";

interface TgiDetails {
  finish_reason: TgiFinishReason;
  generated_tokens: number;
  seed: number | null;
  prefill: TgiPrefillToken[];
  tokens: TgiToken[];
  top_tokens?: TgiToken[][];
}

export interface TgiGenerateResponse {
  generated_text: string;
  details?: TgiDetails;
}

const FINISH_REASON: Record<FinishReason, TgiFinishReason | undefined> = {
  [FinishReason.UNSPECIFIED]: undefined,
  [FinishReason.LENGTH]: "length",
  [FinishReason.EOS_TOKEN]: "eos_token",
  [FinishReason.STOP_SEQUENCE]: "stop_sequence",
};

export function tgiFinishReason(reason: FinishReason): TgiFinishReason {
  const name = FINISH_REASON[reason];
  if (!name) throw new Error("the shard's answer has no finish reason");
  return name;
}

export function tgiToken(token: Token | TopToken): TgiToken {
  return { id: token.id, text: token.text, logprob: token.logprob ?? null, special: token.special };
}

export function toTgiResponse(request: GenerateRequest, response: GenerateResponse): TgiGenerateResponse {
  const details = response.details;
  if (!request.parameters?.details || !details) return { generated_text: response.generatedText };
  return {
    generated_text: response.generatedText,
    details: {
      finish_reason: tgiFinishReason(details.finishReason),
      generated_tokens: details.generatedTokens,
      seed: details.seed === undefined ? null : Number(details.seed),
      prefill: details.prefill.map(({ id, text, logprob }) => ({ id, text, logprob: logprob ?? null })),
      tokens: details.tokens.map(tgiToken),
      ...(request.parameters.topNTokens > 0 && { top_tokens: details.tokens.map((t) => t.topTokens.map(tgiToken)) }),
    },
  };
}
