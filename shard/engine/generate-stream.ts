// One request's token events → GenerateStreamResponse messages with text. Each message's `text` is what its
// token completes (never half a UTF-8 character); the last one carries the whole generated text (special
// tokens skipped, as TGI does) and the details. The generated text continues the prompt, so its first token
// keeps its leading space.
import { create } from "@bufbuild/protobuf";
import {
  FinishReason,
  GenerateStreamResponseSchema,
  TokenSchema,
  type GenerateStreamResponse,
  type Token,
} from "../../gen/loraserve/v1/generate_pb.js";
import { IncrementalDetokenizer } from "../text/detokenizer.js";
import type { TextCodec } from "../text/tokenizer.js";
import type { PreparedRequest } from "./generate-request.js";
import type { SequenceFinish, TokenEvent } from "./llm-engine.js";
import type { GeneratedToken } from "./sequence.js";

const FINISH_REASONS: Record<SequenceFinish["reason"], FinishReason> = {
  length: FinishReason.LENGTH,
  eos_token: FinishReason.EOS_TOKEN,
};

export class GenerateStream {
  private readonly detokenizer: IncrementalDetokenizer;
  private readonly tokens: Token[] = [];
  private text = "";

  constructor(
    private readonly codec: TextCodec,
    private readonly request: PreparedRequest,
  ) {
    this.detokenizer = new IncrementalDetokenizer(codec, { skipSpecialTokens: true, continuation: true });
  }

  message(event: TokenEvent): GenerateStreamResponse {
    const token = this.tokenMessage(event.token);
    this.tokens.push(token);
    let text = this.detokenizer.push(token.id);
    if (!event.finish) {
      this.text += text;
      return create(GenerateStreamResponseSchema, { token, text });
    }
    text += this.detokenizer.finish();
    this.text += text;
    const { sequence, seed, details, decoderInputDetails } = this.request;
    return create(GenerateStreamResponseSchema, {
      token,
      text,
      generatedText: this.text,
      details: {
        finishReason: FINISH_REASONS[event.finish.reason],
        generatedTokens: this.tokens.length,
        promptTokens: sequence.promptIds.length,
        seed,
        prefill: decoderInputDetails ? this.prefill(event.finish.promptLogprobs) : [],
        tokens: details ? this.tokens : [],
      },
    });
  }

  private tokenMessage({ id, logprob, top }: GeneratedToken): Token {
    return create(TokenSchema, {
      ...this.describe(id),
      logprob,
      topTokens: top.map((alt) => ({ ...this.describe(alt.id), logprob: alt.logprob })),
    });
  }

  /** Prompt tokens with the logprob each had given the ones before it; the first has none. */
  private prefill(logprobs: Float32Array | null): Token[] {
    return Array.from(this.request.sequence.promptIds, (id, i) => {
      const logprob = logprobs?.[i];
      return create(TokenSchema, { ...this.describe(id), logprob: i === 0 || logprob === undefined ? undefined : logprob });
    });
  }

  private describe(id: number): { id: number; text: string; special: boolean } {
    return { id, text: this.codec.tokenText(id), special: this.codec.isSpecial(id) };
  }
}
