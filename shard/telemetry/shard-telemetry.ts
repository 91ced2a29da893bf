// The shard's observability in one place: logger, tracer and engine metrics; the engine wrapper that times
// steps; the listener that traces and counts adapter slot loads; the trace of each request; and the metrics port.
import type { HandlerContext } from "@connectrpc/connect";
import { context, trace } from "@opentelemetry/api";
import type { GenerateRequest } from "../../gen/loraserve/v1/generate_pb.js";
import type { NativeEngine } from "../../native/addon.js";
import type { ProgressSink } from "../../telemetry/progress.js";
import { ATTR, operationName, SHARD_HEADER } from "../../telemetry/attributes.js";
import type { Logger } from "../../telemetry/logger.js";
import { extractTraceContext } from "../../telemetry/trace-context.js";
import type { LlmEngine, LoopEngine, TokenEvent } from "../engine/llm-engine.js";
import type { ResidencyListener } from "../engine/adapter-residency.js";
import type { SequenceObserver } from "../engine/sequence-observer.js";
import type { SequenceRequest } from "../engine/sequence.js";
import { serveMetricSet, type MetricsServer } from "./metrics-server.js";
import { watchRankEngine } from "./rank-metrics.js";
import { SequenceTrace } from "./sequence-trace.js";
import { ShardMetrics } from "./shard-metrics.js";
import { SlotTelemetry } from "./slot-telemetry.js";
import { timedSteps } from "./timed-steps.js";

/** What telemetry asks the adapter registry: which adapters are in an engine slot now. */
export interface AdapterSlots {
  deviceIds(): string[];
  slotOf(adapterId: string): number | null;
}

export class ShardTelemetry {
  readonly metrics: ShardMetrics;
  private readonly tracer = trace.getTracer("loraserve-shard");
  /** Hears the adapter registry from its opening: give it to AdapterRegistry.open. */
  readonly slotListener: ResidencyListener;
  private slots: AdapterSlots | null = null;

  constructor(
    readonly logger: Logger,
    maxAdapters: number,
    private readonly modelId: string,
    private readonly progress: ProgressSink,
    /** This shard's place in its tensor-parallel group, on every span. */
    private readonly group: { rank: number; world: number } = { rank: 0, world: 1 },
  ) {
    this.metrics = new ShardMetrics(maxAdapters);
    this.slotListener = new SlotTelemetry(this.metrics, this.tracer, logger);
  }

  /** Reports the base model's loading (one step: the engine maps or uploads every weight). */
  loadingModel<T>(load: () => T): T {
    this.progress.update("loading model", 0, 1);
    const loaded = load();
    this.progress.update("loading model", 1, 1);
    return loaded;
  }

  /** The engine with its steps timed, for the engine loop. */
  timeSteps(engine: LoopEngine): LoopEngine {
    return timedSteps(engine, this.metrics);
  }

  /** Registers the series read from the running engine loop and the registry's slots. */
  watch(llm: LlmEngine, slots: AdapterSlots, maxSlots: number, engine: Pick<NativeEngine, "info">): void {
    this.slots = slots;
    this.metrics.watch(llm, () => slots.deviceIds(), maxSlots);
    watchRankEngine(this.metrics.set, engine);
  }

  /**
   * Submits one request the shard accepted, traced: the submission runs in the caller's trace context (so an
   * adapter load it starts is part of that trace), the engine reports to the trace, and the events pass through it.
   */
  submit(
    request: GenerateRequest,
    sequence: SequenceRequest,
    handler: HandlerContext,
    submit: (observer: SequenceObserver | undefined) => AsyncIterable<TokenEvent>,
  ): AsyncIterable<TokenEvent> {
    const sequenceTrace = this.sequence(request, sequence, handler);
    return sequenceTrace.watch(context.with(sequenceTrace.parent, () => submit(sequenceTrace)));
  }

  /** The trace of one request. Tells the router (response header) whether the adapter was resident when it came. */
  private sequence(request: GenerateRequest, sequence: SequenceRequest, handler: HandlerContext): SequenceTrace {
    const resident = this.slots ? this.slots.slotOf(request.adapterId) !== null : true;
    handler.responseHeader.set(SHARD_HEADER.adapterResident, String(resident));
    this.metrics.labels.count(request.adapterId);
    return new SequenceTrace({
      tracer: this.tracer,
      logger: this.logger,
      parent: extractTraceContext(handler.requestHeader),
      promptTokens: sequence.promptIds.length,
      handler,
      attributes: {
        [ATTR.operationName]: operationName(request),
        [ATTR.requestModel]: this.modelId,
        [ATTR.adapterId]: request.adapterId,
        [ATTR.adapterResident]: resident,
        [ATTR.requestMaxTokens]: sequence.maxNewTokens,
        [ATTR.shardRank]: this.group.rank,
        [ATTR.shardWorldSize]: this.group.world,
      },
    });
  }

  /** Serves GET /metrics on `host:port` (0 picks a free port). */
  serveMetrics(port: number, host: string): Promise<MetricsServer> {
    return serveMetricSet(this.metrics.set, port, host, this.logger);
  }
}

/** `submit` observed when the shard has telemetry (a test may build a server without). */
export function submitObserved(
  telemetry: ShardTelemetry | undefined,
  ...[request, sequence, handler, submit]: Parameters<ShardTelemetry["submit"]>
): AsyncIterable<TokenEvent> {
  return telemetry ? telemetry.submit(request, sequence, handler, submit) : submit(undefined);
}
