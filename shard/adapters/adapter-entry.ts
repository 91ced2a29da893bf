// One adapter the registry knows, and where it is. Host memory and engine slot are two separate states: an
// adapter in a slot that no sequence uses may lose its host bytes to a read (the host tier is full), and its
// slot stays loaded, so "in a slot" does not imply "in host memory". Each state is a union, so that a slot
// number without a slot, a read in flight beside held bytes, or a finished load without a slot cannot be written.
import type { AdapterConfig } from "../model/adapter.js";
import type { HostAdapter } from "./read-adapter.js";

/** The adapter's validated bytes: not read, being read (one read at a time per adapter), or held. */
export type HostState =
  | { readonly tier: "disk" }
  | { readonly tier: "reading"; readonly read: Promise<HostAdapter> }
  | { readonly tier: "host"; readonly host: HostAdapter };

/**
 * The adapter's engine slot: none, a load in flight (steps may not name it yet; `done` resolves once the load is
 * over and its listeners told, to the error it failed with or null), or loaded.
 */
export type SlotState =
  | { readonly tier: "none" }
  | { readonly tier: "loading"; readonly slot: number; readonly done: Promise<Error | null> }
  | { readonly tier: "device"; readonly slot: number };

export interface AdapterEntry {
  readonly id: string;
  readonly dir: string;
  /**
   * This registration of the id, unique over the shard's life: the prefix cache keys KV blocks by it, so that an
   * id unloaded and loaded again never finds the blocks its old weights computed.
   */
  readonly version: number;
  /** The root the adapter must stay inside; null when the operator named its directory. */
  readonly root: string | null;
  /** Kept when the bytes are evicted: what the adapter was when last read. */
  config: AdapterConfig | null;
  hasChatTemplate: boolean;
  host: HostState;
  slot: SlotState;
  /** Queued and running sequences that use the adapter. */
  pins: number;
  /** UnloadAdapter with drain waits for its sequences: requests naming it are refused meanwhile. */
  unloading: boolean;
  /** The files' stamp (file-stamp.ts) taken before their last good read; null until then. */
  filesStamp: string | null;
  /** When (Date.now()) the files were last compared with that stamp: at most once per check interval. */
  filesCheckedAt: number;
  /** Recency for the least-recently-used choice: the catalog's clock at the last use. */
  lastUse: number;
}

export const ON_DISK: HostState = { tier: "disk" };
export const NO_SLOT: SlotState = { tier: "none" };
