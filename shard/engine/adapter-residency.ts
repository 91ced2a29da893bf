// What the engine loop needs from the adapter tiers (shard/adapters/registry.ts): the slot that holds a
// sequence's adapter, and a say in what may be evicted. A sequence whose adapter is not in a slot yet waits in
// the queue while the others run. Whoever listens (the engine loop, telemetry) hears each slot change with the
// adapter's id, so that nobody keeps a second copy of which adapter is in which slot.

/** One copy of an adapter into an engine slot, as it ended. */
export interface SlotLoad {
  slot: number;
  /** The adapter's LoRA rank. */
  rank: number;
  seconds: number;
}

export interface ResidencyListener {
  /** An adapter reached a slot: the sequences waiting for it can be scheduled. */
  loaded(adapterId: string, load: SlotLoad): void;
  /** An adapter left its slot (evicted for another, or unloaded): steps may no longer name the slot for it. */
  evicted(adapterId: string, slot: number): void;
  /**
   * An adapter could not be brought into a slot: its waiting sequences end with this error. `load` is the slot
   * load that failed; null when the adapter could not be read.
   */
  failed(adapterId: string, error: Error, load: SlotLoad | null): void;
}

export interface AdapterResidency {
  /**
   * A queued sequence names `adapterId`: the adapter is never evicted until the matching release, and is brought
   * into a slot if it is not in one. The base model ("") needs nothing. Throws when the id is not known.
   */
  acquire(adapterId: string): void;
  release(adapterId: string): void;
  /**
   * Which registration of the adapter its sequences run on, 0 for the base model (""): an id unloaded and loaded
   * again (maybe from other files) gets a new one, so that no KV block computed with its old weights is reused. It
   * does not change while the adapter is acquired.
   */
  versionOf(adapterId: string): number;
  /** The engine slot holding the adapter, -1 for the base model (""), null while it is not in a slot. */
  slotOf(adapterId: string): number | null;
  /** Adds a listener; every listener hears every change from then on. */
  listen(listener: ResidencyListener): void;
}
