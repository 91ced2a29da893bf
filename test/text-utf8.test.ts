// Byte-level BPE text is one UTF-8 byte stream, which transformers decodes like Python's
// `bytes.decode("utf-8", errors="replace")` (Rust's from_utf8_lossy): one U+FFFD per maximal invalid subpart,
// a leading U+FEFF kept. Checked here on a byte-level tokenizer whose id i is the byte i, token by token.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { BYTE_LEVEL_CHAR_TO_BYTE } from "../shard/text/byte-level.js";
import { decodeTokens, IncrementalDetokenizer } from "../shard/text/detokenizer.js";
import { TextCodec } from "../shard/text/tokenizer.js";

// Python: bytes.fromhex(hex).decode("utf-8", errors="replace")
const PYTHON_UTF8: [string, string][] = [
  ["e2 9c 93", "\u2713"],
  ["f0 9f 99 82", "\ud83d\ude42"],
  ["c3 a9", "\u00e9"],
  ["e2 9c", "\ufffd"],
  ["e2 9c 41", "\ufffdA"],
  ["f0 9f 99", "\ufffd"],
  ["f0 9f", "\ufffd"],
  ["c3", "\ufffd"],
  ["80", "\ufffd"],
  ["80 bf", "\ufffd\ufffd"],
  ["bf 80 80", "\ufffd\ufffd\ufffd"],
  ["c0 80", "\ufffd\ufffd"],
  ["c1 bf", "\ufffd\ufffd"],
  ["e0 80 80", "\ufffd\ufffd\ufffd"],
  ["e0 9f bf", "\ufffd\ufffd\ufffd"],
  ["ed a0 80", "\ufffd\ufffd\ufffd"],
  ["ed 9f bf", "\ud7ff"],
  ["f0 80 80 80", "\ufffd\ufffd\ufffd\ufffd"],
  ["f4 90 80 80", "\ufffd\ufffd\ufffd\ufffd"],
  ["f4 8f bf bf", "\udbff\udfff"],
  ["f5 80 80 80", "\ufffd\ufffd\ufffd\ufffd"],
  ["f8 88 80 80 80", "\ufffd\ufffd\ufffd\ufffd\ufffd"],
  ["fe ff", "\ufffd\ufffd"],
  ["e2 9c 93 80", "\u2713\ufffd"],
  ["41 ff", "A\ufffd"],
  ["e2 e2 9c 93", "\ufffd\u2713"],
  ["f0 9f 99 e2 9c 93", "\ufffd\u2713"],
  ["ef bb bf", "\ufeff"],
  ["ef bb bf ef bb bf", "\ufeff\ufeff"],
  ["c3 a9 e2 9c", "\u00e9\ufffd"],
  ["e0 a0", "\ufffd"],
  ["f1 80 80", "\ufffd"],
  ["00", "\u0000"],
  ["7f 80 7f", "\u007f\ufffd\u007f"],
];

const scratch = mkdtempSync(join(tmpdir(), "loraserve-text-utf8-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const byteLevel = { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true };
writeFileSync(
  join(scratch, "tokenizer.json"),
  JSON.stringify({
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [],
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: null,
    decoder: byteLevel,
    model: { type: "BPE", dropout: null, unk_token: null, fuse_unk: false, byte_fallback: false, vocab: Object.fromEntries(BYTE_LEVEL_CHAR_TO_BYTE), merges: [] },
  }),
);
const codec = TextCodec.load(scratch);

function chunks(ids: number[]): string[] {
  const detokenizer = new IncrementalDetokenizer(codec);
  const out = ids.map((id) => detokenizer.push(id));
  out.push(detokenizer.finish());
  return out;
}

it("replaces invalid bytes exactly as Python, token by token and at once", () => {
  for (const [hex, text] of PYTHON_UTF8) {
    const ids = hex.split(" ").map((h) => parseInt(h, 16));
    expect(chunks(ids).join(""), hex).toBe(text);
    expect(decodeTokens(codec, ids), hex).toBe(text);
  }
});

it("emits a character as soon as its last byte arrives, and flushes an incomplete one at finish", () => {
  expect(chunks([0xe2, 0x9c, 0x93, 0x41])).toEqual(["", "", "\u2713", "A", ""]);
  expect(chunks([0xf0, 0x9f, 0x99, 0x82])).toEqual(["", "", "", "\ud83d\ude42", ""]);
  expect(chunks([0x41, 0xf0, 0x9f])).toEqual(["A", "", "", "\ufffd"]);
  expect(chunks([0xe2, 0x9c, 0x41])).toEqual(["", "", "\ufffdA", ""]);
});
