// Token logprobs in OpenAI's two shapes: chat's list of {token, logprob, bytes, top_logprobs} and the legacy
// completions' parallel lists {tokens, token_logprobs, top_logprobs, text_offset}.
import type { Token, TopToken } from "../../gen/loraserve/v1/generate_pb.js";

interface ChatTopLogprob {
  token: string;
  logprob: number | null;
  bytes: number[];
}

export interface ChatLogprob extends ChatTopLogprob {
  top_logprobs: ChatTopLogprob[];
}

export interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: (number | null)[];
  top_logprobs: Record<string, number>[];
  text_offset: number[];
}

function chatTopLogprob(token: Token | TopToken): ChatTopLogprob {
  return { token: token.text, logprob: token.logprob ?? null, bytes: [...Buffer.from(token.text, "utf8")] };
}

export function chatLogprobs(tokens: readonly Token[]): { content: ChatLogprob[] } {
  return { content: tokens.map((token) => ({ ...chatTopLogprob(token), top_logprobs: token.topTokens.map(chatTopLogprob) })) };
}

/**
 * The legacy shape. `offset` is where the first token's text starts in the completion; each top_logprobs
 * entry holds the alternatives and, as OpenAI promises, the drawn token.
 */
export function completionLogprobs(tokens: readonly Token[], offset: number): CompletionLogprobs {
  const textOffset: number[] = [];
  for (const token of tokens) {
    textOffset.push(offset);
    offset += token.text.length;
  }
  return {
    tokens: tokens.map((token) => token.text),
    token_logprobs: tokens.map((token) => token.logprob ?? null),
    top_logprobs: tokens.map((token) =>
      Object.fromEntries([...token.topTokens, token].map((t) => [t.text, t.logprob ?? Number.NaN] as const)),
    ),
    text_offset: textOffset,
  };
}
