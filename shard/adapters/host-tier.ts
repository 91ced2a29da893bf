// The host tier: adapters read from disk and validated, held in host memory so that a slot load touches no
// disk. At most --max-cpu-loras adapters hold bytes or room for a read in flight; a full
// tier gives up its least recently used adapter that no sequence uses, and a read that finds none waits.
import { LoadError } from "../model/load-error.js";
import { ON_DISK, type AdapterEntry } from "./adapter-entry.js";
import type { AdapterCatalog } from "./catalog.js";
import { AdapterError } from "./errors.js";
import { leastRecentlyUsed } from "./eviction.js";
import { stampAdapterFiles } from "./file-stamp.js";
import { readAdapter, type AdapterLimits, type HostAdapter } from "./read-adapter.js";

export interface HostTierOptions extends AdapterLimits {
  /** Adapters held in host memory at most (--max-cpu-loras). */
  maxCpuLoras: number;
}

/** What the slot tier hears of reads: an adapter it may be waiting for became ready, or will not. */
export interface HostReadEvents {
  read(entry: AdapterEntry): void;
  readFailed(entry: AdapterEntry, error: AdapterError): void;
}

export class HostTier {
  /** Reads that have room reserved but no bytes yet. */
  private reservations = 0;
  private readonly waiters: (() => void)[] = [];

  constructor(
    private readonly catalog: AdapterCatalog,
    private readonly options: HostTierOptions,
    private readonly events: HostReadEvents,
  ) {}

  /** The adapter's validated bytes: held ones (a use), the read in flight, or a new read. */
  ensure(entry: AdapterEntry): Promise<HostAdapter> {
    switch (entry.host.tier) {
      case "host":
        this.catalog.touch(entry);
        return Promise.resolve(entry.host.host);
      case "reading":
        return entry.host.read;
      case "disk": {
        const read = this.read(entry);
        entry.host = { tier: "reading", read };
        return read;
      }
    }
  }

  /** Lets reads waiting for room look again: an adapter may have been unpinned or unloaded. */
  wake(): void {
    for (const wake of this.waiters.splice(0)) wake();
  }

  private async read(entry: AdapterEntry): Promise<HostAdapter> {
    while (!this.reserveRoom()) await new Promise<void>((wake) => this.waiters.push(wake));
    let host: HostAdapter;
    let stamp: string;
    let stampedAt: number;
    try {
      // Stamped before reading: a change during the read gives another stamp at the next check, and a reload.
      stampedAt = Date.now();
      stamp = await stampAdapterFiles(entry.dir);
      host = await readAdapter(entry.dir, entry.root, this.options);
    } catch (cause) {
      const reason = cause instanceof LoadError ? "is not valid for this model" : "cannot be read";
      const message = `adapter ${JSON.stringify(entry.id)} ${reason}: ${(cause as Error).message}`;
      const error = cause instanceof AdapterError ? cause : new AdapterError("invalid", message, { cause });
      // Sequences may already wait for this adapter (its bytes were evicted after a first good read).
      this.events.readFailed(entry, error);
      entry.host = ON_DISK;
      throw error;
    } finally {
      this.reservations--;
      this.wake();
    }
    entry.host = { tier: "host", host };
    entry.filesStamp = stamp;
    entry.filesCheckedAt = stampedAt;
    entry.config = host.config;
    entry.hasChatTemplate = host.hasChatTemplate;
    this.catalog.touch(entry);
    this.events.read(entry);
    return host;
  }

  /** Takes room for one more adapter, evicting the least recently used unpinned one if the tier is full. */
  private reserveRoom(): boolean {
    let held = this.reservations;
    for (const entry of this.catalog.all()) if (entry.host.tier === "host") held++;
    if (held >= this.options.maxCpuLoras) {
      const victim = leastRecentlyUsed(this.catalog.all(), (e) => e.host.tier === "host" && e.pins === 0);
      if (!victim) return false;
      victim.host = ON_DISK;
    }
    this.reservations++;
    return true;
  }
}
