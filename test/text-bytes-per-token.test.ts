// The byte bound that refuses a too-long prompt before it is tokenized: on every fixture tokenizer it is the
// longest token's UTF-8 length and no reference prompt has fewer tokens than it allows; tokenizers that can
// drop, shrink or fuse input get no bound at all.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { maxBytesPerToken } from "../shard/text/bytes-per-token.js";
import { readTokenizerSource, TextCodec } from "../shard/text/tokenizer.js";
import { fixtureSets } from "./helpers/fixture-sets.js";

type Json = Record<string, unknown>;
const utf8 = new TextEncoder();
const LLAMA2 = fileURLToPath(new URL("./fixtures/byte-fallback/llama2/", import.meta.url));

/** The longest token string of tokenizer.json, in UTF-8 bytes, read from its vocab and added tokens. */
function longestToken(json: Json): number {
  const vocab = Object.keys((json.model as { vocab: Record<string, number> }).vocab);
  const added = (json.added_tokens as { content: string }[]).map((t) => t.content);
  return Math.max(...[...vocab, ...added].map((token) => utf8.encode(token).length));
}

describe.each(fixtureSets())("the byte bound on $name", ({ modelDir, refs }) => {
  const codec = TextCodec.load(modelDir);
  const json = JSON.parse(readFileSync(join(modelDir, "tokenizer.json"), "utf8")) as Json;

  it("is the longest token's length in bytes (at least one UTF-8 character's 4)", () => {
    expect(codec.maxBytesPerToken).toBe(Math.max(4, longestToken(json)));
  });

  it("never says a reference prompt has more tokens than it has", () => {
    const prompts = refs.prompts.filter((p) => p.text !== null);
    expect(prompts.length).toBeGreaterThan(0);
    for (const prompt of prompts) {
      const fewest = Math.ceil(utf8.encode(prompt.text!).length / codec.maxBytesPerToken!);
      expect(prompt.ids.length, prompt.text!).toBeGreaterThanOrEqual(fewest);
    }
  });
});

describe("tokenizers that give no byte bound", () => {
  const { tokenizerJson } = readTokenizerSource(LLAMA2);
  const tokens = Object.keys((tokenizerJson.model as { vocab: Record<string, number> }).vocab);
  const changed = (change: Json): Json => ({ ...tokenizerJson, ...change });

  it("bounds the unchanged Llama-2 tokenizer", () => {
    expect(maxBytesPerToken(tokenizerJson, tokens)).toBe(Math.max(4, ...tokens.map((t) => utf8.encode(t).length)));
  });

  it.each<[string, Json]>([
    ["a Whitespace pre-tokenizer (drops whitespace)", { pre_tokenizer: { type: "Whitespace" } }],
    ["a WhitespaceSplit inside a Sequence", { pre_tokenizer: { type: "Sequence", pretokenizers: [{ type: "Metaspace" }, { type: "WhitespaceSplit" }] } }],
    ["a Split that removes what it matches", { pre_tokenizer: { type: "Split", pattern: { String: " " }, behavior: "Removed" } }],
    ["an NFKC normalizer (can shrink text)", { normalizer: { type: "NFKC" } }],
    ["a Lowercase normalizer", { normalizer: { type: "Lowercase" } }],
    ["a Replace that shrinks text", { normalizer: { type: "Replace", pattern: { String: "  " }, content: " " } }],
    ["a Replace with a regex", { normalizer: { type: "Replace", pattern: { Regex: "\\s+" }, content: " " } }],
    ["a WordPiece model ([UNK] covers whole words)", { model: { type: "WordPiece", vocab: {} } }],
    ["fused unknown tokens without byte fallback", { model: { ...(tokenizerJson.model as Json), byte_fallback: false, fuse_unk: true } }],
    ["an added token that strips whitespace", { added_tokens: [{ id: 0, content: "<unk>", lstrip: true, rstrip: false, special: true }] }],
    ["truncation", { truncation: { max_length: 8, strategy: "LongestFirst", stride: 0, direction: "Right" } }],
  ])("none for %s", (_, change) => {
    expect(maxBytesPerToken(changed(change), tokens)).toBeNull();
  });
});
