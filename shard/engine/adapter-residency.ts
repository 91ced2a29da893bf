// What the engine loop needs from the adapter tiers (shard/adapters/registry.ts): the slot that holds a
// sequence's adapter, and a say in what may be evicted. A sequence whose adapter is not in a slot yet waits in
// the queue while the others run.

export interface ResidencyListener {
  /** An adapter reached a slot: the sequences waiting for it can be scheduled. */
  resident(): void;
  /** An adapter could not be brought into a slot: its waiting sequences end with this error. */
  failed(adapterId: string, error: Error): void;
}

export interface AdapterResidency {
  /**
   * A queued sequence names `adapterId`: the adapter is never evicted until the matching release, and is brought
   * into a slot if it is not in one. The base model ("") needs nothing. Throws when the id is not known.
   */
  acquire(adapterId: string): void;
  release(adapterId: string): void;
  /** The engine slot holding the adapter, -1 for the base model (""), null while it is not in a slot. */
  slotOf(adapterId: string): number | null;
  listen(listener: ResidencyListener): void;
}
