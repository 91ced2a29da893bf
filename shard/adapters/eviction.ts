// Which adapter a full tier gives up: the least recently used of those it may evict. Pure, over plain entries,
// so that the choice is tested apart from the reads and engine calls that follow it.

/** What the choice reads of an entry: the tier's clock at its last use. */
export interface Recency {
  readonly lastUse: number;
}

/** The eligible entry used longest ago (the first of equals, in iteration order); null when none is eligible. */
export function leastRecentlyUsed<E extends Recency>(entries: Iterable<E>, eligible: (entry: E) => boolean): E | null {
  let victim: E | null = null;
  for (const entry of entries) if (eligible(entry) && (victim === null || entry.lastUse < victim.lastUse)) victim = entry;
  return victim;
}
