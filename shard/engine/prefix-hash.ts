// The names under which full KV blocks are found again (prefix caching). A block's keys and values depend on
// every token before it and on the weights that computed them, so its name is a hash chain: the root names the
// adapter and its version (the base model is "" at version 0), and each block's hash covers its parent's hash and
// its own tokens. Equal hashes therefore mean the same tokens from position 0 under the same weights; a
// sequence of another adapter, or of the same id loaded again, starts a different chain and never meets them.
// SHA-256 makes an accidental collision (two prefixes sharing KV they do not have in common) unthinkable, so a
// hit needs no second check of the tokens.
import { createHash } from "node:crypto";

/** The hash every chain of this adapter version starts from. */
export function prefixRoot(adapterId: string, adapterVersion: number): string {
  return createHash("sha256").update(JSON.stringify(["loraserve-kv", adapterId, adapterVersion])).digest("hex");
}

/** The hash of a full block of `tokens` that follows the block hashed `parent` (or the root). */
export function blockHash(parent: string, tokens: Int32Array): string {
  return createHash("sha256").update(parent).update(new Uint8Array(tokens.buffer, tokens.byteOffset, tokens.byteLength)).digest("hex");
}
