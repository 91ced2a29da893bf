// One request's token events → GenerateStreamResponse messages with text. Each message's `text` is what its
// token completes (never half a UTF-8 character, never text that a stop sequence may still cut: that is held
// back until decided); the last one carries the whole generated text (special tokens skipped, as TGI does; the
// prompt first with return_full_text) and the details. The generated text continues the prompt, so its first
// token keeps its leading space.
//
// The stream is also the sequence's StopCheck: the engine loop hands it each token as it is drawn, so the
// stop decision is made with the token, and `message` later picks up the text that token completed.
import { create } from "@bufbuild/protobuf";
import {
  FinishReason,
  GenerateStreamResponseSchema,
  TokenSchema,
  type GenerateStreamResponse,
  type Token,
} from "../../gen/loraserve/v1/generate_pb.js";
import { IncrementalDetokenizer } from "../text/detokenizer.js";
import { StopSequenceMatcher } from "../text/stop-sequences.js";
import type { TextCodec } from "../text/tokenizer.js";
import type { PreparedRequest } from "./generate-request.js";
import type { SequenceFinish, TokenEvent } from "./llm-engine.js";
import type { GeneratedToken, StopCheck } from "./sequence.js";

const FINISH_REASONS: Record<SequenceFinish["reason"], FinishReason> = {
  length: FinishReason.LENGTH,
  eos_token: FinishReason.EOS_TOKEN,
  stop_sequence: FinishReason.STOP_SEQUENCE,
};

export class GenerateStream implements StopCheck {
  private readonly detokenizer: IncrementalDetokenizer;
  private readonly matcher: StopSequenceMatcher;
  private readonly tokens: Token[] = [];
  /** Final text of the tokens checked but not yet turned into messages, oldest first. */
  private readonly pending: string[] = [];
  private stopped = false;
  private text = "";

  constructor(
    private readonly codec: TextCodec,
    private readonly request: PreparedRequest,
  ) {
    this.detokenizer = new IncrementalDetokenizer(codec, { skipSpecialTokens: true, continuation: true });
    this.matcher = new StopSequenceMatcher(request.stop);
  }

  stopsAt(tokenId: number): boolean {
    const match = this.matcher.push(this.detokenizer.push(tokenId));
    this.pending.push(match.text);
    this.stopped = match.stopped;
    return match.stopped;
  }

  message(event: TokenEvent): GenerateStreamResponse {
    // Without stop sequences the loop never asks stopsAt (shard/server.ts): the text is spelled here, off its path.
    if (this.pending.length === 0) this.stopsAt(event.token.id);
    const token = this.tokenMessage(event.token);
    this.tokens.push(token);
    let text = this.pending.shift() ?? "";
    if (!event.finish) {
      this.text += text;
      return create(GenerateStreamResponseSchema, { token, text });
    }
    if (!this.stopped) {
      // What the detokenizer still holds (an open character or byte run) may complete a stop sequence too.
      const tail = this.matcher.push(this.detokenizer.finish());
      this.stopped = tail.stopped;
      text += tail.text + this.matcher.flush();
    }
    this.text += text;
    const { sequence, seed, details, decoderInputDetails } = this.request;
    return create(GenerateStreamResponseSchema, {
      token,
      text,
      generatedText: this.request.returnFullText ? this.request.promptText + this.text : this.text,
      details: {
        finishReason: this.stopped ? FinishReason.STOP_SEQUENCE : FINISH_REASONS[event.finish.reason],
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
