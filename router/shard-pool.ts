// The shard groups this router forwards to. Every request goes through `pick`, the one place where the
// choice of a group is made: adapter residency and load (from ShardService.Status) will join the score here.
// With telemetry, the client it hands out measures and traces each Generate as routed (router/telemetry/).
import { createHash } from "node:crypto";
import { createClient, type Client, type Transport } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import type { GenerateRequest } from "../gen/loraserve/v1/generate_pb.js";
import { ShardService, type StatusResponse } from "../gen/loraserve/v1/shard_pb.js";
import { propagateTraceContext } from "../telemetry/trace-context.js";
import type { RouterTelemetry } from "./telemetry/router-telemetry.js";
import type { GroupStatus } from "./telemetry/router-metrics.js";

export type ShardClient = Client<typeof ShardService>;

interface ShardGroup {
  uri: string;
  client: ShardClient;
  /** The leader's other services (AdapterService) are reached over the same connection. */
  transport: Transport;
  /** Held so that shutdown can close the HTTP/2 connection instead of waiting for its idle timeout. */
  session: Http2SessionManager;
}

/** Rendezvous (highest random weight) score: stable per (adapter, group), so one adapter keeps to one group. */
function rendezvousScore(adapterId: string, uri: string): bigint {
  return createHash("sha256").update(adapterId).update("\0").update(uri).digest().readBigUInt64BE(0);
}

export class ShardPool {
  private readonly groups: ShardGroup[];

  constructor(
    uris: readonly string[],
    private readonly telemetry?: RouterTelemetry,
  ) {
    if (uris.length === 0) throw new Error("at least one --shard-uri is required");
    this.groups = uris.map((uri) => {
      const session = new Http2SessionManager(uri);
      const transport = createGrpcTransport({ baseUrl: uri, sessionManager: session, interceptors: [propagateTraceContext] });
      return { uri, session, transport, client: createClient(ShardService, transport) };
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
    const reason = this.groups.length === 1 ? "only_group" : "adapter_affinity";
    return this.telemetry ? this.telemetry.observe(best.client, { group: best.uri, reason }) : best.client;
  }

  /** Every group's Status with its URI (the group's label in metrics). */
  async groupStatuses(timeoutMs: number): Promise<GroupStatus[]> {
    const statuses = await this.statuses({ timeoutMs });
    return this.groups.map((group, i) => ({ uri: group.uri, status: statuses[i] }));
  }

  /** Every group leader's Status, in order; undefined for a leader that does not answer. */
  statuses(options: { timeoutMs?: number; signal?: AbortSignal }): Promise<(StatusResponse | undefined)[]> {
    return Promise.all(this.groups.map((group) => group.client.status({}, options).catch(() => undefined)));
  }

  /** Every group leader's transport, in order, for the services that go to all groups. */
  transports(): Transport[] {
    return this.groups.map((group) => group.transport);
  }

  /** True when every group's leader answers Status with ready. */
  async ready(timeoutMs: number): Promise<boolean> {
    return (await this.statuses({ timeoutMs })).every((status) => status?.ready === true);
  }

  close(): void {
    for (const group of this.groups) group.session.abort();
  }
}
