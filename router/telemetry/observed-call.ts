// One Generate call from the router to a shard group, measured where the router sees the stream: the `route`
// span (its group and why, the adapter, the GenAI request and usage attributes), the per-adapter series of
// RouterMetrics and one log line when it ends. The span is the parent of the shard's spans: the call is made
// with it active, and propagateTraceContext puts it in the call's headers. The call ends when router/failover.ts
// reports the attempt's outcome (`settle`): whether a failure moved the request on is the loop's to say.
import { performance } from "node:perf_hooks";
import { Code, ConnectError, type CallOptions } from "@connectrpc/connect";
import { context, SpanKind, SpanStatusCode, trace, type Attributes, type Context, type Span, type Tracer } from "@opentelemetry/api";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { FinishReason, type GenerateRequestSchema, type GenerateStreamResponse } from "../../gen/loraserve/v1/generate_pb.js";
import { ATTR, operationName, SHARD_HEADER } from "../../telemetry/attributes.js";
import type { Logger } from "../../telemetry/logger.js";
import type { AttemptOutcome } from "../failover.js";
import type { RouterMetrics } from "./router-metrics.js";

/** Where a request went and why: what the `route` span and the routing series record. */
export interface Route {
  /** The group's name: the `shard_group` label, stable across restarts. */
  group: string;
  /** Where the group's leader listens, for the span. */
  uri: string;
  reason: string;
}

export interface CallObservers {
  tracer: Tracer;
  metrics: RouterMetrics;
  logger: Logger;
}

/** What the router passes a shard's Generate: a message or its init shape. */
export type GenerateInput = MessageInitShape<typeof GenerateRequestSchema>;

/** `InvalidArgument` → `invalid_argument`, the outcome label of a failed request. */
function outcomeOf(error: ConnectError): string {
  return Code[error.code].replace(/[A-Z]/g, (c, at: number) => (at === 0 ? "" : "_") + c.toLowerCase());
}

const SERVER_FAULTS = new Set([Code.Internal, Code.Unknown, Code.Unavailable, Code.DataLoss]);

function requestAttributes(request: GenerateInput, route: Route): Attributes {
  const p = request.parameters;
  return {
    [ATTR.operationName]: operationName({ messages: request.messages ?? [] }),
    [ATTR.adapterId]: request.adapterId ?? "",
    [ATTR.shardGroup]: route.uri,
    [ATTR.shardGroupName]: route.group,
    [ATTR.routeReason]: route.reason,
    [ATTR.requestMaxTokens]: p?.maxNewTokens,
    [ATTR.requestTemperature]: p?.temperature,
    [ATTR.requestTopP]: p?.topP,
    [ATTR.requestTopK]: p?.topK,
    [ATTR.requestSeed]: p?.seed === undefined ? undefined : Number(p.seed),
  };
}

function seconds(fromMs: number, toMs: number): number {
  return (toMs - fromMs) / 1000;
}

export class ObservedCall {
  private readonly startedAt = performance.now();
  private readonly span: Span;
  /** The caller's context with the route span: the shard call is made in it. */
  readonly context: Context;
  private readonly adapterId: string;
  private firstTokenAt: number | null = null;
  /** The adapter's label, fixed when the shard admitted the request. */
  private label: string | null = null;
  private header: Headers | null = null;
  private trailer: Headers | null = null;
  /** The shard's final message (the one with the whole text), once it came. */
  private final: GenerateStreamResponse | null = null;
  /** The shard's stream reached its end (rather than its reader stopping). */
  private drained = false;
  private ended = false;

  constructor(
    private readonly request: GenerateInput,
    private readonly route: Route,
    private readonly observers: CallObservers,
  ) {
    this.adapterId = request.adapterId ?? "";
    const parent = context.active();
    this.span = observers.tracer.startSpan("route", { kind: SpanKind.SERVER, attributes: requestAttributes(request, route) }, parent);
    this.context = trace.setSpan(parent, this.span);
    observers.metrics.streamStarted(route.group);
  }

  /** The caller's options plus the hooks that read the shard's response header and trailer. */
  callOptions(options: CallOptions | undefined): CallOptions {
    return {
      ...options,
      onHeader: (header) => {
        this.header = header;
        options?.onHeader?.(header);
      },
      onTrailer: (trailer) => {
        this.trailer = trailer;
        options?.onTrailer?.(trailer);
      },
    };
  }

