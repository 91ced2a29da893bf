// The adapters this shard can serve, by id: each one's directory and root, in the order they became known, and
// the clock that orders their uses. Ids come from --lora-adapters, from LoadAdapter, or from the adapter roots
// on first use; an id nobody knows is refused, with the ids that are known only where the operator allows it
// (--list-adapters-in-errors): whoever may generate reads that error.
import { NO_SLOT, ON_DISK, type AdapterEntry } from "./adapter-entry.js";
import { AdapterError } from "./errors.js";
import type { AdapterRoots, FoundAdapter } from "./roots.js";

/** Ids listed in a not-found message at most; the rest are counted. */
const LISTED_IDS = 20;

export class AdapterCatalog {
  /** In the order adapters became known. */
  private readonly entries = new Map<string, AdapterEntry>();
  private clock = 0;
  /** Registrations so far: each entry's version. */
  private registrations = 0;

  constructor(
    readonly roots: AdapterRoots,
    private readonly listIdsInErrors = false,
  ) {}

  ids(): string[] {
    return [...this.entries.keys()];
  }

  all(): IterableIterator<AdapterEntry> {
    return this.entries.values();
  }

  /** The entry known by this id now, if any. */
  entry(id: string): AdapterEntry | undefined {
    return this.entries.get(id);
  }

  /** Whether `entry` is still the one known by its id (it may have been unloaded while a read ran). */
  holds(entry: AdapterEntry): boolean {
    return this.entries.get(entry.id) === entry;
  }

  /** A known entry; refused as not found otherwise. */
  known(id: string): AdapterEntry {
    const entry = this.entries.get(id);
    if (!entry) throw this.notFound(id);
    return entry;
  }

  /** A known entry, or one a root holds (registered from now on); refused as not found otherwise. */
  async lookup(id: string): Promise<AdapterEntry> {
    const known = this.entries.get(id);
    if (known) return known;
    const found = await this.find(id);
    // Another request may have found it while this one looked.
    return this.entries.get(id) ?? this.add(id, found.dir, found.root);
  }

  /** Where a root holds `id`, without registering it; refused as not found when none does. */
  async find(id: string): Promise<FoundAdapter> {
    const found = await this.roots.find(id);
    if (!found) throw this.notFound(id);
    return found;
  }

  add(id: string, dir: string, root: string | null): AdapterEntry {
    const entry: AdapterEntry = {
      id,
      version: ++this.registrations,
      dir,
      root,
      config: null,
      hasChatTemplate: false,
      host: ON_DISK,
      slot: NO_SLOT,
      pins: 0,
      unloading: false,
      filesStamp: null,
      filesCheckedAt: 0,
      lastUse: this.tick(),
    };
    this.entries.set(id, entry);
    return entry;
  }

  forget(entry: AdapterEntry): void {
    if (this.holds(entry)) this.entries.delete(entry.id);
  }

  /** Marks the entry as used now, for the least-recently-used choice. */
  touch(entry: AdapterEntry): void {
    entry.lastUse = this.tick();
  }

  private tick(): number {
    return ++this.clock;
  }

  private notFound(id: string): AdapterError {
    const where = this.roots.dirs.length > 0 ? " and no adapter root holds it" : "";
    if (!this.listIdsInErrors) return new AdapterError("not_found", `adapter ${JSON.stringify(id)} is not served here${where}`);
    const ids = this.ids();
    const listed = ids.slice(0, LISTED_IDS).map((known) => JSON.stringify(known));
    if (ids.length > LISTED_IDS) listed.push(`and ${ids.length - LISTED_IDS} more`);
    return new AdapterError("not_found", `adapter ${JSON.stringify(id)} is not served here${where}; known adapters: ${listed.join(", ") || "none"}`);
  }
}
