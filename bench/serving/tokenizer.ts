// A generated tokenizer for the benchmark's random models: it spells every id of the vocabulary (so whatever id a
// random model draws decodes, and the LM head is as wide as the real one's), and it encodes the benchmark's
// prompts one character per token, so a prompt of n characters from PROMPT_ALPHABET is exactly n tokens. It is
// a BPE model with no merges: every character of the alphabet is a token of its own and nothing merges them;
// the ids past the alphabet are words that only ever come out of the model.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { seededRandom } from "./workload.js";

const SPECIAL = ["<unk>", "<s>", "</s>"] as const;
export const PROMPT_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/** Writes tokenizer.json and tokenizer_config.json for a vocabulary of `vocabSize` ids into `dir`. */
export function writeGeneratedTokenizer(dir: string, vocabSize: number): void {
  const fixed = SPECIAL.length + PROMPT_ALPHABET.length;
  if (vocabSize < fixed) throw new Error(`the generated tokenizer needs a vocabulary of at least ${fixed} ids, got ${vocabSize}`);
  const vocab: Record<string, number> = {};
  SPECIAL.forEach((token, id) => (vocab[token] = id));
  [...PROMPT_ALPHABET].forEach((char, i) => (vocab[char] = SPECIAL.length + i));
  // "▁" stands for a space, as in SentencePiece vocabularies: the decoder turns it back.
  for (let id = fixed; id < vocabSize; id++) vocab[`\u2581w${id}`] = id;
  const tokenizer = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: SPECIAL.map((content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: null,
    pre_tokenizer: null,
    post_processor: null,
    decoder: { type: "Sequence", decoders: [{ type: "Replace", pattern: { String: "\u2581" }, content: " " }, { type: "Fuse" }] },
    model: { type: "BPE", dropout: null, unk_token: "<unk>", continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, vocab, merges: [] },
  };
  writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(tokenizer));
  writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify({ bos_token: "<s>", eos_token: "</s>", unk_token: "<unk>", add_bos_token: false }));
}

/**
 * The prompt of request `index`: `tokens` characters of PROMPT_ALPHABET, drawn from the run's seed so that no two
 * requests share a prefix worth caching (a prefix cache would otherwise make the benchmark's prompts free).
 * With the generated tokenizer it is exactly `tokens` tokens; with another it is close to that.
 */
export function promptText(seed: number, index: number, tokens: number): string {
  const random = seededRandom((seed * 1_000_003 + index * 7919) >>> 0);
  let text = "";
  for (let i = 0; i < tokens; i++) text += PROMPT_ALPHABET[Math.floor(random() * PROMPT_ALPHABET.length)];
  return text;
}
