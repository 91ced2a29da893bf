// What the router knows of the model it serves, from the shard groups' Status: the base model and its limits
// (the same in every group) and the adapters a request may name (the union over the groups).
import { Code, ConnectError } from "@connectrpc/connect";
import type { StatusResponse } from "../gen/loraserve/v1/shard_pb.js";
import type { ShardPool } from "./shard-pool.js";

/** How long a Status may take before the group counts as not answering. */
const STATUS_TIMEOUT_MS = 2000;

export interface ServedModels {
  /** The Status of the first ready group: model id, dtype, device and limits. */
  base: StatusResponse;
  adapterIds: string[];
}

/** Fails with UNAVAILABLE while no group is ready. */
export async function servedModels(pool: ShardPool, signal: AbortSignal): Promise<ServedModels> {
  const ready = (await pool.statuses({ timeoutMs: STATUS_TIMEOUT_MS, signal })).filter((status) => status?.ready === true);
  const base = ready[0];
  if (base === undefined) throw new ConnectError("no shard is ready to serve", Code.Unavailable);
  return { base, adapterIds: [...new Set(ready.flatMap((status) => status!.adapterIds))] };
}
