// One request inside the shard, traced in its three phases: `queue` (submitted until its first prompt chunk is
// scheduled), `prefill` (until its first token) and `decode` (one span for all the other tokens, with token
// counts as attributes and preemptions as events: never a span per token). The spans are children of the
// router's `route` span, whose context came in the request's headers. The queue time also goes back to the
// router in a trailer, for its per-adapter histogram: the wait before the first schedule plus every wait back in
// the queue after a preemption, which a busy shard's users wait through just the same.
import { performance } from "node:perf_hooks";
import type { HandlerContext } from "@connectrpc/connect";
import { SpanStatusCode, type Attributes, type Context, type Span, type Tracer } from "@opentelemetry/api";
import { ATTR, SHARD_HEADER } from "../../telemetry/attributes.js";
import type { Logger } from "../../telemetry/logger.js";
import type { TokenEvent } from "../engine/llm-engine.js";
import type { ScheduledChunk } from "../engine/scheduler.js";
import type { SequenceObserver } from "../engine/sequence-observer.js";

type Phase = "queue" | "prefill" | "decode" | "ended";

export interface SequenceTraceInit {
  tracer: Tracer;
  logger: Logger;
  /** The caller's trace context (from the request headers). */
  parent: Context;
  /** Attributes every span of this request carries (model, adapter, residency, request parameters). */
  attributes: Attributes;
  promptTokens: number;
  handler: HandlerContext;
  /** Milliseconds on a monotonic clock; absent: performance.now (a test may drive its own). */
  now?: () => number;
}

function ms(fromMs: number, toMs: number): number {
  return Math.round((toMs - fromMs) * 100) / 100;
}

export class SequenceTrace implements SequenceObserver {
  private phase: Phase = "queue";
  private span: Span;
  private readonly now: () => number;
  private readonly submittedAt: number;
  private scheduledAt: number | null = null;
  /** When the sequence went back to the queue (preempted), until it is scheduled again. */
  private requeuedAt: number | null = null;
  /** Time back in the queue after preemptions, in ms. */
  private requeuedMs = 0;
  private firstTokenAt: number | null = null;
  private generated = 0;
  private decodeSteps = 0;
  private decodeBatchTotal = 0;
  private preemptions = 0;
  private finishReason: string | null = null;

  constructor(private readonly init: SequenceTraceInit) {
    this.now = init.now ?? (() => performance.now());
    this.submittedAt = this.now();
    this.span = this.start("queue");
  }

  /** The caller's trace context. */
  get parent(): Context {
    return this.init.parent;
  }

  scheduled(chunk: ScheduledChunk, batchSize: number): void {
    if (this.phase === "queue") {
      this.scheduledAt = this.now();
      this.reportQueueTime();
      this.span.end();
      this.span = this.start("prefill", { [ATTR.batchSize]: batchSize, [ATTR.queueTimeMs]: this.queueMs() });
      this.phase = "prefill";
    } else if (this.requeuedAt !== null) {
      const waitedMs = this.now() - this.requeuedAt;
      this.requeuedAt = null;
      this.requeuedMs += waitedMs;
      this.span.addEvent("rescheduled", { "loraserve.requeue_time_ms": waitedMs });
      this.reportQueueTime();
    }
    // A decode step runs the last generated token alone (a recomputed sequence runs several at once).
    if (chunk.numTokens === 1 && chunk.startPos >= this.init.promptTokens) {
      // The loop may schedule the next step before the first token's event is read: the prefill is over.
      this.beginDecode();
      this.decodeSteps++;
      this.decodeBatchTotal += batchSize;
    }
  }

  preempted(): void {
    this.preemptions++;
    this.requeuedAt = this.now();
    this.span.addEvent("preempted", { "loraserve.generated_tokens": this.generated });
  }

  /** The engine's events for this request, passed on unchanged while the phases are traced. */
  async *watch(events: AsyncIterable<TokenEvent>): AsyncGenerator<TokenEvent> {
    let failure: unknown = null;
    try {
      for await (const event of events) {
        this.token(event);
        yield event;
      }
    } catch (error) {
      failure = error;
      throw error;
    } finally {
      this.end(failure);
    }
  }

  private token(event: TokenEvent): void {
    this.generated++;
    this.beginDecode();
    if (event.finish) this.finishReason = event.finish.reason;
  }

  private beginDecode(): void {
    if (this.phase !== "prefill") return;
    this.firstTokenAt = performance.now();
    this.span.end();
    this.span = this.start("decode");
    this.phase = "decode";
  }

  /** Time in the queue so far, in ms: before the first schedule and back in it after preemptions. */
  private queueMs(): number {
    return this.scheduledAt === null ? 0 : this.scheduledAt - this.submittedAt + this.requeuedMs;
  }

  /** The trailer is read when the stream ends: the last value set is the request's whole queue time. */
  private reportQueueTime(): void {
    this.init.handler.responseTrailer.set(SHARD_HEADER.queueSeconds, String(this.queueMs() / 1000));
  }

  private start(name: Exclude<Phase, "ended">, attributes: Attributes = {}): Span {
    return this.init.tracer.startSpan(name, { attributes: { ...this.init.attributes, ...attributes } }, this.init.parent);
  }

  private end(failure: unknown): void {
    if (this.phase === "ended") return;
    const outcome = failure !== null ? "error" : this.finishReason === null ? "cancelled" : "ok";
    if (failure !== null) this.span.setStatus({ code: SpanStatusCode.ERROR, message: (failure as Error).message ?? String(failure) });
    this.span.setAttributes({
      [ATTR.usageInputTokens]: this.init.promptTokens,
      [ATTR.usageOutputTokens]: this.generated,
      [ATTR.responseFinishReasons]: this.finishReason === null ? undefined : [this.finishReason],
      [ATTR.preemptions]: this.preemptions,
      [ATTR.outcome]: outcome,
      // With preemptions, the whole queue time (the prefill span's attribute has the first wait only).
      ...(this.preemptions > 0 && this.scheduledAt !== null ? { [ATTR.queueTimeMs]: this.queueMs() } : {}),
      ...(this.phase === "decode"
        ? { "loraserve.decode.steps": this.decodeSteps, [ATTR.batchSize]: this.decodeSteps > 0 ? this.decodeBatchTotal / this.decodeSteps : undefined }
        : {}),
    });
    this.span.end();
    const now = this.now();
    this.init.logger.log(
      "debug",
      "sequence",
      {
        adapter: String(this.init.attributes[ATTR.adapterId] ?? ""),
        outcome,
        finish_reason: this.finishReason,
        input_tokens: this.init.promptTokens,
        output_tokens: this.generated,
        preemptions: this.preemptions,
        queue_ms: this.scheduledAt === null ? null : ms(0, this.queueMs()),
        prefill_ms: this.scheduledAt === null || this.firstTokenAt === null ? null : ms(this.scheduledAt, this.firstTokenAt),
        decode_ms: this.firstTokenAt === null ? null : ms(this.firstTokenAt, now),
      },
      this.span.spanContext(),
    );
    this.phase = "ended";
  }
}
