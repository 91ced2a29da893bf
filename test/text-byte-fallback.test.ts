// A Llama-2-style tokenizer (Metaspace pre-tokenizer, BPE with byte fallback, the Replace+ByteFallback+Fuse+Strip
// decoder), since the byte-level BPE fixture never exercises byte fallback.
//
// The tokenizer directories under test/fixtures/byte-fallback/ and the transformers answers in its refs.json
// (`tok(text).input_ids`, `tok.decode(ids)`, `tok.decode([id])`, len(tok), special ids) are written by
// `python3 scripts/make_tokenizer_refs.py` (refs.json records the transformers/tokenizers versions). The
// chunk-by-chunk expectations below are our own streaming behaviour; their joined text is checked against refs.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { decodeTokens, type DetokenizeOptions, IncrementalDetokenizer } from "../shard/text/detokenizer.js";
import { TextCodec } from "../shard/text/tokenizer.js";

const FIXTURES = fileURLToPath(new URL("./fixtures/byte-fallback/", import.meta.url));

interface Refs {
  len: number;
  bos_token_id: number;
  eos_token_id: number;
  all_special_ids: number[];
  generation_config: { bos_token_id: number; eos_token_id: number[] };
  token_ids: Record<string, number>;
  encode?: { text: string; ids: number[] }[];
  encode_no_special?: { text: string; ids: number[] }[];
  decode?: { ids: number[]; text: string; skipped: string }[];
  decode_each?: string[];
  decode_out_of_range?: { id: number; text: string };
}
/** The tokenizer directories scripts/make_tokenizer_refs.py writes, each with its references in refs.json. */
type TokenizerName = "llama2" | "metaspace" | "add-bos-false" | "no-post-processor" | "eos-in-vocab" | "extra-special";
const REFS = (JSON.parse(readFileSync(FIXTURES + "refs.json", "utf8")) as { tokenizers: Record<TokenizerName, Refs> }).tokenizers;

const load = (name: TokenizerName) => TextCodec.load(FIXTURES + name);
const encoded = (name: TokenizerName, text: string, key: "encode" | "encode_no_special" = "encode"): number[] => {
  const found = REFS[name][key]?.find((e) => e.text === text);
  if (!found) throw new Error(`refs.json has no ${key} of ${JSON.stringify(text)} for ${name}`);
  return found.ids;
};
const decoded = (name: TokenizerName, ids: number[]): { text: string; skipped: string } => {
  const found = REFS[name].decode?.find((e) => JSON.stringify(e.ids) === JSON.stringify(ids));
  if (!found) throw new Error(`refs.json has no decode of ${JSON.stringify(ids)} for ${name}`);
  return found;
};

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

/** Every chunk an incremental detokenizer returns: one per pushed id, then finish's. */
function chunks(codec: TextCodec, ids: number[], options?: DetokenizeOptions): string[] {
  const detokenizer = new IncrementalDetokenizer(codec, options);
  const out = ids.map((id) => detokenizer.push(id));
  out.push(detokenizer.finish());
  return out;
}

/** chunks(llama2, ids), whose joined text must be transformers' decode of the same ids. */
function streamed(ids: number[], options?: DetokenizeOptions): string[] {
  const out = chunks(llama2, ids, options);
  const ref = decoded("llama2", ids);
  expect(out.join(""), JSON.stringify(ids)).toBe(options?.skipSpecialTokens ? ref.skipped : ref.text);
  return out;
}

const llama2 = load("llama2");
const metaspace = load("metaspace");

