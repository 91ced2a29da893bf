// What the router knows of the model it serves, from the shard groups' last Status: the base model and its
// limits (the same in every group) and the adapters a request may name (the union over the groups).
import { Code, ConnectError } from "@connectrpc/connect";
import type { StatusResponse } from "../gen/loraserve/v1/shard_pb.js";
import type { ShardPool } from "./shard-pool.js";

export interface ServedModels {
  /** The Status of the first ready group: model id, dtype, device and limits. */
  base: StatusResponse;
  adapterIds: string[];
}

/** Fails with UNAVAILABLE while no group is ready. */
export async function servedModels(pool: ShardPool): Promise<ServedModels> {
  // A request that arrives with the router waits for the first views rather than finding none.
  await pool.firstViews();
  const ready = pool.groupStatuses().flatMap(({ status }) => (status?.ready === true ? [status] : []));
  const base = ready[0];
  if (base === undefined) throw new ConnectError("no shard is ready to serve", Code.Unavailable);
  return { base, adapterIds: [...new Set(ready.flatMap((status) => status.adapterIds))] };
}
