// A model directory's tokenizer: text → ids through @huggingface/tokenizers as transformers 5 encodes with
// add_special_tokens=True, and for each id the bytes, text and special-ness that detokenizing and the
// engine loop need. Decoding never goes through the library (see token-bytes.ts).
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { readJsonFile } from "../model/config.js";
import { LoadError } from "../model/load-error.js";
import { maxBytesPerToken } from "./bytes-per-token.js";
import { decodeTokens, type DetokenizerVocab } from "./detokenizer.js";
import { TokenByteTable, type LeadingStrip } from "./token-bytes.js";

type Json = Record<string, unknown>;

export interface EncodeOptions {
  /** Add BOS/EOS as the post-processor says (default true); false for text that already spells them, e.g. a chat template's output. */
  addSpecialTokens?: boolean;
}

interface AddedTokenJson {
  id: number;
  content: string;
  single_word: boolean;
  lstrip: boolean;
  rstrip: boolean;
  normalized: boolean;
  special: boolean;
}

/** Config keys whose values transformers treats as special tokens. */
export const SPECIAL_TOKEN_KEYS = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"];
const SPECIAL_TOKEN_LIST_KEYS = ["additional_special_tokens", "extra_special_tokens"];

/** A JSON object file that may be absent ({} then). */
export function optionalJson(path: string): Json {
  return existsSync(path) ? readJsonFile(path) : {};
}

/** A config token is a string or an AddedToken object with `content`. */
export function contentOf(value: unknown): string | null {
  if (typeof value === "string") return value;
  if (typeof value === "object" && value !== null && typeof (value as Json).content === "string") return (value as Json).content as string;
  return null;
}

function flag(spec: unknown, key: string, fallback: boolean): boolean {
  const value = typeof spec === "object" && spec !== null ? (spec as Json)[key] : undefined;
  return typeof value === "boolean" ? value : fallback;
}

/** The id the tokenizer model's own vocab gives `content` (BPE/WordPiece/WordLevel map, or Unigram list). */
function modelVocabId(model: Json, content: string): number | undefined {
  const vocab = model.vocab;
  if (Array.isArray(vocab)) {
    const id = vocab.findIndex((entry) => Array.isArray(entry) && entry[0] === content);
    return id >= 0 ? id : undefined;
  }
  const id = typeof vocab === "object" && vocab !== null ? (vocab as Json)[content] : undefined;
  return typeof id === "number" ? id : undefined;
}

/**
 * transformers also registers the special tokens the config files name, and `added_tokens_decoder`, as added
 * tokens when tokenizer.json has them only in the model vocab: they then encode as one token and count as
 * special. Returns tokenizer.json's added tokens plus those.
 */
function addedTokens(path: string, tokenizerJson: Json, config: Json): AddedTokenJson[] {
  if (!Array.isArray(tokenizerJson.added_tokens)) throw new LoadError(path, "missing the added_tokens list");
  const tokens = tokenizerJson.added_tokens as AddedTokenJson[];
  const candidates: { spec: unknown; special: boolean }[] = [];
  for (const key of SPECIAL_TOKEN_KEYS) candidates.push({ spec: config[key], special: true });
  for (const key of SPECIAL_TOKEN_LIST_KEYS) {
    const list = config[key];
    const values = Array.isArray(list) ? list : typeof list === "object" && list !== null ? Object.values(list) : [];
    for (const spec of values) candidates.push({ spec, special: true });
  }
  const decoderEntries = config.added_tokens_decoder;
  if (typeof decoderEntries === "object" && decoderEntries !== null) {
    for (const spec of Object.values(decoderEntries)) candidates.push({ spec, special: flag(spec, "special", false) });
  }
  const known = new Set(tokens.map((t) => t.content));
  const model = (tokenizerJson.model ?? {}) as Json;
  const extra: AddedTokenJson[] = [];
  for (const { spec, special } of candidates) {
    const content = contentOf(spec);
    if (content === null || known.has(content)) continue;
    const id = modelVocabId(model, content);
    if (id === undefined) continue;
    known.add(content);
    extra.push({
      id,
      content,
      special,
      single_word: flag(spec, "single_word", false),
      lstrip: flag(spec, "lstrip", false),
      rstrip: flag(spec, "rstrip", false),
      normalized: flag(spec, "normalized", !special),
    });
  }
  return [...tokens, ...extra];
}

function tokenIds(path: string, value: unknown): number[] {
  if (value === undefined || value === null) return [];
  const list = Array.isArray(value) ? value : [value];
  for (const id of list) {
    if (!Number.isSafeInteger(id) || id < 0) throw new LoadError(path, `token id must be a non-negative integer, got ${JSON.stringify(id)}`);
  }
  return list as number[];
}

/** What `new Tokenizer` is built from: tokenizer.json with the added tokens transformers registers, and its configs. */
export interface TokenizerSource {
  /** tokenizer.json, named in errors. */
  path: string;
  /** tokenizer.json with `added_tokens` completed (see addedTokens). */
  tokenizerJson: Json;
  tokenizerConfig: Json;
  added: AddedTokenJson[];
  /** tokenizer_config.json overridden by special_tokens_map.json, as transformers reads the special tokens. */
  config: Json;
}

