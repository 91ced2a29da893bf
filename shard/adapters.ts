// The adapters this shard serves: id → engine slot, directory and config. Static for now: every adapter
// named at start-up is validated and copied into its own engine slot before the shard reports ready.
import type { AdapterWeights, ModelSpec, NativeEngine } from "../native/addon.js";
import { loadAdapterFiles, type AdapterConfig, type AdapterFiles } from "./model/adapter.js";

/** An adapter as named on the command line. */
export interface AdapterSource {
  id: string;
  dir: string;
}

export interface RegisteredAdapter {
  id: string;
  slot: number;
  dir: string;
  config: AdapterConfig;
  weights: AdapterWeights;
}

export class UnknownAdapterError extends Error {
  constructor(
    readonly adapterId: string,
    readonly knownIds: readonly string[],
  ) {
    const known = knownIds.length > 0 ? knownIds.map((id) => JSON.stringify(id)).join(", ") : "none";
    super(`adapter ${JSON.stringify(adapterId)} is not served here; known adapters: ${known}`);
    this.name = "UnknownAdapterError";
  }
}

export class AdapterRegistry {
  private readonly byId: Map<string, RegisteredAdapter>;

  /** Reads and validates every adapter against the base model; throws naming the first bad file. */
  constructor(sources: readonly AdapterSource[], spec: ModelSpec) {
    this.byId = new Map();
    sources.forEach(({ id, dir }, slot) => {
      if (this.byId.has(id)) throw new Error(`adapter id ${JSON.stringify(id)} is given twice`);
      let files: AdapterFiles;
      try {
        files = loadAdapterFiles(dir, spec);
      } catch (error) {
        throw new Error(`adapter ${JSON.stringify(id)}: ${(error as Error).message}`, { cause: error });
      }
      this.byId.set(id, { id, slot, dir: files.dir, config: files.config, weights: files.weights });
    });
  }

  /** Engine slots needed: at least one, so that an engine built without adapters is still well-formed. */
  get slotCount(): number {
    return Math.max(1, this.byId.size);
  }

  get maxRank(): number {
    return Math.max(1, ...[...this.byId.values()].map((a) => a.config.rank));
  }

  ids(): string[] {
    return [...this.byId.keys()];
  }

  /** Copies every adapter into its slot. */
  async loadInto(engine: NativeEngine): Promise<void> {
    for (const { id, slot, dir, weights } of this.byId.values()) {
      try {
        await engine.loadAdapter(slot, weights);
      } catch (error) {
        throw new Error(`adapter ${JSON.stringify(id)} (${dir}): ${(error as Error).message}`, { cause: error });
      }
    }
  }

  /** The directory a served adapter was read from (its own chat template may be there). */
  dirOf(adapterId: string): string {
    const adapter = this.byId.get(adapterId);
    if (!adapter) throw new UnknownAdapterError(adapterId, this.ids());
    return adapter.dir;
  }

  /** The engine slot for a request's adapter id; the empty id is the base model alone (-1). */
  slotFor(adapterId: string): number {
    if (adapterId === "") return -1;
    const adapter = this.byId.get(adapterId);
    if (!adapter) throw new UnknownAdapterError(adapterId, this.ids());
    return adapter.slot;
  }
}
