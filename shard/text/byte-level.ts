// GPT-2's byte-level alphabet: byte-level BPE vocabularies spell every byte as one printable character so
// that tokens are valid strings. Printable Latin-1 bytes stand for themselves; the other 68 bytes take the
// code points from U+0100 on, in byte order. The ByteLevel decoder inverts this map.

function buildCharToByte(): ReadonlyMap<string, number> {
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const map = new Map<string, number>();
  let next = 0x100;
  for (let b = 0; b < 256; b++) {
    map.set(String.fromCodePoint(printable(b) ? b : next++), b);
  }
  return map;
}

/** Byte-level character → the byte it spells. */
export const BYTE_LEVEL_CHAR_TO_BYTE = buildCharToByte();