/** Reads a model directory's tokenizer files; errors are LoadErrors naming the file. */
export function readTokenizerSource(modelDir: string): TokenizerSource {
  const dir = resolve(modelDir);
  const path = join(dir, "tokenizer.json");
  const json = readJsonFile(path);
  const tokenizerConfig = optionalJson(join(dir, "tokenizer_config.json"));
  // transformers lets special_tokens_map.json override tokenizer_config.json's special tokens.
  const config = { ...tokenizerConfig, ...optionalJson(join(dir, "special_tokens_map.json")) };
  const added = addedTokens(path, json, config);
  return { path, tokenizerJson: { ...json, added_tokens: added }, tokenizerConfig, added, config };
}

export function buildTokenizer({ path, tokenizerJson, tokenizerConfig }: TokenizerSource): Tokenizer {
  try {
    return new Tokenizer(tokenizerJson, tokenizerConfig);
  } catch (err) {
    throw new LoadError(path, `cannot build the tokenizer: ${(err as Error).message}`);
  }
}

/** Text this tokenizer has no tokens for: the request's fault, not the server's. */
export class UnencodableTextError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UnencodableTextError";
  }
}

/**
 * The library's ids for `text` as an Int32Array; it yields undefined for a piece with no token when the model
 * has no unknown token, which is refused here.
 */
export function checkedIds(text: string, ids: readonly (number | undefined)[]): Int32Array {
  if (ids.some((id) => id === undefined)) {
    throw new UnencodableTextError(`cannot encode ${JSON.stringify(text.slice(0, 80))}: a piece has no token and the tokenizer has no unknown token`);
  }
  return Int32Array.from(ids as number[]);
}

export class TextCodec implements DetokenizerVocab {
  /** Ids 0 .. vocabSize-1 cover the model vocab and every added token (HF's `len(tokenizer)`). */
  readonly vocabSize: number;
  readonly bosTokenId: number | null;
  /** generation_config.json's `eos_token_id` (one or a list) and the tokenizer's `eos_token`. */
  readonly eosTokenIds: ReadonlySet<number>;
  readonly leadingStrip: LeadingStrip | null;
  /** The most input bytes one token stands for; null when this tokenizer gives no such bound (bytes-per-token.ts). */
  readonly maxBytesPerToken: number | null;

  private constructor(
    private readonly tokenizer: Tokenizer,
    private readonly table: TokenByteTable,
    private readonly specialIds: ReadonlySet<number>,
    vocabSize: number,
    bosTokenId: number | null,
    eosTokenIds: ReadonlySet<number>,
    maxBytesPerToken: number | null,
  ) {
    this.vocabSize = vocabSize;
    this.maxBytesPerToken = maxBytesPerToken;
    this.bosTokenId = bosTokenId;
    this.eosTokenIds = eosTokenIds;
    this.leadingStrip = table.leadingStrip;
  }

  /**
   * Reads tokenizer.json (required) and, when present, tokenizer_config.json, special_tokens_map.json and
   * generation_config.json from `modelDir`. Errors are LoadErrors naming the file.
   */
  static load(modelDir: string): TextCodec {
    const source = readTokenizerSource(modelDir);
    const { path: tokenizerPath, tokenizerJson, added, config } = source;
    const generationPath = join(resolve(modelDir), "generation_config.json");
    const generationConfig = optionalJson(generationPath);
    const tokenizer = buildTokenizer(source);

    const ids = [...tokenizer.get_vocab(true).values(), ...added.map((t) => t.id)];
    const vocabSize = ids.reduce((max, id) => Math.max(max, id + 1), 0);
    const tokens = Array.from({ length: vocabSize }, (_, id) => tokenizer.id_to_token(id));
    const table = TokenByteTable.compile(tokenizerPath, tokenizerJson.decoder, tokens);
    const specialIds = new Set(added.filter((t) => t.special).map((t) => t.id));

    const idOf = (key: string): number | null => {
      const content = contentOf(config[key]);
      return content === null ? null : (tokenizer.token_to_id(content) ?? null);
    };
    const bosTokenId = idOf("bos_token") ?? tokenIds(generationPath, generationConfig.bos_token_id)[0] ?? null;
    const eosTokenId = idOf("eos_token");
    const eosTokenIds = new Set(tokenIds(generationPath, generationConfig.eos_token_id));
    if (eosTokenId !== null) eosTokenIds.add(eosTokenId);

    return new TextCodec(tokenizer, table, specialIds, vocabSize, bosTokenId, eosTokenIds, maxBytesPerToken(tokenizerJson, tokens));
  }

  /**
   * Token ids of `text`, as transformers' `tokenizer(text).input_ids`. BOS/EOS come from tokenizer.json's
   * post-processor alone: transformers 5.17 ignores tokenizer_config's add_bos_token/add_eos_token there
   * (checked both ways), so the flag can never add a second BOS.
   */
  encode(text: string, options: EncodeOptions = {}): Int32Array {
    const { ids } = this.tokenizer.encode(text, { add_special_tokens: options.addSpecialTokens ?? true });
    return checkedIds(text, ids);
  }

  /** The raw bytes the token stands for inside a text; empty for an id the tokenizer lacks. */
  tokenBytes(id: number): Uint8Array {
    return this.table.bytes(id);
  }

  /** The token's bytes as the first token of a text (Metaspace drops its leading "▁" there). */
  openingTokenBytes(id: number): Uint8Array {
    return this.table.openingBytes(id);
  }

  isByteFallback(id: number): boolean {
    return this.table.isByteFallback(id);
  }

  isSpecial(id: number): boolean {
    return this.specialIds.has(id);
  }

  /** The token decoded alone, as HF `decode([id])` (special tokens kept, invalid UTF-8 as U+FFFD). */
  tokenText(id: number): string {
    return decodeTokens(this, [id]);
  }
}