  /** Passes the shard's messages on unchanged, measuring as they go; `settle` ends the call. */
  async *watch(stream: AsyncIterable<GenerateStreamResponse>): AsyncGenerator<GenerateStreamResponse> {
    const messages = stream[Symbol.asyncIterator]();
    for (let next = await messages.next(); !next.done; next = await messages.next()) {
      if (this.firstTokenAt === null) this.admitted();
      if (next.value.generatedText !== undefined) {
        // The final message: let the call end so that its trailer (the queue time) has been read.
        await messages.next().catch(() => undefined);
        this.final = next.value;
        this.drained = true;
        yield next.value;
        return;
      }
      yield next.value;
    }
    this.drained = true;
  }

  /** Ends the call with the outcome the failover loop decided for this attempt. */
  settle(outcome: AttemptOutcome): void {
    if (this.ended) return;
    if (outcome.kind === "failed_over") this.fail(outcome.error, "failed_over");
    else if (outcome.kind === "failed") this.fail(outcome.error);
    else if (this.final) this.succeeded(this.final);
    else if (this.drained) this.fail(new ConnectError("the shard ended the stream without its final message", Code.Internal));
    else this.fail(new ConnectError("the client went away", Code.Canceled));
  }

  private admitted(): void {
    this.firstTokenAt = performance.now();
    this.label = this.observers.metrics.labels.count(this.adapterId);
    this.observers.metrics.timeToFirstToken.observe({ adapter: this.label }, seconds(this.startedAt, this.firstTokenAt));
  }

  private succeeded(final: GenerateStreamResponse): void {
    const now = performance.now();
    const { metrics } = this.observers;
    const adapter = this.label as string;
    const firstTokenAt = this.firstTokenAt as number;
    const generated = final.details?.generatedTokens ?? 0;
    const prompt = final.details?.promptTokens ?? 0;
    metrics.inputTokens.inc({ adapter }, prompt);
    metrics.outputTokens.inc({ adapter }, generated);
    metrics.requestDuration.observe({ adapter }, seconds(this.startedAt, now));
    const perToken = generated > 1 ? seconds(firstTokenAt, now) / (generated - 1) : null;
    if (perToken !== null) metrics.timePerOutputToken.observe({ adapter }, perToken);
    const queue = Number.parseFloat(this.trailer?.get(SHARD_HEADER.queueSeconds) ?? "");
    if (Number.isFinite(queue)) metrics.queueTime.observe({ adapter }, queue);
    const finishReason = FinishReason[final.details?.finishReason ?? FinishReason.UNSPECIFIED].toLowerCase();
    this.span.setAttributes({
      [ATTR.usageInputTokens]: prompt,
      [ATTR.usageOutputTokens]: generated,
      [ATTR.responseFinishReasons]: [finishReason],
      [ATTR.queueTimeMs]: Number.isFinite(queue) ? queue * 1000 : undefined,
    });
    this.end("ok", "info", {
      finish_reason: finishReason,
      input_tokens: prompt,
      output_tokens: generated,
      queue_ms: Number.isFinite(queue) ? round(queue * 1000) : null,
      tpot_ms: perToken === null ? null : round(perToken * 1000),
    });
  }

  /** A failed-over attempt is not counted as a request: the attempt that follows it is. */
  private fail(error: ConnectError, outcome: string = outcomeOf(error)): void {
    this.span.setStatus({ code: SpanStatusCode.ERROR, message: error.rawMessage });
    this.end(outcome, SERVER_FAULTS.has(error.code) ? "warn" : "info", { error: error.rawMessage }, outcome !== "failed_over");
  }

  /** `countRequest` false: another attempt of the same request follows and is counted instead. */
  private end(outcome: string, level: "info" | "warn", fields: Record<string, string | number | null>, countRequest = true): void {
    this.ended = true;
    const { metrics, logger } = this.observers;
    const now = performance.now();
    const adapter = this.label ?? metrics.labels.labelOf(this.adapterId);
    const resident = this.header?.get(SHARD_HEADER.adapterResident) ?? "unknown";
    metrics.streamEnded(this.route.group);
    if (countRequest) metrics.requests.inc({ adapter, outcome });
    metrics.routed.inc({ shard_group: this.route.group, reason: this.route.reason, adapter_resident: resident });
    metrics.admissions.inc({ shard_group: this.route.group, result: this.firstTokenAt === null ? "rejected" : "admitted" });
    const ttft = this.firstTokenAt === null ? null : this.firstTokenAt - this.startedAt;
    this.span.setAttributes({
      [ATTR.outcome]: outcome,
      [ATTR.adapterResident]: resident === "unknown" ? undefined : resident === "true",
      [ATTR.timeToFirstTokenMs]: ttft ?? undefined,
    });
    this.span.end();
    logger.log(
      level,
      "request",
      {
        adapter: this.adapterId,
        shard_group: this.route.group,
        outcome,
        ttft_ms: ttft === null ? null : round(ttft),
        duration_ms: round(now - this.startedAt),
        ...fields,
      },
      this.span.spanContext(),
    );
  }
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}
