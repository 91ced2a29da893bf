// A Llama-2-style tokenizer built here (Metaspace pre-tokenizer, BPE with byte fallback, the
// Replace+ByteFallback+Fuse+Strip decoder), since the byte-level BPE fixture never exercises byte fallback.
//
// References: the directories this file writes were loaded with transformers 5.17.0 / tokenizers 0.23.2
// (`AutoTokenizer.from_pretrained(dir)`: `tok(text).input_ids`, `tok.decode(ids)`, `tok.decode([id])`); the
// values are pasted below.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { decodeTokens, type DetokenizeOptions, IncrementalDetokenizer } from "../shard/text/detokenizer.js";
import { TextCodec } from "../shard/text/tokenizer.js";

const BYTE_TOKENS = Array.from({ length: 256 }, (_, b) => `<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`);
const PIECES = ["▁", "h", "e", "l", "o", "w", "r", "d", "▁h", "ll", "▁he", "▁hell", "▁hello", "▁w", "or", "▁wor", "▁worl", "▁world", "▁▁"];
const MERGES = ["▁ h", "l l", "▁h e", "▁he ll", "▁hell o", "▁ w", "o r", "▁w or", "▁wor l", "▁worl d", "▁ ▁"];

/** Id of the byte-fallback token for byte `b`. */
const byte = (b: number) => 3 + b;
const SPACE = 259; // "▁"
const H = 260;
const L = 262;
const O = 263;
const HELLO = 271; // "▁hello"
const WORLD = 276; // "▁world"
const TWO_SPACES = 277; // "▁▁"
const BOS = 1;
const EOS = 2;

const LLAMA2_DECODER = {
  type: "Sequence",
  decoders: [
    { type: "Replace", pattern: { String: "▁" }, content: " " },
    { type: "ByteFallback" },
    { type: "Fuse" },
    { type: "Strip", content: " ", start: 1, stop: 0 },
  ],
};
const METASPACE_DECODER = { type: "Metaspace", replacement: "▁", prepend_scheme: "first", split: false };

const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });

function tokenizerJson(decoder: object): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  ["<unk>", "<s>", "</s>", ...BYTE_TOKENS, ...PIECES].forEach((t, id) => (vocab[t] = id));
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [special(0, "<unk>"), special(BOS, "<s>"), special(EOS, "</s>")],
    normalizer: null,
    pre_tokenizer: { type: "Metaspace", replacement: "▁", prepend_scheme: "first", split: false },
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: "<s>", type_id: 1 } }, { Sequence: { id: "B", type_id: 1 } }],
      special_tokens: { "<s>": { id: "<s>", ids: [BOS], tokens: ["<s>"] } },
    },
    decoder,
    model: { type: "BPE", dropout: null, unk_token: "<unk>", continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: true, byte_fallback: true, ignore_merges: false, vocab, merges: MERGES },
  };
}

const TOKENIZER_CONFIG = {
  tokenizer_class: "PreTrainedTokenizerFast",
  bos_token: "<s>",
  eos_token: "</s>",
  unk_token: "<unk>",
  add_bos_token: true,
  add_eos_token: false,
  clean_up_tokenization_spaces: false,
};

const scratch = mkdtempSync(join(tmpdir(), "loraserve-text-byte-fallback-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function modelDir(name: string, json: object, config: object = TOKENIZER_CONFIG): string {
  const dir = join(scratch, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(json));
  writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify(config));
  writeFileSync(join(dir, "generation_config.json"), JSON.stringify({ bos_token_id: BOS, eos_token_id: [EOS, 5] }));
  return dir;
}

/** Every chunk an incremental detokenizer returns: one per pushed id, then finish's. */
function chunks(codec: TextCodec, ids: number[], options?: DetokenizeOptions): string[] {
  const detokenizer = new IncrementalDetokenizer(codec, options);
  const out = ids.map((id) => detokenizer.push(id));
  out.push(detokenizer.finish());
  return out;
}

const llama2 = TextCodec.load(modelDir("llama2", tokenizerJson(LLAMA2_DECODER)));
const metaspace = TextCodec.load(modelDir("metaspace", tokenizerJson(METASPACE_DECODER)));

