// The router's metrics, served on the public port's /metrics. Per adapter (label bounded by AdapterLabels):
// requests by outcome, input and output tokens, time to first token, time per output token, end-to-end latency
// and queue time, all measured where the router sees each stream. Routing (which group, why, whether the
// adapter was resident there), admission (did the shard take the request) and every group's state (its status
// watcher's last view: a scrape asks no shard anything).
import { AdapterLabels } from "../../telemetry/adapter-labels.js";
import { MetricSet, type GaugeSample } from "../../telemetry/metric-set.js";
import type { StatusResponse } from "../../gen/loraserve/v1/shard_pb.js";

export interface GroupStatus {
  /** The group's `shard_group` label: stable across restarts (--shard-group-name, or its URI). */
  name: string;
  /** Absent when the group did not answer in time. */
  status: StatusResponse | undefined;
}

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];
const PER_TOKEN_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28];

export class RouterMetrics {
  readonly set = new MetricSet("loraserve-router");
  readonly labels: AdapterLabels;
  readonly requests = this.set.counter("loraserve_requests_total", "Requests that reached a shard group, each counted once, by adapter and the outcome of its last attempt (ok or the error code)", ["adapter", "outcome"]);
  readonly inputTokens = this.set.counter("loraserve_input_tokens_total", "Prompt tokens of completed requests", ["adapter"]);
  readonly outputTokens = this.set.counter("loraserve_output_tokens_total", "Generated tokens of completed requests", ["adapter"]);
  readonly timeToFirstToken = this.set.histogram("loraserve_time_to_first_token_seconds", "From the request reaching the router to its first token", ["adapter"], LATENCY_BUCKETS);
  readonly timePerOutputToken = this.set.histogram(
    "loraserve_time_per_output_token_seconds",
    "Mean time between generated tokens after the first, per request",
    ["adapter"],
    PER_TOKEN_BUCKETS,
  );
  readonly requestDuration = this.set.histogram("loraserve_request_duration_seconds", "From the request reaching the router to its last token", ["adapter"], LATENCY_BUCKETS);
  readonly queueTime = this.set.histogram("loraserve_queue_time_seconds", "Time a request waited in its shard before its prompt was scheduled", ["adapter"], LATENCY_BUCKETS);
  readonly routed = this.set.counter(
    "loraserve_router_routed_total",
    "Requests sent to a shard group, why that group, and whether the adapter was resident there (a routing hit)",
    ["shard_group", "reason", "adapter_resident"],
  );
  readonly admissions = this.set.counter(
    "loraserve_router_admissions_total",
    "Requests a shard group admitted (streamed a token) or rejected before any token",
    ["shard_group", "result"],
  );
  readonly sessionsLost = this.set.counter(
    "loraserve_router_shard_sessions_lost_total",
    "HTTP/2 sessions to a shard group that ended under the requests on them: the shard's GOAWAY, a session error, or a close with streams open",
    ["shard_group", "reason"],
  );
  private readonly inFlight = new Map<string, number>();

  constructor(maxAdapters: number, groups: () => GroupStatus[]) {
    this.labels = new AdapterLabels(maxAdapters, (adapter) => void this.set.removeSeries("adapter", adapter));
    this.set.observedGauge("loraserve_router_in_flight_requests", "Requests being streamed from each shard group", ["shard_group"], () =>
      [...this.inFlight].map(([group, value]) => ({ labels: { shard_group: group }, value })),
    );
    const perGroup =
      <L extends string>(values: (name: string, status: StatusResponse) => GaugeSample<L>[]) =>
      (): GaugeSample<L>[] =>
        groups().flatMap(({ name, status }) => (status ? values(name, status) : []));
    // The groups' gauges come from Status, which every process of a --api-processes router asks alike: not added up.
    this.set.observedGauge(
      "loraserve_shard_group_up",
      "1 when the group's leader answered Status ready, else 0",
      ["shard_group"],
      () => groups().map(({ name, status }) => ({ labels: { shard_group: name }, value: status?.ready ? 1 : 0 })),
      true,
    );
    this.set.observedGauge(
      "loraserve_shard_group_sequences",
      "Sequences in a group's batch (running) or queue (waiting)",
      ["shard_group", "state"],
      perGroup((name, s) => [
        { labels: { shard_group: name, state: "running" }, value: s.runningSequences },
        { labels: { shard_group: name, state: "waiting" }, value: s.waitingSequences },
      ]),
      true,
    );
    this.set.observedGauge(
      "loraserve_shard_group_kv_blocks",
      "A group's KV-cache blocks, used and free",
      ["shard_group", "state"],
      perGroup((name, s) => [
        { labels: { shard_group: name, state: "used" }, value: s.totalKvBlocks - s.freeKvBlocks },
        { labels: { shard_group: name, state: "free" }, value: s.freeKvBlocks },
      ]),
      true,
    );
    this.set.observedGauge(
      "loraserve_shard_group_adapters",
      "Adapters a group can serve",
      ["shard_group"],
      perGroup((name, s) => [{ labels: { shard_group: name }, value: s.adapterIds.length }]),
      true,
    );
  }

  streamStarted(group: string): void {
    this.inFlight.set(group, (this.inFlight.get(group) ?? 0) + 1);
  }

  streamEnded(group: string): void {
    this.inFlight.set(group, (this.inFlight.get(group) ?? 1) - 1);
  }
}
