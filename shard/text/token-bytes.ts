// tokenizer.json's decoder chain turned into the raw bytes each token contributes to a decoded text, and which
// tokens are byte-fallback bytes. Detokenizing from bytes is what lets a character spelled over several
// byte-fallback tokens come out whole, which @huggingface/tokenizers' own decode does not do.
//
// Steps before the tokens are fused act on each token alone; Fuse and ByteLevel join the tokens, after which
// only a Strip of the text's start can follow (Llama-2's `Replace ▁→" ", ByteFallback, Fuse, Strip` chain).
// Chains outside that shape are refused by name rather than approximated.
import { LoadError } from "../model/load-error.js";
import { BYTE_LEVEL_CHAR_TO_BYTE } from "./byte-level.js";

/** A Strip after the tokens are fused: drops up to `count` leading `char`s of the whole decoded text. */
export interface LeadingStrip {
  char: string;
  count: number;
}

/** One token on its way through the chain: still text, raw bytes (ByteLevel), or a ByteFallback byte. */
type Piece = string | Uint8Array | { fallbackByte: number };
/** `opening`: the token is the first of the decoded text (Metaspace treats that one differently). */
type TokenStep = (piece: Piece, opening: boolean) => Piece;

type Json = Record<string, unknown>;

const SUPPORTED = "ByteLevel, Metaspace, Replace (string pattern), ByteFallback, Fuse, Strip, Sequence";
const BYTE_TOKEN = /^<0x[0-9A-Fa-f]{2}>$/;
const utf8 = new TextEncoder();

function onText(transform: (text: string, opening: boolean) => Piece): TokenStep {
  return (piece, opening) => (typeof piece === "string" ? transform(piece, opening) : piece);
}

function singleChar(path: string, value: unknown, what: string): string {
  if (typeof value !== "string" || [...value].length !== 1) {
    throw new LoadError(path, `decoder ${what} must be one character, got ${JSON.stringify(value)}`);
  }
  return value;
}

function count(path: string, value: unknown, what: string): number {
  const n = value ?? 0;
  if (!Number.isSafeInteger(n) || (n as number) < 0) throw new LoadError(path, `decoder ${what} must be a count, got ${JSON.stringify(value)}`);
  return n as number;
}

function flatten(path: string, decoder: unknown): Json[] {
  if (decoder === null || decoder === undefined) {
    throw new LoadError(path, `has no decoder; detokenizing needs one of: ${SUPPORTED}`);
  }
  if (typeof decoder !== "object" || Array.isArray(decoder)) throw new LoadError(path, `decoder must be an object, got ${JSON.stringify(decoder)}`);
  const step = decoder as Json;
  if (step.type !== "Sequence") return [step];
  if (!Array.isArray(step.decoders)) throw new LoadError(path, "Sequence decoder has no decoders list");
  return step.decoders.flatMap((inner) => flatten(path, inner));
}

/** Rust's ByteLevel decoder: a token wholly in the byte alphabet is those bytes; any other token is its UTF-8. */
function byteLevelBytes(token: string): Uint8Array {
  const chars = [...token];
  const bytes = chars.map((c) => BYTE_LEVEL_CHAR_TO_BYTE.get(c));
  return bytes.every((b) => b !== undefined) ? Uint8Array.from(bytes as number[]) : utf8.encode(token);
}

function stripChars(text: string, char: string, start: number, stop: number): string {
  let from = 0;
  for (let i = 0; i < start && text.startsWith(char, from); i++) from += char.length;
  let to = text.length;
  for (let i = 0; i < stop && to - char.length >= from && text.endsWith(char, to); i++) to -= char.length;
  return text.slice(from, to);
}