describe("byte-fallback tokenizer (Llama-2 style)", () => {
  it("names its tokens with the ids transformers gives them", () => {
    const ids = REFS.llama2.token_ids;
    expect([ids["<s>"], ids["</s>"], ids["<0x00>"], ids["<0xE2>"], ids["\u2581"], ids.h, ids.l, ids.o]).toEqual([BOS, EOS, byte(0), byte(0xe2), SPACE, H, L, O]);
    expect([ids["\u2581hello"], ids["\u2581world"], ids["\u2581\u2581"]]).toEqual([HELLO, WORLD, TWO_SPACES]);
  });

  it("encodes like transformers", () => {
    const cases = REFS.llama2.encode ?? [];
    expect(cases.length).toBeGreaterThan(0);
    for (const { text, ids } of cases) expect([...llama2.encode(text)], JSON.stringify(text)).toEqual(ids);
    expect([...llama2.encode("hello world", { addSpecialTokens: false })]).toEqual(encoded("llama2", "hello world", "encode_no_special"));
  });

  it("takes BOS from tokenizer.json's post-processor alone, as transformers does", () => {
    // add_bos_token false in tokenizer_config.json, and no post-processor in tokenizer.json.
    expect([...load("add-bos-false").encode("hello world")]).toEqual(encoded("add-bos-false", "hello world"));
    expect([...load("no-post-processor").encode("hello world")]).toEqual(encoded("no-post-processor", "hello world"));
  });

  it("treats special tokens the config names as added tokens, as transformers does", () => {
    // "</s>" only in the model vocab, named as eos_token: transformers encodes it whole and counts it special.
    const eosInVocab = load("eos-in-vocab");
    expect([...eosInVocab.encode("hello</s> world")]).toEqual(encoded("eos-in-vocab", "hello</s> world"));
    expect(eosInVocab.isSpecial(EOS)).toBe(REFS["eos-in-vocab"].all_special_ids.includes(EOS));
    // "ll" named in additional_special_tokens: transformers splits "hello" around it and skips it on decode.
    const extra = load("extra-special");
    expect([...extra.encode("hello world")]).toEqual(encoded("extra-special", "hello world"));
    expect(decodeTokens(extra, [268, 271], { skipSpecialTokens: true })).toBe(decoded("extra-special", [268, 271]).skipped);
  });

  it("knows BOS, EOS and the vocab size", () => {
    const refs = REFS.llama2;
    expect(llama2.bosTokenId).toBe(refs.bos_token_id);
    expect(llama2.eosTokenIds).toEqual(new Set(refs.generation_config.eos_token_id));
    expect(llama2.eosTokenIds.has(refs.eos_token_id)).toBe(true);
    expect(llama2.vocabSize).toBe(refs.len);
    expect([...llama2.tokenBytes(byte(0xe2))]).toEqual([0xe2]);
    expect(new TextDecoder().decode(llama2.tokenBytes(HELLO))).toBe(" hello");
    expect(llama2.tokenBytes(refs.len)).toHaveLength(0);
  });

  it("decodes like transformers, whole and token by token, with and without special tokens", () => {
    const cases = REFS.llama2.decode ?? [];
    expect(cases.length).toBeGreaterThan(0);
    for (const { ids, text, skipped } of cases) {
      expect(decodeTokens(llama2, ids), JSON.stringify(ids)).toBe(text);
      expect(chunks(llama2, ids).join(""), JSON.stringify(ids)).toBe(text);
      expect(decodeTokens(llama2, ids, { skipSpecialTokens: true }), JSON.stringify(ids)).toBe(skipped);
      expect(chunks(llama2, ids, { skipSpecialTokens: true }).join(""), JSON.stringify(ids)).toBe(skipped);
    }
  });

  it("decodes each token alone like transformers' decode([id])", () => {
    const each = REFS.llama2.decode_each ?? [];
    expect(each).toHaveLength(REFS.llama2.len);
    each.forEach((text, id) => expect(llama2.tokenText(id), `id ${id}`).toBe(text));
    const out = REFS.llama2.decode_out_of_range;
    expect(llama2.tokenText(out?.id ?? NaN)).toBe(out?.text); // transformers drops ids it has no token for
  });

  it("emits a byte run once it ends, since a later byte can spoil the whole run", () => {
    expect(streamed([byte(0xe2), byte(0x9c), byte(0x93)])).toEqual(["", "", "", "\u2713"]);
    expect(streamed([HELLO, SPACE, byte(0xf0), byte(0x9f), byte(0x99), byte(0x82), WORLD])).toEqual(["hello", " ", "", "", "", "", "\ud83d\ude42 world", ""]);
    expect(streamed([H, byte(0xc3), byte(0xa9), L, L, O])).toEqual(["h", "", "", "\u00e9l", "l", "o", ""]);
    expect(streamed([HELLO, byte(0xe2), byte(0x9c), WORLD])).toEqual(["hello", "", "", "\ufffd\ufffd world", ""]);
    expect(streamed([byte(0xe2), byte(0x9c), byte(0x93), byte(0x80)])).toEqual(["", "", "", "", "\ufffd\ufffd\ufffd\ufffd"]);
  });

  it("strips the leading space only at the start of the text", () => {
    expect(streamed([HELLO, HELLO, WORLD])).toEqual(["hello", " hello", " world", ""]);
    expect(streamed([SPACE, SPACE, HELLO])).toEqual(["", " ", " hello", ""]);
    expect(streamed([byte(0x20), HELLO])).toEqual(["", " hello", ""]);
    // A skipped special token leaves the next token first; a kept one takes the start itself.
    expect(streamed([BOS, SPACE, HELLO], { skipSpecialTokens: true })).toEqual(["", "", " hello", ""]);
    expect(streamed([BOS, SPACE, HELLO])).toEqual(["<s>", " ", " hello", ""]);
  });
});

describe("Metaspace decoder", () => {
  it("decodes like transformers, dropping the replacement only in the first token", () => {
    const cases = REFS.metaspace.decode ?? [];
    expect(cases.length).toBeGreaterThan(0);
    for (const { ids, text, skipped } of cases) {
      expect(chunks(metaspace, ids).join(""), JSON.stringify(ids)).toBe(text);
      expect(chunks(metaspace, ids, { skipSpecialTokens: true }).join(""), JSON.stringify(ids)).toBe(skipped);
    }
    const each = REFS.metaspace.decode_each ?? [];
    expect(each).toHaveLength(REFS.metaspace.len);
    each.forEach((text, id) => expect(metaspace.tokenText(id), `id ${id}`).toBe(text));
    expect(metaspace.leadingStrip).toBeNull();
  });
});
