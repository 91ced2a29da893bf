// The adapter registry's slot changes as telemetry reports them: each slot load is an `adapter.load` span (a
// child of the trace that was active when the load started, so a request that needed the load shows it) and a
// load-duration sample, each slot left an eviction. A residency listener: it keeps no record of the slots, and
// whoever needs what is resident now asks the registry.
import { performance } from "node:perf_hooks";
import { context, SpanStatusCode, type Tracer } from "@opentelemetry/api";
import { ATTR } from "../../telemetry/attributes.js";
import type { Logger } from "../../telemetry/logger.js";
import type { ResidencyListener, SlotLoad } from "../engine/adapter-residency.js";
import type { ShardMetrics } from "./shard-metrics.js";

export class SlotTelemetry implements ResidencyListener {
  constructor(
    private readonly metrics: ShardMetrics,
    private readonly tracer: Tracer,
    private readonly logger: Logger,
  ) {}

  loaded(adapterId: string, load: SlotLoad): void {
    this.span(adapterId, load, null);
    this.metrics.adapterLoadDuration.observe({ adapter: this.metrics.labels.admit(adapterId) }, load.seconds);
    this.logger.debug("adapter loaded", { adapter: adapterId, slot: load.slot, load_ms: Math.round(load.seconds * 1e5) / 100 });
  }

  evicted(adapterId: string): void {
    this.metrics.adapterEvictions.inc({ adapter: this.metrics.labels.labelOf(adapterId) });
  }

  failed(adapterId: string, error: Error, load: SlotLoad | null): void {
    // A read that failed never reached the engine: there is no load to trace.
    if (load) this.span(adapterId, load, error);
  }

  /** The load's span, drawn once it is over: it started `seconds` ago. */
  private span(adapterId: string, { slot, rank, seconds }: SlotLoad, error: Error | null): void {
    const attributes = { [ATTR.adapterId]: adapterId, "loraserve.adapter.slot": slot, "loraserve.adapter.rank": rank };
    const startTime = performance.timeOrigin + performance.now() - seconds * 1000;
    const span = this.tracer.startSpan("adapter.load", { attributes, startTime }, context.active());
    if (error) span.setStatus({ code: SpanStatusCode.ERROR, message: error.message });
    span.end();
  }
}
