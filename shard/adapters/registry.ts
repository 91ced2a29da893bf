// Every adapter this shard can serve and where each one is: on disk (known, not read), in host memory
// (validated bytes, ready for a slot load that touches no disk) or in an engine slot. Adapters come from
// --lora-adapters, from LoadAdapter, or from the adapter roots on first use. Both memory tiers are
// least-recently-used caches that never evict an adapter a queued or running sequence uses: a request for an
// adapter that finds every slot in use waits in the queue until one is released.
import { resolve } from "node:path";
import type { NativeEngine } from "../../native/addon.js";
import type { AdapterResidency, ResidencyListener } from "../engine/adapter-residency.js";
import type { AdapterConfig } from "../model/adapter.js";
import { LoadError } from "../model/load-error.js";
import { AdapterError } from "./errors.js";
import { readAdapter, type AdapterLimits, type HostAdapter } from "./read-adapter.js";
import { nameSegments, type AdapterRoots } from "./roots.js";

/** An adapter as named on the command line. */
export interface AdapterSource {
  id: string;
  dir: string;
}

export interface RegistryOptions extends AdapterLimits {
  /** Engine slots (--max-loras): the engine was built with this many. */
  maxLoras: number;
  /** Adapters held in host memory at most (--max-cpu-loras). */
  maxCpuLoras: number;
  roots: AdapterRoots;
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

interface Entry {
  readonly id: string;
  readonly dir: string;
  /** The root the adapter must stay inside; null when the operator named its directory. */
  readonly root: string | null;
  /** Kept when the bytes are evicted: what the adapter was when last read. */
  config: AdapterConfig | null;
  hasChatTemplate: boolean;
  host: HostAdapter | null;
  reading: Promise<HostAdapter> | null;
  slot: number | null;
  /** The slot load has finished: steps may name the slot. */
  resident: boolean;
  /** Queued and running sequences that use the adapter. */
  pins: number;
  /** Recency for the LRU choice: the registry's clock at the last use. */
  lastUse: number;
}

/** Ids listed in a not-found message at most; the rest are counted. */
const LISTED_IDS = 20;

export class AdapterRegistry implements AdapterResidency {
  /** In the order adapters became known. */
  private readonly entries = new Map<string, Entry>();
  private readonly slots: (Entry | null)[];
  /** Pinned adapters without a slot, in the order they asked for one. */
  private readonly wanting = new Set<Entry>();
  /** Host reads that have room reserved but no bytes yet. */
  private hostReservations = 0;
  private readonly hostWaiters: (() => void)[] = [];
  /** At most one slot load at a time, so that loads never hold every worker thread the steps need. */
  private slotLoad: { entry: Entry; done: Promise<void> } | null = null;
  private clock = 0;
  private listener: ResidencyListener | null = null;

  private constructor(
    private readonly engine: NativeEngine,
    private readonly options: RegistryOptions,
  ) {
    this.slots = new Array<Entry | null>(options.maxLoras).fill(null);
  }

  /**
   * Reads and validates every adapter named on the command line (throwing, with the file named, at the first bad
   * one) and fills the engine's slots with the first of them.
   */
  static async open(engine: NativeEngine, options: RegistryOptions, sources: readonly AdapterSource[]): Promise<AdapterRegistry> {
    const registry = new AdapterRegistry(engine, options);
    for (const { id, dir } of sources) {
      if (registry.entries.has(id)) throw new Error(`adapter id ${JSON.stringify(id)} is given twice`);
      const entry = registry.add(id, resolve(dir), null);
      const host = await registry.ensureHost(entry);
      const slot = registry.slots.indexOf(null);
      if (slot < 0) continue;
      try {
        await engine.loadAdapter(slot, host.weights);
      } catch (error) {
        throw new Error(`adapter ${JSON.stringify(id)} (${entry.dir}): ${(error as Error).message}`, { cause: error });
      }
      registry.slots[slot] = entry;
      entry.slot = slot;
      entry.resident = true;
    }
    return registry;
  }

  /** Every servable id: registered, loaded, or found in a root so far. */
  ids(): string[] {
    return [...this.entries.keys()];
  }

  list(): AdapterDescription[] {
    return [...this.entries.values()].map((entry) => this.describe(entry));
  }

  /** An adapter known here, or one a root holds (described as on disk; looking does not read or register it). */
  async get(id: string): Promise<AdapterDescription> {
    const known = this.entries.get(id);
    if (known) return this.describe(known);
    const found = await this.options.roots.find(id);
    if (!found) throw this.notFound(id);
    return { id, dir: found.dir, tier: "disk", config: null, hasChatTemplate: false, activeSequences: 0 };
  }