// transformers: tok(text).input_ids
const ENCODED: [string, number[]][] = [
  ["hello world", [1, 271, 276]],
  ["hello", [1, 271]],
  [" hello", [1, 271]],
  ["hello  world", [1, 271, 259, 276]],
  ["h\u00e9llo \u2713 \ud83d\ude42", [1, 267, 198, 172, 268, 263, 259, 229, 159, 150, 259, 243, 162, 156, 133]],
  ["", [1]],
  ["<s>hello", [1, 1, 260, 261, 268, 263]],
  ["hello</s> world", [1, 271, 2, 276]],
  ["\u65e5\u672c", [1, 259, 233, 154, 168, 233, 159, 175]],
  ["\n", [1, 259, 13]],
  ["world hello world", [1, 276, 271, 276]],
  ["  ", [1, 277]],
];

// transformers: [ids, tok.decode(ids), tok.decode(ids, skip_special_tokens=True)]. A byte run that is not
// valid UTF-8 as a whole becomes one U+FFFD per byte, even its valid characters ("\u2713\x80", "A\xff").
const DECODED: [number[], string, string][] = [
  [[271, 276], "hello world", "hello world"],
  [[1, 271, 276], "<s> hello world", "hello world"],
  [[229, 159, 150], "\u2713", "\u2713"],
  [[271, 259, 243, 162, 156, 133], "hello \ud83d\ude42", "hello \ud83d\ude42"],
  [[260, 198, 172, 262, 262, 263], "h\u00e9llo", "h\u00e9llo"],
  [[35, 271], " hello", " hello"],
  [[277, 271], "  hello", "  hello"],
  [[259, 259, 271], "  hello", "  hello"],
  [[271, 229, 159, 276], "hello\ufffd\ufffd world", "hello\ufffd\ufffd world"],
  [[131, 131], "\ufffd\ufffd", "\ufffd\ufffd"],
  [[229, 159, 150, 131], "\ufffd\ufffd\ufffd\ufffd", "\ufffd\ufffd\ufffd\ufffd"],
  [[243, 162], "\ufffd\ufffd", "\ufffd\ufffd"],
  [[68, 258], "\ufffd\ufffd", "\ufffd\ufffd"],
  [[2, 271], "</s> hello", "hello"],
  [[271, 1, 271], "hello<s> hello", "hello hello"],
  [[242, 190, 194, 271], "\ufeff hello", "\ufeff hello"],
  [[0], "<unk>", ""],
  [[3], "\u0000", "\u0000"],
  [[1], "<s>", ""],
  [[1, 259, 271], "<s>  hello", " hello"],
  [[259], "", ""],
];

// The same for the Metaspace decoder, which has no byte fallback: byte tokens stay literal.
const DECODED_METASPACE: [number[], string, string][] = [
  [[271, 276], "hello world", "hello world"],
  [[1, 271, 276], "<s> hello world", "hello world"],
  [[229, 159, 150], "<0xE2><0x9C><0x93>", "<0xE2><0x9C><0x93>"],
  [[35, 271], "<0x20> hello", "<0x20> hello"],
  [[277, 271], " hello", " hello"],
  [[259, 259, 271], "  hello", "  hello"],
  [[2, 271], "</s> hello", "hello"],
  [[271, 1, 271], "hello<s> hello", "hello hello"],
  [[1, 259, 271], "<s>  hello", " hello"],
  [[259], "", ""],
];

