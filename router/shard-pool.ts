// The shard groups this router forwards to. Every request goes through `pick`, the one place where the
// choice of a group is made: adapter residency and load (from ShardService.Status) will join the score here.
import { createHash } from "node:crypto";
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import type { GenerateRequest } from "../gen/loraserve/v1/generate_pb.js";
import { ShardService, type StatusResponse } from "../gen/loraserve/v1/shard_pb.js";

export type ShardClient = Client<typeof ShardService>;

interface ShardGroup {
  uri: string;
  client: ShardClient;
  /** Held so that shutdown can close the HTTP/2 connection instead of waiting for its idle timeout. */
  session: Http2SessionManager;
}

/** Rendezvous (highest random weight) score: stable per (adapter, group), so one adapter keeps to one group. */
function rendezvousScore(adapterId: string, uri: string): bigint {
  return createHash("sha256").update(adapterId).update("\0").update(uri).digest().readBigUInt64BE(0);
}

export class ShardPool {
  private readonly groups: ShardGroup[];

  constructor(uris: readonly string[]) {
    if (uris.length === 0) throw new Error("at least one --shard-uri is required");
    this.groups = uris.map((uri) => {
      const session = new Http2SessionManager(uri);
      return { uri, session, client: createClient(ShardService, createGrpcTransport({ baseUrl: uri, sessionManager: session })) };
    });
  }

  /** The group that serves a request for this adapter. */
  pick(request: Pick<GenerateRequest, "adapterId">): ShardClient {
    let best = this.groups[0]!;
    let bestScore = -1n;
    for (const group of this.groups) {
      const score = rendezvousScore(request.adapterId, group.uri);
      if (score > bestScore) [best, bestScore] = [group, score];
    }
    return best.client;
  }

  /** Every group leader's Status, in order; undefined for a leader that does not answer. */
  statuses(options: { timeoutMs?: number; signal?: AbortSignal }): Promise<(StatusResponse | undefined)[]> {
    return Promise.all(this.groups.map((group) => group.client.status({}, options).catch(() => undefined)));
  }

  /** True when every group's leader answers Status with ready. */
  async ready(timeoutMs: number): Promise<boolean> {
    return (await this.statuses({ timeoutMs })).every((status) => status?.ready === true);
  }

  close(): void {
    for (const group of this.groups) group.session.abort();
  }
}
