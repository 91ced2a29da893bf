// Span attribute names: OpenTelemetry's GenAI semantic conventions where one fits, `loraserve.*` for what is
// ours. One list, so router and shard spans agree.
export const ATTR = {
  operationName: "gen_ai.operation.name",
  requestModel: "gen_ai.request.model",
  requestMaxTokens: "gen_ai.request.max_tokens",
  requestTemperature: "gen_ai.request.temperature",
  requestTopP: "gen_ai.request.top_p",
  requestTopK: "gen_ai.request.top_k",
  requestSeed: "gen_ai.request.seed",
  usageInputTokens: "gen_ai.usage.input_tokens",
  usageOutputTokens: "gen_ai.usage.output_tokens",
  responseFinishReasons: "gen_ai.response.finish_reasons",
  adapterId: "loraserve.adapter.id",
  adapterResident: "loraserve.adapter.resident",
  /** The group's leader URI; its name (the metrics' `shard_group` label) is the next. */
  shardGroup: "loraserve.shard_group",
  shardGroupName: "loraserve.shard_group.name",
  /** The tensor-parallel rank that made the span (the leader, 0: only it serves) and its group's size. */
  shardRank: "shard.rank",
  shardWorldSize: "shard.world_size",
  routeReason: "loraserve.route.reason",
  batchSize: "loraserve.batch_size",
  timeToFirstTokenMs: "loraserve.time_to_first_token_ms",
  queueTimeMs: "loraserve.queue_time_ms",
  preemptions: "loraserve.preemptions",
  outcome: "loraserve.outcome",
} as const;

/** Response metadata the shard sends the router: the router's per-adapter series are measured where the stream is. */
export const SHARD_HEADER = {
  /** Response header: "true" when the request's adapter was in an engine slot when the request arrived. */
  adapterResident: "loraserve-adapter-resident",
  /** Response trailer: seconds the request waited before its first prompt chunk was scheduled. */
  queueSeconds: "loraserve-queue-seconds",
} as const;

/** GenAI's operation name for a request: a conversation is `chat`, a bare prompt `text_completion`. */
export function operationName(request: { messages: readonly unknown[] }): string {
  return request.messages.length > 0 ? "chat" : "text_completion";
}