// transformers: tok.decode([id]) for every id
const SINGLE_LLAMA2 = [
  "<unk>", "<s>", "</s>", "\u0000", "\u0001", "\u0002", "\u0003", "\u0004", "\u0005", "\u0006", "\u0007", "\b", "\t", "\n", "\u000b", "\f",
  "\r", "\u000e", "\u000f", "\u0010", "\u0011", "\u0012", "\u0013", "\u0014", "\u0015", "\u0016", "\u0017", "\u0018", "\u0019", "\u001a", "\u001b", "\u001c",
  "\u001d", "\u001e", "\u001f", "", "!", "\"", "#", "$", "%", "&", "'", "(", ")", "*", "+", ",",
  "-", ".", "/", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", ":", ";", "<",
  "=", ">", "?", "@", "A", "B", "C", "D", "E", "F", "G", "H", "I", "J", "K", "L",
  "M", "N", "O", "P", "Q", "R", "S", "T", "U", "V", "W", "X", "Y", "Z", "[", "\\",
  "]", "^", "_", "`", "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l",
  "m", "n", "o", "p", "q", "r", "s", "t", "u", "v", "w", "x", "y", "z", "{", "|",
  "}", "~", "\u007f", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd",
  "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd",
  "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd",
  "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd",
  "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd",
  "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd",
  "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd",
  "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd", "\ufffd",
  "\ufffd", "\ufffd", "\ufffd", "", "h", "e", "l", "o", "w", "r", "d", "h", "ll", "he", "hell", "hello",
  "w", "or", "wor", "worl", "world", " ",
];
const SINGLE_METASPACE = [
  "<unk>", "<s>", "</s>", "<0x00>", "<0x01>", "<0x02>", "<0x03>", "<0x04>", "<0x05>", "<0x06>", "<0x07>", "<0x08>", "<0x09>", "<0x0A>", "<0x0B>", "<0x0C>",
  "<0x0D>", "<0x0E>", "<0x0F>", "<0x10>", "<0x11>", "<0x12>", "<0x13>", "<0x14>", "<0x15>", "<0x16>", "<0x17>", "<0x18>", "<0x19>", "<0x1A>", "<0x1B>", "<0x1C>",
  "<0x1D>", "<0x1E>", "<0x1F>", "<0x20>", "<0x21>", "<0x22>", "<0x23>", "<0x24>", "<0x25>", "<0x26>", "<0x27>", "<0x28>", "<0x29>", "<0x2A>", "<0x2B>", "<0x2C>",
  "<0x2D>", "<0x2E>", "<0x2F>", "<0x30>", "<0x31>", "<0x32>", "<0x33>", "<0x34>", "<0x35>", "<0x36>", "<0x37>", "<0x38>", "<0x39>", "<0x3A>", "<0x3B>", "<0x3C>",
  "<0x3D>", "<0x3E>", "<0x3F>", "<0x40>", "<0x41>", "<0x42>", "<0x43>", "<0x44>", "<0x45>", "<0x46>", "<0x47>", "<0x48>", "<0x49>", "<0x4A>", "<0x4B>", "<0x4C>",
  "<0x4D>", "<0x4E>", "<0x4F>", "<0x50>", "<0x51>", "<0x52>", "<0x53>", "<0x54>", "<0x55>", "<0x56>", "<0x57>", "<0x58>", "<0x59>", "<0x5A>", "<0x5B>", "<0x5C>",
  "<0x5D>", "<0x5E>", "<0x5F>", "<0x60>", "<0x61>", "<0x62>", "<0x63>", "<0x64>", "<0x65>", "<0x66>", "<0x67>", "<0x68>", "<0x69>", "<0x6A>", "<0x6B>", "<0x6C>",
  "<0x6D>", "<0x6E>", "<0x6F>", "<0x70>", "<0x71>", "<0x72>", "<0x73>", "<0x74>", "<0x75>", "<0x76>", "<0x77>", "<0x78>", "<0x79>", "<0x7A>", "<0x7B>", "<0x7C>",
  "<0x7D>", "<0x7E>", "<0x7F>", "<0x80>", "<0x81>", "<0x82>", "<0x83>", "<0x84>", "<0x85>", "<0x86>", "<0x87>", "<0x88>", "<0x89>", "<0x8A>", "<0x8B>", "<0x8C>",
  "<0x8D>", "<0x8E>", "<0x8F>", "<0x90>", "<0x91>", "<0x92>", "<0x93>", "<0x94>", "<0x95>", "<0x96>", "<0x97>", "<0x98>", "<0x99>", "<0x9A>", "<0x9B>", "<0x9C>",
  "<0x9D>", "<0x9E>", "<0x9F>", "<0xA0>", "<0xA1>", "<0xA2>", "<0xA3>", "<0xA4>", "<0xA5>", "<0xA6>", "<0xA7>", "<0xA8>", "<0xA9>", "<0xAA>", "<0xAB>", "<0xAC>",
  "<0xAD>", "<0xAE>", "<0xAF>", "<0xB0>", "<0xB1>", "<0xB2>", "<0xB3>", "<0xB4>", "<0xB5>", "<0xB6>", "<0xB7>", "<0xB8>", "<0xB9>", "<0xBA>", "<0xBB>", "<0xBC>",
  "<0xBD>", "<0xBE>", "<0xBF>", "<0xC0>", "<0xC1>", "<0xC2>", "<0xC3>", "<0xC4>", "<0xC5>", "<0xC6>", "<0xC7>", "<0xC8>", "<0xC9>", "<0xCA>", "<0xCB>", "<0xCC>",
  "<0xCD>", "<0xCE>", "<0xCF>", "<0xD0>", "<0xD1>", "<0xD2>", "<0xD3>", "<0xD4>", "<0xD5>", "<0xD6>", "<0xD7>", "<0xD8>", "<0xD9>", "<0xDA>", "<0xDB>", "<0xDC>",
  "<0xDD>", "<0xDE>", "<0xDF>", "<0xE0>", "<0xE1>", "<0xE2>", "<0xE3>", "<0xE4>", "<0xE5>", "<0xE6>", "<0xE7>", "<0xE8>", "<0xE9>", "<0xEA>", "<0xEB>", "<0xEC>",
  "<0xED>", "<0xEE>", "<0xEF>", "<0xF0>", "<0xF1>", "<0xF2>", "<0xF3>", "<0xF4>", "<0xF5>", "<0xF6>", "<0xF7>", "<0xF8>", "<0xF9>", "<0xFA>", "<0xFB>", "<0xFC>",
  "<0xFD>", "<0xFE>", "<0xFF>", "", "h", "e", "l", "o", "w", "r", "d", "h", "ll", "he", "hell", "hello",
  "w", "or", "wor", "worl", "world", "",
];

