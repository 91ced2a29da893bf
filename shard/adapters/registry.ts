// Every adapter this shard can serve and where each one is: on disk (known, not read), in host memory
// (validated bytes, ready for a slot load that touches no disk) or in an engine slot. The registry composes the
// catalog (catalog.ts: ids, directories, roots), the host tier (host-tier.ts) and the slot tier (slot-tier.ts);
// both tiers are least-recently-used caches (eviction.ts) that never evict an adapter a queued or running
// sequence uses: a request for an adapter that finds every slot in use waits in the queue until one is released.
import { resolve } from "node:path";
import type { NativeEngine } from "../../native/addon.js";
import type { ProgressSink } from "../../telemetry/progress.js";
import type { AdapterResidency, ResidencyListener } from "../engine/adapter-residency.js";
import type { AdapterConfig } from "../model/adapter.js";
import { ON_DISK, type AdapterEntry } from "./adapter-entry.js";
import { AdapterCatalog } from "./catalog.js";
import { AdapterError } from "./errors.js";
import { stampAdapterFiles } from "./file-stamp.js";
import { HostTier, type HostTierOptions } from "./host-tier.js";
import { nameSegments, type AdapterRoots } from "./roots.js";
import { SlotTier } from "./slot-tier.js";

/** An adapter as named on the command line. */
export interface AdapterSource {
  id: string;
  dir: string;
}

export interface RegistryOptions extends HostTierOptions {
  /** Engine slots (--max-loras): the engine was built with this many. */
  maxLoras: number;
  roots: AdapterRoots;
  /** Whether a not-found error lists the known ids (--list-adapters-in-errors); absent: it does not. */
  listAdaptersInErrors?: boolean;
  /** How often a request naming an adapter may stat its files for a change (ms); absent: once a second. */
  filesCheckIntervalMs?: number;
}

/** How UnloadAdapter treats an adapter in use: refused, or (drain) unloaded once its sequences finish. */
export interface UnloadOptions {
  drain?: boolean;
}

const FILES_CHECK_INTERVAL_MS = 1000;

/** Who hears of the registry from its opening on: listeners of every slot change, and the start-up progress. */
export interface RegistryObservers {
  listeners?: readonly ResidencyListener[];
  progress?: ProgressSink;
}

export type AdapterTier = "disk" | "host" | "device";

export interface AdapterDescription {
  id: string;
  dir: string;
  tier: AdapterTier;
  /** Null until the adapter has been read once. */
  config: AdapterConfig | null;
  hasChatTemplate: boolean;
  activeSequences: number;
}

export class AdapterRegistry implements AdapterResidency {
  private readonly catalog: AdapterCatalog;
  private readonly host: HostTier;
  private readonly slots: SlotTier;
  private readonly filesCheckIntervalMs: number;
  /** Per entry, who waits for its last sequence to finish (a draining unload, a reload). */
  private readonly idleWaiters = new Map<AdapterEntry, (() => void)[]>();
  /** Reloads in flight, by the entry they replace: every request that finds the change waits for the same one. */
  private readonly reloads = new Map<AdapterEntry, Promise<AdapterEntry>>();

  private constructor(engine: NativeEngine, options: RegistryOptions) {
    this.filesCheckIntervalMs = options.filesCheckIntervalMs ?? FILES_CHECK_INTERVAL_MS;
    this.catalog = new AdapterCatalog(options.roots, options.listAdaptersInErrors ?? false);
    this.host = new HostTier(this.catalog, options, {
      read: () => this.slots.pump(),
      readFailed: (entry, error) => this.slots.readFailed(entry, error),
    });
    this.slots = new SlotTier(this.catalog, this.host, engine, options.maxLoras);
  }

