// Token ids → text exactly as Hugging Face's decode spells it, one token at a time.
//
// Two rules decide what invalid UTF-8 becomes, and the decoder chain says which applies:
// - Bytes of ordinary tokens (byte-level BPE) go through one UTF-8 decoder: a character spread over tokens is
//   held until complete, and each maximal invalid subpart becomes one U+FFFD. That is Rust's
//   `from_utf8_lossy` and Python's `bytes.decode("utf-8", errors="replace")`; WHATWG's TextDecoder follows
//   the same rule. `ignoreBOM` keeps a leading U+FEFF, as both of those do.
// - A run of consecutive ByteFallback tokens (`<0xE2><0x9C><0x93>`) is decoded as a whole once the run ends:
//   its text if the run is valid UTF-8, else one U+FFFD per byte (Rust's ByteFallback decoder). A later byte
//   can spoil an earlier character of the run, so nothing of a run is emitted before the run ends: at the
//   next other token, or at finish.
import type { LeadingStrip } from "./token-bytes.js";

/** What detokenizing needs from a tokenizer (TextCodec provides it). */
export interface DetokenizerVocab {
  isSpecial(id: number): boolean;
  /** Bytes of the token anywhere but at the start of the text. */
  tokenBytes(id: number): Uint8Array;
  /** Bytes of the token as the first token of the text. */
  openingTokenBytes(id: number): Uint8Array;
  /** A ByteFallback byte token, whose one byte is decoded with the rest of its run. */
  isByteFallback(id: number): boolean;
  readonly leadingStrip: LeadingStrip | null;
}

export interface DetokenizeOptions {
  /** Drop special tokens from the text, like HF's `skip_special_tokens=True`. Default false, as in HF. */
  skipSpecialTokens?: boolean;
  /**
   * The ids continue a text decoded before (generated tokens after a prompt): the first id is spelled as it is
   * mid-text, so a Metaspace "▁" stays a space, as TGI's prefix-offset decoding gives it. Default false.
   */
  continuation?: boolean;
}

const validUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function decodeByteRun(bytes: readonly number[]): string {
  try {
    return validUtf8.decode(Uint8Array.from(bytes));
  } catch {
    return "\ufffd".repeat(bytes.length);
  }
}

/** Removes what is left of the leading strip from the start of `text`; returns the text and what is still left. */
function stripStart(text: string, strip: LeadingStrip | null, left: number): { text: string; left: number } {
  if (strip === null || left === 0 || text === "") return { text, left };
  let from = 0;
  while (left > 0 && text.startsWith(strip.char, from)) {
    from += strip.char.length;
    left--;
  }
  // Any other character ends the text's start: nothing later is stripped.
  return { text: text.slice(from), left: from < text.length ? 0 : left };
}

/** Decodes a whole id sequence at once (HF `decode`). */
export function decodeTokens(vocab: DetokenizerVocab, ids: Iterable<number>, options: DetokenizeOptions = {}): string {
  const detokenizer = new IncrementalDetokenizer(vocab, options);
  let text = "";
  for (const id of ids) text += detokenizer.push(id);
  return text + detokenizer.finish();
}

/** One sequence's detokenizer: the concatenation of every `push` and `finish` equals `decodeTokens` of all ids. */
export class IncrementalDetokenizer {
  private readonly utf8 = new TextDecoder("utf-8", { ignoreBOM: true });
  private readonly skipSpecialTokens: boolean;
  private run: number[] = [];
  private opened = false;
  private finished = false;
  private stripLeft: number;

  constructor(
    private readonly vocab: DetokenizerVocab,
    options: DetokenizeOptions = {},
  ) {
    this.skipSpecialTokens = options.skipSpecialTokens ?? false;
    this.opened = options.continuation ?? false;
    this.stripLeft = this.opened ? 0 : (vocab.leadingStrip?.count ?? 0);
  }

  /** Adds one token; returns the text it completes (possibly empty: a character or a byte run may be open). */
  push(id: number): string {
    if (this.finished) throw new Error("IncrementalDetokenizer: push after finish");
    if (this.skipSpecialTokens && this.vocab.isSpecial(id)) return "";
    const bytes = this.opened ? this.vocab.tokenBytes(id) : this.vocab.openingTokenBytes(id);
    this.opened = true;
    if (this.vocab.isByteFallback(id)) {
      // A run starts after whatever came before it is complete: end the ordinary byte stream there.
      const before = this.run.length === 0 ? this.endStream() : "";
      this.run.push(...bytes);
      return this.emit(before);
    }
    return this.emit(this.endRun() + this.utf8.decode(bytes, { stream: true }));
  }

  /** Ends the sequence: an open byte run or an incomplete character comes out as HF decodes it. */
  finish(): string {
    if (this.finished) return "";
    this.finished = true;
    return this.emit(this.endRun() + this.endStream());
  }

  private endRun(): string {
    if (this.run.length === 0) return "";
    const text = decodeByteRun(this.run);
    this.run = [];
    return text;
  }

  /** Flushes the ordinary byte stream (an incomplete character becomes U+FFFD); the decoder is then fresh. */
  private endStream(): string {
    return this.utf8.decode();
  }

  private emit(text: string): string {
    const stripped = stripStart(text, this.vocab.leadingStrip, this.stripLeft);
    this.stripLeft = stripped.left;
    return stripped.text;
  }
}