  /**
   * Makes an adapter servable and brings it into host memory, validated: found by id (registered or in a root),
   * or at `path` relative to a root.
   */
  async load(id: string, path: string): Promise<AdapterDescription> {
    let entry: Entry;
    if (path === "") {
      entry = await this.lookup(id);
    } else {
      nameSegments("adapter id", id);
      const found = await this.options.roots.findPath(path);
      const known = this.entries.get(id);
      if (known && known.dir !== found.dir) {
        throw new AdapterError("conflict", `adapter ${JSON.stringify(id)} is already served from ${known.dir}; unload it first`);
      }
      entry = known ?? this.add(id, found.dir, found.root);
    }
    await this.validate(entry);
    return this.describe(entry);
  }

  /**
   * Forgets an adapter and frees its slot and memory; refused while sequences use it. An id that a root holds is
   * found there again by the next request that names it.
   */
  async unload(id: string): Promise<void> {
    const entry = this.known(id);
    this.refuseIfInUse(entry);
    // A read or slot load in flight finishes first (a cancelled request may have started it).
    await entry.reading?.catch(() => undefined);
    if (this.slotLoad?.entry === entry) await this.slotLoad.done;
    if (this.entries.get(id) !== entry) return;
    this.refuseIfInUse(entry);
    if (entry.slot !== null && entry.resident) this.freeSlot(entry);
    entry.host = null;
    this.entries.delete(id);
    this.pump();
  }

  /**
   * Called before a request naming `id` is queued: finds the adapter and, the first time, reads and validates it,
   * so that a missing or invalid adapter is refused with its reason instead of failing in the queue.
   */
  async prepare(id: string): Promise<void> {
    if (id === "") return;
    const entry = await this.lookup(id);
    if (entry.config === null) await this.validate(entry);
  }

  /** The directory a known adapter was found in (its own chat template may be there). */
  dirOf(id: string): string {
    return this.known(id).dir;
  }

  // AdapterResidency, for the engine loop.

  acquire(id: string): void {
    if (id === "") return;
    const entry = this.known(id);
    entry.pins++;
    entry.lastUse = ++this.clock;
    if (entry.slot === null) this.wanting.add(entry);
    this.pump();
  }

  release(id: string): void {
    if (id === "") return;
    const entry = this.entries.get(id);
    if (!entry || entry.pins === 0) throw new Error(`adapter ${JSON.stringify(id)} released more often than acquired`);
    entry.pins--;
    this.pump();
  }

  slotOf(id: string): number | null {
    if (id === "") return -1;
    const entry = this.entries.get(id);
    return entry?.resident ? entry.slot : null;
  }

  listen(listener: ResidencyListener): void {
    this.listener = listener;
  }

  private add(id: string, dir: string, root: string | null): Entry {
    const entry: Entry = {
      id,
      dir,
      root,
      config: null,
      hasChatTemplate: false,
      host: null,
      reading: null,
      slot: null,
      resident: false,
      pins: 0,
      lastUse: ++this.clock,
    };
    this.entries.set(id, entry);
    return entry;
  }

  private known(id: string): Entry {
    const entry = this.entries.get(id);
    if (!entry) throw this.notFound(id);
    return entry;
  }

  private notFound(id: string): AdapterError {
    const ids = this.ids();
    const listed = ids.slice(0, LISTED_IDS).map((known) => JSON.stringify(known));
    if (ids.length > LISTED_IDS) listed.push(`and ${ids.length - LISTED_IDS} more`);
    const where = this.options.roots.dirs.length > 0 ? " and no adapter root holds it" : "";
    return new AdapterError("not_found", `adapter ${JSON.stringify(id)} is not served here${where}; known adapters: ${listed.join(", ") || "none"}`);
  }

  private async lookup(id: string): Promise<Entry> {
    const known = this.entries.get(id);
    if (known) return known;
    const found = await this.options.roots.find(id);
    if (!found) throw this.notFound(id);
    // Another request may have found it while this one looked.
    return this.entries.get(id) ?? this.add(id, found.dir, found.root);
  }

  private refuseIfInUse(entry: Entry): void {
    if (entry.pins > 0) {
      const sequences = entry.pins === 1 ? "1 sequence" : `${entry.pins} sequences`;
      throw new AdapterError("in_use", `adapter ${JSON.stringify(entry.id)} is used by ${sequences}; unload it once they finish`);
    }
  }

  /** Reads the adapter into host memory; one that was never valid is forgotten again, so that it is not listed. */
  private async validate(entry: Entry): Promise<void> {
    try {
      await this.ensureHost(entry);
    } catch (error) {
      const neverValid = entry.config === null && entry.root !== null;
      if (neverValid && entry.pins === 0 && this.entries.get(entry.id) === entry) this.entries.delete(entry.id);
      throw error;
    }
  }

