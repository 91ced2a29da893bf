// Which shard groups a request may go to, best first: the router's routing policy as one pure function, so two
// routers with the same view of the groups make the same choice. A group holding the request's adapter in an
// engine slot beats one holding it in host memory, which beats one that must read it from disk; among equals,
// rendezvous hashing of the adapter id keeps an adapter's traffic on one group (its cache stays warm). A bounded
// load rule moves a request off any group loaded beyond c × the mean, so a hot adapter spreads instead of
// melting one group. Groups over the bound and unhealthy groups stay in the list, last: failover may still try
// them when every better group fails.
import { createHash } from "node:crypto";

export type Residency = "device" | "host" | "none";

/** What the router knows of one group (from its Status, plus the streams this router sent it since). */
export interface GroupView {
  /** The group's stable name (its URI): the rendezvous hash's key. */
  id: string;
  healthy: boolean;
  /** Where the request's adapter is in this group. */
  residency: Residency;
  /** Sequences running plus waiting. */
  load: number;
}

/** Why the first candidate was chosen: the `route` span's reason and the routing series' label. */
export type RouteReason = "only_group" | "resident_device" | "resident_host" | "hash" | "overflow" | "no_healthy_group";

export interface Ranking {
  /** Every group, best first. */
  candidates: GroupView[];
  reason: RouteReason;
}

/** c of the bounded-load rule: no group is chosen while its load is beyond c × the mean load. */
export const LOAD_BOUND_FACTOR = 1.25;

const RESIDENCY_RANK: Record<Residency, number> = { device: 2, host: 1, none: 0 };

/** Rendezvous (highest random weight) score: stable per (adapter, group), so one adapter keeps to one group. */
function rendezvousScore(adapterId: string, groupId: string): bigint {
  return createHash("sha256").update(adapterId).update("\0").update(groupId).digest().readBigUInt64BE(0);
}

/** The most load a group may have and still be chosen: ceil(c × mean), and always above the mean. */
export function loadBound(loads: readonly number[], factor = LOAD_BOUND_FACTOR): number {
  const mean = loads.length === 0 ? 0 : loads.reduce((sum, load) => sum + load, 0) / loads.length;
  return Math.max(Math.ceil(factor * mean), mean + 1);
}

export function rankGroups(adapterId: string, groups: readonly GroupView[], factor = LOAD_BOUND_FACTOR): Ranking {
  const healthy = groups.filter((group) => group.healthy);
  const bound = loadBound(
    healthy.map((group) => group.load),
    factor,
  );
  const scores = new Map(groups.map((group) => [group.id, rendezvousScore(adapterId, group.id)]));
  const byHash = (a: GroupView, b: GroupView): number => Number(scores.get(b.id)! - scores.get(a.id)!);
  const byAffinity = (a: GroupView, b: GroupView): number => RESIDENCY_RANK[b.residency] - RESIDENCY_RANK[a.residency] || byHash(a, b);
  const tier = (group: GroupView): number => (!group.healthy ? 2 : group.load > bound ? 1 : 0);
  const candidates = [...groups].sort((a, b) => tier(a) - tier(b) || byAffinity(a, b));
  return { candidates, reason: reasonFor(candidates[0], [...healthy].sort(byAffinity)[0], groups.length) };
}

function reasonFor(first: GroupView | undefined, unbounded: GroupView | undefined, groupCount: number): RouteReason {
  if (first === undefined || !first.healthy) return "no_healthy_group";
  if (groupCount === 1) return "only_group";
  if (first !== unbounded) return "overflow";
  return first.residency === "device" ? "resident_device" : first.residency === "host" ? "resident_host" : "hash";
}
