// The native engine as the shard's telemetry sees it: every step is timed and its batch size counted, every
// adapter load is an `adapter.load` span and a load-duration sample, every unload an eviction, and the slots
// loaded right now give the residency gauge. A Proxy, so whatever else the engine offers passes through.
import { performance } from "node:perf_hooks";
import { SpanStatusCode, type Tracer } from "@opentelemetry/api";
import type { AdapterWeights, NativeEngine, SeqStep } from "../../native/addon.js";
import { ATTR } from "../../telemetry/attributes.js";
import type { Logger } from "../../telemetry/logger.js";
import type { ShardMetrics } from "./shard-metrics.js";

export class ObservedEngine {
  /** Engine slot → adapter id, for the slots loaded now. */
  private readonly loaded = new Map<number, string>();
  readonly engine: NativeEngine;

  constructor(
    inner: NativeEngine,
    private readonly observers: { metrics: ShardMetrics; tracer: Tracer; logger: Logger },
    /** The adapter whose weights are being loaded (asked once per load). */
    private readonly adapterOf: (weights: AdapterWeights) => string,
    /** Told of each adapter load that succeeds. */
    private readonly onLoaded: () => void,
  ) {
    const overrides: Partial<NativeEngine> = {
      step: (seqs) => this.step(inner, seqs),
      loadAdapter: (slot, weights) => this.loadAdapter(inner, slot, weights),
      unloadAdapter: (slot) => {
        inner.unloadAdapter(slot);
        const id = this.loaded.get(slot);
        this.loaded.delete(slot);
        if (id !== undefined) observers.metrics.adapterEvictions.inc({ adapter: observers.metrics.labels.labelOf(id) });
      },
    };
    this.engine = new Proxy(inner, {
      get: (target, key) => {
        const override = overrides[key as keyof NativeEngine];
        if (override) return override;
        const value: unknown = Reflect.get(target, key);
        // Native methods need the native object as `this`.
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
  }

  /** Adapters in an engine slot now. */
  residentAdapters(): string[] {
    return [...this.loaded.values()];
  }

  isResident(adapterId: string): boolean {
    return adapterId === "" || [...this.loaded.values()].includes(adapterId);
  }

  private async step(inner: NativeEngine, seqs: SeqStep[]) {
    const startedAt = performance.now();
    try {
      return await inner.step(seqs);
    } finally {
      const { metrics } = this.observers;
      metrics.stepDuration.observe({}, (performance.now() - startedAt) / 1000);
      metrics.batchSize.observe({}, seqs.length);
    }
  }

  private async loadAdapter(inner: NativeEngine, slot: number, weights: AdapterWeights): Promise<void> {
    const { metrics, tracer, logger } = this.observers;
    const id = this.adapterOf(weights);
    const attributes = { [ATTR.adapterId]: id, "loraserve.adapter.slot": slot, "loraserve.adapter.rank": weights.rank };
    await tracer.startActiveSpan("adapter.load", { attributes }, async (span) => {
      const startedAt = performance.now();
      try {
        await inner.loadAdapter(slot, weights);
        this.loaded.set(slot, id);
        this.onLoaded();
        const seconds = (performance.now() - startedAt) / 1000;
        metrics.adapterLoadDuration.observe({ adapter: metrics.labels.admit(id) }, seconds);
        logger.debug("adapter loaded", { adapter: id, slot, load_ms: Math.round(seconds * 1e5) / 100 });
      } catch (error) {
        span.setStatus({ code: SpanStatusCode.ERROR, message: (error as Error).message });
        throw error;
      } finally {
        span.end();
      }
    });
  }
}
