// The most bytes of input text one token can stand for, so that a prompt too long for max_input_tokens is
// refused from its byte length alone, before seconds go into tokenizing it.
//
// The bound holds when every byte of the input ends up inside some token and the text only grows on its way
// there. Then a token spans at most as many input bytes as its own string has: Metaspace and Replace write a
// 3-byte "▁" where the input had a 1-byte space, ByteLevel writes each input byte as one character of 1 or 2
// bytes. An unknown character left unfused becomes one unknown token: at most 4 bytes, UTF-8's longest. So a
// prompt of B bytes has at least B / (longest token string, or 4) tokens, and no prompt that fits is refused.
//
// Tokenizers outside that shape get no bound (null), never an approximate one: Whitespace pre-tokenizers and
// Removed splits drop text, normalizers such as NFKC or Lowercase can shrink it, fused unknown tokens and
// WordPiece's [UNK] cover runs of any length, an added token with lstrip/rstrip swallows the whitespace
// beside it, and truncation cuts tokens off. Their prompts are still tokenized off the event loop.

type Json = Record<string, unknown>;

/** UTF-8's longest character: what one unknown token covers when unknowns are not fused. */
const MAX_CHAR_BYTES = 4;
const utf8 = new TextEncoder();

function isObject(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Every step of a (possibly Sequence) normalizer or pre-tokenizer keeps each byte, for `keeps`. */
function everyStep(step: unknown, listKey: string, keeps: (step: Json) => boolean): boolean {
  if (step === null || step === undefined) return true;
  if (!isObject(step)) return false;
  if (step.type === "Sequence") return Array.isArray(step[listKey]) && step[listKey].every((inner) => everyStep(inner, listKey, keeps));
  return keeps(step);
}

function normalizerKeepsBytes(step: Json): boolean {
  if (step.type === "Prepend") return true;
  if (step.type !== "Replace") return false;
  const pattern = isObject(step.pattern) ? step.pattern.String : undefined;
  // A string pattern replaced by something no shorter; a regex could match (and shrink) any length.
  return typeof pattern === "string" && typeof step.content === "string" && utf8.encode(step.content).length >= utf8.encode(pattern).length;
}

function preTokenizerKeepsBytes(step: Json): boolean {
  switch (step.type) {
    case "ByteLevel":
    case "Metaspace":
    case "Digits":
      return true;
    case "Split":
    case "Punctuation":
      return step.behavior !== "Removed";
    default:
      return false;
  }
}

/** Every byte lands in a token: byte fallback, or unknown characters one token each. */
function modelCoversEveryByte(model: unknown): boolean {
  if (!isObject(model) || model.type !== "BPE") return false;
  return model.byte_fallback === true || model.fuse_unk !== true;
}

function addedTokensKeepWhitespace(added: unknown): boolean {
  return Array.isArray(added) && added.every((token) => isObject(token) && token.lstrip !== true && token.rstrip !== true);
}

/**
 * The most input bytes one token of this tokenizer stands for, or null when the tokenizer gives no such bound.
 * @param tokenizerJson tokenizer.json, its added tokens included
 * @param tokens the token string of every id
 */
export function maxBytesPerToken(tokenizerJson: Json, tokens: readonly (string | undefined)[]): number | null {
  const bounded =
    (tokenizerJson.truncation === null || tokenizerJson.truncation === undefined) &&
    everyStep(tokenizerJson.normalizer, "normalizers", normalizerKeepsBytes) &&
    everyStep(tokenizerJson.pre_tokenizer, "pretokenizers", preTokenizerKeepsBytes) &&
    modelCoversEveryByte(tokenizerJson.model) &&
    addedTokensKeepWhitespace(tokenizerJson.added_tokens);
  if (!bounded) return null;
  return tokens.reduce((longest, token) => (token === undefined ? longest : Math.max(longest, utf8.encode(token).length)), MAX_CHAR_BYTES);
}