  /**
   * Reads and validates every adapter named on the command line (throwing, with the file named, at the first bad
   * one) and fills the engine's slots with the first of them.
   */
  static async open(
    engine: NativeEngine,
    options: RegistryOptions,
    sources: readonly AdapterSource[],
    { listeners = [], progress }: RegistryObservers = {},
  ): Promise<AdapterRegistry> {
    const registry = new AdapterRegistry(engine, options);
    for (const listener of listeners) registry.listen(listener);
    let loaded = 0;
    if (sources.length > 0) progress?.update("loading adapters", loaded, sources.length);
    for (const { id, dir } of sources) {
      if (registry.catalog.entry(id)) throw new Error(`adapter id ${JSON.stringify(id)} is given twice`);
      const entry = registry.catalog.add(id, resolve(dir), null);
      const host = await registry.host.ensure(entry);
      if (await registry.slots.fill(entry, host)) progress?.update("loading adapters", ++loaded, sources.length);
    }
    return registry;
  }

  /** Every servable id: registered, loaded, or found in a root so far. */
  ids(): string[] {
    return this.catalog.ids();
  }

  list(): AdapterDescription[] {
    return [...this.catalog.all()].map((entry) => this.describe(entry));
  }

  /** Adapters in an engine slot now. */
  deviceIds(): string[] {
    return this.slots.deviceIds();
  }

  /** An adapter known here, or one a root holds (described as on disk; looking does not read or register it). */
  async get(id: string): Promise<AdapterDescription> {
    const known = this.catalog.entry(id);
    if (known) return this.describe(known);
    const found = await this.catalog.find(id);
    return { id, dir: found.dir, tier: "disk", config: null, hasChatTemplate: false, activeSequences: 0 };
  }

  /**
   * Makes an adapter servable and brings it into host memory, validated: found by id (registered or in a root),
   * or at `path` relative to a root.
   */
  async load(id: string, path: string): Promise<AdapterDescription> {
    let entry: AdapterEntry;
    if (path === "") {
      entry = await this.catalog.lookup(id);
    } else {
      nameSegments("adapter id", id);
      const found = await this.catalog.roots.findPath(path);
      const known = this.catalog.entry(id);
      if (known && known.dir !== found.dir) {
        throw new AdapterError("conflict", `adapter ${JSON.stringify(id)} is already served from ${known.dir}; unload it first`);
      }
      entry = known ?? this.catalog.add(id, found.dir, found.root);
    }
    await this.validate(entry);
    return this.describe(entry);
  }

  /**
   * Forgets an adapter and frees its slot and memory; refused while sequences use it, unless `drain`: then
   * requests naming it are refused from now on and it is forgotten once its sequences finish. An id that a root
   * holds is found there again by the next request that names it.
   */
  async unload(id: string, { drain = false }: UnloadOptions = {}): Promise<void> {
    const entry = this.catalog.known(id);
    if (drain) {
      entry.unloading = true;
      await this.whenIdle(entry);
    } else {
      refuseIfInUse(entry);
      await this.settle(entry);
      refuseIfInUse(entry);
    }
    if (this.catalog.holds(entry)) this.forget(entry);
  }

  /**
   * Called before a request naming `id` is queued: finds the adapter and, the first time, reads and validates it,
   * so that a missing or invalid adapter is refused with its reason instead of failing in the queue. An adapter
   * whose files changed on disk is read again first, once the sequences using the old copy finish: the request
   * waits for that, and runs on the new copy, registered anew so that no cached prefix of the old one is reused.
   */
  async prepare(id: string): Promise<void> {
    if (id === "") return;
    let entry = await this.catalog.lookup(id);
    refuseIfUnloading(entry);
    if (this.reloads.has(entry) || (await this.filesChanged(entry))) entry = await this.reload(entry);
    if (entry.config === null) await this.validate(entry);
  }

  /** The directory a known adapter was found in (its own chat template may be there). */
  dirOf(id: string): string {
    return this.catalog.known(id).dir;
  }

  // AdapterResidency, for the engine loop.

  acquire(id: string): void {
    if (id === "") return;
    const entry = this.catalog.known(id);
    entry.pins++;
    this.catalog.touch(entry);
    this.slots.want(entry);
  }

  release(id: string): void {
    if (id === "") return;
    const entry = this.catalog.entry(id);
    if (!entry || entry.pins === 0) throw new Error(`adapter ${JSON.stringify(id)} released more often than acquired`);
    entry.pins--;
    this.slots.pump();
    const waiters = this.idleWaiters.get(entry);
    if (entry.pins === 0 && waiters) {
      this.idleWaiters.delete(entry);
      for (const wake of waiters) wake();
    }
  }

