// Why an adapter request was refused. One class with a kind, so that the shard's services map every refusal to
// a status code in one place (shard/server.ts) and the message stays the one a user reads.

/**
 * - not_found: no registered adapter and no adapter root holds this id.
 * - invalid: the id or path is malformed, or the adapter's files fail validation against the base.
 * - outside_root: the id or path leads outside every adapter root (`..`, a symlink out).
 * - in_use: sequences use the adapter, so it cannot be unloaded now.
 * - conflict: the id is already served from another directory.
 * - unloading: a draining UnloadAdapter waits for the adapter's sequences; it takes no new ones.
 */
export type AdapterErrorKind = "not_found" | "invalid" | "outside_root" | "in_use" | "conflict" | "unloading";

export class AdapterError extends Error {
  constructor(
    readonly kind: AdapterErrorKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "AdapterError";
  }
}
