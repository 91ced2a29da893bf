// Keeps grpc.health.v1's statuses in step with the shards: the server ("") and every served service are
// SERVING while every group's leader reports ready, NOT_SERVING otherwise (before the shard is up, while it
// is unreachable). The statuses follow the groups' status watchers, so Watch clients hear of a change at the
// poll that sees it.
import { HealthStatuses, ServingStatus } from "./grpc-health.js";
import type { ShardPool } from "./shard-pool.js";

export interface HealthSync {
  statuses: HealthStatuses;
  stop(): void;
}

export function syncHealth(pool: ShardPool, services: readonly string[]): HealthSync {
  const names = ["", ...services];
  const statuses = new HealthStatuses(Object.fromEntries(names.map((name) => [name, ServingStatus.NOT_SERVING])));
  const stop = pool.onView(() => {
    const status = pool.ready() ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;
    for (const name of names) statuses.set(name, status);
  });
  return { statuses, stop };
}