function compileChain(path: string, decoder: unknown): { steps: TokenStep[]; leadingStrip: LeadingStrip | null } {
  const steps: TokenStep[] = [];
  let fused = false;
  let leadingStrip: LeadingStrip | null = null;
  for (const step of flatten(path, decoder)) {
    const type = String(step.type);
    if (fused) {
      if (type === "Fuse") continue;
      if (type === "Strip" && count(path, step.stop, "Strip stop") === 0 && leadingStrip === null) {
        leadingStrip = { char: singleChar(path, step.content, "Strip content"), count: count(path, step.start, "Strip start") };
        continue;
      }
      throw new LoadError(path, `decoder step ${type} after the tokens are fused is not supported (only Strip of the start may follow Fuse/ByteLevel)`);
    }
    switch (type) {
      case "Replace": {
        const pattern = (step.pattern as Json | undefined)?.String;
        const content = step.content;
        if (typeof pattern !== "string" || pattern === "" || typeof content !== "string") {
          throw new LoadError(path, `Replace decoder with pattern ${JSON.stringify(step.pattern)} is not supported (string patterns only)`);
        }
        steps.push(onText((text) => text.split(pattern).join(content)));
        break;
      }
      case "ByteFallback":
        steps.push(onText((text) => (BYTE_TOKEN.test(text) ? { fallbackByte: parseInt(text.slice(3, 5), 16) } : text)));
        break;
      case "Metaspace": {
        const replacement = singleChar(path, step.replacement ?? "\u2581", "Metaspace replacement");
        // tokenizer.json files older than `prepend_scheme` say `add_prefix_space` instead.
        const scheme = step.prepend_scheme ?? (step.add_prefix_space === false ? "never" : "always");
        // Rust's Metaspace decoder removes every replacement char of the opening token: that is the space it
        // prepended while encoding.
        steps.push(onText((text, opening) => text.split(replacement).join(opening && scheme !== "never" ? "" : " ")));
        break;
      }
      case "Strip": {
        const char = singleChar(path, step.content, "Strip content");
        const start = count(path, step.start, "Strip start");
        const stop = count(path, step.stop, "Strip stop");
        steps.push(onText((text) => stripChars(text, char, start, stop)));
        break;
      }
      case "Fuse":
        fused = true;
        break;
      case "ByteLevel":
        steps.push(onText(byteLevelBytes));
        fused = true;
        break;
      default:
        throw new LoadError(path, `decoder ${JSON.stringify(step.type)} is not supported (supported: ${SUPPORTED})`);
    }
  }
  return { steps, leadingStrip };
}

/** The bytes of every token id, packed; built once per tokenizer. */
export class TokenByteTable {
  private constructor(
    private readonly data: Uint8Array,
    private readonly offsets: Uint32Array,
    private readonly opening: ReadonlyMap<number, Uint8Array>,
    private readonly fallbackIds: ReadonlySet<number>,
    readonly leadingStrip: LeadingStrip | null,
  ) {}

  /**
   * @param path tokenizer.json, named in errors
   * @param decoder its `decoder` field
   * @param tokens the token string of each id (model vocab and added tokens); undefined where no token has the id
   */
  static compile(path: string, decoder: unknown, tokens: readonly (string | undefined)[]): TokenByteTable {
    const { steps, leadingStrip } = compileChain(path, decoder);
    const fallbackIds = new Set<number>();
    const run = (id: number, token: string, opening: boolean): Uint8Array => {
      const piece = steps.reduce<Piece>((p, step) => step(p, opening), token);
      if (typeof piece === "string") return utf8.encode(piece);
      if (piece instanceof Uint8Array) return piece;
      fallbackIds.add(id);
      return Uint8Array.of(piece.fallbackByte);
    };
    const rest: Uint8Array[] = [];
    const opening = new Map<number, Uint8Array>();
    tokens.forEach((token, id) => {
      if (token === undefined) {
        rest.push(new Uint8Array(0));
        return;
      }
      const bytes = run(id, token, false);
      const first = run(id, token, true);
      rest.push(bytes);
      if (!sameBytes(bytes, first)) opening.set(id, first);
    });
    const offsets = new Uint32Array(rest.length + 1);
    rest.forEach((bytes, id) => (offsets[id + 1] = offsets[id]! + bytes.length));
    const data = new Uint8Array(offsets[rest.length]!);
    rest.forEach((bytes, id) => data.set(bytes, offsets[id]!));
    return new TokenByteTable(data, offsets, opening, fallbackIds, leadingStrip);
  }

  /** The bytes of `id` anywhere but at the start of a decoded text; empty for an id the tokenizer lacks. */
  bytes(id: number): Uint8Array {
    if (!Number.isInteger(id) || id < 0 || id + 1 >= this.offsets.length) return new Uint8Array(0);
    return this.data.subarray(this.offsets[id]!, this.offsets[id + 1]!);
  }

  /** The bytes of `id` when it is the first token of a decoded text. */
  openingBytes(id: number): Uint8Array {
    return this.opening.get(id) ?? this.bytes(id);
  }

  /** Whether `id` is a ByteFallback byte token (`<0xAB>` under a chain with ByteFallback). */
  isByteFallback(id: number): boolean {
    return this.fallbackIds.has(id);
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
