// The shard groups this router forwards to and what it last heard of each. Every request's group is chosen
// here, by router/affinity.ts, from each group's StatusWatcher (router/status-watcher.ts, the only caller of
// Status) plus the streams this router has sent each group since that view. `generate` opens a request's
// stream and `tokenize` makes its call with failover (router/failover.ts).
// With telemetry, each attempt's Generate is measured and traced as routed, and ended as the failover loop
// reports it (router/telemetry/).
import { createClient, type CallOptions, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type { GenerateRequest, GenerateStreamResponse, TokenizeRequest, TokenizeResponse } from "../gen/loraserve/v1/generate_pb.js";
import { ShardService, type StatusResponse } from "../gen/loraserve/v1/shard_pb.js";
import { sendShardToken } from "../common/shard-token.js";
import { propagateTraceContext } from "../telemetry/trace-context.js";
import { rankGroups, type GroupView, type Residency, type RouteReason } from "./affinity.js";
import { generateCancelledByMessage, type GenerateCall } from "./cancel-by-message.js";
import { endOnAbort } from "./drain.js";
import { callWithFailover, streamWithFailover, type Attempt, type FailoverObserver } from "./failover.js";
import type { ShardClient } from "./shard-client.js";
import { StatusWatcher } from "./status-watcher.js";
import type { RouterTelemetry } from "./telemetry/router-telemetry.js";
import type { GroupStatus } from "./telemetry/router-metrics.js";
import { WatchedSessionManager } from "./watched-session.js";

interface ShardGroup {
  uri: string;
  /** Its `shard_group` label in metrics (--shard-group-name; by default the URI). */
  name: string;
  client: ShardClient;
  /** The client's Generate, cancelled by a Cancel message rather than a stream reset (router/cancel-by-message.ts). */
  generate: GenerateCall;
  /** The leader's other services (AdapterService) are reached over the same connection. */
  transport: Transport;
  /** Held so that shutdown can close the HTTP/2 connection instead of waiting for its idle timeout. */
  session: WatchedSessionManager;
  /** The group's Status as last seen. */
  watcher: StatusWatcher;
  /** Streams this router opened on the group since its last view, which that view's load cannot show. */
  sentSinceStatus: number;
}

function residencyOf(status: StatusResponse | undefined, adapterId: string): Residency {
  // The base model (no adapter) is resident wherever the model is.
  if (adapterId === "" || status?.deviceAdapterIds.includes(adapterId)) return "device";
  return status?.hostAdapterIds.includes(adapterId) ? "host" : "none";
}

function viewOf(group: ShardGroup, adapterId: string): GroupView {
  const { status, hasView } = group.watcher;
  return {
    id: group.uri,
    // A group not seen yet counts as healthy and idle.
    healthy: hasView ? status?.ready === true : true,
    residency: residencyOf(status, adapterId),
    load: (status ? status.runningSequences + status.waitingSequences : 0) + group.sentSinceStatus,
  };
}

export class ShardPool {
  private readonly groups: ShardGroup[];
  /** Aborted when a drain's grace period is over: every call still in flight ends (endInFlight). */
  private readonly ending = new AbortController();

  /**
   * `shardToken`: the internal API's credential, sent on every call to every group (--shard-token-file); `names`:
   * each group's label in metrics, in the order of `uris` (--shard-group-name).
   */
  constructor(
    uris: readonly string[],
    private readonly telemetry?: RouterTelemetry,
    shardToken: string | null = null,
    names: readonly string[] = uris,
  ) {
    if (uris.length === 0) throw new Error("at least one --shard-uri is required");
    const interceptors = [propagateTraceContext, ...(shardToken === null ? [] : [sendShardToken(shardToken)])];
    this.groups = uris.map((uri, i) => {
      const name = names[i] ?? uri;
      const session = new WatchedSessionManager(uri, (reason) => telemetry?.metrics.sessionsLost.inc({ shard_group: name, reason }));
      const transport = createGrpcTransport({ baseUrl: uri, sessionManager: session, interceptors });
      const client = createClient(ShardService, transport);
      const generate = generateCancelledByMessage(client);
      const group: ShardGroup = { uri, name, session, transport, client, generate, watcher: new StatusWatcher(client), sentSinceStatus: 0 };
      group.watcher.onView(() => (group.sentSinceStatus = 0));
      return group;
    });
  }

  /** The groups that may serve a request for this adapter, best first, and why the first. */
  private rank(adapterId: string): { candidates: ShardGroup[]; reason: RouteReason } {
    const byUri = new Map(this.groups.map((group) => [group.uri, group]));
    const { candidates, reason } = rankGroups(
      adapterId,
      this.groups.map((group) => viewOf(group, adapterId)),
    );
    return { candidates: candidates.map((view) => byUri.get(view.id)!), reason };
  }

  /** Tokenizes on the best group that answers (the adapter's tokenizer), moving on while groups fail. */
  tokenize(request: TokenizeRequest, callOptions: CallOptions): Promise<TokenizeResponse> {
    const options = this.untilEnded(callOptions);
    const { candidates } = this.rank(request.adapterId);
    const attempts = candidates.map((group) => ({ group: group.uri, call: () => group.client.tokenize(request, options) }));
    return callWithFailover(attempts, options.signal, this.failoverObserver());
  }

  /** Generates on the best group that takes the request, moving on while groups fail before the first token. */
  generate(request: GenerateRequest, callOptions: CallOptions): AsyncIterable<GenerateStreamResponse> {
    const options = this.untilEnded(callOptions);
    const { candidates, reason } = this.rank(request.adapterId);
    const observed = this.telemetry?.observeAttempts();
    const attempts = candidates.map(
      (group, i): Attempt => ({
        group: group.uri,
        open: () => {
          group.sentSinceStatus += 1;
          const route = { group: group.name, uri: group.uri, reason: i === 0 ? reason : "failover" };
          return observed ? observed.generate(group.generate, request, route, options) : group.generate(request, options);
        },
      }),
    );
    return endOnAbort(streamWithFailover(attempts, options.signal, this.failoverObserver(observed)), this.ending.signal);
  }

  /** Ends every call in flight: streams with the shutdown error (router/drain.ts), the shards' work cancelled. */
  endInFlight(): void {
    this.ending.abort();
  }

  /** The call's options with a signal that also aborts when endInFlight is called. */
  private untilEnded(options: CallOptions): CallOptions {
    return { ...options, signal: AbortSignal.any([...(options.signal ? [options.signal] : []), this.ending.signal]) };
  }

  /** Until its next Status, a group that failed a request counts as down; `next` (telemetry) hears every attempt. */
  private failoverObserver(next?: FailoverObserver): FailoverObserver {
    return {
      attempt: (uri, outcome) => {
        if (outcome.kind !== "ok" && outcome.groupFailed) this.groups.find((group) => group.uri === uri)!.watcher.markDown();
        next?.attempt(uri, outcome);
      },
    };
  }

  /** Resolves once every group has been polled once, so that the views below say something. */
  async firstViews(): Promise<void> {
    await Promise.all(this.groups.map((group) => group.watcher.firstView()));
  }

  /** Every group's last Status with its name (its label in metrics). */
  groupStatuses(): GroupStatus[] {
    return this.groups.map((group) => ({ name: group.name, status: group.watcher.status }));
  }

  /** Calls listener after any group's view changes; returns the function that stops the calls. */
  onView(listener: () => void): () => void {
    const stops = this.groups.map((group) => group.watcher.onView(listener));
    return () => stops.forEach((stop) => stop());
  }

  /** Every group leader's transport, in order, for the services that go to all groups. */
  transports(): Transport[] {
    return this.groups.map((group) => group.transport);
  }

  /** True when every group's leader last answered Status with ready. */
  ready(): boolean {
    return this.groups.every((group) => group.watcher.status?.ready === true);
  }

  close(): void {
    for (const group of this.groups) {
      group.watcher.stop();
      group.session.abort();
    }
  }
}
