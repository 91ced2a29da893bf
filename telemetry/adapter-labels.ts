// Bounded cardinality of the `adapter` label. A server may hold thousands of adapters; a series per adapter
// per metric would swamp Prometheus. The busiest `maxAdapters` adapters (by requests counted here) keep their
// own label, every other adapter reports as `other`, and the base model is always `base`. A newcomer takes the
// place of the least busy labelled adapter only once it has more than twice its requests, so two adapters of
// similar traffic do not keep trading places; the demoted adapter's series are removed (onDemote), which keeps
// the number of series bounded over time, not only at any one moment.

export const BASE_LABEL = "base";
export const OTHER_LABEL = "other";

/** Adapters whose counts are kept, per labelled slot: enough to notice a rising one, bounded against junk ids. */
const TRACKED_PER_SLOT = 8;
const MIN_TRACKED = 64;

export class AdapterLabels {
  private readonly counts = new Map<string, number>();
  private readonly labelled = new Set<string>();
  private readonly maxTracked: number;

  constructor(
    readonly maxAdapters: number,
    private readonly onDemote: (adapterId: string) => void = () => undefined,
  ) {
    if (!Number.isSafeInteger(maxAdapters) || maxAdapters < 0) throw new Error(`maxAdapters must be a non-negative integer, got ${maxAdapters}`);
    this.maxTracked = Math.max(MIN_TRACKED, TRACKED_PER_SLOT * maxAdapters);
  }

  /** The label an adapter's series use now, without counting a request. */
  labelOf(adapterId: string): string {
    if (adapterId === "") return BASE_LABEL;
    return this.labelled.has(adapterId) ? adapterId : OTHER_LABEL;
  }

  /** The label for an adapter the server now holds (e.g. just loaded): its own while there is room; counts nothing. */
  admit(adapterId: string): string {
    if (adapterId === "" || this.labelled.has(adapterId)) return this.labelOf(adapterId);
    if (this.labelled.size >= this.maxAdapters) return OTHER_LABEL;
    this.labelled.add(adapterId);
    return adapterId;
  }

  /** Counts one request for the adapter (ids the server accepted only) and returns its label. */
  count(adapterId: string): string {
    if (adapterId === "") return BASE_LABEL;
    const known = this.counts.get(adapterId);
    if (known === undefined && this.counts.size >= this.maxTracked) return this.labelOf(adapterId);
    const count = (known ?? 0) + 1;
    this.counts.set(adapterId, count);
    if (this.labelled.has(adapterId) || this.labelled.size < this.maxAdapters) return this.admit(adapterId);
    const quietest = this.quietestLabelled();
    if (quietest === undefined || count <= 2 * (this.counts.get(quietest) ?? 0)) return OTHER_LABEL;
    this.labelled.delete(quietest);
    this.labelled.add(adapterId);
    this.onDemote(quietest);
    return adapterId;
  }

  private quietestLabelled(): string | undefined {
    let quietest: string | undefined;
    let least = Infinity;
    for (const id of this.labelled) {
      const count = this.counts.get(id) ?? 0;
      if (count < least) [quietest, least] = [id, count];
    }
    return quietest;
  }
}
