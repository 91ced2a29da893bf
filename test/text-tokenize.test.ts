// Tokenize's spans: ids as the reference tokenizer gives them, and spans that tile the text.
import { describe, expect, it } from "vitest";
import { decodeTokens } from "../shard/text/detokenizer.js";
import { tokenizeWithSpans } from "../shard/text/tokenize.js";
import { TextCodec } from "../shard/text/tokenizer.js";
import { fixtureSets } from "./helpers/fixture-sets.js";

describe.each(fixtureSets())("tokenize on $name", ({ modelDir, refs }) => {
  const codec = TextCodec.load(modelDir);
  const prompts = refs.prompts.filter((p) => p.text !== null);

  it("gives the reference ids, each with a span of the text it stands for", () => {
    for (const prompt of prompts) {
      const text = prompt.text!;
      const spans = tokenizeWithSpans(codec, codec.encode(text));
      expect(spans.map((s) => s.id)).toEqual(prompt.ids);
      // Spans are contiguous and in order; special tokens (BOS) take no text.
      spans.forEach((s, i) => expect(s.start).toBe(i === 0 ? 0 : spans[i - 1]!.stop));
      for (const s of spans.filter((s) => codec.isSpecial(s.id))) expect(s.stop).toBe(s.start);
      const decoded = decodeTokens(codec, prompt.ids, { skipSpecialTokens: true });
      const chars = [...decoded];
      expect(spans.at(-1)!.stop).toBe(chars.length);
      // A whole-character token without a leading strip (byte-level BPE) spans exactly its own text.
      if (codec.leadingStrip === null) {
        for (const s of spans.filter((s) => !codec.isSpecial(s.id) && !codec.tokenText(s.id).includes("\ufffd"))) {
          expect(chars.slice(s.start, s.stop).join("")).toBe(codec.tokenText(s.id));
        }
      }
    }
  });
});