  versionOf(id: string): number {
    return id === "" ? 0 : this.catalog.known(id).version;
  }

  slotOf(id: string): number | null {
    if (id === "") return -1;
    const entry = this.catalog.entry(id);
    return entry ? this.slots.slotOf(entry) : null;
  }

  listen(listener: ResidencyListener): void {
    this.slots.listen(listener);
  }

  /**
   * Whether a read adapter's files differ from the stamp of its read; looked at once per interval at most, and
   * always when its bytes were evicted: the read to come must not put other files under the same registration.
   */
  private async filesChanged(entry: AdapterEntry): Promise<boolean> {
    const now = Date.now();
    if (entry.filesStamp === null) return false;
    if (entry.host.tier !== "disk" && now - entry.filesCheckedAt < this.filesCheckIntervalMs) return false;
    entry.filesCheckedAt = now;
    return (await stampAdapterFiles(entry.dir)) !== entry.filesStamp;
  }

  /** The entry that replaces `stale` once its sequences finish: one reload however many requests see the change. */
  private reload(stale: AdapterEntry): Promise<AdapterEntry> {
    let reload = this.reloads.get(stale);
    if (!reload) {
      reload = this.replace(stale).finally(() => this.reloads.delete(stale));
      this.reloads.set(stale, reload);
    }
    return reload;
  }

  private async replace(stale: AdapterEntry): Promise<AdapterEntry> {
    await this.whenIdle(stale);
    // A draining unload that began meanwhile wins: the id is not registered again under it.
    refuseIfUnloading(stale);
    // Unloaded (or replaced by a load) meanwhile: whatever holds the id now serves.
    if (!this.catalog.holds(stale)) return this.catalog.lookup(stale.id);
    this.forget(stale);
    const fresh = this.catalog.add(stale.id, stale.dir, stale.root);
    await this.validate(fresh);
    return fresh;
  }

  /** Resolves once no sequence uses the entry and no read or slot load of it is in flight; each call waits anew. */
  private async whenIdle(entry: AdapterEntry): Promise<void> {
    for (;;) {
      if (entry.pins > 0) await new Promise<void>((wake) => this.idleWaiters.set(entry, [...(this.idleWaiters.get(entry) ?? []), wake]));
      await this.settle(entry);
      if (entry.pins === 0) return;
    }
  }

  /** Waits for a read or slot load in flight (a cancelled request may have started it). */
  private async settle(entry: AdapterEntry): Promise<void> {
    if (entry.host.tier === "reading") await entry.host.read.catch(() => undefined);
    if (entry.slot.tier === "loading") await entry.slot.done;
  }

  /** Frees the entry's slot and memory and forgets its id. */
  private forget(entry: AdapterEntry): void {
    this.slots.vacate(entry);
    entry.host = ON_DISK;
    this.catalog.forget(entry);
    this.slots.pump();
  }

  /** Reads the adapter into host memory; one that was never valid is forgotten again, so that it is not listed. */
  private async validate(entry: AdapterEntry): Promise<void> {
    try {
      await this.host.ensure(entry);
    } catch (error) {
      const neverValid = entry.config === null && entry.root !== null;
      if (neverValid && entry.pins === 0) this.catalog.forget(entry);
      throw error;
    }
  }

  private describe(entry: AdapterEntry): AdapterDescription {
    const tier: AdapterTier = entry.slot.tier === "device" ? "device" : entry.host.tier === "host" ? "host" : "disk";
    return { id: entry.id, dir: entry.dir, tier, config: entry.config, hasChatTemplate: entry.hasChatTemplate, activeSequences: entry.pins };
  }
}

function refuseIfUnloading(entry: AdapterEntry): void {
  if (entry.unloading) throw new AdapterError("unloading", `adapter ${JSON.stringify(entry.id)} is being unloaded: it takes no new requests`);
}

function refuseIfInUse(entry: AdapterEntry): void {
  if (entry.pins > 0) {
    const sequences = entry.pins === 1 ? "1 sequence" : `${entry.pins} sequences`;
    throw new AdapterError("in_use", `adapter ${JSON.stringify(entry.id)} is used by ${sequences}; unload it once they finish`);
  }
}
