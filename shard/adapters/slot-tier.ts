// The slot tier: the engine's adapter slots (--max-loras). Pinned adapters without a slot wait in the order they
// asked; each is brought into host memory first (reads run side by side), then into a slot, one slot load at a
// time so that loads never hold every worker thread the steps need. A full tier evicts its least recently used
// adapter that no sequence uses; when every slot is in use the adapter waits, and so do its sequences.
import { performance } from "node:perf_hooks";
import type { NativeEngine } from "../../native/addon.js";
import type { ResidencyListener, SlotLoad } from "../engine/adapter-residency.js";
import { NO_SLOT, type AdapterEntry } from "./adapter-entry.js";
import type { AdapterCatalog } from "./catalog.js";
import { AdapterError } from "./errors.js";
import { leastRecentlyUsed } from "./eviction.js";
import type { HostTier } from "./host-tier.js";
import type { HostAdapter } from "./read-adapter.js";

/** What a failed slot load is reported as: at start-up, and at run time. */
type ExplainLoadError = (entry: AdapterEntry, cause: Error) => Error;

const atStartup: ExplainLoadError = (entry, cause) => new Error(`adapter ${JSON.stringify(entry.id)} (${entry.dir}): ${cause.message}`, { cause });
const atRunTime: ExplainLoadError = (entry, cause) =>
  new AdapterError("invalid", `adapter ${JSON.stringify(entry.id)} could not be loaded into the engine: ${cause.message}`, { cause });

export class SlotTier {
  /** Slot → the adapter loaded or loading there. */
  private readonly slots: (AdapterEntry | null)[];
  /** Pinned adapters without a slot, in the order they asked for one. */
  private readonly wanting = new Set<AdapterEntry>();
  private readonly listeners: ResidencyListener[] = [];

  constructor(
    private readonly catalog: AdapterCatalog,
    private readonly host: HostTier,
    private readonly engine: Pick<NativeEngine, "loadAdapter" | "unloadAdapter">,
    maxLoras: number,
  ) {
    this.slots = new Array<AdapterEntry | null>(maxLoras).fill(null);
  }

  listen(listener: ResidencyListener): void {
    this.listeners.push(listener);
  }

  /** The slot steps may name for the adapter: null while it is not loaded. */
  slotOf(entry: AdapterEntry): number | null {
    return entry.slot.tier === "device" ? entry.slot.slot : null;
  }

  /** Adapters loaded in a slot now. */
  deviceIds(): string[] {
    return this.slots.flatMap((entry) => (entry?.slot.tier === "device" ? [entry.id] : []));
  }

  /** Start-up: loads the adapter into the first free slot, if any is left; throws, naming it, when the engine refuses it. */
  async fill(entry: AdapterEntry, host: HostAdapter): Promise<boolean> {
    const slot = this.slots.indexOf(null);
    if (slot < 0) return false;
    const error = await this.load(entry, host, slot, atStartup);
    if (error) throw error;
    return true;
  }

  /** A sequence pinned the adapter: it is brought into a slot unless it is in one or on its way. */
  want(entry: AdapterEntry): void {
    if (entry.slot.tier === "none") this.wanting.add(entry);
    this.pump();
  }

  /** Frees the adapter's slot (it is being unloaded; no sequence uses it). */
  vacate(entry: AdapterEntry): void {
    if (entry.slot.tier === "device") this.free(entry, entry.slot.slot);
  }

  /** A read for an adapter failed: sequences that wait for it cannot get it. */
  readFailed(entry: AdapterEntry, error: Error): void {
    if (this.wanting.has(entry)) this.fail(entry, error, null);
  }

  /**
   * Moves the adapters that sequences wait for towards a slot: every one into host memory (within the host
   * tier's room), then the first ready one into a slot, if no other slot load is in flight.
   */
  pump(): void {
    this.host.wake();
    for (const entry of this.wanting) {
      if (entry.pins === 0 || !this.catalog.holds(entry)) this.wanting.delete(entry);
      // A failed read is reported through readFailed() to the sequences waiting for it.
      else if (entry.host.tier === "disk") this.host.ensure(entry).catch(() => undefined);
    }
    if (this.slots.some((entry) => entry?.slot.tier === "loading")) return;
    for (const entry of this.wanting) {
      if (entry.host.tier !== "host") continue;
      const slot = this.takeSlot();
      if (slot === null) return;
      this.wanting.delete(entry);
      void this.load(entry, entry.host.host, slot, atRunTime).then(() => this.pump());
      return;
    }
  }

  /** A free slot, or the slot of the least recently used adapter that no sequence uses (evicted); null if none. */
  private takeSlot(): number | null {
    const free = this.slots.indexOf(null);
    if (free >= 0) return free;
    const victim = leastRecentlyUsed(this.occupants(), (e) => e.slot.tier === "device" && e.pins === 0);
    if (victim?.slot.tier !== "device") return null;
    const { slot } = victim.slot;
    this.free(victim, slot);
    return slot;
  }

  private occupants(): AdapterEntry[] {
    return this.slots.filter((entry): entry is AdapterEntry => entry !== null);
  }

  /** Starts the copy into a free slot; resolves, once the listeners were told, to the error it failed with or null. */
  private load(entry: AdapterEntry, host: HostAdapter, slot: number, explain: ExplainLoadError): Promise<Error | null> {
    this.slots[slot] = entry;
    const done = this.copy(entry, host, slot, explain);
    entry.slot = { tier: "loading", slot, done };
    return done;
  }

  private async copy(entry: AdapterEntry, host: HostAdapter, slot: number, explain: ExplainLoadError): Promise<Error | null> {
    const startedAt = performance.now();
    const ended = (): SlotLoad => ({ slot, rank: host.weights.rank, seconds: (performance.now() - startedAt) / 1000 });
    try {
      await this.engine.loadAdapter(slot, host.weights);
    } catch (cause) {
      this.slots[slot] = null;
      entry.slot = NO_SLOT;
      const error = explain(entry, cause as Error);
      this.fail(entry, error, ended());
      return error;
    }
    entry.slot = { tier: "device", slot };
    const load = ended();
    for (const listener of this.listeners) listener.loaded(entry.id, load);
    return null;
  }

  private free(entry: AdapterEntry, slot: number): void {
    this.engine.unloadAdapter(slot);
    this.slots[slot] = null;
    entry.slot = NO_SLOT;
    for (const listener of this.listeners) listener.evicted(entry.id, slot);
  }

  private fail(entry: AdapterEntry, error: Error, load: SlotLoad | null): void {
    this.wanting.delete(entry);
    for (const listener of this.listeners) listener.failed(entry.id, error, load);
  }
}
