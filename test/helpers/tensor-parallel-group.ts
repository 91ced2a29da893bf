// A tensor-parallel group for the engine tests: the test process holds rank 0 (the leader's engine, built by the
// test) and the other ranks are real `loraserve shard --rank R` processes that follow it, as in production.
import type { EngineOptions } from "../../native/addon.js";
import { startCli, unusedPort, type Exit, type Started } from "./process.js";

/** A follower's ready line (shard/follower.ts). */
export interface FollowerReady {
  event: "ready";
  rank: number;
  metricsPort?: number;
}

export interface Followers {
  /** What the leader's engine needs to meet them. */
  group: Pick<EngineOptions, "world" | "masterAddr" | "masterPort">;
  /** Resolves with each follower's ready line once every follower has met the group (after the leader's engine was built). */
  ready: Promise<FollowerReady[]>;
  /** Every follower's exit, once the leader has stopped the group (or a follower was killed). */
  exited(): Promise<Exit[]>;
  pids(): number[];
}

/**
 * Starts ranks 1..world-1 of a group over `modelDir`, their engines sized by `engineFlags` (shard flags that must
 * give the same KV cache and adapter slots as the leader's engine). Build the leader's engine next: its
 * constructor returns once every rank has met.
 */
export async function startFollowers(modelDir: string, world: number, engineFlags: string[]): Promise<Followers> {
  const masterPort = await unusedPort();
  const starting: Promise<Started<FollowerReady>>[] = [];
  for (let rank = 1; rank < world; rank++) {
    const args = ["shard", "--model-id", modelDir, "--device", "cpu", "--num-shard", String(world), "--rank", String(rank)];
    starting.push(startCli([...args, "--master-addr", "127.0.0.1", "--master-port", String(masterPort), ...engineFlags]));
  }
  const started: Started<FollowerReady>[] = [];
  const ready = Promise.all(starting).then((all) => {
    started.push(...all);
    return all.map((follower) => follower.ready);
  });
  // A follower that fails before the leader exists is reported when the test awaits `ready`.
  ready.catch(() => undefined);
  return {
    group: { world, masterAddr: "127.0.0.1", masterPort },
    ready,
    exited: () => Promise.all(started.map((follower) => follower.exited)),
    pids: () => started.map((follower) => follower.pid),
  };
}
