// Text → tokens with the span of text each one stands for, for the Tokenize RPC and TGI's /tokenize.
// @huggingface/tokenizers reports no offsets, so spans come from decoding the ids one by one: a token's span is
// the text its push completed, in code points of the decoded text (which is the input for lossless tokenizers).
import { IncrementalDetokenizer } from "./detokenizer.js";
import type { TextCodec } from "./tokenizer.js";

export interface TokenSpan {
  id: number;
  text: string;
  start: number;
  stop: number;
}

export function tokenizeWithSpans(codec: TextCodec, ids: Int32Array): TokenSpan[] {
  // Special tokens (BOS) are not part of the text: they get an empty span where they stand.
  const detokenizer = new IncrementalDetokenizer(codec, { skipSpecialTokens: true });
  const spans: TokenSpan[] = [];
  let offset = 0;
  for (const id of ids) {
    const length = [...detokenizer.push(id)].length;
    spans.push({ id, text: codec.tokenText(id), start: offset, stop: offset + length });
    offset += length;
  }
  // A character still open at the end (a byte run) belongs to the last token.
  const tail = [...detokenizer.finish()].length;
  if (tail > 0 && spans.length > 0) spans[spans.length - 1]!.stop += tail;
  return spans;
}