  private describe(entry: Entry): AdapterDescription {
    const tier: AdapterTier = entry.resident ? "device" : entry.host ? "host" : "disk";
    return { id: entry.id, dir: entry.dir, tier, config: entry.config, hasChatTemplate: entry.hasChatTemplate, activeSequences: entry.pins };
  }

  private ensureHost(entry: Entry): Promise<HostAdapter> {
    if (entry.host) {
      entry.lastUse = ++this.clock;
      return Promise.resolve(entry.host);
    }
    entry.reading ??= this.readIntoHost(entry).finally(() => {
      entry.reading = null;
    });
    return entry.reading;
  }

  private async readIntoHost(entry: Entry): Promise<HostAdapter> {
    while (!this.reserveHostRoom()) await new Promise<void>((wake) => this.hostWaiters.push(wake));
    let host: HostAdapter;
    try {
      host = await readAdapter(entry.dir, entry.root, this.options, (bytes) => this.engine.allocateHostBuffer(bytes));
    } catch (cause) {
      const reason = cause instanceof LoadError ? "is not valid for this model" : "cannot be read";
      const message = `adapter ${JSON.stringify(entry.id)} ${reason}: ${(cause as Error).message}`;
      const error = cause instanceof AdapterError ? cause : new AdapterError("invalid", message, { cause });
      // Sequences may already wait for this adapter (its bytes were evicted after a first good read).
      if (this.wanting.has(entry)) this.fail(entry, error);
      throw error;
    } finally {
      this.hostReservations--;
      this.wakeHostWaiters();
    }
    entry.host = host;
    entry.config = host.config;
    entry.hasChatTemplate = host.hasChatTemplate;
    entry.lastUse = ++this.clock;
    this.pump();
    return host;
  }

  /** Takes room for one more adapter in host memory, evicting the least recently used unpinned one if full. */
  private reserveHostRoom(): boolean {
    let held = this.hostReservations;
    for (const entry of this.entries.values()) if (entry.host) held++;
    if (held >= this.options.maxCpuLoras) {
      const victim = this.leastRecent((e) => e.host !== null && e.pins === 0);
      if (!victim) return false;
      victim.host = null;
    }
    this.hostReservations++;
    return true;
  }

  private wakeHostWaiters(): void {
    for (const wake of this.hostWaiters.splice(0)) wake();
  }

  private leastRecent(eligible: (entry: Entry) => boolean): Entry | null {
    let best: Entry | null = null;
    for (const entry of this.entries.values()) if (eligible(entry) && (!best || entry.lastUse < best.lastUse)) best = entry;
    return best;
  }

  /**
   * Moves the adapters that sequences wait for towards a slot: every one into host memory (reads run side by
   * side, within the host tier's room), then the first ready one into a slot, one slot load at a time.
   */
  private pump(): void {
    this.wakeHostWaiters();
    for (const entry of this.wanting) {
      if (entry.pins === 0 || this.entries.get(entry.id) !== entry) this.wanting.delete(entry);
      // A failed read is reported through fail() to the sequences waiting for it.
      else if (!entry.host && !entry.reading) this.ensureHost(entry).catch(() => undefined);
    }
    if (this.slotLoad) return;
    for (const entry of this.wanting) {
      if (!entry.host) continue;
      const slot = this.takeSlot();
      if (slot === null) return;
      this.wanting.delete(entry);
      this.loadSlot(entry, entry.host, slot);
      return;
    }
  }

  /** A free slot, or the slot of the least recently used adapter that no sequence uses (evicted); null if none. */
  private takeSlot(): number | null {
    const free = this.slots.indexOf(null);
    if (free >= 0) return free;
    const victim = this.leastRecent((e) => e.resident && e.pins === 0);
    if (!victim) return null;
    return this.freeSlot(victim);
  }

  private freeSlot(entry: Entry): number {
    const slot = entry.slot as number;
    this.engine.unloadAdapter(slot);
    this.slots[slot] = null;
    entry.slot = null;
    entry.resident = false;
    return slot;
  }

  private loadSlot(entry: Entry, host: HostAdapter, slot: number): void {
    this.slots[slot] = entry;
    entry.slot = slot;
    const done = this.engine.loadAdapter(slot, host.weights).then(
      () => {
        entry.resident = true;
        this.listener?.resident();
      },
      (error: Error) => {
        this.slots[slot] = null;
        entry.slot = null;
        this.fail(entry, new AdapterError("invalid", `adapter ${JSON.stringify(entry.id)} could not be loaded into the engine: ${error.message}`, { cause: error }));
      },
    );
    this.slotLoad = { entry, done };
    void done.finally(() => {
      this.slotLoad = null;
      this.pump();
    });
  }

  private fail(entry: Entry, error: Error): void {
    this.wanting.delete(entry);
    this.listener?.failed(entry.id, error);
  }
}