describe("byte-fallback tokenizer (Llama-2 style)", () => {
  it("encodes like transformers", () => {
    for (const [text, ids] of ENCODED) expect([...llama2.encode(text)], JSON.stringify(text)).toEqual(ids);
    expect([...llama2.encode("hello world", { addSpecialTokens: false })]).toEqual([HELLO, WORLD]);
  });

  it("takes BOS from tokenizer.json's post-processor alone, as transformers 5.17 does", () => {
    // transformers gave [1, 271, 276] with add_bos_token false, and [271, 276] with no post-processor.
    const noFlag = TextCodec.load(modelDir("add-bos-false", tokenizerJson(LLAMA2_DECODER), { ...TOKENIZER_CONFIG, add_bos_token: false }));
    expect([...noFlag.encode("hello world")]).toEqual([BOS, HELLO, WORLD]);
    const noPost = TextCodec.load(modelDir("no-post-processor", { ...tokenizerJson(LLAMA2_DECODER), post_processor: null }));
    expect([...noPost.encode("hello world")]).toEqual([HELLO, WORLD]);
  });

  it("treats special tokens the config names as added tokens, as transformers does", () => {
    // "</s>" only in the model vocab, named as eos_token: transformers encodes it whole and counts it special.
    const json = tokenizerJson(LLAMA2_DECODER);
    const eosInVocab = TextCodec.load(modelDir("eos-in-vocab", { ...json, added_tokens: (json.added_tokens as unknown[]).slice(0, 2) }));
    expect([...eosInVocab.encode("hello</s> world")]).toEqual([1, 271, 2, 276]);
    expect(eosInVocab.isSpecial(EOS)).toBe(true);
    // "ll" named in additional_special_tokens: transformers gave [1, 269, 268, 263, 276] and skips it on decode.
    const extra = TextCodec.load(modelDir("extra-special", json, { ...TOKENIZER_CONFIG, additional_special_tokens: ["ll"] }));
    expect([...extra.encode("hello world")]).toEqual([1, 269, 268, 263, 276]);
    expect(decodeTokens(extra, [268, 271], { skipSpecialTokens: true })).toBe("hello");
  });

  it("knows BOS, EOS and the vocab size", () => {
    expect(llama2.bosTokenId).toBe(BOS);
    expect(llama2.eosTokenIds).toEqual(new Set([EOS, 5]));
    expect(llama2.vocabSize).toBe(278); // transformers: len(tok)
    expect([...llama2.tokenBytes(byte(0xe2))]).toEqual([0xe2]);
    expect(new TextDecoder().decode(llama2.tokenBytes(HELLO))).toBe(" hello");
    expect(llama2.tokenBytes(278)).toHaveLength(0);
  });

  it("decodes like transformers, whole and token by token, with and without special tokens", () => {
    for (const [ids, text, skipped] of DECODED) {
      expect(decodeTokens(llama2, ids), JSON.stringify(ids)).toBe(text);
      expect(chunks(llama2, ids).join(""), JSON.stringify(ids)).toBe(text);
      expect(decodeTokens(llama2, ids, { skipSpecialTokens: true }), JSON.stringify(ids)).toBe(skipped);
      expect(chunks(llama2, ids, { skipSpecialTokens: true }).join(""), JSON.stringify(ids)).toBe(skipped);
    }
  });

  it("decodes each token alone like transformers' decode([id])", () => {
    SINGLE_LLAMA2.forEach((text, id) => expect(llama2.tokenText(id), `id ${id}`).toBe(text));
    expect(llama2.tokenText(278)).toBe(""); // transformers drops ids it has no token for
  });

  it("emits a byte run once it ends, since a later byte can spoil the whole run", () => {
    expect(chunks(llama2, [byte(0xe2), byte(0x9c), byte(0x93)])).toEqual(["", "", "", "\u2713"]);
    expect(chunks(llama2, [HELLO, SPACE, byte(0xf0), byte(0x9f), byte(0x99), byte(0x82), WORLD])).toEqual(["hello", " ", "", "", "", "", "\ud83d\ude42 world", ""]);
    expect(chunks(llama2, [H, byte(0xc3), byte(0xa9), L, L, O])).toEqual(["h", "", "", "\u00e9l", "l", "o", ""]);
    expect(chunks(llama2, [HELLO, byte(0xe2), byte(0x9c), WORLD])).toEqual(["hello", "", "", "\ufffd\ufffd world", ""]);
    expect(chunks(llama2, [byte(0xe2), byte(0x9c), byte(0x93), byte(0x80)])).toEqual(["", "", "", "", "\ufffd\ufffd\ufffd\ufffd"]);
  });

  it("strips the leading space only at the start of the text", () => {
    expect(chunks(llama2, [HELLO, HELLO, WORLD])).toEqual(["hello", " hello", " world", ""]);
    expect(chunks(llama2, [SPACE, SPACE, HELLO])).toEqual(["", " ", " hello", ""]);
    expect(chunks(llama2, [byte(0x20), HELLO])).toEqual(["", " hello", ""]);
    // A skipped special token leaves the next token first; a kept one takes the start itself.
    expect(chunks(llama2, [BOS, SPACE, HELLO], { skipSpecialTokens: true })).toEqual(["", "", " hello", ""]);
    expect(chunks(llama2, [BOS, SPACE, HELLO])).toEqual(["<s>", " ", " hello", ""]);
  });
});

describe("Metaspace decoder", () => {
  it("decodes like transformers, dropping the replacement only in the first token", () => {
    for (const [ids, text, skipped] of DECODED_METASPACE) {
      expect(chunks(metaspace, ids).join(""), JSON.stringify(ids)).toBe(text);
      expect(chunks(metaspace, ids, { skipSpecialTokens: true }).join(""), JSON.stringify(ids)).toBe(skipped);
    }
    SINGLE_METASPACE.forEach((text, id) => expect(metaspace.tokenText(id), `id ${id}`).toBe(text));
    expect(metaspace.leadingStrip).toBeNull();
  });
});
