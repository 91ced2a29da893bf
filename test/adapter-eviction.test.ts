// The least-recently-used choice of both adapter tiers (shard/adapters/eviction.ts), apart from the reads and
// engine calls that follow it: the oldest eligible entry, never an ineligible one however old, and none when no
// entry may go.
import { describe, expect, it } from "vitest";
import { leastRecentlyUsed } from "../shard/adapters/eviction.js";

interface Plain {
  id: string;
  lastUse: number;
  pinned: boolean;
}

const entries: Plain[] = [
  { id: "b", lastUse: 5, pinned: false },
  { id: "a", lastUse: 2, pinned: true },
  { id: "c", lastUse: 3, pinned: false },
  { id: "d", lastUse: 9, pinned: false },
];
const unpinned = (entry: Plain): boolean => !entry.pinned;

describe("leastRecentlyUsed", () => {
  it("picks the eligible entry used longest ago", () => {
    expect(leastRecentlyUsed(entries, unpinned)?.id).toBe("c");
  });

  it("passes over an older entry that is not eligible", () => {
    expect(leastRecentlyUsed(entries, () => true)?.id).toBe("a");
    expect(leastRecentlyUsed(entries, (e) => e.id !== "c" && unpinned(e))?.id).toBe("b");
  });

  it("gives null when nothing is eligible, or there is nothing", () => {
    expect(leastRecentlyUsed(entries, () => false)).toBeNull();
    expect(leastRecentlyUsed([], () => true)).toBeNull();
  });

  it("takes the first of equally recent entries, in iteration order", () => {
    const tied = [
      { id: "x", lastUse: 1 },
      { id: "y", lastUse: 1 },
    ];
    expect(leastRecentlyUsed(tied, () => true)?.id).toBe("x");
    expect(leastRecentlyUsed(new Set([...tied].reverse()), () => true)?.id).toBe("y");
  });

  it("reads the entries without changing them", () => {
    const before = structuredClone(entries);
    leastRecentlyUsed(entries, unpinned);
    expect(entries).toEqual(before);
  });
});
