// Keeps grpc.health.v1's statuses in step with the shards: the server ("") and every served service are
// SERVING while every group's leader reports ready, NOT_SERVING otherwise (before the shard is up, while it
// is unreachable). Status is asked on a fixed period, so Watch clients hear of a change within one period.
import { HealthStatuses, ServingStatus } from "./grpc-health.js";
import type { ShardPool } from "./shard-pool.js";

export const HEALTH_POLL_MS = 1000;

export interface HealthSync {
  statuses: HealthStatuses;
  stop(): void;
}

export function syncHealth(pool: ShardPool, services: readonly string[], periodMs = HEALTH_POLL_MS): HealthSync {
  const names = ["", ...services];
  const statuses = new HealthStatuses(Object.fromEntries(names.map((name) => [name, ServingStatus.NOT_SERVING])));
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const poll = async (): Promise<void> => {
    const status = (await pool.ready(periodMs)) ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;
    if (stopped) return;
    for (const name of names) statuses.set(name, status);
    timer = setTimeout(() => void poll(), periodMs);
    // The poll alone must not keep the router process alive.
    timer.unref();
  };
  void poll();
  return {
    statuses,
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
