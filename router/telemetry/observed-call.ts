// One Generate call from the router to a shard group, measured where the router sees the stream: the `route`
// span (its group and why, the adapter, the GenAI request and usage attributes), the per-adapter series of
// RouterMetrics and one log line when it ends. The span is the parent of the shard's spans: the call is made
// with it active, and propagateTraceContext puts it in the call's headers.
import { performance } from "node:perf_hooks";
import { Code, ConnectError, type CallOptions } from "@connectrpc/connect";
import { context, SpanKind, SpanStatusCode, trace, type Attributes, type Context, type Span, type Tracer } from "@opentelemetry/api";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { FinishReason, type GenerateRequestSchema, type GenerateStreamResponse } from "../../gen/loraserve/v1/generate_pb.js";
import { ATTR, operationName, SHARD_HEADER } from "../../telemetry/attributes.js";
import type { Logger } from "../../telemetry/logger.js";
import { isGroupFailure } from "../failover.js";
import type { RouterMetrics } from "./router-metrics.js";

/** Where a request went and why: what the `route` span and the routing series record. */
export interface Route {
  group: string;
  reason: string;
  /** Another group is left to try: a failure of this group before the first token moves the request there. */
  hasNextCandidate: boolean;
}

export interface CallObservers {
  tracer: Tracer;
  metrics: RouterMetrics;
  logger: Logger;
}

/** What the router passes a shard's Generate: a message or its init shape. */
export type GenerateInput = MessageInitShape<typeof GenerateRequestSchema>;

/** `InvalidArgument` → `invalid_argument`, the outcome label of a failed request. */
function outcomeOf(error: unknown): string {
  return Code[ConnectError.from(error).code].replace(/[A-Z]/g, (c, at: number) => (at === 0 ? "" : "_") + c.toLowerCase());
}

const SERVER_FAULTS = new Set([Code.Internal, Code.Unknown, Code.Unavailable, Code.DataLoss]);

function requestAttributes(request: GenerateInput, route: Route): Attributes {
  const p = request.parameters;
  return {
    [ATTR.operationName]: operationName({ messages: request.messages ?? [] }),
    [ATTR.adapterId]: request.adapterId ?? "",
    [ATTR.shardGroup]: route.group,
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
  private signal: AbortSignal | undefined;
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
    this.signal = options?.signal;
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

  /** Passes the shard's messages on unchanged, measuring as they go. */
  async *watch(stream: AsyncIterable<GenerateStreamResponse>): AsyncGenerator<GenerateStreamResponse> {
    const messages = stream[Symbol.asyncIterator]();
    try {
      for (;;) {
        const next = await messages.next();
        if (next.done) {
          this.fail(new ConnectError("the shard ended the stream without its final message", Code.Internal));
          return;
        }
        if (this.firstTokenAt === null) this.admitted();
        if (next.value.generatedText === undefined) {
          yield next.value;
          continue;
        }
        // The final message: let the call end so that its trailer (the queue time) has been read.
        await messages.next().catch(() => undefined);
        this.succeeded(next.value);
        yield next.value;
        return;
      }
    } catch (error) {
      this.fail(error);
      throw error;
    } finally {
      if (!this.ended) this.fail(new ConnectError("the client went away", Code.Canceled));
    }
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

  private fail(error: unknown): void {
    if (this.ended) return;
    const connectError = ConnectError.from(error);
    this.span.setStatus({ code: SpanStatusCode.ERROR, message: connectError.rawMessage });
    // router/failover.ts moves such a request to the next group: that attempt's outcome is the request's.
    const movesOn = this.firstTokenAt === null && this.route.hasNextCandidate && isGroupFailure(connectError, this.signal);
    const outcome = movesOn ? "failed_over" : outcomeOf(connectError);
    this.end(outcome, SERVER_FAULTS.has(connectError.code) ? "warn" : "info", { error: connectError.rawMessage }, !movesOn);
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
